-- A first stamp whose replicas did not acknowledge it in time: nothing was sent on
-- it, so take it back, and the attempt reads as never sent (the next run sends it
-- under its own key) instead of as a send whose answer was lost (in doubt).
-- KEYS: attempt
-- ARGV: attempt_id sent_at sent_to_prefix
-- USES: sent_to
-- Only the exact stamp is undone: the attempt still sending, stamped once, at
-- that time. A later send, or a record of any kind, leaves it as it is.
if redis.call('HGET', K.attempt, 'status') ~= '${attempt_sending}' then return 'kept' end
if redis.call('HGET', K.attempt, 'sends') ~= '1' then return 'kept' end
if redis.call('HGET', K.attempt, 'sent_at') ~= A.sent_at then return 'kept' end
sent_to_remove(A.sent_to_prefix, K.attempt, A.attempt_id)
redis.call('HDEL', K.attempt, 'request', 'first_sent_at', 'sent_at', 'sends')
return 'undone'
