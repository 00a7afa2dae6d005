/*
 * micro.c — in-process microbenchmarks of rapport's stages, on the
 * generator's events (the messages `rapport gen` sends).
 *
 *   decode   decoder_decode() over --events pre-generated messages (seed 1,
 *            --customers customers, writer schema v1 as in the end-to-end
 *            run; then a v1/v2/v3 mix): ns per event.
 *   score    window_add() over the same decoded events in one window, with
 *            the change list handed over and committed every --flush-every
 *            events as the consumer does after a flush (window_foreach_change
 *            with callbacks that do nothing, then window_commit), timed
 *            apart: ns per event each.
 *   score1m  one window filled with --track customers (seed 1, a few events
 *            each), then window_add() over the next --track-events events
 *            with that many customers tracked: ns per event, half of them
 *            with window_prefetch() one event ahead as the consumer calls
 *            it (score1m_add) and half without (…_no_prefetch), taken in
 *            turns; the scorer's heap (glibc mallinfo2 in use) and the
 *            state blobs' bytes per tracked customer.
 *   sink     (with --redis URL) the first --sink-events of the same events
 *            spread over --sink-partitions windows by customer, a batch of
 *            every partition and redis_sink_flush() every --flush-every
 *            events: wall ns per event of the flushes, from
 *            redis_sink_stats() Redis commands and request bytes per event
 *            and script arguments per customer written, and from Redis's
 *            INFO around each flush its CPU (user + sys) and the commands
 *            it ran per customer written.
 *
 * decode, score and score1m are timed in thread CPU time, sink in wall
 * time.  Each timed pass runs --repeat times; min, median and max are
 * printed.
 * Every line of output is "name key=value...".  One thread.
 */
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "common/alloc.h"
#include "common/numfmt.h"
#include "consumer/decode.h"
#include "gen/encode.h"
#include "gen/story.h"
#include "scoring/window.h"
#include "sinks/redis.h"
#include "sinks/redis_testing.h"

#define MAX_REPEAT 16
#define ARENA_BLOCK (16u << 20)

/* The stages are timed in this thread's CPU time, so that time the
 * scheduler gives to other processes on a shared machine is not counted
 * (cache and memory-bandwidth interference still is). */
static int64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wall time, for what waits on Redis. */
static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Bytes that stay put: a list of big blocks, freed together. */
typedef struct arena {
    struct block {
        struct block *next;
        size_t used;
        unsigned char data[];
    } *head;
} arena_t;

