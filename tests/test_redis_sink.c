/*
 * test_redis_sink.c — the Redis sink (sinks/redis.c) against a real,
 * private redis-server (common/redis_proc.c), one per test: URL parsing,
 * the SPEC §5 layout byte for byte, claim and fencing, the state round trip
 * into a fresh window, eviction, outages (kill, restart with AOF, SIGSTOP),
 * NOSCRIPT and retried flushes that had already landed.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "common/clock.h"
#include "common/redis_proc.h"
#include "scoring/window.h"
#include "sinks/redis.h"
#include "sinks/redis_testing.h"

#define DAY 86400000LL
#define T0 (20000 * DAY) /* an arbitrary day boundary */
#define TOPIC "interactions"
#define PREFIX "t:"

/* ------------------------------------------------------------------ */
/* Configuration (URL parsing itself: tests/test_redis_conn.c)          */

Test(redis_url, sink_new_rejects_bad_conf) {
    char err[256];
    redis_sink_conf_t conf = {"redis://h:0", "p:", 10, 100, {0}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    cr_expect(strstr(err, "port") != NULL, "%s", err);
    conf = (redis_sink_conf_t){"redis://h", "p:", 0, 100, {0}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    conf = (redis_sink_conf_t){"redis://h", "p:", 10, 0, {0}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    conf = (redis_sink_conf_t){"redis://h", NULL, 10, 100, {0}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    /* TLS files are read at start-up, and TLS settings need rediss://. */
    conf = (redis_sink_conf_t){"rediss://h", "p:", 10, 100, {.ca_file = "/nonexistent/ca.pem"}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    cr_expect(strstr(err, "/nonexistent/ca.pem") != NULL, "%s", err);
    conf = (redis_sink_conf_t){"redis://h", "p:", 10, 100, {.server_name = "h"}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    /* An ACL user is accepted now, and the password never shows. */
    conf = (redis_sink_conf_t){"redis://alice:hunter2@h:0", "p:", 10, 100, {0}};
    cr_expect_null(redis_sink_new(&conf, err, sizeof(err)));
    cr_expect(strstr(err, "hunter2") == NULL, "%s", err);
    conf = (redis_sink_conf_t){"rediss://alice:hunter2@h", "p:", 10, 100, {0}};
    redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
    cr_expect_not_null(s, "%s", err);
    redis_sink_free(s);
    redis_sink_free(NULL);
}

/* ------------------------------------------------------------------ */
/* Fixture: one redis-server, a raw hiredis connection to check it      */

static redis_proc_t *proc;
static redisContext *raw;

static void start_redis(const char *const *args) {
    char err[256];
    signal(SIGPIPE, SIG_IGN);
    proc = redis_proc_start(args, err, sizeof(err));
    cr_assert_not_null(proc, "%s", err);
    struct timeval tv = {2, 0};
    raw = redisConnectWithTimeout("127.0.0.1", redis_proc_port(proc), tv);
    cr_assert(raw && !raw->err);
}

static void setup(void) { start_redis(NULL); }

static void setup_aof(void) {
    static const char *const args[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    start_redis(args);
}

static void teardown(void) {
    redisFree(raw);
    raw = NULL;
    redis_proc_stop(proc);
    proc = NULL;
}

static void reconnect_raw(void) {
    redisFree(raw);
    struct timeval tv = {2, 0};
    raw = redisConnectWithTimeout("127.0.0.1", redis_proc_port(proc), tv);
    cr_assert(raw && !raw->err);
}

/* A command on the raw connection; the caller frees the reply. */
static redisReply *rcmd(int argc, const char **argv, const size_t *lens) {
    redisReply *r = redisCommandArgv(raw, argc, argv, lens);
    cr_assert_not_null(r, "raw command %s: %s", argv[0], raw->errstr);
    return r;
}

static redisReply *rcmdf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(raw, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "raw command %s: %s", fmt, raw->errstr);
    return r;
}

static long long rint_reply(const char *fmt, const char *a, size_t alen) {
    redisReply *r = redisCommand(raw, fmt, a, alen);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s", fmt);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long dbsize(void) {
    redisReply *r = rcmdf("DBSIZE");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static redis_sink_t *sink_open(int timeout_ms) {
    char err[256];
    redis_sink_conf_t conf = {redis_proc_url(proc), PREFIX, 1000, timeout_ms, {0}};
    redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    return s;
}

/* ------------------------------------------------------------------ */
/* Events and windows                                                  */

typedef struct evspec {
    const char *cid;
    size_t cid_len;        /* 0: strlen */
    const char *eid;
    int64_t t;
    event_kind_t kind;
    event_handler_t by;
    tri_t resolved;
    double sentiment;      /* NAN: none */
    const char *text;      /* NULL: none */
} evspec_t;

static event_t make_event(const evspec_t *s) {
    event_t e;
    memset(&e, 0, sizeof(e));
    e.customer_id = (strview_t){s->cid, s->cid_len ? s->cid_len : strlen(s->cid)};
    e.event_id = (strview_t){s->eid, strlen(s->eid)};
    e.occurred_at = s->t;
    e.kind = s->kind;
    e.channel = CHANNEL_CHAT;
    e.handled_by = s->by;
    e.resolved = s->resolved;
    e.has_sentiment = !isnan(s->sentiment);
    e.sentiment = (float)s->sentiment;
    if (s->text) e.feedback_text = (strview_t){s->text, strlen(s->text)};
    return e;
}

static window_t *new_window(int32_t partition) {
    score_params_t p;
    score_params_default(&p);
    char err[256];
    window_t *w = window_new(&p, partition, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    return w;
}

/* Feeds events at offsets first, first+1, … Returns the next offset. */
static int64_t feed(window_t *w, const evspec_t *evs, size_t n, int64_t first) {
    for (size_t i = 0; i < n; i++) {
        event_t e = make_event(&evs[i]);
        window_add(w, &e, first + (int64_t)i);
    }
    return first + (int64_t)n;
}

/* A customer id with a space, quotes, UTF-8, a NUL and a high byte. */
static const char weird_id[] = "Zoë \"the\" 'cust'\0\xff id";
#define WEIRD_LEN (sizeof(weird_id) - 1)

/* Three unhappy AI contacts for "alice" (churn_risk, needs_human), a
 * resolved human contact for weird_id, two events for "bob". */
static const evspec_t story[] = {
    {"alice", 0, "e1", T0 + 1000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, "the bot is useless"},
    {weird_id, WEIRD_LEN, "e2", T0 + 2000, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.8, NULL},
    {"alice", 0, "e3", T0 + 3000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, NULL},
    {"bob", 0, "e4", T0 + 4000, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NAN, NULL},
    {"alice", 0, "e5", T0 + 5000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, "still broken"},
    {"bob", 0, "e6", T0 + 6000, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.5, "great"},
};
#define STORY_LEN (sizeof(story) / sizeof(story[0]))

/* One partition as the consumer drives it: claimed epoch, the offset Redis
 * holds (committed) and the next offset to consume. */
typedef struct tpart {
    redis_sink_t *s;
    window_t *w;
    int32_t partition;
    int64_t epoch;
    int64_t committed;
    int64_t next;
    bool fenced;
} tpart_t;

/* Claims into a fresh window (the old one, if any, is freed). */
/* Claims `partition` of `s` into w, as the consumer does. */
static sink_result_t claim_into(redis_sink_t *s, int32_t partition, window_t *w,
                                sink_claim_t *out, char *err, size_t errsize) {
    sink_loader_t loader = {window_restore_watermark, window_restore_customer, w};
    return redis_sink_claim(s, TOPIC, partition, &loader, out, err, errsize);
}

static void tp_claim(tpart_t *t, redis_sink_t *s, int32_t partition) {
    char err[256];
    window_free(t->w);
    t->s = s;
    t->partition = partition;
    t->w = new_window(partition);
    sink_claim_t cl;
    sink_result_t r = claim_into(s, partition, t->w, &cl, err, sizeof(err));
    cr_assert_eq(r, SINK_OK, "claim: %s", err);
    t->epoch = cl.epoch;
    t->committed = cl.next_offset;
    t->next = t->committed < 0 ? 0 : t->committed;
}

static void tp_feed(tpart_t *t, const evspec_t *evs, size_t n) {
    t->next = feed(t->w, evs, n, t->next);
}

/* A batch of these partitions' changes, as the engine fills it; the
 * windows keep their changes.  Caller frees. */
static batch_t *tp_batch(tpart_t *const *ts, size_t n) {
    batch_t *b = batch_new();
    for (size_t i = 0; i < n; i++) {
        batch_partition_t *bp = batch_add_partition(b, TOPIC, ts[i]->partition, ts[i]->epoch,
                                                    ts[i]->committed, ts[i]->next);
        window_fill_batch(ts[i]->w, b, bp);
    }
    return b;
}

static batch_result_t result_of(const batch_t *b, size_t i) {
    return batch_partition(b, i)->result;
}

/* Flushes this partition alone; does not commit. */
static sink_result_t tp_flush(tpart_t *t, char *err, size_t errsize) {
    batch_t *b = tp_batch(&t, 1);
    sink_result_t r = redis_sink_flush(t->s, b, err, errsize);
    t->fenced = result_of(b, 0) == BATCH_FENCED;
    batch_free(b);
    return r;
}

/* What the consumer does after SINK_OK. */
static void tp_commit(tpart_t *t) {
    window_commit(t->w);
    t->committed = t->next;
}

static void tp_flush_ok(tpart_t *t) {
    char err[256];
    cr_assert_eq(tp_flush(t, err, sizeof(err)), SINK_OK, "flush: %s", err);
    cr_assert(!t->fenced);
}

static void fmt4(char *buf, size_t size, double v) { snprintf(buf, size, "%.4f", v); }

/* Checks <prefix>ci:<cid> against a view: all 15 fields (SPEC §5, §10.1),
 * nothing else. */
static void expect_hash_matches(const window_customer_view_t *v) {
    char key[512];
    memcpy(key, PREFIX "ci:", 5);
    memcpy(key + 5, v->customer_id.ptr, v->customer_id.len);
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, 5 + v->customer_id.len};
    redisReply *r = rcmd(2, argv, lens);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 30, "hash has %zu fields", r->elements / 2);
    char want[15][160];
    static const char *const names[15] = {"ci", "resolution", "sentiment", "loyalty",
                                          "ai_share", "aht_ms", "streak", "contacts",
                                          "resolved", "events", "at_risk", "updated_at",
                                          "last_event_id", "route", "route_reason"};
    fmt4(want[0], 160, v->ci);
    fmt4(want[1], 160, v->resolution);
    fmt4(want[2], 160, v->sentiment);
    fmt4(want[3], 160, v->loyalty);
    fmt4(want[4], 160, v->ai_share);
    fmt4(want[5], 160, v->aht_ms);
    snprintf(want[6], 160, "%" PRId64, v->streak);
    snprintf(want[7], 160, "%" PRId64, v->contacts);
    snprintf(want[8], 160, "%" PRId64, v->resolved);
    snprintf(want[9], 160, "%" PRId64, v->events);
    snprintf(want[10], 160, "%d", v->at_risk);
    snprintf(want[11], 160, "%" PRId64, v->updated_at);
    snprintf(want[12], 160, "%.*s", (int)v->last_event_id.len, v->last_event_id.ptr);
    snprintf(want[13], 160, "%s", v->route_human ? "human" : "ai");
    snprintf(want[14], 160, "%s", v->route_reason ? v->route_reason : "");
    for (int f = 0; f < 15; f++) {
        bool found = false;
        for (size_t i = 0; i < r->elements; i += 2) {
            if (strcmp(r->element[i]->str, names[f]) != 0) continue;
            found = true;
            cr_expect_str_eq(r->element[i + 1]->str, want[f], "field %s", names[f]);
        }
        cr_expect(found, "field %s missing", names[f]);
    }
    freeReplyObject(r);

    const char *zargv[] = {"ZSCORE", PREFIX "scores", v->customer_id.ptr};
    size_t zlens[] = {6, strlen(PREFIX "scores"), v->customer_id.len};
    r = rcmd(3, zargv, zlens);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "no zset member");
    cr_expect_float_eq(strtod(r->str, NULL), strtod(want[0], NULL), 1e-9);
    freeReplyObject(r);
}

/* A copy of the window's alerts, as the stream must hold them. */
typedef struct alert_row {
    char v[11][512];
    size_t len[11];
} alert_row_t;

static size_t copy_alerts(window_t *w, alert_row_t *rows, size_t max) {
    size_t n;
    const alert_t *a = window_alerts(w, &n);
    cr_assert(n <= max);
    for (size_t i = 0; i < n; i++, a++) {
        alert_row_t *r = &rows[i];
        memset(r, 0, sizeof(*r));
        snprintf(r->v[0], 512, "%s", alert_type_names[a->type]);
        memcpy(r->v[1], a->customer_id.ptr, a->customer_id.len);
        r->len[1] = a->customer_id.len;
        fmt4(r->v[2], 512, a->score);
        if (a->has_previous) fmt4(r->v[3], 512, a->previous_score);
        snprintf(r->v[4], 512, "%s", alert_trigger_names[a->trigger]);
        if (a->event_id.len) memcpy(r->v[5], a->event_id.ptr, a->event_id.len);
        r->len[5] = a->event_id.len;
        snprintf(r->v[6], 512, "%" PRId64, a->occurred_at);
        snprintf(r->v[7], 512, "%" PRId32, a->partition);
        snprintf(r->v[8], 512, "%" PRId64, a->offset);
        snprintf(r->v[9], 512, "%s", a->reason);
        if (a->narrative.len) memcpy(r->v[10], a->narrative.ptr, a->narrative.len);
        r->len[10] = a->narrative.len;
        for (int k = 0; k < 11; k++)
            if (k != 1 && k != 5 && k != 10) r->len[k] = strlen(r->v[k]);
    }
    return n;
}

/* The stream holds exactly these alerts, fields in SPEC §4 order. */
static void expect_stream(const alert_row_t *rows, size_t n) {
    static const char *const names[11] = {"type", "customer_id", "score", "previous_score",
                                          "trigger", "event_id", "occurred_at", "partition",
                                          "offset", "reason", "narrative"};
    redisReply *r = rcmdf("XRANGE " PREFIX "alerts - +");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, n, "stream has %zu entries, want %zu", r->elements, n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *fields = r->element[i]->element[1];
        cr_assert_eq(fields->elements, 22, "entry %zu has %zu values", i, fields->elements);
        for (int k = 0; k < 11; k++) {
            cr_expect_str_eq(fields->element[2 * k]->str, names[k], "entry %zu field %d", i, k);
            const redisReply *val = fields->element[2 * k + 1];
            cr_expect(val->len == rows[i].len[k] && memcmp(val->str, rows[i].v[k], val->len) == 0,
                      "entry %zu %s: got \"%.*s\" want \"%.*s\"", i, names[k], (int)val->len,
                      val->str, (int)rows[i].len[k], rows[i].v[k]);
        }
    }
    freeReplyObject(r);
}

static void expect_hget(const char *key, const char *field, const char *want) {
    redisReply *r = rcmdf("HGET %s %s", key, field);
    if (!want) {
        cr_expect_eq(r->type, REDIS_REPLY_NIL, "HGET %s %s should be nil", key, field);
    } else {
        cr_assert_eq(r->type, REDIS_REPLY_STRING, "HGET %s %s is nil", key, field);
        cr_expect_str_eq(r->str, want, "HGET %s %s", key, field);
    }
    freeReplyObject(r);
}

static bool key_exists(const char *k, size_t klen) {
    return rint_reply("EXISTS %b", k, klen) == 1;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

TestSuite(redis_sink, .init = setup, .fini = teardown, .timeout = 60);

Test(redis_sink, ping) {
    redis_sink_t *s = sink_open(1000);
    char err[256];
    cr_expect_eq(redis_sink_ping(s, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(redis_sink_ping(s, err, sizeof(err)), SINK_OK, "%s", err);
    redis_sink_free(s);
}

Test(redis_sink, empty_flush_needs_no_round_trip) {
    redis_sink_conf_t conf = {"redis://127.0.0.1:1", PREFIX, 10, 100, {0}};
    char err[256];
    redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    batch_t *empty = batch_new();
    cr_expect_eq(redis_sink_flush(s, empty, err, sizeof(err)), SINK_OK);
    batch_free(empty);
    cr_expect_eq(redis_sink_stats(s)->commands, 0);
    cr_expect_eq(redis_sink_stats(s)->bytes_sent, 0);
    /* Nothing listens on port 1: a real call is a RETRY, not a crash. */
    cr_expect_eq(redis_sink_ping(s, err, sizeof(err)), SINK_RETRY);
    cr_expect(strstr(err, "127.0.0.1:1") != NULL, "%s", err);
    redis_sink_free(s);
}

/* Its own suite: the server needs a socket and a password. */
Test(redis_auth, unix_socket_password_and_db, .fini = teardown, .timeout = 60) {
    char err[256];
    char sock[4200];
    /* A relative socket path lands in the server's own directory. */
    static const char *const args[] = {"--unixsocket", "redis.sock", "--requirepass",
                                       "s3cr@t/x", NULL};
    signal(SIGPIPE, SIG_IGN);
    proc = redis_proc_start(args, err, sizeof(err));
    cr_assert_not_null(proc, "%s", err);
    snprintf(sock, sizeof(sock), "%s/redis.sock", redis_proc_dir(proc));

    char url[4300];
    typedef struct {
        const char *fmt;
        sink_result_t want;
        const char *err;
    } auth_case_t;
    const auth_case_t cases[] = {
        {"unix://%s", SINK_FAIL, "NOAUTH"},
        {"redis://:s3cr%%40t%%2Fx@127.0.0.1:%d/3", SINK_OK, NULL},
        {"redis://:wrong@127.0.0.1:%d", SINK_FAIL, "WRONGPASS"},
        {"redis://:s3cr%%40t%%2Fx@127.0.0.1:%d/99", SINK_FAIL, "SELECT"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (i == 0)
            snprintf(url, sizeof(url), cases[i].fmt, sock);
        else
            snprintf(url, sizeof(url), cases[i].fmt, redis_proc_port(proc));
        redis_sink_conf_t conf = {url, PREFIX, 10, 1000, {0}};
        redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
        cr_assert_not_null(s, "%s", err);
        sink_result_t r = redis_sink_ping(s, err, sizeof(err));
        cr_expect_eq(r, cases[i].want, "case %zu: %s", i, err);
        if (cases[i].err) cr_expect(strstr(err, cases[i].err) != NULL, "case %zu: %s", i, err);
        redis_sink_free(s);
    }

    /* With the password: a claim lands in db 3. */
    snprintf(url, sizeof(url), "redis://:s3cr%%40t%%2Fx@127.0.0.1:%d/3", redis_proc_port(proc));
    redis_sink_conf_t conf = {url, PREFIX, 10, 1000, {0}};
    redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    cr_expect_eq(t.epoch, 1);
    window_free(t.w);
    redis_sink_free(s);

    struct timeval tv = {2, 0};
    raw = redisConnectUnixWithTimeout(sock, tv);
    cr_assert(raw && !raw->err);
    freeReplyObject(rcmdf("AUTH %s", "s3cr@t/x"));
    expect_hget(PREFIX "_epochs", TOPIC ":0", NULL);
    freeReplyObject(rcmdf("SELECT 3"));
    expect_hget(PREFIX "_epochs", TOPIC ":0", "1");
}

/* ------------------------------------------------------------------ */
/* Claim and fencing                                                   */

Test(redis_sink, claim_bumps_epoch_and_fences_the_old_owner) {
    redis_sink_t *old_owner = sink_open(1000), *new_owner = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0}, q0 = {0};
    tp_claim(&p0, old_owner, 0);
    cr_expect_eq(p0.epoch, 1);
    cr_expect_eq(p0.committed, -1);
    tp_claim(&p1, old_owner, 1);
    cr_expect_eq(p1.epoch, 1);
    tp_claim(&q0, new_owner, 0);
    cr_expect_eq(q0.epoch, 2);
    cr_expect_eq(q0.committed, -1);
    expect_hget(PREFIX "_epochs", TOPIC ":0", "2");

    tp_feed(&p0, story, STORY_LEN);
    tp_feed(&p1, story, 2);
    char err[256];
    tpart_t *ps[2] = {&p0, &p1};
    batch_t *b = tp_batch(ps, 2);
    batch_partition(b, 1)->result = BATCH_FENCED; /* an input value must not survive */
    cr_expect_eq(redis_sink_flush(old_owner, b, err, sizeof(err)), SINK_FAIL);
    cr_expect_eq(result_of(b, 0), BATCH_FENCED, "partition 0 is fenced");
    cr_expect_eq(result_of(b, 1), BATCH_REFUSED, "partition 1 is still ours");
    batch_free(b);
    cr_expect(strstr(err, "FENCED " TOPIC ":0") != NULL, "%s", err);
    /* Nothing at all was written: only the epochs hash exists. */
    cr_expect_eq(dbsize(), 1, "keys written by a fenced flush");

    /* The old owner drops partition 0 and flushes the rest. */
    tp_flush_ok(&p1);
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, p1.next);
    expect_hget(PREFIX "_offsets", TOPIC ":1", want);

    /* The new owner writes partition 0. */
    tp_feed(&q0, story, STORY_LEN);
    tp_flush_ok(&q0);
    snprintf(want, sizeof(want), "%" PRId64, q0.next);
    expect_hget(PREFIX "_offsets", TOPIC ":0", want);
    window_free(p0.w);
    window_free(p1.w);
    window_free(q0.w);
    redis_sink_free(old_owner);
    redis_sink_free(new_owner);
}

Test(redis_sink, flush_without_claim_is_fenced) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {s, new_window(0), 0, 1, -1, 0, false};
    tp_feed(&t, story, 1);
    char err[256];
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_FAIL);
    cr_expect(t.fenced);
    cr_expect_eq(dbsize(), 0);
    window_free(t.w);
    redis_sink_free(s);
}

Test(redis_sink, flush_from_a_stale_offset_is_fenced) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, 2);
    tp_flush_ok(&t);
    tp_commit(&t);
    /* Someone moved the offset behind our back (an operator, a bug). */
    freeReplyObject(rcmdf("HSET " PREFIX "_offsets " TOPIC ":0 999"));
    tp_feed(&t, story + 2, 2);
    char err[256];
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_FAIL);
    cr_expect(t.fenced);
    cr_expect(!key_exists(PREFIX "ci:bob", strlen(PREFIX "ci:bob")), "fenced flush wrote");
    expect_hget(PREFIX "_offsets", TOPIC ":0", "999");
    window_free(t.w);
    redis_sink_free(s);
}

Test(redis_sink, claim_rejects_bad_stored_state) {
    redis_sink_t *s = sink_open(1000);
    const char *argv[] = {"HSET", PREFIX "_state:" TOPIC ":0", weird_id, "not a blob"};
    size_t lens[] = {4, strlen(argv[1]), WEIRD_LEN, 10};
    freeReplyObject(rcmd(4, argv, lens));
    window_t *w = new_window(0);
    char err[512];
    sink_claim_t cl;
    cr_expect_eq(claim_into(s, 0, w, &cl, err, sizeof(err)), SINK_FAIL);
    cr_expect(strstr(err, "Zo\\xc3\\xab \\\"the\\\" 'cust'\\x00\\xff id") != NULL, "%s", err);
    window_free(w);

    freeReplyObject(rcmdf("DEL " PREFIX "_state:" TOPIC ":0"));
    freeReplyObject(rcmdf("HSET " PREFIX "_offsets " TOPIC ":0 12x"));
    w = new_window(0);
    cr_expect_eq(claim_into(s, 0, w, &cl, err, sizeof(err)), SINK_FAIL);
    cr_expect(strstr(err, "not an integer") != NULL, "%s", err);
    window_free(w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* Layout                                                              */

Test(redis_sink, flush_writes_the_spec_layout) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 3);
    t.next = 100;
    tp_feed(&t, story, STORY_LEN);

    static alert_row_t rows[32];
    size_t nalerts = copy_alerts(t.w, rows, 32);
    cr_assert(nalerts >= 2, "the story raises alerts (got %zu)", nalerts);
    bool churn = false;
    for (size_t i = 0; i < nalerts; i++) churn |= strcmp(rows[i].v[0], "churn_risk") == 0;
    cr_expect(churn, "alice is a churn risk");

    tp_flush_ok(&t);
    const sink_stats_t *st = redis_sink_stats(s);
    cr_expect_eq(st->flushes, 1);
    cr_expect_eq(st->customers_written, 3);
    cr_expect_eq(st->alerts_written, nalerts);

    const strview_t ids[3] = {{"alice", 5}, {weird_id, WEIRD_LEN}, {"bob", 3}};
    for (int i = 0; i < 3; i++) {
        window_customer_view_t v;
        cr_assert(window_get(t.w, ids[i], &v));
        expect_hash_matches(&v);
        /* The state field holds the blob, byte for byte. */
        const char *argv[] = {"HGET", PREFIX "_state:" TOPIC ":3", ids[i].ptr};
        size_t lens[] = {4, strlen(argv[1]), ids[i].len};
        redisReply *r = rcmd(3, argv, lens);
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        cr_expect(r->len == v.state_len && memcmp(r->str, v.state, v.state_len) == 0);
        freeReplyObject(r);
    }
    cr_expect_eq(rint_reply("ZCARD %b", PREFIX "scores", strlen(PREFIX "scores")), 3);
    /* The lowest score first: alice. */
    redisReply *r = rcmdf("ZRANGE " PREFIX "scores 0 0");
    cr_expect_str_eq(r->element[0]->str, "alice");
    freeReplyObject(r);

    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, (int64_t)(T0 + 6000));
    expect_hget(PREFIX "watermarks", TOPIC ":3", want);
    snprintf(want, sizeof(want), "%" PRId64, t.next);
    expect_hget(PREFIX "_offsets", TOPIC ":3", want);
    expect_stream(rows, nalerts);
    /* Exactly the SPEC §5 keys: 3 hashes, scores, alerts, watermarks, one
     * history bucket, history_index, org, and the internal _offsets,
     * _epochs, _state:<topic>:3, _alert_ids:<topic>:3 (SPEC §1.2) and
     * _alert_ids_cursor (where its sweep stands). */
    cr_expect_eq(dbsize(), 3 + 3 + 3 + 3 + 2);
    /* The sweep's pass ended, at the stream's first ID. */
    redisReply *xr = rcmdf("XRANGE " PREFIX "alerts - + COUNT 1");
    cr_assert(xr->type == REDIS_REPLY_ARRAY && xr->elements == 1);
    char first[80];
    snprintf(first, sizeof(first), "0 %s", xr->element[0]->element[0]->str);
    freeReplyObject(xr);
    expect_hget(PREFIX "_alert_ids_cursor", TOPIC ":3", first);
    expect_hget(PREFIX "org", "customers", "3");

    /* An unchanged watermark is not rewritten; offsets always are. */
    tp_commit(&t);
    freeReplyObject(rcmdf("HSET " PREFIX "watermarks " TOPIC ":3 1"));
    t.next += 5; /* five messages that changed nothing (late, dead letters) */
    tp_flush_ok(&t);
    expect_hget(PREFIX "watermarks", TOPIC ":3", "1");
    snprintf(want, sizeof(want), "%" PRId64, t.next);
    expect_hget(PREFIX "_offsets", TOPIC ":3", want);
    window_free(t.w);
    redis_sink_free(s);
}

