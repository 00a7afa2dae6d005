/*
 * engine.h — the flush engine: when a batch is written, writing it through
 * a sink, retrying with back-off, and what a fenced partition means.
 *
 * The consumer (consumer/consumer.c) owns the thread and Kafka; the engine
 * owns the sink (batch/sink.h), the batch (batch/batch.h) and the flush
 * schedule, in the way Fluent Bit's engine owns scheduling and retries
 * while its outputs only answer OK/RETRY/ERROR.  The consumer drives it
 * from its loop, as Redis drives ae.c's event loop:
 *
 *   claim       engine_claim()      a partition is assigned: the sink fences
 *                                   earlier owners and hands back its state
 *   consume     engine_consumed()   a message was processed
 *   each turn   engine_service()    moves a flush under way (or a retry) on
 *               engine_check()      starts a batch that is due
 *               engine_poll_timeout()  how long the consumer may block
 *   once a s    engine_tick()       pings an idle sink
 *   stop        engine_drain()      writes everything, within a deadline
 *
 * and the engine tells the consumer what to do through engine_driver_t:
 * give a partition's changes (fill), pause or resume every partition, a
 * partition was fenced (drop its state and seek), these offsets are safe
 * to commit to Kafka.
 *
 * Batches (docs/DESIGN.md §1): a batch is due flush_live_ms (at most
 * flush_ms) after its first message, or at once when it is full:
 * flush_max_customers changed customers, or as many as flush_backlog_bytes
 * of batch and requests would hold, or as many as the sink could write
 * within drain_ms.  While the input is behind (more waits in Kafka than
 * came in during the last flush_ms) it grows until the input has caught up or
 * it is full (or, when flush_backlog_ms is set, that long has passed), so
 * that a catch-up writes each customer about once.  One write is under
 * way at a time, overlapped with consuming; a batch that fills up while
 * one is under way makes the thread wait for the sink.  When a write
 * fails, every partition is paused and the write retried with exponential
 * back-off (100 ms to 5 s) until it lands; then the partitions resume.
 *
 * One thread (the consumer's main loop) runs all of it, rebalance
 * callbacks included.
 */
#ifndef RAPPORT_ENGINE_H
#define RAPPORT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "batch/sink.h"

/* One partition as the engine sees it.  The consumer embeds it in its own
 * per-partition state: the engine keeps a pointer to it from a successful
 * engine_claim() until engine_detach() or until it reports the partition
 * fenced.  Both read the fields; only the engine writes them, except
 * through engine_consumed(). */
typedef struct engine_part {
    int32_t id;             /* set by the caller before engine_claim() */
    int64_t epoch;          /* from the sink's claim */
    int64_t stored_offset;  /* the next offset the sink holds; -1 none */
    int64_t next_offset;    /* the next message to process; -1 before the first */
    bool pending;           /* consumed since its last batch was filled */
} engine_part_t;

/* A position safe to commit to Kafka: the sink holds it. */
typedef struct engine_offset {
    int32_t partition;
    int64_t offset;
} engine_offset_t;

/* Where an event's time between its poll and Redis's answer goes, as the
 * engine sees it (the driver's stage callback). */
typedef enum {
    ENGINE_STAGE_BATCH = 0, /* consumed, until its batch was due */
    ENGINE_STAGE_QUEUED,    /* due, until its write began: behind an earlier write */
    ENGINE_STAGE_WRITE,     /* the write began (requests built, sent), until answered */
    ENGINE_STAGE_COUNT
} engine_stage_t;

/* What the engine asks of, and tells, the consumer.  Every callback runs on
 * the engine's caller's thread, inside an engine_* call. */
