/*
 * consumer.c — the main loop of `rapport run`.
 *
 * Owns the librdkafka consumer, the dead-letter producer, the decoder, the
 * Redis sink and one window per assigned partition.  Everything runs on
 * the thread that calls consumer_run(), rebalance callbacks included.
 *
 * The order that makes the Redis effect exactly-once (SPEC §6):
 *   1. poll a message; skip it if its offset is below the partition's
 *      next offset (a repeat after a seek or a rebalance);
 *   2. decode, validate, and either dead-letter it or apply it to the
 *      partition's window; the partition's next offset moves past it;
 *   3. every flush_ms (longer while behind, see batch_due()): wait until
 *      every dead-letter copy is acknowledged, then start writing all
 *      partitions' changes, alerts, watermarks and next offsets to Redis
 *      in fenced scripts, one per chunk of partitions (sinks/redis.c).  The
 *      requests are built at once and the windows committed, so consuming
 *      goes on while Redis works; one flush is under way at a time;
 *   4. only when Redis has answered, commit the same offsets to Kafka, for
 *      lag tools.
 * A crash anywhere loses only work that Redis never saw, and the next
 * owner starts from the offset Redis holds, with the state Redis holds.
 *
 * When Redis (or the dead-letter topic) cannot be written, every assigned
 * partition is paused (the loop keeps polling, so the group membership
 * stays), the flush is retried with exponential backoff, and consumption
 * resumes after the first successful flush.  Memory stays bounded by what
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

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "consumer/dlq.h"
#include "consumer/kafka_log.h"
#include "consumer/registry.h"
#include "sinks/redis.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
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
    int32_t id;
    window_t *w;
    int64_t epoch;          /* our fencing epoch for this partition */
    int64_t next_offset;    /* next message to process; -1 before the first */
    int64_t stored_offset;  /* the next offset Redis holds; -1 none */
    bool pending;           /* consumed since the last successful flush */
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
    config_t *conf;
    rd_kafka_t *rk;
    dlq_t *dlq;
    registry_t *registry;   /* NULL without schema_registry_url; used by dec */
    decoder_t *dec;
    redis_sink_t *sink;
    part_t **parts;         /* indexed by partition id; NULL: not ours */
    int32_t parts_cap;
    int64_t flush_deadline; /* monotonic ms of the next due flush; 0: nothing pending */
    int64_t batch_started;  /* monotonic ms of the batch's first message */
    uint64_t batch_events;  /* messages processed into the batch */
    uint64_t checked_events; /* batch_events at the last look at the lag */
    bool batch_ready;       /* due, waiting for the flush under way */
    double flight_started;  /* monotonic s when the flush under way began */
    bool flight_failed;     /* the flush under way must be sent again */
    bool sink_down;         /* the last flush failed: partitions are paused */
    int64_t retry_at;       /* next flush attempt while sink_down */
    int backoff_ms;
    volatile sig_atomic_t *stop;
    metrics_t *metrics;     /* borrowed: read by the HTTP thread */
    bool redis_up;          /* the last Redis round trip succeeded (logged on change) */
    int64_t redis_at;       /* monotonic ms of the last Redis round trip */
    int64_t tick_at;        /* next housekeeping */
    int64_t kick_at;        /* earliest next kick_fetchers() */
    dlq_burst_t burst;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------ */
/* Partitions                                                          */

static part_t *part_get(const consumer_t *c, int32_t id) {
    return (id >= 0 && id < c->parts_cap) ? c->parts[id] : NULL;
}

static void part_drop(consumer_t *c, int32_t id) {
    part_t *p = part_get(c, id);
    if (!p) return;
    window_free(p->w);
    free(p);
    c->parts[id] = NULL;
}

static void parts_drop_all(consumer_t *c) {
    for (int32_t i = 0; i < c->parts_cap; i++) part_drop(c, i);
}

/* Records whether Redis answered (rapport_redis_up, /readyz) and logs
 * only the changes. */
static void redis_state(consumer_t *c, bool up, const char *err) {
    char q[600];
    c->redis_at = now_ms();
    metrics_redis(c->metrics, up, err);
    if (up == c->redis_up) return;
    c->redis_up = up;
    if (up)
        log_info("redis reachable again", NULL);
    else
        log_warn("redis unreachable", "err=%s", log_quote(err ? err : "", q, sizeof(q)));
}

