/*
 * engine.c — the flush engine (see engine.h and docs/DESIGN.md §1).
 *
 * Owns the sink, the one batch, the table of attached partitions and the
 * flush schedule: the batch clock, whether a batch is due, the write under
 * way, and the back-off after a failure.  A write goes through three
 * states: the batch is filled from the partitions (their windows forget
 * the changes at once), then begun on the sink, then stepped until the
 * sink answers every partition.  When begin or a step fails, the batch is
 * kept as it is and sent again after the back-off; the partitions are
 * paused meanwhile, so nothing new arrives that the retried batch would
 * miss.  A batch is only filled again once the previous one is answered,
 * so the sink sees each partition's offsets in order.
 *
 * Runs on the consumer's main loop thread, which also runs the rebalance
 * callbacks that call engine_claim() and engine_detach().
 */
#include "batch/engine.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* The sink is pinged when nothing talked to it for this long. */
#define PING_IDLE_MS 1000
/* Bytes one changed customer takes to write (its part of the batch and of
 * the sink's requests) until a batch of CHANGE_BYTES_SAMPLE or more
 * customers has been measured: 650-800 B of batch and about as much of
 * requests per customer, alerts included, measured on the benchmark's
 * catch-up (5 to 10 events per customer). */
#define CHANGE_BYTES_FIRST 1600.0
#define CHANGE_BYTES_SAMPLE 1000
/* The sink's requests take about as many bytes as the batch they are
 * built from (RESP of the same strings and numbers; 0.85-1.0 measured). */
#define REQUEST_BYTES_PER_BATCH_BYTE 1.0
/* Redis time to write one changed customer until a write of
 * CHANGE_BYTES_SAMPLE or more customers has been timed: 41 µs measured on
 * the benchmark machine, a shared Redis under load (4.1 s for 100 000
 * customers with 7.7 events each); a quiet Redis is faster. */
#define WRITE_US_FIRST 40.0
/* Arrival times are kept per millisecond for this long of a batch's life;
 * later arrivals count as arriving at its end. */
#define ARRIVALS_MAX_MS 600000

struct engine {
    char *topic;
    int64_t flush_ms, flush_live_ms, flush_backlog_ms;
    int64_t live_wait_ms;     /* a new batch's first look: flush_live_ms, or twice the
                               * last write's time, at most flush_ms */
    size_t flush_max_customers;
    size_t flush_backlog_bytes;
    double change_bytes;      /* estimated bytes to write one changed customer */
    int64_t drain_ms;
    double write_us;          /* estimated sink time to write one changed customer */
    int sink_timeout_ms;
    sink_t sink;
    engine_driver_t d;

    engine_part_t **parts;    /* attached, indexed by partition id */
    uint64_t *part_events;    /* messages of the batch per partition id (stage callback) */
    int32_t parts_cap;

    batch_t *batch;
    bool held;                /* the batch is filled and not yet answered */
    double flight_started;    /* monotonic s when the write began */
    int64_t filled_at;        /* monotonic ms the held batch was filled */
    uint64_t held_events;     /* messages in the held batch */
    size_t held_customers;    /* changed customers in it */
    uint64_t *held_counts;    /* messages per partition of the held batch, in batch
                               * order, until the write stage is reported for them */
    size_t held_counts_cap;

    int64_t flush_deadline;   /* monotonic ms the batch is due; 0: nothing consumed */
    int64_t batch_started;    /* monotonic ms of the batch's first message */
    uint64_t batch_events;    /* messages processed into the batch */
    uint64_t checked_events;  /* batch_events at the last look at the backlog */
    int64_t checked_at;       /* monotonic ms of that look (or of the first message) */
    bool batch_ready;         /* due, waiting for the write under way */
    int64_t due_at;           /* monotonic ms the batch was found due */
    /* Messages of the batch by the millisecond they were polled, counted
     * from batch_started: where the stage callback's times come from. */
    uint32_t *arrivals;
    size_t arrivals_cap, arrivals_n;

