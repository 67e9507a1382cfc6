-- Record the call ID the provider returned for an attempt. Idempotent.
-- KEYS: meta attempt unresolved unsettled calls pending account_live
-- ARGV: call_id now poll_due attempt_id sent_to_prefix create_answer
-- USES: policy sent_to
-- create_answer = '1': the dispatcher's own create request returned this ID, which
-- ends a run of create answers without a usable ID (meta garbage_streak).
local status = redis.call('HGET', K.attempt, 'status')
if not status then return 'unknown' end
if A.create_answer == '1' then redis.call('HDEL', K.meta, 'garbage_streak') end
if status == '${attempt_accepted}' then
  if redis.call('HGET', K.attempt, 'call_id') == A.call_id then return 'duplicate' end
  return 'conflict'
end
local owner = redis.call('HGET', K.calls, A.call_id)
if owner and owner ~= A.attempt_id then return 'call_id_taken' end
local result = 'ok'
local reserved = tonumber(redis.call('HGET', K.attempt, 'reserved') or '0')
if status == '${attempt_rejected}' then
  -- The provider placed the call after all (its answer to an earlier send
  -- arrived after a rejection). The call is real: record it, reserve for it
  -- again, and take the contact back out of pending if it was put there.
  redis.call('HINCRBY', K.meta, 'rejected', -1)
  redis.call('HINCRBY', K.meta, 'reserved', reserved)
  redis.call('HINCRBY', K.meta, 'live', 1)
  redis.call('INCR', K.account_live)
  result = 'late'
  if redis.call('HGET', K.attempt, 'reject_kind') ~= 'contact' then
    local pending = pending_key(K.pending, redis.call('HGET', K.attempt, 'group'))
    if redis.call('LREM', pending, 1, redis.call('HGET', K.attempt, 'contact')) == 0 then
      result = 'late_redialled'
    end
  end
  redis.call('HSET', K.attempt, 'late_accept', '1')
elseif status ~= '${attempt_sending}' and status ~= '${attempt_in_doubt}' then
  return 'conflict'
end
redis.call('HSET', K.attempt, 'status', '${attempt_accepted}', 'call_id', A.call_id, 'recorded_at', A.now)
redis.call('ZREM', K.unresolved, A.attempt_id)
sent_to_remove(A.sent_to_prefix, K.attempt, A.attempt_id)
redis.call('ZADD', K.unsettled, A.poll_due, A.attempt_id)
redis.call('HSET', K.calls, A.call_id, A.attempt_id)
redis.call('HINCRBY', K.meta, 'accepted', 1)
if status == '${attempt_in_doubt}' then
  redis.call('HINCRBY', K.meta, 'in_doubt', -1)
  redis.call('HINCRBY', K.meta, 'in_doubt_reserved', -reserved)
end
return result
