-- Attempts whose call is due for a poll, held off other pollers for a while.
-- KEYS: unsettled
-- ARGV: now hold_ms limit
local due = redis.call('ZRANGEBYSCORE', K.unsettled, '-inf', A.now, 'LIMIT', 0, A.limit)
for _, member in ipairs(due) do redis.call('ZADD', K.unsettled, A.now + A.hold_ms, member) end
return due
