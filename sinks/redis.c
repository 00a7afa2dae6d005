/*
 * redis.c — the Redis sink (see redis.h and docs/STATE.md).
 *
 * Owns one connection (common/redis_conn.h: TCP, Unix socket or TLS, AUTH
 * with an ACL user, connect and command timeouts), the SHA1s of its two
 * Lua scripts (redis_scripts.h), the buffers a flush request is built in,
 * and the flush under way (a "flight").  One thread, the consumer's main
 * loop (through the flush engine), runs all of it.
 *
 * A flush writes one batch (batch/batch.h) as one EVALSHA per chunk of
 * whole partitions, each built here directly in the Redis protocol (RESP)
 * from the batch: customer ids, state blobs and texts are copied once,
 * binary-safe, and the request size is known exactly for the statistics.
 * The chunks are kept until Redis answers them, and each partition's
 * result is written back into the batch.  They are written with
 * rconn_send() as the transport takes them, and the answers read when
 * poll() (or OpenSSL's own buffer) says they are there, so the caller can
 * go on consuming meanwhile; the blocking calls (claim, ping) first wait
 * for the answers of what was sent.  A connection has no way back from an
 * I/O error, a timeout or EOF: it is freed and the next call connects
 * again; the next step of the flight then sends its unanswered chunks
 * again.  Scripts are loaded on the first connection; a server that has
 * lost them (restart, SCRIPT FLUSH, failover) answers NOSCRIPT, and the
 * sink loads them again and resends, once per call or flush.
 *
 * A full Redis (maxmemory reached) refuses a flush or claim with OOM
 * before the script runs (the scripts declare themselves with a #! line,
 * redis_scripts.h): that is SINK_RETRY, and nothing of the call is
 * written.  Writes never raise SIGPIPE (common/redis_conn.c).
 */
#include "sinks/redis.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>

#include <hiredis/hiredis.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/escape.h"
#include "common/numfmt.h"
#include "sinks/redis_scripts.h"
#include "sinks/redis_testing.h"

#define HSCAN_COUNT "1000"
/* Room left at the start of a flush request for "*argc EVALSHA sha 0". */
#define FLUSH_HEAD_ROOM 96
/* Customers and alerts per flush script.  A script runs atomically, and
 * each customer costs Redis about 10-15 us, so this keeps one script to a
 * few tens of milliseconds: other clients are served between chunks. */
#define FLUSH_CHUNK_ITEMS 2048
/* A request buffer that grew beyond this is freed after the flush. */
#define FLUSH_KEEP_BYTES (16u << 20)

/* A request being written in RESP: bulk strings appended one by one. */
typedef struct resp {
    char *buf;
    size_t len, cap;
    size_t args;     /* bulk strings appended */
} resp_t;

typedef struct flight flight_t; /* a flush under way, defined with its code */
static void flight_free(flight_t *f);
static void flight_quiesce(redis_sink_t *s);

struct redis_sink {
    rconn_endpoint_t *ep;     /* the URL and, for rediss://, the TLS context */
    char where[300];          /* "127.0.0.1:6379" or "unix:/path", for messages */
    char *prefix;
    int64_t alerts_maxlen;
    int timeout_ms;
    rconn_t *c;               /* NULL: not connected */
    char claim_sha[41];       /* empty until the first SCRIPT LOAD */
    char flush_sha[41];
    sink_stats_t stats;
    resp_t req;               /* the flush request */
    resp_t dels;              /* the deletes of the partition being built */
    resp_t heads;             /* the partition headers */
    const batch_counter_t **ctr; /* a chunk's counter deltas, sorted */
    size_t ctr_cap;
    batch_counter_t *sum;     /* and summed */
    size_t sum_cap;
    flight_t *flight;         /* the flush under way, NULL when none */
    uint64_t gen;             /* connections made: a flight knows which one it is on */
};

/* ------------------------------------------------------------------ */
/* RESP request buffers                                                */

static void resp_need(resp_t *r, size_t n) {
    if (r->cap - r->len >= n) return;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap - r->len < n) cap *= 2;
    r->buf = xrealloc(r->buf, cap);
    r->cap = cap;
}

static void resp_reset(resp_t *r, size_t room) {
    r->len = 0;
    r->args = 0;
    resp_need(r, room);
    r->len = room;
}

