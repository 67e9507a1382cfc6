-- Book a final call: release its reservation, add its cost; schedule the contact's
-- next attempt when the campaign's retry policy names this final status. Idempotent.
-- KEYS: meta attempt unsettled account_live tries retry outbox
-- USES: lifecycle
-- ARGV: final_status billsec cost estimated currency now attempt_id mismatch
-- Redis does not roll back a script that errors half-way, so every argument and
-- every field a write depends on is checked first; a bad one returns
-- 'invalid:<name>' with nothing written. Numbers are digit strings of at most
-- 16 digits and at most 2^53-1, the most a Lua double holds exactly.
local MAX = 9007199254740991
local function count(v)
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^[0-9]+$') then return nil end
  local n = tonumber(v)
  if n == nil or n > MAX then return nil end
  return n
end
local function counter(v)
  if v == false or v == nil then return 0 end
  if #v > 17 or not string.match(v, '^%-?[0-9]+$') then return nil end
  local n = tonumber(v)
  if n == nil or n > MAX or n < -MAX then return nil end
  return n
end
local finals = {${final_call_statuses}}
if not finals[A.final_status] then return 'invalid:final_status' end
if not count(A.billsec) then return 'invalid:billsec' end
local cost = count(A.cost)
if not cost then return 'invalid:cost' end
if A.estimated ~= '0' and A.estimated ~= '1' then return 'invalid:estimated' end
if not string.match(A.currency, '^[A-Z][A-Z][A-Z]$') then return 'invalid:currency' end
if not count(A.now) then return 'invalid:now' end
if #A.mismatch > 256 then return 'invalid:currency_mismatch' end
local unsettled_type = redis.call('TYPE', K.unsettled)['ok']
if unsettled_type ~= 'zset' and unsettled_type ~= 'none' then return 'invalid:unsettled' end
local live_type = redis.call('TYPE', K.account_live)['ok']
if live_type ~= 'string' and live_type ~= 'none' then return 'invalid:account_live' end
if live_type == 'string' and not counter(redis.call('GET', K.account_live)) then
  return 'invalid:account_live'
end
local outbox_type = K.outbox and redis.call('TYPE', K.outbox)['ok'] or 'none'
if outbox_type ~= 'stream' and outbox_type ~= 'none' then return 'invalid:outbox' end
local status = redis.call('HGET', K.attempt, 'status')
if status ~= '${attempt_accepted}' then return status or 'unknown' end
if redis.call('HGET', K.attempt, 'settled') == '1' then return 'duplicate' end
local reserved = count(redis.call('HGET', K.attempt, 'reserved') or '0')
if not reserved then return 'invalid:reserved' end
local m = redis.call('HMGET', K.meta, 'reserved', 'spent', 'live', 'settled', 'settled_estimated')
for i = 1, 5 do if not counter(m[i]) then return 'invalid:campaign_counters' end end
if counter(m[2]) + cost > MAX then return 'invalid:spent_overflow' end
-- The retry rule ({status: [after_ms, max_attempts]}, campaigns/domain/policy.py):
-- decided before the first write. max_attempts counts every attempt, the first
-- included; no retry is due at or after the schedule's end_at, nor once the
-- campaign is over.
local retry_due = nil
local policy = redis.call('HGET', K.meta, 'retry_policy')
if policy then
  local ok, rules = pcall(cjson.decode, policy)
  if not ok or type(rules) ~= 'table' then return 'invalid:retry_policy' end
  local rule = rules[A.final_status]
  local state = redis.call('HGET', K.meta, 'state')
  if type(rule) == 'table' and state ~= '${state_completed}' and state ~= '${state_cancelled}' then
    local index = redis.call('HGET', K.attempt, 'contact')
    local tries = tonumber(redis.call('HGET', K.tries, index or '') or '0') or 0
    local due = tonumber(A.now) + (tonumber(rule[1]) or 0)
    local end_at = tonumber(redis.call('HGET', K.meta, 'end_at') or '0') or 0
    if index and tries < (tonumber(rule[2]) or 0) and (end_at == 0 or due < end_at) then
      retry_due = due
    end
  end
end
redis.call('HSET', K.attempt, 'settled', '1', 'final_status', A.final_status, 'billsec', A.billsec,
  'cost', A.cost, 'cost_estimated', A.estimated, 'cost_currency', A.currency, 'settled_at', A.now)
if A.mismatch ~= '' then redis.call('HSET', K.attempt, 'currency_mismatch', A.mismatch) end
if cost > reserved then redis.call('HSET', K.attempt, 'over_reservation', '1') end
redis.call('HINCRBY', K.meta, 'reserved', -reserved)
redis.call('HINCRBY', K.meta, 'spent', A.cost)
redis.call('HINCRBY', K.meta, 'live', -1)
redis.call('DECR', K.account_live)
redis.call('HINCRBY', K.meta, 'settled', 1)
if A.estimated == '1' then redis.call('HINCRBY', K.meta, 'settled_estimated', 1) end
redis.call('ZREM', K.unsettled, A.attempt_id)
if retry_due then
  local group = redis.call('HGET', K.attempt, 'group') or '0'
  redis.call('ZADD', K.retry, retry_due, group .. '|' .. redis.call('HGET', K.attempt, 'contact'))
  redis.call('HSET', K.attempt, 'retry_at', string.format('%.0f', retry_due))
  redis.call('HINCRBY', K.meta, 'retries', 1)
end
outbox_add(K.outbox, {'event_id', A.attempt_id .. ':settled', 'type', 'attempt.final',
  'campaign_id', string.match(A.attempt_id, '^[^:]+'), 'attempt_id', A.attempt_id,
  'call_id', redis.call('HGET', K.attempt, 'call_id') or '', 'status', A.final_status,
  'error_code', '', 'error_message', '', 'billsec', A.billsec, 'cost', A.cost,
  'currency', A.currency, 'cost_estimated', A.estimated, 'at', A.now})
if cost > reserved then return 'over_reservation' end
return 'ok'
