-- The per-number index of attempts whose call ID is not known yet (keys.py
-- P:sent_to:N): a creation event that does not echo our attempt ID finds its
-- attempt here by the number it called. Kept by the scripts that stamp a send,
-- record an ID and reject; an attempt in doubt stays in it.
local SENT_TO_TTL_MS = 86400000
local function sent_to_key(prefix, attempt)
  local ok, contact = pcall(cjson.decode, redis.call('HGET', attempt, 'contact_json') or '')
  local to = ok and type(contact) == 'table' and contact['to'] or nil
  if type(to) ~= 'string' or to == '' then return nil end
  return prefix .. to
end
local function sent_to_add(prefix, attempt, id, now)
  local key = sent_to_key(prefix, attempt)
  if key then
    redis.call('ZADD', key, now, id)
    redis.call('PEXPIRE', key, SENT_TO_TTL_MS)
  end
end
local function sent_to_remove(prefix, attempt, id)
  local key = sent_to_key(prefix, attempt)
  if key then redis.call('ZREM', key, id) end
end