static void resp_release(resp_t *r) {
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

static void resp_bulk(resp_t *r, const void *p, size_t n) {
    char hdr[NUMFMT_MAX + 4];
    hdr[0] = '$';
    size_t h = 1 + fmt_i64(hdr + 1, (int64_t)n);
    hdr[h++] = '\r';
    hdr[h++] = '\n';
    resp_need(r, (size_t)h + n + 2);
    memcpy(r->buf + r->len, hdr, (size_t)h);
    r->len += (size_t)h;
    if (n) memcpy(r->buf + r->len, p, n);
    r->len += n;
    memcpy(r->buf + r->len, "\r\n", 2);
    r->len += 2;
    r->args++;
}

static void resp_str(resp_t *r, const char *s) { resp_bulk(r, s, strlen(s)); }

static void resp_bstr(resp_t *r, batch_str_t s) { resp_bulk(r, s.ptr, s.len); }

/* The hot path's numbers, without printf (common/numfmt.c). */
static void resp_f4(resp_t *r, double v) {
    char tmp[NUMFMT_MAX];
    resp_bulk(r, tmp, fmt_f4(tmp, v));
}

static void resp_i64(resp_t *r, int64_t v) {
    char tmp[NUMFMT_MAX];
    resp_bulk(r, tmp, fmt_i64(tmp, v));
}

/* Appends src's bulk strings to dst. */
static void resp_append(resp_t *dst, const resp_t *src) {
    resp_need(dst, src->len);
    if (src->len) memcpy(dst->buf + dst->len, src->buf, src->len);
    dst->len += src->len;
    dst->args += src->args;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

static void sink_disconnect(redis_sink_t *s) {
    rconn_free(s->c);
    s->c = NULL;
}

/* Transient error replies: the server cannot take writes right now. */
static bool reply_is_transient(const char *msg) {
    static const char *const codes[] = {"LOADING", "BUSY", "OOM", "MASTERDOWN", "TRYAGAIN",
                                        "READONLY", "CLUSTERDOWN", "NOREPLICAS"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        size_t n = strlen(codes[i]);
        if (strncmp(msg, codes[i], n) == 0 && (msg[n] == ' ' || msg[n] == '\0')) return true;
    }
    return false;
}

/* An error reply into errstr: "redis <where> <what>: <reply>", and for
 * OOM what it means for rapport. */
static void reply_errstr(const redis_sink_t *s, const char *what, const char *msg,
                         char *errstr, size_t errstr_size) {
    bool oom = strncmp(msg, "OOM ", 4) == 0;
    snprintf(errstr, errstr_size, "redis %s %s: %s%s", s->where, what, msg,
             oom ? " (Redis is full: writes are held until memory is freed or maxmemory "
                   "raised)" : "");
}

/* The result for an error reply: RETRY for transient ones (the connection
 * is dropped too, so that a failover is followed), else FAIL. */
static sink_result_t reply_error(redis_sink_t *s, const redisReply *r, const char *what,
                                 char *errstr, size_t errstr_size) {
    reply_errstr(s, what, r->str, errstr, errstr_size);
    if (reply_is_transient(r->str)) {
        sink_disconnect(s);
        return SINK_RETRY;
    }
    return SINK_FAIL;
}

/* An I/O error, timeout or EOF on the connection: the message in errstr,
 * the connection freed (it is dead).  Returns SINK_RETRY. */
static sink_result_t sink_io_failed(redis_sink_t *s, const char *what, char *errstr,
                                    size_t errstr_size) {
    /* The connection's message starts "redis <where>: "; said once. */
    const char *why = rconn_errstr(s->c);
    size_t wl = strlen(s->where);
    if (strncmp(why, "redis ", 6) == 0 && strncmp(why + 6, s->where, wl) == 0 &&
        strncmp(why + 6 + wl, ": ", 2) == 0)
        why += 8 + wl;
    snprintf(errstr, errstr_size, "redis %s %s: %s", s->where, what,
             *why ? why : "connection lost");
    sink_disconnect(s);
    return SINK_RETRY;
}

/* Sends one request in RESP and reads its reply (caller frees it).  On an
 * I/O error, timeout or EOF the connection is freed: SINK_RETRY. */
static sink_result_t sink_roundtrip(redis_sink_t *s, const char *cmd, size_t len,
                                    redisReply **reply, const char *what, char *errstr,
                                    size_t errstr_size) {
    redisReply *r = NULL;
    *reply = NULL;
    s->stats.commands++;
    s->stats.bytes_sent += len;
    if (rconn_append_formatted(s->c, cmd, len) != 0) {
        snprintf(errstr, errstr_size, "redis %s %s: out of memory", s->where, what);
        sink_disconnect(s);
        return SINK_RETRY;
    }
    if (rconn_get_reply_wait(s->c, &r) != 0 || !r)
        return sink_io_failed(s, what, errstr, errstr_size);
    *reply = r;
    return SINK_OK;
}

/* A command from its arguments, with the sink's accounting and error
 * handling. */
static sink_result_t sink_command(redis_sink_t *s, int argc, const char **argv,
                                  const size_t *lens, redisReply **reply, const char *what,
                                  char *errstr, size_t errstr_size) {
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        snprintf(errstr, errstr_size, "redis %s: out of memory", what);
        *reply = NULL;
        return SINK_RETRY;
    }
    sink_result_t res = sink_roundtrip(s, cmd, (size_t)len, reply, what, errstr, errstr_size);
    redisFreeCommand(cmd);
    return res;
}

/* A command whose reply must be a status (+OK). */
static sink_result_t sink_simple(redis_sink_t *s, int argc, const char **argv,
                                 const char *what, char *errstr, size_t errstr_size) {
    redisReply *r;
    sink_result_t res = sink_command(s, argc, argv, NULL, &r, what, errstr, errstr_size);
    if (res != SINK_OK) return res;
    if (r->type == REDIS_REPLY_ERROR) {
        res = reply_error(s, r, what, errstr, errstr_size);
    } else if (r->type != REDIS_REPLY_STATUS) {
        snprintf(errstr, errstr_size, "redis %s %s: unexpected reply type %d", s->where, what,
                 r->type);
        res = SINK_FAIL;
    }
    freeReplyObject(r);
    return res;
}

/* SCRIPT LOAD of one script into sha[41]. */
static sink_result_t load_script(redis_sink_t *s, const char *src, char *sha, char *errstr,
                                 size_t errstr_size) {
    const char *argv[] = {"SCRIPT", "LOAD", src};
    redisReply *r;
    sink_result_t res = sink_command(s, 3, argv, NULL, &r, "SCRIPT LOAD", errstr, errstr_size);
    if (res != SINK_OK) return res;
    if (r->type == REDIS_REPLY_ERROR) {
        res = reply_error(s, r, "SCRIPT LOAD", errstr, errstr_size);
    } else if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(errstr, errstr_size, "redis %s SCRIPT LOAD: unexpected reply", s->where);
        res = SINK_FAIL;
    } else {
        memcpy(sha, r->str, 40);
        sha[40] = '\0';
    }
    freeReplyObject(r);
    return res;
}

