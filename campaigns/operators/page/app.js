// The live campaign page: polls the API about once a second, no reloads, no libraries.
// One poll at a time: the next is scheduled a second after the last one answered, so
// a slow API never stacks requests. It asks for one page of the paged list (the rows
// it shows, filtered as the operator chose) and re-reads a report only when it changed.
// Every value from the API is put in the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
const PAGE_SIZE = 25;
const TOKEN_KEY = "campaigns-api-token";
let role = null;
let actions = {};
let reportId = null;
let reportSeen = null;
let busy = false;
let timer = null;
let polling = false;
let pollAgain = false;
let cursors = [null];  // the cursor of each page seen so far: [0] is the first page
let nextCursor = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A token handed over in the fragment (#token=...) never reaches a server or a log.
function takeTokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + token() },
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(body && body.error ? body.error.message : response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

// Integer micros as a decimal amount (micros stay below 2^53, exact as a Number).
function money(micros, currency) {
  if (micros === null || micros === undefined) return "-";
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  const units = Math.floor(abs / 1e6);
  let fraction = String(abs % 1e6).padStart(6, "0").replace(/0{1,4}$/, "");
  if (fraction.length < 2) fraction = fraction.padEnd(2, "0");
  return `${sign}${units}.${fraction}${currency ? " " + currency : ""}`;
}

function percent(part, whole) {
  return whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0;
}

function progressBar(counts) {
  const total = counts.contacts || 0;
  const bar = el("div", {
    class: "bar progress",
    title: `${counts.accepted} dialled, ${counts.rejected} rejected, ` +
      `${counts.in_doubt} in doubt, ${counts.pending} pending of ${total}`,
  });
  for (const part of ["accepted", "rejected", "in_doubt", "pending"]) {
    const segment = el("span", { class: part, "data-part": part, "data-count": counts[part] });
    segment.style.width = percent(counts[part], total) + "%";
    bar.append(segment);
  }
  return el("div", {}, bar,
    el("small", { class: "muted counts" },
      `${counts.accepted} dialled · ${counts.rejected} rejected · ${counts.in_doubt} in doubt · ` +
      `${counts.pending} pending / ${total}`));
}

function moneyBar(m) {
  const bar = el("div", { class: "bar budget" });
  for (const part of ["spent", "reserved"]) {
    const segment = el("span", { class: part });
    segment.style.width = percent(m[part + "_micros"], m.budget_micros) + "%";
    bar.append(segment);
  }
  return el("div", {}, bar,
    el("small", { class: "muted" },
      `${money(m.spent_micros)} spent + ${money(m.reserved_micros)} reserved of ` +
      money(m.budget_micros, m.currency)));
}

function buttons(campaign) {
  const cell = el("td", { class: "actions" });
  if (role === "operator") {
    for (const verb of ["pause", "resume", "cancel"]) {
      const button = el("button", { type: "button", "data-action": verb }, verb);
      button.disabled = busy || !(actions[verb] || []).includes(campaign.state);
      button.addEventListener("click", () => act(verb, campaign.campaign_id));
      cell.append(button);
    }
  }
  const view = el("button", { type: "button", "data-action": "report" }, "report");
  view.addEventListener("click", () => openReport(campaign.campaign_id));
  cell.append(view);
  return cell;
}

function waitingNote(waiting) {
  // Why a campaign that is not over is not sending (a 429 hold, a cool-down...).
  if (!waiting) return "";
  const until = waiting.until ? ` until ${waiting.until}` : "";
  return el("span", { class: "waiting", "data-reason": waiting.reason },
    el("b", {}, waiting.reason), " ", waiting.message + until);
}

function row(campaign) {
  const halt = campaign.halt;
  return el("tr", { "data-campaign": campaign.campaign_id, "data-state": campaign.state },
    el("td", {}, campaign.campaign_id),
    el("td", {}, el("span", { class: "state " + campaign.state }, campaign.state)),
    el("td", {}, progressBar(campaign.counts)),
    el("td", {}, moneyBar(campaign.money)),
    el("td", { class: "halt" }, halt ? el("span", {}, el("b", {}, halt.code), " ", halt.message)
      : waitingNote(campaign.waiting)),
    buttons(campaign));
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}

async function act(verb, campaignId) {
  busy = true;
  showError(`${verb} ${campaignId}…`);
  try {
    await api("POST", `/v1/campaigns/${encodeURIComponent(campaignId)}/${verb}`);
    showError("");
  } catch (error) {
    showError(`${verb} ${campaignId}: ${error.message}`);
  } finally {
    busy = false;
    refresh();
  }
}

function card(label, value) {
  return el("div", { class: "card" }, el("b", {}, value), label);
}

async function renderReport() {
  const id = reportId;
  const status = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}`);
  // The report is every attempt: read again only when the campaign's counts or money moved.
  const seen = JSON.stringify([id, status.state, status.counts, status.money]);
  if (id !== reportId || seen === reportSeen) return;
  const rows = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}/report?format=json`);
  if (id !== reportId) return;
  reportSeen = seen;
  const m = status.money;
  const c = status.counts;
  document.getElementById("report-id").textContent = id;
  document.getElementById("summary").replaceChildren(
    card("state", status.state + (status.halt ? ` (${status.halt.code})` : "")),
    card("accepted calls", c.accepted),
    card("settled calls", c.settled),
    card("rejected attempts", c.rejected),
    card("in doubt", c.in_doubt),
    card("not dialled", `${c.suppressed ?? 0} suppressed · ${c.expired ?? 0} expired · ` +
      `${c.capped ?? 0} capped`),
    card("spent (settled)", money(m.spent_micros, m.currency)),
    card("reserved", money(m.reserved_micros, m.currency)),
    card("budget", money(m.budget_micros, m.currency)));
  const calls = [];
  const rejected = [];
  const doubt = [];
  for (const r of rows) {
    if (r.status === "accepted") {
      calls.push(el("tr", {},
        el("td", {}, r.call_id), el("td", {}, "outbound"), el("td", {}, r.to),
        el("td", {}, r.final_status || "(in progress)"),
        el("td", { class: "num" }, r.billsec ?? "-"),
        el("td", { class: "num" }, money(r.cost_micros)), el("td", {}, r.currency)));
    } else if (r.status === "rejected") {
      rejected.push(el("tr", {},
        el("td", {}, r.attempt_id), el("td", {}, r.to), el("td", {}, r.error_code),
        el("td", { class: "body" }, r.request)));
    } else {
      doubt.push(el("tr", {}, el("td", {}, r.attempt_id), el("td", {}, r.to), el("td", {}, r.status)));
    }
  }
  document.querySelector("#calls tbody").replaceChildren(...calls);
  document.querySelector("#rejected tbody").replaceChildren(...rejected);
  document.querySelector("#doubt tbody").replaceChildren(...doubt);
}

