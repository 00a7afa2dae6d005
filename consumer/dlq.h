/*
 * dlq.h — the dead-letter producer (SPEC §1.1).
 *
 * A message that cannot be used is produced unchanged (key, value, headers)
 * to the dead-letter topic, with rapport.error, rapport.error.detail and
 * rapport.source.topic/.partition/.offset headers added.  The consumer
 * advances a partition's stored offset past a dead letter only after
 * dlq_sync() has seen every copy acknowledged, so a crash can repeat a
 * dead letter but never lose one (at-least-once; the source headers let a
 * reader drop repeats).
 *
 * One thread (the consumer's main loop) owns a dlq_t.
 */
#ifndef RAPPORT_DLQ_H
#define RAPPORT_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "common/config.h"
#include "consumer/decode.h"

typedef struct dlq dlq_t;

/* A producer for `topic` with the brokers and kafka.* properties of conf. */
dlq_t *dlq_new(const config_t *conf, const char *topic, char *errstr, size_t errstr_size);
void dlq_free(dlq_t *d);

/* Queues a copy of m (which the caller still owns) with the reason headers.
 * Returns 0, or -1 with errstr (the caller pauses and retries). */
int dlq_send(dlq_t *d, const rd_kafka_message_t *m, dlq_reason_t reason, const char *detail,
             char *errstr, size_t errstr_size);

/* Waits up to timeout_ms until every queued copy is acknowledged, producing
 * again any that failed.  Returns 0 when none is outstanding, else -1. */
int dlq_sync(dlq_t *d, int timeout_ms);

#endif
