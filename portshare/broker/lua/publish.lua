local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], ARGV[1])
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], offset .. '-0',
           'n', ARGV[6], 't', ARGV[7], 'ts', ARGV[8])
local ttl = tonumber(ARGV[3])
touch(KEYS[1], ttl); touch(KEYS[2], ttl); touch(KEYS[3], ttl); touch(KEYS[5], ttl)
redis.call('ZADD', KEYS[4], nowMs(), ARGV[4])
redis.call('PUBLISH', ARGV[5], 'm|' .. epoch .. '|' .. offset .. '|' .. ARGV[8] .. '|' .. ARGV[9])
return {epoch, offset}
