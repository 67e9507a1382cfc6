-- A slot for a request that has no claim of its own: a retry or a re-send.
-- KEYS: meta pace pace_log account_pace account_pace_log account_hold account_contenders account_weights account_share
-- ARGV: pace_interval pace_burst pace_window account_interval account_burst account_window campaign_id campaign_prefix max_live
-- USES: pace
local c_rule = campaign_pace_rule(K.meta, A.pace_interval, A.pace_burst, A.pace_window)
local a_rule = pace_rule(A.account_interval, A.account_burst, A.account_window)
local share = share_of({contenders = K.account_contenders, weights = K.account_weights,
  share = K.account_share, id = A.campaign_id, prefix = A.campaign_prefix, max_live = tonumber(A.max_live),
  own_live = 1}, K.meta, c_rule, a_rule)
return string.format('%.0f', pace_take(K.pace, K.pace_log, K.account_pace, K.account_pace_log,
  K.account_hold, c_rule, a_rule, share.rate))
