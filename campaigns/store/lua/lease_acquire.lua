-- Take a campaign's dispatch lease if it is free (or already ours).
-- KEYS: lease
-- ARGV: token ttl_ms
local holder = redis.call('GET', K.lease)
if holder == false then
  redis.call('SET', K.lease, A.token, 'PX', A.ttl_ms) return 1
end
if holder == A.token then redis.call('PEXPIRE', K.lease, A.ttl_ms) return 1 end
return 0
