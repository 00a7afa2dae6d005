/*
 * test_metrics.c — common/metrics.c, common/http.c and what `rapport run`
 * serves on metrics_listen (SPEC §8).
 *
 * Unit cases drive a metrics_t directly (rendering, histogram buckets,
 * liveness and readiness) and the HTTP server on a free loopback port.
 * The end-to-end case runs rapport over a known mix of good, late and
 * malformed events and compares every counter of /metrics with what was
 * sent: the dead letters with what the generator spoiled, scored and late
 * with a replay of the topic through the decoder and the scorer, alerts
 * with the Redis stream, customers with ZCARD, watermarks with Redis's
 * watermarks hash.  Then it freezes Redis (SIGSTOP) and watches /readyz
 * turn 503 with the reason while /healthz stays 200.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/http.h"
#include "consumer/metrics.h"
#include "consumer/decode.h"
#include "tests/support/env.h"

#define PARTS 3

/* Under ASan: Criterion 2.4.1's runner (not a test, not rapport) leaks 48
 * bytes in criterion_run_all_tests when two of these long tests run in
 * parallel (--jobs 2); every frame of the report is inside libcriterion.
 * Only that library's leaks are suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

/* ------------------------------------------------------------------ */
/* Test support: HTTP client, exposition parser, free port, sockets          */

static long http_get(int port, const char *path, char **out) {
    return env_http_call("127.0.0.1", port, "GET", path, out);
}

/* The value of the sample whose name-and-labels text is exactly `series`
 * (e.g. `rapport_events_total{result="late"}`); -1 when absent. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (line[0] != '#' && strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

static bool has_line(const char *text, const char *want) {
    size_t n = strlen(want);
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len == n && strncmp(line, want, n) == 0) return true;
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

/* Every line is a comment or `name[{labels}] value` with a number, and
 * every sample's family has its HELP and TYPE. */
static void assert_exposition(const char *text) {
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "the exposition must end with a newline");
        char buf[512];
        size_t len = (size_t)(nl - line);
        cr_assert_lt(len, sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = nl + 1;
        if (buf[0] == '#') {
            cr_assert(!strncmp(buf, "# HELP rapport_", 15) || !strncmp(buf, "# TYPE rapport_", 15),
                      "comment: %s", buf);
            continue;
        }
        char *sp = strrchr(buf, ' ');
        cr_assert_not_null(sp, "sample without value: %s", buf);
        char *end;
        strtod(sp + 1, &end);
        cr_assert(*end == '\0' && end != sp + 1, "value is not a number: %s", buf);
        char name[128];
        size_t nl2 = strcspn(buf, "{ ");
        cr_assert_lt(nl2, sizeof(name));
        memcpy(name, buf, nl2);
        name[nl2] = '\0';
        /* a histogram's series belong to the family without the suffix */
        const char *suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t sl = strlen(suffixes[i]), l = strlen(name);
            if (l > sl && !strcmp(name + l - sl, suffixes[i])) {
                char hist[200];
                snprintf(hist, sizeof(hist), "# TYPE %.*s histogram", (int)(l - sl), name);
                if (strstr(text, hist)) name[l - sl] = '\0';
            }
        }
        char want[200];
        snprintf(want, sizeof(want), "# TYPE %s ", name);
        cr_assert_not_null(strstr(text, want), "no TYPE line for %s", buf);
        snprintf(want, sizeof(want), "# HELP %s ", name);
        cr_assert_not_null(strstr(text, want), "no HELP line for %s", buf);
    }
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A loopback socket listening on a free port (the caller closes it). */
static int busy_port(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* How many TCP sockets in LISTEN state process pid holds: the inodes of
 * /proc/net/tcp{,6} rows in state 0A, matched with its fds. */
static int listening_sockets(pid_t pid) {
    unsigned long inodes[4096];
    size_t ni = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (size_t t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f) continue;
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            char st[8];
            unsigned long inode;
            if (sscanf(line, " %*s %*s %*s %7s %*s %*s %*s %*s %*s %lu", st, &inode) == 2 &&
                !strcmp(st, "0A") && ni < 4096)
                inodes[ni++] = inode;
        }
        fclose(f);
    }
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[400], target[128];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) != 1) continue;
        for (size_t i = 0; i < ni; i++)
            if (inodes[i] == inode) n++;
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* Unit: metrics_t                                                      */

