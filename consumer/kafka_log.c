/*
 * kafka_log.c — librdkafka calls this from its own threads; log_emit() is
 * thread-safe.  Syslog levels map to ours: 0-3 error, 4 warn, 5-6 info,
 * 7 debug.
 */
#include "consumer/kafka_log.h"

#include <string.h>

#include "common/log.h"

static void log_any(const rd_kafka_t *rk, int level, const char *fac, const char *buf,
                    int producer) {
    if (producer && strcmp(fac, "CONFWARN") == 0 && strstr(buf, "consumer property")) return;
    log_level_t l = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO
                                                                                 : LOG_DEBUG;
    if (l > log_get_level()) return;
    char q[1024];
    log_emit(l, "librdkafka", "client=%s facility=%s detail=%s", rd_kafka_name(rk), fac,
             log_quote(buf, q, sizeof(q)));
}

static void log_consumer(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_any(rk, level, fac, buf, 0);
}

static void log_producer(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_any(rk, level, fac, buf, 1);
}

void kafka_log_install(rd_kafka_conf_t *conf, int producer) {
    rd_kafka_conf_set_log_cb(conf, producer ? log_producer : log_consumer);
}
