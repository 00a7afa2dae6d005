/*
 * redis.h — the Redis sink: rapport's only writer to Redis.
 *
 * Every flush is one atomic Lua script (EVALSHA) that first checks, for each
 * partition it covers, that this process still owns the partition (its
 * fencing epoch in <prefix>_epochs), then writes the changed customer hashes,
 * the `scores` entries, the alerts, the watermarks, the serialized customer
 * state and the next offset of each partition.  Either all of it lands or
 * none of it does, which is what makes the effect exactly-once (SPEC §6):
 * Redis holds the offset that matches its own contents.
 *
 * Key layout (SPEC §5; internal keys under <prefix>_, see docs/STATE.md):
 *   <prefix>ci:<customer_id>        hash, the public score
 *   <prefix>scores                  sorted set
 *   <prefix>alerts                  stream, XADD MAXLEN ~ alerts_maxlen
 *   <prefix>watermarks              hash  <topic>:<partition> -> T_p
 *   <prefix>_offsets                hash  <topic>:<partition> -> next offset
 *   <prefix>_epochs                 hash  <topic>:<partition> -> owner epoch
 *   <prefix>_state:<topic>:<part>   hash  customer_id -> state blob
 *
 * One thread (the consumer's main loop) owns a sink.  hiredis 0.14: after
 * any error the context is dead; the sink frees it and reconnects on the
 * next call.
 */
#ifndef RAPPORT_SINK_REDIS_H
#define RAPPORT_SINK_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scoring/window.h"

/* Fluent Bit's flush results. */
typedef enum {
    SINK_OK = 0, /* written and acknowledged */
    SINK_RETRY,  /* not written: connection, timeout, LOADING, OOM…; try later */
    SINK_FAIL,   /* not written and retrying will not help (e.g. fenced) */
    SINK_PENDING /* a flush is under way: call redis_sink_flush_wait() again */
} sink_result_t;

/* redis://[:password@]host[:port][/db]  or  unix:///path.sock */
typedef struct redis_url {
    char host[256];      /* empty for unix */
    int port;            /* default 6379 */
    char path[256];      /* unix socket path, empty for tcp */
    char password[256];  /* empty: no AUTH */
    int db;              /* default 0 */
} redis_url_t;

/* Returns 0, or -1 with errstr naming what is wrong. */
int redis_url_parse(const char *url, redis_url_t *out, char *errstr, size_t errstr_size);

typedef struct redis_sink redis_sink_t;

typedef struct redis_sink_conf {
    const char *url;
    const char *prefix;
    int64_t alerts_maxlen;
    int timeout_ms;          /* connect and command timeout */
} redis_sink_conf_t;

/* Parses the URL; does not connect yet (the first call does).  NULL and
 * errstr on a bad URL.  The strings are copied. */
redis_sink_t *redis_sink_new(const redis_sink_conf_t *conf, char *errstr, size_t errstr_size);
void redis_sink_free(redis_sink_t *s);

/* PING (connecting if needed). */
sink_result_t redis_sink_ping(redis_sink_t *s, char *errstr, size_t errstr_size);

/* Claims topic:partition for this process: increments its fencing epoch
 * (so that any earlier owner's writes are refused from now on), reads the
 * stored next offset and watermark, and loads every stored customer state
 * into `w`, which must be new and empty.  *next_offset is -1 when Redis has
 * no position for the partition (start from the earliest offset). */
sink_result_t redis_sink_claim(redis_sink_t *s, const char *topic, int32_t partition,
                               window_t *w, int64_t *epoch, int64_t *next_offset,
                               char *errstr, size_t errstr_size);

