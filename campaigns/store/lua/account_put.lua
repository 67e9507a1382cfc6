-- Cache an account document (balance or usage) unless a newer one was seen.
-- KEYS: key newest
-- ARGV: at_ms document ttl_ms
-- "Newer" is the document's own time (a webhook's timestamp, a fetch's clock),
-- remembered in K.newest beyond the document's short TTL: a late webhook never
-- brings back an older balance, even after the cached one expired.
local newest = tonumber(redis.call('GET', K.newest) or '0') or 0
if newest > tonumber(A.at_ms) then return 0 end
redis.call('SET', K.newest, A.at_ms, 'EX', 86400)
redis.call('SET', K.key, A.document, 'PX', A.ttl_ms)
return 1
