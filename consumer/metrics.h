/*
 * metrics.h — what `rapport run` tells its operators over HTTP (SPEC §8):
 * the Prometheus metrics at /metrics, liveness at /healthz and readiness
 * at /readyz.
 *
 * Threads.  The consumer's main thread is the only writer: it counts
 * events, dead letters and alerts (lock-free atomics, one per series, so
 * the per-message cost is one atomic add), and publishes everything else
 * (per-partition watermark and lag, customers tracked, the flush
 * histogram, Redis reachability and its error text) under one mutex.  The
 * HTTP thread (common/http.c, libmicrohttpd's internal thread) only reads:
 * the atomics, and the rest under the same mutex, which neither side holds
 * for longer than a copy.  Counters count from process start.
 */
#ifndef RAPPORT_METRICS_H
#define RAPPORT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http.h"
#include "consumer/decode.h"
#include "scoring/window.h"

typedef struct metrics metrics_t;

/* version: the rapport_build_info label (copied).  stale_after_ms: how long
 * the main thread may go without a heartbeat before /healthz fails. */
metrics_t *metrics_new(const char *version, int64_t stale_after_ms);
void metrics_free(metrics_t *m);

/* ---- Main thread ------------------------------------------------------ */

/* One valid event applied (late = dropped as late, SPEC §2). */
void metrics_event(metrics_t *m, bool late);
/* One tombstone applied (SPEC §1.2): held = the partition held the
 * customer (result "erased"), else "erased_unknown". */
void metrics_erasure(metrics_t *m, bool held);
/* One message dead-lettered for `reason` (not DLQ_NONE). */
void metrics_dead_letter(metrics_t *m, dlq_reason_t reason);
/* One alert written to Redis. */
void metrics_alert(metrics_t *m, alert_type_t type);
/* One Redis flush round trip of `seconds`, acknowledged or not. */
void metrics_flush_observe(metrics_t *m, double seconds);
/* Where an event's time in rapport goes (rapport_event_wait_seconds). */
typedef enum {
    METRICS_WAIT_BATCH = 0, /* polled, until its batch was due */
    METRICS_WAIT_QUEUED,    /* due, until its write began (behind an earlier write) */
    METRICS_WAIT_WRITE,     /* the write began, until Redis answered */
    METRICS_WAIT_COUNT
} metrics_wait_t;
/* `events` events spent `seconds` in `stage`. */
void metrics_wait_observe(metrics_t *m, metrics_wait_t stage, double seconds, uint64_t events);
/* Whether the last Redis round trip succeeded; err (may be NULL) says why
 * not and is shown by /readyz. */
void metrics_redis(metrics_t *m, bool up, const char *err);

/* The state of one assigned partition; -1 where unknown. */
typedef struct metrics_partition {
    int32_t partition;
    int64_t watermark_ms;
    int64_t lag;             /* messages behind the high watermark */
} metrics_partition_t;

/* Replaces the table of assigned partitions (copied) and the number of
 * customers tracked.  n == 0: nothing assigned (not ready). */
void metrics_partitions(metrics_t *m, const metrics_partition_t *parts, size_t n,
                        uint64_t customers);

/* The main loop came round at now_ms (clock_ms() of common/clock.h). */
void metrics_heartbeat(metrics_t *m, int64_t now_ms);
/* The consumer is shutting down: /readyz answers 503 from now on. */
void metrics_stopping(metrics_t *m);

/* ---- Any thread (the HTTP thread) -------------------------------------- */

/* The Prometheus text exposition (format 0.0.4).  Returns 0 with *text
 * (caller frees with free()) and *len, or -1 when memory runs out. */
int metrics_render(metrics_t *m, char **text, size_t *len);

/* 0 when the main loop has come round within stale_after_ms of now_ms;
 * else -1 with why. */
int metrics_check_live(metrics_t *m, int64_t now_ms, char *why, size_t why_size);
/* 0 when live, not stopping, with partitions assigned and Redis up; else
 * -1 with why. */
int metrics_check_ready(metrics_t *m, int64_t now_ms, char *why, size_t why_size);

/* Serves /metrics, /healthz and /readyz on `listen` ("[host]:port", see
 * http_server_start()) from an HTTP thread.  m must outlive the server.
 * NULL with errstr when the address is bad or cannot be bound. */
http_server_t *metrics_serve(metrics_t *m, const char *listen, char *errstr, size_t errstr_size);

#endif
