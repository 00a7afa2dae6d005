/*
 * fuzz_redis_reply.c — libFuzzer harness for what rapport makes of Redis's
 * answers: the connection module's reading (common/redis_conn.c, over
 * hiredis's reply parser), the sink's claim of a partition (SCRIPT LOAD,
 * the claim script's answer, HSCAN of the resume states: sinks/redis.c)
 * and the leaders' report (ZREVRANGE, ZRANGEBYSCORE, HGETALL, XREVRANGE,
 * ZRANGE, HMGET: report/report.c), which `rapport report` and the
 * dashboard share.
 *
 * Each input is what a server answers on one connection: a thread of the
 * harness listens on 127.0.0.1 with an ephemeral port, accepts, writes the
 * input after byte 0, half-closes and reads until the client closes.
 * Byte 0 chooses the reader (0: the report, 1: the sink's claim, 2: the
 * answers to a flush of one small batch of two partitions, read with the
 * sink's non-blocking steps, 3: `rapport top`'s lowest scores and alerts,
 * cli/view.c).
 * Whatever the bytes, the reader must return an error or a result, never
 * crash, leak or read out of bounds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/redis_conn.h"
#include "batch/batch.h"
#include "cli/view.h"
#include "report/report.h"
#include "sinks/redis.h"

static int lfd = -1;
static char url[64];

typedef struct serve {
    const uint8_t *data;
    size_t size;
} serve_t;

/* One connection: the answer, a half-close, then whatever comes until the
 * client closes. */
static void *serve(void *arg) {
    const serve_t *s = arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return NULL;
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    size_t off = 0;
    while (off < s->size) {
        ssize_t w = send(fd, s->data + off, s->size - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
    close(fd);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
        abort();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    return 0;
}

static int load_customer(void *opaque, const char *id, size_t id_len,
                         const unsigned char *state, size_t state_len, char *errstr,
                         size_t errstr_size) {
    (void)opaque;
    (void)errstr;
    (void)errstr_size;
    /* Touch every byte, so that a bad length shows under ASan. */
    unsigned x = 0;
    for (size_t i = 0; i < id_len; i++) x += (unsigned char)id[i];
    for (size_t i = 0; i < state_len; i++) x += state[i];
    return ((x + id_len) & 1) ? -1 : 0;
}

static void watermark(void *opaque, int64_t w) {
    (void)opaque;
    (void)w;
}

/* A batch of two partitions (a customer, a delete and an alert; a
 * customer with some fields changed), one chunk, begun
 * and stepped until the sink answers something other than PENDING (never
 * stepped after an error: that would connect again, to nobody). */
static void flush_one(char *err, size_t err_size) {
    redis_sink_conf_t conf = {.url = url, .prefix = "rapport:", .alerts_maxlen = 1000,
                              .timeout_ms = 500};
    redis_sink_t *sink = redis_sink_new(&conf, err, err_size);
    if (!sink) abort();
    batch_t *b = batch_new();
    batch_partition_t *bp = batch_add_partition(b, "interactions", 0, 1, -1, 10);
    batch_customer_t *c = batch_add_customer(b, bp);
    c->customer_id = batch_copy(b, "cust-1", 6);
    c->ci = 42.5;
    c->state = batch_copy(b, "state", 5);
    c->route = batch_static("ai");
    c->route_reason = batch_static("");
    batch_add_delete(b, bp, "cust-2", 6);
    batch_alert_t *a = batch_add_alert(b, bp);
    a->type = batch_static("churn_risk");
    a->trigger = batch_static("event");
    a->customer_id = batch_copy(b, "cust-1", 6);
    a->reason = batch_static("fell below 35");
    batch_add_history(b, bp, INT64_C(1767225600000), "CHAT:AI:events", 1);
    batch_add_org(b, bp, "customers", 1);
    /* A second partition in the same chunk, so that SPLIT (the chunk sent
     * again one partition per call) is reached too. */
    bp = batch_add_partition(b, "interactions", 1, 1, -1, 3);
    c = batch_add_customer(b, bp);
    c->changed = BATCH_CF_CI | BATCH_CF_EVENTS;
    c->customer_id = batch_copy(b, "cust-3", 6);
    c->state = batch_copy(b, "state", 5);
    batch_add_history(b, bp, INT64_C(1767225600000), "CHAT:AI:events", 2);
    if (redis_sink_begin(sink, b, err, err_size) == SINK_OK)
        for (int i = 0; i < 100 && redis_sink_step(sink, 20, err, err_size) == SINK_PENDING; i++) {
        }
    redis_sink_free(sink);
    batch_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    serve_t s = {data + 1, size - 1};
    pthread_t t;
    if (pthread_create(&t, NULL, serve, &s) != 0) abort();
    char err[512];
    if (data[0] % 4 == 3) {
        rconn_t *c = report_connect(url, NULL, 500, err, sizeof(err));
        if (c) {
            FILE *devnull = fopen("/dev/null", "w");
            if (devnull) {
                if (view_lowest(devnull, c, "rapport:", 8, err, sizeof(err)) == 0) {
                    redisReply *r = rconn_command_ok(c, err, sizeof(err),
                                                 "XREVRANGE rapport:alerts + - COUNT 6");
                    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
                        view_alert(devnull, r->element[i], 100);
                    freeReplyObject(r);
                }
                fclose(devnull);
            }
            rconn_free(c);
        }
    } else if (data[0] % 4 == 0) {
        rconn_t *c = report_connect(url, NULL, 500, err, sizeof(err));
        if (c) {
            report_opts_t o = {.prefix = "rapport:",
                               .bucket_ms = INT64_C(86400000),
                               .days = 30,
                               .alerts = REPORT_ALERTS,
                               .lowest = REPORT_LOWEST};
            report_t *r = report_read(c, &o, err, sizeof(err));
            if (r) {
                FILE *devnull = fopen("/dev/null", "w");
                if (devnull) {
                    report_text(r, devnull, 100);
                    fclose(devnull);
                }
                report_free(r);
            }
            rconn_free(c);
        }
    } else if (data[0] % 4 == 2) {
        flush_one(err, sizeof(err));
    } else {
        redis_sink_conf_t conf = {.url = url, .prefix = "rapport:", .alerts_maxlen = 1000,
                                  .timeout_ms = 500};
        redis_sink_t *sink = redis_sink_new(&conf, err, sizeof(err));
        if (!sink) abort();
        sink_loader_t loader = {.watermark = watermark, .customer = load_customer};
        sink_claim_t claim;
        (void)redis_sink_claim(sink, "interactions", 0, &loader, &claim, err, sizeof(err));
        redis_sink_free(sink);
    }
    pthread_join(t, NULL);
    return 0;
}
