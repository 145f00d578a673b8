-- Before sending a chord's body: keep the claim for long enough to publish,
-- or take it back if it lapsed while nobody else took it and the chord is
-- still there (Celery 5.7's CHORD_CLAIM_EXTEND_LUA, same keys).
-- KEYS: .c (claim), .s (size)   ARGV: token, seconds   Returns 1 if held.
local claim_key, size_key = KEYS[1], KEYS[2]
local token, seconds = ARGV[1], tonumber(ARGV[2])
local holder = redis.call('GET', claim_key)
if holder == token then
  return redis.call('EXPIRE', claim_key, seconds)
end
if not holder and redis.call('EXISTS', size_key) == 1 then
  return redis.call('SET', claim_key, token, 'EX', seconds, 'NX') and 1 or 0
end
return 0
