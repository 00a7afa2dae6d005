/*
 * test_secrets.c — secrets stay out of sight: redis_url and
 * schema_registry_password from files and the environment (common/config.c),
 * with errors that name the key and the file but not the content; and
 * rapport's commands (`run`, `top`, `--help`, `config-doc`), its logs,
 * /metrics and /readyz never print a password given in a Redis URL.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/redis_proc.h"
#include "tests/support/env.h"

#define SECRET "TopSecret-4711"

static char tmpdir[64];

static void make_dir(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rapport-secrets-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const char *content) {
    static char path[8][128];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    return p;
}

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

Test(secrets, url_and_password_from_files, .init = make_dir, .fini = remove_dir) {
    char err[512];
    config_t *c = config_new();
    const char *url = write_file("url", "rediss://alice:" SECRET "@redis.example:6380\n");
    const char *pw = write_file("pw", SECRET "\r\n");
    cr_assert_eq(config_set(c, "redis_url_file", url, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(c->redis_url, "rediss://alice:" SECRET "@redis.example:6380");
    cr_assert_eq(config_set(c, "schema_registry_password_file", pw, err, sizeof(err)), 0, "%s",
                 err);
    cr_expect_str_eq(c->schema_registry_password, SECRET);
    /* A later redis_url (a flag after the file) wins. */
    cr_assert_eq(config_set(c, "redis_url", "redis://h", err, sizeof(err)), 0);
    cr_expect_str_eq(c->redis_url, "redis://h");
    config_free(c);
}