/* Publishes each assigned partition's watermark and lag, and the number
 * of customers tracked.  The high watermark comes from librdkafka's cache,
 * which every fetch response updates: no request to the broker. */
static void publish_partitions(consumer_t *c) {
    metrics_partition_t *mp = calloc((size_t)c->parts_cap + 1, sizeof(*mp));
    if (!mp) abort();
    size_t n = 0;
    uint64_t customers = 0;
    for (int32_t i = 0; i < c->parts_cap; i++) {
        const part_t *p = c->parts[i];
        if (!p) continue;
        /* Where reading goes on: after what was processed, or for a fenced
         * partition from what Redis holds; -1: from the earliest. */
        int64_t pos = p->fenced_at ? p->stored_offset : p->next_offset;
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
 * schema source, which resume on their own timer). */
static void parts_pause(consumer_t *c, bool pause) {
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
    p->pending = false;
    p->fenced_at = now_ms();
    seek_and(c, id, p->stored_offset >= 0 ? p->stored_offset : RD_KAFKA_OFFSET_BEGINNING, 1);
}

/* Claims the partition in Redis and loads its state, retrying while Redis
 * is unreachable.  Returns the offset to start from. */
static int64_t part_claim(consumer_t *c, int32_t id) {
    char err[512];
    bool logged = false;
    int backoff = BACKOFF_MIN_MS;
    if (id >= c->parts_cap) {
        int32_t cap = id + 16;
        part_t **np = realloc(c->parts, (size_t)cap * sizeof(*np));
        if (!np) abort();
        memset(np + c->parts_cap, 0, (size_t)(cap - c->parts_cap) * sizeof(*np));
        c->parts = np;
        c->parts_cap = cap;
    }
    part_drop(c, id);
    while (!*c->stop) {
        metrics_heartbeat(c->metrics, now_ms());
        part_t *p = calloc(1, sizeof(*p));
        if (!p) abort();
        p->id = id;
        p->w = window_new(&c->conf->score, id, err, sizeof(err));
        if (!p->w) abort(); /* params were validated at start-up */
        int64_t epoch, offset;
        sink_result_t r =
            redis_sink_claim(c->sink, c->conf->topic, id, p->w, &epoch, &offset, err, sizeof(err));
        if (r == SINK_OK) {
            p->epoch = epoch;
            p->next_offset = offset;
            p->stored_offset = offset;
            c->parts[id] = p;
            redis_state(c, true, NULL);
            log_info("partition claimed", "topic=%s partition=%" PRId32 " epoch=%" PRId64
                     " offset=%" PRId64 " customers=%zu watermark=%" PRId64,
                     c->conf->topic, id, epoch, offset, window_customer_count(p->w),
                     window_watermark(p->w));
            return offset;
        }
        window_free(p->w);
        free(p);
        if (!logged)
            log_warn("cannot load partition state from Redis, retrying",
                     "partition=%" PRId32 " err=\"%s\"", id, err);
        logged = true;
        redis_state(c, false, err);
        sleep_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Flush                                                               */

static void sink_failed(consumer_t *c, const char *what, const char *err) {
    if (!c->sink_down) {
        log_warn("cannot write, pausing partitions and retrying", "what=%s err=\"%s\"", what, err);
        parts_pause(c, true);
        c->sink_down = true;
        c->backoff_ms = BACKOFF_MIN_MS;
    } else {
        c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
    if (strcmp(what, "redis") == 0) redis_state(c, false, err);
    c->retry_at = now_ms() + c->backoff_ms;
}

static size_t changes_pending(const consumer_t *c) {
    size_t n = 0;
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i] && c->parts[i]->w) n += window_change_count(c->parts[i]->w);
    return n;
}

static bool any_pending(const consumer_t *c) {
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i] && c->parts[i]->pending) return true;
    return false;
}

static void batch_reset(consumer_t *c) {
    c->flush_deadline = 0;
    c->batch_events = 0;
    c->checked_events = 0;
    c->batch_ready = false;
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
    int64_t pos = p->next_offset >= 0 ? p->next_offset : (lo > 0 ? lo : 0);
    return hi > pos ? (uint64_t)(hi - pos) : 0;
}

static uint64_t lag_total(consumer_t *c) {
    uint64_t lag = 0;
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i]) lag += part_lag(c, i, c->parts[i]);
    return lag;
}

