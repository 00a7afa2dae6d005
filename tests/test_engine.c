/*
 * test_engine.c — the flush engine (batch/engine.c) driving the real Redis
 * sink against a private redis-server (common/redis_proc.c), with windows
 * as the consumer has them: when a batch is due, the offsets it hands back
 * for Kafka, pausing and back-off while Redis is down (killed, then
 * restarted from its AOF), fenced partitions, and the drain's deadline.
 * The engine is driven here as consumer/consumer.c drives it, without
 * Kafka: the driver's callbacks record what the engine asked for.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "batch/engine.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/redis_proc.h"
#include "scoring/window.h"
#include "sinks/redis.h"

#define DAY 86400000LL
#define T0 (20000 * DAY)
#define TOPIC "interactions"
#define PREFIX "e:"
#define NPART 3

static redis_proc_t *proc;

static void start(const char *const *args) {
    char err[256];
    proc = redis_proc_start(args, err, sizeof(err));
    cr_assert_not_null(proc, "%s", err);
}

static void setup(void) {
    /* An AOF that survives kill -9, so that a restarted server still holds
     * the epochs and offsets. */
    static const char *const args[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    start(args);
}

static void teardown(void) {
    redis_proc_stop(proc);
    proc = NULL;
}

/* ------------------------------------------------------------------ */
/* A driver that records what the engine asks for                      */

typedef struct drv {
    window_t *w[NPART];
    engine_part_t ep[NPART];
    engine_t *e;
    int pauses, resumes;
    int sink_down, sink_up;       /* sink_state reports */
    int fenced[NPART];            /* 1: by another owner, 2: refused */
    int64_t committed[NPART];     /* last offset handed back; -1 none */
    int commits;
    size_t flushes;
    int prepare_fails;            /* prepare() refuses this many times */
    uint64_t backlog;             /* what backlog() answers: messages waiting */
    uint64_t staged[ENGINE_STAGE_COUNT]; /* events reported per stage */
} drv_t;

static void d_fill(void *o, engine_part_t *p, batch_t *b, batch_partition_t *bp) {
    drv_t *d = o;
    window_fill_batch(d->w[p->id], b, bp);
    window_commit(d->w[p->id]);
}

static size_t d_changes(void *o) {
    drv_t *d = o;
    size_t n = 0;
    for (int i = 0; i < NPART; i++) n += window_change_count(d->w[i]);
    return n;
}

static uint64_t d_backlog(void *o) {
    drv_t *d = o;
    return d->backlog;
}

static int d_prepare(void *o, char *errstr, size_t errstr_size) {
    drv_t *d = o;
    if (d->prepare_fails <= 0) return 0;
    d->prepare_fails--;
    snprintf(errstr, errstr_size, "copies not yet acknowledged");
    return -1;
}

static void d_pause(void *o, bool pause) {
    drv_t *d = o;
    if (pause)
        d->pauses++;
    else
        d->resumes++;
}

static void d_fenced(void *o, engine_part_t *p, bool by_other) {
    drv_t *d = o;
    d->fenced[p->id] = by_other ? 1 : 2;
}

static void d_commit(void *o, const engine_offset_t *off, size_t n) {
    drv_t *d = o;
    d->commits++;
    for (size_t i = 0; i < n; i++) d->committed[off[i].partition] = off[i].offset;
}

static void d_sink_state(void *o, bool up, const char *err) {
    drv_t *d = o;
    if (up)
        d->sink_up++;
    else
        d->sink_down++;
}

static void d_flushed(void *o, size_t partitions, double seconds) {
    drv_t *d = o;
    d->flushes++;
}

static void d_heartbeat(void *o, int64_t now) {}

static void d_stage(void *o, engine_stage_t stage, double seconds, uint64_t events) {
    drv_t *d = o;
    cr_assert_geq(seconds, 0);
    d->staged[stage] += events;
}

/* An engine over a Redis sink with a `timeout_ms` command timeout, and
 * partitions 0..NPART-1 claimed.  backlog_bytes: flush_backlog_bytes (0:
 * none; with neither, batches grow for up to a second while behind); live_ms:
 * flush_live_ms (0: flush_ms); drain_ms: as engine_conf_t's (0: none). */