function openReport(id) {
  reportId = id;
  reportSeen = null;
  document.getElementById("report").hidden = false;
  refresh();
}

function listPath() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const state = document.getElementById("filter-state").value;
  const name = document.getElementById("filter-name").value.trim();
  if (state) query.set("state", state);
  if (name) query.set("name", name);
  const cursor = cursors[cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  return "/v1/campaigns?" + query.toString();
}

async function poll() {
  try {
    const data = await api("GET", listPath());
    actions = data.actions || {};
    nextCursor = data.next_cursor;
    document.querySelector("#campaigns tbody").replaceChildren(...data.campaigns.map(row));
    document.getElementById("page-number").textContent = `page ${cursors.length}`;
    document.getElementById("page-prev").disabled = cursors.length < 2;
    document.getElementById("page-next").disabled = !nextCursor;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (reportId) await renderReport();
  } catch (error) {
    if (error.status === 401) return signOut("that token is not accepted");
    if (error.status === 422 && cursors.length > 1) cursors = [null];  // a stale cursor
    showError(error.message);
  }
}

// Poll now, unless a poll is in flight: then once more right after it answers.
async function refresh() {
  if (polling) {
    pollAgain = true;
    return;
  }
  clearTimeout(timer);
  polling = true;
  try {
    do {
      pollAgain = false;
      await poll();
    } while (pollAgain && token());
  } finally {
    polling = false;
    if (token()) timer = setTimeout(refresh, POLL_MS);
  }
}

function firstPage() {
  cursors = [null];
  refresh();
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = why || "";
}

async function start() {
  takeTokenFromFragment();
  if (!token()) return signOut("");
  try {
    role = (await api("GET", "/v1/whoami")).role;
  } catch (error) {
    return signOut(error.status === 401 ? "that token is not accepted" : error.message);
  }
  // Rows drawn for another token's role go; the next refresh draws them for this one.
  document.querySelector("#campaigns tbody").replaceChildren();
  document.getElementById("role").textContent = "signed in as " + role;
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  refresh();
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  start();
});
document.getElementById("report-close").addEventListener("click", () => {
  reportId = null;
  document.getElementById("report").hidden = true;
});
document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  firstPage();
});
document.getElementById("filter-state").addEventListener("change", firstPage);
document.getElementById("filter-name").addEventListener("change", firstPage);
document.getElementById("page-next").addEventListener("click", () => {
  if (nextCursor) cursors.push(nextCursor);
  refresh();
});
document.getElementById("page-prev").addEventListener("click", () => {
  if (cursors.length > 1) cursors.pop();
  refresh();
});
window.addEventListener("hashchange", () => {
  if (/(?:^#|&)token=/.test(location.hash)) start();
});
start();
