-- Merge (a step of) one staged `dnc import` into the do-not-call list, atomically.
-- KEYS: dnc staging
-- ARGV: step
-- Into an empty list the whole staging set is renamed into place (O(1), at
-- once; PERSIST drops its staging TTL). Otherwise up to A.step numbers move per
-- call (SPOP then SADD), so an import of at most A.step numbers is merged in one
-- atomic step and a larger one in steps that each hold Redis briefly: the cost
-- is the size of the import, never of the list. Returns {new to the list, left
-- in staging, list size after}.
if redis.call('EXISTS', K.dnc) == 0 then
  if redis.call('EXISTS', K.staging) == 0 then return {0, 0, 0} end
  redis.call('RENAME', K.staging, K.dnc)
  redis.call('PERSIST', K.dnc)
  local listed = redis.call('SCARD', K.dnc)
  return {listed, 0, listed}
end
local popped = redis.call('SPOP', K.staging, tonumber(A.step))
local added = 0
for first = 1, #popped, 1000 do
  local last = math.min(first + 999, #popped)
  added = added + redis.call('SADD', K.dnc, unpack(popped, first, last))
end
return {added, redis.call('SCARD', K.staging), redis.call('SCARD', K.dnc)}
