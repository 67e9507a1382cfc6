-- Merge one staged `dnc import` into the do-not-call list, all or nothing.
-- KEYS: dnc staging
-- ARGV:
-- Atomic, so the claim sees either none of the import or all of it. Into an
-- empty list the staging set is renamed (O(1); PERSIST drops its staging TTL);
-- otherwise its members are added a page at a time, O(size of the import),
-- never O(size of the list). Returns {numbers in the import, new to the list,
-- list size after}.
local staged = redis.call('SCARD', K.staging)
local added = 0
if staged > 0 and redis.call('EXISTS', K.dnc) == 0 then
  redis.call('RENAME', K.staging, K.dnc)
  redis.call('PERSIST', K.dnc)
  added = staged
elseif staged > 0 then
  local cursor = '0'
  repeat
    local page = redis.call('SSCAN', K.staging, cursor, 'COUNT', 1000)
    cursor = page[1]
    if #page[2] > 0 then
      added = added + redis.call('SADD', K.dnc, unpack(page[2]))
    end
  until cursor == '0'
  redis.call('DEL', K.staging)
else
  redis.call('DEL', K.staging)
end
return {staged, added, redis.call('SCARD', K.dnc)}
