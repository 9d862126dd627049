local seen = redis.call('GET', KEYS[1])
if seen ~= ARGV[1] then
  if seen and ARGV[2] ~= '1' then redis.call('INCR', KEYS[2]) end
  redis.call('SET', KEYS[1], ARGV[1])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
