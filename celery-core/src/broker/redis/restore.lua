-- RESTORE: puts unacked messages (tags in ARGV[3..]) back on their queue, as
-- kombu's restore does: marked `redelivered`, onto the priority list, RPUSH
-- (served next) or LPUSH (ARGV[2] == 'left', kombu's requeue). Only entries
-- fetched at or before ARGV[1] are touched, so a sweep never steals a message
-- whose owner has just refreshed it. KEYS: `unacked`, `unacked_index`.
-- Returns how many were restored. Atomic per call.
local restored = 0
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV do
  local tag = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], tag)
  if not score or tonumber(score) <= cutoff then
    local entry = redis.call('HGET', KEYS[1], tag)
    redis.call('ZREM', KEYS[2], tag)
    redis.call('HDEL', KEYS[1], tag)
    local ok, decoded = false, nil
    if entry then ok, decoded = pcall(cjson.decode, entry) end
    if ok and type(decoded) == 'table' and type(decoded[1]) == 'table' then
      local envelope, exchange, routing_key = decoded[1], decoded[2], decoded[3]
      local priority = 0
      if type(envelope['headers']) == 'table' then envelope['headers']['redelivered'] = true end
      local properties = envelope['properties']
      if type(properties) == 'table' then
        if type(properties['delivery_info']) == 'table' then properties['delivery_info']['redelivered'] = true end
        if type(properties['priority']) == 'number' then priority = properties['priority'] end
      end
      local queues = {}
      if type(exchange) ~= 'string' or exchange == '' then
        queues = {routing_key}
      else
        for _, member in ipairs(redis.call('SMEMBERS', '_kombu.binding.' .. exchange)) do
          local key, _, queue = string.match(member, '^(.-)\6\22(.-)\6\22(.*)$')
          if queue and (key == routing_key or key == '') then table.insert(queues, queue) end
        end
        if #queues == 0 then queues = {routing_key} end
      end
      local suffix = ''
      if priority >= 9 then suffix = '\6\0229' elseif priority >= 6 then suffix = '\6\0226' elseif priority >= 3 then suffix = '\6\0223' end
      local payload = cjson.encode(envelope)
      for _, queue in ipairs(queues) do
        if type(queue) == 'string' then
          if ARGV[2] == 'left' then redis.call('LPUSH', queue .. suffix, payload)
          else redis.call('RPUSH', queue .. suffix, payload) end
        end
      end
      restored = restored + 1
    end
  end
end
return restored
