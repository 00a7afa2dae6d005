/*
 * consumer.c — the main loop of `rapport run`: the Kafka side.
 *
 * Owns the librdkafka consumer, the dead-letter producer, the decoder, the
 * flush engine (batch/engine.h, which owns the Redis sink) and one window
 * per assigned partition.  Everything runs on the thread that calls
 * consumer_run(), rebalance callbacks included; the loop drives the
 * engine, as Redis's main drives ae.c.
 *
 * The order that makes the Redis effect exactly-once (SPEC §6):
 *   1. poll a message; skip it if its offset is below the partition's
 *      next offset (a repeat after a seek or a rebalance);
 *   2. decode, validate, and either dead-letter it or apply it to the
 *      partition's window; the partition's next offset moves past it
 *      (engine_consumed());
 *   3. when the engine finds the batch due, it asks (prepare) that every
 *      dead-letter copy be acknowledged, has each pending partition's
 *      window copied into the batch and committed (fill), and writes the
 *      batch with its next offsets to Redis in fenced scripts while this
 *      loop goes on consuming;
 *   4. only when Redis has answered does the engine hand back the offsets
 *      (commit), and they are committed to Kafka, for lag tools.
 * A crash anywhere loses only work that Redis never saw, and the next
 * owner starts from the offset Redis holds, with the state Redis holds.
 *
 * When Redis (or the dead-letter topic) cannot be written, the engine has
 * every assigned partition paused (the loop keeps polling, so the group
 * membership stays), retries with exponential backoff, and has them
 * resumed after the first successful flush.  Memory stays bounded by what
 * was consumed before the pause.
 *
 * Observability: this thread records counters, flush times, Redis
 * reachability, per-partition watermark and lag, and a heartbeat into the
 * metrics_t that the HTTP thread serves (common/metrics.h).  Once a second
 * it republishes the partitions, summarises dead letters in the log, and,
 * when nothing else has talked to Redis for that long, PINGs it, so that
 * /readyz notices a Redis that went away while no events came.
 */
#include "consumer/consumer.h"

#include <assert.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/engine.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/escape.h"
#include "common/log.h"
#include "consumer/dlq.h"
#include "consumer/kafka_log.h"
#include "consumer/registry.h"
#include "scoring/window.h"
#include "sinks/redis.h"

/* Claiming a partition is retried this often while Redis cannot answer. */
#define CLAIM_BACKOFF_MIN_MS 100
#define CLAIM_BACKOFF_MAX_MS 5000
/* A fenced partition that librdkafka still says is ours after this long is
 * claimed again (Redis lost its data, or a rebalance we were slow to see
 * has already given it back). */
#define RECLAIM_AFTER_MS 3000
/* At most this often, fetchers found idle behind a backlog are woken. */
#define KICK_MS 20
/* Housekeeping period: metrics published, Redis probed when idle. */
#define TICK_MS 1000
/* While dead letters keep coming, one log line of counts this often. */
#define BURST_REPORT_MS 10000

typedef struct part {
    engine_part_t ep;       /* id, epoch and offsets, shared with the engine */
    window_t *w;
    int64_t retry_at;       /* paused for an unreachable schema source until */
    int64_t fenced_at;      /* another owner wrote: state dropped, paused since */
} part_t;

/* Dead letters are logged as bursts, not one line per message: the first
 * of a burst with its details, then every BURST_REPORT_MS the counts per
 * reason while more come, and one line when a period passes without any. */
typedef struct dlq_burst {
    bool active;
    int64_t started, reported;           /* monotonic ms */
    uint64_t total;                      /* dead letters in this burst */
    uint64_t since[DLQ_REASON_COUNT];    /* since the last line, by reason */
} dlq_burst_t;

