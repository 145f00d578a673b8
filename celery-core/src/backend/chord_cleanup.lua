-- The body is sent: forget the chord's counters and leave a 'done' mark so
-- a late duplicate of a header task cannot start it again (Celery 5.7's
-- CHORD_CLEANUP_LUA, same keys).
-- KEYS: .c, .j, .t, .s, .d   ARGV: token, seconds to keep 'done'
-- Returns 1 if our claim was still there.
local claim_key = KEYS[1]
local token, done_expires = ARGV[1], tonumber(ARGV[2])
if redis.call('GET', claim_key) ~= token then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
if done_expires and done_expires > 0 then
  redis.call('SET', claim_key, 'done', 'EX', done_expires)
end
return 1
