/*
 * cluster.c — rapport's write pattern on one Redis and on a Redis Cluster:
 * the prototype behind docs/SCALING.md.
 *
 * It plays the flush of a rapport deployment whose keys are hash-tagged by
 * Kafka partition (docs/SCALING.md, "Keys"): every key a partition's flush
 * touches carries the tag {<topic>:<p>}, so it lies in one hash slot, and
 * the flush is one fenced `#!lua` script per partition, called with the
 * partition's keys in KEYS so that a cluster client can route it.  The
 * script is the shape of sinks/redis_scripts.h's flush, cut to what costs:
 * the fencing check (epoch and offset), one HSET of the 13 public fields
 * per customer, the sorted set and the resume state batched, one XADD per
 * alert, the organisation counters (one HMGET and one HSET), the offset.
 * The alert index and the history counters are left out: per partition
 * they cost what they cost today.
 *
 * Customers "cust-NNNNNNN" are spread over the partitions by the Java
 * client's partitioner (murmur2, as producers and `rapport forget` do), so
 * a reader can find a customer's partition from its id.  Each round writes
 * --per-flush customers of every partition, each partition's script sent
 * to the node that owns its slot (CRC16 of the tag, CLUSTER SLOTS),
 * pipelined, one connection per node, all nodes at once.  Pass 0 creates
 * every customer, the passes after it update them.
 *
 *   cluster --node HOST:PORT [--cluster] [--customers 100000]
 *           [--partitions 64] [--per-flush 500] [--passes 3]
 *           [--alerts 0.16] [--label NAME] [--facts] [--declare-keys]
 *
 * With --cluster the node is any node of a cluster and every master is
 * used; without, the node is one plain redis-server.  The program empties
 * the server(s) first (FLUSHALL).  --facts (cluster only) also prints what
 * Redis answers to a script that touches keys of another slot, with and
 * without flags=allow-cross-slot-keys, and, while a slot migrates, to a
 * script that writes a key it did not declare in KEYS and to one that
 * declared it.
 *
 * Every line of output is "name key=value...": per pass the customers
 * written per second (wall time from the first byte sent to the last
 * answer of each round, summed), Redis CPU per customer (INFO
 * used_cpu_user + used_cpu_sys, summed over the nodes) and the scripts'
 * own time (INFO commandstats, evalsha usec), and the rate the nodes
 * would reach with a core each: customers over the busiest node's CPU
 * (on a machine with fewer cores than nodes the measured rate cannot
 * show it); per node its partitions and CPU; the memory per customer
 * after pass 0.  One thread.
 */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "common/alloc.h"
#include "common/clock.h"

#define PREFIX "rapport:"
#define TOPIC "interactions"
#define SLOTS 16384
#define MAX_NODES 16
#define ARG_SLOT 160   /* bytes of one script argument in the scratch pool */
#define UPSERT_ARGS 15 /* customer_id, 12 numbers, last_event_id, state */
#define ALERT_ARGS 11
#define ORG_FIELDS 14
#define STATE_BYTES 100

/* KEYS: the partition's fence hash (epoch, offset, watermark), its sorted
 * set, its alerts stream, its resume state, its organisation counters; all
 * in the partition's slot; then, with --declare-keys, every customer hash
 * key it writes (Redis's EVAL documentation asks scripts to declare every
 * key; Redis 7 checks only the slot, Dragonfly refuses undeclared keys).
 * ARGV: the customer hash key prefix (tag included), alerts_maxlen, epoch,
 * prev_offset, next_offset, watermark, n_upserts, n_alerts, n_org; then
 * the upserts (15 values: customer_id, the 12 numbers of the hash,
 * last_event_id, state), the alerts (11
 * values, the stream's fields), the org deltas (field, delta).
 * Returns {redis.call count, customers, alerts}, or "FENCED" having
 * written nothing. */
