-- Check running and the lease, apply the contact policy, claim the next contact and
-- reserve its worst case.
-- KEYS: meta pending tries unresolved lease attempts running cooldown contacts retry parked suppress dnc pace pace_log account_pace account_pace_log account_hold account_live outbox account_contenders account_weights account_share
-- ARGV: attempt_prefix freq_prefix campaign_id lease_token now review_message budget_message open_groups cap_max cap_window_ms skip_limit pace_interval pace_burst pace_window account_interval account_burst account_window max_live terms campaign_prefix
-- The budget rule is campaigns.domain.lifecycle.budget_allows; the messages come
-- from there too ({remaining} and {worst_case} are filled in here). The pace is
-- checked last, for the contact about to be claimed, so a slot is only ever taken
-- for a contact that can be claimed (one that must wait for it goes back first).
-- The contact policy (campaigns/domain/policy.py): nothing before the schedule's
-- start_at; at end_at the caller runs the expire script ('expire'); due retries and
-- parked contacts go back to the head of their group's list; contacts are popped
-- only from the groups whose window the caller found open (open_groups, comma
-- separated ids); a number on the account's do-not-call list or the campaign's
-- suppress list is recorded 'suppressed' and the next one is tried; a number at
-- the frequency cap (cap_max calls within cap_window_ms, every campaign) is parked
-- until its oldest call leaves the window. At most skip_limit contacts are passed
-- over per call ('skipped': call again). terms: the version of the campaign's
-- terms the caller read them at ('' : not checked); once change_terms.lua has
-- changed them the answer is 'terms_changed' and nothing is claimed. The account's
-- ceilings are shared by weight (_pace.lua's share_of): at the live-call limit, or
-- at its share of it while the others' shares are not yet taken, the answer is
-- 'account_live_full'; held by the account or its share, the campaign notes why.
-- USES: lifecycle pace policy
local meta = K.meta
local function leave() share_leave(K.account_contenders, K.account_weights, K.account_share, A.campaign_id) end
local state = redis.call('HGET', meta, 'state')
if state ~= '${state_running}' then leave() return {'not_running', state or ''} end
if redis.call('GET', K.lease) ~= A.lease_token then return {'lease_lost', state} end
if A.terms ~= '' and (redis.call('HGET', meta, 'terms') or '0') ~= A.terms then
  return {'terms_changed', state}
end
local now = tonumber(A.now)
local start_at = num(redis.call('HGET', meta, 'start_at'))
local end_at = num(redis.call('HGET', meta, 'end_at'))
if start_at > 0 and now < start_at then
  return {'wait', state, 'not_started', string.format('%.0f', start_at), ''}
end
local ended = end_at > 0 and now >= end_at
local groups = group_count(meta)
if not ended then
  for _, later in ipairs({K.retry, K.parked}) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', later, '-inf', now, 'LIMIT', 0, 100)) do
      local group, index = split_member(member)
      redis.call('LPUSH', pending_key(K.pending, group), index)
      redis.call('ZREM', later, member)
    end
  end
end
local left = contacts_left(meta, K.pending, K.retry, K.parked)
if ended and left > 0 then return {'expire', state} end
if left == 0 then leave() end
local budget = num(redis.call('HGET', meta, 'budget'))
local reserved = num(redis.call('HGET', meta, 'reserved'))
local spent = num(redis.call('HGET', meta, 'spent'))
local worst = num(redis.call('HGET', meta, 'worst_case'))
local in_doubt = num(redis.call('HGET', meta, 'in_doubt'))
local live = num(redis.call('HGET', meta, 'live'))
if left == 0 then
  if redis.call('ZCARD', K.unresolved) > 0 then return {'empty', state} end
  if in_doubt > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message, K.outbox)
    return {'needs_review', '${state_halted}'}
  end
  -- With a retry policy a live call may still end busy and come back.
  if not ended and redis.call('HEXISTS', meta, 'retry_policy') == 1 and live > 0 then
    return {'empty', state}
  end
  set_state(meta, K.running, K.cooldown, A.campaign_id, '${state_completed}', A.now, K.outbox)
  return {'${state_completed}', '${state_completed}'}
end
-- Attempts in doubt hold a live slot and their reservation until an operator
-- resolves them; when nothing else will free up, waiting would be forever.
if live >= num(redis.call('HGET', meta, 'max_in_flight')) then
  if live - in_doubt <= 0 and in_doubt > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message, K.outbox)
    return {'needs_review', '${state_halted}'}
  end
  return {'in_flight_full', state}
end
if spent + reserved + worst > budget then
  if reserved - num(redis.call('HGET', meta, 'in_doubt_reserved')) > 0 then
    return {'budget_wait', state}
  end
  if in_doubt > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message, K.outbox)
    return {'needs_review', '${state_halted}'}
  end
  redis.call('HSET', meta, 'halt_code', '${halt_budget_exhausted}', 'halt_message',
    fill(A.budget_message, {remaining = budget - spent, worst_case = worst}))
  set_state(meta, K.running, K.cooldown, A.campaign_id, '${state_halted}', A.now, K.outbox)
  return {'${halt_budget_exhausted}', '${state_halted}'}