static void *arena_copy(arena_t *a, const void *src, size_t n) {
    if (!a->head || a->head->used + n > ARENA_BLOCK) {
        struct block *b = malloc(sizeof *b + (n > ARENA_BLOCK ? n : ARENA_BLOCK));
        if (!b)
            return NULL;
        b->next = a->head;
        b->used = 0;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    memcpy(p, src, n);
    a->head->used += n;
    return p;
}

static void arena_free(arena_t *a) {
    while (a->head) {
        struct block *b = a->head;
        a->head = b->next;
        free(b);
    }
}

/* n messages of a generator, copied into an arena. */
typedef struct msgs {
    kafka_msg_view_t *v;
    size_t n;
    arena_t arena;
} msgs_t;

static void msgs_free(msgs_t *m) {
    free(m->v);
    arena_free(&m->arena);
    *m = (msgs_t){0};
}

static int msgs_make(gen_t *g, size_t n, msgs_t *m) {
    *m = (msgs_t){0};
    m->v = calloc(n, sizeof *m->v);
    if (!m->v)
        return -1;
    for (size_t i = 0; i < n; i++) {
        gen_msg_t gm;
        if (gen_next(g, &gm) != 0)
            return -1;
        kafka_msg_view_t *v = &m->v[i];
        v->key = gm.key ? arena_copy(&m->arena, gm.key, gm.key_len) : NULL;
        v->key_len = gm.key_len;
        v->value = gm.value ? arena_copy(&m->arena, gm.value, gm.value_len) : NULL;
        v->value_len = gm.value_len;
        v->timestamp = gm.timestamp_ms;
        if ((gm.key && !v->key) || (gm.value && !v->value))
            return -1;
        m->n = i + 1;
    }
    return 0;
}

static gen_t *gen_make(uint64_t seed, uint32_t customers, unsigned schemas) {
    gen_conf_t gc;
    char errstr[256];
    gen_conf_default(&gc);
    gc.seed = seed;
    gc.customers = customers;
    gc.schemas = schemas;
    gen_t *g = gen_new(&gc, errstr, sizeof errstr);
    if (!g)
        fprintf(stderr, "micro: gen: %s\n", errstr);
    return g;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Prints "<name> ns_per_event_min=… median=… max=…" from r per-pass
 * totals over n events each. */
static void report(const char *name, int64_t *t, int r, size_t n) {
    qsort(t, (size_t)r, sizeof *t, cmp_i64);
    printf("%s ns_per_event_min=%.1f median=%.1f max=%.1f events=%zu repeat=%d\n", name,
           (double)t[0] / (double)n, (double)t[r / 2] / (double)n,
           (double)t[r - 1] / (double)n, n, r);
    fflush(stdout);
}

/* Decodes every message into ev (may be NULL); returns the DECODE_OK count. */
static size_t decode_all(decoder_t *d, const msgs_t *m, event_t *ev, int64_t *ns) {
    char detail[256];
    dlq_reason_t reason;
    event_t tmp;
    size_t ok = 0;
    int64_t t0 = cpu_ns();
    for (size_t i = 0; i < m->n; i++)
        ok += decoder_decode(d, &m->v[i], ev ? &ev[i] : &tmp, &reason, detail, sizeof detail) ==
              DECODE_OK;
    *ns = cpu_ns() - t0;
    return ok;
}

static void noop_upsert(void *opaque, const window_customer_view_t *v) {
    (void)v;
    (*(size_t *)opaque)++;
}

static void noop_delete(void *opaque, strview_t id) {
    (void)id;
    (*(size_t *)opaque)++;
}

/* window_add over ev[0..n), committing every flush_every events; adds the
 * time spent in window_add and in the commits to *add_ns and *commit_ns.
 * With prefetch, each event's customer is announced with window_prefetch()
 * one event ahead, as the consumer does with the message after the one it
 * handles. */
static void score_run(window_t *w, const event_t *ev, size_t n, int64_t first_offset,
                      size_t flush_every, bool prefetch, int64_t *add_ns, int64_t *commit_ns) {
    size_t changes = 0;
    for (size_t i = 0; i < n;) {
        size_t end = i + flush_every < n ? i + flush_every : n;
        int64_t t0 = cpu_ns();
        if (prefetch) {
            for (; i < end; i++) {
                if (i + 1 < n)
                    window_prefetch(w, ev[i + 1].customer_id);
                window_add(w, &ev[i], first_offset + (int64_t)i);
            }
        } else {
            for (; i < end; i++)
                window_add(w, &ev[i], first_offset + (int64_t)i);
        }
        int64_t t1 = cpu_ns();
        window_foreach_change(w, noop_upsert, noop_delete, &changes);
        window_commit(w);
        *add_ns += t1 - t0;
        *commit_ns += cpu_ns() - t1;
    }
}

typedef struct opts {
    const char *schema_dir;
    const char *redis_url;
    size_t events;
    size_t track_events;
    size_t sink_events;
    uint32_t customers;
    uint32_t track;
    size_t flush_every;
    int32_t sink_partitions;
    bool sink_diff;
    int repeat;
    bool decode, score, score1m, sink;
} opts_t;

static int bench_decode_and_score(const opts_t *o, decoder_t *d) {
    int64_t t[MAX_REPEAT], t2[MAX_REPEAT];
    int rc = -1;
    msgs_t m = {0}, mix = {0};
    event_t *ev = calloc(o->events, sizeof *ev);
    gen_t *g = gen_make(1, o->customers, 1u << ENCODE_V1);
    gen_t *gm = gen_make(1, o->customers, (1u << ENCODE_V1) | (1u << ENCODE_V2) | (1u << ENCODE_V3));
    if (!ev || !g || !gm || msgs_make(g, o->events, &m) != 0 ||
        msgs_make(gm, o->events / 4 ? o->events / 4 : 1, &mix) != 0) {
        fprintf(stderr, "micro: cannot make the messages\n");
        goto out;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < m.n; i++)
        bytes += m.v[i].value_len + m.v[i].key_len;
    printf("messages events=%zu customers=%" PRIu32 " mean_bytes=%.1f\n", m.n, o->customers,
           (double)bytes / (double)m.n);

    /* Decode (also fills ev for the scorer).  Pass -1 warms up: it
     * faults in ev's pages and loads the schema. */
    for (int r = -1; r < o->repeat; r++) {
        size_t ok = decode_all(d, &m, ev, &t[r < 0 ? 0 : r]);
        if (ok != m.n) {
            fprintf(stderr, "micro: %zu of %zu messages did not decode\n", m.n - ok, m.n);
            goto out;
        }
    }
    if (o->decode) {
        report("decode_v1", t, o->repeat, m.n);
        for (int r = -1; r < o->repeat; r++)
            if (decode_all(d, &mix, NULL, &t[r < 0 ? 0 : r]) != mix.n) {
                fprintf(stderr, "micro: the v1/v2/v3 mix did not decode\n");
                goto out;
            }
        report("decode_mix", t, o->repeat, mix.n);
    }

    if (o->score) {
        score_params_t sp;
        char errstr[256];
        score_params_default(&sp);
        size_t customers = 0;
        for (int r = 0; r < o->repeat; r++) {
            window_t *w = window_new(&sp, 0, errstr, sizeof errstr);
            if (!w) {
                fprintf(stderr, "micro: %s\n", errstr);
                goto out;
            }
            t[r] = t2[r] = 0;
            score_run(w, ev, m.n, 0, o->flush_every, true, &t[r], &t2[r]);
            customers = window_customer_count(w);
            window_free(w);
        }
        printf("score_customers tracked_at_end=%zu\n", customers);
        report("score_add", t, o->repeat, m.n);
        report("score_commit", t2, o->repeat, m.n);
    }
    rc = 0;
out:
    gen_free(g);
    gen_free(gm);
    msgs_free(&m);
    msgs_free(&mix);
    free(ev);
    return rc;
}

static int bench_score1m(const opts_t *o, decoder_t *d) {
    int64_t t[MAX_REPEAT], t2[MAX_REPEAT];
    int rc = -1;
    char errstr[256], detail[256];
    dlq_reason_t reason;
    score_params_t sp;
    score_params_default(&sp);
    msgs_t m = {0};
    event_t *ev = calloc(o->track_events, sizeof *ev);
    gen_t *g = gen_make(1, o->track, 1u << ENCODE_V1);
    struct mallinfo2 mi0 = mallinfo2();
    window_t *w = window_new(&sp, 0, errstr, sizeof errstr);
    if (!ev || !g || !w) {
        fprintf(stderr, "micro: score1m: cannot start\n");
        goto out;
    }
    /* Fill until (almost) every customer is tracked. */
    int64_t offset = 0, t0 = now_ns();
    size_t changes = 0, limit = (size_t)o->track * 6;
    while (window_customer_count(w) < (size_t)o->track * 99 / 100 && (size_t)offset < limit) {
        gen_msg_t gm;
        event_t e;
        if (gen_next(g, &gm) != 0)
            goto out;
        kafka_msg_view_t v = {gm.key, gm.key_len, gm.value, gm.value_len, gm.timestamp_ms};
        if (decoder_decode(d, &v, &e, &reason, detail, sizeof detail) != DECODE_OK)
            goto out;
        window_add(w, &e, offset++);
        if (offset % (int64_t)o->flush_every == 0) {
            window_foreach_change(w, noop_upsert, noop_delete, &changes);
            window_commit(w);
        }
    }
    window_foreach_change(w, noop_upsert, noop_delete, &changes);
    window_commit(w);
    struct mallinfo2 mi1 = mallinfo2();
    size_t tracked = window_customer_count(w);
    /* The state blobs a sink would hold: the generator's ids are numbered. */
    size_t state_bytes = 0, ids_bytes = 0;
    for (uint32_t i = 0; i < o->track; i++) {
        char id[32];
        window_customer_view_t v;
        int n = snprintf(id, sizeof id, GEN_CUSTOMER_ID_FMT, i);
        if (window_get(w, (strview_t){id, (size_t)n}, &v)) {
            state_bytes += v.state_len;
            ids_bytes += (size_t)n;
        }
    }
    printf("score1m_fill events=%" PRId64 " tracked=%zu seconds=%.1f heap_bytes_per_customer=%.1f"
           " state_bytes_per_customer=%.1f id_bytes_per_customer=%.1f\n",
           offset, tracked, (double)(now_ns() - t0) / 1e9,
           tracked ? (double)(mi1.uordblks - mi0.uordblks) / (double)tracked : 0.0,
           tracked ? (double)state_bytes / (double)tracked : 0.0,
           tracked ? (double)ids_bytes / (double)tracked : 0.0);
    fflush(stdout);

    /* Each pass: half of its events without window_prefetch(), half with,
     * in alternating order, so that both see the same machine. */
    int64_t tn[MAX_REPEAT], tn2[MAX_REPEAT];
    size_t half = o->track_events / 2;
    for (int r = 0; r < o->repeat; r++) {
        if (msgs_make(g, o->track_events, &m) != 0)
            goto out;
        for (size_t i = 0; i < m.n; i++)
            if (decoder_decode(d, &m.v[i], &ev[i], &reason, detail, sizeof detail) != DECODE_OK)
                goto out;
        t[r] = t2[r] = tn[r] = tn2[r] = 0;
        for (int k = 0; k < 2; k++) {
            bool pf = (k + r) % 2 == 0;
            score_run(w, ev + k * half, half, offset, o->flush_every, pf, pf ? &t[r] : &tn[r],
                      pf ? &t2[r] : &tn2[r]);
            offset += (int64_t)half;
        }
        msgs_free(&m);
    }
    printf("score1m_customers tracked_at_end=%zu\n", window_customer_count(w));
    report("score1m_add", t, o->repeat, half);
    report("score1m_commit", t2, o->repeat, half);
    report("score1m_add_no_prefetch", tn, o->repeat, half);
    report("score1m_commit_no_prefetch", tn2, o->repeat, half);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "micro: score1m failed\n");
    msgs_free(&m);
    window_free(w);
    gen_free(g);
    free(ev);
    return rc;
}

/* Redis's own CPU (INFO cpu: used_cpu_user + used_cpu_sys, in µs) and the
 * commands it ran (INFO commandstats: every calls=, inside scripts too). */
typedef struct redis_cpu {
    double cpu_us;
    double calls;
} redis_cpu_t;

static int redis_cpu_read(redisContext *rc, redis_cpu_t *out) {
    redisReply *r = redisCommand(rc, "INFO cpu");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r) freeReplyObject(r);
        return -1;
    }
    const char *u = strstr(r->str, "used_cpu_user:"), *y = strstr(r->str, "used_cpu_sys:");
    out->cpu_us = (u && y) ? (atof(u + 14) + atof(y + 13)) * 1e6 : 0;
    freeReplyObject(r);
    r = redisCommand(rc, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r) freeReplyObject(r);
        return -1;
    }
    out->calls = 0;
    for (const char *p = r->str; (p = strstr(p, "calls=")) != NULL; p += 6)
        out->calls += atof(p + 6);
    freeReplyObject(r);
    return 0;
}