static const char flush_lua[] =
    "#!lua\n"
    "local part, scores, alerts_key = KEYS[1], KEYS[2], KEYS[3]\n"
    "local state_key, org_key = KEYS[4], KEYS[5]\n"
    "local ci_prefix, maxlen = ARGV[1], ARGV[2]\n"
    "local nup, nalert, norg = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "local calls = 1\n"
    "-- More than 5 KEYS: the customers' hash keys, in the upserts' order.\n"
    "local declared = #KEYS > 5\n"
    "local f = redis.call('HMGET', part, 'epoch', 'offset')\n"
    "if f[1] ~= ARGV[3] then return redis.error_reply('FENCED') end\n"
    "local stored = f[2] or '-1'\n"
    "if stored == ARGV[5] then return {calls, 0, 0} end\n"
    "if stored ~= ARGV[4] then return redis.error_reply('FENCED') end\n"
    "local function call(...)\n"
    "  calls = calls + 1\n"
    "  return redis.call(...)\n"
    "end\n"
    "local pub = {'ci', 'resolution', 'sentiment', 'loyalty', 'ai_share', 'aht_ms',\n"
    "             'streak', 'contacts', 'resolved', 'events', 'at_risk', 'updated_at'}\n"
    "local zv, sv, zn, sn = {}, {}, 0, 0\n"
    "local hv = {}\n"
    "local i = 10\n"
    "for j = i, i + 15 * nup - 1, 15 do\n"
    "  local cid = ARGV[j]\n"
    "  for k = 1, 12 do\n"
    "    hv[2 * k - 1] = pub[k]\n"
    "    hv[2 * k] = ARGV[j + k]\n"
    "  end\n"
    "  hv[25], hv[26] = 'last_event_id', ARGV[j + 13]\n"
    "  call('HSET', declared and KEYS[6 + (j - i) / 15] or ci_prefix .. cid, unpack(hv, 1, 26))\n"
    "  zv[zn + 1], zv[zn + 2] = ARGV[j + 1], cid\n"
    "  sv[sn + 1], sv[sn + 2] = cid, ARGV[j + 14]\n"
    "  zn, sn = zn + 2, sn + 2\n"
    "  if zn >= 1000 then\n"
    "    call('ZADD', scores, unpack(zv, 1, zn))\n"
    "    call('HSET', state_key, unpack(sv, 1, sn))\n"
    "    zn, sn = 0, 0\n"
    "  end\n"
    "end\n"
    "if zn > 0 then\n"
    "  call('ZADD', scores, unpack(zv, 1, zn))\n"
    "  call('HSET', state_key, unpack(sv, 1, sn))\n"
    "end\n"
    "local a = i + 15 * nup\n"
    "for j = a, a + 11 * nalert - 1, 11 do\n"
    "  call('XADD', alerts_key, 'MAXLEN', '~', maxlen, '*',\n"
    "       'type', ARGV[j], 'customer_id', ARGV[j + 1], 'score', ARGV[j + 2],\n"
    "       'previous_score', ARGV[j + 3], 'trigger', ARGV[j + 4],\n"
    "       'event_id', ARGV[j + 5], 'occurred_at', ARGV[j + 6],\n"
    "       'partition', ARGV[j + 7], 'offset', ARGV[j + 8],\n"
    "       'reason', ARGV[j + 9], 'narrative', ARGV[j + 10])\n"
    "end\n"
    "local o = a + 11 * nalert\n"
    "if norg > 0 then\n"
    "  local fields = {}\n"
    "  for k = 0, norg - 1 do fields[k + 1] = ARGV[o + 2 * k] end\n"
    "  local cur = call('HMGET', org_key, unpack(fields))\n"
    "  local ov = {}\n"
    "  for k = 0, norg - 1 do\n"
    "    ov[2 * k + 1] = fields[k + 1]\n"
    "    local v = (tonumber(cur[k + 1] or '0') or 0) + tonumber(ARGV[o + 2 * k + 1])\n"
    "    ov[2 * k + 2] = string.format('%.0f', v)\n"
    "  end\n"
    "  call('HSET', org_key, unpack(ov, 1, 2 * norg))\n"
    "end\n"
    "call('HSET', part, 'offset', ARGV[5], 'watermark', ARGV[6])\n"
    "return {calls, nup, nalert}\n";

/* KEYS: the partition's fence hash.  Returns {new epoch, offset or nil}. */
static const char claim_lua[] = "#!lua\n"
                                "local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)\n"
                                "return {epoch, redis.call('HGET', KEYS[1], 'offset')}\n";

typedef struct node {
    char host[64];
    int port;
    redisContext *c;
    redisReader *rd;
    char flush_sha[41];
    /* The round's pipelined requests. */
    char *out;
    size_t out_len, out_cap, out_off;
    int expected, got;
    int partitions;
    uint64_t customers;
    double cpu0, usec0;
} node_t;

typedef struct part {
    int node;
    char tag[48]; /* "{interactions:7}" */
    uint32_t *cust;
    uint32_t ncust, cap;
    int64_t epoch, offset; /* offset: what Redis holds, -1 none */
} part_t;

typedef struct run {
    node_t nodes[MAX_NODES];
    int nnodes;
    part_t *parts;
    int nparts;
    uint32_t customers;
    uint32_t per_flush;
    double alerts;
    bool declare; /* customer keys in KEYS too */
    uint64_t calls, written, alerts_written;
    char **argv;
    size_t *argl;
    char *pool;
    size_t max_args;
} run_t;

