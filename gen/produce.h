/*
 * produce.h — sends a generator's messages to Kafka with librdkafka, at a
 * rate, for a count or a duration, and counts what was delivered.
 *
 * The producer is idempotent with acks=all and linger.ms=5, and partitions
 * with murmur2_random (the Java client's partitioner, so that a customer
 * lands in the same partition as with any other Kafka producer); each
 * message carries the generator's key and timestamp.  Any librdkafka
 * property can be set or overridden with "name=value" pairs.
 *
 * produce_run() owns its rd_kafka_t for the length of the call and runs on
 * the caller's thread (delivery reports are served there too).
 */
#ifndef RAPPORT_PRODUCE_H
#define RAPPORT_PRODUCE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "gen/story.h"

typedef struct produce_conf {
    const char *brokers;              /* bootstrap.servers */
    const char *topic;
    double rate;                      /* messages per second; 0: as fast as possible */
    uint64_t count;                   /* stop after this many messages; 0: no limit */
    double seconds;                   /* stop after this long; 0: no limit */
    const char *const *props;         /* props_count "name=value" librdkafka properties,
                                       * applied after the defaults (caller owns) */
    size_t props_count;
    volatile sig_atomic_t *stop;      /* may be NULL; once non-zero, no new message is sent */
} produce_conf_t;

typedef struct produce_stats {
    uint64_t produced;                /* taken from the generator and given to librdkafka */
    uint64_t delivered;               /* acknowledged by the brokers */
    uint64_t failed;                  /* refused, failed, or unsent after the final flush;
                                       * delivered + failed == produced */
    uint64_t valid, late, malformed;  /* produced, by gen_msg_kind_t */
    double seconds;                   /* from the first message to the end of the flush */
} produce_stats_t;

/* Checks conf->brokers and conf->props as librdkafka takes them (it makes
 * and destroys a producer, which sends nothing).  Returns 0, or -1 with
 * errstr saying which property is wrong. */
int produce_conf_check(const produce_conf_t *conf, char *errstr, size_t errstr_size);

/* Produces messages from gen to conf->topic until conf->count messages
 * were produced, conf->seconds passed or *conf->stop became non-zero
 * (without any of these: until *conf->stop), then flushes for up to 10 s
 * and purges what is left (counted as failed).  *stats is filled in every
 * case.  Returns 0 when the run took place (see stats->failed for
 * delivery failures), or -1 with errstr filled when it could not start:
 * a bad property, a producer that could not be created, or a generator
 * error. */
int produce_run(gen_t *gen, const produce_conf_t *conf, produce_stats_t *stats, char *errstr,
                size_t errstr_size);

#endif
