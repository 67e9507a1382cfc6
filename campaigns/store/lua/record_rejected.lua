-- Record a refusal; a halt-class one halts the campaign too.
-- KEYS: meta attempt unresolved pending running cooldown account_live outbox
-- ARGV: kind code message now attempt_id campaign_id sent_to_prefix
-- USES: lifecycle policy sent_to
local status = redis.call('HGET', K.attempt, 'status')
if not status then return 'unknown' end
if status == '${attempt_rejected}' then return 'duplicate' end
if status ~= '${attempt_sending}' and status ~= '${attempt_in_doubt}' then return 'conflict' end
redis.call('HSET', K.attempt, 'status', '${attempt_rejected}', 'error_code', A.code, 'error_message', A.message,
  'recorded_at', A.now, 'reject_kind', A.kind)
redis.call('ZREM', K.unresolved, A.attempt_id)
sent_to_remove(A.sent_to_prefix, K.attempt, A.attempt_id)
local reserved = num(redis.call('HGET', K.attempt, 'reserved'))
redis.call('HINCRBY', K.meta, 'reserved', -reserved)
redis.call('HINCRBY', K.meta, 'live', -1)
redis.call('DECR', K.account_live)
if status == '${attempt_in_doubt}' then
  redis.call('HINCRBY', K.meta, 'in_doubt', -1)
  redis.call('HINCRBY', K.meta, 'in_doubt_reserved', -reserved)
end
redis.call('HINCRBY', K.meta, 'rejected', 1)
outbox_add(K.outbox, {'event_id', A.attempt_id .. ':rejected', 'type', 'attempt.final',
  'campaign_id', A.campaign_id, 'attempt_id', A.attempt_id, 'call_id', '', 'status', '${attempt_rejected}',
  'error_code', A.code, 'error_message', A.message, 'billsec', '0', 'cost', '0',
  'currency', redis.call('HGET', K.meta, 'currency') or '', 'at', A.now})
if A.kind ~= 'contact' then
  -- Back to the head of its zone group's list (group 0's is K.pending itself).
  redis.call('LPUSH', pending_key(K.pending, redis.call('HGET', K.attempt, 'group')),
    redis.call('HGET', K.attempt, 'contact'))
end
local current = redis.call('HGET', K.meta, 'state')
if A.kind == 'halt' and (current == '${state_running}' or current == '${state_paused}') then
  -- Also when paused meanwhile: the provider's refusal must survive a resume.
  redis.call('HSET', K.meta, 'halt_code', A.code, 'halt_message', A.message)
  set_state(K.meta, K.running, K.cooldown, A.campaign_id, '${state_halted}', A.now, K.outbox)
end
return 'ok'
