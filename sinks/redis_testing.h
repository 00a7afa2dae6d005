/*
 * redis_testing.h — what tests and benchmarks use of the Redis sink beyond
 * the sink interface: a flush that waits for its answer, and counters of
 * what was sent.  The product itself writes through the flush engine
 * (batch/engine.h) and never blocks on a flush this way.
 *
 * Same thread rules as sinks/redis.h.
 */
#ifndef RAPPORT_SINK_REDIS_TESTING_H
#define RAPPORT_SINK_REDIS_TESTING_H

#include <stdint.h>

#include "sinks/redis.h"

typedef struct sink_stats {
    uint64_t flushes;      /* chunks written */
    uint64_t commands;     /* Redis commands run (inside the scripts too) */
    uint64_t bytes_sent;   /* request bytes sent to Redis */
    uint64_t customers_written;
    uint64_t alerts_written;
    uint64_t args;         /* script arguments (ARGV strings) built */
} sink_stats_t;

/* Writes batch b and waits for the answer: redis_sink_begin(), then
 * redis_sink_step() until it is not SINK_PENDING.  SINK_OK when every
 * partition is written; SINK_FAIL when some are fenced or refused (their
 * results say which; errstr holds the FENCED reply), after which the caller
 * drops the fenced ones and flushes the rest again (those already written
 * are skipped); SINK_RETRY (or SINK_FAIL on an error reply): flush the same
 * again later, and chunks that were written are skipped then.  The sink
 * does not hold b afterwards.  An empty batch is SINK_OK at once. */
sink_result_t redis_sink_flush(redis_sink_t *s, batch_t *b, char *errstr, size_t errstr_size);

/* Valid as long as the sink. */
const sink_stats_t *redis_sink_stats(const redis_sink_t *s);

#endif
