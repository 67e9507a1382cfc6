-- Pacing, shared by claim.lua and pace.lua (rules: campaigns.domain.pacing).
-- A campaign holds at most one reserved slot (only its lease holder asks), so
-- campaigns waiting on the account ceiling are served in the order they asked:
-- round robin, none starved, and an idle campaign's share goes to the others.
-- Times are microseconds of the Redis clock, so workers' clocks never matter.
local function pace_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function pace_rule(interval, burst, window)
  return {interval = tonumber(interval), burst = tonumber(burst), window = tonumber(window)}
end

-- The campaign's own rule: once an operator changed its rate, the one
-- change_terms.lua keeps in its meta (so the new rate holds from the next request
-- on, whichever run or worker sends it, with whatever rule it read before);
-- until then the caller's, read from the spec.
local function campaign_pace_rule(meta, interval, burst, window)
  local kept = redis.call('HMGET', meta, 'pace_interval', 'pace_burst', 'pace_window')
  if kept[1] and kept[2] and kept[3] then return pace_rule(kept[1], kept[2], kept[3]) end
  return pace_rule(interval, burst, window)
end

local function pace_log_wait(log, rule, now)
  if rule.interval <= 0 then return 0 end
  if redis.call('LLEN', log) < rule.burst then return 0 end
  local ready = tonumber(redis.call('LINDEX', log, rule.burst - 1)) + rule.window
  if ready > now then return ready - now end
  return 0
end

local function pace_log_push(log, rule, now)
  if rule.interval <= 0 then return end
  redis.call('LPUSH', log, string.format('%.0f', now))
  redis.call('LTRIM', log, 0, rule.burst - 1)
  redis.call('PEXPIRE', log, math.ceil(rule.window / 1000) + 60000)
end

-- Shares of the account's ceilings by weight (campaigns.domain.sharing, the same
-- water-filling): the campaigns sending register here with their weight and
-- demands (own pace, max_in_flight) until a little after their last ask, and at
-- most once a second the levels are computed again. S: contenders (zset id ->
-- until, us), weights (hash id -> 'weight rate live'), share (hash: at, rate,
-- live, reserve), id, prefix (P:c:, for the others' live calls), max_live (0:
-- none), own_live (max_in_flight until the meta has it). Rates are calls per
-- second with the rules' margin (1e6 / interval), 0: no limit.
local function water_level(capacity, demands, weights)
  local total, weight_left, order = 0, 0, {}
  for i, d in ipairs(demands) do
    total = total + d
    weight_left = weight_left + weights[i]
    order[i] = i
  end
  if total <= capacity then return -1 end
  table.sort(order, function(x, y) return demands[x] / weights[x] < demands[y] / weights[y] end)
  local left = capacity
  for _, i in ipairs(order) do
    if demands[i] * weight_left > left * weights[i] then return left / weight_left end
    left = left - demands[i]
    weight_left = weight_left - weights[i]
  end
  return -1
end

local SHARE_EVERY = 1000000
local SHARE_KEEP = 3000000
local SHARE_HEADROOM = 0.99
local SHARE_LATE = 250000
-- The shares fill 99 % of the ceiling: filled to 100 %, requests due at random
-- moments would queue for the account's slots without end, and a queue serves
-- in the order asked, not by weight.

local function share_level(level, demand, weight)
  if level < 0 then return demand end
  return math.min(demand, level * weight)
end

-- Register the campaign, recompute the levels when due; returns its shares:
-- {rate (calls/s, 0: the ceiling does not bind it), live, reserve}.
local function share_of(S, meta, c_rule, a_rule)
  local account = a_rule.interval > 0 and 1000000 / a_rule.interval or 0
  if account <= 0 and S.max_live <= 0 then return {rate = 0, live = -1, reserve = 0} end
  local now = pace_now()
  local weight = tonumber(redis.call('HGET', meta, 'weight') or '1') or 1
  local own_rate = c_rule.interval > 0 and 1000000 / c_rule.interval or 0
  local own = own_rate > 0 and own_rate or math.huge
  local own_live = tonumber(redis.call('HGET', meta, 'max_in_flight') or S.own_live) or S.own_live
  local kept = redis.call('HMGET', S.share, 'at', 'rate', 'live', 'reserve')
  local rate_level = tonumber(kept[2] or '-1') or -1
  local keep = SHARE_KEEP
  if account > 0 and rate_level >= 0 then
    keep = math.max(keep, 3000000 / math.max(share_level(rate_level, own, weight), 1e-6))
  end
  local joined = redis.call('ZADD', S.contenders, now + keep, S.id)
  local before = redis.call('HGET', S.weights, S.id)
  local mine = string.format('%.17g %.17g %d', weight, own_rate, own_live)
  redis.call('HSET', S.weights, S.id, mine)
  -- Again at once when a campaign joins or its terms changed, else each second.
  if joined == 1 or before ~= mine or kept[1] == false
      or now - (tonumber(kept[1]) or 0) >= SHARE_EVERY then
    for _, gone in ipairs(redis.call('ZRANGEBYSCORE', S.contenders, '-inf', now)) do
      redis.call('HDEL', S.weights, gone)
    end
    redis.call('ZREMRANGEBYSCORE', S.contenders, '-inf', now)
    local ids = redis.call('ZRANGE', S.contenders, 0, -1)
    local rates, lives, weights, live_now = {}, {}, {}, {}
    for i, id in ipairs(ids) do
      local w, r, l = string.match(redis.call('HGET', S.weights, id) or '', '^(%S+) (%S+) (%S+)$')
      weights[i] = tonumber(w) or 1
      rates[i] = (tonumber(r) or 0) > 0 and tonumber(r) or math.huge
      lives[i] = tonumber(l) or 1
      live_now[i] = S.max_live > 0
        and (tonumber(redis.call('HGET', S.prefix .. id .. ':meta', 'live') or '0') or 0) or 0
    end
    rate_level = account > 0 and water_level(account * SHARE_HEADROOM, rates, weights) or -1
    local live_level, reserve = -1, 0
    if S.max_live > 0 then
      live_level = water_level(S.max_live, lives, weights)
      for i = 1, #ids do
        reserve = reserve + math.max(0, share_level(live_level, lives[i], weights[i]) - live_now[i])
      end
    end
    kept = {string.format('%.0f', now), string.format('%.17g', rate_level),
      string.format('%.17g', live_level), string.format('%.17g', math.floor(reserve))}
    redis.call('HSET', S.share, 'at', kept[1], 'rate', kept[2], 'live', kept[3], 'reserve', kept[4])
    redis.call('PEXPIRE', S.share, 60000)
    redis.call('PEXPIRE', S.contenders, 60000)
    redis.call('PEXPIRE', S.weights, 60000)
  end
  local live_level = tonumber(kept[3] or '-1') or -1
  local rate = 0
  if account > 0 and rate_level >= 0 and share_level(rate_level, own, weight) < own then
    rate = share_level(rate_level, own, weight)
  end
  return {rate = rate, live = live_level < 0 and -1 or share_level(live_level, own_live, weight),
    reserve = tonumber(kept[4] or '0') or 0}
