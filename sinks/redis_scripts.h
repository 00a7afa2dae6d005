/*
 * redis_scripts.h — the two Lua scripts of the Redis sink, as C strings.
 *
 * Included by sinks/redis.c only.  Both take no KEYS: the key prefix comes
 * in ARGV[1] and the scripts build every key name from it (so the sink
 * does not work on Redis Cluster; see docs/STATE.md).  Redis runs each
 * script atomically; redis.c loads them with SCRIPT LOAD and calls them
 * with EVALSHA.  The ARGV layouts are documented in docs/STATE.md, and
 * redis.c builds them in redis_sink_claim() and flush_build().
 */
#ifndef RAPPORT_SINK_REDIS_SCRIPTS_H
#define RAPPORT_SINK_REDIS_SCRIPTS_H

/* ARGV: prefix, "<topic>:<partition>".
 * Returns {new epoch, stored next offset or nil, stored watermark or nil}. */
static const char redis_claim_lua[] =
    "local prefix, field = ARGV[1], ARGV[2]\n"
    "local epoch = redis.call('HINCRBY', prefix .. '_epochs', field, 1)\n"
    "local offset = redis.call('HGET', prefix .. '_offsets', field)\n"
    "local watermark = redis.call('HGET', prefix .. 'watermarks', field)\n"
    "return {epoch, offset, watermark}\n";

/* ARGV: prefix, alerts_maxlen, npart, then each partition's body
 * (upserts of 15 values, deletes of 1, alerts of 11), then npart headers of
 * 8 values: field, epoch, prev_offset, next_offset, watermark or "",
 * n_upserts, n_deletes, n_alerts.
 * Returns {redis.call count, customers written, alerts written}, or the
 * error "FENCED <field> …" having written nothing. */
