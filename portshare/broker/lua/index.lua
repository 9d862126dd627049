local now = nowMs()
for i = 1, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    table.insert(args, now)
    table.insert(args, ARGV[j])
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
return #ARGV