struct consumer {
    const config_t *conf;
    rd_kafka_t *rk;
    dlq_t *dlq;
    registry_t *registry;   /* NULL without schema_registry_url; used by dec */
    decoder_t *dec;
    engine_t *engine;       /* the flush engine and, inside it, the Redis sink */
    part_t **parts;         /* indexed by partition id; NULL: not ours */
    int32_t parts_cap;
    volatile sig_atomic_t *stop;
    metrics_t *metrics;     /* borrowed: read by the HTTP thread */
    bool redis_up;          /* the last Redis round trip succeeded (logged on change) */
    int64_t tick_at;        /* next housekeeping */
    int64_t kick_at;        /* earliest next kick_fetchers() */
    uint64_t polled;        /* messages polled, and that count at the last */
    uint64_t polled_at_tick; /* tick: none in between is an idle second */
    rd_kafka_message_t *next; /* polled ahead, handled on the next turn */
    dlq_burst_t burst;
};

/* ------------------------------------------------------------------ */
/* Partitions                                                          */

static part_t *part_get(const consumer_t *c, int32_t id) {
    return (id >= 0 && id < c->parts_cap) ? c->parts[id] : NULL;
}

static void part_drop(consumer_t *c, int32_t id) {
    part_t *p = part_get(c, id);
    if (!p) return;
    if (c->engine) engine_detach(c->engine, &p->ep);
    window_free(p->w);
    free(p);
    c->parts[id] = NULL;
}

static void parts_drop_all(consumer_t *c) {
    for (int32_t i = 0; i < c->parts_cap; i++) part_drop(c, i);
}

/* Records whether Redis answered (rapport_redis_up, /readyz) and logs
 * only the changes.  The engine's sink_state callback. */
static void redis_state(void *opaque, bool up, const char *err) {
    consumer_t *c = opaque;
    char q[600];
    metrics_redis(c->metrics, up, err);
    if (up == c->redis_up) return;
    c->redis_up = up;
    if (up)
        log_info("redis available again", NULL);
    else
        log_warn("redis unavailable", "err=%s", log_quote(err ? err : "", q, sizeof(q)));
}

/* Publishes each assigned partition's watermark and lag, and the number
 * of customers tracked.  The high watermark comes from librdkafka's cache,
 * which every fetch response updates: no request to the broker. */
static void publish_partitions(consumer_t *c) {
    metrics_partition_t *mp = xcalloc((size_t)c->parts_cap + 1, sizeof(*mp));
    size_t n = 0;
    uint64_t customers = 0;
    for (int32_t i = 0; i < c->parts_cap; i++) {
        const part_t *p = c->parts[i];
        if (!p) continue;
        /* Where reading goes on: after what was processed, or for a fenced
         * partition from what Redis holds; -1: from the earliest. */
        int64_t pos = p->fenced_at ? p->ep.stored_offset : p->ep.next_offset;
        int64_t lo = -1, hi = -1, lag = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, c->conf->topic, i, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0) {
            if (pos < 0) pos = lo;
            if (pos >= 0) lag = hi > pos ? hi - pos : 0;
        }
        mp[n++] = (metrics_partition_t){.partition = i,
                                        .watermark_ms = p->w ? window_watermark(p->w) : -1,
                                        .lag = lag};
        if (p->w) customers += window_customer_count(p->w);
    }
    metrics_partitions(c->metrics, mp, n, customers);
    free(mp);
}

/* Pause or resume every partition we hold (except those waiting on the
 * schema source, which resume on their own timer).  The engine's pause
 * callback. */
