-- The counters of state/redis.py: one atomic step per call. The arithmetic is documented in state/base.py;
-- state/memory.py is its twin, and both pass the same tests.
-- KEYS[i]: the counter of charge i, a hash: fixed {i = window index, v = used}, sliding {slot = amount}.
-- ARGV[1]: 'consume' | 'peek' (consume's answer, taking nothing) | 'refund'. ARGV[2]: now in ms, or '' for the server clock (so machines agree).
-- ARGV[4i-1 .. 4i+2]: amount, limit, window_ms, technique ('fixed' | 'sliding') of charge i; for 'refund' the
-- limit's place holds when that amount was consumed (ms), so one call carries refunds of many calls.
-- consume: check every charge, then apply all or none; returns 'now_ms ok_1 remaining_1 reset_ms_1 ...' as one
-- string (one reply to parse, and floats kept: number replies truncate them). refund: give amounts back to the window they were consumed
-- in while it counts, never below zero; a negative amount is charged now without a check; returns 0.
local SLOTS = 60
local EPSILON = 1e-9

local function clock()
  if ARGV[2] ~= '' then return tonumber(ARGV[2]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fits(used, amount, limit)
  if amount > 0 then return used + amount <= limit + EPSILON end
  return used + EPSILON < limit
end

local function slot_ms(window)
  return math.max(1, math.ceil(window / SLOTS))
end

-- Used amount and, for sliding counters, the live sub-windows oldest first (stale ones are deleted).
local function read(key, window, technique, now)
  if technique == 'fixed' then
    local f = redis.call('HMGET', key, 'i', 'v')
    if tonumber(f[1]) == math.floor(now / window) then return tonumber(f[2]) or 0, nil end
    return 0, nil
  end
  local low = math.floor((now - window) / slot_ms(window))
  local raw = redis.call('HGETALL', key)
  local slots, used, stale = {}, 0, {}
  for j = 1, #raw, 2 do
    local slot, amount = tonumber(raw[j]), tonumber(raw[j + 1])
    if slot < low then
      stale[#stale + 1] = raw[j]
    else
      slots[#slots + 1] = {slot, amount}
      used = used + amount
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(slots, function(a, b) return a[1] < b[1] end)
  return used, slots
end

local function reset_ms(slots, used, amount, limit, window, ok, now)
  if slots == nil then return (math.floor(now / window) + 1) * window - now end
  local length = slot_ms(window)
  if ok then
    local oldest = math.floor(now / length)
    if #slots > 0 and slots[1][1] < oldest then oldest = slots[1][1] end
    return (oldest + 1) * length + window - now
  end
  local freed = 0
  for _, pair in ipairs(slots) do
    freed = freed + pair[2]
    if fits(used - freed, amount, limit) then return (pair[1] + 1) * length + window - now end
  end
  return window
end

local function add(key, amount, window, technique, now)
  if technique == 'fixed' then
    local index = math.floor(now / window)
    if tonumber(redis.call('HGET', key, 'i')) ~= index then redis.call('HSET', key, 'i', index, 'v', 0) end
    redis.call('HINCRBYFLOAT', key, 'v', amount)
    redis.call('PEXPIRE', key, (index + 1) * window - now + 1000)
  else
    local length = slot_ms(window)
    redis.call('HINCRBYFLOAT', key, math.floor(now / length), amount)
    redis.call('PEXPIRE', key, window + length + 1000)
  end
end

local function give_back(key, field, amount)
  local held = tonumber(redis.call('HGET', key, field))
  if held ~= nil then redis.call('HSET', key, field, string.format('%.17g', math.max(0, held - amount))) end
end

local function charges()
  local list = {}
  for i, key in ipairs(KEYS) do
    local base = 4 * i - 1
    list[i] = {key = key, amount = tonumber(ARGV[base]), limit = tonumber(ARGV[base + 1]),
               window = tonumber(ARGV[base + 2]), technique = ARGV[base + 3]}
  end
  return list
end

local function consume(now, take)
  local list, all_ok = charges(), take
  for _, c in ipairs(list) do
    c.used, c.slots = read(c.key, c.window, c.technique, now)
    c.ok = fits(c.used, c.amount, c.limit)
    all_ok = all_ok and c.ok
  end
  local out = {string.format('%d', now)}
  for _, c in ipairs(list) do
    local after = c.used
    if all_ok then
      add(c.key, c.amount, c.window, c.technique, now)
      after = after + c.amount
    end
    out[#out + 1] = c.ok and '1' or '0'
    out[#out + 1] = string.format('%.17g', math.max(0, c.limit - after))
    out[#out + 1] = string.format('%d', reset_ms(c.slots, c.used, c.amount, c.limit, c.window, c.ok, now))
  end
  return table.concat(out, ' ')
end

local function refund(now)
  for _, c in ipairs(charges()) do
    local at = c.limit
    if c.amount < 0 then
      add(c.key, -c.amount, c.window, c.technique, now)
    elseif c.technique == 'fixed' then
      if tonumber(redis.call('HGET', c.key, 'i')) == math.floor(at / c.window) then
        give_back(c.key, 'v', c.amount)
      end
    else
      local length = slot_ms(c.window)
      local slot = math.floor(at / length)
      if slot >= math.floor((now - c.window) / length) then give_back(c.key, tostring(slot), c.amount) end
    end
  end
  return 0
end

if ARGV[1] == 'consume' or ARGV[1] == 'peek' then return consume(clock(), ARGV[1] == 'consume') end
return refund(clock())
