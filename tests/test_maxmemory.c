/*
 * test_maxmemory.c — a full Redis is refused, not overrun.  A real
 * redis-server with a small maxmemory and the noeviction policy, the mock
 * cluster and `rapport run`: the flushes fill it; Redis then refuses them
 * with OOM before they run (the scripts' "#!lua" line), rapport holds its
 * partitions and says why (log, /readyz, rapport_redis_up), and used
 * memory stays within one flush call's bound over maxmemory
 * (docs/STATE.md, "Memory and maxmemory").  Once maxmemory is raised,
 * rapport resumes and Redis equals a replay of the topic: nothing lost.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "tests/support/env.h"
#include "tests/support/pki.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

#define MAXMEMORY (2LL << 20)
/* Customers per batch (flush_max_customers), so that one flush call is
 * small next to maxmemory. */
#define BATCH_CUSTOMERS 250
/* docs/STATE.md, "Memory and maxmemory": one call takes Redis over
 * maxmemory by at most about 2 KiB per item (customer or alert) it holds.
 * A batch holds flush_max_customers changed customers (counted every 64
 * events, so up to 64 more), and at most as many alerts again. */
#define OVERSHOOT_BOUND (2048LL * 2 * (BATCH_CUSTOMERS + 64))

/* One number from INFO memory. */
static long long info_memory(redisContext *rc, const char *field) {
    redisReply *r = redisCommand(rc, "INFO memory");
    cr_assert(r && r->type == REDIS_REPLY_STRING, "INFO: %s", rc->errstr);
    char key[64];
    snprintf(key, sizeof(key), "\n%s:", field);
    const char *p = strstr(r->str, key);
    cr_assert_not_null(p, "no %s in INFO", field);
    long long v = atoll(p + strlen(key));
    freeReplyObject(r);
    return v;
}

Test(maxmemory, full_redis_holds_then_resumes_without_loss, .timeout = 300) {
    signal(SIGPIPE, SIG_IGN);
    env_t e;
    char mm[32];
    snprintf(mm, sizeof(mm), "%lld", MAXMEMORY);
    env_start(&e, 3, (const char *[]){"--maxmemory", mm, "--maxmemory-policy", "noeviction",
                                      NULL});
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(e.redis));
    cr_assert(rc && !rc->err);
    long long base = info_memory(rc, "used_memory");
    int mport = pki_free_port();
    char metrics[64], batch[64];
    snprintf(metrics, sizeof(metrics), "metrics_listen=127.0.0.1:%d", mport);
    snprintf(batch, sizeof(batch), "flush_max_customers=%d", BATCH_CUSTOMERS);
    pid_t pid = env_rapport(&e, (const char *[]){metrics, batch, NULL});

    /* Six simulated hours between events: each customer's events are far
     * more than a window apart, so every batch evicts customers (their
     * DELs come first in the flush script) while the history (a hash per
     * day) and the alerts grow.  A script checked against maxmemory only
     * at its first write would let all of that in. */
    gen_conf_t gc = env_mix(31, 6000);
    gc.step_ms = 6 * 3600 * 1000;
    env_produce(&e, &gc, 40000, NULL);

    /* Wait until rapport says Redis is full, and a while after: its
     * retries with back-off must not grow it either. */
    int64_t full_at = 0, end = clock_ms() + 90000;
    bool ready_said = false;
    while (clock_ms() < end && (!full_at || clock_ms() < full_at + 4000)) {
        if (!full_at && env_log_has(&e, "OOM")) full_at = clock_ms();
        if (full_at && !ready_said) {
            char *body = NULL;
            long st = env_http_call("127.0.0.1", mport, "GET", "/readyz", &body);
            ready_said = st == 503 && body && strstr(body, "OOM") && strstr(body, "maxmemory");
            free(body);
        }
        clock_sleep_ms(50);
    }
    /* Redis's own high-water mark: every moment counts, not samples. */
    long long peak = info_memory(rc, "used_memory_peak");
    fprintf(stderr, "maxmemory %lld, empty %lld, peak used_memory %lld: over by %lld (bound %lld)\n",
            MAXMEMORY, base, peak, peak - MAXMEMORY, OVERSHOOT_BOUND);
    if (!full_at) env_dump_log(&e);
    cr_assert(full_at, "rapport never reported Redis full");
    cr_expect_leq(peak - MAXMEMORY, OVERSHOOT_BOUND, "one call went further over than documented");
    /* Held: not every partition's end offset is in Redis. */
    int64_t ends[3];
    cr_assert_eq(kafka_end_offsets(e.mk.brokers, ENV_TOPIC, 3, ends), 0);
    cr_expect_neq(redis_wait_offsets(redis_proc_port(e.redis), "rapport:", ENV_TOPIC, 3, ends, 1),
                  0, "everything was written into a full Redis");
    cr_expect(ready_said, "/readyz did not say OOM and maxmemory");
    cr_expect(env_log_has(&e, "pausing partitions"), "the log does not say rapport holds");
    cr_expect(env_log_has(&e, "Redis is full"), "the log does not say what OOM means");
    char *body = NULL;
    cr_expect_eq(env_http_call("127.0.0.1", mport, "GET", "/metrics", &body), 200);
    cr_expect(body && strstr(body, "\nrapport_redis_up 0\n"), "rapport_redis_up is not 0");
    free(body);

    /* Memory is freed: rapport resumes and loses nothing. */
    redisReply *r = redisCommand(rc, "CONFIG SET maxmemory 0");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    env_assert_matches_replay(&e, 120000);
    cr_expect(env_log_has(&e, "resuming partitions"));
    redisFree(rc);
    cr_expect_eq(proc_stop(pid, SIGTERM, 15000), 0);
    env_stop(&e);
}
