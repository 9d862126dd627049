local left = reap(KEYS[1], ARGV[1], ARGV[3])
local roomTtl, gcTtl = tonumber(ARGV[4]), tonumber(ARGV[5])
touch(KEYS[2], roomTtl); touch(KEYS[3], roomTtl); touch(KEYS[4], roomTtl)
touch(KEYS[5], roomTtl)
local mine = KEYS[1] .. ':' .. ARGV[2]
if redis.call('EXISTS', mine) == 1 then
  touch(mine, gcTtl); touch(KEYS[1], gcTtl); touch(usersOf(KEYS[1]), gcTtl)
end
return left
