// The live campaign page: polls the API about once a second, no reloads, no libraries.
// One poll at a time: the next is scheduled a second after the last one answered, so
// a slow API never stacks requests. It asks for one page of the paged list (the rows
// it shows, filtered as the operator chose). The report view shows one page of the
// report and the outcome statistics the API counts; it re-reads them only when the
// campaign moved (or another page is asked for), never every row of a campaign.
// Every value from the API is put in the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
const PAGE_SIZE = 25;
const REPORT_PAGE_SIZE = 50;
const TOKEN_KEY = "campaigns-api-token";
let role = null;
let actions = {};
let reportId = null;
let reportSeen = null;  // the campaign's moves and the cursor of the page shown
let outcomesSeen = null;  // the campaign's moves when its outcomes were read
let outcomesDue = 0;  // not before (ms): the statistics are one pass over every call
let busy = false;
let timer = null;
let reportCache = { id: null, rows: [], outcomes: null };
let reportCursors = [null];  // the cursor of each report page seen: [0] is the first
let reportNext = null;
let confirming = null;  // the campaign whose cancel button asks "really cancel?"
const NOT_DIALLED = {
  suppressed: "on the do-not-call list or the campaign's suppress list",
  expired: "the schedule's end_at came first",
  capped: "the number was at the frequency cap until the end",
};
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

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(answer && answer.error ? answer.error.message : response.statusText);
    error.status = response.status;
    throw error;
  }
  return answer;
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
      // Cancel is final: the first click asks, the second does it.
      const asking = verb === "cancel" && confirming === campaign.campaign_id;
      const button = el("button", { type: "button", "data-action": verb },
        asking ? "really cancel?" : verb);
      // Only the buttons that can work in this state are shown.
      if (!(actions[verb] || []).includes(campaign.state)) continue;
      button.disabled = busy;
      button.addEventListener("click", () => {
        if (verb === "cancel" && !asking) {
          confirming = campaign.campaign_id;
          return refresh();
        }
        confirming = null;
        return act(verb, campaign.campaign_id);
      });
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

function paceNote(campaign) {
  // Calls in the last minute against the configured pace, and the ETA.
  const p = campaign.progress;
  if (!p) return "";
  const eta = campaign.eta ? ` · eta ${campaign.eta}` : "";
  const weight = p.weight !== undefined && p.weight !== 1 ? `, weight ${p.weight}` : "";
  const held = p.held_by ? ` · held by ${p.held_by}` : "";
  return el("div", { class: "pace muted", "data-held-by": p.held_by || "" },
    `${p.calls_last_minute} calls in the last minute (pace ${p.configured_calls_per_second}/s` +
    `${weight})${held}${eta}`);
}

function shown(campaign) {
  // The search box (ID or name) on the page shown; the state filter is the API's.
  const needle = document.getElementById("search").value.trim().toLowerCase();
  return !needle || campaign.campaign_id.toLowerCase().includes(needle) ||
    (campaign.name || "").toLowerCase().includes(needle);
}

function inMoney(text, currency) {
  // Stored halt messages say "N micros" to be exact; people read money.
  return text.replace(/\b(\d+) micros\b/g, (_, n) => money(Number(n), currency));
}