    bool paused;              /* a write failed: partitions paused until one lands */
    int64_t retry_at;         /* next attempt while paused */
    int backoff_ms;
    int64_t sink_at;          /* monotonic ms of the last sink round trip */
};

engine_t *engine_new(const engine_conf_t *conf, sink_t sink, const engine_driver_t *driver,
                     char *errstr, size_t errstr_size) {
    if (!conf->topic || conf->flush_ms <= 0 || conf->sink_timeout_ms <= 0 ||
        (!conf->flush_max_customers && !conf->flush_backlog_bytes)) {
        snprintf(errstr, errstr_size,
                 "flush engine: topic, flush_ms, the sink timeout and a bound on a batch "
                 "(flush_max_customers or flush_backlog_bytes) must be set");
        sink.ops->free(sink.self);
        return NULL;
    }
    engine_t *e = xcalloc(1, sizeof(*e));
    e->topic = xstrdup(conf->topic);
    e->flush_ms = conf->flush_ms;
    e->flush_live_ms = conf->flush_live_ms > 0 && conf->flush_live_ms < conf->flush_ms
                           ? conf->flush_live_ms
                           : conf->flush_ms;
    e->live_wait_ms = e->flush_live_ms;
    e->flush_backlog_ms = conf->flush_backlog_ms;
    e->flush_max_customers = conf->flush_max_customers;
    e->flush_backlog_bytes = conf->flush_backlog_bytes;
    e->change_bytes = CHANGE_BYTES_FIRST;
    e->drain_ms = conf->drain_ms;
    e->write_us = WRITE_US_FIRST;
    e->sink_timeout_ms = conf->sink_timeout_ms;
    e->sink = sink;
    e->d = *driver;
    e->batch = batch_new();
    return e;
}

void engine_free(engine_t *e) {
    if (!e) return;
    e->sink.ops->free(e->sink.self);
    batch_free(e->batch);
    free(e->arrivals);
    free(e->held_counts);
    free(e->part_events);
    free(e->parts);
    free(e->topic);
    free(e);
}

/* ------------------------------------------------------------------ */
/* Partitions                                                          */

static engine_part_t *part_get(const engine_t *e, int32_t id) {
    return (id >= 0 && id < e->parts_cap) ? e->parts[id] : NULL;
}

static bool any_pending(const engine_t *e) {
    for (int32_t i = 0; i < e->parts_cap; i++)
        if (e->parts[i] && e->parts[i]->pending) return true;
    return false;
}

/* The sink answered or not: reported to the consumer (metrics, log). */
static void sink_state(engine_t *e, bool up, const char *err) {
    e->sink_at = clock_ms();
    e->d.sink_state(e->d.opaque, up, err);
}

sink_result_t engine_claim(engine_t *e, engine_part_t *p, const sink_loader_t *loader,
                           char *errstr, size_t errstr_size) {
    sink_claim_t claim;
    sink_result_t r =
        e->sink.ops->claim(e->sink.self, e->topic, p->id, loader, &claim, errstr, errstr_size);
    sink_state(e, r == SINK_OK, r == SINK_OK ? NULL : errstr);
    if (r != SINK_OK) return r;
    if (p->id >= e->parts_cap) {
        int32_t cap = p->id + 16;
        e->parts = xrealloc(e->parts, (size_t)cap * sizeof(*e->parts));
        memset(e->parts + e->parts_cap, 0, (size_t)(cap - e->parts_cap) * sizeof(*e->parts));
        e->part_events = xrealloc(e->part_events, (size_t)cap * sizeof(*e->part_events));
        memset(e->part_events + e->parts_cap, 0,
               (size_t)(cap - e->parts_cap) * sizeof(*e->part_events));
        e->parts_cap = cap;
    }
    p->epoch = claim.epoch;
    p->stored_offset = p->next_offset = claim.next_offset;
    p->pending = false;
    e->parts[p->id] = p;
    return SINK_OK;
}

void engine_detach(engine_t *e, engine_part_t *p) {
    if (part_get(e, p->id) != p) return;
    e->parts[p->id] = NULL;
    e->part_events[p->id] = 0; /* read again by the next owner or claim */
}