/* What the sink last wrote of a customer, to emulate a scorer that flags
 * exactly the public fields that changed (BATCH_CF_*). */
typedef struct written {
    char id[EVENT_CUSTOMER_ID_MAX + 1];
    uint8_t id_len;
    bool used, gone; /* gone: evicted or erased, written fresh next time */
    char f4[6][NUMFMT_MAX];
    int64_t ints[6];
    char route[24];
} written_t;

typedef struct written_tab {
    written_t *slot;
    size_t mask;
} written_tab_t;

static written_t *written_find(written_tab_t *t, batch_str_t id, bool add) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < id.len; i++) h = (h ^ (unsigned char)id.ptr[i]) * 1099511628211ULL;
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        written_t *x = &t->slot[i];
        if (!x->used) {
            if (!add) return NULL;
            x->used = true;
            x->id_len = (uint8_t)id.len;
            memcpy(x->id, id.ptr, id.len);
            return x;
        }
        if (x->id_len == id.len && memcmp(x->id, id.ptr, id.len) == 0) return x;
    }
}

/* Sets c->changed to the fields that differ from what was written before
 * (all of them for a customer never written), and remembers the new values. */
static void emulate_changed(written_tab_t *t, batch_customer_t *c) {
    written_t *x = written_find(t, c->customer_id, false);
    bool fresh = x == NULL || x->gone;
    if (!x) x = written_find(t, c->customer_id, true);
    x->gone = false;
    const double f[6] = {c->ci, c->resolution, c->sentiment, c->loyalty, c->ai_share, c->aht_ms};
    const int64_t n[6] = {c->streak, c->contacts, c->resolved, c->events, c->at_risk,
                          c->updated_at};
    uint32_t m = 0;
    for (int k = 0; k < 6; k++) {
        char buf[NUMFMT_MAX];
        buf[fmt_f4(buf, f[k])] = '\0';
        if (fresh || strcmp(buf, x->f4[k]) != 0) m |= 1u << k;
        memcpy(x->f4[k], buf, sizeof buf);
        if (fresh || n[k] != x->ints[k]) m |= 1u << (6 + k);
        x->ints[k] = n[k];
    }
    char route[24];
    snprintf(route, sizeof route, "%.*s/%.*s", (int)c->route.len, c->route.ptr,
             (int)c->route_reason.len, c->route_reason.ptr);
    if (fresh || strcmp(route, x->route) != 0) m |= BATCH_CF_ROUTE;
    memcpy(x->route, route, sizeof route);
    c->changed = m;
}

