-- An attempt may or may not be a call: keep its reservation for an operator.
-- KEYS: meta attempt unresolved running cooldown outbox
-- ARGV: now attempt_id reason code halt campaign_id
-- USES: lifecycle
local status = redis.call('HGET', K.attempt, 'status')
if status ~= '${attempt_sending}' then return status or 'unknown' end
redis.call('HSET', K.attempt, 'status', '${attempt_in_doubt}', 'recorded_at', A.now, 'error_message', A.reason)
if A.code ~= '' then redis.call('HSET', K.attempt, 'error_code', A.code) end
redis.call('ZREM', K.unresolved, A.attempt_id)
redis.call('HINCRBY', K.meta, 'in_doubt', 1)
redis.call('HINCRBY', K.meta, 'in_doubt_reserved', num(redis.call('HGET', K.attempt, 'reserved')))
local state = redis.call('HGET', K.meta, 'state')
if A.halt == '1' and (state == '${state_running}' or state == '${state_paused}') then
  redis.call('HSET', K.meta, 'halt_code', A.code, 'halt_message', A.reason)
  set_state(K.meta, K.running, K.cooldown, A.campaign_id, '${state_halted}', A.now, K.outbox)
end
return 'ok'
