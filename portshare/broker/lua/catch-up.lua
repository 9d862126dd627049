local epoch = current(KEYS[1], KEYS[2], KEYS[4], ARGV[5])
if not epoch then return {false, 0, {}} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local from = tonumber(ARGV[2]) + 1
if epoch ~= ARGV[1] then from = 1 end
from = math.max(from, last - tonumber(ARGV[4]) + 1)
return {epoch, last, entries(KEYS[3], from, last, tonumber(ARGV[3]))}