static void emulate_forget(written_tab_t *t, batch_str_t id) {
    written_t *x = written_find(t, id, false);
    if (x) x->gone = true;
}

/* FNV-1a of a customer id modulo the partitions, as a keyed producer would
 * spread the customers. */
static int32_t partition_of(strview_t id, int32_t parts) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < id.len; i++) h = (h ^ (unsigned char)id.ptr[i]) * 1099511628211ULL;
    return (int32_t)(h % (uint64_t)parts);
}

static int bench_sink(const opts_t *o, decoder_t *d) {
    int rc = -1;
    char errstr[512];
    score_params_t sp;
    score_params_default(&sp);
    msgs_t m = {0};
    int32_t np = o->sink_partitions;
    event_t *ev = calloc(o->sink_events, sizeof *ev);
    gen_t *g = gen_make(1, o->customers, 1u << ENCODE_V1);
    redis_sink_conf_t sc = {.url = o->redis_url, .prefix = "micro:", .alerts_maxlen = 1000000,
                            .timeout_ms = 30000};
    redis_sink_t *s = redis_sink_new(&sc, errstr, sizeof errstr);
    window_t **w = calloc((size_t)np, sizeof *w);
    sink_claim_t *claim = calloc((size_t)np, sizeof *claim);
    int64_t *next = calloc((size_t)np, sizeof *next);
    written_tab_t wt = {0};
    redisContext *info = NULL;
    batch_t *b = NULL;
    if (!ev || !g || !s || !w || !claim || !next || msgs_make(g, o->sink_events, &m) != 0) {
        fprintf(stderr, "micro: sink: %s\n", s ? "cannot make the messages" : errstr);
        goto out;
    }
    if (o->sink_diff) {
        size_t cap = 1024;
        while (cap < 2 * (size_t)o->customers) cap *= 2;
        wt.slot = calloc(cap, sizeof *wt.slot);
        wt.mask = cap - 1;
    }
    if (decode_all(d, &m, ev, &(int64_t){0}) != m.n)
        goto out;
    for (int32_t p = 0; p < np; p++) {
        w[p] = window_new(&sp, p, errstr, sizeof errstr);
        if (!w[p]) {
            fprintf(stderr, "micro: sink: %s\n", errstr);
            goto out;
        }
        sink_loader_t loader = {window_restore_watermark, window_restore_customer, w[p]};
        if (redis_sink_claim(s, "micro", p, &loader, &claim[p], errstr, sizeof errstr) !=
            SINK_OK) {
            fprintf(stderr, "micro: sink: claim: %s\n", errstr);
            goto out;
        }
        next[p] = claim[p].next_offset >= 0 ? claim[p].next_offset : 0;
    }
    {
        /* INFO read on a connection of its own, around the flushes only. */
        int port = 6379;
        const char *hp = strstr(o->redis_url, "://");
        char host[256] = "127.0.0.1";
        if (hp && sscanf(hp + 3, "%255[^:/]:%d", host, &port) < 1) port = 6379;
        info = redisConnect(host, port);
        if (!info || info->err) {
            fprintf(stderr, "micro: sink: cannot connect for INFO\n");
            goto out;
        }
    }
    b = batch_new();
    int64_t flush_ns = 0;
    double cpu_us = 0, calls = 0;
    for (size_t i = 0; i < m.n;) {
        size_t end = i + o->flush_every < m.n ? i + o->flush_every : m.n;
        for (; i < end; i++) {
            int32_t p = partition_of(ev[i].customer_id, np);
            window_add(w[p], &ev[i], next[p]++);
        }
        /* Timed as the engine does it: the batch filled from the windows,
         * the windows committed, the batch written. */
        int64_t t0 = now_ns(), diff_ns = 0;
        batch_reset(b);
        for (int32_t p = 0; p < np; p++) {
            int64_t prev = claim[p].next_offset;
            if (prev == next[p] || (prev < 0 && next[p] == 0)) continue;
            batch_partition_t *bp =
                batch_add_partition(b, "micro", p, claim[p].epoch, prev, next[p]);
            window_fill_batch(w[p], b, bp);
            window_commit(w[p]);
            claim[p].next_offset = next[p];
            if (!o->sink_diff) continue;
            int64_t d0 = now_ns();
            for (size_t k = 0; k < bp->ndeletes; k++) emulate_forget(&wt, bp->deletes[k]);
            for (size_t k = 0; k < bp->nerasures; k++) emulate_forget(&wt, bp->erasures[k]);
            for (size_t k = 0; k < bp->ncustomers; k++) emulate_changed(&wt, &bp->customers[k]);
            diff_ns += now_ns() - d0;
        }
        redis_cpu_t c0, c1;
        if (redis_cpu_read(info, &c0) != 0) goto out;
        if (redis_sink_flush(s, b, errstr, sizeof errstr) != SINK_OK) {
            fprintf(stderr, "micro: sink: flush: %s\n", errstr);
            goto out;
        }
        if (redis_cpu_read(info, &c1) != 0) goto out;
        cpu_us += c1.cpu_us - c0.cpu_us;
        calls += c1.calls - c0.calls - 2; /* the INFO itself */
        flush_ns += now_ns() - t0 - diff_ns;
    }
    const sink_stats_t *st = redis_sink_stats(s);
    double cw = st->customers_written ? (double)st->customers_written : 1;
    printf("sink events=%zu partitions=%d flush_every=%zu changed=%s flushes=%" PRIu64
           " ns_per_event=%.1f"
           " commands_per_event=%.4f bytes_per_event=%.1f customers_written_per_event=%.4f"
           " alerts_per_event=%.4f redis_us_per_customer=%.2f redis_calls_per_customer=%.3f"
           " argv_per_customer=%.2f\n",
           m.n, np, o->flush_every, o->sink_diff ? "diff" : "all", st->flushes,
           (double)flush_ns / (double)m.n,
           (double)st->commands / (double)m.n, (double)st->bytes_sent / (double)m.n,
           (double)st->customers_written / (double)m.n, (double)st->alerts_written / (double)m.n,
           cpu_us / cw, calls / cw, (double)st->args / cw);
    rc = 0;
out:
    if (info) redisFree(info);
    batch_free(b);
    for (int32_t p = 0; w && p < np; p++) window_free(w[p]);
    free(w);
    free(claim);
    free(next);
    free(wt.slot);
    redis_sink_free(s);
    msgs_free(&m);
    gen_free(g);
    free(ev);
    return rc;
}

