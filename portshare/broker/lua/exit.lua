local mine = KEYS[1] .. ':' .. ARGV[2]
local removed = redis.call('SREM', mine, ARGV[3])
if redis.call('SCARD', mine) == 0 then redis.call('SREM', KEYS[1], ARGV[2]) end
if removed == 1 and not elsewhere(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then
  announce(KEYS[1], ARGV[4], 'leave', ARGV[3])
  return 1
end
return 0