/* One message of the batch polled at `now`, for the stage times. */
static void arrival_note(engine_t *e, int64_t now) {
    int64_t at = now - e->batch_started;
    size_t i = at <= 0 ? 0 : at >= ARRIVALS_MAX_MS ? ARRIVALS_MAX_MS - 1 : (size_t)at;
    if (i >= e->arrivals_cap) {
        size_t cap = e->arrivals_cap ? e->arrivals_cap : 256;
        while (cap <= i) cap *= 2;
        e->arrivals = xrealloc(e->arrivals, cap * sizeof(*e->arrivals));
        memset(e->arrivals + e->arrivals_cap, 0, (cap - e->arrivals_cap) * sizeof(*e->arrivals));
        e->arrivals_cap = cap;
    }
    e->arrivals[i]++;
    if (i >= e->arrivals_n) e->arrivals_n = i + 1;
}

void engine_consumed(engine_t *e, engine_part_t *p, int64_t next_offset, int64_t now) {
    p->next_offset = next_offset;
    p->pending = true;
    e->batch_events++;
    if (!e->flush_deadline) {
        e->batch_started = e->checked_at = now;
        e->flush_deadline = now + e->live_wait_ms;
    }
    if (e->d.stage) {
        arrival_note(e, now);
        e->part_events[p->id]++;
    }
}

/* ------------------------------------------------------------------ */
/* Failures and back-off                                               */

static void failed(engine_t *e, const char *what, const char *err, int64_t now) {
    if (!e->paused) {
        log_warn("cannot write, pausing partitions and retrying", "what=%s err=\"%s\"", what,
                 err);
        e->d.pause(e->d.opaque, true);
        e->paused = true;
        e->backoff_ms = BACKOFF_MIN_MS;
    } else {
        e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
    }
    if (strcmp(what, e->sink.ops->name) == 0) sink_state(e, false, err);
    e->retry_at = now + e->backoff_ms;
}

void engine_fail(engine_t *e, const char *what, const char *err, int64_t now) {
    failed(e, what, err, now);
}

bool engine_paused(const engine_t *e) { return e->paused; }

void engine_unpause(engine_t *e) { e->paused = false; }

/* ------------------------------------------------------------------ */
/* Batches                                                             */

static void batch_clock_reset(engine_t *e) {
    e->flush_deadline = 0;
    e->batch_events = 0;
    e->checked_events = 0;
    e->batch_ready = false;
    e->due_at = 0;
}

/* Reports, when the batch is filled at `now`, how long its messages
 * waited for it to be due and then behind the write before it (a message
 * that came after the batch was due waited only from its arrival). */
static void stages_at_fill(engine_t *e, int64_t now) {
    if (!e->d.stage) return;
    int64_t due = e->due_at ? e->due_at : now; /* a drain fills what is not due yet */
    uint64_t queued_at_due = 0;
    for (size_t i = 0; i < e->arrivals_n; i++) {
        if (!e->arrivals[i]) continue;
        int64_t at = e->batch_started + (int64_t)i;
        if (at < due) {
            e->d.stage(e->d.opaque, ENGINE_STAGE_BATCH, (double)(due - at) / 1000, e->arrivals[i]);
            queued_at_due += e->arrivals[i];
        } else {
            e->d.stage(e->d.opaque, ENGINE_STAGE_BATCH, 0, e->arrivals[i]);
            e->d.stage(e->d.opaque, ENGINE_STAGE_QUEUED, (double)(now - at) / 1000, e->arrivals[i]);
        }
        e->arrivals[i] = 0;
    }
    e->arrivals_n = 0;
    if (queued_at_due)
        e->d.stage(e->d.opaque, ENGINE_STAGE_QUEUED, (double)(now - due) / 1000, queued_at_due);
}

/* How many changed customers make a batch full: flush_max_customers (0:
 * none), or fewer when flush_backlog_bytes would not hold their write, or
 * when the sink could not write them within drain_ms (a drain on shutdown
 * or rebalance must be able to write the batch in hand). */
