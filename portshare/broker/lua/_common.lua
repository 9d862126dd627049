local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- keep a key for ttl ms more (ttl 0: forever)
local function touch(key, ttl)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end

-- the room's epoch; nil when the room has none, or lacks its sequence (a history without
-- both means nothing any more), or when its history is from before the current generation
-- (Redis restarted from a dataset that may have lost writes: see KeyLayout.generation).  The
-- generation is the caller's (ARGV), read once per connection: a room's script touches only
-- the room's keys (one Redis Cluster slot)
local function current(epochKey, seqKey, genKey, generation)
  local epoch = redis.call('GET', epochKey)
  if not epoch or redis.call('EXISTS', seqKey) == 0 then return nil end
  if (redis.call('GET', genKey) or '0') ~= generation then return nil end
  return epoch
end

-- the room's epoch, a new one (with sequence 0 and no history) when it has no current one;
-- a new room's keys get the room TTL (ttl ms; 0: none) at once, later refreshes are the
-- instances' periodic upkeep (touch.lua)
local function ensure(epochKey, seqKey, logKey, genKey, generation, newEpoch, ttl)
  local epoch = current(epochKey, seqKey, genKey, generation)
  if epoch then return epoch, false end
  redis.call('DEL', logKey)
  redis.call('SET', epochKey, newEpoch)
  redis.call('SET', seqKey, 0)
  redis.call('SET', genKey, generation)
  touch(epochKey, ttl); touch(seqKey, ttl); touch(genKey, ttl)
  return newEpoch, true
end

-- the stream entries with offsets from..last, at most count (count 0: all)
local function entries(logKey, from, last, count)
  if from > last then return {} end
  if count > 0 then
    return redis.call('XRANGE', logKey, from .. '-0', last .. '-0', 'COUNT', count)
  end
  return redis.call('XRANGE', logKey, from .. '-0', last .. '-0')
end

local function alive(base, id)
  return redis.call('EXISTS', base .. 'instance:' .. id) == 1
end

-- whether a live instance other than `self` lists nick in the room
local function elsewhere(here, base, self, nick)
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if id ~= self and alive(base, id)
        and redis.call('SISMEMBER', here .. ':' .. id, nick) == 1 then
      return true
    end
  end
  return false
end

-- the room's hash nick -> user id of its authenticated members, beside its here set
-- (P:{room}:here -> P:{room}:users)
local function usersOf(here)
  return string.sub(here, 1, -5) .. 'users'
end

-- publish a join or leave of nick on the room's channel: 'p|event|nick' for an anonymous
-- member, 'u|event|["nick","user"]' for one the users hash names (forgotten on its leave)
local function announce(here, channel, event, nick)
  local users = usersOf(here)
  local user = redis.call('HGET', users, nick)
  if event == 'leave' then redis.call('HDEL', users, nick) end
  if user then
    redis.call('PUBLISH', channel, 'u|' .. event .. '|' .. cjson.encode({nick, user}))
  else
    redis.call('PUBLISH', channel, 'p|' .. event .. '|' .. nick)
  end
end

-- name nick's user in the users hash ('' : an anonymous member, not named), kept ttl ms
local function nameUser(here, nick, user, ttl)
  if user == '' then return end
  local users = usersOf(here)
  redis.call('HSET', users, nick, user)
  touch(users, ttl)
end

-- forget the instances whose heartbeat expired; announce the nicks they leave
local function reap(here, base, channel)
  local gone = {}
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if not alive(base, id) then
      local key = here .. ':' .. id
      for _, nick in ipairs(redis.call('SMEMBERS', key)) do gone[nick] = true end
      redis.call('DEL', key)
      redis.call('SREM', here, id)
    end
  end
  local left = {}
  for nick in pairs(gone) do
    if not elsewhere(here, base, '', nick) then table.insert(left, nick) end
  end
  table.sort(left)
  for _, nick in ipairs(left) do announce(here, channel, 'leave', nick) end
  return #left
end

-- the nicks listed by live instances, sorted
local function present(here, base)
  local keys = {}
  for _, id in ipairs(redis.call('SMEMBERS', here)) do
    if alive(base, id) then table.insert(keys, here .. ':' .. id) end
  end
  if #keys == 0 then return {} end
  local nicks = redis.call('SUNION', unpack(keys))
  table.sort(nicks)
  return nicks
end
