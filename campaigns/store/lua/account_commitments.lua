-- Every campaign's reserved and spent money, for the account gate (read only).
-- KEYS: campaigns
-- ARGV: campaign_prefix
-- Returns {campaign, reserved, spent, spec fingerprint, ...} for campaigns that
-- reserve or spent anything.
local out = {}
for _, cid in ipairs(redis.call('ZRANGE', K.campaigns, 0, -1)) do
  local money = redis.call('HMGET', A.campaign_prefix .. cid .. ':meta', 'reserved', 'spent',
    'fingerprint')
  local reserved, spent = tonumber(money[1] or '0') or 0, tonumber(money[2] or '0') or 0
  if reserved ~= 0 or spent ~= 0 then
    out[#out + 1] = cid
    out[#out + 1] = money[1] or '0'
    out[#out + 1] = money[2] or '0'
    out[#out + 1] = money[3] or ''
  end
end
return out
