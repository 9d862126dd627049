reap(KEYS[1], ARGV[1], ARGV[2])
local nicks = present(KEYS[1], ARGV[1])
local cap = tonumber(ARGV[3])
local shown = {}
for i, nick in ipairs(nicks) do
  if cap >= 0 and i > cap then break end
  shown[i] = nick
end
return {#nicks, shown}