static void die(const char *what) {
    fprintf(stderr, "cluster: %s\n", what);
    exit(1);
}

/* CRC16-CCITT (XMODEM), the one Redis Cluster hashes keys with: polynomial
 * 0x1021, initial 0 (Redis's src/crc16.c, the cluster specification's
 * "Keys distribution model"). */
static uint16_t crc16(const char *buf, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++) crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* The key's hash slot: of the text between the first '{' and the first
 * '}' after it when that is not empty, else of the whole key. */
static int key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close && close > open + 1) return crc16(open + 1, (size_t)(close - open - 1)) % SLOTS;
    }
    return crc16(key, len) % SLOTS;
}

static redisReply *cmd_argv(redisContext *c, int argc, const char **argv) {
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) die(c->errstr);
    return r;
}

static redisReply *cmd(node_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(n->c, fmt, ap);
    va_end(ap);
    if (!r) die(n->c->errstr);
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "cluster: %s:%d: %s\n", n->host, n->port, r->str);
        exit(1);
    }
    return r;
}

static void node_connect(node_t *n) {
    struct timeval tv = {30, 0};
    n->c = redisConnectWithTimeout(n->host, n->port, tv);
    if (!n->c || n->c->err) die("cannot connect");
    redisSetTimeout(n->c, tv);
    n->rd = redisReaderCreate();
}

/* A field of INFO's text as a double; -1 when absent. */
static double info_field(const char *info, const char *name) {
    const char *s = strstr(info, name);
    return s ? strtod(s + strlen(name), NULL) : -1;
}

static void node_sample(node_t *n, double *cpu, double *usec, double *mem) {
    redisReply *r = cmd(n, "INFO all");
    *cpu = info_field(r->str, "used_cpu_sys:") + info_field(r->str, "used_cpu_user:");
    const char *ev = strstr(r->str, "cmdstat_evalsha:");
    *usec = ev ? info_field(ev, "usec=") : 0;
    if (mem) *mem = info_field(r->str, "used_memory:");
    freeReplyObject(r);
}

/* The masters and who owns which slot, from CLUSTER SLOTS of the first
 * node; fills nodes[] and slot_node. */
static void map_cluster(run_t *rn, int *slot_node) {
    node_t *first = &rn->nodes[0];
    redisReply *r = cmd(first, "CLUSTER SLOTS");
    for (int s = 0; s < SLOTS; s++) slot_node[s] = -1;
    char host0[64];
    int port0 = first->port;
    snprintf(host0, sizeof host0, "%s", first->host);
    redisFree(first->c);
    redisReaderFree(first->rd);
    rn->nnodes = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) die("odd CLUSTER SLOTS reply");
        redisReply *m = e->element[2];
        const char *host = m->element[0]->str;
        int port = (int)m->element[1]->integer;
        if (!*host) host = host0, port = port0;
        int k;
        for (k = 0; k < rn->nnodes; k++)
            if (rn->nodes[k].port == port && !strcmp(rn->nodes[k].host, host)) break;
        if (k == rn->nnodes) {
            if (rn->nnodes == MAX_NODES) die("too many masters");
            node_t *n = &rn->nodes[rn->nnodes++];
            memset(n, 0, sizeof *n);
            snprintf(n->host, sizeof n->host, "%s", host);
            n->port = port;
            node_connect(n);
        }
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            slot_node[s] = k;
    }
    freeReplyObject(r);
    for (int s = 0; s < SLOTS; s++)
        if (slot_node[s] < 0) die("a slot has no master: cluster_state is not ok");
}

static void key_of(char *out, size_t size, const char *name, const part_t *p) {
    snprintf(out, size, PREFIX "%s:%s", name, p->tag);
}

