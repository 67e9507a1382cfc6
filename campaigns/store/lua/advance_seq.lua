-- Advance the dispatch sequence if this job is still the current one.
-- KEYS: meta
-- ARGV: expected_seq
if redis.call('HGET', K.meta, 'state') ~= '${state_running}' then return -1 end
if tonumber(redis.call('HGET', K.meta, 'dispatch_seq') or '0') ~= tonumber(A.expected_seq) then return -2 end
return redis.call('HINCRBY', K.meta, 'dispatch_seq', 1)