static size_t change_limit(const engine_t *e) {
    double limit = e->flush_max_customers ? (double)e->flush_max_customers : (double)SIZE_MAX;
    if (e->flush_backlog_bytes && (double)e->flush_backlog_bytes / e->change_bytes < limit)
        limit = (double)e->flush_backlog_bytes / e->change_bytes;
    if (e->drain_ms > 0 && (double)e->drain_ms * 1000 / e->write_us < limit)
        limit = (double)e->drain_ms * 1000 / e->write_us;
    return limit < 1 ? 1 : (size_t)limit;
}

/* Counted every 64 events: the count walks every partition. */
static bool batch_full(const engine_t *e) {
    return (e->batch_events & 63) == 0 && e->d.changes(e->d.opaque) >= change_limit(e);
}

/* Whether the batch is due.  A batch is due flush_live_ms after its first
 * event, or twice as long as the last write took, at most flush_ms
 * (written then, or as soon as the write under way is answered),
 * unless the input is behind: more events wait than it takes in during
 * flush_ms at the pace of the last look.  Then the batch grows, looked at
 * again every flush_ms, until the input has caught up (or
 * flush_backlog_ms, when set, have passed), so that while catching up
 * each customer costs about one write for the whole backlog, not one per
 * flush_ms (docs/DESIGN.md §1).  A full batch (change_limit()) is due at
 * once, whatever the clock: that bounds memory and the time a drain
 * needs. */
static bool batch_due(engine_t *e, int64_t now) {
    if (!e->flush_deadline) return false;
    if (batch_full(e)) return true;
    if (now < e->flush_deadline) return false;
    uint64_t took = e->batch_events - e->checked_events;
    int64_t span = now - e->checked_at > 0 ? now - e->checked_at : 1;
    e->checked_events = e->batch_events;
    e->checked_at = now;
    bool too_old = e->flush_backlog_ms > 0 &&
                   now - e->batch_started + e->flush_ms > e->flush_backlog_ms;
    if (too_old || (double)e->d.backlog(e->d.opaque) <= (double)took * e->flush_ms / span)
        return true;
    e->flush_deadline = now + e->flush_ms;
    return false;
}

/* Fills the batch from every pending partition.  Returns 0 (also when
 * nothing is pending: nothing is held then), or -1 when the consumer's
 * prepare() refused (retried after a back-off). */
static int batch_fill(engine_t *e) {
    char err[512];
    size_t n = 0;
    for (int32_t i = 0; i < e->parts_cap; i++)
        if (e->parts[i] && e->parts[i]->pending) n++;
    int64_t now = clock_ms();
    uint64_t events = e->batch_events, age = e->flush_deadline ? now - e->batch_started : 0;
    stages_at_fill(e, now);
    batch_clock_reset(e);
    if (n == 0) return 0;
    /* A dead letter must be safe in Kafka before the offset past it is. */
    if (e->d.prepare(e->d.opaque, err, sizeof(err)) != 0) {
        failed(e, "dead-letter", err, clock_ms());
        return -1;
    }
    batch_reset(e->batch);
    for (int32_t i = 0; i < e->parts_cap; i++) {
        engine_part_t *p = e->parts[i];
        if (!p || !p->pending) continue;
        batch_partition_t *bp = batch_add_partition(e->batch, e->topic, p->id, p->epoch,
                                                    p->stored_offset, p->next_offset);
        e->d.fill(e->d.opaque, p, e->batch, bp);
        p->pending = false;
    }
    /* Each partition's messages, for its write stage. */
    size_t nb = batch_partition_count(e->batch);
    if (e->d.stage) {
        if (nb > e->held_counts_cap) {
            e->held_counts = xrealloc(e->held_counts, nb * sizeof(*e->held_counts));
            e->held_counts_cap = nb;
        }
        for (size_t i = 0; i < nb; i++) {
            int32_t id = batch_partition(e->batch, i)->partition;
            e->held_counts[i] = e->part_events[id];
            e->part_events[id] = 0;
        }
    }
    e->held = true;
    e->filled_at = now;
    e->held_events = events;
    /* What this batch took per changed customer, as the next batches'
     * estimate (their changes are only counted until they are filled). */
    size_t customers = 0;
    e->held_customers = 0;
    for (size_t i = 0; i < batch_partition_count(e->batch); i++)
        customers += batch_partition(e->batch, i)->ncustomers;
    size_t bytes = batch_bytes(e->batch);
    if (customers >= CHANGE_BYTES_SAMPLE)
        e->change_bytes = (double)bytes * (1 + REQUEST_BYTES_PER_BATCH_BYTE) / (double)customers;
    e->held_customers = customers;
    log_debug("batch filled", "partitions=%zu events=%" PRIu64 " customers=%zu bytes=%zu "
              "age_ms=%" PRIu64 " limit=%zu", n, events, customers, bytes, age, change_limit(e));
    return 0;
}

