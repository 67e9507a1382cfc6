-- The provider said "slow down" (429 with Retry-After): no campaign starts a request before then.
-- KEYS: account_hold
-- ARGV: hold_us
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(A.hold_us)
if until_us > (tonumber(redis.call('GET', K.account_hold) or '0') or 0) then
  redis.call('SET', K.account_hold, string.format('%.0f', until_us), 'PX',
    math.ceil(tonumber(A.hold_us) / 1000) + 1000)
end
return string.format('%.0f', until_us)
