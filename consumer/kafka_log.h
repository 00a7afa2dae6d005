/*
 * kafka_log.h — librdkafka's log lines, re-emitted as rapport's logfmt.
 */
#ifndef RAPPORT_KAFKA_LOG_H
#define RAPPORT_KAFKA_LOG_H

#include <librdkafka/rdkafka.h>

/* Installs the callback on conf (before rd_kafka_new).  producer: drop the
 * warnings about consumer-only kafka.* properties, which are set on both
 * clients on purpose. */
void kafka_log_install(rd_kafka_conf_t *conf, int producer);

#endif
