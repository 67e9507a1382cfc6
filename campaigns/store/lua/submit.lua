-- Write a new campaign in one step, or say it exists (same or different spec).
-- KEYS: meta contacts pending campaigns staging_contacts staging_pending suppress staging_suppress
-- ARGV: fingerprint now campaign_id fields
-- fields: a JSON object of the meta hash's first values; its `groups` (zone groups,
-- campaigns/domain/policy.py) says how many pending lists were staged: group 0's
-- is staging_pending, group G's staging_pending:G, renamed to pending and pending:G.
-- USES: policy
local values = cjson.decode(A.fields)
local groups = tonumber(values['groups'] or '1') or 1
local existing = redis.call('HGET', K.meta, 'fingerprint')
if existing then
  redis.call('DEL', K.staging_contacts, K.staging_pending, K.staging_suppress)
  for g = 1, groups - 1 do redis.call('DEL', pending_key(K.staging_pending, g)) end
  if existing == A.fingerprint then return 'exists' end
  return 'conflict'
end
if redis.call('EXISTS', K.staging_contacts) == 1 then redis.call('RENAME', K.staging_contacts, K.contacts) end
for g = 0, groups - 1 do
  local staged = pending_key(K.staging_pending, g)
  if redis.call('EXISTS', staged) == 1 then redis.call('RENAME', staged, pending_key(K.pending, g)) end
end
if redis.call('EXISTS', K.staging_suppress) == 1 then redis.call('RENAME', K.staging_suppress, K.suppress) end
redis.call('HSET', K.meta, 'fingerprint', A.fingerprint, 'created_at', A.now, 'updated_at', A.now)
for field, value in pairs(values) do redis.call('HSET', K.meta, field, value) end
redis.call('ZADD', K.campaigns, A.now, A.campaign_id)
return 'created'
