/*
 * test_report.c — `rapport report` (report/report.c, cli/report.c)
 * against a real redis-server filled with known leaders'-view keys in the
 * layout of docs/SPEC.md §9–§10: every counter of --json equals the sums
 * the test computes, for the default window and for --days; a field that
 * is not an integer is skipped with one warning; an empty Redis, an
 * overflowing sum, an unreachable Redis and bad usage.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/redis_proc.h"
#include "tests/support/history_fixture.h"
#include "tests/support/env.h"

typedef struct run {
    int status;
    char *out;  /* stdout */
    char *err;  /* stderr */
} run_t;

/* Runs `$RAPPORT_BIN report <args>` (args: one shell-safe string). */
static run_t run_report(const char *args) {
    const char *bin = getenv("RAPPORT_BIN") ? getenv("RAPPORT_BIN") : "bin/rapport";
    char dir[] = "/tmp/rapport-report-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s report %s >%s/out 2>%s/err", bin, args, dir, dir);
    int st = system(cmd);
    run_t r = {.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1};
    char p[128];
    snprintf(p, sizeof(p), "%s/out", dir);
    r.out = env_slurp(p, NULL);
    unlink(p);
    snprintf(p, sizeof(p), "%s/err", dir);
    r.err = env_slurp(p, NULL);
    unlink(p);
    rmdir(dir);
    return r;
}

static void run_free(run_t *r) {
    free(r->out);
    free(r->err);
}

static json_t *parse(const run_t *r) {
    json_error_t e;
    json_t *j = json_loads(r->out, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %s\nstderr: %s", e.text, r->out, r->err);
    return j;
}

static int64_t jint(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_integer(v), "%s is not an integer", k);
    return json_integer_value(v);
}

static int index_of(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    cr_assert_fail("unknown name %s", s);
    return -1;
}

/* Every segment, handler and expiry counter equals the fixture's sums
 * over [from, to]; segments absent from every bucket are absent. */
static void check_sums(json_t *j, const history_fixture_t *f, int64_t from, int64_t to) {
    cr_assert_eq(jint(j, "from"), from);
    cr_assert_eq(jint(j, "to"), to);
    json_t *segs = json_object_get(j, "segments");
    size_t i;
    json_t *s;
    int seen[EVENT_CHANNEL_COUNT][EVENT_HANDLER_COUNT] = {{0}};
    json_array_foreach(segs, i, s) {
        int ch = index_of(event_channel_names, EVENT_CHANNEL_COUNT,
                          json_string_value(json_object_get(s, "channel")));
        int h = index_of(event_handler_names, EVENT_HANDLER_COUNT,
                         json_string_value(json_object_get(s, "handled_by")));
        seen[ch][h] = 1;
        for (int k = 0; k < RC_COUNT; k++)
            cr_expect_eq(jint(s, report_counter_names[k]), history_sum(f, from, to, ch, h, k),
                         "%s:%s:%s", event_channel_names[ch], event_handler_names[h],
                         report_counter_names[k]);
    }
    int64_t nsegs = 0;
    for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++)
        for (int h = 0; h < EVENT_HANDLER_COUNT; h++) {
            int present = 0;
            for (int b = 0; b < HF_BUCKETS; b++)
                for (int k = 0; k < RC_COUNT; k++)
                    present |= f->s[b] >= from && f->s[b] <= to && f->v[b][ch][h][k] != 0;
            if (present) cr_expect(seen[ch][h], "segment %d/%d missing", ch, h);
            nsegs += seen[ch][h];
        }
    cr_expect_gt(nsegs, 5, "the fixture has segments");
    json_t *hs = json_object_get(j, "handlers");
    cr_assert_eq(json_array_size(hs), EVENT_HANDLER_COUNT);
    for (int h = 0; h < EVENT_HANDLER_COUNT; h++) {
        json_t *o = json_array_get(hs, (size_t)h);
        cr_expect_str_eq(json_string_value(json_object_get(o, "handled_by")),
                         event_handler_names[h]);
        for (int k = 0; k < RC_COUNT; k++) {
            int64_t want = 0;
            for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++)
                want += history_sum(f, from, to, ch, h, k);
            cr_expect_eq(jint(o, report_counter_names[k]), want, "%s %s",
                         event_handler_names[h], report_counter_names[k]);
        }
    }
    static const char *const ex[3] = {"churn_risk", "recovered", "needs_human"};
    for (int t = 0; t < 3; t++) {
        int64_t want = 0;
        for (int b = 0; b < HF_BUCKETS; b++)
            if (f->s[b] >= from && f->s[b] <= to) want += f->expiry[b][t];
        cr_expect_eq(jint(json_object_get(j, "expiry"), ex[t]), want, "EXPIRY:%s", ex[t]);
    }
    size_t nb = 0;
    for (int b = 0; b < HF_BUCKETS; b++) nb += f->s[b] >= from && f->s[b] <= to;
    cr_expect_eq(json_array_size(json_object_get(j, "daily")), nb, "one daily entry per hash");
}

typedef struct fx {
    redis_proc_t *redis;
    redisContext *c;
    history_fixture_t f;
    char args[256];
} fx_t;