/* Appends one formatted command to the node's round. */
static void node_append(node_t *n, int argc, const char **argv, const size_t *argl) {
    char *c;
    long long len = redisFormatCommandArgv(&c, argc, argv, argl);
    if (len < 0) die("out of memory formatting a command");
    if (n->out_len + (size_t)len > n->out_cap) {
        n->out_cap = (n->out_len + (size_t)len) * 2;
        n->out = xrealloc(n->out, n->out_cap);
    }
    memcpy(n->out + n->out_len, c, (size_t)len);
    n->out_len += (size_t)len;
    redisFreeCommand(c);
    n->expected++;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Builds partition p's script for customers [from, from + k) of it, pass
 * `pass`, and appends it to its node. */
static void build_part(run_t *rn, part_t *p, uint32_t from, uint32_t k, int pass) {
    char **av = rn->argv;
    size_t *al = rn->argl;
    int n = 0;
#define ARG(...)                                                                  \
    do {                                                                          \
        av[n] = rn->pool + (size_t)n * ARG_SLOT;                                  \
        al[n] = (size_t)snprintf(av[n], ARG_SLOT, __VA_ARGS__);                   \
        n++;                                                                      \
    } while (0)
    node_t *nd = &rn->nodes[p->node];
    ARG("EVALSHA");
    ARG("%s", nd->flush_sha);
    ARG("%u", rn->declare ? 5 + k : 5);
    ARG(PREFIX "_part:%s", p->tag);
    ARG(PREFIX "scores:%s", p->tag);
    ARG(PREFIX "alerts:%s", p->tag);
    ARG(PREFIX "_state:%s", p->tag);
    ARG(PREFIX "org:%s", p->tag);
    if (rn->declare)
        for (uint32_t j = 0; j < k; j++)
            ARG(PREFIX "ci:%s:cust-%07" PRIu32, p->tag, p->cust[(from + j) % p->ncust]);
    ARG(PREFIX "ci:%s:", p->tag);
    ARG("%u", 1000000u / (unsigned)rn->nparts);
    ARG("%" PRId64, p->epoch);
    ARG("%" PRId64, p->offset);
    ARG("%" PRId64, p->offset + 1);
    ARG("%" PRId64, 1772237819891 + (int64_t)pass * 1000);
    ARG("%u", k);
    int nalert_at = n;
    ARG("0");
    ARG("%d", ORG_FIELDS);
    uint32_t alerts_at[2048];
    uint32_t nalert = 0;
    for (uint32_t j = 0; j < k; j++) {
        uint32_t c = p->cust[(from + j) % p->ncust];
        uint64_t h = mix(((uint64_t)c << 8) | (uint64_t)pass);
        double ci = (double)(h % 1000000) / 10000.0;
        ARG("cust-%07" PRIu32, c);
        ARG("%.4f", ci);
        ARG("%.4f", (double)(h >> 20 & 1023) / 1023.0);
        ARG("%.4f", (double)(h >> 30 & 1023) / 1023.0);
        ARG("%.4f", (double)(h >> 40 & 1023) / 1023.0);
        ARG("%.4f", (double)(h >> 50 & 1023) / 1023.0);
        ARG("%.4f", 150000.0 + (double)(h >> 8 & 65535));
        ARG("%u", (unsigned)(h >> 3 & 7));
        ARG("%d", 3 + pass);
        ARG("%u", (unsigned)(h >> 5 & 3));
        ARG("%d", 5 + pass);
        ARG("%d", ci < 35.0);
        ARG("%" PRId64, 1772237819891 + (int64_t)pass * 1000);
        ARG("%08x-0a20-45ba-88e3-%012" PRIx64, c, (uint64_t)(h & 0xffffffffffffULL));
        /* An opaque state blob, as the scorer's resume state. */
        av[n] = rn->pool + (size_t)n * ARG_SLOT;
        for (int b = 0; b < STATE_BYTES; b++)
            av[n][b] = (char)(mix(h + (uint64_t)b) & 0xff);
        al[n++] = STATE_BYTES;
        if ((double)(mix(h) % 1000) < rn->alerts * 1000.0 && nalert < 2048)
            alerts_at[nalert++] = c;
    }
    for (uint32_t j = 0; j < nalert; j++) {
        uint64_t h = mix(alerts_at[j] + (uint64_t)pass);
        ARG("churn_risk");
        ARG("cust-%07" PRIu32, alerts_at[j]);
        ARG("%.4f", (double)(h % 350000) / 10000.0);
        ARG("39.8750");
        ARG("event");
        ARG("%08x-0a20-45ba-88e3-9a8b4775475f", alerts_at[j]);
        ARG("%" PRId64, 1772237819891 + (int64_t)pass * 1000);
        ARG("%d", (int)(p - rn->parts));
        ARG("%" PRId64, p->offset + 1);
        ARG("connection index %.1f fell below 35 (was 39.875)", (double)(h % 350) / 10.0);
        ARG("I was charged twice and the bot keeps looping; nobody has called me back "
            "about it and I am thinking of leaving");
    }
    static const char *org[ORG_FIELDS] = {"customers", "at_risk",  "route_human", "ci_sum",
                                          "ci_bin:0",  "ci_bin:1", "ci_bin:2",    "ci_bin:3",
                                          "ci_bin:4",  "ci_bin:5", "ci_bin:6",    "ci_bin:7",
                                          "ci_bin:8",  "ci_bin:9"};
    for (int f = 0; f < ORG_FIELDS; f++) {
        ARG("%s", org[f]);
        ARG("%d", pass == 0 && f == 0 ? (int)k : (int)(mix((uint64_t)f + from) % 7) - 3);
    }
#undef ARG
    al[nalert_at] = (size_t)snprintf(av[nalert_at], ARG_SLOT, "%u", nalert);
    if ((size_t)n > rn->max_args) die("argument pool overflow");
    node_append(nd, n, (const char **)av, al);
    nd->customers += k;
}

/* Reads what arrived on n; counts the answers.  Exits on an error reply. */
static void node_read(run_t *rn, node_t *n) {
    char buf[65536];
    ssize_t got = recv(n->c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got == 0) die("a node closed the connection");
    if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        die(strerror(errno));
    }
    if (redisReaderFeed(n->rd, buf, (size_t)got) != REDIS_OK) die("bad reply");
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(n->rd, &rep) != REDIS_OK) die("bad reply");
        if (!rep) break;
        redisReply *r = rep;
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "cluster: %s:%d answered %s\n", n->host, n->port, r->str);
            exit(1);
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) die("unexpected flush answer");
        rn->calls += (uint64_t)r->element[0]->integer;
        rn->written += (uint64_t)r->element[1]->integer;
        rn->alerts_written += (uint64_t)r->element[2]->integer;
        freeReplyObject(r);
        n->got++;
    }
}

