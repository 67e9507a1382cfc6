-- A slot for a request that has no claim of its own: a retry or a re-send.
-- KEYS: meta pace pace_log account_pace account_pace_log account_hold
-- ARGV: pace_interval pace_burst pace_window account_interval account_burst account_window
-- USES: pace
return string.format('%.0f', pace_take(K.pace, K.pace_log, K.account_pace, K.account_pace_log,
  K.account_hold, campaign_pace_rule(K.meta, A.pace_interval, A.pace_burst, A.pace_window),
  pace_rule(A.account_interval, A.account_burst, A.account_window)))
