/*
 * test_top.c — `rapport top` (cli/top.c) against a Redis filled by
 * `rapport run` over generated events: --once prints one frame with the
 * partitions, the lowest score and the newest alert (with its reason),
 * without terminal escapes; an unreachable Redis and bad usage give exit
 * statuses 1 and 2.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/env.h"

#define PARTS 3

/* The first reply string of a command (caller frees); NULL when none. */
static char *redis_first(redisContext *rc, const char *cmd) {
    redisReply *r = redisCommand(rc, cmd);
    cr_assert_not_null(r);
    const redisReply *e = r;
    while (e->type == REDIS_REPLY_ARRAY && e->elements > 0) e = e->element[0];
    char *s = e->type == REDIS_REPLY_STRING ? strdup(e->str) : NULL;
    freeReplyObject(r);
    return s;
}

/* One frame, read from Redis as rapport left it. */
Test(top, once_shows_scores_alerts_and_partitions, .timeout = 240) {
    env_t e;
    env_start(&e, PARTS, NULL);
    pid_t pid = env_rapport(&e, NULL);
    gen_conf_t gc = env_mix(5, 300);
    env_produce(&e, &gc, 5000, NULL);
    env_assert_matches_replay(&e, 90000);
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(e.redis));
    cr_assert(rc && !rc->err);
    char *lowest = redis_first(rc, "ZRANGE rapport:scores 0 0");
    char *newest_type = NULL, *newest_customer = NULL, *newest_reason = NULL;
    redisReply *x = redisCommand(rc, "XREVRANGE rapport:alerts + - COUNT 1");
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
    const redisReply *kv = x->element[0]->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const char *k = kv->element[i]->str, *v = kv->element[i + 1]->str;
        if (!strcmp(k, "type")) newest_type = strdup(v);
        if (!strcmp(k, "customer_id")) newest_customer = strdup(v);
        if (!strcmp(k, "reason")) newest_reason = strdup(v);
    }
    freeReplyObject(x);
    redisFree(rc);

    char out[128];
    snprintf(out, sizeof(out), "%s/top.out", e.dir);
    const char *args[] = {"top", "--once", "-r", redis_proc_url(e.redis), NULL};
    cr_assert_eq(proc_run(out, args, 10000), 0);
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    const char *want[] = {"lowest connection index", "newest alerts", lowest, newest_type,
                          newest_customer, newest_reason, "interactions:0", "interactions:1",
                          "interactions:2", "customers scored"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert_not_null(want[i]);
        cr_expect_not_null(strstr(text, want[i]), "\"%s\" not in:\n%s", want[i], text);
    }
    cr_expect_null(strstr(text, "\033"), "no terminal escapes when not on a terminal");

    /* An unreachable Redis: exit 1 with a message; bad usage: exit 2. */
    const char *down[] = {"top", "--once", "-r", "redis://127.0.0.1:1", NULL};
    cr_expect_eq(proc_run(out, down, 10000), 1);
    const char *bad[] = {"top", "--scores", "0", NULL};
    cr_expect_eq(proc_run(out, bad, 10000), 2);

    free(lowest);
    free(newest_type);
    free(newest_customer);
    free(newest_reason);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    env_stop(&e);
}
