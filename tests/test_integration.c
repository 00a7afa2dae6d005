/*
 * test_integration.c — the whole pipeline with real components: a
 * redis-server started on a free port, librdkafka's mock cluster hosted by
 * the test, events produced with the gen code, and `rapport run` as a child
 * process.  Redis is compared field by field with a reference replay of the
 * topic (tests/support/pipeline.c), and the DLQ with the generator's record
 * of what it spoiled.  The leaders' view (SPEC §9, §10) is also compared
 * with the independent model (tests/support/model.h), in Redis and as
 * `rapport report --json` and the dashboard's /api/report.json show it.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
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
#include "report/dashboard.h"
#include "report/report.h"
#include "tests/support/env.h"
#include "tests/support/model.h"

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

/* ---- the leaders' view against the model ----------------------------- */

/* Keeps the lines of the leaders' view (route, history, its index, org). */
static void leaders_only(lines_t *l) {
    static const char *const keep[] = {"route ", "history ", "history_index ", "org "};
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        bool k = false;
        for (size_t j = 0; j < 4 && !k; j++) k = !strncmp(l->v[i], keep[j], strlen(keep[j]));
        if (k)
            l->v[n++] = l->v[i];
        else
            free(l->v[i]);
    }
    l->n = n;
}

/* What the report must say over the buckets [from, to], from the model. */
typedef struct expected_report {
    int64_t from, to;
    int64_t seg[EVENT_CHANNEL_COUNT][EVENT_HANDLER_COUNT][RC_COUNT];
    bool seg_present[EVENT_CHANNEL_COUNT][EVENT_HANDLER_COUNT];
    int64_t expiry[ALERT_TYPE_COUNT];
    int64_t org[WINDOW_ORG_FIELDS];
} expected_report_t;

static int name_at(const char *const *names, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], s, len)) return i;
    return -1;
}

static void expect_report(model_t **m, int partitions, int days, int64_t bucket_ms,
                          expected_report_t *x) {
    memset(x, 0, sizeof(*x));
    x->to = -1;
    for (int p = 0; p < partitions; p++) {
        size_t n;
        const model_hist_t *h = model_history(m[p], &n);
        for (size_t i = 0; i < n; i++)
            if (h[i].bucket_start > x->to) x->to = h[i].bucket_start;
    }
    cr_assert_geq(x->to, 0, "the model has no history");
    x->from = x->to - (int64_t)(days - 1) * bucket_ms;
    for (int p = 0; p < partitions; p++) {
        size_t n;
        const model_hist_t *h = model_history(m[p], &n);
        for (size_t i = 0; i < n; i++) {
            if (h[i].bucket_start < x->from || h[i].bucket_start > x->to) continue;
            const char *f = h[i].field, *c1 = strchr(f, ':');
            cr_assert_not_null(c1, "history field %s", f);
            if (!strncmp(f, "EXPIRY:", 7)) {
                int t = name_at(alert_type_names, ALERT_TYPE_COUNT, c1 + 1, strlen(c1 + 1));
                cr_assert_geq(t, 0, "history field %s", f);
                x->expiry[t] += h[i].total;
                continue;
            }
            const char *c2 = strchr(c1 + 1, ':');
            cr_assert_not_null(c2, "history field %s", f);
            int ch = name_at(event_channel_names, EVENT_CHANNEL_COUNT, f, (size_t)(c1 - f));
            int hd = name_at(event_handler_names, EVENT_HANDLER_COUNT, c1 + 1,
                             (size_t)(c2 - c1 - 1));
            int k = name_at(report_counter_names, RC_COUNT, c2 + 1, strlen(c2 + 1));
            cr_assert(ch >= 0 && hd >= 0 && k >= 0, "history field %s", f);
            x->seg[ch][hd][k] += h[i].total;
            x->seg_present[ch][hd] = true;
        }
        int64_t o[WINDOW_ORG_FIELDS];
        model_org(m[p], o);
        for (int k = 0; k < WINDOW_ORG_FIELDS; k++) x->org[k] += o[k];
    }
}

static int64_t jint(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return json_integer_value(v);
}

/* Every counter the report shows of the history and the org equals the
 * model's: each segment, the handlers (summed over channels), expiry,
 * follow-through and org.  `what` names the source in failures. */
