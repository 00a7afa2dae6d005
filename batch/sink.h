/*
 * sink.h — what the flush engine needs from an output: the sink interface.
 *
 * A sink claims partitions (fencing earlier owners out and handing back
 * the stored position and resume state) and writes batches (batch.h).  It
 * answers each call as Fluent Bit's outputs do: OK, RETRY (not written,
 * worth trying again: connection, timeout, server busy…) or FAIL (not
 * written and trying again as it is will not help), plus PENDING while a
 * write is under way.  Scheduling, back-off, pausing the input and what a
 * fenced partition means for the input belong to the engine
 * (batch/engine.h), not to the sink.
 *
 * sinks/redis.h provides one (redis_sink_as_sink()).  A sink is owned and
 * called by one thread, the consumer's main loop.
 */
#ifndef RAPPORT_SINK_H
#define RAPPORT_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"

typedef enum {
    SINK_OK = 0, /* done (for a write: every partition has its result) */
    SINK_RETRY,  /* not done: connection, timeout, LOADING, OOM…; try later */
    SINK_FAIL,   /* not done and retrying as it is will not help */
    SINK_PENDING /* a write is under way: call step() again */
} sink_result_t;

/* Where a claimed partition stands in the sink. */
typedef struct sink_claim {
    int64_t epoch;        /* this owner's fencing epoch */
    int64_t next_offset;  /* the next offset the sink holds; -1: none (start
                           * from the earliest) */
    int64_t watermark;    /* the stored watermark; -1: none */
} sink_claim_t;

/* Receives a claimed partition's resume state.  watermark() is called once,
 * before any customer, with the stored watermark (-1: none); customer()
 * once per stored customer (a customer may come twice: the loader keeps
 * the first).  customer() returns 0, or -1 with errstr when the state does
 * not load, which fails the claim.  scoring/window.h has a pair that
 * restores into a window. */
typedef struct sink_loader {
    void (*watermark)(void *opaque, int64_t watermark);
    int (*customer)(void *opaque, const char *customer_id, size_t id_len,
                    const unsigned char *state, size_t state_len, char *errstr,
                    size_t errstr_size);
    void *opaque;
} sink_loader_t;

/* The operations.  `self` is the sink's own handle. */
typedef struct sink_ops {
    const char *name; /* for log lines: "redis" */

    /* Claims topic:partition for this process and loads its stored state
     * through `loader`.  Blocking, bounded by the sink's timeout. */
    sink_result_t (*claim)(void *self, const char *topic, int32_t partition,
                           const sink_loader_t *loader, sink_claim_t *out, char *errstr,
                           size_t errstr_size);

    /* Starts writing batch b, whose partitions hold the position each
     * moves the sink from (prev_offset) and to (next_offset).  The sink
     * reads b now or later and writes its partitions' results into it; b
     * must stay as it is until step() answers OK.  SINK_RETRY, holding
     * nothing, when it cannot start.  One write at a time. */
    sink_result_t (*begin)(void *self, batch_t *b, char *errstr, size_t errstr_size);

    /* Moves the write under way on, waiting up to wait_ms (0: only what is
     * ready now).  PENDING while answers are missing.  OK when every
     * partition of the batch has its result (WRITTEN, FENCED or REFUSED);
     * the sink no longer holds the batch.  RETRY or FAIL on an error: the
     * write stays under way, and the next step() sends again what was not
     * answered, reconnecting if needed.  A write is idempotent per
     * partition: what landed already is found written, not written twice. */
    sink_result_t (*step)(void *self, int wait_ms, char *errstr, size_t errstr_size);

    /* True between begin() and the step() that answers OK. */
    bool (*busy)(const void *self);

    /* Is the sink reachable?  (/readyz, when nothing else talked to it.) */
    sink_result_t (*ping)(void *self, char *errstr, size_t errstr_size);

    /* The connect and command timeout from now on (> 0 ms); a caller with a
     * deadline (shutdown) clamps each attempt to the time it has left. */
    void (*set_timeout)(void *self, int timeout_ms);

    /* Frees the sink, abandoning a write under way. */
    void (*free)(void *self);
} sink_ops_t;

typedef struct sink {
    const sink_ops_t *ops;
    void *self;
} sink_t;

#endif
