/*
 * test_redis_conn.c — common/redis_conn.c against a real redis-server: URL
 * parsing (a table of good and bad URLs), plain TCP with ACL users and the
 * password-only form, TLS (rediss://) verified against a test CA made here
 * with the openssl command line, refusals (untrusted CA, wrong server name,
 * wrong password, missing client certificate) that write nothing, and a
 * large non-blocking pipeline over TLS.  Also common/redact.c.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/redact.h"
#include "common/redis_conn.h"
#include "common/redis_proc.h"
#include "tests/support/env.h"
#include "tests/support/pki.h"

#define TIMEOUT_MS 5000

/* ------------------------------------------------------------------ */
/* URL table                                                           */

typedef struct url_case {
    const char *url;
    int ok;
    rconn_kind_t kind;
    const char *host, *user, *password, *path;
    int port, db;
    const char *err_has; /* bad URLs: a piece of the message */
} url_case_t;

static const url_case_t url_cases[] = {
    {"redis://127.0.0.1", 1, RCONN_TCP, "127.0.0.1", "", "", "", 6379, 0, NULL},
    {"redis://localhost:6380/2", 1, RCONN_TCP, "localhost", "", "", "", 6380, 2, NULL},
    {"redis://:pw@h", 1, RCONN_TCP, "h", "", "pw", "", 6379, 0, NULL},
    {"redis://:@h", 1, RCONN_TCP, "h", "", "", "", 6379, 0, NULL},
    {"redis://alice:s3cret@h:1/0", 1, RCONN_TCP, "h", "alice", "s3cret", "", 1, 0, NULL},
    {"rediss://alice:secret@127.0.0.1:6390", 1, RCONN_TLS, "127.0.0.1", "alice", "secret", "",
     6390, 0, NULL},
    {"rediss://redis.example.com", 1, RCONN_TLS, "redis.example.com", "", "", "", 6379, 0, NULL},
    {"redis://a%40b:p%40ss%3Aw%2Fd@h", 1, RCONN_TCP, "h", "a@b", "p@ss:w/d", "", 6379, 0, NULL},
    {"redis://:p@ss/w@h/3", 1, RCONN_TCP, "h", "", "p@ss/w", "", 6379, 3, NULL},
    {"redis://[::1]:7000", 1, RCONN_TCP, "::1", "", "", "", 7000, 0, NULL},
    {"unix:///run/redis.sock", 1, RCONN_UNIX, "", "", "", "/run/redis.sock", 6379, 0, NULL},
    {"", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "empty"},
    {"http://h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "starts with redis://, rediss://"},
    {"redis://alice@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "needs a password"},
    {"redis://alice:@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "a user but an empty password"},
    {"redis://:p%zzw@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "%-escape in the Redis URL password"},
    {"redis://a%4:p@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "%-escape in the Redis URL user"},
    {"redis://h:0", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h:65536", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h:port", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h/x", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "database"},
    {"redis://:pw@", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "no host"},
    {"rediss://[::1", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "IPv6"},
    {"redis://h?x=1", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "unexpected '?'"},
    {"unix://relative.sock", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "absolute path"},
    /* The forms the sink's parser took, unchanged. */
    {"redis://127.0.0.1:6380/2", 1, RCONN_TCP, "127.0.0.1", "", "", "", 6380, 2, NULL},
    {"redis://redis.example.com/15", 1, RCONN_TCP, "redis.example.com", "", "", "", 6379, 15,
     NULL},
    {"redis://host/", 1, RCONN_TCP, "host", "", "", "", 6379, 0, NULL},
    {"redis://:secret@cache-1:7000/3", 1, RCONN_TCP, "cache-1", "", "secret", "", 7000, 3, NULL},
    {"redis://:p%40ss%2Fw%25@h", 1, RCONN_TCP, "h", "", "p@ss/w%", "", 6379, 0, NULL},
    {"redis://:a@b/c@h:1", 1, RCONN_TCP, "h", "", "a@b/c", "", 1, 0, NULL},
    {"redis://h:65535/2147483647", 1, RCONN_TCP, "h", "", "", "", 65535, 2147483647, NULL},
    {"localhost:6379", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "redis://"},
    {"redis://", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "no host"},
    {"redis://:6379", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "no host"},
    {"redis://h:", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h:63a", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h:-1", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "port"},
    {"redis://h/-1", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "database"},
    {"redis://h/1/2", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "database"},
    {"redis://h/2147483648", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "database"},
    {"redis://:pw%2@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "escape"},
    {"redis://:pw%00@h", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "NUL"},
    {"redis://ho st", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "unexpected ' '"},
    {"unix://", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "absolute path"},
    {"unix:///tmp/r.sock?db=1", 0, 0, NULL, NULL, NULL, NULL, 0, 0, "'?'"},
    {"redis://[::1]:6379/1", 1, RCONN_TCP, "::1", "", "", "", 6379, 1, NULL},
    {"unix:///var/run/redis/redis.sock", 1, RCONN_UNIX, "", "", "", "/var/run/redis/redis.sock",
     6379, 0, NULL},
};

Test(redis_conn, url_table) {
    for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        const url_case_t *c = &url_cases[i];
        rconn_url_t u;
        char err[256] = "";
        int rc = rconn_url_parse(c->url, &u, err, sizeof(err));
        if (!c->ok) {
            cr_expect_eq(rc, -1, "%s: accepted", c->url);
            cr_expect(strstr(err, c->err_has), "%s: \"%s\" lacks \"%s\"", c->url, err,
                      c->err_has);
            continue;
        }
        cr_expect_eq(rc, 0, "%s: %s", c->url, err);
        if (rc) continue;
        cr_expect_eq(u.kind, c->kind, "%s: kind", c->url);
        cr_expect_str_eq(u.host, c->host, "%s: host", c->url);
        cr_expect_str_eq(u.user, c->user, "%s: user", c->url);
        cr_expect_str_eq(u.password, c->password, "%s: password", c->url);
        cr_expect_str_eq(u.path, c->path, "%s: path", c->url);
        cr_expect_eq(u.port, c->port, "%s: port", c->url);
        cr_expect_eq(u.db, c->db, "%s: db", c->url);
    }
}

Test(redis_conn, too_long_socket_path) {
    char url[400], err[256];
    memset(url, 'a', sizeof(url));
    memcpy(url, "unix:///", 8);
    url[sizeof(url) - 1] = '\0';
    rconn_url_t u;
    cr_expect_eq(rconn_url_parse(url, &u, err, sizeof(err)), -1);
    cr_expect(strstr(err, "longer") != NULL, "%s", err);
}

Test(redis_conn, bad_url_messages_never_quote_the_password) {
    const char *bad[] = {"redis://:hunter2%zz@h", "redis://u:hunter2@h:99999",
                         "redis://u:hunter2@h/db", "redis://:hunter2@"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rconn_url_t u;
        char err[256] = "";
        cr_expect_eq(rconn_url_parse(bad[i], &u, err, sizeof(err)), -1);
        cr_expect(!strstr(err, "hunter2"), "%s", err);
    }
}

Test(redact, urls) {
    const struct {
        const char *in, *out;
    } cases[] = {
        {"redis://alice:secret@host:6379/0", "redis://alice:***@host:6379/0"},
        {"rediss://:p@ss@h", "rediss://:***@h"},
        {"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
        {"https://token@registry/x", "https://***@registry/x"},
        {"unix:///run/redis.sock", "unix:///run/redis.sock"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        cr_expect_str_eq(redact_url(cases[i].in, buf, sizeof(buf)), cases[i].out);
    }
}

/* ------------------------------------------------------------------ */
/* Certificates and servers                                            */

/* A server with a plain port (redis_proc's, for checks) and a TLS port,
 * the default user's password "defpw" and the ACL user alice/secret. */
typedef struct tls_server {
    redis_proc_t *proc;
    int tls_port;
} tls_server_t;

static void server_start(tls_server_t *s, const pki_t *p, const char *auth_clients) {
    char port[16], err[256];
    for (int attempt = 0; attempt < 3; attempt++) {
        s->tls_port = pki_free_port();
        snprintf(port, sizeof(port), "%d", s->tls_port);
        const char *args[] = {"--tls-port", port, "--tls-cert-file", p->server_cert,
                              "--tls-key-file", p->server_key, "--tls-ca-cert-file", p->ca,
                              "--tls-auth-clients", auth_clients, "--requirepass", "defpw",
                              "--user", "alice", "on", ">secret", "~*", "&*", "+@all", NULL};
        s->proc = redis_proc_start(args, err, sizeof(err));
        if (s->proc) return;
    }
    cr_assert_fail("redis-server with TLS: %s", err);
}

/* A trusted connection over the plain port, as the default user. */
static rconn_t *admin(const tls_server_t *s) {
    char url[128], err[256];
    snprintf(url, sizeof(url), "redis://:defpw@127.0.0.1:%d", redis_proc_port(s->proc));
    rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, err, sizeof(err));
    cr_assert_not_null(ep, "%s", err);
    rconn_t *c = rconn_connect(ep, TIMEOUT_MS, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    rconn_endpoint_free(ep);
    return c;
}

static long long dbsize(const tls_server_t *s) {
    rconn_t *c = admin(s);
    redisReply *r = rconn_command(c, "DBSIZE");
    cr_assert_not_null(r, "%s", rconn_errstr(c));
    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    rconn_free(c);
    return n;
}

static rconn_err_t last_why; /* why the last try_connect() failed */

/* Connects to url with tls; NULL with err (and last_why) on failure. */
static rconn_t *try_connect(const char *url, const rconn_tls_conf_t *tls, char *err,
                            size_t size) {
    rconn_endpoint_t *ep = rconn_endpoint_new(url, tls, err, size);
    if (!ep) return NULL;
    rconn_t *c = rconn_connect(ep, TIMEOUT_MS, &last_why, err, size);
    rconn_endpoint_free(ep);
    return c;
}

/* SET then GET of key on c. */
static void set_get(rconn_t *c, const char *key) {
    redisReply *r = rconn_command(c, "SET %s %s", key, "v");
    cr_assert_not_null(r, "%s", rconn_errstr(c));
    cr_expect_eq(r->type, REDIS_REPLY_STATUS, "%s", r->str);
    freeReplyObject(r);
    r = rconn_command(c, "GET %s", key);
    cr_assert_not_null(r, "%s", rconn_errstr(c));
    cr_expect_eq(r->type, REDIS_REPLY_STRING);
    cr_expect_str_eq(r->str, "v");
    freeReplyObject(r);
}

static pki_t pki;
static tls_server_t srv;

static void setup_optional(void) {
    signal(SIGPIPE, SIG_IGN);
    pki_make(&pki);
    server_start(&srv, &pki, "optional");
}

static void setup_required(void) {
    signal(SIGPIPE, SIG_IGN);
    pki_make(&pki);
    server_start(&srv, &pki, "yes");
}

static void teardown(void) {
    redis_proc_stop(srv.proc);
    pki_remove(&pki);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

Test(redis_conn, tls_verified_acl_user_and_password_only, .init = setup_optional,
     .fini = teardown, .timeout = 60) {
    char url[128], err[512];
    rconn_tls_conf_t tls = {.ca_file = pki.ca};

    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);
    rconn_t *c = try_connect(url, &tls, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    redisReply *r = rconn_command(c, "ACL WHOAMI");
    cr_assert_not_null(r, "%s", rconn_errstr(c));
    cr_expect_str_eq(r->str, "alice");
    freeReplyObject(r);
    set_get(c, "tls:alice");
    rconn_free(c);

    /* The password-only form authenticates the default user; and a db. */
    snprintf(url, sizeof(url), "rediss://:defpw@127.0.0.1:%d/3", srv.tls_port);
    c = try_connect(url, &tls, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    set_get(c, "tls:default");
    r = rconn_command(c, "DBSIZE");
    cr_expect_eq(r->integer, 1, "SELECT 3 was not applied");
    freeReplyObject(r);
    rconn_free(c);

    /* localhost is in the certificate too. */
    snprintf(url, sizeof(url), "rediss://alice:secret@localhost:%d", srv.tls_port);
    c = try_connect(url, &tls, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    rconn_free(c);

    /* Plain TCP: the ACL user and the password-only form. */
    snprintf(url, sizeof(url), "redis://alice:secret@127.0.0.1:%d", redis_proc_port(srv.proc));
    c = try_connect(url, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    set_get(c, "tcp:alice");
    rconn_free(c);
    snprintf(url, sizeof(url), "redis://:defpw@127.0.0.1:%d", redis_proc_port(srv.proc));
    c = try_connect(url, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    set_get(c, "tcp:default");
    rconn_free(c);
}

Test(redis_conn, untrusted_ca_and_wrong_name_are_refused_and_write_nothing,
     .init = setup_optional, .fini = teardown, .timeout = 60) {
    char url[128], err[512];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);

    rconn_tls_conf_t other = {.ca_file = pki.other_ca};
    rconn_t *c = try_connect(url, &other, err, sizeof(err));
    cr_expect_null(c, "a server signed by another CA was trusted");
    cr_expect(strstr(err, "not trusted"), "%s", err);
    cr_expect_eq(last_why, RCONN_ERR_TLS);
    cr_expect(strstr(err, "127.0.0.1:"), "%s", err);
    cr_expect(!strstr(err, "secret"), "%s", err);
    rconn_free(c);

    rconn_tls_conf_t wrong = {.ca_file = pki.ca, .server_name = "wrong.example"};
    c = try_connect(url, &wrong, err, sizeof(err));
    cr_expect_null(c, "a certificate for 127.0.0.1 passed as wrong.example");
    cr_expect(strstr(err, "wrong.example"), "%s", err);
    cr_expect_eq(last_why, RCONN_ERR_TLS);
    rconn_free(c);

    /* The system CAs do not know the test CA either. */
    c = try_connect(url, NULL, err, sizeof(err));
    cr_expect_null(c, "the test CA is not a system CA");
    rconn_free(c);

    /* Plain text to a TLS port fails clearly instead of hanging. */
    snprintf(url, sizeof(url), "redis://alice:secret@127.0.0.1:%d", srv.tls_port);
    rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, err, sizeof(err));
    cr_assert_not_null(ep);
    c = rconn_connect(ep, 1000, &last_why, err, sizeof(err));
    cr_expect_null(c);
    cr_expect_eq(last_why, RCONN_ERR_IO, "%s", err);
    rconn_free(c);
    rconn_endpoint_free(ep);

    cr_expect_eq(dbsize(&srv), 0, "a refused connection wrote something");
}

Test(redis_conn, wrong_password_names_the_user_not_the_password, .init = setup_optional,
     .fini = teardown, .timeout = 60) {
    char url[128], err[512];
    rconn_tls_conf_t tls = {.ca_file = pki.ca};
    snprintf(url, sizeof(url), "rediss://alice:hunter2@127.0.0.1:%d", srv.tls_port);
    rconn_t *c = try_connect(url, &tls, err, sizeof(err));
    cr_expect_null(c);
    cr_expect(strstr(err, "authentication failed for user alice"), "%s", err);
    cr_expect_eq(last_why, RCONN_ERR_REFUSED);
    cr_expect(!strstr(err, "hunter2"), "%s", err);
    rconn_free(c);

    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d", redis_proc_port(srv.proc));
    c = try_connect(url, NULL, err, sizeof(err));
    cr_expect_null(c);
    cr_expect(strstr(err, "authentication failed for user default"), "%s", err);
    cr_expect(!strstr(err, "hunter2"), "%s", err);
    rconn_free(c);
}

Test(redis_conn, tls_settings_are_checked_at_start, .init = setup_optional, .fini = teardown,
     .timeout = 60) {
    char err[512];
    rconn_tls_conf_t tls = {.ca_file = "/nonexistent/ca.pem"};
    cr_expect_null(rconn_endpoint_new("rediss://h", &tls, err, sizeof(err)));
    cr_expect(strstr(err, "redis_tls_ca_file: /nonexistent/ca.pem"), "%s", err);
    tls = (rconn_tls_conf_t){.ca_file = pki.ca, .cert_file = pki.client_cert};
    cr_expect_null(rconn_endpoint_new("rediss://h", &tls, err, sizeof(err)));
    cr_expect(strstr(err, "set both"), "%s", err);
    tls = (rconn_tls_conf_t){.cert_file = pki.client_cert, .key_file = pki.server_key};
    cr_expect_null(rconn_endpoint_new("rediss://h", &tls, err, sizeof(err)));
    cr_expect(strstr(err, "redis_tls_key_file") && strstr(err, "mismatch"), "%s", err);
    tls = (rconn_tls_conf_t){.ca_file = pki.ca};
    cr_expect_null(rconn_endpoint_new("redis://h", &tls, err, sizeof(err)));
    cr_expect(strstr(err, "need a rediss:// URL"), "%s", err);
}

Test(redis_conn, client_certificate_required, .init = setup_required, .fini = teardown,
     .timeout = 60) {
    char url[128], err[512];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);
    rconn_tls_conf_t with = {.ca_file = pki.ca, .cert_file = pki.client_cert,
                             .key_file = pki.client_key};
    rconn_t *c = try_connect(url, &with, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    set_get(c, "mtls");
    rconn_free(c);

    rconn_tls_conf_t without = {.ca_file = pki.ca};
    c = try_connect(url, &without, err, sizeof(err));
    /* TLS 1.3: the server's refusal may arrive only with the first reply. */
    if (c) {
        redisReply *r = rconn_command(c, "SET nocert x");
        cr_expect_null(r, "a client without a certificate was served");
        cr_expect(rconn_dead(c));
        freeReplyObject(r);
        snprintf(err, sizeof(err), "%s", rconn_errstr(c));
        rconn_free(c);
    }
    cr_expect(strstr(err, "127.0.0.1:"), "%s", err);
    cr_expect_eq(dbsize(&srv), 1, "only the certified client wrote");
}

/* ------------------------------------------------------------------ */
/* Non-blocking pipeline                                               */

Test(redis_conn, large_pipeline_over_tls_nonblocking, .init = setup_optional, .fini = teardown,
     .timeout = 120) {
    enum { N = 5000, VLEN = 1000 };
    char url[128], err[512];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);
    rconn_tls_conf_t tls = {.ca_file = pki.ca};
    rconn_t *c = try_connect(url, &tls, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);

    /* One buffer of N SETs in RESP, about 5 MB. */
    char *val = malloc(VLEN);
    memset(val, 'x', VLEN);
    size_t cap = (size_t)N * (VLEN + 64), len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < N; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "k:%d", i);
        len += (size_t)snprintf(buf + len, cap - len, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n",
                                kl, key, VLEN);
        memcpy(buf + len, val, VLEN);
        len += VLEN;
        memcpy(buf + len, "\r\n", 2);
        len += 2;
    }
    cr_assert_gt(len, 5000000);

    size_t sent = 0;
    int replies = 0, polls = 0, zero_sends = 0;
    while (replies < N) {
        if (sent < len) {
            ssize_t w = rconn_send(c, buf + sent, len - sent);
            cr_assert_geq(w, 0, "%s", rconn_errstr(c));
            if (w == 0) zero_sends++;
            sent += (size_t)w;
        }
        cr_assert_geq(rconn_read(c, 0), 0, "%s", rconn_errstr(c));
        redisReply *r;
        for (;;) {
            cr_assert_eq(rconn_get_reply(c, &r), 0, "%s", rconn_errstr(c));
            if (!r) break;
            cr_assert_eq(r->type, REDIS_REPLY_STATUS);
            cr_assert_str_eq(r->str, "OK");
            freeReplyObject(r);
            replies++;
        }
        if (replies == N) break;
        if (rconn_pending(c)) continue;
        struct pollfd pfd = {.fd = rconn_fd(c), .events = rconn_poll_events(c, sent < len)};
        cr_assert_geq(poll(&pfd, 1, 5000), 1, "stalled: %zu of %zu sent, %d replies", sent, len,
                      replies);
        polls++;
    }
    cr_expect_eq(sent, len);
    cr_expect_eq(replies, N);
    cr_expect_gt(zero_sends + polls, 0, "the transport never pushed back: not a real test");
    rconn_free(c);
    free(buf);
    free(val);
    cr_expect_eq(dbsize(&srv), N);
}

/* The blocking pipelining calls, over a Unix socket. */
Test(redis_conn, unix_socket_pipelined_blocking, .timeout = 60) {
    char err[256], sock[256], url[300];
    redis_proc_t *p = NULL;
    const char *args[] = {"--unixsocket", NULL, NULL};
    char tmp[] = "/tmp/rapport-sock-XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(sock, sizeof(sock), "%s/redis.sock", tmp);
    args[1] = sock;
    p = redis_proc_start(args, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    snprintf(url, sizeof(url), "unix://%s", sock);
    rconn_t *c = try_connect(url, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    for (int i = 0; i < 100; i++) cr_assert_eq(rconn_append(c, "INCR n"), 0);
    for (int i = 0; i < 100; i++) {
        redisReply *r;
        cr_assert_eq(rconn_get_reply_wait(c, &r), 0, "%s", rconn_errstr(c));
        cr_assert_eq(r->integer, i + 1);
        freeReplyObject(r);
    }
    rconn_free(c);
    redis_proc_stop(p);
    rmdir(tmp);
}

/* A server that stops answering costs one timeout, then the connection
 * is dead with a message that says so. */
Test(redis_conn, timeout_kills_the_connection, .timeout = 60) {
    char err[256];
    redis_proc_t *p = redis_proc_start(NULL, err, sizeof(err));
    cr_assert_not_null(p, "%s", err);
    rconn_t *c = try_connect(redis_proc_url(p), NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    rconn_set_timeout(c, 300);
    redis_proc_signal(p, SIGSTOP);
    redisReply *r = rconn_command(c, "PING");
    redis_proc_signal(p, SIGCONT);
    cr_expect_null(r);
    cr_expect(rconn_dead(c));
    cr_expect(strstr(rconn_errstr(c), "no answer within 300 ms"), "%s", rconn_errstr(c));
    cr_expect_null(rconn_command(c, "PING"), "a dead connection answered");
    rconn_free(c);
    redis_proc_stop(p);
}

/* A server that announces an array of 345 million elements (found by
 * fuzz/fuzz_redis_reply.c): refused at once, before hiredis's reader
 * allocates gigabytes of element pointers, and the connection is dead.
 * The answer comes from a bare socket on purpose: no real Redis sends it. */
static void *answer_huge_array(void *arg) {
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return NULL;
    char buf[256];
    if (recv(fd, buf, sizeof(buf), 0) > 0) { /* the PING */
        static const char huge[] = "*345601230\r\n";
        if (send(fd, huge, sizeof(huge) - 1, MSG_NOSIGNAL) < 0) perror("send");
        /* Say nothing more: without the bound, the reader would wait here
         * for the elements, with the pointers already allocated. */
        while (recv(fd, buf, sizeof(buf), 0) > 0) {
        }
    }
    close(fd);
    return NULL;
}

Test(redis_conn, huge_array_header_is_refused, .timeout = 30) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              listen(lfd, 1) == 0 && getsockname(lfd, (struct sockaddr *)&a, &len) == 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, answer_huge_array, &lfd), 0);
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, err, sizeof(err));
    cr_assert_not_null(ep, "%s", err);
    rconn_t *c = rconn_connect(ep, 5000, NULL, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    redisReply *r = rconn_command(c, "PING");
    cr_expect_null(r);
    cr_expect(rconn_dead(c));
    cr_expect(strstr(rconn_errstr(c), "protocol error"), "%s", rconn_errstr(c));
    freeReplyObject(r);
    rconn_free(c);
    rconn_endpoint_free(ep);
    pthread_join(t, NULL);
    close(lfd);
}

/* ------------------------------------------------------------------ */
/* The minimal ACL of docs/SECURITY.md                                 */

/* rapport run logs in as the ACL user "writer", which may run only the
 * commands docs/SECURITY.md lists, on rapport:* keys; the result matches a
 * replay.  The test's own checks read as the default user, limited to
 * reading rapport:* keys.  rapport top reads as an ACL user limited to
 * ~rapport:* -@all +@read. */
Test(redis_conn, minimal_acl_is_enough_for_rapport, .timeout = 240) {
    const char *acl[] = {"--user", "writer", "on", ">w-pass", "resetkeys", "~rapport:*",
                         "resetchannels", "-@all", "+ping", "+select", "+evalsha",
                         "+script|load", "+hscan", "+hget", "+hset", "+hdel", "+hincrby", "+hmget",
                         "+del", "+zadd", "+zrem", "+xadd", "+xrange", "+xdel",
                         "--user", "default", "on", "nopass", "resetkeys", "~rapport:*",
                         "resetchannels", "-@all", "+@read", "+scan", "+ping",
                         "--user", "screen", "on", ">look", "resetkeys", "~rapport:*",
                         "resetchannels", "-@all", "+@read", NULL};
    env_t e;
    env_start(&e, 3, acl);
    char writer[160];
    snprintf(writer, sizeof(writer), "redis_url=redis://writer:w-pass@127.0.0.1:%d",
             redis_proc_port(e.redis));
    pid_t pid = env_rapport(&e, (const char *[]){writer, NULL});
    gen_conf_t gc = env_mix(11, 200);
    env_produce(&e, &gc, 3000, NULL);
    env_assert_matches_replay(&e, 90000);

    /* Erasing (SPEC §1.2) needs XDEL: tombstones for the customers of the
     * stream's first alerts; they and their alerts go. */
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(e.redis));
    cr_assert(rc && !rc->err);
    redisReply *x = redisCommand(rc, "XRANGE rapport:alerts - + COUNT 5");
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && x->elements == 5, "%s", rc->errstr);
    const char *ids[5];
    for (size_t i = 0; i < 5; i++) ids[i] = x->element[i]->element[1]->element[3]->str;
    char terr[256];
    cr_assert_eq(kafka_produce_tombstones(e.mk.brokers, ENV_TOPIC, ids, 5, terr, sizeof terr), 0,
                 "%s", terr);
    env_assert_matches_replay(&e, 90000);
    redisReply *y = redisCommand(rc, "XRANGE rapport:alerts - + COUNT 1");
    cr_assert(y && y->type == REDIS_REPLY_ARRAY);
    cr_expect(y->elements == 0 || strcmp(y->element[0]->element[0]->str,
                                         x->element[0]->element[0]->str) != 0,
              "the first alert was erased");
    freeReplyObject(y);
    freeReplyObject(x);
    redisFree(rc);

    char out[128], url[128];
    snprintf(out, sizeof(out), "%s/top.out", e.dir);
    snprintf(url, sizeof(url), "redis://screen:look@127.0.0.1:%d", redis_proc_port(e.redis));
    const char *args[] = {"top", "--once", "-r", url, NULL};
    cr_expect_eq(proc_run(out, args, 10000), 0, "rapport top as an ACL user");
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_expect(strstr(text, "lowest connection index"), "%s", text);
    cr_expect(strstr(text, "redis://screen:***@"), "%s", text);
    cr_expect(!strstr(text, "look@"), "%s", text);

    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    env_stop(&e);
}

/* rapport top over rediss://: verified against --tls-ca-file, refused
 * without it. */
Test(redis_conn, top_over_tls, .init = setup_optional, .fini = teardown, .timeout = 60) {
    char url[128], out[160];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);
    snprintf(out, sizeof(out), "%s/top.out", pki.dir);
    const char *args[] = {"top", "--once", "-r", url, "--tls-ca-file", pki.ca, NULL};
    cr_expect_eq(proc_run(out, args, 10000), 0);
    const char *untrusted[] = {"top", "--once", "-r", url, NULL};
    cr_expect_eq(proc_run(out, untrusted, 10000), 1);
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char text[65536];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_expect(strstr(text, "customers scored 0"), "%s", text);
    cr_expect(strstr(text, "not trusted"), "%s", text);
    cr_expect(!strstr(text, "secret"), "%s", text);
}

/* The server drops a TLS client: writing on goes to a closed socket, which
 * would raise SIGPIPE (default action: die).  The connection reports it
 * dead instead, with the signal left at its default. */
Test(redis_conn, closed_tls_connection_does_not_raise_sigpipe, .init = setup_optional,
     .fini = teardown, .timeout = 60) {
    char url[128], err[512];
    snprintf(url, sizeof(url), "rediss://alice:secret@127.0.0.1:%d", srv.tls_port);
    rconn_tls_conf_t tls = {.ca_file = pki.ca};
    rconn_t *c = try_connect(url, &tls, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    signal(SIGPIPE, SIG_DFL);

    rconn_t *a = admin(&srv);
    redisReply *r = rconn_command(a, "CLIENT KILL USER alice");
    cr_assert_not_null(r, "%s", rconn_errstr(a));
    cr_expect_eq(r->type, REDIS_REPLY_INTEGER, "%s", r->str);
    freeReplyObject(r);
    rconn_free(a);

    static char junk[65536];
    memset(junk, '\n', sizeof(junk)); /* empty inline commands */
    ssize_t w = 0;
    for (int i = 0; i < 200 && w >= 0; i++) {
        w = rconn_send(c, junk, sizeof(junk));
        usleep(5000);
    }
    cr_expect_eq(w, -1, "writes to a closed connection kept succeeding");
    cr_expect(rconn_dead(c));
    cr_expect(strstr(rconn_errstr(c), "127.0.0.1:"), "%s", rconn_errstr(c));
    rconn_free(c);
}

/* Nothing listening: an I/O failure, which may heal. */
Test(redis_conn, closed_port_is_an_io_failure) {
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", pki_free_port());
    rconn_t *c = try_connect(url, NULL, err, sizeof(err));
    cr_expect_null(c);
    cr_expect_eq(last_why, RCONN_ERR_IO);
    cr_expect(strstr(err, "cannot connect"), "%s", err);
    rconn_free(c);
}