static void check_report(const char *text, const expected_report_t *x, const char *what) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "%s: not JSON: %s", what, je.text);
    cr_expect_eq(jint(j, "from"), x->from, "%s: from", what);
    cr_expect_eq(jint(j, "to"), x->to, "%s: to", what);

    bool seen[EVENT_CHANNEL_COUNT][EVENT_HANDLER_COUNT] = {{false}};
    json_t *segs = json_object_get(j, "segments"), *s;
    size_t i;
    json_array_foreach(segs, i, s) {
        const char *chs = json_string_value(json_object_get(s, "channel"));
        const char *hs = json_string_value(json_object_get(s, "handled_by"));
        cr_assert(chs && hs, "%s: segment without channel or handled_by", what);
        int ch = name_at(event_channel_names, EVENT_CHANNEL_COUNT, chs, strlen(chs));
        int hd = name_at(event_handler_names, EVENT_HANDLER_COUNT, hs, strlen(hs));
        cr_assert(ch >= 0 && hd >= 0, "%s: segment %s:%s", what, chs, hs);
        cr_expect(x->seg_present[ch][hd], "%s: segment %s:%s not in the model", what, chs, hs);
        seen[ch][hd] = true;
        for (int k = 0; k < RC_COUNT; k++)
            cr_expect_eq(jint(s, report_counter_names[k]), x->seg[ch][hd][k],
                         "%s: %s:%s:%s", what, chs, hs, report_counter_names[k]);
    }
    int64_t total[RC_COUNT] = {0};
    for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++)
        for (int hd = 0; hd < EVENT_HANDLER_COUNT; hd++) {
            cr_expect_eq(seen[ch][hd], x->seg_present[ch][hd], "%s: segment %s:%s", what,
                         event_channel_names[ch], event_handler_names[hd]);
            for (int k = 0; k < RC_COUNT; k++) total[k] += x->seg[ch][hd][k];
        }

    json_t *handlers = json_object_get(j, "handlers");
    cr_assert_eq(json_array_size(handlers), EVENT_HANDLER_COUNT, "%s: handlers", what);
    json_array_foreach(handlers, i, s) {
        const char *hs = json_string_value(json_object_get(s, "handled_by"));
        int hd = hs ? name_at(event_handler_names, EVENT_HANDLER_COUNT, hs, strlen(hs)) : -1;
        cr_assert_geq(hd, 0, "%s: handler %s", what, hs ? hs : "(none)");
        for (int k = 0; k < RC_COUNT; k++) {
            int64_t want = 0;
            for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++) want += x->seg[ch][hd][k];
            cr_expect_eq(jint(s, report_counter_names[k]), want, "%s: handler %s %s", what, hs,
                         report_counter_names[k]);
        }
    }
    json_t *tot = json_object_get(j, "total");
    for (int k = 0; k < RC_COUNT; k++)
        cr_expect_eq(jint(tot, report_counter_names[k]), total[k], "%s: total %s", what,
                     report_counter_names[k]);

    json_t *ex = json_object_get(j, "expiry");
    for (int t = 0; t < ALERT_TYPE_COUNT; t++)
        cr_expect_eq(jint(ex, alert_type_names[t]), x->expiry[t], "%s: expiry %s", what,
                     alert_type_names[t]);

    json_t *ft = json_object_get(j, "followthrough");
    cr_expect_eq(jint(ft, "needs_human"), total[RC_NEEDS_HUMAN], "%s: followthrough", what);
    cr_expect_eq(jint(ft, "followups"), total[RC_FOLLOWUPS], "%s: followthrough", what);

    json_t *org = json_object_get(j, "org");
    cr_expect_eq(jint(org, "customers"), x->org[0], "%s: org customers", what);
    cr_expect_eq(jint(org, "at_risk"), x->org[1], "%s: org at_risk", what);
    cr_expect_eq(jint(org, "route_human"), x->org[2], "%s: org route_human", what);
    cr_expect_eq(jint(org, "ci_sum"), x->org[3], "%s: org ci_sum", what);
    json_t *bins = json_object_get(org, "ci_bins");
    cr_assert_eq(json_array_size(bins), 10, "%s: ci_bins", what);
    for (int k = 0; k < 10; k++)
        cr_expect_eq(json_integer_value(json_array_get(bins, (size_t)k)), x->org[4 + k],
                     "%s: ci_bin:%d", what, k);
    json_decref(j);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    FILE *f = ud;
    return fwrite(ptr, size, nmemb, f);
}

/* GETs url into path; returns the HTTP status. */
static long http_get_to(const char *url, const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    fclose(f);
    cr_assert_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
    return status;
}

/* The whole pipeline over four partitions, then the leaders' view three
 * ways against the model, fed with the same events in partition order:
 * Redis (every route and route_reason, every history hash and the index
 * summed over partitions, the org from scratch), `rapport report --json`,
 * and the dashboard's /api/report.json. */
