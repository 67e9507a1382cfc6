-- Book a final call: release its reservation, add its cost. Idempotent.
-- KEYS: meta attempt unsettled
-- ARGV: final_status billsec cost estimated currency now attempt_id mismatch
local status = redis.call('HGET', K.attempt, 'status')
if status ~= '${attempt_accepted}' then return status or 'unknown' end
if redis.call('HGET', K.attempt, 'settled') == '1' then return 'duplicate' end
local reserved = tonumber(redis.call('HGET', K.attempt, 'reserved') or '0')
local cost = tonumber(A.cost)
redis.call('HSET', K.attempt, 'settled', '1', 'final_status', A.final_status, 'billsec', A.billsec,
  'cost', A.cost, 'cost_estimated', A.estimated, 'cost_currency', A.currency, 'settled_at', A.now)
if A.mismatch ~= '' then redis.call('HSET', K.attempt, 'currency_mismatch', A.mismatch) end
if cost > reserved then redis.call('HSET', K.attempt, 'over_reservation', '1') end
redis.call('HINCRBY', K.meta, 'reserved', -reserved)
redis.call('HINCRBY', K.meta, 'spent', cost)
redis.call('HINCRBY', K.meta, 'live', -1)
redis.call('HINCRBY', K.meta, 'settled', 1)
if A.estimated == '1' then redis.call('HINCRBY', K.meta, 'settled_estimated', 1) end
redis.call('ZREM', K.unsettled, A.attempt_id)
if cost > reserved then return 'over_reservation' end
return 'ok'
