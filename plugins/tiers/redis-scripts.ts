/**
 * The Lua scripts of the Redis limiter store: `charge` and `adjust` are each one atomic script, so
 * replicas never interleave inside a charge, and they read the Redis server's clock (`TIME`), so
 * replicas with skewed clocks agree. The arithmetic is MemoryLimiterStore's (./store.ts), step for
 * step in IEEE doubles; a differential test compares the two on random sequences.
 *
 * Keys (all passed in KEYS, so a prefix with a hash tag, `{agent-attr}:`, works on Redis Cluster):
 * - `<prefix>leases`: sorted set, owner → lease expiry (ms), expiring with the last lease. An
 *   owner is one process's epoch; a hold whose owner's lease has lapsed no longer counts and is
 *   dropped when next read.
 * - `<prefix>g:<meter>`: GCRA theoretical arrival time (ms, as %.17g), expiring at that time.
 * - `<prefix>w:<meter>`: hash; field `<end>` = what the window ending at `<end>` used (holds
 *   included), field `<end>|<owner>` = what that owner's calls in flight hold of it. Fields of
 *   ended windows are deleted when read; the key expires at its window's end.
 *
 * ARGV[1] is the caller's clock, or "" for the server's. `margin` (ms) is added to expiries when
 * the caller's clock is used, since then Redis expires keys by a clock the meters do not follow.
 * Numbers go back as strings (%.17g): Redis would truncate a Lua number to an integer.
 */

const prelude = `
local leases = KEYS[1]
local DAY = 86400000
local function fmt(x) return string.format('%.17g', x) end
local function clock(arg)
  local now = tonumber(arg)
  if now then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Days since 1970-01-01 <-> (year, month): Howard Hinnant's civil calendar algorithms.
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5)
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end
-- End of the UTC day or month that contains now.
local function window_end(calendar, now)
  local d = math.floor(now / DAY)
  if calendar == 'day' then return (d + 1) * DAY end
  local y, m = civil(d)
  if m == 12 then y, m = y + 1, 1 else m = m + 1 end
  return days_from_civil(y, m) * DAY
end
local function live(owner, now)
  local score = redis.call('ZSCORE', leases, owner)
  return score ~= false and score ~= nil and tonumber(score) > now
end
-- The window ending at end_: what it used and what live owners hold of it. Drops fields of ended
-- windows and the holds of owners whose lease lapsed (their amount leaves the total).
local function load_window(key, end_, now)
  local flat = redis.call('HGETALL', key)
  local used, held, dropped = 0, 0, 0
  for i = 1, #flat, 2 do
    local field, value = flat[i], tonumber(flat[i + 1])
    local sep = string.find(field, '|', 1, true)
    local field_end = tonumber(sep and string.sub(field, 1, sep - 1) or field)
    if field_end <= now then
      redis.call('HDEL', key, field)
    elseif field_end == end_ then
      if not sep then
        used = value
      elseif live(string.sub(field, sep + 1), now) then
        held = held + value
      else
        dropped = dropped + value
        redis.call('HDEL', key, field)
      end
    end
  end
  if dropped > 0 then
    used = math.max(0, used - dropped)
    redis.call('HSET', key, fmt(end_), fmt(used))
  end
  return used, held
end
local function expire_at(key, end_, now, margin)
  local ttl = math.ceil(end_ - now) + margin
  local current = redis.call('PTTL', key)
  if current < ttl then redis.call('PEXPIRE', key, ttl) end
end
-- Adds amount to a window and hold_change to what owner holds of it (never below zero).
local function apply_window(key, end_, amount, owner, hold_change, now, margin)
  local total = fmt(end_)
  local used = tonumber(redis.call('HGET', key, total)) or 0
  redis.call('HSET', key, total, fmt(math.max(0, used + amount)))
  if hold_change ~= 0 then
    local field = total .. '|' .. owner
    local held = (tonumber(redis.call('HGET', key, field)) or 0) + hold_change
    if held > 0 then redis.call('HSET', key, field, fmt(held)) else redis.call('HDEL', key, field) end
  end
  expire_at(key, end_, now, margin)
end
local function apply_gcra(key, limit, period, amount, now, margin)
  local interval = period / limit
  local tat = math.max(tonumber(redis.call('GET', key)) or now, now) + amount * interval
  if tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, fmt(tat), 'PX', math.ceil(tat - now) + margin)
  end
end
`;

/**
 * charge. ARGV: now, owner, fresh ("1": a new owner, register its lease), leaseMs, margin, then
 * per meter: kind ("g" | "w"), limit, periodMs | calendar, amount.
 * Returns {"lease"} when the owner's lease has lapsed (the caller takes a new owner and retries),
 * else {"ok", now, refused index or "", then per meter three values: gcra: stored TAT or "", "",
 * ""; window: used, held, end}.
 */