Test(secrets, file_errors_name_key_and_file_not_content, .init = make_dir, .fini = remove_dir) {
    char err[512], missing[128];
    snprintf(missing, sizeof(missing), "%s/absent", tmpdir);
    const struct {
        const char *path, *has;
    } cases[] = {
        {missing, "No such file"},
        {write_file("empty", "\n"), "is empty"},
        {write_file("two", "redis://:" SECRET "@h\nredis://x\n"), "one line"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t *c = config_new();
        cr_expect_eq(config_set(c, "redis_url_file", cases[i].path, err, sizeof(err)), -1);
        cr_expect(strstr(err, "redis_url_file"), "%s", err);
        cr_expect(strstr(err, cases[i].path), "%s", err);
        cr_expect(strstr(err, cases[i].has), "%s", err);
        cr_expect(!strstr(err, SECRET), "%s", err);
        cr_expect_str_eq(c->redis_url, "redis://127.0.0.1:6379", "changed on error");
        config_free(c);
    }
}

Test(secrets, environment_under_file_and_flags, .init = make_dir, .fini = remove_dir) {
    char err[512];
    setenv("RAPPORT_REDIS_URL", "redis://:" SECRET "@env-host", 1);
    setenv("RAPPORT_SCHEMA_REGISTRY_PASSWORD", SECRET, 1);
    config_t *c = config_new();
    cr_expect_str_eq(c->redis_url, "redis://:" SECRET "@env-host");
    cr_expect_str_eq(c->schema_registry_password, SECRET);
    const char *conf = write_file("rapport.conf", "redis_url = redis://file-host\n");
    cr_assert_eq(config_load_file(c, conf, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(c->redis_url, "redis://file-host");
    config_free(c);
    unsetenv("RAPPORT_REDIS_URL");
    unsetenv("RAPPORT_SCHEMA_REGISTRY_PASSWORD");
}

Test(secrets, tls_keys_need_rediss) {
    char err[512];
    config_t *c = config_new();
    cr_assert_eq(config_set(c, "schema_dir", "/tmp", err, sizeof(err)), 0);
    cr_assert_eq(config_set(c, "redis_tls_ca_file", "/etc/ssl/ca.pem", err, sizeof(err)), 0);
    cr_expect_eq(config_finish(c, err, sizeof(err)), -1);
    cr_expect(strstr(err, "rediss://"), "%s", err);
    cr_assert_eq(config_set(c, "redis_url", "rediss://h", err, sizeof(err)), 0);
    cr_expect_eq(config_finish(c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(config_set(c, "redis_tls_cert_file", "/c.pem", err, sizeof(err)), 0);
    cr_expect_eq(config_finish(c, err, sizeof(err)), -1);
    cr_expect(strstr(err, "redis_tls_key_file"), "%s", err);
    config_free(c);
}

/* ------------------------------------------------------------------ */
/* What the commands print                                             */

static const char *rapport_bin(void) {
    const char *b = getenv("RAPPORT_BIN");
    return b && *b ? b : "bin/rapport";
}

/* Starts rapport with argv (after the program name), stdout and stderr to
 * out_path. */
static pid_t start(const char *out_path, const char *const *args) {
    const char *argv[32] = {"rapport"};
    size_t n = 1;
    for (size_t i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0) _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(rapport_bin(), (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Runs rapport to its end (killed after 20 s). Returns its exit status. */
static int run_to_end(const char *out_path, const char *const *args) {
    pid_t pid = start(out_path, args);
    int status = 0;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) return WEXITSTATUS(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_fail("rapport %s did not end", args[0]);
    return -1;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
    FILE *f = arg;
    return fwrite(p, size, n, f);
}

/* Appends the body of GET http://127.0.0.1:port/path to out_path. */
static void http_get_to(int port, const char *path, const char *out_path) {
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    FILE *f = fopen(out_path, "a");
    cr_assert_not_null(f);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    fclose(f);
    cr_expect_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(secrets, no_command_prints_the_password, .init = make_dir, .fini = remove_dir,
     .timeout = 120) {
    char err[256], out[128], url[128], bad_url[128], metrics[64], sd[160];
    snprintf(out, sizeof(out), "%s/out.txt", tmpdir);
    /* A real Redis that wants another password: AUTH fails. */
    const char *rargs[] = {"--requirepass", "not-the-secret", NULL};
    redis_proc_t *redis = redis_proc_start(rargs, err, sizeof(err));
    cr_assert_not_null(redis, "%s", err);
    snprintf(url, sizeof(url), "redis://alice:" SECRET "@127.0.0.1:%d/0",
             redis_proc_port(redis));
    snprintf(bad_url, sizeof(bad_url), "redis://:" SECRET "@127.0.0.1:%d/x",
             redis_proc_port(redis));
    setenv("RAPPORT_REDIS_URL", url, 1);

    /* A bad setting, a bad URL, help and the docs. */
    cr_expect_eq(run_to_end(out, (const char *[]){"run", "-r", url, "-X", "flush_ms=often",
                                                  NULL}), 2);
    cr_expect_eq(run_to_end(out, (const char *[]){"run", "-r", bad_url, "-X", "schema_dir=/tmp",
                                                  "-X", "metrics_listen=", NULL}), 2);
    setenv("RAPPORT_SCHEMA_REGISTRY_PASSWORD", SECRET, 1);
    run_to_end(out, (const char *[]){"run", "--help", NULL});
    run_to_end(out, (const char *[]){"config-doc", NULL});
    unsetenv("RAPPORT_SCHEMA_REGISTRY_PASSWORD");
    /* top: a refused AUTH (as an ACL user, then the default user). */
    cr_expect_eq(run_to_end(out, (const char *[]){"top", "--once", NULL}), 1);
    cr_expect_eq(run_to_end(out, (const char *[]){"top", "--once", "-r", url, NULL}), 1);
    cr_expect_eq(run_to_end(out, (const char *[]){"top", "--once", "-r", bad_url, NULL}), 2);

    /* run, up for a while: Kafka unreachable, Redis refusing the password;
     * its logs, /metrics and /readyz. */
    char pw_url[128];
    snprintf(pw_url, sizeof(pw_url), "redis://:" SECRET "@127.0.0.1:%d", redis_proc_port(redis));
    setenv("RAPPORT_REDIS_URL", pw_url, 1);
    int mport = free_port();
    snprintf(metrics, sizeof(metrics), "metrics_listen=127.0.0.1:%d", mport);
    snprintf(sd, sizeof(sd), "schema_dir=%s", tmpdir);
    pid_t pid = start(out, (const char *[]){"run", "-b", "127.0.0.1:1", "-X", sd, "-X", metrics,
                                            "-X", "log_level=debug", NULL});
    usleep(2500000);
    http_get_to(mport, "/metrics", out);
    http_get_to(mport, "/readyz", out);
    http_get_to(mport, "/healthz", out);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);

    char *text = env_slurp(out, NULL);
    cr_expect(strstr(text, "rapport top"), "top printed nothing:\n%s", text);
    cr_expect(strstr(text, "flush_ms"), "the bad setting was not named:\n%s", text);
    cr_expect(strstr(text, "rapport_redis_up"), "no /metrics body:\n%s", text);
    cr_expect(strstr(text, "***"), "no URL shown redacted:\n%s", text);
    cr_expect(!strstr(text, SECRET), "the password was printed:\n%s", text);
    free(text);
    unsetenv("RAPPORT_REDIS_URL");
    redis_proc_stop(redis);
}
