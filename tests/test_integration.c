/*
 * test_integration.c — the whole pipeline with real components: a
 * redis-server started on a free port, librdkafka's mock cluster hosted by
 * the test, events produced with the gen code, and `rapport run` as a child
 * process.  Redis is compared field by field with a reference replay of the
 * topic (tests/support/pipeline.c), and the DLQ with the generator's record
 * of what it spoiled.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/redis_proc.h"
#include "consumer/decode.h"
#include "gen/encode.h"
#include "gen/produce.h"
#include "gen/story.h"
#include "tests/support/pipeline.h"

#define TOPIC "interactions"
#define PARTS 3

typedef struct env {
    mock_kafka_t mk;
    redis_proc_t *redis;
    char dir[64];
    char schema_dir[128];
    char log[128];
} env_t;

static void env_start(env_t *e) {
    char err[256];
    memset(e, 0, sizeof(*e));
    strcpy(e->dir, "/tmp/rapport-it-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->schema_dir, sizeof(e->schema_dir), "%s/schemas", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/rapport.log", e->dir);
    cr_assert_eq(mkdir(e->schema_dir, 0755), 0);
    cr_assert_eq(encode_write_schemas(e->schema_dir, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(mock_kafka_start(&e->mk, 1), 0);
    rd_kafka_mock_topic_create(e->mk.mc, TOPIC, PARTS, 1);
    rd_kafka_mock_topic_create(e->mk.mc, TOPIC ".dlq", 1, 1);
    e->redis = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(e->redis, "%s", err);
}

static void env_stop(env_t *e) {
    redis_proc_stop(e->redis);
    mock_kafka_stop(&e->mk);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", e->dir);
}

static void dump_log(const env_t *e) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 40 '%s' >&2", e->log);
    if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
}

static pid_t start_rapport(env_t *e, const char *extra) {
    static char sd[256];
    snprintf(sd, sizeof(sd), "schema_dir=%s", e->schema_dir);
    const char *args[] = {"run", "-b", e->mk.brokers, "-r", redis_proc_url(e->redis), "-X", sd,
                          "-X", "metrics_listen=", "-X", "log_level=info",
                          extra ? "-X" : NULL, extra, NULL};
    pid_t pid = proc_start(e->log, args);
    cr_assert_gt(pid, 0);
    return pid;
}

static void produce(env_t *e, const gen_conf_t *gc, uint64_t count, long *bad_by_reason) {
    char err[256];
    gen_t *g = gen_new(gc, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    produce_conf_t pc = {.brokers = e->mk.brokers, .topic = TOPIC, .count = count};
    produce_stats_t st;
    cr_assert_eq(produce_run(g, &pc, &st, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(st.delivered, count);
    gen_free(g);
    /* What the generator spoiled, by reason: the same seed again. */
    if (bad_by_reason) {
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
}

