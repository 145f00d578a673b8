-- One header task of a chord has finished: record its result once, and
-- claim the right to send the body if it was the last. The same keys and
-- rules as Celery 5.7's CHORD_PART_RETURN_LUA (celery/backends/redis.py), so
-- Python and Rust workers count one chord together.
--
-- KEYS: .j (results), .t (size diff), .s (size), .d (seen), group key, .c (claim)
-- ARGV: task id, encoded [1, id, state, result], ordered ('1': sorted set
--       scored by group_index), group_index, expires, group expires,
--       claim expires, claim token
-- Returns {results so far, size diff, size, 1 if this call claimed the body}
-- or {-1, 0, 0, 0} once the chord is done.
local results, diff_key, size_key, seen_key, group_key, claim_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local task_id, entry, ordered, index = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expires, group_expires = tonumber(ARGV[5]), tonumber(ARGV[6])
local claim_expires, token = tonumber(ARGV[7]), ARGV[8]

-- A late duplicate of a header task must not bring a finished chord back.
if redis.call('GET', claim_key) == 'done' then
  return {-1, 0, 0, 0}
end

-- A header task can run twice (acks late, redelivered): count it once,
-- keyed by id and index since a frozen signature may be reused in a header.
local seen = task_id .. ':' .. index
if redis.call('SISMEMBER', seen_key, seen) == 0 then
  if ordered == '1' then
    redis.call('ZADD', results, index, entry)
  else
    redis.call('RPUSH', results, entry)
  end
  redis.call('SADD', seen_key, seen)
end

local count
if ordered == '1' then
  count = redis.call('ZCOUNT', results, '-inf', '+inf')
else
  count = redis.call('LLEN', results)
end

if expires > 0 then
  for _, key in ipairs({results, diff_key, size_key, seen_key}) do
    redis.call('EXPIRE', key, expires)
  end
  if group_expires > 0 then
    redis.call('EXPIRE', group_key, group_expires)
  end
end

local diff = redis.call('GET', diff_key)
local size = redis.call('GET', size_key)
local claimed = 0
if size and count == tonumber(size) + tonumber(diff or 0) then
  if redis.call('SET', claim_key, token, 'NX', 'EX', claim_expires) then
    claimed = 1
  end
end
return {count, diff, size, claimed}