/* Reports the write stage of the messages of each partition the sink has
 * answered since the last look: a write of several chunks is readable in
 * Redis chunk by chunk. */
static void stages_answered(engine_t *e) {
    if (!e->d.stage) return;
    int64_t now = clock_ms();
    for (size_t i = 0; i < batch_partition_count(e->batch); i++) {
        if (!e->held_counts[i] || batch_partition(e->batch, i)->result == BATCH_PENDING) continue;
        e->d.stage(e->d.opaque, ENGINE_STAGE_WRITE, (double)(now - e->filled_at) / 1000,
                   e->held_counts[i]);
        e->held_counts[i] = 0;
    }
}

/* The write is answered: each partition is written, fenced, or refused
 * with a fenced one (nothing of it written, and its changes already gone
 * from the consumer: it is loaded again from the sink at once). */
static void batch_done(engine_t *e) {
    size_t n = batch_partition_count(e->batch), nc = 0;
    engine_offset_t *commit = xmalloc(n * sizeof(*commit));
    double took = clock_s() - e->flight_started;
    e->d.flushed(e->d.opaque, n, took);
    stages_answered(e);
    /* From the fill on, as a drain would take it. */
    int64_t wrote_ms = clock_ms() - e->filled_at;
    if (e->held_customers >= CHANGE_BYTES_SAMPLE)
        e->write_us = (double)wrote_ms * 1000 / (double)e->held_customers;
    /* Writes at most half the time: each flush costs Redis a fixed amount
     * per partition, which small batches near saturation would multiply. */
    e->live_wait_ms = 2 * wrote_ms < e->flush_live_ms ? e->flush_live_ms
                      : 2 * wrote_ms > e->flush_ms  ? e->flush_ms
                                                    : 2 * wrote_ms;
    for (size_t i = 0; i < n; i++) {
        const batch_partition_t *bp = batch_partition(e->batch, i);
        engine_part_t *p = part_get(e, bp->partition);
        if (!p || p->epoch != bp->epoch) continue; /* no longer this claim */
        if (bp->result == BATCH_WRITTEN) {
            p->stored_offset = bp->next_offset;
            commit[nc++] = (engine_offset_t){bp->partition, bp->next_offset};
            continue;
        }
        bool by_other = bp->result == BATCH_FENCED;
        log_warn(by_other ? "partition written by another owner, dropping its state"
                          : "flush refused with a fenced partition, reloading this one",
                 "partition=%" PRId32, bp->partition);
        p->pending = false;
        engine_detach(e, p);
        e->d.fenced(e->d.opaque, p, by_other);
    }
    if (nc) e->d.commit(e->d.opaque, commit, nc);
    free(commit);
    log_debug("flushed", "partitions=%zu events=%" PRIu64 " customers=%zu ms=%.0f "
              "us_per_customer=%.1f", n, e->held_events, e->held_customers, 1000 * took,
              e->write_us);
    e->held = false;
    batch_reset(e->batch);
    /* After a catch-up batch: its memory back to the kernel (alloc.h). */
    if (alloc_trim(ALLOC_TRIM_BYTES))
        log_debug("freed memory handed back to the kernel", "after=batch");
    sink_state(e, true, NULL);
}