/* One partition's part in a flush. */
typedef struct sink_partition {
    const char *topic;
    int32_t partition;
    int64_t epoch;        /* from redis_sink_claim() */
    int64_t prev_offset;  /* the next offset Redis holds now (from the claim or the
                           * last acknowledged flush); -1 when it holds none */
    int64_t next_offset;  /* offset of the next message to process */
    window_t *w;          /* changes, alerts and watermark to write */
    bool fenced;          /* out: set when this partition's epoch is no longer ours */
    bool written;         /* out: Redis holds next_offset now (written, or found
                           * written by an attempt whose answer was lost) */
} sink_partition_t;

typedef struct sink_stats {
    uint64_t flushes;
    uint64_t commands;     /* Redis commands run (inside the script too) */
    uint64_t bytes_sent;   /* request bytes sent to Redis */
    uint64_t customers_written;
    uint64_t alerts_written;
} sink_stats_t;

/* Writes everything the windows changed since their last commit.
 *
 * The partitions are grouped into chunks of whole partitions, one EVALSHA
 * each (FLUSH_CHUNK_ITEMS customers and alerts at most, unless one
 * partition alone has more), sent one after the other without waiting.
 * Redis runs each chunk atomically and other clients between chunks.
 *
 * Idempotent, per chunk: the script writes only when, for every partition
 * of the chunk, the epoch is ours and Redis holds prev_offset.  When Redis
 * already holds next_offset for a partition, an earlier attempt whose
 * reply was lost (a timeout) has written it: it is skipped and counts as
 * written, so no alert is added twice.  Any other offset means someone
 * else wrote: the partition is fenced and nothing of its chunk is written.
 *
 * The synchronous form: on SINK_OK every partition is written and the
 * caller commits the windows (window_commit).  On SINK_FAIL with some
 * parts[i].fenced set, the caller drops those partitions and flushes the
 * rest again (those already written are skipped).  On SINK_RETRY, try the
 * same flush again later: chunks that were written are skipped then. */
sink_result_t redis_sink_flush(redis_sink_t *s, sink_partition_t *parts, size_t n,
                               char *errstr, size_t errstr_size);

/* The same flush, in steps, so that the caller can go on consuming while
 * Redis works.  redis_sink_flush_begin() builds every request from the
 * windows and keeps it: on SINK_OK the caller may commit the windows at
 * once and change them again.  It returns SINK_RETRY, holding nothing,
 * when it cannot connect.  One flush at a time. */
sink_result_t redis_sink_flush_begin(redis_sink_t *s, const sink_partition_t *parts, size_t n,
                                     char *errstr, size_t errstr_size);

/* Sends what the socket takes and reads the answers that have come, for up
 * to wait_ms (0: only what is ready now).  SINK_PENDING while answers are
 * missing.  SINK_OK when every chunk is answered: each partition of
 * redis_sink_flush_parts() is then written, fenced, or neither (refused
 * with a fenced partition of its chunk: the caller must reload it from
 * Redis).  SINK_RETRY or SINK_FAIL on an error (a timeout is no answer
 * for the command timeout): the chunks not answered are kept, and
 * redis_sink_flush_retry() sends them again. */
sink_result_t redis_sink_flush_wait(redis_sink_t *s, int wait_ms, char *errstr,
                                    size_t errstr_size);
/* Reconnects if needed and sends the unanswered chunks again. */
sink_result_t redis_sink_flush_retry(redis_sink_t *s, char *errstr, size_t errstr_size);
/* True between redis_sink_flush_begin() and redis_sink_flush_end(). */
bool redis_sink_flush_active(const redis_sink_t *s);
/* The flush's partitions, with their results; owned by the sink. */
const sink_partition_t *redis_sink_flush_parts(const redis_sink_t *s, size_t *n);
/* Forgets the flush, answered or not. */
void redis_sink_flush_end(redis_sink_t *s);

const sink_stats_t *redis_sink_stats(const redis_sink_t *s);

/* Changes the connect and command timeout from now on (> 0 ms), for the
 * connection in place too: a caller with a deadline (shutdown) clamps each
 * attempt to the time it has left. */
void redis_sink_set_timeout(redis_sink_t *s, int timeout_ms);

#endif
