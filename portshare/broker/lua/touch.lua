local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do touch(KEYS[i], ttl) end
return #KEYS
