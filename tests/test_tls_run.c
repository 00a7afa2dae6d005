/*
 * test_tls_run.c — `rapport run` over rediss:// as an ACL user, end to
 * end: a redis-server with a TLS port and a test CA (tests/support/pki.h),
 * the mock cluster, and Redis compared with a replay of the topic (the
 * scores exact).  Then the refusals: a server certificate from a CA that
 * is not trusted, and a wrong password, each a clear error in the log,
 * /readyz 503 and nothing written, while rapport keeps trying.
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

static pki_t pki;
static env_t env;
static int tls_port;

/* The env's redis-server with a TLS port too (no client certificates
 * asked), and the ACL user alice/secret on rapport:* keys.  The plain port
 * stays open to the default user, for the test's own checks. */
static void setup(void) {
    signal(SIGPIPE, SIG_IGN);
    pki_make(&pki);
    char port[16];
    tls_port = pki_free_port();
    snprintf(port, sizeof(port), "%d", tls_port);
    const char *args[] = {"--tls-port", port, "--tls-cert-file", pki.server_cert,
                          "--tls-key-file", pki.server_key, "--tls-ca-cert-file", pki.ca,
                          "--tls-auth-clients", "no", "--user", "alice", "on", ">secret",
                          "resetkeys", "~rapport:*", "resetchannels", "+@all", NULL};
    env_start(&env, 3, args);
}

static void teardown(void) {
    env_stop(&env);
    pki_remove(&pki);
}

static long long dbsize(void) {
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(env.redis));
    cr_assert(rc && !rc->err);
    redisReply *r = redisCommand(rc, "DBSIZE");
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

/* Starts rapport with url and ca_file, metrics on a free port. */
static pid_t start(const char *url, const char *ca_file, int *mport) {
    static char u[200], ca[200], m[64];
    *mport = pki_free_port();
    snprintf(u, sizeof(u), "redis_url=%s", url);
    snprintf(ca, sizeof(ca), "redis_tls_ca_file=%s", ca_file);
    snprintf(m, sizeof(m), "metrics_listen=127.0.0.1:%d", *mport);
    return env_rapport(&env, (const char *[]){u, ca, m, NULL});
}

/* Waits up to timeout_ms for the log to hold needle. */
static bool wait_log(const char *needle, int timeout_ms) {
    for (int64_t end = clock_ms() + timeout_ms; clock_ms() < end; clock_sleep_ms(100))
        if (env_log_has(&env, needle)) return true;
    return false;
}

/* The refused start: the log says why, /readyz is 503, rapport_redis_up
 * is 0, and rapport is still running and trying; nothing is written. */
static void expect_refused(pid_t pid, int mport, const char *why, const char *secret) {
    bool said = wait_log(why, 20000);
    if (!said) env_dump_log(&env);
    cr_expect(said, "the log does not say \"%s\"", why);
    char *body = NULL;
    cr_expect_eq(env_http_call("127.0.0.1", mport, "GET", "/readyz", &body), 503, "%s", body);
    free(body);
    body = NULL;
    cr_expect_eq(env_http_call("127.0.0.1", mport, "GET", "/metrics", &body), 200);
    cr_expect(body && strstr(body, "\nrapport_redis_up 0\n"), "%s", body ? body : "");
    free(body);
    cr_expect_eq(kill(pid, 0), 0, "rapport gave up instead of retrying");
    cr_expect_eq(dbsize(), 0, "something was written");
    cr_expect(!env_log_has(&env, secret), "the password is in the log");
    cr_expect_eq(proc_stop(pid, SIGTERM, 15000), 0);
}

Test(tls_run, acl_user_over_tls_scores_exactly, .init = setup, .fini = teardown,
     .timeout = 240) {
    char url[128];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", tls_port);
    int mport;
    pid_t pid = start(url, pki.ca, &mport);
    /* Produced before rapport catches up: flushes of thousands of
     * customers, requests of megabytes that TLS writes in pieces. */
    gen_conf_t gc = env_mix(21, 3000);
    env_produce(&env, &gc, 20000, NULL);
    env_assert_matches_replay(&env, 90000);
    char *body = NULL;
    cr_expect_eq(env_http_call("127.0.0.1", mport, "GET", "/readyz", &body), 200, "%s", body);
    free(body);
    cr_expect(!env_log_has(&env, "secret@"), "the password is in the log");
    cr_expect_eq(proc_stop(pid, SIGTERM, 15000), 0);
}

Test(tls_run, untrusted_ca_and_wrong_password_write_nothing, .init = setup, .fini = teardown,
     .timeout = 240) {
    gen_conf_t gc = env_mix(22, 50);
    env_produce(&env, &gc, 200, NULL);
    char url[128];
    int mport;
    /* The server's certificate is signed by a CA this side does not trust. */
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", tls_port);
    pid_t pid = start(url, pki.other_ca, &mport);
    expect_refused(pid, mport, "not trusted", "secret@");

    /* A wrong password: AUTH refused, named, the password never shown. */
    snprintf(url, sizeof(url), "rediss://alice:bad-pass-42@127.0.0.1:%d", tls_port);
    pid = start(url, pki.ca, &mport);
    expect_refused(pid, mport, "authentication failed for user alice", "bad-pass-42");
}
