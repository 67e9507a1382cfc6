-- Change a campaign's terms (budget, pacing, schedule, calling window, name) and
-- record each change in its history, in one step: a claim sees the old terms or
-- the new ones, never a mix. The budget is never set below what the campaign spent
-- plus what it holds (campaigns.domain.lifecycle.budget_floor); the states it may
-- change in are lifecycle.BUDGET_CHANGE_STATES (passed as allowed).
-- The other terms were merged by the caller over the stored spec it read
-- (expected_spec): if that is no longer the stored one, nothing changes ('stale':
-- the caller reads again). They set the meta fields the claim reads (fields, a
-- JSON object of strings; clear, comma-separated fields removed), bump 'terms' (a
-- dispatch run that started under older terms stops claiming and hands over, so
-- everything it read at its start is read again) and, with a new rate
-- (pace_interval, microseconds), move the campaign's next slot to one interval
-- after its last request (no slot held at the old rate is kept).
-- KEYS: meta history pace pace_log
-- ARGV: allowed now expected_spec spec fields clear pace_interval budget budget_entry change_entry history_limit
-- Returns {'ok', old_budget, spent, reserved, state, halt_code, terms}, {'missing'},
-- {'refused', state}, {'stale'} or {'below', spent, reserved}.
local state = redis.call('HGET', K.meta, 'state')
if not state then return {'missing'} end
local allowed = false
for s in string.gmatch(A.allowed, '[^,]+') do if s == state then allowed = true end end
if not allowed then return {'refused', state} end
if A.expected_spec ~= '' and redis.call('HGET', K.meta, 'spec') ~= A.expected_spec then
  return {'stale'}
end
local spent = redis.call('HGET', K.meta, 'spent') or '0'
local reserved = redis.call('HGET', K.meta, 'reserved') or '0'
local old = redis.call('HGET', K.meta, 'budget') or '0'
-- Integer micros up to 9e15: exact in Lua's doubles.
if A.budget ~= '' and tonumber(spent) + tonumber(reserved) > tonumber(A.budget) then
  return {'below', spent, reserved}
end
if A.budget ~= '' then
  redis.call('HSET', K.meta, 'budget', A.budget)
  -- budget_entry is the JSON object without its closing brace; the amounts are
  -- appended as written (cjson would print a large integer in exponent form).
  redis.call('RPUSH', K.history, A.budget_entry .. ',"before":{"budget_micros":'
    .. string.format('%d', tonumber(old)) .. '},"after":{"budget_micros":' .. A.budget .. '}}')
end
if A.spec ~= '' then
  redis.call('HSET', K.meta, 'spec', A.spec)
  for name, value in pairs(cjson.decode(A.fields)) do redis.call('HSET', K.meta, name, value) end
  for name in string.gmatch(A.clear, '[^,]+') do redis.call('HDEL', K.meta, name) end
  redis.call('HINCRBY', K.meta, 'terms', 1)
  if A.pace_interval ~= '' and redis.call('EXISTS', K.pace) == 1 then
    local last = redis.call('LINDEX', K.pace_log, 0)
    redis.call('HDEL', K.pace, 'held')
    if last then
      redis.call('HSET', K.pace, 'tat', string.format('%.0f', tonumber(last) + tonumber(A.pace_interval)))
    end
  end
  redis.call('RPUSH', K.history, A.change_entry)
end
redis.call('HSET', K.meta, 'updated_at', A.now)
redis.call('LTRIM', K.history, -tonumber(A.history_limit), -1)
return {'ok', old, spent, reserved, state, redis.call('HGET', K.meta, 'halt_code') or '',
  redis.call('HGET', K.meta, 'terms') or '0'}