/* Sends every node's round at once and waits for all answers; returns the
 * wall time in seconds. */
static double round_io(run_t *rn) {
    double t0 = clock_s();
    for (;;) {
        struct pollfd pf[MAX_NODES];
        int np = 0, open = 0;
        for (int i = 0; i < rn->nnodes; i++) {
            node_t *n = &rn->nodes[i];
            pf[i] = (struct pollfd){.fd = n->c->fd};
            if (n->out_off < n->out_len) pf[i].events |= POLLOUT;
            if (n->got < n->expected) pf[i].events |= POLLIN, open++;
            np++;
        }
        if (!open) break;
        if (poll(pf, (nfds_t)np, 30000) <= 0) die("no progress for 30 s");
        for (int i = 0; i < rn->nnodes; i++) {
            node_t *n = &rn->nodes[i];
            if (pf[i].revents & POLLOUT) {
                ssize_t w = send(n->c->fd, n->out + n->out_off, n->out_len - n->out_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN && errno != EINTR) die(strerror(errno));
                if (w > 0) n->out_off += (size_t)w;
            }
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) node_read(rn, n);
        }
    }
    double t = clock_s() - t0;
    for (int i = 0; i < rn->nnodes; i++) {
        node_t *n = &rn->nodes[i];
        n->out_len = n->out_off = 0;
        n->expected = n->got = 0;
    }
    return t;
}

