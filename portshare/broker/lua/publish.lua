local epoch, created = ensure(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[1],
                              tonumber(ARGV[4]))
local n = (#ARGV - 6) / 4
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
for i = 0, n - 1 do
  local a = 7 + 4 * i
  if ARGV[a + 3] == '' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], (first + i) .. '-0',
               'n', ARGV[a], 't', ARGV[a + 1], 'ts', ARGV[a + 2])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], (first + i) .. '-0',
               'n', ARGV[a], 't', ARGV[a + 1], 'ts', ARGV[a + 2], 'u', ARGV[a + 3])
  end
end
if created then touch(KEYS[3], tonumber(ARGV[4])) end
if n == 1 then
  redis.call('PUBLISH', ARGV[5], 'm|' .. epoch .. '|' .. first .. '|' .. ARGV[9] .. '|' .. ARGV[6])
else
  redis.call('PUBLISH', ARGV[5], 'b|' .. epoch .. '|' .. first .. '|' .. n .. '|' .. ARGV[6])
end
return {epoch, first}
