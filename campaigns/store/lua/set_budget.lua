-- Set a campaign's budget, never below what it spent plus what it holds, and
-- record the change in its history, in one step (claims see old or new, never both).
-- The floor is campaigns.domain.lifecycle.budget_floor; the states it may change
-- in are lifecycle.BUDGET_CHANGE_STATES (passed as allowed).
-- KEYS: meta history
-- ARGV: budget allowed now entry history_limit
-- Returns {'ok', old, spent, reserved, state, halt_code}, {'missing'},
-- {'refused', state} or {'below', spent, reserved}.
local state = redis.call('HGET', K.meta, 'state')
if not state then return {'missing'} end
local allowed = false
for s in string.gmatch(A.allowed, '[^,]+') do if s == state then allowed = true end end
if not allowed then return {'refused', state} end
local spent = redis.call('HGET', K.meta, 'spent') or '0'
local reserved = redis.call('HGET', K.meta, 'reserved') or '0'
local old = redis.call('HGET', K.meta, 'budget') or '0'
-- Integer micros up to 9e15: exact in Lua's doubles.
if tonumber(spent) + tonumber(reserved) > tonumber(A.budget) then
  return {'below', spent, reserved}
end
redis.call('HSET', K.meta, 'budget', A.budget, 'updated_at', A.now)
-- entry is the JSON object without its closing brace; the amounts are appended as
-- written (cjson would print a large integer in exponent form).
local entry = A.entry .. ',"before":{"budget_micros":' .. string.format('%d', tonumber(old))
  .. '},"after":{"budget_micros":' .. A.budget .. '}}'
redis.call('RPUSH', K.history, entry)
redis.call('LTRIM', K.history, -tonumber(A.history_limit), -1)
return {'ok', old, spent, reserved, state, redis.call('HGET', K.meta, 'halt_code') or ''}