static sink_result_t load_scripts(redis_sink_t *s, char *errstr, size_t errstr_size) {
    sink_result_t res = load_script(s, redis_claim_lua, s->claim_sha, errstr, errstr_size);
    if (res == SINK_OK) res = load_script(s, redis_flush_lua, s->flush_sha, errstr, errstr_size);
    return res;
}

void redis_sink_set_timeout(redis_sink_t *s, int timeout_ms) {
    if (timeout_ms <= 0) timeout_ms = 1;
    s->timeout_ms = timeout_ms;
    if (s->c) rconn_set_timeout(s->c, timeout_ms);
}

/* Connects (TLS handshake, AUTH and SELECT are common/redis_conn.c's)
 * and, the first time, loads the scripts.  A no-op when connected.
 * RETRY when Redis cannot be reached; FAIL when it refused the TLS
 * handshake or the login (errstr says why, never the password). */
static sink_result_t sink_connect(redis_sink_t *s, char *errstr, size_t errstr_size) {
    /* A command sent now would be answered after the flush's requests. */
    flight_quiesce(s);
    if (s->c) return SINK_OK;
    rconn_err_t why = RCONN_ERR_IO;
    s->c = rconn_connect(s->ep, s->timeout_ms, &why, errstr, errstr_size);
    if (!s->c) {
        /* A refused handshake or login does not mend by itself, but it is
         * retried all the same (the caller backs off): a certificate or an
         * ACL user may be fixed on the server side meanwhile. */
        return why == RCONN_ERR_IO ? SINK_RETRY : SINK_FAIL;
    }
    s->gen++;
    sink_result_t res = s->flush_sha[0] ? SINK_OK : load_scripts(s, errstr, errstr_size);
    if (res != SINK_OK) sink_disconnect(s);
    return res;
}

/* Sends an EVALSHA request (already in RESP) and reads the reply; on
 * NOSCRIPT, loads the scripts again and resends it once.  The request's
 * SHA1 stays valid: SCRIPT LOAD of the same source gives the same one. */
