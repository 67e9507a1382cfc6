-- Extend a lease we still hold; never take back one that lapsed.
-- KEYS: lease
-- ARGV: token ttl_ms
if redis.call('GET', K.lease) == A.token then return redis.call('PEXPIRE', K.lease, A.ttl_ms) end
return 0
