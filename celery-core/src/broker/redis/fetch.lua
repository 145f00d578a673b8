-- FETCH: pops up to ARGV[1] messages from the lists in KEYS[3..] and records
-- each in kombu's `unacked` hash (KEYS[1]) and `unacked_index` zset (KEYS[2])
-- in the same atomic step, so no kill -9 can fall between the pop and the
-- record (kombu's BRPOP-then-MULTI can lose a message there).
-- ARGV[2]: the fetch time (unix seconds); ARGV[3]: this fetch's id, to make
-- a missing or duplicate delivery tag unique; ARGV[4..]: the queue of each
-- list. Returns a flat list of (tag, envelope, queue) triples. A message that
-- is not even JSON gets an empty tag and no bookkeeping: it can only be
-- rejected, and kombu's sweep could not restore it anyway.

-- A kombu envelope ends with its "properties" object. Finding the three
-- fields we need with plain substring searches costs well under a
-- microsecond; decoding the ~1 KB document with cjson (or even one Lua
-- pattern with %s* over it) costs ~10 us per message inside Redis' single
-- thread. Other layouts (compact JSON) fall back to cjson.
local function string_field(raw, key, init)
  local _, stop = string.find(raw, '"' .. key .. '": "', init, true)
  if not stop then return nil end
  local close = string.find(raw, '"', stop + 1, true)
  if not close then return nil end
  local value = string.sub(raw, stop + 1, close - 1)
  if string.find(value, '\\', 1, true) then return nil end
  return value
end

local function fields(raw)
  local start = string.find(raw, '"properties": {', 1, true)
  if start then
    local tag = string_field(raw, 'delivery_tag', start)
    if tag and tag ~= '' then
      return true, tag, string_field(raw, 'exchange', start), string_field(raw, 'routing_key', start)
    end
  end
  local ok, envelope = pcall(cjson.decode, raw)
  if not ok or type(envelope) ~= 'table' then return false end
  local properties = envelope['properties']
  if type(properties) ~= 'table' then return true end
  local tag, exchange, routing_key = nil, nil, nil
  if type(properties['delivery_tag']) == 'string' then tag = properties['delivery_tag'] end
  local info = properties['delivery_info']
  if type(info) == 'table' then
    if type(info['exchange']) == 'string' then exchange = info['exchange'] end
    if type(info['routing_key']) == 'string' then routing_key = info['routing_key'] end
  end
  return true, tag, exchange, routing_key
end

local result = {}
local max = tonumber(ARGV[1])
local taken = 0
for i = 3, #KEYS do
  local queue = ARGV[i + 1]
  while taken < max do
    local raw = redis.call('RPOP', KEYS[i])
    if not raw then break end
    taken = taken + 1
    local json, tag, exchange, routing_key = fields(raw)
    if json then
      exchange = exchange or ''
      routing_key = routing_key or queue
      -- A missing or duplicate tag would make two messages share one entry.
      if not tag or redis.call('HEXISTS', KEYS[1], tag) == 1 then
        tag = (tag or 'untagged') .. '~' .. ARGV[3] .. '~' .. taken
      end
      local entry = '[' .. raw .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(routing_key) .. ']'
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
      redis.call('HSET', KEYS[1], tag, entry)
    else
      tag = ''
    end
    table.insert(result, tag)
    table.insert(result, raw)
    table.insert(result, queue)
  end
  if taken >= max then break end
end
return result
