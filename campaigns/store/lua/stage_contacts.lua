-- Append one chunk of a submit's contacts to its staging keys; returns how many.
-- KEYS: staging_contacts staging_pending
-- ARGV: first contacts ttl
-- contacts: contact JSON documents joined by "\n" (JSON text never holds a raw
-- newline), indexes first, first + 1, ...: one argument, not two per contact,
-- so the submitting process does not pack a million arguments.
local first = tonumber(A.first)
local index = first
local fields, indexes = {}, {}
local function flush()
  if #indexes == 0 then return end
  redis.call('HSET', K.staging_contacts, unpack(fields))
  redis.call('RPUSH', K.staging_pending, unpack(indexes))
  fields, indexes = {}, {}
end
for doc in string.gmatch(A.contacts, '[^\n]+') do
  local name = string.format('%d', index)
  fields[#fields + 1] = name
  fields[#fields + 1] = doc
  indexes[#indexes + 1] = name
  index = index + 1
  if #indexes == 1000 then flush() end
end
flush()
redis.call('EXPIRE', K.staging_contacts, A.ttl)
redis.call('EXPIRE', K.staging_pending, A.ttl)
return index - first