static void usage(FILE *f) {
    fputs("usage: micro --schema-dir DIR [--events N] [--customers N] [--track N]\n"
          "             [--track-events N] [--sink-events N] [--flush-every N]\n"
          "             [--repeat R] [--redis URL] [--sink-partitions P]\n"
          "             [--sink-changed all|diff]\n"
          "             [--only decode,score,score1m,sink]\n"
          "\n"
          "Defaults: --events 1000000 --customers 100000 --track 1000000\n"
          "--track-events 300000 --sink-events 200000 --flush-every 10000\n"
          "--repeat 3 --sink-partitions 1 --sink-changed all; sink runs only\n"
          "with --redis.  --sink-changed all keeps the mask the window fills;\n"
          "diff replaces it with the public fields that differ from what was\n"
          "last written (the two agree since the window tracks its changes).\n",
          f);
}

/* "decode,score,score1m,sink", any non-empty subset. */
static int parse_only(const char *s, opts_t *o) {
    o->decode = o->score = o->score1m = o->sink = false;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 6 && strncmp(s, "decode", n) == 0) o->decode = true;
        else if (n == 5 && strncmp(s, "score", n) == 0) o->score = true;
        else if (n == 7 && strncmp(s, "score1m", n) == 0) o->score1m = true;
        else if (n == 4 && strncmp(s, "sink", n) == 0) o->sink = true;
        else return -1;
        s += n + (s[n] == ',');
    }
    return o->decode || o->score || o->score1m || o->sink ? 0 : -1;
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"schema-dir", required_argument, NULL, 'd'}, {"events", required_argument, NULL, 'n'},
        {"customers", required_argument, NULL, 'c'},  {"track", required_argument, NULL, 'k'},
        {"flush-every", required_argument, NULL, 'f'}, {"repeat", required_argument, NULL, 'r'},
        {"redis", required_argument, NULL, 'R'},      {"only", required_argument, NULL, 'o'},
        {"track-events", required_argument, NULL, 'K'},
        {"sink-events", required_argument, NULL, 'E'},
        {"sink-partitions", required_argument, NULL, 'P'},
        {"sink-changed", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};
    opts_t o = {.events = 1000000, .track_events = 300000,
                .sink_events = 200000, .customers = 100000, .track = 1000000,
                .flush_every = 10000, .sink_partitions = 1, .repeat = 3,
                .decode = true, .score = true, .score1m = true, .sink = true};
    alloc_init(); /* as rapport does (common/alloc.h) */
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': o.schema_dir = optarg; break;
        case 'n': o.events = strtoull(optarg, NULL, 10); break;
        case 'c': o.customers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': o.track = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'K': o.track_events = strtoull(optarg, NULL, 10); break;
        case 'E': o.sink_events = strtoull(optarg, NULL, 10); break;
        case 'P': o.sink_partitions = (int32_t)atoi(optarg); break;
        case 'C':
            if (strcmp(optarg, "diff") != 0 && strcmp(optarg, "all") != 0) {
                usage(stderr);
                return 2;
            }
            o.sink_diff = strcmp(optarg, "diff") == 0;
            break;
        case 'f': o.flush_every = strtoull(optarg, NULL, 10); break;
        case 'r': o.repeat = atoi(optarg); break;
        case 'R': o.redis_url = optarg; break;
        case 'o':
            if (parse_only(optarg, &o) != 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o.schema_dir || optind < argc || o.events < 1 || o.customers < 1 || o.track < 1 ||
        o.track_events < 1 || o.sink_events < 1 || o.sink_partitions < 1 ||
        o.flush_every < 1 || o.repeat < 1 || o.repeat > MAX_REPEAT) {
        usage(stderr);
        return 2;
    }
    if (!o.redis_url)
        o.sink = false;

    char errstr[512];
    /* The writer schemas, as `rapport gen --schema-dir` writes them. */
    if (encode_write_schemas(o.schema_dir, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "micro: --schema-dir: %s\n", errstr);
        return 1;
    }
    decoder_conf_t dc = {.schema_dir = o.schema_dir, .max_message_bytes = 65536,
                         .max_future_skew_ms = 300000};
    decoder_t *d = decoder_new(&dc, errstr, sizeof errstr);
    if (!d) {
        fprintf(stderr, "micro: decoder: %s\n", errstr);
        return 1;
    }
    int rc = 0;
    if ((o.decode || o.score) && bench_decode_and_score(&o, d) != 0)
        rc = 1;
    if (rc == 0 && o.score1m && bench_score1m(&o, d) != 0)
        rc = 1;
    if (rc == 0 && o.sink && bench_sink(&o, d) != 0)
        rc = 1;
    decoder_free(d);
    return rc;
}
