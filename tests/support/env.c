/*
 * env.c — see env.h.
 */
#include "tests/support/env.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "consumer/decode.h"
#include "gen/encode.h"

void env_start(env_t *e, int partitions, const char *const *redis_args) {
    char err[256];
    memset(e, 0, sizeof(*e));
    e->partitions = partitions;
    strcpy(e->dir, "/tmp/rapport-it-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->schema_dir, sizeof(e->schema_dir), "%s/schemas", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/rapport.log", e->dir);
    cr_assert_eq(mkdir(e->schema_dir, 0755), 0);
    cr_assert_eq(encode_write_schemas(e->schema_dir, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(mock_kafka_start(&e->mk, 1), 0);
    rd_kafka_mock_topic_create(e->mk.mc, ENV_TOPIC, partitions, 1);
    rd_kafka_mock_topic_create(e->mk.mc, ENV_TOPIC ".dlq", 1, 1);
    e->redis = redis_proc_start(redis_args, err, sizeof(err));
    cr_assert_not_null(e->redis, "%s", err);
}

void env_stop(env_t *e) {
    redis_proc_stop(e->redis);
    mock_kafka_stop(&e->mk);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", e->dir);
}

void env_dump_log(const env_t *e) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 60 '%s' >&2", e->log);
    if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
}

pid_t env_rapport(env_t *e, const char *const *extra) {
    char sd[256];
    snprintf(sd, sizeof(sd), "schema_dir=%s", e->schema_dir);
    const char *args[64] = {"run", "-b", e->mk.brokers, "-r", redis_proc_url(e->redis),
                            "-X", sd, "-X", "metrics_listen=", NULL};
    int n = 9;
    for (size_t i = 0; extra && extra[i] && n < 60; i++) {
        args[n++] = "-X";
        args[n++] = extra[i];
    }
    args[n] = NULL;
    pid_t pid = proc_start(e->log, args);
    cr_assert_gt(pid, 0);
    return pid;
}

gen_conf_t env_mix(uint64_t seed, uint32_t customers) {
    gen_conf_t gc;
    gen_conf_default(&gc);
    gc.seed = seed;
    gc.customers = customers;
    gc.late_ratio = 0.02;
    gc.bad_ratio = 0.03;
    gc.schemas = (1u << ENCODE_V1) | (1u << ENCODE_V2) | (1u << ENCODE_V3);
    return gc;
}

void env_produce(env_t *e, const gen_conf_t *gc, uint64_t count, long *bad_by_reason) {
    char err[256];
    gen_t *g = gen_new(gc, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    produce_conf_t pc = {.brokers = e->mk.brokers, .topic = ENV_TOPIC, .count = count};
    produce_stats_t st;
    cr_assert_eq(produce_run(g, &pc, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.delivered, count);
    gen_free(g);
    if (!bad_by_reason) return;
    /* What the generator spoiled, by reason: the same seed again. */
    g = gen_new(gc, err, sizeof(err));
    gen_msg_t m;
    for (uint64_t i = 0; i < count; i++) {
        cr_assert_eq(gen_next(g, &m), 0);
        if (m.kind != GEN_MSG_MALFORMED) continue;
        for (int r = 0; r < DLQ_REASON_COUNT; r++)
            if (!strcmp(dlq_reason_names[r], m.reason)) bad_by_reason[r]++;
    }
    gen_free(g);
}

static void *producer_main(void *arg) {
    env_producer_t *p = arg;
    p->rc = produce_run(p->gen, &p->pc, &p->stats, p->err, sizeof(p->err));
    return NULL;
}

void env_produce_start(env_t *e, env_producer_t *p, const gen_conf_t *gc, uint64_t count,
                       double rate) {
    memset(p, 0, sizeof(*p));
    p->gen = gen_new(gc, p->err, sizeof(p->err));
    cr_assert_not_null(p->gen, "%s", p->err);
    p->pc = (produce_conf_t){.brokers = e->mk.brokers, .topic = ENV_TOPIC, .count = count,
                             .rate = rate};
    cr_assert_eq(pthread_create(&p->tid, NULL, producer_main, p), 0);
}

void env_produce_join(env_producer_t *p) {
    pthread_join(p->tid, NULL);
    cr_assert_eq(p->rc, 0, "%s", p->err);
    cr_assert_eq(p->stats.delivered, p->stats.produced);
    gen_free(p->gen);
    p->gen = NULL;
}

void env_assert_matches_replay(env_t *e, int timeout_ms) {
    char err[256];
    int64_t end[256];
    cr_assert_eq(kafka_end_offsets(e->mk.brokers, ENV_TOPIC, e->partitions, end), 0);
    if (redis_wait_offsets(redis_proc_port(e->redis), "rapport:", ENV_TOPIC, e->partitions, end,
                           timeout_ms)) {
        env_dump_log(e);
        cr_assert_fail("rapport did not reach the end offsets");
    }
    score_params_t sp;
    score_params_default(&sp);
    lines_t want = {0}, got = {0};
    cr_assert_eq(replay_render(e->mk.brokers, ENV_TOPIC, e->partitions, e->schema_dir, &sp,
                               "rapport:", &want, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(redis_render(redis_proc_port(e->redis), "rapport:", &got, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_gt(want.n, 100, "the replay should produce state");
    int rc = lines_compare(&want, &got, "redis");
    if (rc) env_dump_log(e);
    cr_assert_eq(rc, 0, "Redis differs from one uninterrupted run");
    lines_free(&want);
    lines_free(&got);
}

typedef struct body {
    char *p;
    size_t n;
} body_t;

static size_t on_body(char *p, size_t size, size_t n, void *opaque) {
    body_t *b = opaque;
    char *np = realloc(b->p, b->n + size * n + 1);
    if (!np) return 0;
    memcpy(np + b->n, p, size * n);
    b->n += size * n;
    np[b->n] = '\0';
    b->p = np;
    return size * n;
}

long env_http_call(const char *host, int port, const char *method, const char *path,
                      char **out) {
    char url[128];
    snprintf(url, sizeof(url), "http://%s:%d%s", host, port, path);
    body_t b = {calloc(1, 1), 0};
    CURL *h = curl_easy_init();
    cr_assert_not_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long status = -1;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (out)
        *out = b.p;
    else
        free(b.p);
    return status;
}

bool env_log_has(const env_t *e, const char *needle) {
    FILE *f = fopen(e->log, "r");
    if (!f) return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

char *env_slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    while ((r = fread(buf + n, 1, cap - n - 1, fp)) > 0) {
        n += r;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            cr_assert_not_null(buf);
        }
    }
    fclose(fp);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}
