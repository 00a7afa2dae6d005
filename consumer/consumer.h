/*
 * consumer.h — `rapport run`: the Kafka group consumer and its main loop.
 *
 * One thread runs everything that touches state: it polls librdkafka,
 * decodes and validates each message, dead-letters the bad ones, feeds
 * the good ones to the partition's window, and flushes all partitions'
 * changes to Redis in one fenced transaction every flush_ms (or sooner
 * when many customers changed).  librdkafka's rebalance callback runs on
 * this same thread, inside rd_kafka_consumer_poll().
 */
#ifndef RAPPORT_CONSUMER_H
#define RAPPORT_CONSUMER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "consumer/decode.h"
#include "scoring/window.h"

/* Counters since process start (SPEC §8).  Written by the main thread,
 * read by any: relaxed atomics. */
typedef struct consumer_stats {
    _Atomic uint64_t scored, late, dead_letter;
    _Atomic uint64_t dead_by_reason[DLQ_REASON_COUNT];
    _Atomic uint64_t alerts_by_type[ALERT_TYPE_COUNT];
    _Atomic uint64_t customers_tracked;
    _Atomic uint64_t flushes;
    _Atomic int redis_up;
    _Atomic int partitions_assigned;
} consumer_stats_t;

typedef struct consumer consumer_t;

/* Builds the consumer, producer, decoder and sink from conf (which must
 * outlive the consumer).  NULL with errstr on a configuration error. */
consumer_t *consumer_new(config_t *conf, char *errstr, size_t errstr_size);

/* Runs until *stop becomes non-zero, then writes the batch in hand,
 * commits, leaves the group and returns 0.  -1 on a fatal error. */
int consumer_run(consumer_t *c, volatile sig_atomic_t *stop);

const consumer_stats_t *consumer_stats(const consumer_t *c);

void consumer_free(consumer_t *c);

#endif
