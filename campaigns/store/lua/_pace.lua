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

-- 0: a request may start now (and is counted); else microseconds to wait,
-- with the campaign's slot held (in Redis, so another worker continues it).
local function pace_take(c_key, c_log, a_key, a_log, hold_key, c_rule, a_rule)
  local now = pace_now()
  local hold = tonumber(redis.call('GET', hold_key) or '0') or 0
  local slot = tonumber(redis.call('HGET', c_key, 'held') or '')
  if not slot then
    slot = math.max(now, tonumber(redis.call('HGET', c_key, 'tat') or '0') or 0, hold)
    if a_rule.interval > 0 then
      slot = math.max(slot, tonumber(redis.call('HGET', a_key, 'tat') or '0') or 0)
      redis.call('HSET', a_key, 'tat', string.format('%.0f', slot + a_rule.interval))
      redis.call('PEXPIRE', a_key, math.ceil(a_rule.window / 1000) + 60000)
    end
    redis.call('HSET', c_key, 'tat', string.format('%.0f', slot + c_rule.interval),
      'held', string.format('%.0f', slot))
    redis.call('PEXPIRE', c_key, math.ceil(math.max(c_rule.window, c_rule.interval) / 1000) + 60000)
  end
  local wait = math.max(math.max(slot, hold) - now, pace_log_wait(c_log, c_rule, now),
    pace_log_wait(a_log, a_rule, now))
  if wait > 0 then return wait end
  pace_log_push(c_log, c_rule, now)
  pace_log_push(a_log, a_rule, now)
  redis.call('HDEL', c_key, 'held')
  return 0
end
