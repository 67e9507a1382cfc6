-- The schedule's end_at has passed: record up to `limit` contacts that will not be
-- called as expired (parked by the frequency cap: capped). Chunked, so a million
-- contacts never block Redis; returns how many are left (-1: not ours to do).
-- KEYS: meta pending tries lease retry parked unsent
-- ARGV: campaign_id lease_token now limit
-- A contact never dialled again needs no attempt hash: it is one entry of the
-- unsent list, 'status|index|try' (the try its next attempt would have had), from
-- which the store builds its report row (Store.attempts): a million expired
-- contacts cost a few bytes each, not an attempt's few hundred.
-- USES: lifecycle policy
if redis.call('HGET', K.meta, 'state') ~= '${state_running}' then return -1 end
if redis.call('GET', K.lease) ~= A.lease_token then return -1 end
local end_at = num(redis.call('HGET', K.meta, 'end_at'))
if end_at == 0 or tonumber(A.now) < end_at then return -1 end
local budget = tonumber(A.limit)
local entries = {}
local counts = {}
local function record(index, status)
  local try = (tonumber(redis.call('HGET', K.tries, index) or '0') or 0) + 1
  entries[#entries + 1] = status .. '|' .. index .. '|' .. string.format('%d', try)
  counts[status] = (counts[status] or 0) + 1
  budget = budget - 1
end
for g = 0, group_count(K.meta) - 1 do
  local key = pending_key(K.pending, g)
  while budget > 0 do
    local index = redis.call('LPOP', key)
    if not index then break end
    record(index, '${attempt_expired}')
  end
end
for _, pair in ipairs({{K.retry, '${attempt_expired}'}, {K.parked, '${attempt_capped}'}}) do
  if budget > 0 then
    for _, member in ipairs(redis.call('ZRANGE', pair[1], 0, budget - 1)) do
      local _, index = split_member(member)
      redis.call('ZREM', pair[1], member)
      record(index, pair[2])
    end
  end
end
for i = 1, #entries, 1000 do
  redis.call('RPUSH', K.unsent, unpack(entries, i, math.min(i + 999, #entries)))
end
for status, n in pairs(counts) do redis.call('HINCRBY', K.meta, status, n) end
return contacts_left(K.meta, K.pending, K.retry, K.parked)
