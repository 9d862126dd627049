local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs() - ttl) end
local out = {}
for _, room in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local tag = ARGV[1] .. '{' .. room .. '}:'
  local last = tonumber(redis.call('GET', tag .. 'seq') or '0')
  table.insert(out, room)
  table.insert(out, last)
  table.insert(out, #present(tag .. 'here', ARGV[1]))
end
return out