static sink_result_t sink_evalsha(redis_sink_t *s, const char *cmd, size_t len,
                                  redisReply **reply, const char *what, char *errstr,
                                  size_t errstr_size) {
    for (int attempt = 0;; attempt++) {
        sink_result_t res = sink_roundtrip(s, cmd, len, reply, what, errstr, errstr_size);
        if (res != SINK_OK) return res;
        redisReply *r = *reply;
        if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) return SINK_OK;
        snprintf(errstr, errstr_size, "redis %s %s: %s", s->where, what, r->str);
        freeReplyObject(r);
        *reply = NULL;
        if (attempt == 1) return SINK_RETRY;
        res = load_scripts(s, errstr, errstr_size);
        if (res != SINK_OK) {
            if (res == SINK_FAIL) sink_disconnect(s);
            return res;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

redis_sink_t *redis_sink_new(const redis_sink_conf_t *conf, char *errstr, size_t errstr_size) {
    if (!conf->prefix) {
        snprintf(errstr, errstr_size, "redis sink: no key prefix");
        return NULL;
    }
    if (conf->alerts_maxlen <= 0 || conf->timeout_ms <= 0) {
        snprintf(errstr, errstr_size, "redis sink: alerts_maxlen and timeout_ms must be > 0");
        return NULL;
    }
    rconn_endpoint_t *ep = rconn_endpoint_new(conf->url, &conf->tls, errstr, errstr_size);
    if (!ep) return NULL;
    redis_sink_t *s = xcalloc(1, sizeof(*s));
    s->ep = ep;
    s->prefix = xstrdup(conf->prefix);
    s->alerts_maxlen = conf->alerts_maxlen;
    s->timeout_ms = conf->timeout_ms;
    snprintf(s->where, sizeof(s->where), "%s", rconn_endpoint_where(ep));
    return s;
}

void redis_sink_free(redis_sink_t *s) {
    if (!s) return;
    sink_disconnect(s);
    flight_free(s->flight);
    resp_release(&s->req);
    resp_release(&s->dels);
    resp_release(&s->heads);
    free(s->ctr);
    free(s->sum);
    free(s->prefix);
    rconn_endpoint_free(s->ep);
    free(s);
}

const sink_stats_t *redis_sink_stats(const redis_sink_t *s) { return &s->stats; }

sink_result_t redis_sink_ping(redis_sink_t *s, char *errstr, size_t errstr_size) {
    sink_result_t res = sink_connect(s, errstr, errstr_size);
    if (res != SINK_OK) return res;
    const char *argv[] = {"PING"};
    return sink_simple(s, 1, argv, "PING", errstr, errstr_size);
}

/* Parses a stored integer (offset, watermark).  Returns 0 or -1. */
static int reply_int64(const redisReply *r, int64_t *out) {
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20) return -1;
    char buf[24], *end;
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* HSCANs <prefix>_state:<field> into the loader. */
static sink_result_t load_states(redis_sink_t *s, const char *field, const sink_loader_t *loader,
                                 char *errstr, size_t errstr_size) {
    char key[600];
    snprintf(key, sizeof(key), "%s_state:%s", s->prefix, field);
    char cursor[32] = "0";
    do {
        const char *argv[] = {"HSCAN", key, cursor, "COUNT", HSCAN_COUNT};
        redisReply *r;
        sink_result_t res = sink_command(s, 5, argv, NULL, &r, "HSCAN", errstr, errstr_size);
        if (res != SINK_OK) return res;
        if (r->type == REDIS_REPLY_ERROR) {
            res = reply_error(s, r, "HSCAN", errstr, errstr_size);
            freeReplyObject(r);
            return res;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof(cursor) ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0) {
            snprintf(errstr, errstr_size, "redis %s HSCAN %s: unexpected reply", s->where, key);
            freeReplyObject(r);
            return SINK_FAIL;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i < kv->elements; i += 2) {
            const redisReply *cid = kv->element[i], *blob = kv->element[i + 1];
            if (cid->type != REDIS_REPLY_STRING || blob->type != REDIS_REPLY_STRING) continue;
            char why[200];
            if (loader->customer(loader->opaque, cid->str, cid->len,
                                 (const unsigned char *)blob->str, blob->len, why,
                                 sizeof(why)) == 0)
                continue;
            char q[200];
            snprintf(errstr, errstr_size, "redis %s: stored state of customer \"%s\" in %s: %s",
                     s->where, escape_bytes(cid->str, cid->len, 64, q, sizeof(q)), key, why);
            freeReplyObject(r);
            return SINK_FAIL;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return SINK_OK;
}

sink_result_t redis_sink_claim(redis_sink_t *s, const char *topic, int32_t partition,
                               const sink_loader_t *loader, sink_claim_t *out,
                               char *errstr, size_t errstr_size) {
    char field[300];
    snprintf(field, sizeof(field), "%s:%" PRId32, topic, partition);
    sink_result_t res = sink_connect(s, errstr, errstr_size);
    if (res != SINK_OK) return res;

    const char *argv[] = {"EVALSHA", s->claim_sha, "0", s->prefix, field};
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, 5, argv, NULL);
    if (len < 0) {
        snprintf(errstr, errstr_size, "redis claim: out of memory");
        return SINK_RETRY;
    }
    redisReply *r;
    res = sink_evalsha(s, cmd, (size_t)len, &r, "claim", errstr, errstr_size);
    redisFreeCommand(cmd);
    if (res != SINK_OK) return res;
    if (r->type == REDIS_REPLY_ERROR) {
        res = reply_error(s, r, "claim", errstr, errstr_size);
        freeReplyObject(r);
        return res;
    }
    s->stats.commands += 3;
    int64_t e = 0, off = -1, wm = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        snprintf(errstr, errstr_size, "redis %s claim %s: unexpected reply", s->where, field);
        res = SINK_FAIL;
    } else {
        e = r->element[0]->integer;
        if ((r->element[1]->type != REDIS_REPLY_NIL && reply_int64(r->element[1], &off) != 0) ||
            (r->element[2]->type != REDIS_REPLY_NIL && reply_int64(r->element[2], &wm) != 0)) {
            snprintf(errstr, errstr_size,
                     "redis %s claim %s: stored offset or watermark is not an integer",
                     s->where, field);
            res = SINK_FAIL;
        }
    }
    freeReplyObject(r);
    if (res != SINK_OK) return res;

    loader->watermark(loader->opaque, wm);
    res = load_states(s, field, loader, errstr, errstr_size);
    if (res != SINK_OK) return res;
    *out = (sink_claim_t){.epoch = e, .next_offset = off, .watermark = wm};
    return SINK_OK;
}

/* ------------------------------------------------------------------ */
/* Flush                                                               */

/* "<topic>:<partition>", the partition's field in the hashes. */
static int part_field(const batch_partition_t *bp, char *out, size_t size) {
    return snprintf(out, size, "%.*s:%" PRId32, (int)bp->topic.len, bp->topic.ptr,
                    bp->partition);
}

/* A customer's record in a flush request (redis_flush_lua): its id, a mask
 * of the public fields it carries, their values in the mask's order, its
 * resume state.  The mask is the batch's BATCH_CF_* bits 0-11 (ci …
 * updated_at), bit 12 for last_event_id (sent when an event set one) and
 * bit 13 for route and route_reason (sent when flagged and computed). */
_Static_assert(BATCH_CF_CI == 1u << 0 && BATCH_CF_AHT_MS == 1u << 5 &&
                   BATCH_CF_STREAK == 1u << 6 && BATCH_CF_UPDATED_AT == 1u << 11,
               "the wire mask takes the batch's bits 0-11 in the hash's field order");
#define WIRE_LAST_EVENT_ID (1u << 12)
#define WIRE_ROUTE (1u << 13)
static void customer_build(resp_t *req, const batch_customer_t *v) {
    uint32_t m = v->changed & 0xfffu;
    if (v->last_event_id.len) m |= WIRE_LAST_EVENT_ID;
    if ((v->changed & BATCH_CF_ROUTE) && v->route.len) m |= WIRE_ROUTE;
    resp_bstr(req, v->customer_id);
    resp_i64(req, m);
    const double f4[6] = {v->ci, v->resolution, v->sentiment, v->loyalty, v->ai_share, v->aht_ms};
    const int64_t i64[6] = {v->streak, v->contacts, v->resolved, v->events, v->at_risk ? 1 : 0,
                            v->updated_at};
    for (int k = 0; k < 6; k++)
        if (m & (1u << k)) resp_f4(req, f4[k]);
    for (int k = 0; k < 6; k++)
        if (m & (1u << (6 + k))) resp_i64(req, i64[k]);
    if (m & WIRE_LAST_EVENT_ID) resp_bstr(req, v->last_event_id);
    if (m & WIRE_ROUTE) {
        resp_bstr(req, v->route);
        resp_bstr(req, v->route_reason);
    }
    resp_bstr(req, v->state);
}

/* Orders counter deltas by bucket start, then field. */
static int counter_cmp(const void *pa, const void *pb) {
    const batch_counter_t *a = *(const batch_counter_t *const *)pa;
    const batch_counter_t *b = *(const batch_counter_t *const *)pb;
    if (a->bucket_start != b->bucket_start) return a->bucket_start < b->bucket_start ? -1 : 1;
    size_t n = a->field.len < b->field.len ? a->field.len : b->field.len;
    int c = n ? memcmp(a->field.ptr, b->field.ptr, n) : 0;
    if (c) return c;
    return (a->field.len > b->field.len) - (a->field.len < b->field.len);
}

/* Sorts the deltas in s->ctr[0..n) and sums those of the same bucket and
 * field into s->sum; returns how many there are.  Saturates instead of
 * overflowing, which no real count reaches. */
static size_t counters_sum(redis_sink_t *s, size_t n) {
    if (n == 0) return 0; /* s->ctr may still be NULL: qsort must not see it */
    qsort(s->ctr, n, sizeof(*s->ctr), counter_cmp);
    if (s->sum_cap < n) {
        s->sum_cap = n;
        s->sum = xrealloc(s->sum, n * sizeof(*s->sum));
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        const batch_counter_t *c = s->ctr[k];
        if (m && counter_cmp(&c, &(const batch_counter_t *){&s->sum[m - 1]}) == 0) {
            if (__builtin_add_overflow(s->sum[m - 1].delta, c->delta, &s->sum[m - 1].delta))
                s->sum[m - 1].delta = c->delta < 0 ? INT64_MIN : INT64_MAX;
        } else {
            s->sum[m++] = *c;
        }
    }
    return m;
}

/* Collects the history (org: false) or org deltas of parts[0..n) in s->ctr
 * and returns how many. */
static size_t counters_collect(redis_sink_t *s, batch_partition_t *const *parts, size_t n,
                               bool org) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += org ? parts[i]->norg : parts[i]->nhistory;
    if (s->ctr_cap < total) {
        s->ctr_cap = total;
        s->ctr = xrealloc(s->ctr, total * sizeof(*s->ctr));
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const batch_counter_t *c = org ? parts[i]->org : parts[i]->history;
        size_t cn = org ? parts[i]->norg : parts[i]->nhistory;
        for (size_t j = 0; j < cn; j++) {
            s->ctr[k] = &c[j];
            k++;
        }
    }
    return k;
}

/* Appends the counters section of a chunk's request (redis_flush_lua): its
 * history and org deltas summed over its partitions, each hash's fields
 * once.  A chunk is written or refused whole, so the sums are exact. */
static void counters_build(redis_sink_t *s, batch_partition_t *const *parts, size_t n) {
    resp_t *req = &s->req;
    size_t m = counters_sum(s, counters_collect(s, parts, n, false));
    size_t hashes = 0;
    for (size_t k = 0; k < m; k++)
        hashes += k == 0 || s->sum[k].bucket_start != s->sum[k - 1].bucket_start;
    resp_i64(req, (int64_t)hashes);
    for (size_t k = 0; k < m;) {
        size_t e = k;
        while (e < m && s->sum[e].bucket_start == s->sum[k].bucket_start) e++;
        resp_i64(req, s->sum[k].bucket_start);
        resp_i64(req, (int64_t)(e - k));
        for (; k < e; k++) {
            resp_bstr(req, s->sum[k].field);
            resp_i64(req, s->sum[k].delta);
        }
    }
    m = counters_sum(s, counters_collect(s, parts, n, true));
    resp_i64(req, (int64_t)m);
    for (size_t k = 0; k < m; k++) {
        resp_bstr(req, s->sum[k].field);
        resp_i64(req, s->sum[k].delta);
    }
}

/* Builds the flush request for parts[0..n) in s->req (see redis_flush_lua
 * for the ARGV layout); the request starts at s->req.buf + *start. */
static void flush_build(redis_sink_t *s, batch_partition_t *const *parts, size_t n,
                        size_t *start) {
    resp_t *req = &s->req;
    resp_reset(req, FLUSH_HEAD_ROOM);
    resp_reset(&s->heads, 0);
    resp_str(req, s->prefix);
    resp_i64(req, s->alerts_maxlen);
    resp_i64(req, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        const batch_partition_t *bp = parts[i];
        size_t upsert_args = req->args;
        for (size_t k = 0; k < bp->ncustomers; k++) customer_build(req, &bp->customers[k]);
        upsert_args = req->args - upsert_args;
        for (size_t k = 0; k < bp->ndeletes; k++) resp_bstr(req, bp->deletes[k]);
        for (size_t k = 0; k < bp->nalerts; k++) {
            const batch_alert_t *a = &bp->alerts[k];
            resp_bstr(req, a->type);
            resp_bstr(req, a->customer_id);
            resp_f4(req, a->score);
            if (a->has_previous)
                resp_f4(req, a->previous_score);
            else
                resp_bulk(req, "", 0);
            resp_bstr(req, a->trigger);
            resp_bstr(req, a->event_id);
            resp_i64(req, a->occurred_at);
            resp_i64(req, a->partition);
            resp_i64(req, a->offset);
            resp_bstr(req, a->reason);
            resp_bstr(req, a->narrative);
        }
        for (size_t k = 0; k < bp->nerasures; k++) resp_bstr(req, bp->erasures[k]);

        resp_t *h = &s->heads;
        char field[300];
        part_field(bp, field, sizeof(field));
        resp_str(h, field);
        resp_i64(h, bp->epoch);
        resp_i64(h, bp->prev_offset < 0 ? (int64_t)-1 : bp->prev_offset);
        resp_i64(h, bp->next_offset);
        if (bp->has_watermark)
            resp_i64(h, bp->watermark);
        else
            resp_bulk(h, "", 0);
        resp_i64(h, (int64_t)bp->ncustomers);
        resp_i64(h, (int64_t)upsert_args);
        resp_i64(h, (int64_t)bp->ndeletes);
        resp_i64(h, (int64_t)bp->nalerts);
        resp_i64(h, (int64_t)bp->nerasures);
    }
    counters_build(s, parts, n);
    resp_append(req, &s->heads);

    /* The command head, right-aligned in the room left for it. */
    char head[FLUSH_HEAD_ROOM];
    int hl = snprintf(head, sizeof(head), "*%zu\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n0\r\n",
                      req->args + 3, s->flush_sha);
    assert(hl > 0 && hl < FLUSH_HEAD_ROOM);
    *start = FLUSH_HEAD_ROOM - (size_t)hl;
    memcpy(req->buf + *start, head, (size_t)hl);
}

/* Marks the partitions named in "FENCED <field> <field>…" fenced, and the
 * others of the chunk refused. */
static void mark_fenced(batch_partition_t *const *parts, size_t n, const char *msg) {
    for (size_t i = 0; i < n; i++) {
        char field[300];
        int fl = part_field(parts[i], field, sizeof(field));
        parts[i]->result = BATCH_REFUSED;
        for (const char *p = msg + strlen("FENCED"); *p;) {
            p += strspn(p, " ");
            size_t tl = strcspn(p, " ");
            if (tl == (size_t)fl && memcmp(p, field, tl) == 0) parts[i]->result = BATCH_FENCED;
            p += tl;
        }
    }
}

/* ------------------------------------------------------------------ */
/* A flush in flight                                                   */

/* One EVALSHA of a flush: whole partitions, written atomically by Redis. */
typedef struct chunk {
    char *buf;           /* the request in RESP, owned */
    size_t len;
    size_t sent;         /* bytes written on the current connection */
    size_t first, count; /* its partitions: flight.parts[first .. first + count) */
    bool done;           /* answered: written, found written, or fenced */
    bool split;          /* answered SPLIT: to be sent again one partition per call */
} chunk_t;

/* The requests of one flush, kept until Redis has answered each of them,
 * so that they can be sent again after an error without the batch's
 * producer, which has moved on. */
struct flight {
    batch_partition_t **parts; /* the batch's, results written into them */
    size_t nparts;
    chunk_t *chunks;
    size_t nchunks;
    size_t send_at;      /* next chunk to send on this connection */
    size_t reply_at;     /* chunk the next reply is for */
    int64_t progress_at; /* monotonic ms of the last byte sent or reply read */
    uint64_t gen;        /* the connection send_at and reply_at count on */
    bool reloaded;       /* the scripts were loaded again for this flight */
    bool failed;         /* the last step failed: the next one sends again */
};

static void flight_free(flight_t *f) {
    if (!f) return;
    for (size_t k = 0; k < f->nchunks; k++) free(f->chunks[k].buf);
    free(f->chunks);
    free(f->parts);
    free(f);
}

/* Builds the chunk of parts[first .. first + count) into ch. */
static void chunk_build(redis_sink_t *s, flight_t *f, chunk_t *ch, size_t first, size_t count) {
    size_t start;
    flush_build(s, f->parts + first, count, &start);
    s->stats.args += s->req.args;
    *ch = (chunk_t){.len = s->req.len - start, .first = first, .count = count};
    ch->buf = xmalloc(ch->len);
    memcpy(ch->buf, s->req.buf + start, ch->len);
}

/* Replaces each chunk that answered SPLIT by one chunk per partition:
 * those are written or skipped whole (redis_flush_lua). */
static void flight_split(redis_sink_t *s) {
    flight_t *f = s->flight;
    size_t n = 0;
    for (size_t k = 0; k < f->nchunks; k++) n += f->chunks[k].split ? f->chunks[k].count : 1;
    chunk_t *chunks = xcalloc(n, sizeof(*chunks));
    size_t m = 0;
    for (size_t k = 0; k < f->nchunks; k++) {
        chunk_t *ch = &f->chunks[k];
        if (!ch->split) {
            chunks[m++] = *ch;
            continue;
        }
        for (size_t i = 0; i < ch->count; i++) chunk_build(s, f, &chunks[m++], ch->first + i, 1);
        free(ch->buf);
    }
    free(f->chunks);
    f->chunks = chunks;
    f->nchunks = m;
    /* Every answer is in: nothing is under way (flight_restart sends). */
    f->send_at = f->reply_at = m;
    if (s->req.cap > FLUSH_KEEP_BYTES) resp_release(&s->req);
}

/* Builds every chunk of a flush from the batch. */
static flight_t *flight_build(redis_sink_t *s, batch_t *b) {
    size_t n = batch_partition_count(b);
    flight_t *f = xcalloc(1, sizeof(*f));
    f->parts = xcalloc(n, sizeof(*f->parts));
    f->chunks = xcalloc(n, sizeof(*f->chunks));
    f->nparts = n;
    for (size_t i = 0; i < n; i++) {
        f->parts[i] = batch_partition(b, i);
        f->parts[i]->result = BATCH_PENDING;
    }
    for (size_t a = 0; a < n;) {
        size_t b_end = a, items = 0;
        while (b_end < n && (b_end == a || items < FLUSH_CHUNK_ITEMS))
            items += batch_partition_items(f->parts[b_end++]);
        chunk_build(s, f, &f->chunks[f->nchunks++], a, b_end - a);
        a = b_end;
    }
    if (s->req.cap > FLUSH_KEEP_BYTES) resp_release(&s->req);
    return f;
}

/* The first chunk from k on that Redis has not answered yet. */
static size_t next_open(const flight_t *f, size_t k) {
    while (k < f->nchunks && f->chunks[k].done) k++;
    return k;
}

/* Sends the chunks not yet answered from their start, on a connection made
 * now if there is none. */
static sink_result_t flight_restart(redis_sink_t *s, char *errstr, size_t errstr_size) {
    flight_t *f = s->flight;
    sink_result_t res = sink_connect(s, errstr, errstr_size);
    if (res != SINK_OK) return res;
    for (size_t k = 0; k < f->nchunks; k++) f->chunks[k].sent = 0;
    /* Answers come for the open chunks only, in order. */
    f->send_at = f->reply_at = next_open(f, 0);
    f->gen = s->gen;
    f->progress_at = clock_ms();
    return SINK_OK;
}

/* Writes what the socket takes now, without blocking.  Returns 0 or -1 on
 * an I/O error. */
static int flight_send(redis_sink_t *s) {
    flight_t *f = s->flight;
    for (f->send_at = next_open(f, f->send_at); f->send_at < f->nchunks;
         f->send_at = next_open(f, f->send_at + 1)) {
        chunk_t *ch = &f->chunks[f->send_at];
        while (ch->sent < ch->len) {
            /* 0: the transport is full.  The same bytes are offered again
             * next time, as TLS requires. */
            ssize_t w = rconn_send(s->c, ch->buf + ch->sent, ch->len - ch->sent);
            if (w < 0) return -1;
            if (w == 0) return 0;
            ch->sent += (size_t)w;
            s->stats.bytes_sent += (size_t)w;
            f->progress_at = clock_ms();
        }
        s->stats.commands++;
    }
    return 0;
}

/* Takes one reply for chunk f->reply_at.  A reply that is neither a count
 * nor FENCED nor NOSCRIPT leaves the chunk open and is the result. */
static sink_result_t flight_reply(redis_sink_t *s, const redisReply *r, char *errstr,
                                  size_t errstr_size) {
    flight_t *f = s->flight;
    chunk_t *ch = &f->chunks[f->reply_at];
    batch_partition_t **parts = f->parts + ch->first;
    f->reply_at = next_open(f, f->reply_at + 1);
    f->progress_at = clock_ms();
    if (r->type == REDIS_REPLY_ERROR) {
        /* Left open: sent again once the scripts are loaded (the wait). */
        if (strncmp(r->str, "NOSCRIPT", 8) == 0) return SINK_OK;
        /* Left open too: sent again one partition per call (the wait).  A
         * chunk of one partition cannot mix: from it, SPLIT is an error. */
        if (strncmp(r->str, "SPLIT", 5) == 0 && (r->str[5] == ' ' || !r->str[5]) &&
            ch->count > 1) {
            ch->split = true;
            return SINK_OK;
        }
        reply_errstr(s, "flush", r->str, errstr, errstr_size);
        if (strncmp(r->str, "FENCED ", 7) == 0) {
            /* Nothing of the chunk was written. */
            mark_fenced(parts, ch->count, r->str);
            ch->done = true;
            return SINK_OK;
        }
        return reply_is_transient(r->str) ? SINK_RETRY : SINK_FAIL;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        snprintf(errstr, errstr_size, "redis %s flush: unexpected reply", s->where);
        return SINK_FAIL;
    }
    for (size_t i = 0; i < ch->count; i++) parts[i]->result = BATCH_WRITTEN;
    ch->done = true;
    s->stats.flushes++;
    s->stats.commands += (uint64_t)r->element[0]->integer;
    s->stats.customers_written += (uint64_t)r->element[1]->integer;
    s->stats.alerts_written += (uint64_t)r->element[2]->integer;
    return SINK_OK;
}

sink_result_t redis_sink_begin(redis_sink_t *s, batch_t *b, char *errstr, size_t errstr_size) {
    assert(!s->flight);
    /* Connected first: the requests carry the script's SHA1. */
    sink_result_t res = sink_connect(s, errstr, errstr_size);
    if (res != SINK_OK) return res;
    s->flight = flight_build(s, b);
    s->flight->progress_at = clock_ms();
    s->flight->gen = s->gen;
    return SINK_OK;
}

/* Sends and reads for the flight for up to wait_ms; SINK_OK when every
 * chunk is answered.  An error drops the connection. */
static sink_result_t flight_wait(redis_sink_t *s, int wait_ms, char *errstr,
                                 size_t errstr_size) {
    flight_t *f = s->flight;
    if (!s->c || f->gen != s->gen) {
        sink_result_t res = flight_restart(s, errstr, errstr_size);
        if (res != SINK_OK) return res;
    }
    int64_t until = clock_ms() + (wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        if (flight_send(s) != 0) return sink_io_failed(s, "flush", errstr, errstr_size);
        /* Every reply the reader holds or the socket has. */
        for (;;) {
            redisReply *reply = NULL;
            if (rconn_get_reply(s->c, &reply) != 0)
                return sink_io_failed(s, "flush", errstr, errstr_size);
            if (!reply) {
                ssize_t n = rconn_read(s->c, 0);
                if (n < 0) return sink_io_failed(s, "flush", errstr, errstr_size);
                if (n == 0) break;
                continue;
            }
            if (f->reply_at >= f->nchunks) { /* a reply nobody asked for */
                freeReplyObject(reply);
                snprintf(errstr, errstr_size, "redis %s flush: unexpected reply", s->where);
                sink_disconnect(s);
                return SINK_RETRY;
            }
            sink_result_t res = flight_reply(s, reply, errstr, errstr_size);
            freeReplyObject(reply);
            if (res != SINK_OK) {
                /* Transient (LOADING, READONLY…): reconnect, to follow a failover. */
                sink_disconnect(s);
                return res;
            }
        }
        if (f->reply_at >= f->nchunks) {
            if (next_open(f, 0) == f->nchunks) return SINK_OK;
            bool split = false;
            for (size_t k = 0; k < f->nchunks; k++) split |= f->chunks[k].split;
            if (split) {
                flight_split(s);
                sink_result_t res = flight_restart(s, errstr, errstr_size);
                if (res != SINK_OK) {
                    sink_disconnect(s);
                    return res;
                }
                continue;
            }
            /* Every chunk sent got its answer, some NOSCRIPT: Redis lost the
             * scripts (restart, SCRIPT FLUSH).  Loaded again once per try. */
            if (f->reloaded) {
                snprintf(errstr, errstr_size, "redis %s flush: NOSCRIPT after loading the scripts",
                         s->where);
                return SINK_RETRY;
            }
            f->reloaded = true;
            sink_result_t res = load_scripts(s, errstr, errstr_size);
            if (res == SINK_OK) res = flight_restart(s, errstr, errstr_size);
            if (res != SINK_OK) {
                sink_disconnect(s);
                return res;
            }
            continue;
        }
        int64_t now = clock_ms();
        if (now - f->progress_at >= s->timeout_ms) {
            snprintf(errstr, errstr_size, "redis %s flush: no answer within %d ms", s->where,
                     s->timeout_ms);
            sink_disconnect(s);
            return SINK_RETRY;
        }
        if (now >= until) return SINK_PENDING;
        int64_t left = until - now;
        if (left > f->progress_at + s->timeout_ms - now) left = f->progress_at + s->timeout_ms - now;
        /* Bytes OpenSSL already decrypted are invisible to poll(). */
        if (rconn_pending(s->c)) continue;
        struct pollfd pfd = {.fd = rconn_fd(s->c),
                             .events = rconn_poll_events(s->c, f->send_at < f->nchunks)};
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
            snprintf(errstr, errstr_size, "redis %s flush: poll: %s", s->where, strerror(errno));
            sink_disconnect(s);
            return SINK_RETRY;
        }
    }
}

