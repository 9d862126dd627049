local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2], ARGV[1], tonumber(ARGV[3]))
local last = tonumber(redis.call('GET', KEYS[2]))
if ARGV[4] == '' then return {epoch, last, {}} end
local since = tonumber(ARGV[4])
local from = since + 1
if (ARGV[5] ~= '' and ARGV[5] ~= epoch) or since > last then from = 1 end
from = math.max(from, last - tonumber(ARGV[6]) + 1)
return {epoch, last, entries(KEYS[3], from, last, 0)}
