-- The last check before a create request leaves: still running, still ours, still
-- unresolved, and (for a first send) not on a do-not-call or suppress list.
-- KEYS: meta lease attempt unresolved dnc suppress account_live
-- ARGV: lease_token body now attempt_id fresh sent_to_prefix
-- USES: sent_to
-- A number put on the account's do-not-call list after its contact was claimed is
-- caught here: an attempt that no earlier send can have made a call ('fresh': its
-- first send, or a retry after an answer proving nothing was placed) is recorded
-- 'suppressed' (its reservation and live slot released), so nothing is dialled
-- after `dnc add` returns. A re-send of an attempt that may already be a call is
-- not a new dial (same Idempotency-Key): it goes on, so the call is found.
-- first_sent_at and sent_at (the last send) bound the window a lookup or a
-- creation event is matched in.
if redis.call('HGET', K.meta, 'state') ~= '${state_running}' then return 'not_running' end
if redis.call('GET', K.lease) ~= A.lease_token then return 'lease_lost' end
local status = redis.call('HGET', K.attempt, 'status')
if status ~= '${attempt_sending}' then return status or 'unknown' end
if A.fresh == '1' then
  local ok, contact = pcall(cjson.decode, redis.call('HGET', K.attempt, 'contact_json') or '')
  local to = ok and type(contact) == 'table' and contact['to'] or nil
  if type(to) == 'string' and (redis.call('SISMEMBER', K.dnc, to) == 1
      or redis.call('SISMEMBER', K.suppress, to) == 1) then
    local reserved = tonumber(redis.call('HGET', K.attempt, 'reserved') or '0') or 0
    redis.call('HSET', K.attempt, 'status', '${attempt_suppressed}', 'reserved', 0,
      'recorded_at', A.now, 'error_message', 'put on a do-not-call list before it was sent')
    redis.call('ZREM', K.unresolved, A.attempt_id)
    redis.call('HINCRBY', K.meta, 'reserved', -reserved)
    redis.call('HINCRBY', K.meta, 'live', -1)
    redis.call('DECR', K.account_live)
    redis.call('HINCRBY', K.meta, 'suppressed', 1)
    return '${attempt_suppressed}'
  end
end
if not redis.call('HGET', K.attempt, 'request') then redis.call('HSET', K.attempt, 'request', A.body) end
redis.call('HSETNX', K.attempt, 'first_sent_at', A.now)
redis.call('HSET', K.attempt, 'sent_at', A.now)
sent_to_add(A.sent_to_prefix, K.attempt, A.attempt_id, A.now)
redis.call('HINCRBY', K.attempt, 'sends', 1)
return 'ok'