/* Waits until every request sent on this connection is answered, so that
 * another command can use it.  An error drops the connection; the flight
 * is sent again by the next step. */
static void flight_quiesce(redis_sink_t *s) {
    flight_t *f = s->flight;
    char err[512];
    if (!f || !s->c || f->gen != s->gen) return;
    bool partial = f->send_at < f->nchunks && f->chunks[f->send_at].sent > 0;
    if (f->reply_at >= f->send_at && !partial) return;
    sink_result_t r;
    while ((r = flight_wait(s, s->timeout_ms, err, sizeof(err))) == SINK_PENDING) {
    }
    if (r != SINK_OK) f->failed = true;
}

sink_result_t redis_sink_step(redis_sink_t *s, int wait_ms, char *errstr, size_t errstr_size) {
    flight_t *f = s->flight;
    assert(f);
    if (f->failed) {
        /* Send again what was not answered, reconnecting if needed. */
        f->reloaded = false;
        sink_result_t res = flight_restart(s, errstr, errstr_size);
        if (res != SINK_OK) return res;
        f->failed = false;
    }
    sink_result_t res = flight_wait(s, wait_ms, errstr, errstr_size);
    if (res == SINK_OK) {
        flight_free(f);
        s->flight = NULL;
    } else if (res != SINK_PENDING) {
        f->failed = true;
    }
    return res;
}

