/*
 * consumer.h — `rapport run`: the Kafka group consumer and its main loop.
 *
 * One thread runs everything that touches state: it polls librdkafka,
 * decodes and validates each message, dead-letters the bad ones, feeds
 * the good ones to the partition's window, and drives the flush engine
 * (batch/engine.h), which writes all partitions' changes to Redis in
 * fenced scripts every flush_ms (or sooner when many customers changed)
 * and hands back the offsets to commit to Kafka.  librdkafka's rebalance
 * callback runs on this same thread, inside rd_kafka_consumer_poll().  It
 * records its metrics and heartbeat into a metrics_t, which the HTTP
 * thread reads.
 */
#ifndef RAPPORT_CONSUMER_H
#define RAPPORT_CONSUMER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "consumer/metrics.h"

typedef struct consumer consumer_t;

/* Builds the consumer, producer, decoder and sink from conf.  conf and
 * metrics (where the main loop records what /metrics, /healthz and
 * /readyz show) must outlive the consumer.  NULL with errstr on a
 * configuration error. */
consumer_t *consumer_new(const config_t *conf, metrics_t *metrics, char *errstr,
                         size_t errstr_size);

/* Runs until *stop becomes non-zero, then writes the batch in hand,
 * commits, leaves the group and returns 0.  -1 on a fatal error. */
int consumer_run(consumer_t *c, volatile sig_atomic_t *stop);

void consumer_free(consumer_t *c);

#endif