export const chargeScript = `${prelude}
local now = clock(ARGV[1])
local owner, fresh, lease, margin = ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
if not fresh and not live(owner, now) then return {'lease'} end
redis.call('ZADD', leases, now + lease, owner)
if redis.call('PTTL', leases) < lease + margin then redis.call('PEXPIRE', leases, lease + margin) end
local n = (#ARGV - 5) / 4
local out = {'ok', fmt(now), ''}
local refused = nil
for i = 1, n do
  local at = 5 + (i - 1) * 4
  local kind, limit, p, amount = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3], tonumber(ARGV[at + 4])
  local key = KEYS[i + 1]
  local fits
  if kind == 'g' then
    local period = tonumber(p)
    local stored = tonumber(redis.call('GET', key))
    local interval = period / limit
    local tat = math.max(stored or now, now)
    fits = tat + math.min(amount, limit) * interval - now <= period + 1e-6
    table.insert(out, stored and fmt(stored) or '')
    table.insert(out, '')
    table.insert(out, '')
  else
    local end_ = window_end(p, now)
    local used, held = load_window(key, end_, now)
    fits = used + amount <= limit
    table.insert(out, fmt(used))
    table.insert(out, fmt(held))
    table.insert(out, fmt(end_))
  end
  if not fits and refused == nil then refused = i - 1 end
end
if refused ~= nil then
  out[3] = tostring(refused)
  return out
end
for i = 1, n do
  local at = 5 + (i - 1) * 4
  local kind, limit, p, amount = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3], tonumber(ARGV[at + 4])
  if kind == 'g' then
    apply_gcra(KEYS[i + 1], limit, tonumber(p), amount, now, margin)
  else
    apply_window(KEYS[i + 1], window_end(p, now), amount, owner, amount, now, margin)
  end
end
return out
`;

/**
 * adjust. ARGV: now, owner ("" = a plain adjustment, no hold), margin, then per meter: kind, limit,
 * periodMs | calendar, amount, delta, endsAt ("" = the current window).
 * A live owner's hold of `amount` ends and `delta` is added; if the owner's lease lapsed, its hold
 * is already gone from the total, so `amount + delta` (what the call really used) is added.
 */
export const adjustScript = `${prelude}
local now = clock(ARGV[1])
local owner, margin = ARGV[2], tonumber(ARGV[3])
local releasing = owner ~= '' and live(owner, now)
local n = (#ARGV - 3) / 6
for i = 1, n do
  local at = 3 + (i - 1) * 6
  local kind, limit, p = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3]
  local amount, delta, ends = tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5]), tonumber(ARGV[at + 6])
  local key = KEYS[i + 1]
  if kind == 'g' then
    apply_gcra(key, limit, tonumber(p), delta, now, margin)
  else
    local end_ = ends or window_end(p, now)
    if end_ > now then
      load_window(key, end_, now)
      if releasing then
        apply_window(key, end_, delta, owner, -amount, now, margin)
      elseif owner ~= '' then
        apply_window(key, end_, amount + delta, owner, 0, now, margin)
      else
        apply_window(key, end_, delta, owner, 0, now, margin)
      end
    end
  end
end
return fmt(now)
`;

/**
 * renew. ARGV: now, owner, leaseMs. Extends a live owner's lease (1), or reports that it lapsed
 * (0: its holds are gone, the caller takes a new owner). Forgets owners whose lease has lapsed.
 */
export const renewScript = `${prelude}
local now = clock(ARGV[1])
local owner, lease = ARGV[2], tonumber(ARGV[3])
local alive = live(owner, now)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
if not alive then return 0 end
redis.call('ZADD', leases, now + lease, owner)
if redis.call('PTTL', leases) < lease then redis.call('PEXPIRE', leases, lease) end
return 1
`;

/**
 * peek. ARGV: now, then per meter: kind, calendar ("" for gcra). Reads only (no key is written,
 * nothing expires early): per meter the same three values as charge (gcra: stored TAT or "", "",
 * ""; window: used, held, end), with the holds of owners whose lease lapsed left out.
 */
export const peekScript = `${prelude}
local now = clock(ARGV[1])
local out = {fmt(now)}
local n = (#ARGV - 1) / 2
for i = 1, n do
  local kind, calendar = ARGV[2 + (i - 1) * 2], ARGV[3 + (i - 1) * 2]
  local key = KEYS[i + 1]
  if kind == 'g' then
    local stored = tonumber(redis.call('GET', key))
    table.insert(out, stored and fmt(stored) or '')
    table.insert(out, '')
    table.insert(out, '')
  else
    local end_ = window_end(calendar, now)
    local flat = redis.call('HGETALL', key)
    local used, held, dropped = 0, 0, 0
    for j = 1, #flat, 2 do
      local field, value = flat[j], tonumber(flat[j + 1])
      local sep = string.find(field, '|', 1, true)
      local field_end = tonumber(sep and string.sub(field, 1, sep - 1) or field)
      if field_end == end_ and field_end > now then
        if not sep then
          used = value
        elseif live(string.sub(field, sep + 1), now) then
          held = held + value
        else
          dropped = dropped + value
        end
      end
    end
    table.insert(out, fmt(math.max(0, used - dropped)))
    table.insert(out, fmt(held))
    table.insert(out, fmt(end_))
  end
end
return out
`;

/**
 * claim. KEYS: leases (unused), the marker. ARGV: now, expiresAt, margin. Sets the marker unless it
 * is set (1: this caller is the first; 0: someone was), expiring at expiresAt (+ margin).
 */
export const claimScript = `${prelude}
local now = clock(ARGV[1])
local ttl = math.ceil(tonumber(ARGV[2]) + tonumber(ARGV[3]) - now)
if ttl <= 0 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then return 1 end
return 0
`;
