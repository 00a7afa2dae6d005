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
#include "tests/support/env.h"

#define TOPIC ENV_TOPIC
#define PARTS 3

Test(integration, end_to_end, .timeout = 180) {
    env_t e;
    env_start(&e, PARTS, NULL);
    pid_t pid = env_rapport(&e, NULL);
    long bad[DLQ_REASON_COUNT] = {0}, dlq[DLQ_REASON_COUNT] = {0};
    gen_conf_t gc = env_mix(42, 400);
    env_produce(&e, &gc, 8000, bad);
    env_assert_matches_replay(&e, 60000);

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
    if (st != 0) env_dump_log(&e);
    cr_assert_eq(st, 0, "rapport run exited with %d on SIGTERM", st);
    env_stop(&e);
}

/* A restart resumes from Redis's offset with Redis's state: the result is
 * that of one uninterrupted run. */
Test(integration, restart_resumes, .timeout = 180) {
    env_t e;
    env_start(&e, PARTS, NULL);
    gen_conf_t gc = env_mix(7, 300);
    pid_t pid = env_rapport(&e, NULL);
    env_produce(&e, &gc, 3000, NULL);
    int64_t end[PARTS];
    cr_assert_eq(kafka_end_offsets(e.mk.brokers, TOPIC, PARTS, end), 0);
    cr_assert_eq(redis_wait_offsets(redis_proc_port(e.redis), "rapport:", TOPIC, PARTS, end,
                                    60000), 0);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    gc.seed = 8; /* more events, same customers */
    gc.start_ms += 20LL * 86400000;
    env_produce(&e, &gc, 3000, NULL);
    pid = env_rapport(&e, NULL);
    env_assert_matches_replay(&e, 60000);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    env_stop(&e);
}

/* Bad configuration: exit status 2 and a message naming the key. */
Test(integration, bad_configuration) {
    struct {
        const char *args[12];
        const char *needle;
    } t[] = {
        {{"run", "-X", "bogus_key=1", NULL}, "bogus_key"},
        {{"run", "-X", "flush_ms=soon", NULL}, "flush_ms"},
        {{"run", "-X", "window_buckets=0", NULL}, "window_buckets"},
        {{"run", "-X", "kafka.no.such.property=1", NULL}, "kafka.no.such.property"},
        {{"run", "-X", "schema_dir=/tmp", "-X", "recover_threshold=20", NULL}, "recover_threshold"},
        {{"run", "-X", "schema_dir=/tmp", "-r", "http://localhost", NULL}, "redis"},
        {{"run", NULL}, "schema_dir"},
        {{"run", "-X", "schema_dir=/nonexistent", NULL}, "schema_dir"},
        {{"run", "-X", "schema_dir=/tmp", "-X", "prior_weight=0", NULL}, "prior_weight"},
        {{"run", "-X", "schema_registry_url=ftp://x", NULL}, "schema_registry_url"},
        {{"run", "-X", "log_level=loud", NULL}, "log_level"},
        {{"run", "-b", "", "-X", "schema_dir=/tmp", NULL}, "brokers: must not be empty"},
        {{"run", "-X", "schema_dir=/tmp", "-X", "schema_registry_user=u", NULL},
         "schema_registry_user: set without schema_registry_url"},
        {{"run", "-X", "schema_registry_url=http://localhost", "-X", "schema_registry_password=p",
          NULL},
         "schema_registry_password: set without schema_registry_user"},
        {{"run", "-X", "schema_dir=/tmp", "-X", "w_resolution=0", "-X", "w_sentiment=0", "-X",
          "w_loyalty=0", NULL},
         "w_resolution"},
        {{"run", "-X", "schema_dir=/tmp", "-X", "dlq_topic=interactions", NULL},
         "dlq_topic: must differ"},
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
