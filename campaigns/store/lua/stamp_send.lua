-- The last check before a create request leaves: still running, still ours, still unresolved.
-- KEYS: meta lease attempt
-- ARGV: lease_token body now
if redis.call('HGET', K.meta, 'state') ~= '${state_running}' then return 'not_running' end
if redis.call('GET', K.lease) ~= A.lease_token then return 'lease_lost' end
local status = redis.call('HGET', K.attempt, 'status')
if status ~= '${attempt_sending}' then return status or 'unknown' end
if not redis.call('HGET', K.attempt, 'request') then redis.call('HSET', K.attempt, 'request', A.body) end
redis.call('HSET', K.attempt, 'sent_at', A.now)
redis.call('HINCRBY', K.attempt, 'sends', 1)
return 'ok'