typedef struct engine_driver {
    void *opaque;
    /* Copies partition p's effects since its last fill into bp (customers,
     * deletes, alerts, watermark…) and forgets them: the batch holds them
     * now. */
    void (*fill)(void *opaque, engine_part_t *p, batch_t *b, batch_partition_t *bp);
    /* Customers changed in every partition since their last fill. */
    size_t (*changes)(void *opaque);
    /* Messages waiting in the input for every partition (no request to the
     * broker: cached).  0 when not known. */
    uint64_t (*backlog)(void *opaque);
    /* Before a batch is filled: what must be safe first (dead-letter copies
     * acknowledged).  0, or -1 with errstr: the flush is retried later. */
    int (*prepare)(void *opaque, char *errstr, size_t errstr_size);
    /* Pause (true) or resume (false) every partition. */
    void (*pause)(void *opaque, bool pause);
    /* Partition p is no longer written by this process: another owner
     * holds it (by_other), or it was refused with one that is.  The engine
     * has detached it; the consumer drops its state and reads it again
     * from p->stored_offset once it has claimed it again. */
    void (*fenced)(void *opaque, engine_part_t *p, bool by_other);
    /* These offsets are in the sink: commit them to Kafka. */
    void (*commit)(void *opaque, const engine_offset_t *offsets, size_t n);
    /* The sink answered (up) or could not be reached (err). */
    void (*sink_state)(void *opaque, bool up, const char *err);
    /* A write was answered after `seconds`. */
    void (*flushed)(void *opaque, size_t partitions, double seconds);
    /* The engine is alive while it blocks (engine_drain()). */
    void (*heartbeat)(void *opaque, int64_t now_ms);
    /* Optional (NULL: not reported).  `events` events spent `seconds` in
     * `stage`; called when a batch is filled (BATCH, QUEUED) and when its
     * write is answered (WRITE), to the millisecond. */
    void (*stage)(void *opaque, engine_stage_t stage, double seconds, uint64_t events);
} engine_driver_t;

typedef struct engine_conf {
    const char *topic;             /* copied */
    int64_t flush_ms;
    int64_t flush_live_ms;         /* a batch is due this long after its first message
                                    * while rapport keeps up; 0 or over flush_ms: flush_ms */
    int64_t flush_backlog_ms;      /* 0: a catch-up batch grows with no time limit */
    size_t flush_max_customers;
    size_t flush_backlog_bytes;    /* a batch is full when its changes would take this
                                    * much memory to write; 0: no such bound */
    int64_t drain_ms;              /* ... or when the sink, at the pace of its last large
                                    * write, could not write it within this long; 0: none */
    int sink_timeout_ms;           /* the sink's own timeout, restored after a drain */
} engine_conf_t;

typedef struct engine engine_t;

/* Takes ownership of the sink, also on failure.  The driver is copied.
 * NULL with errstr on a bad configuration. */
engine_t *engine_new(const engine_conf_t *conf, sink_t sink, const engine_driver_t *driver,
                     char *errstr, size_t errstr_size);
/* Abandons a write under way (the next owner replays it from the sink's
 * offsets).  engine_free(NULL) does nothing. */
void engine_free(engine_t *e);

/* Claims partition p->id in the sink, loading its state through loader,
 * and on SINK_OK fills p's positions and attaches p.  Blocking. */
sink_result_t engine_claim(engine_t *e, engine_part_t *p, const sink_loader_t *loader,
                           char *errstr, size_t errstr_size);
/* The consumer no longer holds p (revoked, or claimed again).  A write
 * under way that covers it still completes; its result is ignored. */
void engine_detach(engine_t *e, engine_part_t *p);

/* A message of p was processed: p moves to next_offset and the batch
 * clock starts if it was not running.  now: monotonic ms, read when the
 * message was polled. */
void engine_consumed(engine_t *e, engine_part_t *p, int64_t next_offset, int64_t now);

/* The input could not hand something on (what: "dead-letter"): pause every
 * partition and retry as for a failed write. */
void engine_fail(engine_t *e, const char *what, const char *err, int64_t now);
/* True while writes fail: every partition is paused, and a message polled
 * now must be read again later. */
bool engine_paused(const engine_t *e);
/* The partitions were revoked: nothing is paused any more.  A write under
 * way is still retried. */
void engine_unpause(engine_t *e);

/* Moves the write under way on, or retries after a failure when its time
 * has come.  Call at most once a millisecond. */
void engine_service(engine_t *e, int64_t now);
/* Starts the batch when it is due; when it is full while a write is under
 * way, waits for the sink first.  Call after each poll with the clock read
 * after it. */
void engine_check(engine_t *e, int64_t now);
/* How long the consumer may block in its poll (ms). */
int engine_poll_timeout(const engine_t *e, int64_t now);
/* Once a second: pings the sink when nothing talked to it for a second,
 * so that a sink that went away while idle is noticed. */
void engine_tick(engine_t *e, int64_t now);
/* Pings the sink now and reports its state. */
void engine_ping(engine_t *e);

/* Writes everything consumed, retrying until done or the deadline
 * (monotonic ms): each wait for the sink is clamped to the time left.
 * Returns 0 when everything is written, -1 when the deadline passed. */
int engine_drain(engine_t *e, int64_t deadline);

#endif
