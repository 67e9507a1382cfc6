-- Append one chunk of a submit's contacts to its staging keys; returns how many.
-- KEYS: staging_contacts staging_pending
-- ARGV: first contacts groups ttl
-- contacts: contact JSON documents joined by "\n" (JSON text never holds a raw
-- newline), indexes first, first + 1, ...: one argument, not two per contact,
-- so the submitting process does not pack a million arguments.
-- groups: each contact's zone group, comma separated, in the same order (the
-- contact policy's calling window in the recipient's zones); '' puts every
-- contact in group 0, whose list is staging_pending itself.
-- USES: policy
local first = tonumber(A.first)
local index = first
local fields = {}
local lists = {}
local touched = {}
local next_group = string.gmatch(A.groups, '[0-9]+')
local function flush()
  if #fields > 0 then redis.call('HSET', K.staging_contacts, unpack(fields)) end
  for key, indexes in pairs(lists) do
    redis.call('RPUSH', key, unpack(indexes))
    touched[key] = true
  end
  fields, lists = {}, {}
end
local pending = 0
for doc in string.gmatch(A.contacts, '[^\n]+') do
  local name = string.format('%d', index)
  fields[#fields + 1] = name
  fields[#fields + 1] = doc
  local key = pending_key(K.staging_pending, A.groups ~= '' and next_group() or '0')
  local list = lists[key]
  if not list then list = {} lists[key] = list end
  list[#list + 1] = name
  index = index + 1
  pending = pending + 1
  if pending == 1000 then flush() pending = 0 end
end
flush()
redis.call('EXPIRE', K.staging_contacts, A.ttl)
for key, _ in pairs(touched) do redis.call('EXPIRE', key, A.ttl) end
return index - first
