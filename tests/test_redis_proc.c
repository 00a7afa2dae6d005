/*
 * test_redis_proc.c — the private redis-server launcher (common/redis_proc.c):
 * it answers, it cleans up after itself, it survives kill and restart, and
 * it explains a missing redis-server.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/redis_proc.h"

static bool answers_ping(int port) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

static bool dir_exists(const char *d) {
    struct stat st;
    return stat(d, &st) == 0 && S_ISDIR(st.st_mode);
}

Test(redis_proc, start_answers_and_stop_cleans_up, .timeout = 30) {
    char err[256];
    redis_proc_t *p = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    int port = redis_proc_port(p);
    pid_t pid = redis_proc_pid(p);
    char dir[4096], url[64];
    snprintf(dir, sizeof(dir), "%s", redis_proc_dir(p));
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    cr_expect_str_eq(redis_proc_url(p), url);
    cr_expect(answers_ping(port));
    cr_expect(dir_exists(dir));

    redis_proc_stop(p);
    cr_expect(!answers_ping(port), "still answering after stop");
    cr_expect(!dir_exists(dir), "%s left behind", dir);
    cr_expect(kill(pid, 0) == -1 && errno == ESRCH, "pid %d still exists (zombie?)", (int)pid);
    redis_proc_stop(NULL);
}

Test(redis_proc, two_servers_get_different_ports, .timeout = 30) {
    char err[256];
    redis_proc_t *a = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(a, "%s", err);
    redis_proc_t *b = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(b, "%s", err);
    cr_expect_neq(redis_proc_port(a), redis_proc_port(b));
    cr_expect_str_neq(redis_proc_dir(a), redis_proc_dir(b));
    redis_proc_stop(a);
    redis_proc_stop(b);
}

Test(redis_proc, kill_restart_keeps_aof_data, .timeout = 30) {
    char err[256];
    const char *const args[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    redis_proc_t *p = redis_proc_start(args, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    int port = redis_proc_port(p);
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    cr_assert(c && !c->err);
    freeReplyObject(redisCommand(c, "SET survivor yes"));
    redisFree(c);

    pid_t old = redis_proc_pid(p);
    cr_assert_eq(redis_proc_signal(p, SIGKILL), 0);
    cr_expect_eq(redis_proc_pid(p), -1);
    cr_expect(kill(old, 0) == -1, "killed server not reaped");
    cr_expect(!answers_ping(port));
    cr_expect_eq(redis_proc_signal(p, SIGCONT), -1, "signal to a dead server must fail");

    cr_assert_eq(redis_proc_restart(p, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(redis_proc_port(p), port);
    cr_expect_neq(redis_proc_restart(p, err, sizeof(err)), 0, "restart while running");
    c = redisConnectWithTimeout("127.0.0.1", port, tv);
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, "GET survivor");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    cr_expect_str_eq(r->str, "yes");
    freeReplyObject(r);
    redisFree(c);
    redis_proc_stop(p);
}

Test(redis_proc, stop_works_on_a_stopped_server, .timeout = 30) {
    char err[256];
    redis_proc_t *p = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    pid_t pid = redis_proc_pid(p);
    cr_assert_eq(redis_proc_signal(p, SIGSTOP), 0);
    redis_proc_stop(p);
    cr_expect(kill(pid, 0) == -1 && errno == ESRCH);
}

Test(redis_proc, bad_argument_is_explained, .timeout = 30) {
    char err[256] = "";
    const char *const args[] = {"--no-such-option", "1", NULL};
    redis_proc_t *p = redis_proc_start(args, err, sizeof(err));
    cr_expect_null(p);
    cr_expect(strstr(err, "exited") != NULL, "errstr: %s", err);
    redis_proc_stop(p);
}

Test(redis_proc, missing_redis_server_says_what_to_do) {
    char err[256] = "";
    setenv("PATH", "/nonexistent", 1);
    redis_proc_t *p = redis_proc_start(NULL, err, sizeof(err));
    cr_expect_null(p);
    cr_expect(strstr(err, "deploy/install-deps.sh") != NULL, "errstr: %s", err);
    redis_proc_stop(p);
}