static const char redis_flush_lua[] =
    "local prefix, maxlen, npart = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local head = #ARGV - 8 * npart\n"
    "local calls, customers, alerts = 0, 0, 0\n"
    "\n"
    "local function call(...)\n"
    "  calls = calls + 1\n"
    "  return redis.call(...)\n"
    "end\n"
    "\n"
    "-- Same-command batches (ZADD pairs, HSET pairs, DEL keys...), sent 1000\n"
    "-- values at a time: few commands per customer, and never more than\n"
    "-- 1000 values on the Lua stack.\n"
    "local function batch(cmd, key)\n"
    "  return {cmd = cmd, key = key, n = 0, v = {}}\n"
    "end\n"
    "local function send(b)\n"
    "  if b.n == 0 then return end\n"
    "  if b.key then call(b.cmd, b.key, unpack(b.v, 1, b.n))\n"
    "  else call(b.cmd, unpack(b.v, 1, b.n)) end\n"
    "  b.n = 0\n"
    "end\n"
    "local function push(b, x, y)\n"
    "  b.n = b.n + 1\n"
    "  b.v[b.n] = x\n"
    "  if y then\n"
    "    b.n = b.n + 1\n"
    "    b.v[b.n] = y\n"
    "  end\n"
    "  if b.n >= 1000 then send(b) end\n"
    "end\n"
    "\n"
    "-- 1. Fencing, before any write.  A partition is written when the epoch\n"
    "-- is ours and Redis holds prev_offset; skipped when it already holds\n"
    "-- next_offset (an earlier attempt landed and its reply was lost);\n"
    "-- anything else is fenced, and then nothing at all is written.\n"
    "local epochs_key, offsets_key = prefix .. '_epochs', prefix .. '_offsets'\n"
    "local fenced, write = {}, {}\n"
    "for p = 0, npart - 1 do\n"
    "  local h = head + 8 * p\n"
    "  local field = ARGV[h + 1]\n"
    "  local stored = false\n"
    "  if call('HGET', epochs_key, field) == ARGV[h + 2] then\n"
    "    stored = call('HGET', offsets_key, field) or '-1'\n"
    "  end\n"
    "  if stored == ARGV[h + 3] then\n"
    "    write[p] = true\n"
    "  elseif stored ~= ARGV[h + 4] then\n"
    "    fenced[#fenced + 1] = field\n"
    "  end\n"
    "end\n"
    "if #fenced > 0 then\n"
    "  return redis.error_reply('FENCED ' .. table.concat(fenced, ' '))\n"
    "end\n"
    "\n"
    "-- 2. The writes, partition by partition: deletes, upserts, alerts,\n"
    "-- watermark, offset.\n"
    "local ci_prefix = prefix .. 'ci:'\n"
    "local scores_key, alerts_key = prefix .. 'scores', prefix .. 'alerts'\n"
    "local i = 4\n"
    "for p = 0, npart - 1 do\n"
    "  local h = head + 8 * p\n"
    "  local nup, ndel, nalert = tonumber(ARGV[h + 6]), tonumber(ARGV[h + 7]), tonumber(ARGV[h + 8])\n"
    "  local d = i + 15 * nup\n"
    "  local body_end = d + ndel + 11 * nalert\n"
    "  if write[p] then\n"
    "    local field = ARGV[h + 1]\n"
    "    local state_key = prefix .. '_state:' .. field\n"
    "    local del, zrem, hdel = batch('DEL'), batch('ZREM', scores_key), batch('HDEL', state_key)\n"
    "    for j = d, d + ndel - 1 do\n"
    "      push(del, ci_prefix .. ARGV[j])\n"
    "      push(zrem, ARGV[j])\n"
    "      push(hdel, ARGV[j])\n"
    "    end\n"
    "    send(del)\n"
    "    send(zrem)\n"
    "    send(hdel)\n"
    "    local zadd, state = batch('ZADD', scores_key), batch('HSET', state_key)\n"
    "    for j = i, d - 1, 15 do\n"
    "      local cid = ARGV[j]\n"
    "      call('HSET', ci_prefix .. cid, 'ci', ARGV[j + 1], 'resolution', ARGV[j + 2],\n"
    "           'sentiment', ARGV[j + 3], 'loyalty', ARGV[j + 4], 'ai_share', ARGV[j + 5],\n"
    "           'aht_ms', ARGV[j + 6], 'streak', ARGV[j + 7], 'contacts', ARGV[j + 8],\n"
    "           'resolved', ARGV[j + 9], 'events', ARGV[j + 10], 'at_risk', ARGV[j + 11],\n"
    "           'updated_at', ARGV[j + 12], 'last_event_id', ARGV[j + 13])\n"
    "      push(zadd, ARGV[j + 1], cid)\n"
    "      push(state, cid, ARGV[j + 14])\n"
    "    end\n"
    "    send(zadd)\n"
    "    send(state)\n"
    "    customers = customers + nup + ndel\n"
    "    for j = d + ndel, body_end - 1, 11 do\n"
    "      call('XADD', alerts_key, 'MAXLEN', '~', maxlen, '*',\n"
    "           'type', ARGV[j], 'customer_id', ARGV[j + 1], 'score', ARGV[j + 2],\n"
    "           'previous_score', ARGV[j + 3], 'trigger', ARGV[j + 4],\n"
    "           'event_id', ARGV[j + 5], 'occurred_at', ARGV[j + 6],\n"
    "           'partition', ARGV[j + 7], 'offset', ARGV[j + 8],\n"
    "           'reason', ARGV[j + 9], 'narrative', ARGV[j + 10])\n"
    "    end\n"
    "    alerts = alerts + nalert\n"
    "    if ARGV[h + 5] ~= '' then\n"
    "      call('HSET', prefix .. 'watermarks', field, ARGV[h + 5])\n"
    "    end\n"
    "    call('HSET', offsets_key, field, ARGV[h + 4])\n"
    "  end\n"
    "  i = body_end\n"
    "end\n"
    "return {calls, customers, alerts}\n";

#endif