Test(integration, leaders_view_matches_model, .timeout = 240) {
    enum { P = 4 };
    char err[256];
    env_t e;
    env_start(&e, P, NULL);
    pid_t pid = env_rapport(&e, NULL);
    gen_conf_t gc = env_mix(4242, 500);
    env_produce(&e, &gc, 12000, NULL);
    /* Offsets first, then the same comparison as every pipeline test. */
    env_assert_matches_replay(&e, 60000);

    score_params_t sp;
    score_params_default(&sp);
    model_t *m[P];
    lines_t want = {0}, got = {0};
    cr_assert_eq(model_render(e.mk.brokers, TOPIC, P, e.schema_dir, &sp, &want, m, err,
                              sizeof(err)), 0, "%s", err);
    int port = redis_proc_port(e.redis);
    cr_assert_eq(redis_render(port, "rapport:", &got, err, sizeof(err)), 0, "%s", err);
    leaders_only(&got);
    cr_assert_gt(want.n, 1000, "the model should produce routes and history");
    int rc = lines_compare(&want, &got, "model vs redis");
    if (rc) env_dump_log(&e);
    cr_assert_eq(rc, 0, "Redis's leaders' view differs from the model's");
    lines_free(&want);
    lines_free(&got);

    /* The stream exercises what the report shows. */
    expected_report_t all;
    expect_report(m, P, 100000, sp.bucket_ms, &all);
    int64_t contacts = 0, followups = 0, routed = all.org[2];
    for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++)
        for (int hd = 0; hd < EVENT_HANDLER_COUNT; hd++) {
            contacts += all.seg[ch][hd][RC_CONTACTS];
            followups += all.seg[ch][hd][RC_FOLLOWUPS];
        }
    cr_assert_gt(contacts, 1000);
    cr_assert_gt(followups, 0, "no follow-up in the stream");
    cr_assert_gt(routed, 0, "nobody routed to a person");
    cr_assert_gt(all.expiry[ALERT_CHURN_RISK] + all.expiry[ALERT_RECOVERED] +
                     all.expiry[ALERT_NEEDS_HUMAN], 0, "no expiry alert in the stream");

    /* `rapport report --json` over everything and over the last 3 buckets. */
    char url[128], out[256], cmd[512];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    snprintf(out, sizeof(out), "%s/report.json", e.dir);
    const int days[] = {100000, 3};
    for (size_t i = 0; i < 2; i++) {
        char d[16];
        snprintf(d, sizeof(d), "%d", days[i]);
        const char *args[] = {"report", "-r", url, "--json", "--days", d, NULL};
        unlink(out);
        cr_assert_eq(proc_run_io(NULL, out, NULL, args, 30000), 0, "rapport report --days %d",
                     days[i]);
        expected_report_t x;
        expect_report(m, P, days[i], sp.bucket_ms, &x);
        char *text = env_slurp(out, NULL);
        snprintf(cmd, sizeof(cmd), "rapport report --json --days %d", days[i]);
        check_report(text, &x, cmd);
        free(text);
    }

    /* The dashboard's JSON, from a real listener. */
    dashboard_conf_t dc = {.listen = "127.0.0.1:0",
                           .redis_url = url,
                           .redis_timeout_ms = 2000,
                           .report = {.prefix = "rapport:",
                                      .bucket_ms = sp.bucket_ms,
                                      .days = sp.window_buckets,
                                      .alerts = REPORT_ALERTS,
                                      .lowest = REPORT_LOWEST}};
    dashboard_t *dash = dashboard_start(&dc, err, sizeof(err));
    cr_assert_not_null(dash, "%s", err);
    for (size_t i = 0; i < 2; i++) {
        char api[300];
        snprintf(api, sizeof(api), "%sapi/report.json?days=%d", dashboard_url(dash), days[i]);
        cr_assert_eq(http_get_to(api, out), 200, "%s", api);
        expected_report_t x;
        expect_report(m, P, days[i], sp.bucket_ms, &x);
        char *text = env_slurp(out, NULL);
        check_report(text, &x, api);
        free(text);
    }
    dashboard_stop(dash);

    for (int p = 0; p < P; p++) model_free(m[p]);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
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
    /* The offsets Redis holds are committed to the group for lag tools
     * (once a second, and when leaving), SPEC §6. */
    int64_t committed[PARTS];
    cr_assert_eq(kafka_committed_offsets(e.mk.brokers, "rapport", TOPIC, PARTS, committed), 0);
    for (int p = 0; p < PARTS; p++)
        cr_expect_eq(committed[p], end[p], "partition %d: committed %" PRId64 ", end %" PRId64, p,
                     committed[p], end[p]);
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