static void parts_pause(void *opaque, bool pause) {
    consumer_t *c = opaque;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i] && (pause || (!c->parts[i]->retry_at && !c->parts[i]->fenced_at)))
            rd_kafka_topic_partition_list_add(l, c->conf->topic, i);
    if (l->cnt) {
        rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l)
                                        : rd_kafka_resume_partitions(c->rk, l);
        if (err)
            log_warn(pause ? "pausing partitions failed" : "resuming partitions failed",
                     "err=\"%s\"", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void seek_and(consumer_t *c, int32_t id, int64_t offset, int pause) {
    /* librdkafka discards what it fetched before a seek; the message
     * polled ahead (poll_ahead()) is discarded the same way. */
    if (c->next && c->next->partition == id) {
        rd_kafka_message_destroy(c->next);
        c->next = NULL;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->conf->topic, id)->offset = offset;
    if (pause > 0) rd_kafka_pause_partitions(c->rk, l);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 2000);
    if (e) {
        log_warn("seek failed", "partition=%" PRId32 " err=\"%s\"", id, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    if (pause < 0) rd_kafka_resume_partitions(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Someone else wrote this partition: forget our state (Redis has the
 * truth) and stop reading it until it is claimed again. */
static void part_fence(consumer_t *c, int32_t id) {
    part_t *p = part_get(c, id);
    if (!p) return;
    window_free(p->w);
    p->w = NULL;
    p->fenced_at = clock_ms();
    seek_and(c, id, p->ep.stored_offset >= 0 ? p->ep.stored_offset : RD_KAFKA_OFFSET_BEGINNING,
             1);
}

/* Claims the partition in Redis and loads its state, retrying while Redis
 * is unreachable.  Returns the offset to start from. */
static int64_t part_claim(consumer_t *c, int32_t id) {
    char err[512];
    bool logged = false;
    int backoff = CLAIM_BACKOFF_MIN_MS;
    if (id >= c->parts_cap) {
        int32_t cap = id + 16;
        c->parts = xrealloc(c->parts, (size_t)cap * sizeof(*c->parts));
        memset(c->parts + c->parts_cap, 0, (size_t)(cap - c->parts_cap) * sizeof(*c->parts));
        c->parts_cap = cap;
    }
    part_drop(c, id);
    while (!*c->stop) {
        metrics_heartbeat(c->metrics, clock_ms());
        part_t *p = xcalloc(1, sizeof(*p));
        p->ep.id = id;
        p->w = window_new(&c->conf->score, id, err, sizeof(err));
        /* Only bad parameters fail, and the configuration table refused those
         * at start-up. */
        assert(p->w);
        sink_loader_t loader = {window_restore_watermark, window_restore_customer, p->w};
        if (engine_claim(c->engine, &p->ep, &loader, err, sizeof(err)) == SINK_OK) {
            c->parts[id] = p;
            log_info("partition claimed", "topic=%s partition=%" PRId32 " epoch=%" PRId64
                     " offset=%" PRId64 " customers=%zu watermark=%" PRId64,
                     c->conf->topic, id, p->ep.epoch, p->ep.next_offset,
                     window_customer_count(p->w), window_watermark(p->w));
            return p->ep.next_offset;
        }
        window_free(p->w);
        free(p);
        if (!logged)
            log_warn("cannot load partition state from Redis, retrying",
                     "partition=%" PRId32 " err=\"%s\"", id, err);
        logged = true;
        clock_sleep_ms(backoff);
        backoff = backoff * 2 > CLAIM_BACKOFF_MAX_MS ? CLAIM_BACKOFF_MAX_MS : backoff * 2;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* What the flush engine asks of the consumer (batch/engine.h)         */

/* A partition's changes into the batch; its window forgets them. */
static void on_fill(void *opaque, engine_part_t *ep, batch_t *b, batch_partition_t *bp) {
    consumer_t *c = opaque;
    part_t *p = part_get(c, ep->id);
    size_t na;
    const alert_t *a = window_alerts(p->w, &na);
    for (size_t k = 0; k < na; k++) metrics_alert(c->metrics, a[k].type);
    window_fill_batch(p->w, b, bp);
    window_commit(p->w);
}

static size_t changes_pending(void *opaque) {
    const consumer_t *c = opaque;
    size_t n = 0;
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i] && c->parts[i]->w) n += window_change_count(c->parts[i]->w);
    return n;
}

/* Events waiting in Kafka for partition id: its high watermark (librdkafka's
 * cache, updated by every fetch response; no request) minus the next offset
 * to process, or the low watermark before anything was processed.  0 when
 * not known yet (nothing fetched) or when the partition is waiting. */
static uint64_t part_lag(consumer_t *c, int32_t id, const part_t *p) {
    int64_t lo, hi;
    if (p->fenced_at || p->retry_at ||
        rd_kafka_get_watermark_offsets(c->rk, c->conf->topic, id, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
        return 0;
    int64_t pos = p->ep.next_offset >= 0 ? p->ep.next_offset : (lo > 0 ? lo : 0);
    return hi > pos ? (uint64_t)(hi - pos) : 0;
}

static uint64_t lag_total(void *opaque) {
    consumer_t *c = opaque;
    uint64_t lag = 0;
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i]) lag += part_lag(c, i, c->parts[i]);
    return lag;
}

/* A dead letter must be safe in Kafka before the offset past it is. */
static int dead_letters_safe(void *opaque, char *errstr, size_t errstr_size) {
    consumer_t *c = opaque;
    if (dlq_sync(c->dlq, 1000) == 0) return 0;
    snprintf(errstr, errstr_size, "copies not yet acknowledged by Kafka");
    return -1;
}

/* Another owner wrote the partition (by_other), or it was refused with one
 * that did: drop its state and read it again from what Redis holds; a
 * refused one is claimed again at once. */
static void on_fenced(void *opaque, engine_part_t *ep, bool by_other) {
    consumer_t *c = opaque;
    part_fence(c, ep->id);
    part_t *p = part_get(c, ep->id);
    if (p && !by_other) p->fenced_at = clock_ms() - RECLAIM_AFTER_MS;
}

/* Redis holds these offsets: commit them to the Kafka group for lag tools. */
static void commit_offsets(void *opaque, const engine_offset_t *o, size_t n) {
    consumer_t *c = opaque;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, c->conf->topic, o[i].partition)->offset = o[i].offset;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 1);
    if (err) log_debug("kafka offset commit not sent", "err=\"%s\"", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_flushed(void *opaque, size_t partitions, double seconds) {
    consumer_t *c = opaque;
    metrics_flush_observe(c->metrics, seconds);
}

static void on_stage(void *opaque, engine_stage_t stage, double seconds, uint64_t events) {
    consumer_t *c = opaque;
    static const metrics_wait_t as_metric[ENGINE_STAGE_COUNT] = {
        [ENGINE_STAGE_BATCH] = METRICS_WAIT_BATCH,
        [ENGINE_STAGE_QUEUED] = METRICS_WAIT_QUEUED,
        [ENGINE_STAGE_WRITE] = METRICS_WAIT_WRITE};
    metrics_wait_observe(c->metrics, as_metric[stage], seconds, events);
}

static void on_heartbeat(void *opaque, int64_t now) {
    consumer_t *c = opaque;
    metrics_heartbeat(c->metrics, now);
}

/* ------------------------------------------------------------------ */
/* Rebalance                                                           */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
    consumer_t *c = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < list->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &list->elems[i];
            int64_t off = part_claim(c, tp->partition);
            tp->offset = off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_error_t *e = NULL;
        rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (coop)
            e = rd_kafka_incremental_assign(rk, list);
        else
            aerr = rd_kafka_assign(rk, list);
        if (e) {
            log_error("assign failed", "err=\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else if (aerr) {
            log_error("assign failed", "err=\"%s\"", rd_kafka_err2str(aerr));
        }
        if (engine_paused(c->engine)) parts_pause(c, true);
        publish_partitions(c);
        log_info("partitions assigned", "count=%d protocol=%s", list->cnt, coop ? "cooperative" : "eager");
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Write what we have before the partitions go; if Redis cannot take
         * it in time, the new owner redoes that work from Redis's offset. */
        /* When stopping, the shutdown flush has just run: if it failed,
         * do not spend the rest of the 10 s on another attempt. */
        int64_t budget =
            *c->stop ? (engine_paused(c->engine) ? 0 : 1000) : c->conf->shutdown_timeout_ms;
        if (budget > 0 && engine_drain(c->engine, clock_ms() + budget) != 0)
            log_warn("revoked partitions could not be flushed; the next owner replays them", NULL);
        for (int i = 0; i < list->cnt; i++) part_drop(c, list->elems[i].partition);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, list);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        engine_unpause(c->engine);
        publish_partitions(c);
        log_info("partitions revoked", "count=%d", list->cnt);
        return;
    }
    log_error("rebalance error", "err=\"%s\"", rd_kafka_err2str(err));
    parts_drop_all(c);
    rd_kafka_assign(rk, NULL);
    publish_partitions(c);
}

/* ------------------------------------------------------------------ */
/* Dead-letter bursts and housekeeping                                 */

static void burst_note(consumer_t *c, const rd_kafka_message_t *m, dlq_reason_t reason,
                       const char *detail) {
    dlq_burst_t *b = &c->burst;
    char q[600];
    if (b->active) {
        b->since[reason]++;
        b->total++;
        return;
    }
    *b = (dlq_burst_t){.active = true, .started = clock_ms(), .reported = clock_ms(), .total = 1};
    log_warn("dead-lettering messages", "dlq_topic=%s reason=%s partition=%" PRId32
             " offset=%" PRId64 " detail=%s", config_dlq_topic(c->conf), dlq_reason_names[reason],
             m->partition, m->offset, log_quote(detail, q, sizeof(q)));
}

static void burst_tick(consumer_t *c, int64_t now) {
    dlq_burst_t *b = &c->burst;
    if (!b->active || now - b->reported < BURST_REPORT_MS) return;
    char counts[512] = "";
    size_t off = 0;
    uint64_t n = 0;
    for (int r = DLQ_NONE + 1; r < DLQ_REASON_COUNT; r++) {
        if (!b->since[r] || off >= sizeof(counts)) continue;
        n += b->since[r];
        off += (size_t)snprintf(counts + off, sizeof(counts) - off, " %s=%" PRIu64,
                                dlq_reason_names[r], b->since[r]);
    }
    int64_t period = now - b->reported;
    memset(b->since, 0, sizeof(b->since));
    b->reported = now;
    if (n) {
        log_warn("more messages dead-lettered", "seconds=%" PRId64 " count=%" PRIu64 "%s",
                 period / 1000, n, counts);
    } else {
        log_info("dead letters stopped", "total=%" PRIu64 " seconds=%" PRId64, b->total,
                 (now - b->started) / 1000);
        b->active = false;
    }
}

/* Once a second, on the main thread. */
static void tick(consumer_t *c, int64_t now) {
    publish_partitions(c);
    burst_tick(c, now);
    engine_tick(c->engine, now);
    /* A second without a message: the windows' spare room and the heap's
     * free pages go back (common/alloc.h), after a burst above all. */
    if (c->polled == c->polled_at_tick) {
        for (int32_t i = 0; i < c->parts_cap; i++)
            if (c->parts[i] && c->parts[i]->w) window_release(c->parts[i]->w);
        if (alloc_trim(1)) log_debug("freed memory handed back to the kernel", "after=idle");
    }
    c->polled_at_tick = c->polled;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

/* Takes the next message if it has already arrived (never waits for one)
 * and, when its partition is ours, tells that window its customer (the
 * key, SPEC §1) is coming: the lookup's cache misses then overlap the
 * scoring of the message in hand (window_prefetch()).  A key that is not
 * the payload's customer_id only wastes the fetch. */
static void poll_ahead(consumer_t *c) {
    c->next = rd_kafka_consumer_poll(c->rk, 0);
    rd_kafka_message_t *n = c->next;
    if (!n || n->err || !n->key || n->key_len == 0 || n->key_len > EVENT_CUSTOMER_ID_MAX) return;
    part_t *p = part_get(c, n->partition);
    if (p && p->w) window_prefetch(p->w, (strview_t){(const char *)n->key, n->key_len});
}

/* One polled message; now: the clock read before the poll. */
static void handle_message(consumer_t *c, rd_kafka_message_t *m, int64_t now) {
    char detail[512], err[512];
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("kafka", "err=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    part_t *p = part_get(c, m->partition);
    if (!p || p->retry_at || p->fenced_at) return;        /* not ours, or waiting */
    if (p->ep.next_offset >= 0 && m->offset < p->ep.next_offset) return; /* seen */
    /* Where to read again when this message cannot be handled now: the
     * partition's first unprocessed offset, the same for every message
     * fetched before a pause took hold, so repeated seeks cannot skip one. */
    int64_t resume = p->ep.next_offset >= 0 ? p->ep.next_offset : m->offset;
    if (engine_paused(c->engine)) {
        /* Fetched before the pause took hold: read it again after the
         * retry, so that the retried flush covers exactly what the failed
         * one did. */
        seek_and(c, m->partition, resume, 1);
        return;
    }

    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    kafka_msg_view_t v = {m->key, m->key_len, m->payload, m->len,
                          tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts};
    event_t e;
    dlq_reason_t reason = DLQ_NONE;
    switch (decoder_decode(c->dec, &v, &e, &reason, detail, sizeof(detail))) {
    case DECODE_OK:
        metrics_event(c->metrics, window_add(p->w, &e, m->offset) == WINDOW_LATE);
        break;
    case DECODE_TOMBSTONE: {
        /* SPEC §1.2: in partition order, like an event. */
        bool held = window_erase(p->w, e.customer_id, m->offset);
        metrics_erasure(c->metrics, held);
        if (!held) {
            /* Visible, since a tombstone sent with another partitioner than
             * the events' lands in a partition that never held the customer. */
            char id[EVENT_CUSTOMER_ID_MAX * 4 + 8];
            log_info("tombstone for a customer this partition does not hold",
                     "partition=%" PRId32 " offset=%" PRId64 " customer_id=\"%s\"",
                     m->partition, m->offset,
                     escape_bytes(e.customer_id.ptr, e.customer_id.len, 64, id, sizeof id));
        }
        break;
    }
    case DECODE_DEAD:
        if (dlq_send(c->dlq, m, reason, detail, err, sizeof(err)) != 0) {
            /* Could not even queue the copy: read this message again later. */
            engine_fail(c->engine, "dead-letter", err, clock_ms());
            seek_and(c, m->partition, resume, 1);
            return;
        }
        metrics_dead_letter(c->metrics, reason);
        burst_note(c, m, reason, detail);
        log_debug("dead letter", "partition=%" PRId32 " offset=%" PRId64 " reason=%s",
                  m->partition, m->offset, dlq_reason_names[reason]);
        break;
    case DECODE_RETRY: {
        /* The schema source cannot answer: nothing is dead-lettered; this
         * partition waits and reads the message again. */
        /* The registry logs its own state changes once; this is per retry. */
        log_debug("schema source unreachable, pausing partition", "partition=%" PRId32
                 " err=\"%s\"", m->partition, detail);
        seek_and(c, m->partition, resume, 1);
        p->retry_at = clock_ms() + 1000;
        return;
    }
    }
    engine_consumed(c->engine, &p->ep, m->offset + 1, now);
}

/* True when librdkafka still counts partition id as assigned to us. */
static bool still_assigned(consumer_t *c, int32_t id) {
    rd_kafka_topic_partition_list_t *l = NULL;
    bool mine = false;
    if (rd_kafka_assignment_lost(c->rk)) return false;
    if (rd_kafka_assignment(c->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) {
        mine = rd_kafka_topic_partition_list_find(l, c->conf->topic, id) != NULL;
        rd_kafka_topic_partition_list_destroy(l);
    }
    return mine;
}

static void reclaim_fenced_parts(consumer_t *c, int64_t now) {
    for (int32_t i = 0; i < c->parts_cap; i++) {
        part_t *p = c->parts[i];
        if (!p || !p->fenced_at || now - p->fenced_at < RECLAIM_AFTER_MS) continue;
        if (!still_assigned(c, i)) {
            p->fenced_at = now; /* a rebalance will take it away; look again later */
            continue;
        }
        log_info("claiming fenced partition again", "partition=%" PRId32, i);
        int64_t off = part_claim(c, i);
        if (c->parts[i])
            seek_and(c, i, off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING, engine_paused(c->engine) ? 0 : -1);
    }
}

/* librdkafka 2.0 stops fetching a partition while the prefetch queue is
 * over queued.min.messages or queued.max.messages.kbytes, and its broker
 * thread looks again only after a fixed second (fetch.queue.backoff.ms
 * arrived in 2.1; librdkafka issue #2879).  While a flush holds this thread
 * the queue fills, and the fetchers would then sleep through most of the
 * next second.  So when the queue is empty but the brokers have more for us,
 * each such partition is sought to the offset it is at: the seek wakes its
 * broker thread, and as nothing of it is queued, nothing is fetched twice. */
static void kick_fetchers(consumer_t *c, int64_t now) {
    if (now < c->kick_at) return;
    c->kick_at = now + KICK_MS;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t i = 0; i < c->parts_cap; i++) {
        const part_t *p = c->parts[i];
        /* Before its first message a partition reads from where it was
         * assigned; there is no offset of ours to seek to. */
        if (!p || p->ep.next_offset < 0 || part_lag(c, i, p) == 0) continue;
        if (!l) l = rd_kafka_topic_partition_list_new(16);
        rd_kafka_topic_partition_list_add(l, c->conf->topic, i)->offset = p->ep.next_offset;
    }
    if (!l) return;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0); /* 0: asynchronous */
    if (e) rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
}

static void resume_waiting_parts(consumer_t *c, int64_t now) {
    reclaim_fenced_parts(c, now);
    for (int32_t i = 0; i < c->parts_cap; i++) {
        part_t *p = c->parts[i];
        if (!p || !p->retry_at || now < p->retry_at) continue;
        p->retry_at = 0;
        if (engine_paused(c->engine)) continue; /* resumed with the others */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, c->conf->topic, i);
        rd_kafka_resume_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

consumer_t *consumer_new(const config_t *conf, metrics_t *metrics, char *errstr,
                         size_t errstr_size) {
    consumer_t *c = xcalloc(1, sizeof(*c));
    rd_kafka_conf_t *kc = NULL;
    c->conf = conf;
    c->metrics = metrics;
    c->redis_up = true; /* so that a first failure is logged */
    if (*conf->schema_registry_url) {
        if (registry_url_check(conf->schema_registry_url, errstr, errstr_size) != 0) goto fail;
        c->registry = registry_new(conf->schema_registry_url, conf->schema_registry_user,
                                   conf->schema_registry_password, REGISTRY_TIMEOUT_MS, errstr,
                                   errstr_size);
        if (!c->registry) goto fail;
        if (*conf->schema_registry_ca_file &&
            registry_set_ca_file(c->registry, conf->schema_registry_ca_file, errstr,
                                 errstr_size) != 0)
            goto fail;
    }
    /* The directory first, then the registry (DESIGN.md §2). */
    decoder_conf_t dconf = {.schema_dir = *conf->schema_dir ? conf->schema_dir : NULL,
                            .fetch = c->registry ? registry_fetch : NULL,
                            .fetch_opaque = c->registry,
                            .max_message_bytes = (size_t)conf->max_message_bytes,
                            .max_future_skew_ms = conf->max_future_skew_ms};
    c->dec = decoder_new(&dconf, errstr, errstr_size);
    if (!c->dec) goto fail;
    redis_sink_conf_t sconf = {.url = conf->redis_url,
                               .prefix = conf->prefix,
                               .alerts_maxlen = conf->alerts_maxlen,
                               .timeout_ms = (int)conf->redis_timeout_ms,
                               .tls = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                       conf->redis_tls_key_file, conf->redis_tls_server_name}};
    redis_sink_t *sink = redis_sink_new(&sconf, errstr, errstr_size);
    if (!sink) goto fail;
    engine_conf_t econf = {.topic = conf->topic,
                           .flush_ms = conf->flush_ms,
                           .flush_live_ms = conf->flush_live_ms,
                           .flush_backlog_ms = conf->flush_backlog_ms,
                           .flush_max_customers = (size_t)conf->flush_max_customers,
                           .flush_backlog_bytes = (size_t)conf->flush_backlog_mb << 20,
                           /* A drain on SIGTERM or revocation has this long. */
                           .drain_ms = conf->shutdown_timeout_ms,
                           .sink_timeout_ms = (int)conf->redis_timeout_ms};
    engine_driver_t driver = {.opaque = c,
                              .fill = on_fill,
                              .changes = changes_pending,
                              .backlog = lag_total,
                              .prepare = dead_letters_safe,
                              .pause = parts_pause,
                              .fenced = on_fenced,
                              .commit = commit_offsets,
                              .sink_state = redis_state,
                              .flushed = on_flushed,
                              .heartbeat = on_heartbeat,
                              .stage = on_stage};
    c->engine = engine_new(&econf, redis_sink_as_sink(sink), &driver, errstr, errstr_size);
    if (!c->engine) goto fail; /* the engine freed the sink */
    c->dlq = dlq_new(conf, config_dlq_topic(conf), errstr, errstr_size);
    if (!c->dlq) goto fail;

    kc = rd_kafka_conf_new();
    const char *defaults[][2] = {{"bootstrap.servers", conf->brokers},
                                 {"group.id", conf->group},
                                 {"client.id", "rapport"},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"auto.offset.reset", "earliest"},
                                 {"enable.partition.eof", "false"},
                                 /* 16 MB of prefetch is plenty to keep the loop fed;
                                  * librdkafka's 64 MB default mostly costs memory. */
                                 {"queued.max.messages.kbytes", "16384"}};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], errstr, errstr_size)) goto fail;
    for (size_t i = 0; i < conf->kafka_count; i++)
        if (rd_kafka_conf_set(kc, conf->kafka[i].key, conf->kafka[i].value, errstr, errstr_size))
            goto fail;
    kafka_log_install(kc, 0);
    rd_kafka_conf_set_rebalance_cb(kc, on_rebalance);
    rd_kafka_conf_set_opaque(kc, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!c->rk) goto fail;
    kc = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(c->rk);
    return c;