static void fx_start(fx_t *x, const char *narrative) {
    char err[256];
    x->redis = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(x->redis, "%s", err);
    x->c = redisConnect("127.0.0.1", redis_proc_port(x->redis));
    cr_assert(x->c && !x->c->err);
    if (narrative) history_fill(x->c, 42, narrative, &x->f);
    snprintf(x->args, sizeof(x->args), "-r %s", redis_proc_url(x->redis));
}

static void fx_stop(fx_t *x) {
    redisFree(x->c);
    redis_proc_stop(x->redis);
}

Test(report, json_sums_every_counter_over_the_window, .timeout = 60) {
    fx_t x;
    fx_start(&x, "I was charged twice.");
    int64_t to = x.f.s[HF_BUCKETS - 1];
    /* Default window (30 days): every bucket. */
    strcat(x.args, " --json");
    run_t r = run_report(x.args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(&r);
    cr_expect_eq(jint(j, "days"), 30);
    cr_expect_eq(jint(j, "bucket_ms"), HF_DAY);
    check_sums(j, &x.f, to - 29 * HF_DAY, to);
    json_t *org = json_object_get(j, "org");
    cr_expect_eq(jint(org, "customers"), x.f.org_customers);
    cr_expect_eq(jint(org, "at_risk"), x.f.org_at_risk);
    cr_expect_eq(jint(org, "route_human"), x.f.org_route_human);
    cr_expect_eq(jint(org, "ci_sum"), x.f.org_ci_sum);
    for (int k = 0; k < 10; k++)
        cr_expect_eq(json_integer_value(json_array_get(json_object_get(org, "ci_bins"), (size_t)k)),
                     x.f.org_bins[k]);
    json_t *alerts = json_object_get(j, "alerts");
    cr_assert_eq(json_array_size(alerts), 3);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(alerts, 0), "narrative")),
                     "I was charged twice.", "newest first");
    json_t *lowest = json_object_get(j, "lowest");
    cr_assert_eq(json_array_size(lowest), 10);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(lowest, 0), "customer_id")),
                     "cust-000100");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(lowest, 0), "route")),
                     "human");
    cr_expect_null(strstr(r.err, "level=warn"), "no warning: %s", r.err);
    json_decref(j);
    run_free(&r);
    fx_stop(&x);
}

/* --days N: the N buckets ending with the newest, a missing day
 * included in the count. */
Test(report, days_selects_the_buckets, .timeout = 60) {
    fx_t x;
    fx_start(&x, "");
    int64_t to = x.f.s[HF_BUCKETS - 1];
    static const int days[] = {1, 2, 5, 6, 7, 13, 100};
    for (size_t i = 0; i < sizeof(days) / sizeof(days[0]); i++) {
        char a[300];
        snprintf(a, sizeof(a), "%s --json --days %d", x.args, days[i]);
        run_t r = run_report(a);
        cr_assert_eq(r.status, 0, "%s", r.err);
        json_t *j = parse(&r);
        cr_expect_eq(jint(j, "days"), days[i]);
        check_sums(j, &x.f, to - (days[i] - 1) * HF_DAY, to);
        json_decref(j);
        run_free(&r);
    }
    /* window_buckets from the configuration, bucket_ms too */
    char a[300];
    snprintf(a, sizeof(a), "%s --json -X window_buckets=3", x.args);
    run_t r = run_report(a);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(&r);
    check_sums(j, &x.f, to - 2 * HF_DAY, to);
    json_decref(j);
    run_free(&r);
    fx_stop(&x);
}

Test(report, non_integer_field_skipped_with_one_warning, .timeout = 60) {
    fx_t x;
    fx_start(&x, "");
    int64_t to = x.f.s[HF_BUCKETS - 1];
    history_cmd(x.c, "HSET rapport:history:%lld CHAT:AI:contacts 12x CHAT:AI:resolved 1.5 "
                     "CHAT:AI:unresolved \"\" NOT:A:field 3",
                (long long)to);
    for (int k = RC_CONTACTS; k <= RC_UNRESOLVED; k++)
        x.f.v[HF_BUCKETS - 1][CHANNEL_CHAT][HANDLER_AI][k] = 0;
    history_cmd(x.c, "HSET rapport:org at_risk lots");
    x.f.org_at_risk = 0;
    char a[300];
    snprintf(a, sizeof(a), "%s --json", x.args);
    run_t r = run_report(a);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(&r);
    check_sums(j, &x.f, to - 29 * HF_DAY, to);
    cr_expect_eq(jint(json_object_get(j, "org"), "at_risk"), 0);
    cr_expect_eq(jint(j, "skipped_fields"), 4);
    const char *w = strstr(r.err, "level=warn");
    cr_assert_not_null(w, "a warning: %s", r.err);
    cr_expect_null(strstr(w + 1, "level=warn"), "only one warning: %s", r.err);
    cr_expect_not_null(strstr(r.err, "count=4"), "%s", r.err);
    json_decref(j);
    run_free(&r);
    fx_stop(&x);
}