Test(redis_sink, stats_count_commands_and_bytes) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    const sink_stats_t *st = redis_sink_stats(s);
    /* SCRIPT LOAD x2, EVALSHA + its 3 calls, HSCAN */
    cr_expect_eq(st->commands, 2 + 4 + 1);
    uint64_t c0 = st->commands, b0 = st->bytes_sent;
    cr_expect_gt(b0, 0);

    /* Two customers, no alerts, new watermark: EVALSHA + HGET epoch +
     * HGET offset + 2 HSET hashes + ZADD + HSET state + HSET watermark +
     * HSET offset, then the history bucket (HMGET, HSET, ZADD to the
     * index) and the org hash (HMGET, HSET). */
    const evspec_t evs[] = {
        {"c1", 0, "x1", T0, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NAN, NULL},
        {"c2", 0, "x2", T0, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NAN, NULL},
    };
    tp_feed(&t, evs, 2);
    size_t nalerts;
    window_alerts(t.w, &nalerts);
    cr_assert_eq(nalerts, 0);
    tp_flush_ok(&t);
    cr_expect_eq(st->commands - c0, 14);
    /* The request carries at least both blobs and ids, and is not huge. */
    uint64_t sent = st->bytes_sent - b0;
    cr_expect_gt(sent, 200);
    cr_expect_lt(sent, 2000);
    window_free(t.w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* State round trip and eviction                                       */

static void expect_same_view(window_t *a, window_t *b, strview_t id) {
    window_customer_view_t va, vb;
    cr_assert(window_get(a, id, &va), "customer in the original window");
    /* Copy what a's next call would overwrite. */
    unsigned char blob[4096];
    cr_assert(va.state_len <= sizeof(blob));
    memcpy(blob, va.state, va.state_len);
    size_t blen = va.state_len;
    cr_assert(window_get(b, id, &vb), "customer %.*s not restored", (int)id.len, id.ptr);
    cr_expect_eq(va.ci, vb.ci);
    cr_expect_eq(va.resolution, vb.resolution);
    cr_expect_eq(va.sentiment, vb.sentiment);
    cr_expect_eq(va.loyalty, vb.loyalty);
    cr_expect_eq(va.ai_share, vb.ai_share);
    cr_expect_eq(va.aht_ms, vb.aht_ms);
    cr_expect_eq(va.streak, vb.streak);
    cr_expect_eq(va.contacts, vb.contacts);
    cr_expect_eq(va.resolved, vb.resolved);
    cr_expect_eq(va.events, vb.events);
    cr_expect_eq(va.at_risk, vb.at_risk);
    cr_expect_eq(va.updated_at, vb.updated_at);
    cr_expect(va.last_event_id.len == vb.last_event_id.len &&
              memcmp(va.last_event_id.ptr, vb.last_event_id.ptr, vb.last_event_id.len) == 0);
    cr_expect(blen == vb.state_len && memcmp(blob, vb.state, blen) == 0, "state blobs differ");
}

Test(redis_sink, claim_restores_what_flush_wrote) {
    redis_sink_t *s = sink_open(1000);
    tpart_t a = {0}, b = {0};
    tp_claim(&a, s, 0);
    tp_feed(&a, story, STORY_LEN);
    /* Many more customers, so that HSCAN takes several rounds. */
    static char ids[2500][16];
    for (int i = 0; i < 2500; i++) {
        snprintf(ids[i], sizeof(ids[i]), "bulk-%04d", i);
        evspec_t e = {ids[i], 0, "b", T0 + 7000 + i, KIND_CONTACT,
                      i % 3 ? HANDLER_AI : HANDLER_HUMAN, i % 2 ? TRI_TRUE : TRI_FALSE,
                      (i % 7) / 7.0, NULL};
        tp_feed(&a, &e, 1);
    }
    tp_flush_ok(&a);
    tp_commit(&a);

    tp_claim(&b, s, 0);
    cr_expect_eq(b.epoch, a.epoch + 1);
    cr_expect_eq(b.committed, a.next);
    cr_expect_eq(window_watermark(b.w), window_watermark(a.w));
    cr_expect_eq(window_customer_count(b.w), window_customer_count(a.w));
    const strview_t some[] = {{"alice", 5},     {weird_id, WEIRD_LEN}, {"bob", 3},
                              {"bulk-0000", 9}, {"bulk-1234", 9},       {"bulk-2499", 9}};
    for (size_t i = 0; i < sizeof(some) / sizeof(some[0]); i++) expect_same_view(a.w, b.w, some[i]);

    /* Both go on identically: alice's next unhappy AI contact, a day on. */
    const evspec_t more = {"alice", 0, "e7", T0 + DAY + 10, KIND_CONTACT, HANDLER_AI, TRI_FALSE,
                           -0.7, "again"};
    tp_feed(&a, &more, 1);
    tp_feed(&b, &more, 1);
    expect_same_view(a.w, b.w, (strview_t){"alice", 5});
    static alert_row_t ra[32], rb[32];
    size_t na = copy_alerts(a.w, ra, 32), nb = copy_alerts(b.w, rb, 32);
    cr_expect_eq(na, nb, "the resumed window raises the same alerts");
    for (size_t i = 0; i < na && i < nb; i++)
        for (int k = 0; k < 11; k++)
            cr_expect(memcmp(ra[i].v[k], rb[i].v[k], sizeof(ra[i].v[k])) == 0,
                      "alert %zu field %d differs", i, k);
    window_free(a.w);
    window_free(b.w);
    redis_sink_free(s);
}

Test(redis_sink, evicted_customer_is_deleted) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    const evspec_t first[] = {
        {weird_id, WEIRD_LEN, "o1", T0, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NAN, NULL},
        {"stays", 0, "o2", T0 + 20 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NAN, NULL},
    };
    tp_feed(&t, first, 2);
    tp_flush_ok(&t);
    tp_commit(&t);
    char key[64];
    memcpy(key, PREFIX "ci:", 5);
    memcpy(key + 5, weird_id, WEIRD_LEN);
    cr_assert(key_exists(key, 5 + WEIRD_LEN));

    /* 31 days later the first customer has no bucket left. */
    const evspec_t later = {"stays", 0, "o3", T0 + 31 * DAY, KIND_PURCHASE, HANDLER_NONE,
                            TRI_NULL, NAN, NULL};
    tp_feed(&t, &later, 1);
    window_customer_view_t v;
    cr_assert(!window_get(t.w, (strview_t){weird_id, WEIRD_LEN}, &v), "customer evicted");
    tp_flush_ok(&t);
    cr_expect(!key_exists(key, 5 + WEIRD_LEN), "hash deleted");
    const char *zargv[] = {"ZSCORE", PREFIX "scores", weird_id};
    size_t zlens[] = {6, strlen(PREFIX "scores"), WEIRD_LEN};
    redisReply *r = rcmd(3, zargv, zlens);
    cr_expect_eq(r->type, REDIS_REPLY_NIL, "zset member removed");
    freeReplyObject(r);
    const char *hargv[] = {"HEXISTS", PREFIX "_state:" TOPIC ":0", weird_id};
    size_t hlens[] = {7, strlen(hargv[1]), WEIRD_LEN};
    r = rcmd(3, hargv, hlens);
    cr_expect_eq(r->integer, 0, "state field removed");
    freeReplyObject(r);
    cr_expect(key_exists(PREFIX "ci:stays", strlen(PREFIX "ci:stays")));
    cr_expect_eq(rint_reply("ZCARD %b", PREFIX "scores", strlen(PREFIX "scores")), 1);
    window_free(t.w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* Retried flushes, NOSCRIPT, outages                                  */

Test(redis_sink, retried_flush_that_landed_writes_nothing_twice) {
    redis_sink_t *s = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0}, p2 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    tp_claim(&p2, s, 2);
    tp_feed(&p0, story, 3);     /* alice: alerts */
    tp_feed(&p1, story + 3, 1); /* bob: none */
    tp_feed(&p2, story + 1, 1); /* weird_id: none */
    static alert_row_t rows[32];
    size_t n0 = copy_alerts(p0.w, rows, 32), none;
    cr_assert(n0 >= 1);
    window_alerts(p1.w, &none);
    cr_assert_eq(none, 0);
    window_alerts(p2.w, &none);
    cr_assert_eq(none, 0);
    char err[256];
    tpart_t *ps[3] = {&p0, &p1, &p2};
    batch_t *b = tp_batch(ps, 2);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    batch_free(b);
    uint64_t customers = redis_sink_stats(s)->customers_written;
    uint64_t alerts = redis_sink_stats(s)->alerts_written;

    /* As if the reply had been lost: the same flush again, now with one
     * more partition.  The landed ones are skipped, the new one written. */
    b = tp_batch(ps, 3);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    for (size_t i = 0; i < 3; i++) cr_expect_eq(result_of(b, i), BATCH_WRITTEN);
    batch_free(b);
    cr_expect_eq(redis_sink_stats(s)->customers_written - customers, 1, "only partition 2");
    cr_expect_eq(redis_sink_stats(s)->alerts_written, alerts);
    expect_stream(rows, n0);
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, p2.next);
    expect_hget(PREFIX "_offsets", TOPIC ":2", want);
    window_free(p0.w);
    window_free(p1.w);
    window_free(p2.w);
    redis_sink_free(s);
}

