-- Check running and the lease, claim the next contact and reserve its worst case.
-- KEYS: meta pending tries unresolved lease attempts running cooldown contacts pace pace_log account_pace account_pace_log account_hold account_live
-- ARGV: attempt_prefix campaign_id lease_token now review_message budget_message pace_interval pace_burst pace_window account_interval account_burst account_window max_live
-- The budget rule is campaigns.domain.lifecycle.budget_allows; the messages come
-- from there too ({remaining} and {worst_case} are filled in here). The pace is
-- checked last, so a slot is only ever taken for a contact that can be claimed.
-- USES: lifecycle pace
local meta = K.meta
local state = redis.call('HGET', meta, 'state')
if state ~= '${state_running}' then return {'not_running', state or ''} end
if redis.call('GET', K.lease) ~= A.lease_token then return {'lease_lost', state} end
local budget = num(redis.call('HGET', meta, 'budget'))
local reserved = num(redis.call('HGET', meta, 'reserved'))
local spent = num(redis.call('HGET', meta, 'spent'))
local worst = num(redis.call('HGET', meta, 'worst_case'))
if redis.call('LLEN', K.pending) == 0 then
  if redis.call('ZCARD', K.unresolved) > 0 then return {'empty', state} end
  if num(redis.call('HGET', meta, 'in_doubt')) > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message)
    return {'needs_review', '${state_halted}'}
  end
  set_state(meta, K.running, K.cooldown, A.campaign_id, '${state_completed}', A.now)
  return {'${state_completed}', '${state_completed}'}
end
-- Attempts in doubt hold a live slot and their reservation until an operator
-- resolves them; when nothing else will free up, waiting would be forever.
local in_doubt = num(redis.call('HGET', meta, 'in_doubt'))
local live = num(redis.call('HGET', meta, 'live'))
if live >= num(redis.call('HGET', meta, 'max_in_flight')) then
  if live - in_doubt <= 0 and in_doubt > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message)
    return {'needs_review', '${state_halted}'}
  end
  return {'in_flight_full', state}
end
if spent + reserved + worst > budget then
  if reserved - num(redis.call('HGET', meta, 'in_doubt_reserved')) > 0 then
    return {'budget_wait', state}
  end
  if in_doubt > 0 then
    halt_for_review(meta, K.running, K.cooldown, A.campaign_id, A.now, A.review_message)
    return {'needs_review', '${state_halted}'}
  end
  redis.call('HSET', meta, 'halt_code', '${halt_budget_exhausted}', 'halt_message',
    fill(A.budget_message, {remaining = budget - spent, worst_case = worst}))
  set_state(meta, K.running, K.cooldown, A.campaign_id, '${state_halted}', A.now)
  return {'${halt_budget_exhausted}', '${state_halted}'}
end
local max_live = tonumber(A.max_live)
if max_live > 0 and num(redis.call('GET', K.account_live)) >= max_live then
  return {'account_live_full', state}
end
local wait = pace_take(K.pace, K.pace_log, K.account_pace, K.account_pace_log, K.account_hold,
  pace_rule(A.pace_interval, A.pace_burst, A.pace_window),
  pace_rule(A.account_interval, A.account_burst, A.account_window))
if wait > 0 then return {'pace_wait', state, string.format('%.0f', wait)} end
local index = redis.call('LPOP', K.pending)
local try = redis.call('HINCRBY', K.tries, index, 1)
local attempt_id = string.format('${attempt_id_format}', A.campaign_id, tonumber(index), try)
local contact = redis.call('HGET', K.contacts, index)
redis.call('HSET', A.attempt_prefix .. attempt_id,
  'attempt_id', attempt_id, 'campaign_id', A.campaign_id, 'contact', index, 'contact_json', contact,
  'status', '${attempt_sending}', 'reserved', worst, 'created_at', A.now)
redis.call('RPUSH', K.attempts, attempt_id)
redis.call('ZADD', K.unresolved, A.now, attempt_id)
redis.call('HINCRBY', meta, 'reserved', worst)
redis.call('HINCRBY', meta, 'live', 1)
redis.call('INCR', K.account_live)
return {'claimed', state, attempt_id, contact, index, worst}