Test(metrics, renders_every_series_from_zero) {
    metrics_t *m = metrics_new("9.9.9", 10000);
    cr_assert_not_null(m);
    char *text;
    size_t len;
    cr_assert_eq(metrics_render(m, &text, &len), 0);
    cr_assert_eq(strlen(text), len);
    assert_exposition(text);
    const char *zero[] = {
        "rapport_events_total{result=\"scored\"}", "rapport_events_total{result=\"late\"}",
        "rapport_events_total{result=\"dead_letter\"}", "rapport_alerts_total{type=\"churn_risk\"}",
        "rapport_alerts_total{type=\"recovered\"}", "rapport_alerts_total{type=\"needs_human\"}",
        "rapport_customers_tracked", "rapport_redis_up", "rapport_redis_flush_seconds_count",
        "rapport_redis_flush_seconds_sum", "rapport_redis_flush_seconds_bucket{le=\"+Inf\"}"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        cr_expect_eq(sample(text, zero[i]), 0, "%s", zero[i]);
    for (int r = DLQ_NONE + 1; r < DLQ_REASON_COUNT; r++) {
        char s[128];
        snprintf(s, sizeof(s), "rapport_dead_letters_total{reason=\"%s\"}", dlq_reason_names[r]);
        cr_expect_eq(sample(text, s), 0, "%s", s);
    }
    cr_expect_eq(sample(text, "rapport_build_info{version=\"9.9.9\"}"), 1);
    const char *types[] = {"# TYPE rapport_events_total counter",
                           "# TYPE rapport_dead_letters_total counter",
                           "# TYPE rapport_alerts_total counter",
                           "# TYPE rapport_customers_tracked gauge",
                           "# TYPE rapport_watermark_ms gauge",
                           "# TYPE rapport_consumer_lag gauge",
                           "# TYPE rapport_redis_flush_seconds histogram",
                           "# TYPE rapport_redis_up gauge",
                           "# TYPE rapport_build_info gauge"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        cr_expect(has_line(text, types[i]), "missing: %s", types[i]);
    cr_expect_null(strstr(text, "rapport_watermark_ms{"), "no partition, no watermark series");
    free(text);
    metrics_free(m);
    metrics_free(NULL);
}

Test(metrics, counts_and_partitions) {
    metrics_t *m = metrics_new("1", 10000);
    for (int i = 0; i < 5; i++) metrics_event(m, false);
    metrics_event(m, true);
    metrics_dead_letter(m, DLQ_INVALID_FIELD);
    metrics_dead_letter(m, DLQ_INVALID_FIELD);
    metrics_dead_letter(m, DLQ_BAD_FRAMING);
    metrics_alert(m, ALERT_NEEDS_HUMAN);
    metrics_redis(m, true, NULL);
    /* Unknown watermark and lag (-1) have no series. */
    metrics_partition_t parts[] = {{0, 1767225600123, 7}, {4, -1, 0}, {9, 5, -1}};
    metrics_partitions(m, parts, 3, 42);
    char *text;
    size_t len;
    cr_assert_eq(metrics_render(m, &text, &len), 0);
    assert_exposition(text);
    struct {
        const char *series;
        double want;
    } t[] = {
        {"rapport_events_total{result=\"scored\"}", 5},
        {"rapport_events_total{result=\"late\"}", 1},
        {"rapport_events_total{result=\"dead_letter\"}", 3},
        {"rapport_dead_letters_total{reason=\"invalid_field\"}", 2},
        {"rapport_dead_letters_total{reason=\"bad_framing\"}", 1},
        {"rapport_dead_letters_total{reason=\"empty_message\"}", 0},
        {"rapport_alerts_total{type=\"needs_human\"}", 1},
        {"rapport_alerts_total{type=\"churn_risk\"}", 0},
        {"rapport_customers_tracked", 42},
        {"rapport_redis_up", 1},
        {"rapport_consumer_lag{partition=\"0\"}", 7},
        {"rapport_consumer_lag{partition=\"4\"}", 0},
        {"rapport_consumer_lag{partition=\"9\"}", -1},
        {"rapport_watermark_ms{partition=\"4\"}", -1},
        {"rapport_watermark_ms{partition=\"9\"}", 5},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        cr_expect_eq(sample(text, t[i].series), t[i].want, "%s: %g, want %g", t[i].series,
                     sample(text, t[i].series), t[i].want);
    /* Written as an integer, not in exponent notation. */
    cr_expect(has_line(text, "rapport_watermark_ms{partition=\"0\"} 1767225600123"));
    free(text);
    metrics_free(m);
}

Test(metrics, flush_histogram_buckets) {
    struct {
        double seconds;
        const char *first_le; /* smallest bucket that counts it */
    } t[] = {
        {0.0001, "0.0005"}, {0.0005, "0.0005"}, {0.0007, "0.001"}, {0.03, "0.05"},
        {1.0, "1"},         {7, "10"},          {60, "+Inf"},
    };
    const char *les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                         "0.25",   "0.5",   "1",      "2.5",   "5",    "10",    "+Inf"};
    size_t nles = sizeof(les) / sizeof(les[0]);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        metrics_t *m = metrics_new("1", 10000);
        metrics_flush_observe(m, t[i].seconds);
        char *text;
        size_t len;
        cr_assert_eq(metrics_render(m, &text, &len), 0);
        bool reached = false;
        for (size_t b = 0; b < nles; b++) {
            char s[100];
            snprintf(s, sizeof(s), "rapport_redis_flush_seconds_bucket{le=\"%s\"}", les[b]);
            reached |= !strcmp(les[b], t[i].first_le);
            cr_expect_eq(sample(text, s), reached ? 1 : 0, "%g s, bucket le=%s", t[i].seconds,
                         les[b]);
        }
        cr_expect_eq(sample(text, "rapport_redis_flush_seconds_count"), 1);
        cr_expect_float_eq(sample(text, "rapport_redis_flush_seconds_sum"), t[i].seconds, 1e-6);
        free(text);
        metrics_free(m);
    }
}

Test(metrics, live_and_ready) {
    struct {
        const char *name;
        int64_t heartbeat_age;  /* ms before "now" */
        size_t parts;
        bool redis_up;
        bool stopping;
        int live, ready;        /* 0 or -1 */
        const char *why;        /* in the readiness reason */
    } t[] = {
        {"all well", 0, 2, true, false, 0, 0, NULL},
        {"no partitions", 0, 0, true, false, 0, -1, "no partitions assigned"},
        {"redis down", 0, 2, false, false, 0, -1, "redis unreachable: connection refused"},
        {"stopping", 0, 2, true, true, 0, -1, "stopping"},
        {"heartbeat at the limit", 10000, 2, true, false, 0, 0, NULL},
        {"stalled", 10001, 2, true, false, -1, -1, "main loop stalled"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        metrics_t *m = metrics_new("1", 10000);
        int64_t now = 1000000;
        metrics_heartbeat(m, now - t[i].heartbeat_age);
        metrics_partition_t p[2] = {{0, -1, -1}, {1, -1, -1}};
        metrics_partitions(m, p, t[i].parts, 0);
        metrics_redis(m, t[i].redis_up, "connection refused");
        if (t[i].stopping) metrics_stopping(m);
        char why[256] = "";
        cr_expect_eq(metrics_check_live(m, now, why, sizeof(why)), t[i].live, "%s", t[i].name);
        why[0] = '\0';
        cr_expect_eq(metrics_check_ready(m, now, why, sizeof(why)), t[i].ready, "%s", t[i].name);
        if (t[i].why)
            cr_expect_not_null(strstr(why, t[i].why), "%s: \"%s\"", t[i].name, why);
        metrics_free(m);
    }
}

/* ------------------------------------------------------------------ */
/* Unit: the HTTP server                                                */

Test(http, serves_routes_on_a_free_port) {
    metrics_t *m = metrics_new("1", 10000);
    char err[256];
    http_server_t *s = metrics_serve(m, "127.0.0.1:0", err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    int port = http_server_port(s);
    cr_assert_gt(port, 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    cr_expect_str_eq(http_server_address(s), addr);
    struct {
        const char *method, *path;
        long status;
        const char *body; /* substring */
    } t[] = {
        {"GET", "/metrics", 200, "rapport_build_info{version=\"1\"} 1"},
        {"GET", "/healthz", 200, "ok"},
        {"GET", "/readyz", 503, "no partitions assigned"},
        {"GET", "/nope", 404, "not found"},
        {"POST", "/metrics", 405, "GET"},
        {"HEAD", "/healthz", 200, ""},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *body = NULL;
        long st = env_http_call("127.0.0.1", port, t[i].method, t[i].path, &body);
        cr_expect_eq(st, t[i].status, "%s %s: %ld", t[i].method, t[i].path, st);
        cr_expect_not_null(strstr(body, t[i].body), "%s %s: %s", t[i].method, t[i].path, body);
        free(body);
    }
    /* Ready once partitions and Redis are there. */
    metrics_partition_t p = {0, 5, 0};
    metrics_partitions(m, &p, 1, 0);
    metrics_redis(m, true, NULL);
    cr_expect_eq(http_get(port, "/readyz", NULL), 200);
    http_server_stop(s);
    cr_expect_eq(http_get(port, "/healthz", NULL), -1, "stopped: nothing listens");
    http_server_stop(NULL);
    metrics_free(m);
}

Test(http, bad_or_busy_addresses) {
    int port;
    int fd = busy_port(&port);
    char busy[64];
    snprintf(busy, sizeof(busy), "127.0.0.1:%d", port);
    struct {
        const char *listen, *err;
    } t[] = {
        {busy, "Address already in use"},
        {"nonsense", "is not [host]:port"},
        {":", "is not [host]:port"},
        {"127.0.0.1:65536", "is not [host]:port"},
        {"127.0.0.1:-1", "is not [host]:port"},
        {"::1:9464", "is not [host]:port"},
        {"[::1:9464", "is not [host]:port"},
        {"127.0.0.1:94x", "is not [host]:port"},
        {"10.255.255.254:0", "10.255.255.254:0: "}, /* not an address of this machine */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char err[256] = "";
        http_server_t *s = http_server_start(t[i].listen, NULL, 0, NULL, err, sizeof(err));
        cr_expect_null(s, "%s should fail", t[i].listen);
        http_server_stop(s);
        cr_expect_not_null(strstr(err, t[i].err), "%s: \"%s\"", t[i].listen, err);
    }
    close(fd);
    /* The forms that work. */
    struct {
        const char *listen, *host; /* where the client connects */
    } good[] = {{"127.0.0.1:0", "127.0.0.1"}, {":0", "127.0.0.1"}, {"[::1]:0", "[::1]"},
                {"localhost:0", "localhost"}};
    bool ipv6 = access("/proc/net/if_inet6", R_OK) == 0;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!ipv6 && strchr(good[i].host, '[')) continue; /* a machine without IPv6 */
        char err[256] = "";
        http_server_t *s = http_server_start(good[i].listen, NULL, 0, NULL, err, sizeof(err));
        cr_expect_not_null(s, "%s: %s", good[i].listen, err);
        if (s)
            cr_expect_eq(env_http_call(good[i].host, http_server_port(s), "GET", "/x", NULL), 404,
                         "%s", good[i].listen);
        http_server_stop(s);
    }
}

/* ------------------------------------------------------------------ */
/* End to end                                                           */

typedef struct expected {
    long scored, late;
    long dead[DLQ_REASON_COUNT];
} expected_t;

/* Reads the topic back and runs it through the decoder and the scorer, as
 * rapport must have: what it scored, dropped as late and dead-lettered. */
static void replay_count(env_t *e, expected_t *x) {
    char err[256];
    int64_t end[PARTS];
    cr_assert_eq(kafka_end_offsets(e->mk.brokers, ENV_TOPIC, PARTS, end), 0);
    decoder_conf_t dc = {.schema_dir = e->schema_dir, .max_message_bytes = 65536,
                         .max_future_skew_ms = 300000};
    decoder_t *dec = decoder_new(&dc, err, sizeof(err));
    cr_assert_not_null(dec, "%s", err);
    score_params_t sp;
    score_params_default(&sp);
    window_t *w[PARTS];
    for (int p = 0; p < PARTS; p++) w[p] = window_new(&sp, p, err, sizeof(err));

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", e->mk.brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "test-metrics-replay", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    int64_t next[PARTS];
    int remaining = 0;
    for (int p = 0; p < PARTS; p++) {
        rd_kafka_topic_partition_list_add(l, ENV_TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        next[p] = 0;
        remaining += end[p] > 0;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t deadline = clock_ms() + 60000;
    while (remaining > 0) {
        cr_assert_lt(clock_ms(), deadline, "replay timed out");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (!m->err && m->partition < PARTS && m->offset >= next[m->partition]) {
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            kafka_msg_view_t v = {m->key, m->key_len, m->payload, m->len,
                                  tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts};
            event_t ev;
            dlq_reason_t reason = DLQ_NONE;
            char detail[256];
            decode_result_t r = decoder_decode(dec, &v, &ev, &reason, detail, sizeof(detail));
            cr_assert_neq(r, DECODE_RETRY);
            if (r == DECODE_OK) {
                if (window_add(w[m->partition], &ev, m->offset) == WINDOW_LATE)
                    x->late++;
                else
                    x->scored++;
            } else {
                x->dead[reason]++;
            }
            next[m->partition] = m->offset + 1;
            if (next[m->partition] >= end[m->partition]) remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    for (int p = 0; p < PARTS; p++) window_free(w[p]);
    decoder_free(dec);
}

/* The generator's own view of what it sent: valid + late. */
static long generated_events(const gen_conf_t *gc, uint64_t count, long *late) {
    char err[256];
    gen_t *g = gen_new(gc, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    long events = 0;
    *late = 0;
    gen_msg_t m;
    for (uint64_t i = 0; i < count; i++) {
        cr_assert_eq(gen_next(g, &m), 0);
        events += m.kind != GEN_MSG_MALFORMED;
        *late += m.kind == GEN_MSG_LATE;
    }
    gen_free(g);
    return events;
}

static long long redis_int(redisContext *rc, const char *fmt, const char *arg) {
    redisReply *r = redisCommand(rc, fmt, arg);
    cr_assert_not_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

/* Scrapes /metrics until every partition's lag is 0 and its watermark is
 * the one in Redis (the metrics are republished every second), or 10 s. */
static char *scrape_settled(int port, redisContext *rc) {
    char *text = NULL;
    int64_t deadline = clock_ms() + 10000;
    for (;;) {
        free(text);
        cr_assert_eq(http_get(port, "/metrics", &text), 200);
        bool settled = true;
        for (int p = 0; p < PARTS; p++) {
            char s[100], field[64];
            snprintf(field, sizeof(field), "%s:%d", ENV_TOPIC, p);
            snprintf(s, sizeof(s), "rapport_consumer_lag{partition=\"%d\"}", p);
            settled &= sample(text, s) == 0;
            snprintf(s, sizeof(s), "rapport_watermark_ms{partition=\"%d\"}", p);
            settled &= sample(text, s) == (double)redis_int(rc, "HGET rapport:watermarks %s", field);
        }
        if (settled || clock_ms() > deadline) return text;
        clock_sleep_ms(200);
    }
}

/* The whole log of the env's rapport processes (caller frees). */
static char *slurp_log(const env_t *e) {
    FILE *f = fopen(e->log, "r");
    cr_assert_not_null(f);
    char *buf = NULL;
    size_t cap = 0, len = 0, n;
    do {
        buf = realloc(buf, cap += 65536);
        cr_assert_not_null(buf);
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Polls path until it answers `status`; returns the last body. */
static char *wait_status(int port, const char *path, long status, int timeout_ms) {
    int64_t deadline = clock_ms() + timeout_ms;
    char *body = NULL;
    long st;
    for (;;) {
        free(body);
        st = http_get(port, path, &body);
        if (st == status || clock_ms() > deadline) break;
        clock_sleep_ms(100);
    }
    cr_assert_eq(st, status, "%s answered %ld (%s), want %ld", path, st, body ? body : "", status);
    return body;
}

Test(metrics_e2e, counters_match_what_was_sent, .timeout = 240) {
    env_t e;
    env_start(&e, PARTS, NULL);
    int port = free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "metrics_listen=127.0.0.1:%d", port);
    const char *extra[] = {listen, "redis_timeout_ms=1000", NULL};
    pid_t pid = env_rapport(&e, extra);
    free(wait_status(port, "/healthz", 200, 10000));
    cr_expect_eq(listening_sockets(pid), 1, "rapport listens on metrics_listen");
    free(wait_status(port, "/readyz", 200, 30000));

    const uint64_t count = 6000;
    long bad[DLQ_REASON_COUNT] = {0};
    gen_conf_t gc = env_mix(11, 300);
    env_produce(&e, &gc, count, bad);
    env_assert_matches_replay(&e, 90000);

    expected_t x = {0};
    replay_count(&e, &x);
    long gen_late;
    long gen_events = generated_events(&gc, count, &gen_late);
    cr_assert_eq(x.scored + x.late, gen_events, "the replay decodes what the generator made valid");
    cr_assert_gt(x.late, 20, "the mix should hold late events");

    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(e.redis));
    cr_assert(rc && !rc->err);
    char *text = scrape_settled(port, rc);
    assert_exposition(text);

    cr_expect_eq(sample(text, "rapport_events_total{result=\"scored\"}"), (double)x.scored);
    cr_expect_eq(sample(text, "rapport_events_total{result=\"late\"}"), (double)x.late,
                 "late: rapport %g, replay %ld (generator made %ld late)",
                 sample(text, "rapport_events_total{result=\"late\"}"), x.late, gen_late);
    long dead = 0;
    for (int r = DLQ_NONE + 1; r < DLQ_REASON_COUNT; r++) {
        char s[128];
        snprintf(s, sizeof(s), "rapport_dead_letters_total{reason=\"%s\"}", dlq_reason_names[r]);
        cr_expect_eq(sample(text, s), (double)bad[r], "%s: %g, the generator spoiled %ld", s,
                     sample(text, s), bad[r]);
        cr_expect_eq(x.dead[r], bad[r], "replay and generator agree on %s", dlq_reason_names[r]);
        dead += bad[r];
    }
    cr_assert_gt(dead, 50);
    cr_expect_eq(sample(text, "rapport_events_total{result=\"dead_letter\"}"), (double)dead);

    /* Alerts: what the stream holds, by type. */
    long alerts[ALERT_TYPE_COUNT] = {0};
    redisReply *xr = redisCommand(rc, "XRANGE rapport:alerts - +");
    cr_assert(xr && xr->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < xr->elements; i++) {
        const redisReply *kv = xr->element[i]->element[1];
        cr_assert_str_eq(kv->element[0]->str, "type");
        for (int t = 0; t < ALERT_TYPE_COUNT; t++)
            if (!strcmp(kv->element[1]->str, alert_type_names[t])) alerts[t]++;
    }
    cr_assert_gt(xr->elements, 10);
    freeReplyObject(xr);
    for (int t = 0; t < ALERT_TYPE_COUNT; t++) {
        char s[100];
        snprintf(s, sizeof(s), "rapport_alerts_total{type=\"%s\"}", alert_type_names[t]);
        cr_expect_eq(sample(text, s), (double)alerts[t], "%s: %g, stream has %ld", s,
                     sample(text, s), alerts[t]);
    }

    cr_expect_eq(sample(text, "rapport_customers_tracked"),
                 (double)redis_int(rc, "ZCARD %s", "rapport:scores"));
    for (int p = 0; p < PARTS; p++) {
        char s[100], field[64];
        snprintf(field, sizeof(field), "%s:%d", ENV_TOPIC, p);
        snprintf(s, sizeof(s), "rapport_watermark_ms{partition=\"%d\"}", p);
        long long wm = redis_int(rc, "HGET rapport:watermarks %s", field);
        cr_expect_gt(wm, 0);
        cr_expect_eq(sample(text, s), (double)wm, "%s: %g, Redis %lld", s, sample(text, s), wm);
        snprintf(s, sizeof(s), "rapport_consumer_lag{partition=\"%d\"}", p);
        cr_expect_eq(sample(text, s), 0, "%s", s);
    }
    double flushes = sample(text, "rapport_redis_flush_seconds_count");
    cr_expect_gt(flushes, 0);
    cr_expect_eq(sample(text, "rapport_redis_flush_seconds_bucket{le=\"+Inf\"}"), flushes);
    cr_expect_gt(sample(text, "rapport_redis_flush_seconds_sum"), 0);
    cr_expect_eq(sample(text, "rapport_redis_up"), 1);
    cr_expect_eq(sample(text, "rapport_events_total{result=\"erased\"}"), 0);
    cr_expect_eq(sample(text, "rapport_events_total{result=\"erased_unknown\"}"), 0);
    free(text);

    /* Tombstones (SPEC §1.2): three customers Redis holds are erased, two
     * nobody has are erased_unknown, and those are logged, id escaped. */
    redisReply *held = redisCommand(rc, "ZRANGE rapport:scores 0 2");
    cr_assert(held && held->type == REDIS_REPLY_ARRAY && held->elements == 3);
    const char *tomb[5] = {held->element[0]->str, held->element[1]->str,
                           held->element[2]->str, "ghost \"one\"", "ghost-two"};
    char terr[256];
    cr_assert_eq(kafka_produce_tombstones(e.mk.brokers, ENV_TOPIC, tomb, 5, terr, sizeof terr), 0,
                 "%s", terr);
    env_assert_matches_replay(&e, 90000);
    for (int k = 0; k < 3; k++)
        cr_expect_eq(redis_int(rc, "EXISTS rapport:ci:%s", tomb[k]), 0, "%s erased", tomb[k]);
    freeReplyObject(held);
    int64_t until = clock_ms() + 10000;
    for (;;) {
        cr_assert_eq(http_get(port, "/metrics", &text), 200);
        if (sample(text, "rapport_events_total{result=\"erased\"}") +
                    sample(text, "rapport_events_total{result=\"erased_unknown\"}") >= 5 ||
            clock_ms() > until)
            break;
        free(text);
        clock_sleep_ms(200);
    }
    cr_expect_eq(sample(text, "rapport_events_total{result=\"erased\"}"), 3);
    cr_expect_eq(sample(text, "rapport_events_total{result=\"erased_unknown\"}"), 2);
    free(text);
    char *log = slurp_log(&e);
    cr_expect_not_null(strstr(log, "customer_id=\"ghost \\\"one\\\"\""),
                       "erased_unknown logged with the id escaped");
    free(log);

    /* Redis frozen: not ready, with the reason; still live. */
    cr_assert_eq(redis_proc_signal(e.redis, SIGSTOP), 0);
    char *body = wait_status(port, "/readyz", 503, 15000);
    cr_expect_not_null(strstr(body, "redis unreachable"), "readyz: %s", body);
    free(body);
    cr_expect_eq(http_get(port, "/healthz", NULL), 200);
    cr_assert_eq(http_get(port, "/metrics", &text), 200);
    cr_expect_eq(sample(text, "rapport_redis_up"), 0);
    free(text);
    cr_assert_eq(redis_proc_signal(e.redis, SIGCONT), 0);
    free(wait_status(port, "/readyz", 200, 15000));
    cr_assert_eq(http_get(port, "/metrics", &text), 200);
    cr_expect_eq(sample(text, "rapport_redis_up"), 1);
    free(text);

    redisFree(rc);
    int st = proc_stop(pid, SIGTERM, 10000);
    if (st != 0) env_dump_log(&e);
    cr_assert_eq(st, 0);
    cr_expect_eq(http_get(port, "/healthz", NULL), -1, "the endpoint goes with the process");
    env_stop(&e);
}

/* metrics_listen = "": no HTTP server, no listening socket at all. */
Test(metrics_e2e, empty_listen_serves_nothing, .timeout = 120) {
    env_t e;
    env_start(&e, 1, NULL);
    pid_t pid = env_rapport(&e, NULL); /* env_rapport sets metrics_listen= */
    gen_conf_t gc = env_mix(3, 50);
    env_produce(&e, &gc, 300, NULL);
    int64_t end[1];
    cr_assert_eq(kafka_end_offsets(e.mk.brokers, ENV_TOPIC, 1, end), 0);
    cr_assert_eq(redis_wait_offsets(redis_proc_port(e.redis), "rapport:", ENV_TOPIC, 1, end,
                                    60000), 0);
    cr_expect_eq(listening_sockets(pid), 0);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    env_stop(&e);
}

/* A busy port or a bad address stops start-up with status 2, naming the key. */
Test(metrics_e2e, bad_metrics_listen_is_a_startup_error) {
    int port;
    int fd = busy_port(&port);
    char busy[80];
    snprintf(busy, sizeof(busy), "metrics_listen=127.0.0.1:%d", port);
    struct {
        const char *value, *needle;
    } t[] = {
        {busy, "Address already in use"},
        {"metrics_listen=9464", "is not [host]:port"},
        {"metrics_listen=127.0.0.1:70000", "is not [host]:port"},
    };
    char log[] = "/tmp/rapport-metrics-XXXXXX";
    int lfd = mkstemp(log);
    cr_assert_geq(lfd, 0);
    close(lfd);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        cr_assert_eq(truncate(log, 0), 0);
        const char *args[] = {"run", "-b", "127.0.0.1:1", "-r", "redis://127.0.0.1:1", "-X",
                              "schema_dir=schemas", "-X", t[i].value, NULL};
        int st = proc_run(log, args, 10000);
        char buf[2048] = "";
        FILE *f = fopen(log, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        buf[n] = '\0';
        if (f) fclose(f);
        cr_expect_eq(st, 2, "%s: exit %d (%s)", t[i].value, st, buf);
        cr_expect_not_null(strstr(buf, "metrics_listen"), "%s: %s", t[i].value, buf);
        cr_expect_not_null(strstr(buf, t[i].needle), "%s: %s", t[i].value, buf);
    }
    unlink(log);
    close(fd);
}