static bool busy(const engine_t *e) { return e->sink.ops->busy(e->sink.self); }

/* One step of writing: fills a batch when none is held and something is
 * pending, begins it on the sink, sends and reads for it (waiting up to
 * wait_ms).  Returns 0 when everything consumed is written, 1 while a
 * write is under way, -1 after a failure (retried at e->retry_at, with
 * the partitions paused). */
static int flush_step(engine_t *e, int wait_ms) {
    char err[512];
    if (!e->held && any_pending(e) && batch_fill(e) != 0) return -1;
    if (e->held) {
        if (!busy(e)) {
            sink_result_t r = e->sink.ops->begin(e->sink.self, e->batch, err, sizeof(err));
            if (r != SINK_OK) {
                failed(e, e->sink.ops->name, err, clock_ms());
                return -1;
            }
            e->flight_started = clock_s();
        }
        sink_result_t r = e->sink.ops->step(e->sink.self, wait_ms, err, sizeof(err));
        if (r == SINK_PENDING) {
            stages_answered(e);
            return 1;
        }
        if (r != SINK_OK) {
            failed(e, e->sink.ops->name, err, clock_ms());
            return -1;
        }
        batch_done(e);
    }
    if (e->paused) {
        /* Everything before the pause is written: what was consumed since
         * is written by the next batch as usual. */
        log_info("writes succeed again, resuming partitions", NULL);
        e->paused = false;
        e->retry_at = 0;
        e->d.pause(e->d.opaque, false);
    }
    return 0;
}

void engine_service(engine_t *e, int64_t now) {
    if ((e->paused || e->held) && now >= e->retry_at) flush_step(e, 0);
}

void engine_check(engine_t *e, int64_t now) {
    /* One write at a time: a batch due while one is under way goes on
     * growing until it is answered, unless it is full (change_limit()):
     * then this thread waits for the sink. */
    if (e->paused) return;
    if (!e->batch_ready) {
        if (!batch_due(e, now)) return;
        e->batch_ready = true;
        e->due_at = now;
    }
    if (e->held && batch_full(e)) flush_step(e, e->sink_timeout_ms);
    if (!e->held && !e->paused) flush_step(e, 0);
}

int engine_poll_timeout(const engine_t *e, int64_t now) {
    if (e->paused) return 20;
    if (e->held) return 2;
    if (!e->flush_deadline) return 100;
    int64_t left = e->flush_deadline - now;
    return left <= 0 ? 0 : (left < 100 ? (int)left : 100);
}

void engine_ping(engine_t *e) {
    char err[512] = "";
    bool up = e->sink.ops->ping(e->sink.self, err, sizeof(err)) == SINK_OK;
    sink_state(e, up, err);
}

void engine_tick(engine_t *e, int64_t now) {
    /* Not while a write is under way: a ping would wait for its answers. */
    if (!e->paused && !e->held && now - e->sink_at >= PING_IDLE_MS) engine_ping(e);
}

int engine_drain(engine_t *e, int64_t deadline) {
    int rc = -1;
    for (;;) {
        int64_t now = clock_ms();
        e->d.heartbeat(e->d.opaque, now);
        int64_t left = deadline - now;
        if (left > e->sink_timeout_ms) left = e->sink_timeout_ms;
        if (left < 50) left = 50;
        e->sink.ops->set_timeout(e->sink.self, (int)left);
        int st = now >= e->retry_at || !e->paused ? flush_step(e, (int)left) : -1;
        if (st == 0) {
            /* A write just answered may have left newer changes. */
            if (!any_pending(e)) {
                rc = 0;
                break;
            }
            continue;
        }
        now = clock_ms();
        if (now >= deadline) break;
        if (st < 0) {
            int64_t wait = e->retry_at - now;
            if (wait > deadline - now) wait = deadline - now;
            clock_sleep_ms(wait);
        }
    }
    e->sink.ops->set_timeout(e->sink.self, e->sink_timeout_ms);
    return rc;
}