fail:
    if (kc) rd_kafka_conf_destroy(kc);
    consumer_free(c);
    return NULL;
}

int consumer_run(consumer_t *c, volatile sig_atomic_t *stop) {
    c->stop = stop;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, c->conf->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        log_error("subscribe failed", "topic=%s err=\"%s\"", c->conf->topic, rd_kafka_err2str(err));
        return -1;
    }
    engine_ping(c->engine);
    log_info("consuming", "topic=%s group=%s brokers=%s", c->conf->topic, c->conf->group,
             c->conf->brokers);

    /* One clock read per turn, after the poll: it dates the message polled
     * (the batch clock, the wait histograms), the engine's check and the
     * next turn's housekeeping and poll timeout. */
    int64_t now = clock_ms(), last = -1;
    while (!*stop) {
        /* Housekeeping at most once a millisecond: at full speed the loop
         * turns for every message. */
        if (now != last) {
            last = now;
            metrics_heartbeat(c->metrics, now);
            if (now >= c->tick_at) {
                tick(c, now);
                c->tick_at = now + TICK_MS;
            }
            /* The flush under way: what the socket takes, what has come. */
            engine_service(c->engine, now);
            resume_waiting_parts(c, now);
            dlq_sync(c->dlq, 0); /* serves the dead-letter delivery reports */
        }
        rd_kafka_message_t *m =
            c->next ? c->next
                    : rd_kafka_consumer_poll(c->rk, engine_poll_timeout(c->engine, now));
        c->next = NULL;
        now = clock_ms();
        if (m) {
            c->polled++;
            poll_ahead(c);
            handle_message(c, m, now);
            rd_kafka_message_destroy(m);
        } else {
            last = -1; /* idle: housekeeping on the next turn */
            if (!engine_paused(c->engine)) kick_fetchers(c, now);
        }
        engine_check(c->engine, now);
    }

    /* Polled ahead but not handled: its offset is not stored, so it is
     * read again by whoever consumes the partition next. */
    if (c->next) rd_kafka_message_destroy(c->next);
    c->next = NULL;
    metrics_stopping(c->metrics);
    log_info("stopping: writing the batch in hand", NULL);
    if (engine_drain(c->engine, clock_ms() + c->conf->shutdown_timeout_ms) != 0)
        log_warn("last batch not written; it will be replayed from Redis's offset", NULL);
    err = rd_kafka_consumer_close(c->rk);
    if (err) log_warn("leaving the group failed", "err=\"%s\"", rd_kafka_err2str(err));
    log_info("stopped", NULL);
    return 0;
}

void consumer_free(consumer_t *c) {
    if (!c) return;
    if (c->next) rd_kafka_message_destroy(c->next);
    if (c->rk) rd_kafka_destroy(c->rk);
    parts_drop_all(c);
    free(c->parts);
    engine_free(c->engine); /* and the sink */
    dlq_free(c->dlq);
    decoder_free(c->dec);
    registry_free(c->registry);
    free(c);
}
