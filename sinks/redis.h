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
 *   <prefix>history:<S>             hash  counters of one bucket (deltas added)
 *   <prefix>history_index           sorted set of every S
 *   <prefix>org                     hash  organisation counters (deltas added)
 *   <prefix>_offsets                hash  <topic>:<partition> -> next offset
 *   <prefix>_epochs                 hash  <topic>:<partition> -> owner epoch
 *   <prefix>_state:<topic>:<part>   hash  customer_id -> state blob
 *
 * It reads batches (batch/batch.h) and implements the sink interface of
 * batch/sink.h; it knows nothing of the scorer.  Tests and benchmarks also
 * use the synchronous flush and the statistics of sinks/redis_testing.h.
 *
 * One thread (the consumer's main loop) owns a sink.  It reaches Redis
 * through common/redis_conn.h (TCP, Unix socket or TLS; AUTH with an ACL
 * user).  After any error the connection is dead; the sink frees it and
 * reconnects on the next call.
 */
#ifndef RAPPORT_SINK_REDIS_H
#define RAPPORT_SINK_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "batch/sink.h"
#include "common/redis_conn.h"

typedef struct redis_sink redis_sink_t;

typedef struct redis_sink_conf {
    const char *url;         /* any URL of common/redis_conn.h: redis://, rediss://, unix:// */
    const char *prefix;
    int64_t alerts_maxlen;
    int timeout_ms;          /* connect and command timeout */
    rconn_tls_conf_t tls;    /* rediss:// only (config keys redis_tls_*) */
} redis_sink_conf_t;

/* Parses the URL and, for rediss://, loads the CA, certificate and key
 * (so that a bad file fails at start-up); does not connect yet (the first
 * call does).  NULL and errstr on a bad URL or TLS setting.  The strings
 * are copied. */
redis_sink_t *redis_sink_new(const redis_sink_conf_t *conf, char *errstr, size_t errstr_size);
void redis_sink_free(redis_sink_t *s);

/* The sink interface of batch/sink.h over s, which the caller still owns
 * until it hands the result to an owner (engine_new() takes it). */
sink_t redis_sink_as_sink(redis_sink_t *s);

/* PING (connecting if needed). */
sink_result_t redis_sink_ping(redis_sink_t *s, char *errstr, size_t errstr_size);

/* Claims topic:partition for this process: increments its fencing epoch
 * (so that any earlier owner's writes are refused from now on), reads the
 * stored next offset and watermark, and hands the watermark and every
 * stored customer state to `loader`.  out->next_offset is -1 when Redis has
 * no position for the partition (start from the earliest offset). */
sink_result_t redis_sink_claim(redis_sink_t *s, const char *topic, int32_t partition,
                               const sink_loader_t *loader, sink_claim_t *out,
                               char *errstr, size_t errstr_size);

/* Starts writing batch b (see sink_ops_t.begin).
 *
 * The partitions are grouped into chunks of whole partitions, one EVALSHA
 * each (FLUSH_CHUNK_ITEMS customers and alerts at most, unless one
 * partition alone has more), built here at once and sent one after the
 * other without waiting.  Redis runs each chunk atomically and other
 * clients between chunks.  b is read only here; its results are written
 * into it by the step that answers OK, so it must stay until then.
 *
 * Idempotent, per chunk: the script writes only when, for every partition
 * of the chunk, the epoch is ours and Redis holds prev_offset.  When Redis
 * already holds next_offset for a partition, an earlier attempt whose
 * reply was lost (a timeout) has written it: it is skipped and counts as
 * written, so no alert is added twice.  Any other offset means someone
 * else wrote: the partition is fenced and nothing of its chunk is written
 * (its other partitions are refused).
 *
 * A customer's route and route_reason are written when the route is not
 * empty; history and org deltas are added (docs/STATE.md); erasures
 * delete a customer's keys and its alerts in the partition, found through
 * the alert index.
 *
 * SINK_RETRY, holding nothing, when it cannot connect; SINK_FAIL when
 * Redis refused the TLS handshake or the login. */
sink_result_t redis_sink_begin(redis_sink_t *s, batch_t *b, char *errstr, size_t errstr_size);

/* Sends what the socket takes and reads the answers that have come, for up
 * to wait_ms (0: only what is ready now).  SINK_PENDING while answers are
 * missing; SINK_OK when every chunk is answered (each partition's result
 * is then in the batch, and the sink has forgotten it).  SINK_RETRY or
 * SINK_FAIL on an error (a timeout is no answer within the command
 * timeout): the chunks not answered are kept, and the next call
 * reconnects if needed and sends them again. */
sink_result_t redis_sink_step(redis_sink_t *s, int wait_ms, char *errstr, size_t errstr_size);

/* True between redis_sink_begin() and the step that answers SINK_OK. */
bool redis_sink_busy(const redis_sink_t *s);

/* Changes the connect and command timeout from now on (> 0 ms), for the
 * connection in place too: a caller with a deadline (shutdown) clamps each
 * attempt to the time it has left. */
void redis_sink_set_timeout(redis_sink_t *s, int timeout_ms);

#endif
