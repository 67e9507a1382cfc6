-- Write a new campaign in one step, or say it exists (same or different spec).
-- KEYS: meta contacts pending campaigns staging_contacts staging_pending
-- ARGV: fingerprint now campaign_id fields
-- fields: a JSON object of the meta hash's first values
local existing = redis.call('HGET', K.meta, 'fingerprint')
if existing then
  redis.call('DEL', K.staging_contacts, K.staging_pending)
  if existing == A.fingerprint then return 'exists' end
  return 'conflict'
end
if redis.call('EXISTS', K.staging_contacts) == 1 then redis.call('RENAME', K.staging_contacts, K.contacts) end
if redis.call('EXISTS', K.staging_pending) == 1 then redis.call('RENAME', K.staging_pending, K.pending) end
redis.call('HSET', K.meta, 'fingerprint', A.fingerprint, 'created_at', A.now, 'updated_at', A.now)
for field, value in pairs(cjson.decode(A.fields)) do redis.call('HSET', K.meta, field, value) end
redis.call('ZADD', K.campaigns, A.now, A.campaign_id)
return 'created'