bool redis_sink_busy(const redis_sink_t *s) { return s->flight != NULL; }

sink_result_t redis_sink_flush(redis_sink_t *s, batch_t *b, char *errstr, size_t errstr_size) {
    size_t n = batch_partition_count(b);
    if (n == 0) return SINK_OK;
    sink_result_t res = redis_sink_begin(s, b, errstr, errstr_size);
    if (res != SINK_OK) return res;
    do
        res = redis_sink_step(s, s->timeout_ms, errstr, errstr_size);
    while (res == SINK_PENDING);
    if (res != SINK_OK) {
        /* Forgotten: the caller flushes the same batch again. */
        flight_free(s->flight);
        s->flight = NULL;
        return res;
    }
    for (size_t i = 0; i < n; i++)
        if (batch_partition(b, i)->result != BATCH_WRITTEN) return SINK_FAIL; /* errstr: FENCED */
    return SINK_OK;
}

/* ------------------------------------------------------------------ */
/* The sink interface (batch/sink.h)                                   */

static sink_result_t op_claim(void *self, const char *topic, int32_t partition,
                              const sink_loader_t *loader, sink_claim_t *out, char *errstr,
                              size_t errstr_size) {
    return redis_sink_claim(self, topic, partition, loader, out, errstr, errstr_size);
}

static sink_result_t op_begin(void *self, batch_t *b, char *errstr, size_t errstr_size) {
    return redis_sink_begin(self, b, errstr, errstr_size);
}

static sink_result_t op_step(void *self, int wait_ms, char *errstr, size_t errstr_size) {
    return redis_sink_step(self, wait_ms, errstr, errstr_size);
}

static bool op_busy(const void *self) { return redis_sink_busy(self); }

static sink_result_t op_ping(void *self, char *errstr, size_t errstr_size) {
    return redis_sink_ping(self, errstr, errstr_size);
}

static void op_set_timeout(void *self, int timeout_ms) { redis_sink_set_timeout(self, timeout_ms); }

static void op_free(void *self) { redis_sink_free(self); }

static const sink_ops_t redis_sink_ops = {
    .name = "redis",
    .claim = op_claim,
    .begin = op_begin,
    .step = op_step,
    .busy = op_busy,
    .ping = op_ping,
    .set_timeout = op_set_timeout,
    .free = op_free,
};

sink_t redis_sink_as_sink(redis_sink_t *s) { return (sink_t){&redis_sink_ops, s}; }
