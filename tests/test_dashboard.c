/*
 * test_dashboard.c — `rapport dashboard` (report/dashboard.c,
 * cli/dashboard.c) against a real redis-server filled with known keys:
 * /api/report.json equals `rapport report --json`; the page, rendered by
 * a real headless Chromium, shows the numbers (a screenshot is kept in
 * build/artifacts/); a hostile narrative shows as text and does not run;
 * an empty Redis says "no history yet"; a Redis that goes away gives a
 * 503 and a banner, and comes back by itself; basic auth and HTTPS; a
 * field that is not an integer warns once, not on every refresh.
 *
 * Needs chromium (deploy/install-deps.sh installs it); installs nothing.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/redis_proc.h"
#include "report/dashboard.h"
#include "tests/support/history_fixture.h"
#include "tests/support/pipeline.h"
#include "tests/support/env.h"

static const char *bin(void) { return getenv("RAPPORT_BIN") ? getenv("RAPPORT_BIN") : "bin/rapport"; }

/* ---- HTTP client (libcurl) -------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n;
} buf_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    buf_t *b = ud;
    size_t n = size * nmemb;
    b->p = realloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* GETs url; returns the body (caller frees) and *status. */
static char *get(const char *url, const char *userpwd, long *status) {
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    buf_t b = {calloc(1, 1), 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L); /* the test's self-signed certificate */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    if (userpwd) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    return b.p;
}

/* ---- fixtures --------------------------------------------------------- */

typedef struct fx {
    redis_proc_t *redis;
    redisContext *c;
    history_fixture_t f;
    dashboard_t *d;
    char tmp[64];
} fx_t;

static dashboard_conf_t conf_for(const char *redis_url) {
    return (dashboard_conf_t){.listen = "127.0.0.1:0",
                              .redis_url = redis_url,
                              .redis_timeout_ms = 2000,
                              .report = {.prefix = "rapport:",
                                         .bucket_ms = HF_DAY,
                                         .days = 30,
                                         .alerts = REPORT_ALERTS,
                                         .lowest = REPORT_LOWEST}};
}

/* Starts Redis (filled unless narrative is NULL) and a dashboard on it. */
static void fx_start(fx_t *x, const char *narrative) {
    char err[256];
    memset(x, 0, sizeof(*x));
    strcpy(x->tmp, "/tmp/rapport-dash-XXXXXX");
    cr_assert_not_null(mkdtemp(x->tmp));
    x->redis = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(x->redis, "%s", err);
    x->c = redisConnect("127.0.0.1", redis_proc_port(x->redis));
    cr_assert(x->c && !x->c->err);
    if (narrative) history_fill(x->c, 7, narrative, &x->f);
    dashboard_conf_t dc = conf_for(redis_proc_url(x->redis));
    x->d = dashboard_start(&dc, err, sizeof(err));
    cr_assert_not_null(x->d, "%s", err);
}

static void fx_stop(fx_t *x) {
    dashboard_stop(x->d);
    redisFree(x->c);
    redis_proc_stop(x->redis);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->tmp);
    cr_expect_eq(system(cmd), 0);
}