static double client_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* One pass over every customer; prints its line. */
static void pass_run(run_t *rn, int pass, const char *label) {
    uint32_t rounds = 0;
    for (int p = 0; p < rn->nparts; p++) {
        uint32_t r = (rn->parts[p].ncust + rn->per_flush - 1) / rn->per_flush;
        if (r > rounds) rounds = r;
    }
    double mem0 = 0;
    for (int i = 0; i < rn->nnodes; i++) {
        node_t *n = &rn->nodes[i];
        double m;
        node_sample(n, &n->cpu0, &n->usec0, &m);
        mem0 += m;
        n->customers = 0;
    }
    rn->calls = rn->written = rn->alerts_written = 0;
    double wall = 0, ccpu = client_cpu(), ccpu_io = 0;
    uint64_t scripts = 0;
    for (uint32_t r = 0; r < rounds; r++) {
        for (int p = 0; p < rn->nparts; p++) {
            part_t *pt = &rn->parts[p];
            uint32_t from = r * rn->per_flush;
            if (from >= pt->ncust) continue;
            uint32_t k = pt->ncust - from < rn->per_flush ? pt->ncust - from : rn->per_flush;
            build_part(rn, pt, from, k, pass);
            scripts++;
        }
        double c0 = client_cpu();
        wall += round_io(rn);
        ccpu_io += client_cpu() - c0;
        for (int p = 0; p < rn->nparts; p++) {
            part_t *pt = &rn->parts[p];
            if (r * rn->per_flush < pt->ncust) pt->offset++;
        }
    }
    ccpu = client_cpu() - ccpu;
    double cpu = 0, usec = 0, mem = 0, busiest = 0;
    for (int i = 0; i < rn->nnodes; i++) {
        node_t *n = &rn->nodes[i];
        double c, u, m;
        node_sample(n, &c, &u, &m);
        cpu += c - n->cpu0, usec += u - n->usec0, mem += m;
        if (c - n->cpu0 > busiest) busiest = c - n->cpu0;
        printf("node label=%s pass=%d addr=%s:%d partitions=%d customers=%" PRIu64
               " redis_cpu_s=%.3f used_memory=%.0f\n",
               label, pass, n->host, n->port, n->partitions, n->customers, c - n->cpu0, m);
    }
    double w = (double)rn->written;
    if (rn->written != rn->customers) die("not every customer was written");
    printf("pass label=%s declared_keys=%d pass=%d kind=%s nodes=%d partitions=%d per_flush=%u"
           " scripts=%" PRIu64 " customers=%" PRIu64 " alerts=%" PRIu64,
           label, rn->declare, pass, pass == 0 ? "new" : "update", rn->nnodes, rn->nparts,
           rn->per_flush, scripts, rn->written, rn->alerts_written);
    printf(" wall_s=%.3f customers_per_s=%.0f redis_cpu_s=%.3f redis_cpu_us_per_customer=%.2f"
           " script_us_per_customer=%.2f redis_cores_busy=%.2f commands_per_customer=%.3f"
           " client_io_cpu_s=%.3f client_cpu_s=%.3f busiest_node_cpu_s=%.3f"
           " customers_per_s_core_per_node=%.0f\n",
           wall, w / wall, cpu, cpu * 1e6 / w, usec / w, cpu / wall, (double)rn->calls / w, ccpu_io,
           ccpu, busiest, w / busiest);
    if (pass == 0)
        printf("memory label=%s nodes=%d customers=%u used_memory_growth=%.0f"
               " bytes_per_customer=%.0f\n",
               label, rn->nnodes, rn->customers, mem - mem0, (mem - mem0) / w);
    fflush(stdout);
}

/* Prints a reply as one quoted value. */
static void fact_answer(const char *what, redisReply *r) {
    printf("fact %s answer=\"%s\"\n", what,
           r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STRING ||
                   r->type == REDIS_REPLY_STATUS
               ? r->str
               : "ok");
    freeReplyObject(r);
}

/* While partition a's slot migrates to node t, a script whose KEYS name
 * only keys that exist writes a key that does not: does it stop half-way
 * (no rollback in Redis), or is it refused before it runs when that key
 * is declared too? */
