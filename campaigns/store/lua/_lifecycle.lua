-- Shared by the scripts that change a campaign's state.
local function num(v) if v == false or v == nil then return 0 end return tonumber(v) end
local function set_state(meta, running, cooldown, cid, state, now)
  redis.call('HSET', meta, 'state', state, 'updated_at', now)
  if state == '${state_running}' then redis.call('SADD', running, cid) else redis.call('SREM', running, cid) end
  redis.call('ZREM', cooldown, cid)
  if state == '${state_completed}' or state == '${state_cancelled}' then redis.call('HSET', meta, 'finished_at', now) end
end
local function halt_for_review(meta, running, cooldown, cid, now, message)
  redis.call('HSET', meta, 'halt_code', '${halt_in_doubt_review}', 'halt_message', message)
  set_state(meta, running, cooldown, cid, '${state_halted}', now)
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
