reap(KEYS[1], ARGV[1], ARGV[3])
local mine = KEYS[1] .. ':' .. ARGV[2]
local old = {}
for _, nick in ipairs(redis.call('SMEMBERS', mine)) do old[nick] = true end
local new = {}
for i = 5, #ARGV do new[ARGV[i]] = true end
redis.call('DEL', mine)
local n = 0
for i = 5, #ARGV, 1000 do
  redis.call('SADD', mine, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  n = n + 1
end
if n > 0 then
  redis.call('SADD', KEYS[1], ARGV[2])
  touch(mine, tonumber(ARGV[4])); touch(KEYS[1], tonumber(ARGV[4]))
else
  redis.call('SREM', KEYS[1], ARGV[2])
end
local joins, leaves = {}, {}
for nick in pairs(new) do
  if not old[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(joins, nick)
  end
end
for nick in pairs(old) do
  if not new[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(leaves, nick)
  end
end
table.sort(joins); table.sort(leaves)
for _, nick in ipairs(leaves) do redis.call('PUBLISH', ARGV[3], 'p|leave|' .. nick) end
for _, nick in ipairs(joins) do redis.call('PUBLISH', ARGV[3], 'p|join|' .. nick) end
return {#joins, #leaves}
