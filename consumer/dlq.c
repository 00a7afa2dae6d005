/*
 * dlq.c — dead-letter producer: an idempotent librdkafka producer that
 * never gives up on a copy (message.timeout.ms = 0), plus a retry list for
 * copies that fail for good reasons librdkafka does not retry itself.
 */
#include "consumer/dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "consumer/kafka_log.h"

typedef struct failed {
    void *key, *value;
    size_t key_len, value_len;
    rd_kafka_headers_t *hdrs;
    struct failed *next;
} failed_t;

struct dlq {
    rd_kafka_t *rk;
    char *topic;
    size_t outstanding;    /* produced, no delivery report yet */
    failed_t *failed;      /* delivery failed: produce again in dlq_sync */
    rd_kafka_resp_err_t last_err;
};

static void *memdup(const void *p, size_t n) {
    if (!p) return NULL;
    void *d = xmalloc(n);
    memcpy(d, p, n);
    return d;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    dlq_t *d = opaque;
    d->outstanding--;
    if (!m->err) return;
    if (m->err != d->last_err)
        log_error("dead-letter copy not delivered, will retry", "topic=%s err=\"%s\"", d->topic,
                  rd_kafka_err2str(m->err));
    d->last_err = m->err;
    failed_t *f = xcalloc(1, sizeof(*f));
    f->key = memdup(m->key, m->key_len);
    f->key_len = m->key_len;
    f->value = memdup(m->payload, m->len);
    f->value_len = m->len;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) f->hdrs = rd_kafka_headers_copy(h);
    f->next = d->failed;
    d->failed = f;
}

dlq_t *dlq_new(const config_t *conf, const char *topic, char *errstr, size_t errstr_size) {
    dlq_t *d = xcalloc(1, sizeof(*d));
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    d->topic = xstrdup(topic);
    const char *defaults[][2] = {{"bootstrap.servers", conf->brokers},
                                 {"enable.idempotence", "true"},
                                 {"message.timeout.ms", "0"},
                                 {"linger.ms", "5"},
                                 {"client.id", "rapport-dlq"}};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], errstr, errstr_size))
            goto fail;
    /* kafka.* applies to the producer too (security, SASL); librdkafka
     * ignores consumer-only properties here with a warning. */
    for (size_t i = 0; i < conf->kafka_count; i++) {
        if (rd_kafka_conf_set(kc, conf->kafka[i].key, conf->kafka[i].value, errstr, errstr_size))
            goto fail;
    }
    kafka_log_install(kc, 1);
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_opaque(kc, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
    if (!d->rk) goto fail;
    return d; /* kc is owned by rk now */
fail:
    rd_kafka_conf_destroy(kc); /* rd_kafka_new() failing leaves it ours */
    free(d->topic);
    free(d);
    return NULL;
}

/* Produces a copy.  On success the headers belong to librdkafka; on
 * failure they are still the caller's. */
static int produce(dlq_t *d, const void *key, size_t key_len, const void *value,
                   size_t value_len, rd_kafka_headers_t *hdrs, char *errstr, size_t errstr_size) {
    for (int tries = 0;; tries++) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (!err) {
            d->outstanding++;
            return 0; /* hdrs now belong to librdkafka */
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries >= 50) {
            snprintf(errstr, errstr_size, "producing to %s: %s", d->topic, rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(d->rk, 100);
    }
}

int dlq_send(dlq_t *d, const rd_kafka_message_t *m, dlq_reason_t reason, const char *detail,
             char *errstr, size_t errstr_size) {
    rd_kafka_headers_t *src = NULL, *hdrs;
    if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = rd_kafka_headers_copy(src);
    else
        hdrs = rd_kafka_headers_new(5);
    char part[16], off[32];
    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    rd_kafka_header_add(hdrs, "rapport.error", -1, dlq_reason_names[reason], -1);
    rd_kafka_header_add(hdrs, "rapport.error.detail", -1, detail, -1);
    rd_kafka_header_add(hdrs, "rapport.source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(hdrs, "rapport.source.partition", -1, part, -1);
    rd_kafka_header_add(hdrs, "rapport.source.offset", -1, off, -1);
    if (produce(d, m->key, m->key_len, m->payload, m->len, hdrs, errstr, errstr_size)) {
        rd_kafka_headers_destroy(hdrs);
        return -1;
    }
    return 0;
}

int dlq_sync(dlq_t *d, int timeout_ms) {
    char err[256];
    while (d->failed) {
        failed_t *f = d->failed;
        if (produce(d, f->key, f->key_len, f->value, f->value_len, f->hdrs, err, sizeof(err))) {
            log_error("dead-letter copy not produced, will retry", "err=\"%s\"", err);
            break; /* it stays on the list */
        }
        d->failed = f->next;
        free(f->key);
        free(f->value);
        free(f);
    }
    if (d->outstanding) rd_kafka_flush(d->rk, timeout_ms);
    else rd_kafka_poll(d->rk, 0);
    return (d->outstanding || d->failed) ? -1 : 0;
}

void dlq_free(dlq_t *d) {
    if (!d) return;
    if (d->rk) {
        rd_kafka_flush(d->rk, 2000);
        rd_kafka_destroy(d->rk);
    }
    while (d->failed) {
        failed_t *f = d->failed;
        d->failed = f->next;
        free(f->key);
        free(f->value);
        rd_kafka_headers_destroy(f->hdrs);
        free(f);
    }
    free(d->topic);
    free(d);
}
