local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], ARGV[1])
local ttl = tonumber(ARGV[2])
touch(KEYS[1], ttl); touch(KEYS[2], ttl); touch(KEYS[3], ttl); touch(KEYS[5], ttl)
redis.call('ZADD', KEYS[4], nowMs(), ARGV[3])
local last = tonumber(redis.call('GET', KEYS[2]))
if ARGV[4] == '' then return {epoch, last, {}} end
local since = tonumber(ARGV[4])
local from = since + 1
if (ARGV[5] ~= '' and ARGV[5] ~= epoch) or since > last then from = 1 end
from = math.max(from, last - tonumber(ARGV[6]) + 1)
return {epoch, last, entries(KEYS[3], from, last, 0)}