/* Whether the batch is due.  A batch is written flush_ms after its first
 * event, unless rapport is behind: more events wait in Kafka than it took
 * in during the last flush_ms.  Then the batch grows, looked at again every
 * flush_ms, until rapport has caught up or flush_backlog_ms have passed, so
 * that a customer's many changes while catching up cost one write, not one
 * per flush_ms (docs/DESIGN.md §1).  flush_max_customers bounds it always. */
static bool batch_due(consumer_t *c, int64_t now) {
    if (!c->flush_deadline) return false;
    /* Counted every 64 events: the count walks every partition. */
    if ((c->batch_events & 63) == 0 &&
        changes_pending(c) >= (size_t)c->conf->flush_max_customers)
        return true;
    if (now < c->flush_deadline) return false;
    uint64_t took = c->batch_events - c->checked_events;
    c->checked_events = c->batch_events;
    if (now - c->batch_started + c->conf->flush_ms > c->conf->flush_backlog_ms ||
        lag_total(c) <= took)
        return true;
    c->flush_deadline = now + c->conf->flush_ms;
    return false;
}

/* Starts writing every pending partition (redis_sink_flush_begin): the
 * requests are built, so the windows are committed at once and go on
 * taking events while Redis works.  Returns 0, or -1 when nothing could be
 * started (the windows keep their changes; retried after a backoff). */
