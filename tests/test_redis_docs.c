/*
 * test_redis_docs.c — docs/REDIS.md cannot go stale: every `redis-cli`
 * line of its ```sh blocks runs, in order, against a Redis filled by
 * `rapport run` over generated events, and must exit 0 (redis-cli -e: an
 * error reply is a failure) and print something.
 *
 * The page's example values are replaced with real ones before each run:
 * the customer id cust-000042 with the customer of the lowest score, and
 * the alert id 1767225600000-0 with the stream's first entry.  Every
 * `redis-cli` in a line (pipelines and loops included) gets `-e -p PORT`.
 * Lines run with bash -o pipefail, so a failure anywhere in a pipeline
 * counts.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/env.h"

#define PARTS 3
#define DOC "docs/REDIS.md"
#define EXAMPLE_CUSTOMER "cust-000042"
#define EXAMPLE_ALERT_ID "1767225600000-0"

/* A growable string. */
typedef struct str {
    char *p;
    size_t n, cap;
} str_t;

static void str_add(str_t *s, const char *p, size_t n) {
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        cr_assert_not_null(s->p);
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = '\0';
}

/* s with every `from` replaced by `to`; caller frees. */
static char *replace_all(const char *s, const char *from, const char *to) {
    str_t out = {0};
    str_add(&out, "", 0);
    size_t fl = strlen(from);
    for (const char *p = s;;) {
        const char *hit = strstr(p, from);
        if (!hit) {
            str_add(&out, p, strlen(p));
            return out.p;
        }
        str_add(&out, p, (size_t)(hit - p));
        str_add(&out, to, strlen(to));
        p = hit + fl;
    }
}

/* The redis-cli lines of the ```sh blocks of path, in order (a trailing
 * backslash joins the next line).  Returns how many; *out is
 * NULL-terminated, caller frees each and the array. */
static size_t doc_commands(const char *path, char ***out) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s (tests run from the repository root)", path);
    char line[4096];
    bool in_sh = false;
    size_t n = 0;
    char **v = calloc(256, sizeof(*v));
    str_t cur = {0};
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "```", 3)) {
            in_sh = !in_sh && !strcmp(line, "```sh");
            continue;
        }
        if (!in_sh) continue;
        const char *s = line + strspn(line, " \t");
        if (!cur.n && strncmp(s, "redis-cli ", 10) != 0) continue;
        size_t len = strlen(s);
        bool more = len && s[len - 1] == '\\';
        str_add(&cur, s, more ? len - 1 : len);
        if (more) continue;
        cr_assert_lt(n, 255);
        v[n++] = cur.p;
        cur = (str_t){0};
    }
    fclose(f);
    cr_assert_eq(cur.n, 0, "a continued line at the end of %s", path);
    *out = v;
    return n;
}

/* Runs cmd with bash -o pipefail; returns the exit status, *output (caller
 * frees) gets stdout and stderr. */
static int run_shell(const char *cmd, char **output) {
    setenv("DOC_CMD", cmd, 1);
    FILE *p = popen("bash -o pipefail -c \"$DOC_CMD\" 2>&1", "r");
    cr_assert_not_null(p);
    str_t out = {0};
    str_add(&out, "", 0);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) str_add(&out, buf, n);
    int st = pclose(p);
    *output = out.p;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r') return false;
    return true;
}

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

/* A Redis filled by rapport over a mix of stories, late and bad events;
 * returns the rapport pid. */
static pid_t fill(env_t *e) {
    env_start(e, PARTS, NULL);
    pid_t pid = env_rapport(e, NULL);
    gen_conf_t gc = env_mix(5, 300);
    env_produce(e, &gc, 5000, NULL);
    env_assert_matches_replay(e, 90000);
    return pid;
}

Test(redis_docs, every_redis_cli_line_runs, .timeout = 240) {
    char **cmds;
    size_t n = doc_commands(DOC, &cmds);
    cr_assert_geq(n, 15, "only %zu redis-cli lines in %s", n, DOC);
    bool has_customer = false, has_alert = false;
    for (size_t i = 0; i < n; i++) {
        has_customer |= strstr(cmds[i], EXAMPLE_CUSTOMER) != NULL;
        has_alert |= strstr(cmds[i], EXAMPLE_ALERT_ID) != NULL;
    }
    cr_assert(has_customer && has_alert, "the page's examples use %s and %s", EXAMPLE_CUSTOMER,
              EXAMPLE_ALERT_ID);

    env_t e;
    pid_t pid = fill(&e);
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(e.redis));
    cr_assert(rc && !rc->err);
    char *customer = redis_first(rc, "ZRANGE rapport:scores 0 0");
    char *alert_id = redis_first(rc, "XRANGE rapport:alerts - + COUNT 1");
    cr_assert_not_null(customer);
    cr_assert_not_null(alert_id);
    redisFree(rc);

    char cli[64];
    snprintf(cli, sizeof(cli), "redis-cli -e -p %d", redis_proc_port(e.redis));
    for (size_t i = 0; i < n; i++) {
        char *a = replace_all(cmds[i], EXAMPLE_CUSTOMER, customer);
        char *b = replace_all(a, EXAMPLE_ALERT_ID, alert_id);
        char *cmd = replace_all(b, "redis-cli", cli);
        char *out;
        int st = run_shell(cmd, &out);
        cr_expect_eq(st, 0, "%s\n  exit %d: %s", cmds[i], st, out);
        cr_expect(!blank(out), "%s\n  printed nothing", cmds[i]);
        free(out);
        free(cmd);
        free(b);
        free(a);
    }
    for (size_t i = 0; i < n; i++) free(cmds[i]);
    free(cmds);
    free(customer);
    free(alert_id);
    cr_assert_eq(proc_stop(pid, SIGTERM, 10000), 0);
    env_stop(&e);
}

/* The same line runner catches a stale command: a sanity check of the
 * check itself. */
Test(redis_docs, a_wrong_command_fails) {
    char *out;
    cr_expect_neq(run_shell("redis-cli -e -p 1 PING", &out), 0, "no server");
    free(out);
    redis_proc_t *r;
    char err[256];
    r = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "redis-cli -e -p %d XGROUP CREATE nokey g 0", redis_proc_port(r));
    cr_expect_neq(run_shell(cmd, &out), 0, "an error reply fails: %s", out);
    free(out);
    snprintf(cmd, sizeof(cmd), "redis-cli -e -p %d HGET nokey f", redis_proc_port(r));
    cr_expect_eq(run_shell(cmd, &out), 0);
    cr_expect(blank(out), "a missing value prints nothing, which the check refuses");
    free(out);
    redis_proc_stop(r);
}