Test(report, empty_redis, .timeout = 60) {
    fx_t x;
    fx_start(&x, NULL);
    char a[300];
    snprintf(a, sizeof(a), "%s --json", x.args);
    run_t r = run_report(a);
    cr_assert_eq(r.status, 0, "%s", r.err);
    json_t *j = parse(&r);
    cr_expect(json_is_null(json_object_get(j, "from")));
    cr_expect(json_is_null(json_object_get(j, "to")));
    cr_expect_eq(json_array_size(json_object_get(j, "segments")), 0);
    cr_expect_eq(json_array_size(json_object_get(j, "daily")), 0);
    json_t *hs = json_object_get(j, "handlers");
    cr_assert_eq(json_array_size(hs), 4);
    cr_expect_eq(jint(json_array_get(hs, 0), "contacts"), 0);
    cr_expect(json_is_null(json_object_get(json_array_get(hs, 0), "resolution_rate")));
    cr_expect_eq(jint(json_object_get(j, "org"), "customers"), 0);
    json_decref(j);
    run_free(&r);
    run_t t = run_report(x.args);
    cr_assert_eq(t.status, 0, "%s", t.err);
    cr_expect_not_null(strstr(t.out, "no history yet"), "%s", t.out);
    run_free(&t);
    fx_stop(&x);
}

/* The table for people names what matters, cut to 100 columns. */
Test(report, text_for_people, .timeout = 60) {
    fx_t x;
    fx_start(&x, "Charged twice\033[2J and the bot sent a FAQ link.");
    run_t r = run_report(x.args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *want[] = {"THE ORGANISATION NOW", "AI, HUMAN AND HYBRID", "BY CHANNEL",
                          "FOLLOW-THROUGH", "LATEST ALERTS", "HUMAN", "HYBRID", "at risk",
                          "routed to a person", "cust-000009",
                          "3 unresolved AI contacts in a row; sentiment -0.70",
                          "Charged twice?[2J and the bot sent a FAQ link."};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(r.out, want[i]), "\"%s\" not in:\n%s", want[i], r.out);
    cr_expect_null(strchr(r.out, '\033'), "no terminal escape from Redis reaches the terminal");
    for (const char *line = r.out; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line), cols = 0;
        for (size_t i = 0; i < n; i++) cols += ((unsigned char)line[i] & 0xC0) != 0x80;
        cr_expect_leq(cols, 100, "line wider than 100 columns: %.*s", (int)n, line);
        line += n + (nl ? 1 : 0);
    }
    printf("%s", r.out);
    run_free(&r);
    fx_stop(&x);
}

Test(report, overflow_is_an_error, .timeout = 60) {
    fx_t x;
    fx_start(&x, NULL);
    history_cmd(x.c, "HSET rapport:history:0 CHAT:AI:aht_sum 9000000000000000000");
    history_cmd(x.c, "HSET rapport:history:86400000 CHAT:AI:aht_sum 9000000000000000000");
    history_cmd(x.c, "ZADD rapport:history_index 0 0 86400000 86400000");
    char a[300];
    snprintf(a, sizeof(a), "%s --json", x.args);
    run_t r = run_report(a);
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, "overflows"), "%s", r.err);
    run_free(&r);
    fx_stop(&x);
}

Test(report, unreachable_redis_and_bad_usage, .timeout = 60) {
    run_t r = run_report("-r redis://127.0.0.1:1 --json");
    cr_expect_eq(r.status, 1);
    cr_expect_not_null(strstr(r.err, "127.0.0.1:1"), "%s", r.err);
    run_free(&r);
    static const char *const bad[] = {"--days 0", "--days x", "-X nosuchkey=1", "extra",
                                      "--nosuch", "-X bucket_ms=0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run_t b = run_report(bad[i]);
        cr_expect_eq(b.status, 2, "%s: %s", bad[i], b.err);
        run_free(&b);
    }
}

/* Bytes that are not UTF-8 in an alert (a customer id, a narrative) keep
 * the JSON valid: each bad byte becomes U+FFFD, the rest is kept. */
Test(report, invalid_utf8_from_redis_stays_valid_json, .timeout = 60) {
    fx_t x;
    fx_start(&x, NULL);
    static const char narr[] = "caf\xc3\xa9 \xff\xfe ok \xed\xa0\x80 \xc0\xaf end";
    redisReply *r = redisCommand(x.c, "XADD rapport:alerts * type needs_human customer_id %b "
                                      "narrative %b",
                                 "c\x80x", (size_t)3, narr, sizeof(narr) - 1);
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    freeReplyObject(r);
    char a[300];
    snprintf(a, sizeof(a), "%s --json", x.args);
    run_t out = run_report(a);
    cr_assert_eq(out.status, 0, "%s", out.err);
    json_t *j = parse(&out);
    json_t *al = json_array_get(json_object_get(j, "alerts"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(al, "customer_id")), "c\xef\xbf\xbdx");
    cr_expect_str_eq(json_string_value(json_object_get(al, "narrative")),
                     "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd ok \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                     "\xef\xbf\xbd\xef\xbf\xbd end");
    json_decref(j);
    run_free(&out);
    fx_stop(&x);
}