/* A batch of hand-made counter deltas for partitions 0 and 1 (claimed at
 * epochs e[0], e[1]); partition p moves from offset p0[p] to p0[p] + 1. */
static batch_t *counter_batch(const int64_t *e, const int64_t *from, size_t nparts) {
    batch_t *b = batch_new();
    for (size_t p = 0; p < nparts; p++) {
        batch_partition_t *bp =
            batch_add_partition(b, TOPIC, (int32_t)p, e[p], from[p], from[p] < 0 ? 1 : from[p] + 1);
        batch_add_history(b, bp, T0, "CHAT:AI:contacts", 2 + (int64_t)p);
        batch_add_history(b, bp, T0 + DAY, "APP:NONE:events", 1);
        batch_add_org(b, bp, "customers", 1);
    }
    return b;
}

Test(redis_sink, retried_chunk_with_a_new_partition_adds_counters_once) {
    redis_sink_t *s = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    int64_t e[2] = {p0.epoch, p1.epoch}, from[2] = {p0.committed, p1.committed};
    char err[256];
    batch_t *b = counter_batch(e, from, 1);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    batch_free(b);
    /* The same again, as if its answer had been lost, with partition 1
     * added: one chunk whose counters are summed over both, so the script
     * refuses it (SPLIT) and the sink sends each partition alone. */
    b = counter_batch(e, from, 2);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(result_of(b, 0), BATCH_WRITTEN);
    cr_expect_eq(result_of(b, 1), BATCH_WRITTEN);
    batch_free(b);
    char key[64];
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)T0);
    expect_hget(key, "CHAT:AI:contacts", "5");
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)(T0 + DAY));
    expect_hget(key, "APP:NONE:events", "2");
    expect_hget(PREFIX "org", "customers", "2");
    expect_hget(PREFIX "_offsets", TOPIC ":1", "1");
    /* Both partitions in one chunk, both to write: summed in one call. */
    int64_t at[2] = {1, 1};
    b = counter_batch(e, at, 2);
    uint64_t flushes = redis_sink_stats(s)->flushes;
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(redis_sink_stats(s)->flushes - flushes, 1);
    batch_free(b);
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)T0);
    expect_hget(key, "CHAT:AI:contacts", "10");
    expect_hget(PREFIX "org", "customers", "4");
    window_free(p0.w);
    window_free(p1.w);
    redis_sink_free(s);
}