static void migration_facts(run_t *rn, part_t *a, node_t *t) {
    node_t *n = &rn->nodes[a->node];
    char old[96], fresh[96];
    key_of(old, sizeof old, "fact_old", a);
    key_of(fresh, sizeof fresh, "fact_new", a);
    int slot = key_slot(old, strlen(old));
    redisReply *r = cmd(n, "CLUSTER MYID");
    char nid[64];
    snprintf(nid, sizeof nid, "%s", r->str);
    freeReplyObject(r);
    r = cmd(t, "CLUSTER MYID");
    char tid[64];
    snprintf(tid, sizeof tid, "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(cmd(n, "SET %s 1", old));
    freeReplyObject(cmd(t, "CLUSTER SETSLOT %d IMPORTING %s", slot, nid));
    freeReplyObject(cmd(n, "CLUSTER SETSLOT %d MIGRATING %s", slot, tid));

    const char *undeclared[] = {
        "EVAL", "#!lua\nredis.call('SET', KEYS[1], 2)\nredis.call('SET', ARGV[1], 1)\nreturn 'ok'",
        "1", old, fresh};
    fact_answer("slot=migrating script=new_key_undeclared", cmd_argv(n->c, 5, undeclared));
    fact_answer("slot=migrating script=new_key_undeclared then_get_declared_key_was_1_now",
                cmd(n, "GET %s", old));
    freeReplyObject(cmd(n, "SET %s 1", old));
    const char *declared[] = {
        "EVAL", "#!lua\nredis.call('SET', KEYS[1], 2)\nredis.call('SET', KEYS[2], 1)\nreturn 'ok'",
        "2", old, fresh};
    fact_answer("slot=migrating script=new_key_declared", cmd_argv(n->c, 5, declared));
    fact_answer("slot=migrating script=new_key_declared then_get_declared_key_was_1_now",
                cmd(n, "GET %s", old));
    freeReplyObject(cmd(t, "ASKING"));
    fact_answer("slot=importing asking=yes script=new_key_declared", cmd_argv(t->c, 5, declared));

    freeReplyObject(cmd(n, "CLUSTER SETSLOT %d STABLE", slot));
    freeReplyObject(cmd(t, "CLUSTER SETSLOT %d STABLE", slot));
}

/* What Redis answers to scripts that reach outside the slot of their
 * KEYS, on a cluster: the facts docs/SCALING.md relies on. */
static void facts(run_t *rn) {
    part_t *a = &rn->parts[0], *same = NULL, *other = NULL;
    for (int p = 1; p < rn->nparts; p++) {
        part_t *b = &rn->parts[p];
        int sa = key_slot(a->tag, strlen(a->tag)), sb = key_slot(b->tag, strlen(b->tag));
        if (sa == sb) continue;
        if (b->node == a->node && !same) same = b;
        if (b->node != a->node && !other) other = b;
    }
    if (!same || !other) {
        printf("fact skipped=need_more_partitions\n");
        return;
    }
    node_t *n = &rn->nodes[a->node];
    char ka[96], ks[96], ko[96];
    key_of(ka, sizeof ka, "fact", a);
    key_of(ks, sizeof ks, "fact", same);
    key_of(ko, sizeof ko, "fact", other);
    static const char *const heads[] = {"#!lua\n", "#!lua flags=allow-cross-slot-keys\n"};
    static const char *const names[] = {"no_flags", "allow_cross_slot_keys"};
    for (int h = 0; h < 2; h++) {
        for (int w = 0; w < 2; w++) {
            char body[256];
            snprintf(body, sizeof body,
                     "%sredis.call('SET', KEYS[1], 1)\nredis.call('SET', ARGV[1], 1)\nreturn 'ok'",
                     heads[h]);
            const char *argv[] = {"EVAL", body, "1", ka, w ? ko : ks};
            redisReply *r = cmd_argv(n->c, 5, argv);
            printf("fact script=%s second_key=%s answer=\"%s\"\n", names[h],
                   w ? "other_slot_other_node" : "other_slot_same_node",
                   r->type == REDIS_REPLY_ERROR ? r->str : "ok");
            freeReplyObject(r);
        }
    }
    /* No KEYS at all: the node runs it whatever the key it writes. */
    char body[128];
    snprintf(body, sizeof body, "#!lua\nredis.call('SET', ARGV[1], 1)\nreturn 'ok'");
    const char *argv[] = {"EVAL", body, "0", ko};
    redisReply *r = cmd_argv(n->c, 4, argv);
    printf("fact script=no_keys writes=key_of_other_node answer=\"%s\"\n",
           r->type == REDIS_REPLY_ERROR ? r->str : "ok");
    freeReplyObject(r);
    const char *argv2[] = {"EVAL", "#!lua\nreturn 'ok'", "1", ko};
    r = cmd_argv(n->c, 4, argv2);
    printf("fact script=keys_of_other_node answer=\"%s\"\n",
           r->type == REDIS_REPLY_ERROR ? r->str : "ok");
    freeReplyObject(r);
    migration_facts(rn, a, &rn->nodes[other->node]);
    for (int i = 0; i < rn->nnodes; i++) freeReplyObject(cmd(&rn->nodes[i], "FLUSHALL"));
}

int main(int argc, char **argv) {
    const char *addr = NULL, *label = NULL;
    bool cluster = false, want_facts = false;
    run_t rn = {.customers = 100000, .per_flush = 500, .alerts = 0.16, .nparts = 64};
    int passes = 3;
    static const struct option opts[] = {{"node", required_argument, NULL, 'n'},
                                         {"cluster", no_argument, NULL, 'C'},
                                         {"customers", required_argument, NULL, 'c'},
                                         {"partitions", required_argument, NULL, 'p'},
                                         {"per-flush", required_argument, NULL, 'k'},
                                         {"passes", required_argument, NULL, 'r'},
                                         {"alerts", required_argument, NULL, 'a'},
                                         {"label", required_argument, NULL, 'l'},
                                         {"facts", no_argument, NULL, 'f'},
                                         {"declare-keys", no_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'n': addr = optarg; break;
        case 'C': cluster = true; break;
        case 'c': rn.customers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'p': rn.nparts = atoi(optarg); break;
        case 'k': rn.per_flush = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': passes = atoi(optarg); break;
        case 'a': rn.alerts = strtod(optarg, NULL); break;
        case 'l': label = optarg; break;
        case 'f': want_facts = true; break;
        case 'd': rn.declare = true; break;
        default:
            fprintf(stderr, "usage: cluster --node HOST:PORT [--cluster] [--customers N]"
                            " [--partitions N] [--per-flush N] [--passes N] [--alerts F]"
                            " [--label NAME] [--facts] [--declare-keys]\n");
            return 2;
        }
    }
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || colon - addr >= 64 || rn.customers == 0 || rn.nparts < 1 ||
        rn.nparts > 100000 || rn.per_flush < 1 || rn.per_flush > 2000 || passes < 1 ||
        rn.alerts < 0 || rn.alerts > 1) {
        fprintf(stderr,
                "cluster: bad arguments (--node HOST:PORT is required; per-flush 1-2000)\n");
        return 2;
    }
    if (!label) label = cluster ? "cluster" : "single";
    node_t *n0 = &rn.nodes[0];
    snprintf(n0->host, sizeof n0->host, "%.*s", (int)(colon - addr), addr);
    n0->port = atoi(colon + 1);
    node_connect(n0);
    rn.nnodes = 1;
    static int slot_node[SLOTS];
    if (cluster) map_cluster(&rn, slot_node);
    else
        for (int s = 0; s < SLOTS; s++) slot_node[s] = 0;

    /* Partitions, their tags and nodes; customers by the Java partitioner. */
    rn.parts = xcalloc((size_t)rn.nparts, sizeof *rn.parts);
    for (int p = 0; p < rn.nparts; p++) {
        part_t *pt = &rn.parts[p];
        snprintf(pt->tag, sizeof pt->tag, "{%s:%d}", TOPIC, p);
        pt->node = slot_node[key_slot(pt->tag, strlen(pt->tag))];
        rn.nodes[pt->node].partitions++;
    }
    for (uint32_t c = 0; c < rn.customers; c++) {
        char id[32];
        int len = snprintf(id, sizeof id, "cust-%07" PRIu32, c);
        part_t *pt = &rn.parts[rd_kafka_msg_partitioner_murmur2(NULL, id, (size_t)len,
                                                                 rn.nparts, NULL, NULL)];
        if (pt->ncust == pt->cap) {
            pt->cap = pt->cap ? pt->cap * 2 : 64;
            pt->cust = xrealloc(pt->cust, pt->cap * sizeof *pt->cust);
        }
        pt->cust[pt->ncust++] = c;
    }
    /* The slots this program computes are the ones Redis computes. */
    if (cluster) {
        for (int p = 0; p < rn.nparts; p++) {
            char key[96];
            key_of(key, sizeof key, "ci", &rn.parts[p]);
            strcat(key, ":cust-0000001");
            redisReply *r = cmd(&rn.nodes[0], "CLUSTER KEYSLOT %s", key);
            if (r->integer != key_slot(key, strlen(key))) die("CRC16 slot differs from Redis's");
            freeReplyObject(r);
        }
    }
    for (int i = 0; i < rn.nnodes; i++) {
        node_t *n = &rn.nodes[i];
        freeReplyObject(cmd(n, "FLUSHALL"));
        redisReply *r = cmd(n, "SCRIPT LOAD %s", flush_lua);
        snprintf(n->flush_sha, sizeof n->flush_sha, "%s", r->str);
        freeReplyObject(r);
        printf("node label=%s addr=%s:%d partitions=%d\n", label, n->host, n->port, n->partitions);
    }
    if (want_facts && cluster) facts(&rn);

    /* Claim every partition, as a rapport instance does on assignment. */
    for (int p = 0; p < rn.nparts; p++) {
        part_t *pt = &rn.parts[p];
        char key[96];
        key_of(key, sizeof key, "_part", pt);
        const char *av[] = {"EVAL", claim_lua, "1", key};
        redisReply *r = cmd_argv(rn.nodes[pt->node].c, 4, av);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) die("claim failed");
        pt->epoch = r->element[0]->integer;
        pt->offset = r->element[1]->type == REDIS_REPLY_STRING ? atoll(r->element[1]->str) : -1;
        freeReplyObject(r);
    }
    rn.max_args = 32 + (size_t)rn.per_flush * (UPSERT_ARGS + ALERT_ARGS + 1) + 2 * ORG_FIELDS;
    rn.argv = xcalloc(rn.max_args, sizeof *rn.argv);
    rn.argl = xcalloc(rn.max_args, sizeof *rn.argl);
    rn.pool = xmalloc(rn.max_args * ARG_SLOT);

    for (int pass = 0; pass < passes; pass++) pass_run(&rn, pass, label);

    for (int i = 0; i < rn.nnodes; i++) {
        free(rn.nodes[i].out);
        redisReaderFree(rn.nodes[i].rd);
        redisFree(rn.nodes[i].c);
    }
    for (int p = 0; p < rn.nparts; p++) free(rn.parts[p].cust);
    free(rn.parts);
    free(rn.argv);
    free(rn.argl);
    free(rn.pool);
    return 0;
}
