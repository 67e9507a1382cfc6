-- Shared by the scripts that change a campaign's state.
local function num(v) if v == false or v == nil then return 0 end return tonumber(v) end
-- The callbacks outbox (campaigns/store/callbacks.py): each event is appended by the
-- script that makes the change it reports, so neither exists without the other.
-- Capped (approximately) so an account without a receiver never grows without bound.
local OUTBOX_MAX = 100000
local function outbox_add(outbox, fields)
  if not outbox then return end
  redis.call('XADD', outbox, 'MAXLEN', '~', OUTBOX_MAX, '*', unpack(fields))
end
-- Call only once the halt code and message (if any) are written: the event carries them.
local function set_state(meta, running, cooldown, cid, state, now, outbox)
  local previous = redis.call('HGET', meta, 'state')
  redis.call('HSET', meta, 'state', state, 'updated_at', now)
  if state == '${state_running}' then redis.call('SADD', running, cid) else redis.call('SREM', running, cid) end
  redis.call('ZREM', cooldown, cid)
  if state == '${state_completed}' or state == '${state_cancelled}' then redis.call('HSET', meta, 'finished_at', now) end
  if outbox and previous ~= state then
    local n = redis.call('HINCRBY', meta, 'callback_events', 1)
    local halt = redis.call('HMGET', meta, 'halt_code', 'halt_message')
    outbox_add(outbox, {'event_id', cid .. ':state:' .. n, 'type', 'campaign.state_changed',
      'campaign_id', cid, 'from', previous or '', 'to', state, 'halt_code', halt[1] or '',
      'halt_message', halt[2] or '', 'at', now})
  end
end
local function halt_for_review(meta, running, cooldown, cid, now, message, outbox)
  redis.call('HSET', meta, 'halt_code', '${halt_in_doubt_review}', 'halt_message', message)
  set_state(meta, running, cooldown, cid, '${state_halted}', now, outbox)
end
-- An operator message from the domain layer, with {name} filled in from values
-- (whole numbers, written without an exponent).
local function fill(template, values)
  return (string.gsub(template, '{([%w_]+)}', function(name)
    local v = values[name]
    if v == nil then return nil end
    return string.format('%.0f', v)
  end))
end
