-- Shared by the scripts that move contacts between zone groups and lists, and record
-- outcomes that never reached the provider (suppressed, expired, capped).
-- Group 0's list is the campaign's `pending` key; group G's is `pending:G`.
local function pending_key(base, group)
  if group == nil or group == false or group == '' or group == '0' or group == 0 then return base end
  return base .. ':' .. group
end
-- Retry and parked members are 'G|index'.
local function split_member(member)
  local bar = string.find(member, '|', 1, true)
  return string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
end
local function group_count(meta)
  local n = tonumber(redis.call('HGET', meta, 'groups') or '1') or 1
  if n < 1 then return 1 end
  return n
end
-- Contacts still to call: in the group lists, waiting for a retry, or parked by the cap.
local function contacts_left(meta, base, retry, parked)
  local total = redis.call('ZCARD', retry) + redis.call('ZCARD', parked)
  for g = 0, group_count(meta) - 1 do total = total + redis.call('LLEN', pending_key(base, g)) end
  return total
end
-- An attempt row that never reached the provider: no request, no reservation, no key used.
local function never_sent(prefix, cid, meta, tries, attempts, contacts, index, group, status, now, note)
  local try = redis.call('HINCRBY', tries, index, 1)
  local attempt_id = string.format('${attempt_id_format}', cid, tonumber(index), try)
  redis.call('HSET', prefix .. attempt_id, 'attempt_id', attempt_id, 'campaign_id', cid,
    'contact', index, 'contact_json', redis.call('HGET', contacts, index) or '{}', 'status', status,
    'reserved', 0, 'created_at', now, 'recorded_at', now, 'group', group, 'error_message', note)
  redis.call('RPUSH', attempts, attempt_id)
  redis.call('HINCRBY', meta, status, 1)
  return attempt_id
end