/* `rapport report --json <args>`'s stdout (caller frees). */
static char *report_json_of(const fx_t *x, const char *args) {
    char cmd[512], out[128];
    snprintf(out, sizeof(out), "%s/report.json", x->tmp);
    snprintf(cmd, sizeof(cmd), "%s report --json -r %s %s >%s", bin(), redis_proc_url(x->redis),
             args, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    return env_slurp(out, NULL);
}

static void expect_same_json(const char *a, const char *b) {
    json_error_t e;
    json_t *ja = json_loads(a, 0, &e), *jb = json_loads(b, 0, &e);
    cr_assert(ja && jb, "not JSON: %s", e.text);
    cr_expect(json_equal(ja, jb), "differ:\n%s\n%s", a, b);
    json_decref(ja);
    json_decref(jb);
}

/* ---- headless Chromium ------------------------------------------------ */

static void need_chromium(void) {
    if (system("command -v chromium >/dev/null 2>&1") != 0)
        cr_assert_fail("chromium is not installed: run deploy/install-deps.sh");
}

/* Renders url in headless Chromium and returns the DOM after its scripts
 * ran (caller frees); with png, also a 1280x2000 screenshot there. */
static char *chromium_dom(const char *tmp, const char *url, const char *png) {
    need_chromium();
    char cmd[1024], out[128];
    snprintf(out, sizeof(out), "%s/dom.html", tmp);
    /* A profile of its own, so runs do not share state or a lock. */
    snprintf(cmd, sizeof(cmd),
             "timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run "
             "--user-data-dir=%s/chromium --virtual-time-budget=5000 --dump-dom '%s' >%s "
             "2>%s/chromium.log",
             tmp, url, out, tmp);
    cr_assert_eq(system(cmd), 0, "chromium --dump-dom failed; see %s/chromium.log", tmp);
    if (png) {
        snprintf(cmd, sizeof(cmd),
                 "timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run "
                 "--user-data-dir=%s/chromium --hide-scrollbars --virtual-time-budget=5000 "
                 "--window-size=1280,2000 --screenshot=%s '%s' >>%s/chromium.log 2>&1",
                 tmp, png, url, tmp);
        cr_assert_eq(system(cmd), 0, "chromium --screenshot failed; see %s/chromium.log", tmp);
        struct stat st;
        cr_assert(stat(png, &st) == 0 && st.st_size > 10000, "no screenshot at %s", png);
    }
    return env_slurp(out, NULL);
}

/* "1,234": the page's number format (en-GB). */
static void grouped(int64_t v, char *buf, size_t size) {
    char raw[32];
    snprintf(raw, sizeof(raw), "%lld", (long long)v);
    size_t n = strlen(raw), o = 0;
    for (size_t i = 0; i < n && o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
}

/* ---- tests ------------------------------------------------------------ */

Test(dashboard, api_equals_report_json, .timeout = 60) {
    fx_t x;
    fx_start(&x, "The bot sent me the same FAQ link three times.");
    char url[400];
    long status;
    snprintf(url, sizeof(url), "%sapi/report.json", dashboard_url(x.d));
    char *api = get(url, NULL, &status);
    cr_expect_eq(status, 200);
    char *cli = report_json_of(&x, "");
    expect_same_json(api, cli);
    free(api);
    free(cli);
    snprintf(url, sizeof(url), "%sapi/report.json?days=3", dashboard_url(x.d));
    api = get(url, NULL, &status);
    cr_expect_eq(status, 200);
    cli = report_json_of(&x, "--days 3");
    expect_same_json(api, cli);
    free(api);
    free(cli);
    static const char *const bad[] = {"0", "x", "100001", "", "3x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(url, sizeof(url), "%sapi/report.json?days=%s", dashboard_url(x.d), bad[i]);
        free(get(url, NULL, &status));
        cr_expect_eq(status, 400, "days=%s", bad[i]);
    }
    snprintf(url, sizeof(url), "%snope", dashboard_url(x.d));
    free(get(url, NULL, &status));
    cr_expect_eq(status, 404);
    fx_stop(&x);
}

Test(dashboard, page_in_chromium_shows_the_numbers, .timeout = 240) {
    fx_t x;
    fx_start(&x, "Finally spoke to a person. She found the double charge and refunded it.");
    cr_assert_eq(mkdir("build/artifacts", 0755) == 0 || errno == EEXIST, 1);
    char png[512];
    char *cwd = getcwd(NULL, 0);
    snprintf(png, sizeof(png), "%s/build/artifacts/dashboard.png", cwd);
    free(cwd);
    char *dom = chromium_dom(x.tmp, dashboard_url(x.d), png);
    char customers[32], at_risk[32], routed[32];
    grouped(x.f.org_customers, customers, sizeof(customers));
    grouped(x.f.org_at_risk, at_risk, sizeof(at_risk));
    grouped(x.f.org_route_human, routed, sizeof(routed));
    char mean[32], over[64];
    snprintf(mean, sizeof(mean), ">%.1f<", (double)x.f.org_ci_sum / 10000.0 / (double)x.f.org_customers);
    snprintf(over, sizeof(over), "mean over %s customers", customers);
    const char *want[] = {"Connection index now", mean, over, at_risk, routed,
                          "efficiency next to empathy", "Daily trends", "By channel",
                          "Finally spoke to a person. She found the double charge and refunded it.",
                          "3 unresolved AI contacts in a row; sentiment -0.70", "cust-000009",
                          "cust-000100", "Human", "Hybrid", "<svg", "<polyline"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(dom, want[i]), "\"%s\" not in the page", want[i]);
    /* The AI row: contacts summed over channels for the whole window. */
    int64_t ai = 0;
    for (int b = 0; b < HF_BUCKETS; b++)
        for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++) ai += x.f.v[b][ch][HANDLER_AI][RC_CONTACTS];
    char row[64], num[32];
    grouped(ai, num, sizeof(num));
    snprintf(row, sizeof(row), "<td>%s</td>", num);
    const char *ai_row = strstr(dom, "data-handler=\"AI\"");
    cr_assert_not_null(ai_row);
    cr_expect_not_null(strstr(ai_row, row), "AI contacts %s not in its row", num);
    cr_expect_null(strstr(dom, "id=\"banner\""), "no error banner");
    printf("dashboard screenshot: %s\n", png);
    fprintf(stderr, "dashboard screenshot: %s\n", png);
    free(dom);
    fx_stop(&x);
}

/* A narrative that would run if it were inserted as markup: it must show
 * as text, and the title its scripts would set must not change. */
Test(dashboard, hostile_narrative_shows_as_text, .timeout = 240) {
    fx_t x;
    fx_start(&x, "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
                 "<b>bold</b>");
    history_cmd(x.c, "ZADD rapport:scores 0.5 %s", "<img src=y onerror=\"document.title='pwned'\">");
    char *dom = chromium_dom(x.tmp, dashboard_url(x.d), NULL);
    cr_expect_not_null(strstr(dom, "<title>rapport — connection</title>"), "title changed");
    cr_expect_null(strstr(dom, "pwned</title>"));
    cr_expect_not_null(strstr(dom, "&lt;script&gt;document.title='pwned'&lt;/script&gt;"
                                   "&lt;img src=x onerror=\"document.title='pwned'\"&gt;"
                                   "&lt;b&gt;bold&lt;/b&gt;"),
                       "the narrative is not shown as text");
    cr_expect_not_null(strstr(dom, "&lt;img src=y onerror="), "the customer id as text");
    cr_expect_null(strstr(dom, "<img"), "no element made from data");
    cr_expect_null(strstr(dom, "<b>bold"), "no element made from data");
    free(dom);
    fx_stop(&x);
}

Test(dashboard, empty_redis_says_no_history_yet, .timeout = 240) {
    fx_t x;
    fx_start(&x, NULL);
    char url[400];
    long status;
    snprintf(url, sizeof(url), "%sapi/report.json", dashboard_url(x.d));
    char *api = get(url, NULL, &status);
    cr_expect_eq(status, 200);
    cr_expect_not_null(strstr(api, "\"from\": null"), "%s", api);
    free(api);
    char *dom = chromium_dom(x.tmp, dashboard_url(x.d), NULL);
    cr_expect_not_null(strstr(dom, "No history yet"), "no empty state");
    cr_expect_null(strstr(dom, "id=\"banner\""), "an empty Redis is not an error");
    free(dom);
    fx_stop(&x);
}

/* Redis goes away: 503 with the reason, a banner on the page; it comes
 * back: the same server answers 200 again. */
Test(dashboard, redis_down_banner_and_reconnect, .timeout = 240) {
    fx_t x;
    fx_start(&x, "words");
    char url[400], err[256];
    long status;
    snprintf(url, sizeof(url), "%sapi/report.json", dashboard_url(x.d));
    free(get(url, NULL, &status));
    cr_assert_eq(status, 200);
    redisFree(x.c);
    cr_assert_eq(redis_proc_signal(x.redis, SIGKILL), 0);
    char *body = get(url, NULL, &status);
    cr_expect_eq(status, 503);
    cr_expect_not_null(strstr(body, "\"error\""), "%s", body);
    free(body);
    char *dom = chromium_dom(x.tmp, dashboard_url(x.d), NULL);
    cr_expect_not_null(strstr(dom, "id=\"banner\""), "no banner");
    cr_expect_not_null(strstr(dom, "Cannot read Redis"), "no banner text");
    free(dom);
    cr_assert_eq(redis_proc_restart(x.redis, err, sizeof(err)), 0, "%s", err);
    x.c = redisConnect("127.0.0.1", redis_proc_port(x.redis));
    free(get(url, NULL, &status));
    cr_expect_eq(status, 200, "reconnected");
    fx_stop(&x);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(dashboard, basic_auth_and_https, .timeout = 120) {
    char err[256];
    redis_proc_t *redis = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(redis, "%s", err);
    dashboard_conf_t dc = conf_for(redis_proc_url(redis));
    dc.auth_user = "lead";
    dc.auth_password = "s3cret:with colon";
    dashboard_t *d = dashboard_start(&dc, err, sizeof(err));
    cr_assert_not_null(d, "%s", err);
    char url[400];
    long status;
    snprintf(url, sizeof(url), "%sapi/report.json", dashboard_url(d));
    free(get(url, NULL, &status));
    cr_expect_eq(status, 401, "no credentials");
    free(get(url, "lead:wrong", &status));
    cr_expect_eq(status, 401, "a wrong password");
    free(get(dashboard_url(d), "lead:s3cret:with colon", &status));
    cr_expect_eq(status, 200);
    dashboard_stop(d);

    /* HTTPS with a self-signed certificate made here. */
    char tmp[] = "/tmp/rapport-tls-XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
             tmp, tmp);
    cr_assert_eq(system(cmd), 0, "openssl");
    char path[128];
    snprintf(path, sizeof(path), "%s/cert.pem", tmp);
    char *cert = dashboard_read_file(path, err, sizeof(err));
    snprintf(path, sizeof(path), "%s/key.pem", tmp);
    char *key = dashboard_read_file(path, err, sizeof(err));
    cr_assert(cert && key, "%s", err);
    dc = conf_for(redis_proc_url(redis));
    dc.tls_cert_pem = cert;
    dc.tls_key_pem = key;
    d = dashboard_start(&dc, err, sizeof(err));
    cr_assert_not_null(d, "%s", err);
    cr_expect_eq(strncmp(dashboard_url(d), "https://", 8), 0, "%s", dashboard_url(d));
    snprintf(url, sizeof(url), "%sapi/report.json", dashboard_url(d));
    free(get(url, NULL, &status));
    cr_expect_eq(status, 200);
    dashboard_stop(d);
    free(cert);
    free(key);

    /* The command line: flags that go together, files that must exist. */
    snprintf(path, sizeof(path), "%s/auth", tmp);
    write_file(path, "nocolon\n");
    char out[128];
    snprintf(out, sizeof(out), "%s/out", tmp);
    const char *bad1[] = {"dashboard", "--tls-cert", "x.pem", NULL};
    cr_expect_eq(proc_run(out, bad1, 10000), 2);
    const char *bad2[] = {"dashboard", "--auth-file", "/nonexistent/auth", NULL};
    cr_expect_eq(proc_run(out, bad2, 10000), 2);
    const char *bad3[] = {"dashboard", "--auth-file", path, NULL};
    cr_expect_eq(proc_run(out, bad3, 10000), 2);
    const char *bad4[] = {"dashboard", "--listen", "nonsense", NULL};
    cr_expect_eq(proc_run(out, bad4, 10000), 1);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    redis_proc_stop(redis);
}

/* The command: prints its URL, serves until SIGTERM, asks for the
 * password of --auth-file, and warns once about a field that is not an
 * integer however often the page refreshes. */
Test(dashboard, command_warns_once_and_stops_on_sigterm, .timeout = 120) {
    fx_t x;
    fx_start(&x, "");
    history_cmd(x.c, "HSET rapport:history:%lld CHAT:AI:contacts twelve",
                (long long)x.f.s[HF_BUCKETS - 1]);
    char auth[128], log[128];
    snprintf(auth, sizeof(auth), "%s/auth", x.tmp);
    write_file(auth, "lead:pa ss\n");
    snprintf(log, sizeof(log), "%s/dashboard.log", x.tmp);
    const char *args[] = {"dashboard", "-r", redis_proc_url(x.redis), "--listen", "127.0.0.1:0",
                          "--auth-file", auth, NULL};
    pid_t pid = proc_start(log, args);
    char url[256] = "";
    for (int i = 0; i < 100 && !url[0]; i++) {
        clock_sleep_ms(100);
        char *text = env_slurp(log, NULL);
        const char *p = strstr(text, "rapport dashboard: http://");
        if (p) sscanf(p + 19, "%255s", url);
        free(text);
    }
    cr_assert(url[0], "no URL printed");
    long status;
    char api[300];
    snprintf(api, sizeof(api), "%sapi/report.json", url);
    for (int i = 0; i < 3; i++) {
        free(get(api, "lead:pa ss", &status));
        cr_expect_eq(status, 200);
    }
    cr_expect_eq(proc_stop(pid, SIGTERM, 10000), 0);
    char *text = env_slurp(log, NULL);
    const char *w = strstr(text, "not integers were skipped");
    cr_expect_not_null(w, "%s", text);
    if (w) cr_expect_null(strstr(w + 1, "not integers were skipped"), "warned more than once:\n%s", text);
    free(text);
    fx_stop(&x);
}
