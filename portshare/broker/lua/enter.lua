reap(KEYS[1], ARGV[1], ARGV[4])
local mine = KEYS[1] .. ':' .. ARGV[2]
local added = redis.call('SADD', mine, ARGV[3])
redis.call('SADD', KEYS[1], ARGV[2])
touch(mine, tonumber(ARGV[5])); touch(KEYS[1], tonumber(ARGV[5]))
if added == 1 and not elsewhere(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then
  if ARGV[6] == '' then redis.call('HDEL', usersOf(KEYS[1]), ARGV[3]) end
  nameUser(KEYS[1], ARGV[3], ARGV[6], tonumber(ARGV[5]))
  announce(KEYS[1], ARGV[4], 'join', ARGV[3])
  return 1
end
return 0