end
local max_live = tonumber(A.max_live)
local c_rule = campaign_pace_rule(meta, A.pace_interval, A.pace_burst, A.pace_window)
local a_rule = pace_rule(A.account_interval, A.account_burst, A.account_window)
local share = share_of({contenders = K.account_contenders, weights = K.account_weights,
  share = K.account_share, id = A.campaign_id, prefix = A.campaign_prefix, max_live = max_live,
  own_live = 1}, meta, c_rule, a_rule)
if max_live > 0 then
  local account_live = num(redis.call('GET', K.account_live))
  if account_live >= max_live then
    pace_note_held(K.pace, 'account_ceiling', pace_now())
    return {'account_live_full', state}
  end
  if share.live >= 0 and live >= share.live and account_live + share.reserve >= max_live then
    pace_note_held(K.pace, 'weight_share', pace_now())
    return {'account_live_full', state}
  end
end
local open = {}
for g in string.gmatch(A.open_groups, '[0-9]+') do
  if tonumber(g) < groups then open[#open + 1] = g end
end
local cap_max, cap_window = tonumber(A.cap_max), tonumber(A.cap_window_ms)
local skipped = 0
while true do
  local index, group = nil, nil
  for _, g in ipairs(open) do
    index = redis.call('LPOP', pending_key(K.pending, g))
    if index then group = g break end
  end
  if not index and skipped > 0 then return {'skipped', state} end
  if not index then
    -- Nothing callable now: which groups wait for their window, and when the
    -- first retry or parked contact is due.
    local closed = {}
    for g = 0, groups - 1 do
      if #closed < 1000 and redis.call('LLEN', pending_key(K.pending, g)) > 0 then
        closed[#closed + 1] = tostring(g)
      end
    end
    leave()
    local reason, due = 'window', nil
    for _, pair in ipairs({{K.retry, 'retry'}, {K.parked, 'capped'}}) do
      local first = redis.call('ZRANGE', pair[1], 0, 0, 'WITHSCORES')
      if first[2] and (due == nil or tonumber(first[2]) < due) then
        due = tonumber(first[2])
        if #closed == 0 then reason = pair[2] end
      end
    end
    return {'wait', state, reason, due and string.format('%.0f', due) or '', table.concat(closed, ',')}
  end
  local contact = redis.call('HGET', K.contacts, index)
  local to = cjson.decode(contact)['to']
  local member = group .. '|' .. index
  local capped_key = A.freq_prefix .. to
  if redis.call('SISMEMBER', K.dnc, to) == 1 then
    never_sent(A.attempt_prefix, A.campaign_id, meta, K.tries, K.attempts, K.contacts, index, group,
      '${attempt_suppressed}', A.now, 'on the account do-not-call list')
  elseif redis.call('SISMEMBER', K.suppress, to) == 1 then
    never_sent(A.attempt_prefix, A.campaign_id, meta, K.tries, K.attempts, K.contacts, index, group,
      '${attempt_suppressed}', A.now, "on the campaign's suppress list")
  elseif cap_max > 0 and (function()
      redis.call('ZREMRANGEBYSCORE', capped_key, '-inf', now - cap_window)
      return redis.call('ZCARD', capped_key) >= cap_max
    end)() then
    local oldest = tonumber(redis.call('ZRANGE', capped_key, 0, 0, 'WITHSCORES')[2])
    redis.call('ZADD', K.parked, oldest + cap_window + 1, member)
  else
    local wait = pace_take(K.pace, K.pace_log, K.account_pace, K.account_pace_log, K.account_hold,
      c_rule, a_rule, share.rate)
    if wait > 0 then
      redis.call('LPUSH', pending_key(K.pending, group), index)
      return {'pace_wait', state, string.format('%.0f', wait)}
    end
    local try = redis.call('HINCRBY', K.tries, index, 1)
    local attempt_id = string.format('${attempt_id_format}', A.campaign_id, tonumber(index), try)
    redis.call('HSET', A.attempt_prefix .. attempt_id,
      'attempt_id', attempt_id, 'campaign_id', A.campaign_id, 'contact', index, 'contact_json', contact,
      'status', '${attempt_sending}', 'reserved', worst, 'created_at', A.now, 'group', group)
    redis.call('RPUSH', K.attempts, attempt_id)
    redis.call('ZADD', K.unresolved, A.now, attempt_id)
    redis.call('HINCRBY', meta, 'reserved', worst)
    redis.call('HINCRBY', meta, 'live', 1)
    redis.call('INCR', K.account_live)
    if cap_max > 0 then
      redis.call('ZADD', capped_key, now, attempt_id)
      redis.call('PEXPIRE', capped_key, cap_window)
    end
    return {'claimed', state, attempt_id, contact, index, worst}
  end
  skipped = skipped + 1
  if skipped >= tonumber(A.skip_limit) then return {'skipped', state} end
end
