reap(KEYS[1], ARGV[1], ARGV[3])
local mine = KEYS[1] .. ':' .. ARGV[2]
local ttl = tonumber(ARGV[4])
local old = {}
for _, nick in ipairs(redis.call('SMEMBERS', mine)) do old[nick] = true end
local new, nicks = {}, {}
for i = 5, #ARGV - 1, 2 do
  new[ARGV[i]] = ARGV[i + 1]
  table.insert(nicks, ARGV[i])
end
redis.call('DEL', mine)
for i = 1, #nicks, 1000 do
  redis.call('SADD', mine, unpack(nicks, i, math.min(i + 999, #nicks)))
end
if #nicks > 0 then
  redis.call('SADD', KEYS[1], ARGV[2])
  touch(mine, ttl); touch(KEYS[1], ttl)
else
  redis.call('SREM', KEYS[1], ARGV[2])
end
local joins, leaves = {}, {}
for nick, user in pairs(new) do
  if not old[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(joins, nick)
    if user == '' then redis.call('HDEL', usersOf(KEYS[1]), nick) end
  end
  nameUser(KEYS[1], nick, user, ttl)
end
for nick in pairs(old) do
  if not new[nick] and not elsewhere(KEYS[1], ARGV[1], ARGV[2], nick) then
    table.insert(leaves, nick)
  end
end
table.sort(joins); table.sort(leaves)
for _, nick in ipairs(leaves) do announce(KEYS[1], ARGV[3], 'leave', nick) end
for _, nick in ipairs(joins) do announce(KEYS[1], ARGV[3], 'join', nick) end
return {#joins, #leaves}
