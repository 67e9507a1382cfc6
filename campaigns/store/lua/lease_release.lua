-- Let go of a lease if it is still ours.
-- KEYS: lease
-- ARGV: token
if redis.call('GET', K.lease) == A.token then return redis.call('DEL', K.lease) end
return 0