Test(redis_sink, noscript_reloads_and_retries) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, STORY_LEN);
    freeReplyObject(rcmdf("SCRIPT FLUSH"));
    tp_flush_ok(&t);
    cr_expect(key_exists(PREFIX "ci:alice", strlen(PREFIX "ci:alice")));
    freeReplyObject(rcmdf("SCRIPT FLUSH"));
    int64_t old = t.epoch;
    tp_claim(&t, s, 0);
    cr_expect_eq(t.epoch, old + 1);
    window_free(t.w);
    redis_sink_free(s);
}

Test(redis_sink, transient_error_replies_are_retry) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, STORY_LEN);
    char err[256];
    /* maxmemory below what is used: writes are refused with OOM. */
    freeReplyObject(rcmdf("CONFIG SET maxmemory 1"));
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_RETRY);
    cr_expect(strstr(err, "OOM") != NULL, "%s", err);
    cr_expect(!key_exists(PREFIX "ci:alice", strlen(PREFIX "ci:alice")), "OOM wrote something");
    freeReplyObject(rcmdf("CONFIG SET maxmemory 0"));
    tp_flush_ok(&t);
    window_free(t.w);
    redis_sink_free(s);
}

/* Its own suite: the server writes an AOF that survives kill -9. */
Test(redis_aof, redis_killed_then_restarted, .init = setup_aof, .fini = teardown, .timeout = 60) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, 3);
    tp_flush_ok(&t);
    tp_commit(&t);

    cr_assert_eq(redis_proc_signal(proc, SIGKILL), 0);
    tp_feed(&t, story + 3, STORY_LEN - 3);
    char err[256];
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_RETRY);
    cr_expect_eq(redis_sink_ping(s, err, sizeof(err)), SINK_RETRY);
    cr_expect(strstr(err, "connect") != NULL, "%s", err);
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_RETRY);

    cr_assert_eq(redis_proc_restart(proc, err, sizeof(err)), 0, "%s", err);
    /* The restarted server lost the scripts (NOSCRIPT) but kept the data. */
    tp_flush_ok(&t);
    reconnect_raw();
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, t.next);
    expect_hget(PREFIX "_offsets", TOPIC ":0", want);
    expect_hget(PREFIX "ci:bob", "events", "2");
    window_free(t.w);
    redis_sink_free(s);
}