static void drv_open_bounded(drv_t *d, int timeout_ms, int64_t flush_ms, size_t backlog_bytes,
                             int64_t live_ms, int64_t drain_ms) {
    char err[256];
    memset(d, 0, sizeof(*d));
    redis_sink_conf_t sc = {redis_proc_url(proc), PREFIX, 1000, timeout_ms, {0}};
    redis_sink_t *s = redis_sink_new(&sc, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    engine_conf_t ec = {.topic = TOPIC,
                        .flush_ms = flush_ms,
                        .flush_live_ms = live_ms,
                        .flush_backlog_ms = backlog_bytes || live_ms ? 0 : 1000,
                        .flush_max_customers = 100000,
                        .flush_backlog_bytes = backlog_bytes,
                        .drain_ms = drain_ms,
                        .sink_timeout_ms = timeout_ms};
    engine_driver_t dr = {d,         d_fill,   d_changes,    d_backlog, d_prepare,   d_pause,
                          d_fenced,  d_commit, d_sink_state, d_flushed, d_heartbeat, d_stage};
    d->e = engine_new(&ec, redis_sink_as_sink(s), &dr, err, sizeof(err));
    cr_assert_not_null(d->e, "%s", err);
    score_params_t sp;
    score_params_default(&sp);
    for (int i = 0; i < NPART; i++) {
        d->committed[i] = -1;
        d->w[i] = window_new(&sp, i, err, sizeof(err));
        cr_assert_not_null(d->w[i], "%s", err);
        d->ep[i].id = i;
        sink_loader_t loader = {window_restore_watermark, window_restore_customer, d->w[i]};
        cr_assert_eq(engine_claim(d->e, &d->ep[i], &loader, err, sizeof(err)), SINK_OK, "%s",
                     err);
        cr_assert_eq(d->ep[i].stored_offset, -1);
    }
}

static void drv_open(drv_t *d, int timeout_ms, int64_t flush_ms) {
    drv_open_bounded(d, timeout_ms, flush_ms, 0, 0, 0);
}

static void drv_close(drv_t *d) {
    engine_free(d->e);
    for (int i = 0; i < NPART; i++) window_free(d->w[i]);
}

/* One purchase of customer "c<k>" into partition p, processed as the
 * consumer does: window, then engine_consumed(). */
static void consume(drv_t *d, int p, int k) {
    char cid[32], eid[32];
    snprintf(cid, sizeof(cid), "c%d", k);
    int64_t off = d->ep[p].next_offset < 0 ? 0 : d->ep[p].next_offset;
    snprintf(eid, sizeof(eid), "p%d-%" PRId64, p, off);
    event_t e;
    memset(&e, 0, sizeof(e));
    e.customer_id = (strview_t){cid, strlen(cid)};
    e.event_id = (strview_t){eid, strlen(eid)};
    e.occurred_at = T0 + off;
    e.kind = KIND_PURCHASE;
    e.channel = CHANNEL_APP;
    e.handled_by = HANDLER_NONE;
    e.resolved = TRI_NULL;
    window_add(d->w[p], &e, off);
    engine_consumed(d->e, &d->ep[p], off + 1, clock_ms());
}

/* Turns the loop as consumer_run() does until nothing is under way or
 * `ms` have passed. */
static void run_for(drv_t *d, int64_t ms) {
    int64_t until = clock_ms() + ms;
    while (clock_ms() < until) {
        int64_t now = clock_ms();
        engine_service(d->e, now);
        engine_check(d->e, now);
        clock_sleep_ms(engine_poll_timeout(d->e, now) > 5 ? 5 : 1);
    }
}

static long long hget_ll(redisContext *r, const char *key, const char *field) {
    redisReply *x = redisCommand(r, "HGET %s %s", key, field);
    cr_assert_not_null(x);
    long long v = x->type == REDIS_REPLY_STRING ? strtoll(x->str, NULL, 10) : -1;
    freeReplyObject(x);
    return v;
}

static redisContext *raw_connect(void) {
    struct timeval tv = {2, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", redis_proc_port(proc), tv);
    cr_assert(r && !r->err);
    return r;
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------------ */
/* Tests                                                               */

Test(engine, batch_is_written_when_due_and_offsets_handed_back) {
    drv_t d;
    drv_open(&d, 1000, 200);
    cr_expect_eq(engine_poll_timeout(d.e, clock_ms()), 100, "nothing consumed: idle poll");
    for (int k = 0; k < 5; k++) consume(&d, 0, k);
    for (int k = 0; k < 3; k++) consume(&d, 2, k);
    int64_t now = clock_ms();
    cr_expect_leq(engine_poll_timeout(d.e, now), 100);
    engine_check(d.e, now);
    cr_expect_eq(d.flushes, 0, "not due before flush_ms");
    cr_expect_eq(window_change_count(d.w[0]), 5, "the window keeps its changes until due");

    run_for(&d, 400);
    cr_expect_eq(d.flushes, 1);
    cr_expect_eq(d.commits, 1);
    cr_expect_eq(d.committed[0], 5);
    cr_expect_eq(d.committed[1], -1, "nothing consumed from partition 1");
    cr_expect_eq(d.committed[2], 3);
    cr_expect_eq(d.ep[0].stored_offset, 5);
    cr_expect_eq(window_change_count(d.w[0]), 0, "filled and committed");
    cr_expect_eq(d.pauses, 0);

    redisContext *r = raw_connect();
    cr_expect_eq(hget_ll(r, PREFIX "_offsets", TOPIC ":0"), 5);
    cr_expect_eq(hget_ll(r, PREFIX "_offsets", TOPIC ":2"), 3);
    cr_expect_eq(hget_ll(r, PREFIX "ci:c4", "events"), 1);
    redisFree(r);
    drv_close(&d);
}

/* While the input is behind, a batch grows past flush_ms until the backlog
 * is drained, with no time limit; a batch whose write would take more than
 * flush_backlog_bytes is written at once, behind or not.  Every event is
 * counted once in each stage. */
Test(engine, catch_up_grows_until_drained_or_full) {
    drv_t d;
    /* About 40 customers' worth (1 600 B each until a batch of 1 000 is
     * measured). */
    drv_open_bounded(&d, 1000, 5, 40 * 1600, 0, 0);
    d.backlog = 1000000;
    for (int k = 0; k < 20; k++) consume(&d, k % NPART, k);
    run_for(&d, 300);
    cr_expect_eq(d.flushes, 0, "behind: the batch grows past flush_ms (5 ms)");
    cr_expect_eq(window_change_count(d.w[0]), 7);
    d.backlog = 0;
    run_for(&d, 200);
    cr_expect_eq(d.flushes, 1, "caught up: written");
    cr_expect_eq(d.committed[0], 7);
    cr_expect_eq(d.staged[ENGINE_STAGE_BATCH], 20);
    cr_expect_eq(d.staged[ENGINE_STAGE_QUEUED], 20);
    cr_expect_eq(d.staged[ENGINE_STAGE_WRITE], 20);

    /* Behind again: 128 new customers fill a batch twice (counted every 64
     * events, 64 > 40), and each is written without waiting for the
     * backlog: the second waits for the first write, which bounds memory. */
    d.backlog = 1000000;
    for (int k = 1000; k < 1128; k++) {
        consume(&d, k % NPART, k);
        engine_check(d.e, clock_ms());
    }
    run_for(&d, 200);
    cr_expect_eq(d.flushes, 3, "full twice: written while behind (%zu flushes)", d.flushes);
    size_t left = 0;
    for (int p = 0; p < NPART; p++) left += window_change_count(d.w[p]);
    cr_expect_eq(left, 0);
    cr_expect_eq(d.staged[ENGINE_STAGE_WRITE], 148);
    redisContext *r = raw_connect();
    cr_expect_eq(hget_ll(r, PREFIX "ci:c1127", "events"), 1);
    redisFree(r);
    drv_close(&d);
}

/* A batch is full when the sink could not write it within drain_ms (40 µs
 * per customer until a write of 1 000 is timed): 2 ms is 50 customers. */
Test(engine, batch_is_full_when_its_drain_would_take_too_long) {
    drv_t d;
    drv_open_bounded(&d, 1000, 5, 0, 0, 2);
    d.backlog = 1000000;
    for (int k = 0; k < 63; k++) consume(&d, k % NPART, k);
    run_for(&d, 100);
    cr_expect_eq(d.flushes, 0, "behind, 63 customers: growing");
    consume(&d, 0, 63);
    engine_check(d.e, clock_ms());
    run_for(&d, 200);
    cr_expect_eq(d.flushes, 1, "64 customers: more than 2 ms of writing, written while behind");
    drv_close(&d);
}

/* While rapport keeps up, a batch is written flush_live_ms after its first
 * event, long before flush_ms; while behind, flush_ms paces the looks. */
Test(engine, live_batch_is_written_after_flush_live_ms) {
    drv_t d;
    drv_open_bounded(&d, 1000, 2000, 0, 20, 0);
    for (int k = 0; k < 4; k++) consume(&d, 1, k);
    run_for(&d, 300);
    cr_expect_eq(d.flushes, 1, "written after 20 ms, not 2 s");
    cr_expect_eq(d.committed[1], 4);
    d.backlog = 1000000;
    consume(&d, 1, 9);
    run_for(&d, 300);
    cr_expect_eq(d.flushes, 1, "behind: the next look is flush_ms later");
    drv_close(&d);
}

Test(engine, redis_down_pauses_backs_off_and_resumes) {
    drv_t d;
    drv_open(&d, 300, 10);
    consume(&d, 1, 1);
    consume(&d, 1, 2);
    cr_assert_eq(redis_proc_signal(proc, SIGKILL), 0);

    /* The batch is due: the sink cannot connect.  Partitions pause once. */
    clock_sleep_ms(20);
    run_for(&d, 30);
    cr_expect_eq(d.pauses, 1);
    cr_expect(engine_paused(d.e));
    cr_expect_eq(engine_poll_timeout(d.e, clock_ms()), 20);
    int downs = d.sink_down;
    cr_expect_geq(downs, 1);
    /* A message polled now must be read again later; its batch waits. */
    cr_expect_eq(window_change_count(d.w[1]), 0, "the batch holds the changes");

    /* Back-off doubles from 100 ms: no attempt before it is due. */
    int64_t t0 = clock_ms();
    engine_service(d.e, t0);
    cr_expect_eq(d.sink_down, downs, "no attempt before the back-off");
    int attempts = 0;
    int64_t until = t0 + 1000;
    while (clock_ms() < until) {
        engine_service(d.e, clock_ms());
        clock_sleep_ms(5);
    }
    attempts = d.sink_down - downs;
    /* 100 + 200 + 400 ms fit in one second, 800 more do not. */
    cr_expect(attempts >= 2 && attempts <= 3, "%d attempts in a second", attempts);
    cr_expect_eq(d.pauses, 1, "paused once, not per attempt");
    cr_expect_eq(d.commits, 0);

    /* Redis comes back (its AOF kept the epochs): the same batch lands,
     * the partitions resume, the offset is handed back. */
    char err[256];
    cr_assert_eq(redis_proc_restart(proc, err, sizeof(err)), 0, "%s", err);
    run_for(&d, 2000);
    cr_expect(!engine_paused(d.e));
    cr_expect_eq(d.resumes, 1);
    cr_expect_eq(d.committed[1], 2);
    redisContext *r = raw_connect();
    cr_expect_eq(hget_ll(r, PREFIX "_offsets", TOPIC ":1"), 2);
    cr_expect_eq(hget_ll(r, PREFIX "ci:c2", "events"), 1);
    redisFree(r);
    drv_close(&d);
}

Test(engine, prepare_refusal_is_retried) {
    drv_t d;
    drv_open(&d, 1000, 10);
    d.prepare_fails = 1;
    consume(&d, 0, 1);
    run_for(&d, 50);
    cr_expect_eq(d.pauses, 1, "a refused prepare pauses like a failed write");
    cr_expect_eq(d.sink_down, 0, "the sink was not at fault");
    cr_expect_eq(window_change_count(d.w[0]), 1, "nothing filled before prepare agreed");
    run_for(&d, 300);
    cr_expect_eq(d.committed[0], 1);
    cr_expect_eq(d.resumes, 1);
    drv_close(&d);
}

Test(engine, fenced_partition_is_detached_and_its_chunk_refused) {
    drv_t d;
    drv_open(&d, 1000, 10);
    /* Another process claims partition 1. */
    char err[256];
    redis_sink_conf_t sc = {redis_proc_url(proc), PREFIX, 1000, 1000, {0}};
    redis_sink_t *rival = redis_sink_new(&sc, err, sizeof(err));
    score_params_t sp;
    score_params_default(&sp);
    window_t *rw = window_new(&sp, 1, err, sizeof(err));
    sink_loader_t loader = {window_restore_watermark, window_restore_customer, rw};
    sink_claim_t cl;
    cr_assert_eq(redis_sink_claim(rival, TOPIC, 1, &loader, &cl, err, sizeof(err)), SINK_OK,
                 "%s", err);

    consume(&d, 0, 1);
    consume(&d, 1, 2);
    run_for(&d, 300);
    cr_expect_eq(d.fenced[1], 1, "partition 1 is another owner's");
    cr_expect_eq(d.fenced[0], 2, "partition 0 was in its chunk: refused, to be reloaded");
    cr_expect_eq(d.commits, 0);
    cr_expect_eq(d.pauses, 0, "fencing is not an outage");

    /* Detached: more of partition 1 is not written by this engine. */
    consume(&d, 2, 3);
    run_for(&d, 300);
    cr_expect_eq(d.committed[2], 1);
    cr_expect_eq(d.committed[1], -1);
    window_free(rw);
    redis_sink_free(rival);
    drv_close(&d);
}

Test(engine, drain_writes_everything_or_stops_at_the_deadline) {
    drv_t d;
    drv_open(&d, 1000, 60000); /* never due on its own */
    for (int k = 0; k < 10; k++) consume(&d, k % NPART, k);
    cr_expect_eq(engine_drain(d.e, clock_ms() + 2000), 0);
    cr_expect_eq(d.committed[0] + d.committed[1] + d.committed[2], 10);

    consume(&d, 0, 99);
    cr_assert_eq(redis_proc_signal(proc, SIGSTOP), 0);
    int64_t t0 = clock_ms();
    cr_expect_eq(engine_drain(d.e, t0 + 500), -1);
    int64_t took = clock_ms() - t0;
    cr_expect(took >= 450 && took < 1500, "drain took %" PRId64 " ms", took);
    cr_assert_eq(redis_proc_signal(proc, SIGCONT), 0);
    drv_close(&d);
}

/* A catch-up batch's arrays are given back on reset; a steady flush's are
 * kept; either way the next batch fills as before. */
Test(batch, reset_gives_back_a_large_batch_and_keeps_a_small_one) {
    batch_t *b = batch_new();
    alloc_trim(1);
    for (int round = 0; round < 3; round++) {
        size_t n = round == 1 ? 20000 : 100; /* small, large, small */
        batch_partition_t *bp = batch_add_partition(b, "t", 0, 1, -1, (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            batch_customer_t *c = batch_add_customer(b, bp);
            char id[32];
            int len = snprintf(id, sizeof id, "c-%zu", i);
            c->customer_id = batch_copy(b, id, (size_t)len);
            c->ci = (double)i;
        }
        cr_assert_eq(bp->ncustomers, n);
        cr_expect_eq(bp->customers[n - 1].ci, (double)(n - 1));
        cr_expect_eq(memcmp(bp->customers[n - 1].customer_id.ptr, "c-", 2), 0);
        size_t cap = bp->cap_customers;
        batch_reset(b);
        if (round == 1) {
            cr_expect_eq(bp->cap_customers, 0, "a large array is freed");
            cr_expect_null(bp->customers);
            cr_expect(alloc_trim(1), "and the bytes reported to alloc_released()");
        } else {
            cr_expect_eq(bp->cap_customers, cap, "a small array is kept");
        }
    }
    batch_free(b);
}