end

-- A campaign with nothing to send now (done, waiting for its window, stopped)
-- leaves the contenders at once, so the others' shares grow with the next claim.
local function share_leave(contenders, weights, share, id)
  if redis.call('ZREM', contenders, id) == 1 then
    redis.call('HDEL', weights, id)
    redis.call('HSET', share, 'at', '0')
  end
end

-- Why a campaign got less than its pace: recorded with its pace for status.
local function pace_note_held(c_key, reason, now)
  redis.call('HSET', c_key, 'held_by', reason, 'held_at', string.format('%.0f', now))
  if redis.call('PTTL', c_key) < 120000 then redis.call('PEXPIRE', c_key, 120000) end
end

-- 0: a request may start now (and is counted); else microseconds to wait,
-- with the campaign's slot held once it is due (in Redis, so another worker
-- continues it). A campaign not yet due on its own schedule (its pace, or its
-- share of the ceiling: share_rate, calls/s, 0 when the ceiling does not hold
-- it) reserves nothing on the account's, so the account's slots go to the
-- campaigns that are due.
local function pace_take(c_key, c_log, a_key, a_log, hold_key, c_rule, a_rule, share_rate)
  local now = pace_now()
  local hold = tonumber(redis.call('GET', hold_key) or '0') or 0
  local slot = tonumber(redis.call('HGET', c_key, 'held') or '')
  if not slot then
    local own_tat = tonumber(redis.call('HGET', c_key, 'tat') or '0') or 0
    if own_tat > now and own_tat >= hold then
      if redis.call('HGET', c_key, 'by') ~= 'share' then return own_tat - now end
      -- Held by its share only: an account slot nobody waits for is taken
      -- (work-conserving) without moving the share's schedule; else it waits.
      local free = a_rule.interval > 0 and hold <= now
        and (tonumber(redis.call('HGET', a_key, 'tat') or '0') or 0) <= now
        and pace_log_wait(a_log, a_rule, now) == 0 and pace_log_wait(c_log, c_rule, now) == 0
      if not free then
        pace_note_held(c_key, 'weight_share', now)
        return own_tat - now
      end
      redis.call('HSET', a_key, 'tat', string.format('%.0f', now + a_rule.interval))
      redis.call('PEXPIRE', a_key, math.ceil(a_rule.window / 1000) + 60000)
      pace_log_push(c_log, c_rule, now)
      pace_log_push(a_log, a_rule, now)
      return 0
    end
    slot = math.max(now, own_tat, hold)
    if a_rule.interval > 0 then
      slot = math.max(slot, tonumber(redis.call('HGET', a_key, 'tat') or '0') or 0)
      redis.call('HSET', a_key, 'tat', string.format('%.0f', slot + a_rule.interval))
      redis.call('PEXPIRE', a_key, math.ceil(a_rule.window / 1000) + 60000)
    end
    local interval, by, base = c_rule.interval, 'own', slot
    if share_rate > 0 and math.ceil(1000000 / share_rate) > interval then
      interval, by = math.ceil(1000000 / share_rate), 'share'
      -- A share's schedule forgives some lateness (half an interval, at least
      -- SHARE_LATE: a run that handed over comes back a little after its slot,
      -- a sleep or a short queue for the account's slot overruns): its long-run
      -- rate is its share. The account's slot and window still hold every request.
      if own_tat > 0 then
        base = math.max(own_tat, slot - math.max(math.floor(interval / 2), SHARE_LATE))
      end
    end
    redis.call('HSET', c_key, 'tat', string.format('%.0f', base + interval),
      'held', string.format('%.0f', slot), 'by', by)
    redis.call('PEXPIRE', c_key, math.ceil(math.max(c_rule.window, interval) / 1000) + 60000)
  end
  local account_wait = math.max(math.max(slot, hold) - now, pace_log_wait(a_log, a_rule, now))
  local wait = math.max(account_wait, pace_log_wait(c_log, c_rule, now))
  if wait > 0 then
    if account_wait > 0 then pace_note_held(c_key, 'account_ceiling', now) end
    return wait
  end
  pace_log_push(c_log, c_rule, now)
  pace_log_push(a_log, a_rule, now)
  redis.call('HDEL', c_key, 'held')
  return 0
end
