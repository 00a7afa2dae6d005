/*
 * produce.c — the librdkafka loop behind `rapport gen`: paces messages to a
 * rate, serves delivery reports on the caller's thread, flushes at the end.
 *
 * Owns one rd_kafka_t for the length of produce_run().  Every message
 * taken from the generator ends up counted exactly once, as delivered or
 * failed: delivered + failed == produced when produce_run() returns.
 */
#include "gen/produce.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

#define FLUSH_MS 10000
#define PURGE_FLUSH_MS 2000

/* Filled by the delivery-report callback, which runs inside rd_kafka_poll()
 * and rd_kafka_flush() on the caller's thread. */
typedef struct delivery {
    uint64_t delivered, failed;
    rd_kafka_resp_err_t first_err;
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    delivery_t *d = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->delivered++;
        return;
    }
    d->failed++;
    if (d->first_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        char q[256];
        d->first_err = m->err;
        log_warn("delivery failed", "error=%s (further failures are only counted)",
                 log_quote(rd_kafka_err2str(m->err), q, sizeof q));
    }
}

/* Waits up to secs (at most 0.1 s), serving delivery reports meanwhile. */
static void wait_serving(rd_kafka_t *rk, double secs) {
    if (secs > 0.1)
        secs = 0.1;
    if (secs >= 0.001) {
        rd_kafka_poll(rk, (int)(secs * 1000));
        return;
    }
    rd_kafka_poll(rk, 0);
    struct timespec ts = {0, (long)(secs * 1e9)};
    nanosleep(&ts, NULL);
}

static int conf_set(rd_kafka_conf_t *kc, const char *name, const char *value, char *errstr,
                    size_t errstr_size) {
    char err[256];
    if (rd_kafka_conf_set(kc, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka property %s: %s", name, err);
        return -1;
    }
    return 0;
}

/* The defaults, then each "name=value" of conf->props. */
static rd_kafka_conf_t *make_conf(const produce_conf_t *conf, delivery_t *d, char *errstr,
                                  size_t errstr_size) {
    static const char *const defaults[][2] = {
        {"linger.ms", "5"},
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"partitioner", "murmur2_random"},
    };
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (conf_set(kc, "bootstrap.servers", conf->brokers, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (conf_set(kc, defaults[i][0], defaults[i][1], errstr, errstr_size) != 0)
            goto fail;
    }
    for (size_t i = 0; i < conf->props_count; i++) {
        char name[256];
        const char *eq = strchr(conf->props[i], '=');
        size_t n = eq ? (size_t)(eq - conf->props[i]) : 0;
        if (!eq || n == 0 || n >= sizeof name) {
            snprintf(errstr, errstr_size, "kafka property \"%s\" is not name=value",
                     conf->props[i]);
            goto fail;
        }
        memcpy(name, conf->props[i], n);
        name[n] = '\0';
        if (conf_set(kc, name, eq + 1, errstr, errstr_size) != 0)
            goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_opaque(kc, d);
    return kc;
fail:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

int produce_conf_check(const produce_conf_t *conf, char *errstr, size_t errstr_size) {
    delivery_t d = {0};
    char err[512];
    rd_kafka_conf_t *kc = make_conf(conf, &d, errstr, errstr_size);
    if (!kc)
        return -1;
    /* Some conflicts (acks with idempotence…) only show when a handle is
     * made; it is destroyed before it has anything to send. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "%s", err);
        return -1;
    }
    rd_kafka_destroy(rk);
    return 0;
}

static void count_kind(produce_stats_t *stats, gen_msg_kind_t kind) {
    if (kind == GEN_MSG_VALID)
        stats->valid++;
    else if (kind == GEN_MSG_LATE)
        stats->late++;
    else
        stats->malformed++;
}

int produce_run(gen_t *gen, const produce_conf_t *conf, produce_stats_t *stats, char *errstr,
                size_t errstr_size) {
    delivery_t d = {0};
    uint64_t refused = 0;
    int rc = 0;
    *stats = (produce_stats_t){0};

    rd_kafka_conf_t *kc = make_conf(conf, &d, errstr, errstr_size);
    if (!kc)
        return -1;
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", err);
        return -1;
    }
    kc = NULL;   /* now owned by rk */

    gen_msg_t msg;
    bool pending = false;   /* msg was made but librdkafka's queue was full */
    double t0 = clock_s();
    for (;;) {
        if (conf->stop && *conf->stop)
            break;
        if (conf->count > 0 && stats->produced >= conf->count)
            break;
        double elapsed = clock_s() - t0;
        if (conf->seconds > 0 && elapsed >= conf->seconds)
            break;
        if (conf->rate > 0) {
            double due = (double)stats->produced / conf->rate;
            if (due > elapsed) {
                wait_serving(rk, due - elapsed);
                continue;
            }
        }
        if (!pending && gen_next(gen, &msg) != 0) {
            snprintf(errstr, errstr_size, "the generator failed to encode a message");
            rc = -1;
            break;
        }
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(conf->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(msg.key, msg.key_len),
            RD_KAFKA_V_VALUE((void *)msg.value, msg.value_len),
            RD_KAFKA_V_TIMESTAMP(msg.timestamp_ms), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            pending = true;
            rd_kafka_poll(rk, 10);
            continue;
        }
        pending = false;
        stats->produced++;
        count_kind(stats, msg.kind);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            char q[256];
            if (refused++ == 0)
                log_warn("produce refused", "error=%s (further refusals are only counted)",
                         log_quote(rd_kafka_err2str(e), q, sizeof q));
        }
        rd_kafka_poll(rk, 0);
    }

    if (rd_kafka_flush(rk, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("flush timed out, purging unsent messages", "outq=%d", rd_kafka_outq_len(rk));
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, PURGE_FLUSH_MS);
    }
    rd_kafka_destroy(rk);

    stats->delivered = d.delivered;
    stats->failed = refused + d.failed;
    /* A report that never came (purge could not reach it) is a failure too. */
    if (stats->delivered + stats->failed < stats->produced)
        stats->failed = stats->produced - stats->delivered;
    stats->seconds = clock_s() - t0;
    return rc;
}
