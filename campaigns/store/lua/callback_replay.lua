-- Put a failed callback event back in the outbox, same event ID, for a new round
-- of deliveries; drop it from the failed events. Atomic, so it is never both.
-- KEYS: failed failed_index outbox log
-- ARGV: event_id now log_length
-- USES: lifecycle
local raw = redis.call('HGET', K.failed, A.event_id)
if not raw then return 'missing' end
local record = cjson.decode(raw)
outbox_add(K.outbox, record['fields'])
redis.call('HDEL', K.failed, A.event_id)
redis.call('ZREM', K.failed_index, A.event_id)
redis.call('LPUSH', K.log, cjson.encode({event_id = A.event_id, type = record['type'],
  result = 'replayed', at = tonumber(A.now)}))
redis.call('LTRIM', K.log, 0, tonumber(A.log_length) - 1)
return 'ok'