/* Redis equals the reference replay, line for line. */
static void assert_redis_matches_replay(env_t *e) {
    char err[256];
    int64_t end[PARTS];
    cr_assert_eq(kafka_end_offsets(e->mk.brokers, TOPIC, PARTS, end), 0);
    if (redis_wait_offsets(redis_proc_port(e->redis), "rapport:", TOPIC, PARTS, end, 60000)) {
        dump_log(e);
        cr_assert_fail("rapport did not reach the end offsets");
    }
    score_params_t sp;
    score_params_default(&sp);
    lines_t want = {0}, got = {0};
    cr_assert_eq(replay_render(e->mk.brokers, TOPIC, PARTS, e->schema_dir, &sp, "rapport:", &want,
                               err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(redis_render(redis_proc_port(e->redis), "rapport:", &got, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_gt(want.n, 100, "the replay should produce state");
    int rc = lines_compare(&want, &got, "redis");
    if (rc) dump_log(e);
    cr_assert_eq(rc, 0, "Redis differs from one uninterrupted run");
    lines_free(&want);
    lines_free(&got);
}

static gen_conf_t mix(uint64_t seed, uint32_t customers) {
    gen_conf_t gc;
    gen_conf_default(&gc);
    gc.seed = seed;
    gc.customers = customers;
    gc.late_ratio = 0.02;
    gc.bad_ratio = 0.03;
    gc.schemas = (1u << ENCODE_V1) | (1u << ENCODE_V2) | (1u << ENCODE_V3);
    return gc;
}

Test(integration, end_to_end, .timeout = 180) {
    env_t e;
    env_start(&e);
    pid_t pid = start_rapport(&e, NULL);
    long bad[DLQ_REASON_COUNT] = {0}, dlq[DLQ_REASON_COUNT] = {0};
    gen_conf_t gc = mix(42, 400);
    produce(&e, &gc, 8000, bad);
    assert_redis_matches_replay(&e);

    char err[256];
    long n = dlq_read(e.mk.brokers, TOPIC ".dlq", 1, dlq, err, sizeof(err));
    cr_assert_geq(n, 0, "%s", err);
    long want = 0;
    for (int r = 0; r < DLQ_REASON_COUNT; r++) {
        want += bad[r];
        cr_expect_eq(dlq[r], bad[r], "reason %s: %ld in the DLQ, %ld spoiled",
                     dlq_reason_names[r], dlq[r], bad[r]);
    }
    cr_assert_gt(want, 50);
    cr_assert_eq(n, want);

    /* SIGTERM: exit 0 within 10 s. */
    int st = proc_stop(pid, SIGTERM, 10000);
    if (st != 0) dump_log(&e);
    cr_assert_eq(st, 0, "rapport run exited with %d on SIGTERM", st);
    env_stop(&e);
}

/* A restart resumes from Redis's offset with Redis's state: the result is
 * that of one uninterrupted run. */
Test(integration, restart_resumes, .timeout = 180) {
    env_t e;
    env_start(&e);
    gen_conf_t gc = mix(7, 300);
    pid_t pid = start_rapport(&e, NULL);
    produce(&e, &gc, 3000, NULL);
    int64_t end[PARTS];
    cr_assert_eq(kafka_end_offsets(e.mk.brokers, TOPIC, PARTS, end), 0);
    cr_assert_eq(redis_wait_offsets(redis_proc_port(e.redis), "rapport:", TOPIC, PARTS, end,
                                    60000), 0);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    gc.seed = 8; /* more events, same customers */
    gc.start_ms += 20LL * 86400000;
    produce(&e, &gc, 3000, NULL);
    pid = start_rapport(&e, NULL);
    assert_redis_matches_replay(&e);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    env_stop(&e);
}

/* Bad configuration: exit status 2 and a message naming the key. */
Test(integration, bad_configuration) {
    struct {
        const char *args[8];
        const char *needle;
    } t[] = {
        {{"run", "-X", "bogus_key=1", NULL}, "bogus_key"},
        {{"run", "-X", "flush_ms=soon", NULL}, "flush_ms"},
        {{"run", "-X", "window_buckets=0", NULL}, "window_buckets"},
        {{"run", "-X", "kafka.no.such.property=1", NULL}, "kafka.no.such.property"},
        {{"run", "-X", "recover_threshold=20", NULL}, "recover_threshold"},
        {{"run", "-r", "http://localhost", NULL}, "redis"},
        {{"run", "-X", "log_level=loud", NULL}, "log_level"},
        {{"run", "-c", "/nonexistent/rapport.conf", NULL}, "/nonexistent/rapport.conf"},
    };
    char log[] = "/tmp/rapport-cfg-XXXXXX";
    int fd = mkstemp(log);
    cr_assert_geq(fd, 0);
    close(fd);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        truncate(log, 0);
        int st = proc_run(log, t[i].args, 10000);
        char buf[2048] = "";
        FILE *f = fopen(log, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        buf[n] = '\0';
        if (f) fclose(f);
        cr_expect_eq(st, 2, "case %zu: exit %d (%s)", i, st, buf);
        cr_expect_not_null(strstr(buf, t[i].needle), "case %zu: \"%s\" not in: %s", i,
                           t[i].needle, buf);
    }
    unlink(log);
}
