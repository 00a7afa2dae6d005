/*
 * test_config.c — the configuration file parser (common/config.c,
 * config_load_file()): lines of any length, bytes that a text file should
 * not hold, and the inputs that `make fuzz` (fuzz/fuzz_config.c) found.
 * Each case writes a file, loads it over the defaults and checks either
 * the keys it set or the error.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

/* Loads `len` bytes of file text into a fresh config.  Returns the config
 * (caller frees) and the result in *rc, the error in err. */
static config_t *load(const char *text, size_t len, int *rc, char *err, size_t err_size) {
    char path[] = "/tmp/rapport-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    config_t *c = config_new();
    cr_assert_not_null(c);
    err[0] = '\0';
    *rc = config_load_file(c, path, err, err_size);
    unlink(path);
    return c;
}

/* A line longer than any buffer is one line: its tail is not read as a
 * line of its own (here, one that would have set redis_url). */
Test(config, long_line_is_one_line) {
    size_t n = 10000;
    char *text = malloc(n + 100);
    cr_assert_not_null(text);
    size_t o = (size_t)sprintf(text, "prefix = ");
    while (o < 4095) text[o++] = 'p';
    o += (size_t)sprintf(text + o, "redis_url = redis://elsewhere:1\n");
    while (o < n) text[o++] = 'q';
    o += (size_t)sprintf(text + o, "\ntopic = t2\n");
    /* the second line: "qqq…" has no '=' and must be refused as such */
    int rc;
    char err[512];
    config_t *c = load(text, o, &rc, err, sizeof err);
    cr_expect_eq(rc, -1);
    cr_expect(strstr(err, ":2: expected key = value") != NULL, "%s", err);
    cr_expect_str_eq(c->redis_url, "redis://127.0.0.1:6379", "the tail of line 1 set a key");
    cr_expect_eq(strlen(c->prefix), 4095 - strlen("prefix = ") + strlen("redis_url = redis://elsewhere:1"));
    config_free(c);

    /* without the second line the file loads, line 1 whole */
    text[n] = '\0';
    char *nl = strchr(text, '\n');
    config_t *c2 = load(text, (size_t)(nl - text) + 1, &rc, err, sizeof err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect_str_eq(c2->redis_url, "redis://127.0.0.1:6379");
    config_free(c2);
    free(text);
}

Test(config, file_cases) {
    struct {
        const char *name;
        const char *text;
        size_t len;              /* 0: strlen(text) */
        int want_rc;
        const char *err_has;     /* when want_rc is -1 */
    } t[] = {
        {"comments, blanks, quotes, CRLF",
         "  # c\n\n\ttopic = \"t\"  \r\nflush_ms=7\nkafka.client.id = x\n", 0, 0, NULL},
        {"no equals", "topic\n", 0, -1, ":1: expected key = value"},
        {"unknown key", "\nnope = 1\n", 0, -1, ":2: nope: unknown key"},
        {"NUL byte", "topic = a\0b\n", 12, -1, ":1: a NUL byte in the line"},
        {"integer overflow", "window_buckets = 99999999999999999999\n", 0, -1, "window_buckets"},
        {"not finite", "prior_weight = nan\n", 0, -1, "prior_weight"},
        {"catch-up memory bound 0", "flush_backlog_mb = 0\n", 0, -1,
         ":1: flush_backlog_mb: \"0\" is not an integer in 1..65536"},
        {"catch-up memory bound in GB", "flush_backlog_mb = 2G\n", 0, -1,
         "flush_backlog_mb: \"2G\" is not an integer"},
        {"catch-up memory bound", "flush_backlog_mb = 64\nflush_backlog_ms = 0\n", 0, 0, NULL},
        {"empty kafka property", "kafka. = 1\n", 0, -1, "a librdkafka property name"},
        {"lone quote", "topic = \"\n", 0, 0, NULL},
        {"no newline at the end", "topic = t", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int rc;
        char err[512];
        size_t len = t[i].len ? t[i].len : strlen(t[i].text);
        config_t *c = load(t[i].text, len, &rc, err, sizeof err);
        cr_expect_eq(rc, t[i].want_rc, "%s: rc %d (%s)", t[i].name, rc, err);
        if (t[i].err_has)
            cr_expect(strstr(err, t[i].err_has) != NULL, "%s: \"%s\"", t[i].name, err);
        config_free(c);
    }
}
