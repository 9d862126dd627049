local epoch = current(KEYS[1], KEYS[2], KEYS[4], ARGV[4])
if not epoch then return {false, {}} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local from = math.max(tonumber(ARGV[1]) + 1, last - tonumber(ARGV[3]) + 1)
return {epoch, entries(KEYS[3], from, last, tonumber(ARGV[2]))}
