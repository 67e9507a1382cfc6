-- Add contacts to a campaign that is not over, with their zone groups, and record
-- it, in one step: a claim sees all of them or none. The caller dropped the
-- numbers the campaign already has, reading them when it held expected contacts;
-- if that count moved (another add), nothing changes ('stale': read again). The
-- do-not-call and suppress lists apply at the claim, as for submitted contacts.
-- KEYS: meta contacts pending history
-- ARGV: allowed expected docs groups zone_groups group_count estimated entry history_limit now
-- docs: canonical contact JSON, one per line; groups: each one's zone group,
-- comma separated ('' : all group 0). Returns {'ok', state, contacts},
-- {'missing'}, {'refused', state} or {'stale'}.
-- USES: policy
local state = redis.call('HGET', K.meta, 'state')
if not state then return {'missing'} end
local allowed = false
for s in string.gmatch(A.allowed, '[^,]+') do if s == state then allowed = true end end
if not allowed then return {'refused', state} end
local count = tonumber(redis.call('HGET', K.meta, 'contacts') or '0')
if count ~= tonumber(A.expected) then return {'stale'} end
local groups = {}
for g in string.gmatch(A.groups, '[^,]+') do groups[#groups + 1] = g end
local added = 0
for doc in string.gmatch(A.docs, '[^\n]+') do
  local index = count + added
  redis.call('HSET', K.contacts, index, doc)
  redis.call('RPUSH', pending_key(K.pending, groups[added + 1] or '0'), index)
  added = added + 1
end
redis.call('HSET', K.meta, 'contacts', count + added, 'updated_at', A.now)
redis.call('HINCRBY', K.meta, 'estimated', A.estimated)
if A.zone_groups ~= '' then
  redis.call('HSET', K.meta, 'zone_groups', A.zone_groups, 'groups', A.group_count)
end
redis.call('RPUSH', K.history, A.entry)
redis.call('LTRIM', K.history, -tonumber(A.history_limit), -1)
return {'ok', state, count + added}
