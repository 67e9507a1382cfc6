-- The schedule's end_at has passed: record up to `limit` contacts that will not be
-- called as expired (parked by the frequency cap: capped). Chunked, so a million
-- contacts never block Redis; returns how many are left (-1: not ours to do).
-- KEYS: meta pending tries attempts lease retry parked contacts
-- ARGV: attempt_prefix campaign_id lease_token now limit
-- USES: lifecycle policy
if redis.call('HGET', K.meta, 'state') ~= '${state_running}' then return -1 end
if redis.call('GET', K.lease) ~= A.lease_token then return -1 end
local end_at = num(redis.call('HGET', K.meta, 'end_at'))
if end_at == 0 or tonumber(A.now) < end_at then return -1 end
local budget = tonumber(A.limit)
local function record(index, group, status, note)
  never_sent(A.attempt_prefix, A.campaign_id, K.meta, K.tries, K.attempts, K.contacts, index, group,
    status, A.now, note)
  budget = budget - 1
end
for g = 0, group_count(K.meta) - 1 do
  local key = pending_key(K.pending, g)
  while budget > 0 do
    local index = redis.call('LPOP', key)
    if not index then break end
    record(index, tostring(g), '${attempt_expired}', 'the schedule ended before this attempt')
  end
end
for _, pair in ipairs({{K.retry, '${attempt_expired}', 'the schedule ended before this retry'},
    {K.parked, '${attempt_capped}', 'at the calls-per-number cap until the schedule ended'}}) do
  if budget > 0 then
    for _, member in ipairs(redis.call('ZRANGE', pair[1], 0, budget - 1)) do
      local group, index = split_member(member)
      redis.call('ZREM', pair[1], member)
      record(index, group, pair[2], pair[3])
    end
  end
end
return contacts_left(K.meta, K.pending, K.retry, K.parked)
