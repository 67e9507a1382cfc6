-- One atomic check-and-set of a campaign's state.
-- KEYS: meta running cooldown outbox
-- ARGV: campaign_id allowed_from to now halt_code halt_message cooldown_until required_halt_code
-- USES: lifecycle
local state = redis.call('HGET', K.meta, 'state')
if not state then return {'missing', ''} end
local allowed = false
for s in string.gmatch(A.allowed_from, '[^,]+') do if s == state then allowed = true end end
if not allowed then return {'refused', state} end
if A.required_halt_code ~= '' and redis.call('HGET', K.meta, 'halt_code') ~= A.required_halt_code then
  return {'refused', state}
end
if A.halt_code == '' then
  redis.call('HDEL', K.meta, 'halt_code', 'halt_message')
else
  redis.call('HSET', K.meta, 'halt_code', A.halt_code, 'halt_message', A.halt_message)
end
set_state(K.meta, K.running, K.cooldown, A.campaign_id, A.to, A.now, K.outbox)
if A.cooldown_until ~= '' then redis.call('ZADD', K.cooldown, A.cooldown_until, A.campaign_id) end
if A.to == '${state_running}' and not redis.call('HGET', K.meta, 'started_at') then
  redis.call('HSET', K.meta, 'started_at', A.now)
end
return {'ok', state}