function row(campaign) {
  const halt = campaign.halt;
  const currency = campaign.money.currency;
  return el("tr", { "data-campaign": campaign.campaign_id, "data-state": campaign.state },
    el("td", {}, campaign.campaign_id),
    el("td", {}, el("span", { class: "state " + campaign.state }, campaign.state)),
    el("td", {}, progressBar(campaign.counts), paceNote(campaign)),
    el("td", {}, moneyBar(campaign.money)),
    el("td", { class: "halt" }, halt ? el("span", {}, el("b", {}, halt.code), " ",
      inMoney(halt.message, currency))
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
  // The page of rows shown and the outcome statistics are read again only when the
  // campaign's counts or money moved (the cards above them are drawn from the status
  // every poll); another page is read when the operator asks for it.
  const moved = JSON.stringify([id, status.state, status.counts, status.money]);
  const cursor = reportCursors[reportCursors.length - 1];
  const seen = JSON.stringify([moved, cursor]);
  if (reportCache.id !== id || seen !== reportSeen) {
    const base = `/v1/campaigns/${encodeURIComponent(id)}`;
    const query = new URLSearchParams({ limit: String(REPORT_PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api("GET", `${base}/report?${query}`);
    } catch (error) {
      if (error.status !== 422 || reportCursors.length < 2) throw error;
      reportCursors = [null];  // a stale cursor: the first page on the next poll
      return;
    }
    if (id !== reportId) return;
    const outcomes = reportCache.id === id ? reportCache.outcomes : null;
    reportCache = { id, rows: page.attempts, outcomes };
    reportNext = page.next_cursor;
    reportSeen = seen;
  }
  // The statistics cost one pass over the campaign's calls on the server: read
  // again when it moved, at most a tenth of the time (a 1 s pass: every 10 s),
  // and at once when its state changed (the final figures once it is over).
  const stale = !reportCache.outcomes || (moved !== outcomesSeen &&
    (JSON.parse(outcomesSeen)[1] !== status.state || Date.now() >= outcomesDue));
  if (stale) {
    const started = Date.now();
    const outcomes = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}/outcomes`);
    if (id !== reportId) return;
    outcomesDue = Date.now() + 9 * (Date.now() - started);
    outcomesSeen = moved;
    reportCache.outcomes = outcomes;
  }
  const rows = reportCache.rows;
  if (id !== reportId) return;
  const first = (reportCursors.length - 1) * REPORT_PAGE_SIZE;
  document.getElementById("report-page").textContent = rows.length
    ? `page ${reportCursors.length}: rows ${first + 1}-${first + rows.length}`
    : `page ${reportCursors.length}: no rows`;
  document.getElementById("report-prev").disabled = reportCursors.length < 2;
  document.getElementById("report-next").disabled = !reportNext;
  const m = status.money;
  const c = status.counts;
  document.getElementById("report-id").textContent = id;
  document.getElementById("summary").replaceChildren(
    card("state", status.state + (status.halt ? ` (${status.halt.code})` : "")),
    card("accepted calls", c.accepted),
    card("settled calls", c.settled),
    card("rejected attempts", c.rejected),
    card("in doubt", c.in_doubt),
    card("not dialled", Object.entries(status.not_dialled || {})
      .map(([why, n]) => `${n} ${why}`).join(" · ") || "0"),
    card("spent (settled)", money(m.spent_micros, m.currency)),
    card("reserved", money(m.reserved_micros, m.currency)),
    card("budget", money(m.budget_micros, m.currency)));
  const calls = [];
  const rejected = [];
  const doubt = [];
  const never = [];
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
    } else if (NOT_DIALLED[r.status]) {
      never.push(el("tr", {}, el("td", {}, r.ref), el("td", {}, r.to),
        el("td", {}, r.status), el("td", {}, NOT_DIALLED[r.status])));
    } else {
      doubt.push(el("tr", {}, el("td", {}, r.attempt_id), el("td", {}, r.to), el("td", {}, r.status)));
    }
  }
  document.getElementById("outcomes").replaceChildren(...outcomeCards(reportCache.outcomes));
  document.querySelector("#calls tbody").replaceChildren(...calls);
  document.querySelector("#rejected tbody").replaceChildren(...rejected);
  document.querySelector("#doubt tbody").replaceChildren(...doubt);
  document.querySelector("#notdialled tbody").replaceChildren(...never);
  document.getElementById("budget-form").hidden = role !== "operator";
  document.getElementById("budget-currency").textContent = m.currency;
}

function outcomeCards(outcomes) {
  // How the calls ended: answered, busy, no answer, failed; billed seconds and
  // spend per answered call, counted by the API over every call (GET .../outcomes).
  const count = (status) => outcomes.final_status[status] || 0;
  return [
    card("answered", outcomes.answered),
    card("busy", count("busy")),
    card("no answer", count("no_answer")),
    card("failed", count("failed") + count("canceled")),
    card("average billed s", outcomes.average_billsec ?? "-"),
    card("spend per answered call",
      money(outcomes.spend_per_answered_call_micros, outcomes.currency)),
  ];
}

async function setBudget(event) {
  event.preventDefault();
  const id = reportId;
  const amount = document.getElementById("budget-amount").value.trim();
  busy = true;
  showError(`budget ${id}…`);
  try {
    await api("PATCH", `/v1/campaigns/${encodeURIComponent(id)}`, { budget: amount });
    showError("");
  } catch (error) {
    showError(`budget ${id}: ${error.message}`);
  } finally {
    busy = false;
    refresh();
  }
}

function openReport(id) {
  reportId = id;
  reportCache = { id: null, rows: [], outcomes: null };  // opening (again) reads now
  reportSeen = null;
  outcomesSeen = null;
  outcomesDue = 0;
  reportCursors = [null];
  reportNext = null;
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
    const sort = document.getElementById("sort").value;
    const list = data.campaigns.filter(shown);
    if (sort === "state") list.sort((a, b) => a.state.localeCompare(b.state));
    if (sort === "id") list.sort((a, b) => a.campaign_id.localeCompare(b.campaign_id));
    document.querySelector("#campaigns tbody").replaceChildren(...list.map(row));
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
document.getElementById("budget-form").addEventListener("submit", setBudget);
document.getElementById("sort").addEventListener("change", () => refresh());
document.getElementById("search").addEventListener("input", () => refresh());
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
document.getElementById("report-next").addEventListener("click", () => {
  if (reportNext) reportCursors.push(reportNext);
  reportNext = null;  // one page on per answer, however fast the clicks
  document.getElementById("report-next").disabled = true;
  refresh();
});
document.getElementById("report-prev").addEventListener("click", () => {
  if (reportCursors.length > 1) reportCursors.pop();
  document.getElementById("report-prev").disabled = reportCursors.length < 2;
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