Test(redis_sink, redis_frozen_times_out_then_recovers) {
    redis_sink_t *s = sink_open(300);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, STORY_LEN);
    static alert_row_t rows[32];
    size_t nalerts = copy_alerts(t.w, rows, 32);
    char err[256];

    cr_assert_eq(redis_proc_signal(proc, SIGSTOP), 0);
    double t0 = clock_s();
    cr_expect_eq(tp_flush(&t, err, sizeof(err)), SINK_RETRY);
    double took = clock_s() - t0;
    cr_expect(took >= 0.25 && took < 2.0, "timed out after %.3f s", took);
    cr_expect(strstr(err, "300 ms") != NULL, "%s", err);
    /* A connect to a frozen server succeeds (the kernel accepts) but the
     * command times out too. */
    cr_expect_eq(redis_sink_ping(s, err, sizeof(err)), SINK_RETRY);

    cr_assert_eq(redis_proc_signal(proc, SIGCONT), 0);
    /* The frozen server still ran the first request once it woke up; the
     * retry must not write its alerts a second time. */
    tp_flush_ok(&t);
    expect_stream(rows, nalerts);
    window_customer_view_t v;
    cr_assert(window_get(t.w, (strview_t){"alice", 5}, &v));
    expect_hash_matches(&v);
    window_free(t.w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* Flushes in steps (what the consumer does)                           */

/* n customers "<tag>-<i>", one purchase each. */
static void tp_feed_many(tpart_t *t, const char *tag, int n) {
    for (int i = 0; i < n; i++) {
        char cid[32], eid[48];
        snprintf(cid, sizeof(cid), "%s-%d", tag, i);
        snprintf(eid, sizeof(eid), "ev-%s-%d", tag, i);
        evspec_t ev = {cid, 0, eid, T0 + i, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NAN, NULL};
        tp_feed(t, &ev, 1);
    }
}

static sink_result_t wait_answered(redis_sink_t *s, char *err, size_t errsize) {
    sink_result_t r;
    do
        r = redis_sink_step(s, 1000, err, errsize);
    while (r == SINK_PENDING);
    return r;
}

/* The windows are committed as soon as the flush has begun; the flush is
 * then answered chunk by chunk, after its connection was killed once. */
Test(redis_sink, flush_in_steps_survives_a_killed_connection) {
    redis_sink_t *s = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    tp_feed(&p0, story, STORY_LEN);
    tp_feed_many(&p1, "many", 3000); /* more than a chunk: two chunks */
    static alert_row_t rows[32];
    size_t nrows = copy_alerts(p0.w, rows, 32);
    char err[256];
    tpart_t *ps[2] = {&p1, &p0};
    batch_t *b = tp_batch(ps, 2);
    uint64_t flushes = redis_sink_stats(s)->flushes;
    cr_assert_eq(redis_sink_begin(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    tp_commit(&p0);
    tp_commit(&p1);
    cr_assert(redis_sink_busy(s));

    /* Killed before anything was sent (begin only builds): the step finds
     * the connection gone, and the next one sends everything again. */
    freeReplyObject(rcmdf("CLIENT KILL TYPE normal SKIPME yes"));
    cr_assert_eq(wait_answered(s, err, sizeof(err)), SINK_RETRY, "%s", err);
    cr_assert(redis_sink_busy(s), "a failed step keeps the flush");
    cr_assert_eq(wait_answered(s, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(result_of(b, 0), BATCH_WRITTEN);
    cr_expect_eq(result_of(b, 1), BATCH_WRITTEN);
    cr_expect_eq(redis_sink_stats(s)->flushes - flushes, 2, "one script per chunk");
    cr_expect(!redis_sink_busy(s));
    batch_free(b);

    expect_stream(rows, nrows);
    cr_expect_eq(rint_reply("ZCARD %b", PREFIX "scores", strlen(PREFIX "scores")), 3000 + 3);
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, p1.next);
    expect_hget(PREFIX "_offsets", TOPIC ":1", want);
    snprintf(want, sizeof(want), "%" PRId64, p0.next);
    expect_hget(PREFIX "_offsets", TOPIC ":0", want);
    window_free(p0.w);
    window_free(p1.w);
    redis_sink_free(s);
}

/* A chunk with a fenced partition writes nothing: its other partitions are
 * refused (neither written nor fenced), and the other chunks are written. */
Test(redis_sink, fenced_chunk_refuses_its_other_partitions) {
    redis_sink_t *s = sink_open(1000), *rival = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0}, p2 = {0}, q1 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    tp_claim(&p2, s, 2);
    tp_claim(&q1, rival, 1); /* partition 1 is the rival's now */
    tp_feed_many(&p0, "big", 2100); /* a chunk of its own */
    tp_feed(&p1, story, 2);
    tp_feed(&p2, story + 3, 1);
    char err[256];
    tpart_t *ps[3] = {&p0, &p1, &p2};
    batch_t *b = tp_batch(ps, 3);
    cr_assert_eq(redis_sink_begin(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    cr_assert_eq(wait_answered(s, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(result_of(b, 0), BATCH_WRITTEN, "partition 0 is written");
    cr_expect_eq(result_of(b, 1), BATCH_FENCED, "partition 1 is fenced");
    cr_expect_eq(result_of(b, 2), BATCH_REFUSED, "partition 2 is refused");
    cr_expect(strstr(err, "FENCED " TOPIC ":1") != NULL, "%s", err);
    batch_free(b);
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, p0.next);
    expect_hget(PREFIX "_offsets", TOPIC ":0", want);
    expect_hget(PREFIX "_offsets", TOPIC ":1", NULL);
    expect_hget(PREFIX "_offsets", TOPIC ":2", NULL);
    cr_expect(!key_exists(PREFIX "ci:bob", strlen(PREFIX "ci:bob")), "refused partition written");
    window_free(p0.w);
    window_free(p1.w);
    window_free(p2.w);
    window_free(q1.w);
    redis_sink_free(s);
    redis_sink_free(rival);
}

/* A flush whose first chunk lands and whose second fails (a key of the
 * wrong type in its way): the retry sends the second alone, and its answer
 * is taken for it, not for the chunk already answered. */
Test(redis_sink, retry_after_a_partial_flush_sends_only_the_rest) {
    redis_sink_t *s = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    tp_feed_many(&p0, "first", 2100); /* a chunk of its own */
    tp_feed(&p1, story, STORY_LEN);
    static alert_row_t rows[32];
    size_t nrows = copy_alerts(p1.w, rows, 32);
    freeReplyObject(rcmdf("SET " PREFIX "ci:bob in-the-way"));
    char err[256];
    tpart_t *ps[2] = {&p0, &p1};
    batch_t *b = tp_batch(ps, 2);
    cr_assert_eq(redis_sink_begin(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    tp_commit(&p0);
    tp_commit(&p1);
    cr_assert_eq(wait_answered(s, err, sizeof(err)), SINK_FAIL, "%s", err);
    cr_expect(strstr(err, "WRONGTYPE") != NULL, "%s", err);
    cr_expect(result_of(b, 0) == BATCH_WRITTEN && result_of(b, 1) == BATCH_PENDING,
              "only the first chunk landed");

    freeReplyObject(rcmdf("DEL " PREFIX "ci:bob"));
    uint64_t flushes = redis_sink_stats(s)->flushes;
    cr_assert_eq(wait_answered(s, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect(result_of(b, 0) == BATCH_WRITTEN && result_of(b, 1) == BATCH_WRITTEN);
    cr_expect_eq(redis_sink_stats(s)->flushes - flushes, 1, "the second chunk alone");
    batch_free(b);
    expect_stream(rows, nrows);
    char want[32];
    snprintf(want, sizeof(want), "%" PRId64, p1.next);
    expect_hget(PREFIX "_offsets", TOPIC ":1", want);
    window_free(p0.w);
    window_free(p1.w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* What the batch carries beyond the scorer's output today             */

/* A batch built by hand, as a scorer that sets routes and counts history
 * and the organisation would fill it: the sink writes all of it. */
Test(redis_sink, flush_writes_routes_history_and_org) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    batch_t *b = batch_new();
    batch_partition_t *bp = batch_add_partition(b, TOPIC, 0, t.epoch, t.committed, 7);
    batch_customer_t *c = batch_add_customer(b, bp);
    c->customer_id = batch_copy(b, "ann", 3);
    c->ci = 42.5;
    c->events = 2;
    c->updated_at = T0;
    c->last_event_id = batch_copy(b, "x9", 2);
    c->state = batch_copy(b, "\x02\x00", 2);
    c->route = batch_static("human");
    c->route_reason = batch_static("streak");
    c = batch_add_customer(b, bp); /* no route computed: the field stays absent */
    c->customer_id = batch_copy(b, "bo", 2);
    c->state = batch_copy(b, "\x02\x00", 2);
    batch_add_history(b, bp, T0, "CHAT:AI:contacts", 2);
    batch_add_history(b, bp, T0, "CHAT:AI:unresolved", 1);
    batch_add_history(b, bp, T0 + DAY, "APP:NONE:events", 1);
    batch_add_org(b, bp, "customers", 2);
    batch_add_org(b, bp, "ci_bin:4", 1);
    char err[256];
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    expect_hget(PREFIX "ci:ann", "route", "human");
    expect_hget(PREFIX "ci:ann", "route_reason", "streak");
    expect_hget(PREFIX "ci:ann", "ci", "42.5000");
    expect_hget(PREFIX "ci:bo", "route", NULL);
    char key[64];
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)T0);
    expect_hget(key, "CHAT:AI:contacts", "2");
    expect_hget(key, "CHAT:AI:unresolved", "1");
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)(T0 + DAY));
    expect_hget(key, "APP:NONE:events", "1");
    cr_expect_eq(rint_reply("ZCARD %b", PREFIX "history_index", strlen(PREFIX "history_index")),
                 2);
    expect_hget(PREFIX "org", "customers", "2");
    expect_hget(PREFIX "org", "ci_bin:4", "1");

    /* Deltas add up across flushes. */
    batch_reset(b);
    bp = batch_add_partition(b, TOPIC, 0, t.epoch, 7, 8);
    batch_add_history(b, bp, T0, "CHAT:AI:contacts", 3);
    batch_add_org(b, bp, "customers", -1);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    snprintf(key, sizeof(key), PREFIX "history:%lld", (long long)T0);
    expect_hget(key, "CHAT:AI:contacts", "5");
    expect_hget(PREFIX "org", "customers", "1");

    /* An erasure (SPEC §1.2) deletes the customer's keys; "nobody" was
     * never written and erasing it changes nothing. */
    batch_reset(b);
    bp = batch_add_partition(b, TOPIC, 0, t.epoch, 8, 9);
    batch_add_erasure(b, bp, "ann", 3);
    batch_add_erasure(b, bp, "nobody", 6);
    cr_expect_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect(!key_exists(PREFIX "ci:ann", strlen(PREFIX "ci:ann")));
    cr_expect(key_exists(PREFIX "ci:bo", strlen(PREFIX "ci:bo")));
    expect_hget(PREFIX "_state:" TOPIC ":0", "ann", NULL);
    redisReply *zr = rcmdf("ZSCORE " PREFIX "scores ann");
    cr_expect_eq(zr->type, REDIS_REPLY_NIL, "ann left the scores");
    freeReplyObject(zr);
    expect_hget(PREFIX "_offsets", TOPIC ":0", "9");
    batch_free(b);
    window_free(t.w);
    redis_sink_free(s);
}

/* One customer "ann" in a batch of partition 0 from offset `from`. */
static batch_customer_t *one_customer(batch_t *b, int64_t epoch, int64_t from, uint32_t changed) {
    batch_partition_t *bp = batch_add_partition(b, TOPIC, 0, epoch, from, from < 0 ? 1 : from + 1);
    batch_customer_t *c = batch_add_customer(b, bp);
    c->changed = changed;
    c->customer_id = batch_copy(b, "ann", 3);
    return c;
}

static void expect_zscore(const char *cid, const char *want) {
    redisReply *r = rcmdf("ZSCORE " PREFIX "scores %s", cid);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_expect_eq(strtod(r->str, NULL), strtod(want, NULL), "ZSCORE %s: %s, want %s", cid, r->str,
                 want);
    freeReplyObject(r);
}

Test(redis_sink, partial_mask_writes_only_the_changed_fields) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    char err[256];
    batch_t *b = batch_new();
    batch_customer_t *c = one_customer(b, t.epoch, t.committed, BATCH_CF_ALL);
    c->ci = 42.5;
    c->sentiment = 0.5;
    c->contacts = 3;
    c->updated_at = T0;
    c->last_event_id = batch_static("x9");
    c->route = batch_static("human");
    c->route_reason = batch_static("streak");
    c->state = batch_static("s1");
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);

    /* Sentiment and updated_at flagged: the other values differ but are
     * not written, and the score stays. */
    batch_reset(b);
    c = one_customer(b, t.epoch, 1, BATCH_CF_SENTIMENT | BATCH_CF_UPDATED_AT);
    c->ci = 10;
    c->sentiment = -0.25;
    c->contacts = 9;
    c->updated_at = T0 + 5;
    c->route = batch_static("ai");
    c->state = batch_static("s2");
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    expect_hget(PREFIX "ci:ann", "ci", "42.5000");
    expect_hget(PREFIX "ci:ann", "sentiment", "-0.2500");
    expect_hget(PREFIX "ci:ann", "contacts", "3");
    char want[32];
    snprintf(want, sizeof(want), "%lld", (long long)(T0 + 5));
    expect_hget(PREFIX "ci:ann", "updated_at", want);
    expect_hget(PREFIX "ci:ann", "last_event_id", "x9");
    expect_hget(PREFIX "ci:ann", "route", "human");
    expect_hget(PREFIX "ci:ann", "route_reason", "streak");
    expect_hget(PREFIX "_state:" TOPIC ":0", "ann", "s2");
    expect_zscore("ann", "42.5");

    /* ci and the route flagged: hash and score follow. */
    batch_reset(b);
    c = one_customer(b, t.epoch, 2, BATCH_CF_CI | BATCH_CF_ROUTE);
    c->ci = 50;
    c->route = batch_static("ai");
    c->state = batch_static("s3");
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    expect_hget(PREFIX "ci:ann", "ci", "50.0000");
    expect_hget(PREFIX "ci:ann", "route", "ai");
    expect_hget(PREFIX "ci:ann", "route_reason", "");
    expect_hget(PREFIX "ci:ann", "sentiment", "-0.2500");
    expect_zscore("ann", "50");

    /* Nothing public flagged: only last_event_id (an event set it) and the
     * state are written. */
    batch_reset(b);
    c = one_customer(b, t.epoch, 3, 0);
    c->ci = 1;
    c->last_event_id = batch_static("y1");
    c->state = batch_static("s4");
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    expect_hget(PREFIX "ci:ann", "last_event_id", "y1");
    expect_hget(PREFIX "ci:ann", "ci", "50.0000");
    expect_hget(PREFIX "_state:" TOPIC ":0", "ann", "s4");
    expect_zscore("ann", "50");
    expect_hget(PREFIX "_offsets", TOPIC ":0", "4");
    batch_free(b);
    window_free(t.w);
    redis_sink_free(s);
}

/* ------------------------------------------------------------------ */
/* Erasure (SPEC §1.2)                                                 */

/* The stream's entries as (customer_id, partition) pairs, in order. */
typedef struct stream_entry {
    char cid[300];
    size_t cid_len;
    int partition;
    char id[64];
} stream_entry_t;

static size_t read_stream(stream_entry_t *out, size_t max) {
    redisReply *r = rcmdf("XRANGE " PREFIX "alerts - +");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert(r->elements <= max);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        snprintf(out[i].id, sizeof(out[i].id), "%s", e->element[0]->str);
        const redisReply *f = e->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (strcmp(f->element[k]->str, "customer_id") == 0) {
                memcpy(out[i].cid, f->element[k + 1]->str, f->element[k + 1]->len);
                out[i].cid_len = f->element[k + 1]->len;
            } else if (strcmp(f->element[k]->str, "partition") == 0) {
                out[i].partition = atoi(f->element[k + 1]->str);
            }
        }
    }
    size_t n = r->elements;
    freeReplyObject(r);
    return n;
}

static size_t count_alerts_of(const char *cid, size_t cid_len, int partition) {
    static stream_entry_t e[256];
    size_t n = read_stream(e, 256), c = 0;
    for (size_t i = 0; i < n; i++)
        c += e[i].cid_len == cid_len && memcmp(e[i].cid, cid, cid_len) == 0 &&
             e[i].partition == partition;
    return c;
}

static bool in_scores(const char *cid, size_t len) {
    const char *argv[] = {"ZSCORE", PREFIX "scores", cid};
    size_t lens[] = {6, strlen(PREFIX "scores"), len};
    redisReply *r = rcmd(3, argv, lens);
    bool in = r->type != REDIS_REPLY_NIL;
    freeReplyObject(r);
    return in;
}

static bool ci_exists(const char *cid, size_t len) {
    char key[400];
    memcpy(key, PREFIX "ci:", 5);
    memcpy(key + 5, cid, len);
    return key_exists(key, 5 + len);
}

/* Erasing a customer in p0 deletes its keys and the alerts naming it in
 * p0, none of p1's alerts (even naming it), and nothing of the others. */
Test(redis_sink, erasure_deletes_keys_and_its_partitions_alerts) {
    redis_sink_t *s = sink_open(1000);
    tpart_t p0 = {0}, p1 = {0};
    tp_claim(&p0, s, 0);
    tp_claim(&p1, s, 1);
    tp_feed(&p0, story, STORY_LEN);
    tp_feed(&p1, story, STORY_LEN);
    tp_flush_ok(&p0);
    tp_commit(&p0);
    tp_flush_ok(&p1);
    tp_commit(&p1);
    size_t alice0 = count_alerts_of("alice", 5, 0);
    cr_assert(alice0 >= 2 && count_alerts_of("alice", 5, 1) == alice0);
    cr_assert_eq(rint_reply("HEXISTS %b alice", PREFIX "_alert_ids:" TOPIC ":0",
                            strlen(PREFIX "_alert_ids:" TOPIC ":0")), 1);

    cr_expect(window_erase(p0.w, (strview_t){"alice", 5}, p0.next++));
    cr_expect(window_erase(p0.w, (strview_t){weird_id, WEIRD_LEN}, p0.next++));
    cr_expect(!window_erase(p0.w, (strview_t){"nobody", 6}, p0.next++));
    tp_flush_ok(&p0);
    tp_commit(&p0);

    cr_expect_eq(count_alerts_of("alice", 5, 0), 0, "alice's p0 alerts deleted");
    cr_expect_eq(count_alerts_of("alice", 5, 1), alice0, "p1's alerts stay");
    cr_expect(!in_scores(weird_id, WEIRD_LEN));
    cr_expect(in_scores("bob", 3));
    cr_expect(ci_exists("bob", 3));
    cr_expect(!ci_exists(weird_id, WEIRD_LEN));
    expect_hget(PREFIX "_state:" TOPIC ":0", "alice", NULL);
    expect_hget(PREFIX "_alert_ids:" TOPIC ":0", "alice", NULL);
    cr_expect_eq(rint_reply("HEXISTS %b alice", PREFIX "_state:" TOPIC ":1",
                            strlen(PREFIX "_state:" TOPIC ":1")), 1);
    /* Org: p1's three and p0's bob. */
    expect_hget(PREFIX "org", "customers", "4");

    /* Resumed from Redis, p0 holds bob only. */
    tp_claim(&p0, s, 0);
    cr_expect_eq(window_customer_count(p0.w), 1);
    window_customer_view_t v;
    cr_expect(!window_get(p0.w, (strview_t){"alice", 5}, &v));
    window_free(p0.w);
    window_free(p1.w);
    redis_sink_free(s);
}

/* A customer's alerts raised before its tombstone in the same flush are
 * never written; the ones raised after it, as a new customer, are, and
 * survive the erasure written in the same script. */
Test(redis_sink, erasure_then_return_in_one_flush) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    tp_feed(&t, story, STORY_LEN);
    tp_flush_ok(&t);
    tp_commit(&t);
    cr_assert(count_alerts_of("alice", 5, 0) >= 2);

    /* Before the tombstone: more alerts for alice (same flush). */
    tp_feed(&t, story, 1);
    cr_expect(window_erase(t.w, (strview_t){"alice", 5}, t.next++));
    /* After: alice comes back, three unhappy AI contacts. */
    const evspec_t back[] = {
        {"alice", 0, "n1", T0 + 7000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, "again"},
        {"alice", 0, "n2", T0 + 8000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, NULL},
        {"alice", 0, "n3", T0 + 9000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, NULL},
    };
    tp_feed(&t, back, 3);
    static alert_row_t rows[32];
    size_t n = copy_alerts(t.w, rows, 32);
    cr_assert(n >= 1, "alice raises alerts again");
    cr_expect_eq(rows[0].len[3], 0, "no previous score: a new customer");
    for (size_t i = 0; i < n; i++) cr_expect_str_eq(rows[i].v[1], "alice");
    for (size_t i = 0; i < n; i++) cr_expect(strncmp(rows[i].v[5], "n", 1) == 0);
    tp_flush_ok(&t);
    tp_commit(&t);

    /* Only the new alerts are in the stream for alice, and the index
     * names exactly them. */
    stream_entry_t all[64];
    size_t ne = read_stream(all, 64), alice = 0;
    char ids[1024] = "";
    for (size_t i = 0; i < ne; i++) {
        if (all[i].cid_len == 5 && memcmp(all[i].cid, "alice", 5) == 0) {
            alice++;
            if (ids[0]) strcat(ids, " ");
            strcat(ids, all[i].id);
        }
    }
    cr_expect_eq(alice, n);
    expect_hget(PREFIX "_alert_ids:" TOPIC ":0", "alice", ids);
    expect_hget(PREFIX "ci:alice", "events", "3");
    expect_hget(PREFIX "ci:alice", "last_event_id", "n3");
    window_free(t.w);
    redis_sink_free(s);
}

/* Alerts for one customer by hand, at offset off. */
static void hand_alert(batch_t *b, batch_partition_t *bp, const char *cid, int64_t off) {
    batch_alert_t *a = batch_add_alert(b, bp);
    a->type = batch_static("churn_risk");
    a->trigger = batch_static("event");
    a->customer_id = batch_copy(b, cid, strlen(cid));
    a->score = 30;
    a->event_id = batch_copy(b, "e", 1);
    a->occurred_at = T0;
    a->partition = bp->partition;
    a->offset = off;
    a->reason = batch_static("r");
}

/* Calls of one command so far, from INFO commandstats. */
static long long command_calls(const char *name) {
    redisReply *r = rcmdf("INFO commandstats");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", name);
    const char *p = strstr(r->str, key);
    long long n = p ? atoll(p + strlen(key)) : 0;
    freeReplyObject(r);
    return n;
}

/* A stream that nothing trimmed leaves nothing stale in the index: once a
 * sweep's pass has ended, flushes with alerts sweep no more. */
Test(redis_sink, alert_index_not_swept_while_the_stream_is_not_trimmed) {
    redis_sink_t *s = sink_open(1000);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    batch_t *b = batch_new();
    char err[256];
    long long claimed = command_calls("hscan"); /* the claim's, of the states */
    for (int64_t off = 0; off < 5; off++) {
        batch_reset(b);
        batch_partition_t *bp =
            batch_add_partition(b, TOPIC, 0, t.epoch, off == 0 ? -1 : off, off + 1);
        hand_alert(b, bp, "loyal", off);
        cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
        if (off == 0) cr_expect_eq(command_calls("hscan") - claimed, 1, "the first pass");
    }
    cr_expect_eq(command_calls("hscan") - claimed, 1, "no pass after the first");
    cr_expect_eq(rint_reply("XLEN %b", PREFIX "alerts", strlen(PREFIX "alerts")), 5);
    redisReply *r = rcmdf("HGET " PREFIX "_alert_ids:" TOPIC ":0 loyal");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    int ids = 1;
    for (const char *p = r->str; *p; p++) ids += *p == ' ';
    cr_expect_eq(ids, 5, "%s", r->str);
    freeReplyObject(r);
    batch_free(b);
    window_free(t.w);
    redis_sink_free(s);
}

/* The index loses what the stream trims: a touched customer's list keeps
 * only IDs the stream still holds, and the sweep empties the lists of
 * customers nobody touches, so the index stays near the stream's size. */
Test(redis_sink, alert_index_follows_the_trimmed_stream) {
    freeReplyObject(rcmdf("CONFIG SET stream-node-max-entries 4"));
    char err[256];
    redis_sink_conf_t conf = {
        .url = redis_proc_url(proc), .prefix = PREFIX, .alerts_maxlen = 8, .timeout_ms = 1000};
    redis_sink_t *s = redis_sink_new(&conf, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    tpart_t t = {0};
    tp_claim(&t, s, 0);
    batch_t *b = batch_new();
    int64_t off = 0;
    /* 400 flushes of 2 alerts: "loyal" in every one, "c<i>" once each. */
    for (int i = 0; i < 400; i++) {
        batch_reset(b);
        batch_partition_t *bp =
            batch_add_partition(b, TOPIC, 0, t.epoch, off == 0 ? -1 : off, off + 1);
        char cid[32];
        snprintf(cid, sizeof cid, "c%d", i);
        hand_alert(b, bp, "loyal", off);
        hand_alert(b, bp, cid, off);
        cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
        off++;
    }
    long long len = rint_reply("XLEN %b", PREFIX "alerts", strlen(PREFIX "alerts"));
    cr_expect(len >= 8 && len <= 16, "stream trimmed to %lld", len);
    long long idx = rint_reply("HLEN %b", PREFIX "_alert_ids:" TOPIC ":0",
                               strlen(PREFIX "_alert_ids:" TOPIC ":0"));
    cr_expect(idx <= 2 * len + 32, "index of %lld customers for %lld entries", idx, len);
    /* loyal's list names exactly its entries in the stream. */
    stream_entry_t e[32];
    size_t n = read_stream(e, 32);
    char ids[1024] = "";
    size_t nloyal = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].cid, "loyal") == 0) {
            nloyal++;
            if (ids[0]) strcat(ids, " ");
            strcat(ids, e[i].id);
        }
    }
    expect_hget(PREFIX "_alert_ids:" TOPIC ":0", "loyal", ids);

    /* Erasing a customer whose alerts were all trimmed is harmless. */
    batch_reset(b);
    batch_partition_t *bp = batch_add_partition(b, TOPIC, 0, t.epoch, off, off + 1);
    batch_add_erasure(b, bp, "c0", 2);
    batch_add_erasure(b, bp, "loyal", 5);
    cr_assert_eq(redis_sink_flush(s, b, err, sizeof(err)), SINK_OK, "%s", err);
    cr_expect_eq(count_alerts_of("loyal", 5, 0), 0);
    cr_expect_eq(rint_reply("XLEN %b", PREFIX "alerts", strlen(PREFIX "alerts")),
                 len - (long long)nloyal, "only loyal's entries went");
    batch_free(b);
    window_free(t.w);
    redis_sink_free(s);
}