static int flush_start(consumer_t *c) {
    char err[512];
    size_t n = 0;
    for (int32_t i = 0; i < c->parts_cap; i++)
        if (c->parts[i] && c->parts[i]->pending) n++;
    batch_reset(c);
    if (n == 0) return 0;
    /* A dead letter must be safe in Kafka before the offset past it is. */
    if (dlq_sync(c->dlq, 1000) != 0) {
        sink_failed(c, "dead-letter", "copies not yet acknowledged by Kafka");
        return -1;
    }
    sink_partition_t *sp = calloc(n, sizeof(*sp));
    if (!sp) abort();
    n = 0;
    for (int32_t i = 0; i < c->parts_cap; i++) {
        part_t *p = c->parts[i];
        if (!p || !p->pending) continue;
        sp[n++] = (sink_partition_t){.topic = c->conf->topic,
                                     .partition = i,
                                     .epoch = p->epoch,
                                     .prev_offset = p->stored_offset,
                                     .next_offset = p->next_offset,
                                     .w = p->w};
    }
    sink_result_t r = redis_sink_flush_begin(c->sink, sp, n, err, sizeof(err));
    if (r != SINK_OK) {
        free(sp);
        sink_failed(c, "redis", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        part_t *p = part_get(c, sp[i].partition);
        size_t na;
        const alert_t *a = window_alerts(p->w, &na);
        for (size_t k = 0; k < na; k++) metrics_alert(c->metrics, a[k].type);
        window_commit(p->w);
        p->pending = false;
    }
    free(sp);
    c->flight_started = now_s();
    c->flight_failed = false;
    return 0;
}

/* The flush is answered: each partition is written, fenced, or refused
 * with a fenced one (nothing of it written, and its window already
 * committed: it is loaded again from Redis at once). */
static void flight_done(consumer_t *c) {
    size_t n;
    const sink_partition_t *sp = redis_sink_flush_parts(c->sink, &n);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    metrics_flush_observe(c->metrics, now_s() - c->flight_started);
    for (size_t i = 0; i < n; i++) {
        part_t *p = part_get(c, sp[i].partition);
        if (!p || p->epoch != sp[i].epoch || p->fenced_at) continue; /* no longer this claim */
        if (sp[i].written) {
            p->stored_offset = sp[i].next_offset;
            rd_kafka_topic_partition_list_add(l, c->conf->topic, sp[i].partition)->offset =
                sp[i].next_offset;
            continue;
        }
        log_warn(sp[i].fenced ? "partition written by another owner, dropping its state"
                              : "flush refused with a fenced partition, reloading this one",
                 "partition=%" PRId32, sp[i].partition);
        part_fence(c, sp[i].partition);
        if (!sp[i].fenced) p->fenced_at = now_ms() - RECLAIM_AFTER_MS;
    }
    if (l->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 1);
        if (err) log_debug("kafka offset commit not sent", "err=\"%s\"", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
    log_debug("flushed", "partitions=%zu ms=%.0f", n, 1000 * (now_s() - c->flight_started));
    redis_sink_flush_end(c->sink);
    redis_state(c, true, NULL);
}

/* One step of writing: sends and reads for the flush under way (waiting up
 * to wait_ms), sends it again after a failure, or starts the next one when
 * a failure left changes unwritten.  Returns 0 when everything consumed is
 * written, 1 while a flush is under way, -1 after a failure (retried at
 * c->retry_at, with the partitions paused). */
static int flush_step(consumer_t *c, int wait_ms) {
    char err[512];
    if (!redis_sink_flush_active(c->sink) && any_pending(c) && flush_start(c) != 0) return -1;
    if (redis_sink_flush_active(c->sink)) {
        sink_result_t r = SINK_OK;
        if (c->flight_failed) {
            r = redis_sink_flush_retry(c->sink, err, sizeof(err));
            c->flight_failed = r != SINK_OK;
        }
        if (r == SINK_OK) r = redis_sink_flush_wait(c->sink, wait_ms, err, sizeof(err));
        if (r == SINK_PENDING) return 1;
        if (r != SINK_OK) {
            c->flight_failed = true;
            sink_failed(c, "redis", err);
            return -1;
        }
        flight_done(c);
    }
    if (c->sink_down) {
        /* Everything before the pause is written: what was consumed since
         * is written by the next flush as usual. */
        log_info("writes succeed again, resuming partitions", NULL);
        c->sink_down = false;
        c->retry_at = 0;
        parts_pause(c, false);
    }
    return 0;
}

/* Writes everything consumed, retrying until done or the deadline
 * (monotonic ms) passes.  Each wait for Redis is clamped to the time left,
 * so a hung Redis cannot hold the caller past the deadline (SIGTERM must
 * end within 10 s). */
static int flush_until(consumer_t *c, int64_t deadline) {
    int rc = -1;
    for (;;) {
        int64_t now = now_ms();
        metrics_heartbeat(c->metrics, now);
        int64_t left = deadline - now;
        if (left > c->conf->redis_timeout_ms) left = c->conf->redis_timeout_ms;
        if (left < 50) left = 50;
        redis_sink_set_timeout(c->sink, (int)left);
        int st = now >= c->retry_at || !c->sink_down ? flush_step(c, (int)left) : -1;
        if (st == 0) {
            /* A flush just answered may have left newer changes. */
            if (!any_pending(c)) {
                rc = 0;
                break;
            }
            continue;
        }
        now = now_ms();
        if (now >= deadline) break;
        if (st < 0) {
            int64_t wait = c->retry_at - now;
            if (wait > deadline - now) wait = deadline - now;
            if (wait > 0) sleep_ms((int)wait);
        }
    }
    redis_sink_set_timeout(c->sink, (int)c->conf->redis_timeout_ms);
    return rc;
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
        if (c->sink_down) parts_pause(c, true);
        publish_partitions(c);
        log_info("partitions assigned", "count=%d protocol=%s", list->cnt, coop ? "cooperative" : "eager");
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Write what we have before the partitions go; if Redis cannot take
         * it in time, the new owner redoes that work from Redis's offset. */
        /* When stopping, the shutdown flush has just run: if it failed,
         * do not spend the rest of the 10 s on another attempt. */
        int64_t budget = *c->stop ? (c->sink_down ? 0 : 1000) : c->conf->shutdown_timeout_ms;
        if (budget > 0 && flush_until(c, now_ms() + budget) != 0)
            log_warn("revoked partitions could not be flushed; the next owner replays them", NULL);
        for (int i = 0; i < list->cnt; i++) part_drop(c, list->elems[i].partition);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, list);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        c->sink_down = false;
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
    *b = (dlq_burst_t){.active = true, .started = now_ms(), .reported = now_ms(), .total = 1};
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
    /* Not while a flush is under way: a PING would wait for its answers. */
    if (!c->sink_down && !redis_sink_flush_active(c->sink) && now - c->redis_at >= TICK_MS) {
        char err[512] = "";
        bool up = redis_sink_ping(c->sink, err, sizeof(err)) == SINK_OK;
        redis_state(c, up, err);
    }
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

static void handle_message(consumer_t *c, rd_kafka_message_t *m) {
    char detail[512], err[512];
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("kafka", "err=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    part_t *p = part_get(c, m->partition);
    if (!p || p->retry_at || p->fenced_at) return;        /* not ours, or waiting */
    if (p->next_offset >= 0 && m->offset < p->next_offset) return; /* seen */
    /* Where to read again when this message cannot be handled now: the
     * partition's first unprocessed offset, the same for every message
     * fetched before a pause took hold, so repeated seeks cannot skip one. */
    int64_t resume = p->next_offset >= 0 ? p->next_offset : m->offset;
    if (c->sink_down) {
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
    case DECODE_DEAD:
        if (dlq_send(c->dlq, m, reason, detail, err, sizeof(err)) != 0) {
            /* Could not even queue the copy: read this message again later. */
            sink_failed(c, "dead-letter", err);
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
        p->retry_at = now_ms() + 1000;
        return;
    }
    }
    p->next_offset = m->offset + 1;
    p->pending = true;
    c->batch_events++;
    if (!c->flush_deadline) {
        c->batch_started = now_ms();
        c->flush_deadline = c->batch_started + c->conf->flush_ms;
    }
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
            seek_and(c, i, off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING, c->sink_down ? 0 : -1);
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
        if (!p || p->next_offset < 0 || part_lag(c, i, p) == 0) continue;
        if (!l) l = rd_kafka_topic_partition_list_new(16);
        rd_kafka_topic_partition_list_add(l, c->conf->topic, i)->offset = p->next_offset;
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
        if (c->sink_down) continue; /* resumed with the others */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, c->conf->topic, i);
        rd_kafka_resume_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

consumer_t *consumer_new(config_t *conf, metrics_t *metrics, char *errstr, size_t errstr_size) {
    consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *kc = NULL;
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
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
                               .timeout_ms = (int)conf->redis_timeout_ms};
    c->sink = redis_sink_new(&sconf, errstr, errstr_size);
    if (!c->sink) goto fail;
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
    char perr[512];
    redis_state(c, redis_sink_ping(c->sink, perr, sizeof(perr)) == SINK_OK, perr);
    log_info("consuming", "topic=%s group=%s brokers=%s", c->conf->topic, c->conf->group,
             c->conf->brokers);

    int64_t last = -1;
    while (!*stop) {
        int64_t now = now_ms();
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
            if ((c->sink_down || redis_sink_flush_active(c->sink)) && now >= c->retry_at)
                flush_step(c, 0);
            resume_waiting_parts(c, now);
            dlq_sync(c->dlq, 0); /* serves the dead-letter delivery reports */
        }
        int timeout = 100;
        if (c->sink_down) {
            timeout = 20;
        } else if (redis_sink_flush_active(c->sink)) {
            timeout = 2;
        } else if (c->flush_deadline) {
            int64_t left = c->flush_deadline - now;
            timeout = left <= 0 ? 0 : (left < 100 ? (int)left : 100);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout);
        if (m) {
            handle_message(c, m);
            rd_kafka_message_destroy(m);
        } else {
            last = -1; /* idle: housekeeping on the next turn */
            if (!c->sink_down) kick_fetchers(c, now_ms());
        }
        /* One flush at a time: a batch due while one is under way goes on
         * growing until it is answered, unless it reached
         * flush_max_customers: then this thread waits for Redis. */
        /* The clock read before the poll: a deadline it has not seen yet is
         * seen on the next turn (the poll never waits past it). */
        if (!c->sink_down && (c->batch_ready || (c->batch_ready = batch_due(c, now)))) {
            if (redis_sink_flush_active(c->sink) && (c->batch_events & 63) == 0 &&
                changes_pending(c) >= (size_t)c->conf->flush_max_customers)
                flush_step(c, (int)c->conf->redis_timeout_ms);
            if (!redis_sink_flush_active(c->sink) && !c->sink_down) flush_step(c, 0);
        }
    }

    metrics_stopping(c->metrics);
    log_info("stopping: writing the batch in hand", NULL);
    int rc = 0;
    if (flush_until(c, now_ms() + c->conf->shutdown_timeout_ms) != 0) {
        log_warn("last batch not written; it will be replayed from Redis's offset", NULL);
    }
    err = rd_kafka_consumer_close(c->rk);
    if (err) log_warn("leaving the group failed", "err=\"%s\"", rd_kafka_err2str(err));
    log_info("stopped", NULL);
    return rc;
}

void consumer_free(consumer_t *c) {
    if (!c) return;
    if (c->rk) rd_kafka_destroy(c->rk);
    parts_drop_all(c);
    free(c->parts);
    dlq_free(c->dlq);
    redis_sink_free(c->sink);
    decoder_free(c->dec);
    registry_free(c->registry);
    free(c);
}
