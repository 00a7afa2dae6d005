/*
 * redis_conn.c — connections to Redis over TCP, Unix sockets or TLS (see
 * redis_conn.h).
 *
 * Owns: for an endpoint, the parsed URL and the OpenSSL SSL_CTX; for a
 * connection, its socket, its SSL object, hiredis's reply parser
 * (redisReader) and the queue of blocking-mode requests not yet sent.
 * The socket is non-blocking from the start; blocking calls wait in
 * poll() against one deadline, so a dead server costs at most the
 * timeout.  Every error marks the connection dead (err set) and later
 * calls fail at once.  A connection belongs to one thread; an endpoint is
 * only read after it is built.
 */
#include "common/redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "common/clock.h"

/* One SSL_write at most this long (one TLS record): a write that must be
 * repeated after WANT_WRITE is then the same length again. */
#define RCONN_TLS_WRITE_MAX 16384
#define RCONN_READ_CHUNK 65536
#define RCONN_KEEPALIVE_S 15

struct rconn_endpoint {
    rconn_url_t url;
    char where[300];
    SSL_CTX *ctx;             /* rediss:// only */
    char *server_name;        /* name checked in the certificate, and SNI */
};

struct rconn {
    int fd;
    SSL *ssl;                 /* NULL: plain */
    redisReader *reader;
    int timeout_ms;
    bool dead;
    rconn_err_t why;          /* set with dead */
    bool tls_want_write;      /* the last TLS call needs the socket writable */
    char where[300];
    char errstr[256];
    char *obuf;               /* blocking mode: queued requests */
    size_t olen, ocap, osent;
};

/* ------------------------------------------------------------------ */
/* URL                                                                 */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Parses a decimal integer in [min, max] from s[0..n).  Returns 0 or -1. */
static int parse_int_range(const char *s, size_t n, long long min, long long max,
                           long long *out) {
    if (n == 0 || n > 18) return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* %-decodes p[0..n) into out[size].  Returns 0, or -1 with errstr naming
 * `what` (never its content). */
static int url_decode(const char *p, size_t n, char *out, size_t size, const char *what,
                      char *errstr, size_t errstr_size) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)p[i];
        if (ch == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (lo < 0) {
                snprintf(errstr, errstr_size, "bad %%-escape in the Redis URL %s", what);
                return -1;
            }
            ch = hi * 16 + lo;
            i += 2;
        }
        if (ch == 0 || o + 1 >= size) {
            snprintf(errstr, errstr_size, "Redis URL %s is too long or holds NUL", what);
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

int rconn_url_parse(const char *url, rconn_url_t *out, char *errstr, size_t errstr_size) {
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url || !*url) {
        snprintf(errstr, errstr_size, "empty Redis URL");
        return -1;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        size_t n = strlen(path);
        out->kind = RCONN_UNIX;
        if (path[0] != '/') {
            snprintf(errstr, errstr_size,
                     "a unix socket URL needs an absolute path: unix:///path/to/redis.sock");
            return -1;
        }
        if (strpbrk(path, "?#")) {
            snprintf(errstr, errstr_size, "unix socket URL: no '?' or '#' part is supported");
            return -1;
        }
        if (n >= sizeof(out->path) || n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(errstr, errstr_size, "unix socket path is longer than %zu bytes",
                     sizeof(out->path) - 1);
            return -1;
        }
        memcpy(out->path, path, n + 1);
        return 0;
    }
    const char *p;
    if (strncmp(url, "rediss://", 9) == 0) {
        out->kind = RCONN_TLS;
        p = url + 9;
    } else if (strncmp(url, "redis://", 8) == 0) {
        out->kind = RCONN_TCP;
        p = url + 8;
    } else {
        snprintf(errstr, errstr_size, "a Redis URL starts with redis://, rediss:// or unix://");
        return -1;
    }

    /* [[user]:password@] — the last '@', so that a password may hold '@'
     * or '/'; the first ':' before it ends the user. */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(errstr, errstr_size,
                     "Redis URL credentials must be 'user:password@' or ':password@' "
                     "(a user needs a password)");
            return -1;
        }
        if (url_decode(p, (size_t)(colon - p), out->user, sizeof(out->user), "user", errstr,
                       errstr_size) != 0 ||
            url_decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password),
                       "password", errstr, errstr_size) != 0)
            return -1;
        /* ":@" (no user, no password) means no AUTH, as it always did. */
        if (out->user[0] && !out->password[0]) {
            snprintf(errstr, errstr_size, "Redis URL has a user but an empty password");
            return -1;
        }
        p = at + 1;
    }

    /* host, or [IPv6] */
    const char *host = p;
    size_t hn;
    if (*p == '[') {
        host = ++p;
        while (*p && (hexval(*p) >= 0 || *p == ':' || *p == '.')) p++;
        if (*p != ']' || p == host) {
            snprintf(errstr, errstr_size, "bad IPv6 address in the Redis URL");
            return -1;
        }
        hn = (size_t)(p - host);
        p++;
    } else {
        while (*p && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '-' || *p == '_'))
            p++;
        hn = (size_t)(p - host);
    }
    if (hn == 0) {
        snprintf(errstr, errstr_size, "Redis URL has no host");
        return -1;
    }
    if (hn >= sizeof(out->host)) {
        snprintf(errstr, errstr_size, "Redis URL host is too long");
        return -1;
    }
    memcpy(out->host, host, hn);
    out->host[hn] = '\0';

    if (*p == ':') {
        const char *num = ++p;
        while (*p && *p != '/') p++;
        long long v;
        if (parse_int_range(num, (size_t)(p - num), 1, 65535, &v) != 0) {
            snprintf(errstr, errstr_size, "Redis URL port must be a number from 1 to 65535");
            return -1;
        }
        out->port = (int)v;
    }
    if (*p == '/') {
        const char *num = ++p;
        size_t n = strlen(num);
        long long v = 0;
        if (n > 0 && parse_int_range(num, n, 0, INT_MAX, &v) != 0) {
            snprintf(errstr, errstr_size,
                     "Redis URL database (after '/') must be a non-negative integer");
            return -1;
        }
        out->db = (int)v;
        p += n;
    }
    if (*p) {
        snprintf(errstr, errstr_size, "unexpected '%c' in the Redis URL", *p);
        return -1;
    }
    return 0;
}

void rconn_url_where(const rconn_url_t *u, char *out, size_t size) {
    if (u->kind == RCONN_UNIX)
        snprintf(out, size, "unix:%s", u->path);
    else if (strchr(u->host, ':'))
        snprintf(out, size, "[%s]:%d", u->host, u->port);
    else
        snprintf(out, size, "%s:%d", u->host, u->port);
}

/* ------------------------------------------------------------------ */
/* Endpoint                                                            */

/* The first OpenSSL error of this thread's queue, or `fallback`; clears
 * the queue. */
static const char *ssl_error_text(char *buf, size_t size, const char *fallback) {
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, size);
    else
        snprintf(buf, size, "%s", fallback);
    ERR_clear_error();
    return buf;
}

static bool set(const char *s) { return s && *s; }

rconn_endpoint_t *rconn_endpoint_new(const char *url, const rconn_tls_conf_t *tls,
                                     char *errstr, size_t errstr_size) {
    rconn_endpoint_t *ep = xcalloc(1, sizeof(*ep));
    char ebuf[256];
    if (rconn_url_parse(url, &ep->url, errstr, errstr_size) != 0) goto fail;
    rconn_url_where(&ep->url, ep->where, sizeof(ep->where));
    bool any_tls = tls && (set(tls->ca_file) || set(tls->cert_file) || set(tls->key_file) ||
                           set(tls->server_name));
    if (ep->url.kind != RCONN_TLS) {
        if (any_tls) {
            snprintf(errstr, errstr_size,
                     "redis_tls_* settings need a rediss:// URL (the URL given is not TLS)");
            goto fail;
        }
        return ep;
    }
    if (tls && set(tls->cert_file) != set(tls->key_file)) {
        snprintf(errstr, errstr_size,
                 "redis_tls_cert_file and redis_tls_key_file: set both or neither");
        goto fail;
    }
    ERR_clear_error();
    if (!(ep->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(errstr, errstr_size, "TLS: %s", ssl_error_text(ebuf, sizeof(ebuf), "no context"));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ep->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ep->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ep->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (tls && set(tls->ca_file)) {
        if (SSL_CTX_load_verify_locations(ep->ctx, tls->ca_file, NULL) != 1) {
            snprintf(errstr, errstr_size, "redis_tls_ca_file: %s: %s", tls->ca_file,
                     ssl_error_text(ebuf, sizeof(ebuf), "cannot load"));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ep->ctx) != 1) {
        snprintf(errstr, errstr_size, "TLS: the system's CA certificates: %s",
                 ssl_error_text(ebuf, sizeof(ebuf), "cannot load"));
        goto fail;
    }
    if (tls && set(tls->cert_file)) {
        if (SSL_CTX_use_certificate_chain_file(ep->ctx, tls->cert_file) != 1) {
            snprintf(errstr, errstr_size, "redis_tls_cert_file: %s: %s", tls->cert_file,
                     ssl_error_text(ebuf, sizeof(ebuf), "cannot load"));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ep->ctx, tls->key_file, SSL_FILETYPE_PEM) != 1) {
            snprintf(errstr, errstr_size, "redis_tls_key_file: %s: %s", tls->key_file,
                     ssl_error_text(ebuf, sizeof(ebuf), "cannot load"));
            goto fail;
        }
        if (SSL_CTX_check_private_key(ep->ctx) != 1) {
            snprintf(errstr, errstr_size,
                     "redis_tls_key_file: %s does not match redis_tls_cert_file %s",
                     tls->key_file, tls->cert_file);
            ERR_clear_error();
            goto fail;
        }
    }
    ep->server_name = xstrdup(tls && set(tls->server_name) ? tls->server_name : ep->url.host);
    return ep;
fail:
    rconn_endpoint_free(ep);
    return NULL;
}

void rconn_endpoint_free(rconn_endpoint_t *ep) {
    if (!ep) return;
    SSL_CTX_free(ep->ctx);
    free(ep->server_name);
    /* The password leaves no copy in freed memory. */
    explicit_bzero(&ep->url, sizeof(ep->url));
    free(ep);
}

const rconn_url_t *rconn_endpoint_url(const rconn_endpoint_t *ep) { return &ep->url; }
const char *rconn_endpoint_where(const rconn_endpoint_t *ep) { return ep->where; }

/* ------------------------------------------------------------------ */
/* Errors                                                              */

static void fail(rconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(rconn_t *c, const char *fmt, ...) {
    if (c->dead) return; /* the first cause is the one to tell */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    c->dead = true;
    if (!c->why) c->why = RCONN_ERR_IO;
}

const char *rconn_errstr(const rconn_t *c) { return c->errstr; }
bool rconn_dead(const rconn_t *c) { return c->dead; }
const char *rconn_where(const rconn_t *c) { return c->where; }
int rconn_fd(const rconn_t *c) { return c->fd; }

void rconn_set_timeout(rconn_t *c, int timeout_ms) {
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
}

/* Milliseconds left until deadline, at least 0. */
static int left_ms(int64_t deadline) {
    int64_t l = deadline - clock_ms();
    return l > 0 ? (int)(l > INT_MAX ? INT_MAX : l) : 0;
}

/* ------------------------------------------------------------------ */
/* Transport                                                           */

/* OpenSSL writes to the socket with write(2), which raises SIGPIPE when
 * the server has closed the connection.  Each SSL call runs with SIGPIPE
 * blocked in this thread, and a SIGPIPE it raised is taken back before
 * unblocking (libpq does the same), so the process needs no handler. */
typedef struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g) {
    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &g->old);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

static void sigpipe_restore(sigpipe_guard_t *g) {
    int saved = errno;
    sigset_t pending;
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec none = {0, 0};
        sigtimedwait(&pipe_only, NULL, &none);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

bool rconn_pending(const rconn_t *c) { return c->ssl && !c->dead && SSL_pending(c->ssl) > 0; }

short rconn_poll_events(const rconn_t *c, bool want_write) {
    return (short)(POLLIN | (want_write || c->tls_want_write ? POLLOUT : 0));
}

/* The outcome of an SSL call that returned n <= 0: 0 to wait (want_*
 * recorded), -1 when the connection died. */
static int tls_outcome(rconn_t *c, int n, const char *what) {
    int e = SSL_get_error(c->ssl, n);
    char ebuf[256];
    switch (e) {
    case SSL_ERROR_WANT_READ: c->tls_want_write = false; return 0;
    case SSL_ERROR_WANT_WRITE: c->tls_want_write = true; return 0;
    case SSL_ERROR_ZERO_RETURN: fail(c, "redis %s: connection closed by the server", c->where); break;
    case SSL_ERROR_SYSCALL:
        if (errno == EINTR) return 0;
        fail(c, "redis %s: %s: %s", c->where, what,
             errno ? strerror(errno) : "connection closed by the server");
        break;
    default:
        fail(c, "redis %s: TLS %s: %s", c->where, what,
             ssl_error_text(ebuf, sizeof(ebuf), "error"));
    }
    ERR_clear_error();
    return -1;
}

ssize_t rconn_send(rconn_t *c, const void *buf, size_t len) {
    if (c->dead) return -1;
    size_t done = 0;
    while (done < len) {
        size_t n = len - done;
        if (c->ssl) {
            if (n > RCONN_TLS_WRITE_MAX) n = RCONN_TLS_WRITE_MAX;
            sigpipe_guard_t g;
            ERR_clear_error();
            errno = 0;
            sigpipe_block(&g);
            int w = SSL_write(c->ssl, (const char *)buf + done, (int)n);
            sigpipe_restore(&g);
            if (w <= 0) {
                if (tls_outcome(c, w, "write") < 0) return -1;
                break;
            }
            c->tls_want_write = false;
            done += (size_t)w;
        } else {
            ssize_t w = send(c->fd, (const char *)buf + done, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                fail(c, "redis %s: write: %s", c->where, strerror(errno));
                return -1;
            }
            done += (size_t)w;
        }
    }
    return (ssize_t)done;
}

/* Reads what is there now, without waiting, into the parser.  Returns the
 * bytes read or -1. */
static ssize_t read_now(rconn_t *c) {
    char buf[RCONN_READ_CHUNK];
    ssize_t total = 0;
    for (;;) {
        ssize_t r;
        if (c->ssl) {
            sigpipe_guard_t g;
            ERR_clear_error();
            errno = 0;
            sigpipe_block(&g);
            int n = SSL_read(c->ssl, buf, sizeof(buf));
            sigpipe_restore(&g);
            if (n <= 0) {
                if (tls_outcome(c, n, "read") < 0) return -1;
                return total;
            }
            c->tls_want_write = false;
            r = n;
        } else {
            r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0) {
                fail(c, "redis %s: connection closed by the server", c->where);
                return -1;
            }
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return total;
                fail(c, "redis %s: read: %s", c->where, strerror(errno));
                return -1;
            }
        }
        if (redisReaderFeed(c->reader, buf, (size_t)r) != REDIS_OK) {
            fail(c, "redis %s: out of memory reading a reply", c->where);
            return -1;
        }
        total += r;
        if ((size_t)r < sizeof(buf) && !rconn_pending(c)) return total;
    }
}

ssize_t rconn_read(rconn_t *c, int wait_ms) {
    if (c->dead) return -1;
    if (wait_ms > 0 && !rconn_pending(c)) {
        struct pollfd pfd = {.fd = c->fd, .events = rconn_poll_events(c, false)};
        int n = poll(&pfd, 1, wait_ms);
        if (n < 0 && errno != EINTR) {
            fail(c, "redis %s: poll: %s", c->where, strerror(errno));
            return -1;
        }
        if (n <= 0) return 0;
    }
    return read_now(c);
}

int rconn_get_reply(rconn_t *c, redisReply **reply) {
    *reply = NULL;
    if (c->dead) return -1;
    void *r = NULL;
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
        fail(c, "redis %s: protocol error: %s", c->where, c->reader->errstr);
        return -1;
    }
    *reply = r;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Blocking mode                                                       */

static int queue(rconn_t *c, const char *cmd, size_t len) {
    if (c->olen == c->osent) c->olen = c->osent = 0;
    if (c->ocap - c->olen < len) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap - c->olen < len) cap *= 2;
        c->obuf = xrealloc(c->obuf, cap);
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, cmd, len);
    c->olen += len;
    return 0;
}

int rconn_append_formatted(rconn_t *c, const char *cmd, size_t len) {
    return queue(c, cmd, len);
}

int rconn_append_argv(rconn_t *c, int argc, const char **argv, const size_t *argvlen) {
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) return -1;
    int rc = queue(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

static int append_v(rconn_t *c, const char *fmt, va_list ap) {
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) return -1;
    int rc = queue(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int rconn_append(rconn_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = append_v(c, fmt, ap);
    va_end(ap);
    return rc;
}

/* Waits for the socket until deadline.  Returns 0 when ready, -1 (dead)
 * on timeout or error. */
static int wait_io(rconn_t *c, bool want_write, int64_t deadline, const char *what) {
    if (!want_write && rconn_pending(c)) return 0;
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = rconn_poll_events(c, want_write)};
        int n = poll(&pfd, 1, left_ms(deadline));
        if (n > 0) return 0;
        if (n == 0) {
            fail(c, "redis %s: %s: no answer within %d ms", c->where, what, c->timeout_ms);
            return -1;
        }
        if (errno != EINTR) {
            fail(c, "redis %s: poll: %s", c->where, strerror(errno));
            return -1;
        }
    }
}

int rconn_get_reply_wait(rconn_t *c, redisReply **reply) {
    *reply = NULL;
    if (c->dead) return -1;
    int64_t deadline = clock_ms() + c->timeout_ms;
    while (c->osent < c->olen) {
        ssize_t w = rconn_send(c, c->obuf + c->osent, c->olen - c->osent);
        if (w < 0) return -1;
        c->osent += (size_t)w;
        if (c->osent < c->olen && wait_io(c, true, deadline, "write") != 0) return -1;
    }
    for (;;) {
        if (rconn_get_reply(c, reply) != 0) return -1;
        if (*reply) return 0;
        if (wait_io(c, false, deadline, "reply") != 0) return -1;
        if (read_now(c) < 0) return -1;
    }
}

redisReply *rconn_command_argv(rconn_t *c, int argc, const char **argv, const size_t *argvlen) {
    redisReply *r = NULL;
    if (c->dead) return NULL;
    if (rconn_append_argv(c, argc, argv, argvlen) != 0) {
        fail(c, "redis %s: out of memory formatting a command", c->where);
        return NULL;
    }
    rconn_get_reply_wait(c, &r);
    return r;
}

redisReply *rconn_command(rconn_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rconn_vcommand(c, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *rconn_vcommand(rconn_t *c, const char *fmt, va_list ap) {
    redisReply *r = NULL;
    if (c->dead) return NULL;
    if (append_v(c, fmt, ap) != 0) {
        fail(c, "redis %s: bad command format or out of memory", c->where);
        return NULL;
    }
    rconn_get_reply_wait(c, &r);
    return r;
}

/* r, or NULL with errstr when r is NULL (the connection died) or an error
 * reply (freed). */
static redisReply *reply_ok(rconn_t *c, redisReply *r, char *errstr, size_t errstr_size) {
    if (!r) {
        snprintf(errstr, errstr_size, "%s", rconn_errstr(c)[0] ? rconn_errstr(c) : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(errstr, errstr_size, "%s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *rconn_vcommand_ok(rconn_t *c, char *errstr, size_t errstr_size, const char *fmt,
                              va_list ap) {
    return reply_ok(c, rconn_vcommand(c, fmt, ap), errstr, errstr_size);
}

redisReply *rconn_command_ok(rconn_t *c, char *errstr, size_t errstr_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rconn_vcommand_ok(c, errstr, errstr_size, fmt, ap);
    va_end(ap);
    return r;
}

redisReply *rconn_get_reply_ok(rconn_t *c, char *errstr, size_t errstr_size) {
    redisReply *r = NULL;
    if (rconn_get_reply_wait(c, &r) != 0) r = NULL;
    return reply_ok(c, r, errstr, errstr_size);
}

/* ------------------------------------------------------------------ */
/* Connect                                                             */

/* Non-blocking connect of fd to addr, waiting until deadline.  Returns 0,
 * or -1 with errno-style text in why. */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline,
                        char *why, size_t why_size) {
    if (connect(fd, sa, len) == 0) return 0;
    if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR) {
        snprintf(why, why_size, "%s", strerror(errno));
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int n;
    while ((n = poll(&pfd, 1, left_ms(deadline))) < 0 && errno == EINTR) {
    }
    if (n == 0) {
        snprintf(why, why_size, "connect timed out");
        return -1;
    }
    int err = 0;
    socklen_t el = sizeof(err);
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
    if (err) {
        snprintf(why, why_size, "%s", strerror(err));
        return -1;
    }
    return 0;
}

static int open_tcp(rconn_t *c, const rconn_url_t *u, int64_t deadline) {
    char port[16], why[128] = "no address";
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(u->host, port, &hints, &res);
    if (gai != 0) {
        fail(c, "redis %s: cannot resolve the host: %s", c->where, gai_strerror(gai));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, sizeof(why), "socket: %s", strerror(errno));
            continue;
        }
        if (connect_wait(fd, ai->ai_addr, ai->ai_addrlen, deadline, why, sizeof(why)) == 0) {
            int on = 1, idle = RCONN_KEEPALIVE_S, cnt = 3;
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
            c->fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        close(fd);
    }
    freeaddrinfo(res);
    fail(c, "redis %s: cannot connect: %s", c->where, why);
    return -1;
}

static int open_unix(rconn_t *c, const rconn_url_t *u, int64_t deadline) {
    char why[128];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", u->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(c, "redis %s: socket: %s", c->where, strerror(errno));
        return -1;
    }
    if (connect_wait(fd, (struct sockaddr *)&sa, sizeof(sa), deadline, why, sizeof(why)) != 0) {
        close(fd);
        fail(c, "redis %s: cannot connect: %s", c->where, why);
        return -1;
    }
    c->fd = fd;
    return 0;
}

static int tls_handshake(rconn_t *c, const rconn_endpoint_t *ep, int64_t deadline) {
    char ebuf[256];
    ERR_clear_error();
    if (!(c->ssl = SSL_new(ep->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
        fail(c, "redis %s: TLS: %s", c->where, ssl_error_text(ebuf, sizeof(ebuf), "setup failed"));
        return -1;
    }
    /* The name the certificate must carry: an IP address literal is
     * checked against the IP SANs, a name against the DNS names; SNI is
     * sent for names only (RFC 6066). */
    unsigned char ip[16];
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    bool is_ip = inet_pton(AF_INET, ep->server_name, ip) == 1 ||
                 inet_pton(AF_INET6, ep->server_name, ip) == 1;
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, ep->server_name)
                   : X509_VERIFY_PARAM_set1_host(vp, ep->server_name, 0);
    if (ok == 1 && !is_ip) ok = (int)SSL_set_tlsext_host_name(c->ssl, ep->server_name);
    if (ok != 1) {
        fail(c, "redis %s: TLS: cannot use server name %s", c->where, ep->server_name);
        return -1;
    }
    for (;;) {
        sigpipe_guard_t g;
        ERR_clear_error();
        errno = 0;
        sigpipe_block(&g);
        int n = SSL_connect(c->ssl);
        sigpipe_restore(&g);
        if (n == 1) return 0;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            struct pollfd pfd = {.fd = c->fd,
                                 .events = (short)(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)};
            int p = poll(&pfd, 1, left_ms(deadline));
            if (p == 0) {
                fail(c, "redis %s: TLS handshake: no answer within %d ms", c->where,
                     c->timeout_ms);
                return -1;
            }
            if (p < 0 && errno != EINTR) {
                fail(c, "redis %s: poll: %s", c->where, strerror(errno));
                return -1;
            }
            continue;
        }
        long v = SSL_get_verify_result(c->ssl);
        if (e == SSL_ERROR_SSL) c->why = RCONN_ERR_TLS;
        if (v != X509_V_OK) {
            c->why = RCONN_ERR_TLS;
            fail(c, "redis %s: TLS: server certificate not trusted for \"%s\": %s", c->where,
                 ep->server_name, X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
            fail(c, "redis %s: TLS handshake: %s", c->where,
                 errno ? strerror(errno) : "connection closed by the server (is it TLS?)");
        } else {
            fail(c, "redis %s: TLS handshake: %s", c->where,
                 ssl_error_text(ebuf, sizeof(ebuf), "failed"));
        }
        return -1;
    }
}

/* AUTH and SELECT.  Returns 0 or -1 (dead, errstr set). */
static int login(rconn_t *c, const rconn_url_t *u) {
    redisReply *r = NULL;
    if (u->password[0]) {
        const char *argv[] = {"AUTH", u->user, u->password};
        r = u->user[0] ? rconn_command_argv(c, 3, argv, NULL)
                       : rconn_command_argv(c, 2, (const char *[]){"AUTH", u->password}, NULL);
        if (!r) return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            c->why = RCONN_ERR_REFUSED;
            /* Redis's text (WRONGPASS…, or ERR AUTH <password> called without
             * any password configured) never repeats the password. */
            fail(c, "redis %s: authentication failed for user %s: %s", c->where,
                 u->user[0] ? u->user : "default", r->str);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (u->db != 0) {
        r = rconn_command(c, "SELECT %d", u->db);
        if (!r) return -1;
        if (r->type == REDIS_REPLY_ERROR) {
            c->why = RCONN_ERR_REFUSED;
            fail(c, "redis %s: SELECT %d: %s", c->where, u->db, r->str);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* hiredis's reader allocates an array reply's element pointers as soon as
 * it reads the header, so "*345601230\r\n" from a broken or hostile server
 * would ask for gigabytes before any element came.  The reply functions
 * are hiredis's own, but an array over RCONN_MAX_ARRAY elements (far above
 * anything rapport asks for: HSCAN COUNT 1000, a history hash of a few
 * hundred fields) is refused, which the reader reports as an error and the
 * connection dies. */
#define RCONN_MAX_ARRAY (1 << 20)
static redisReplyObjectFunctions reply_fns;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t reply_fns_once = PTHREAD_ONCE_INIT;

static void *create_array_bounded(const redisReadTask *task, int elements) {
    if (elements < 0 || elements > RCONN_MAX_ARRAY) return NULL;
    return default_create_array(task, elements);
}

static void reply_fns_init(void) {
    redisReader *r = redisReaderCreate();
    if (!r) abort(); /* a few hundred bytes at start-up */
    reply_fns = *r->fn;
    redisReaderFree(r);
    default_create_array = reply_fns.createArray;
    reply_fns.createArray = create_array_bounded;
}

static redisReader *reader_new(void) {
    pthread_once(&reply_fns_once, reply_fns_init);
    return redisReaderCreateWithFunctions(&reply_fns);
}

rconn_t *rconn_connect(const rconn_endpoint_t *ep, int timeout_ms, rconn_err_t *why,
                       char *errstr, size_t errstr_size) {
    rconn_t *c = xcalloc(1, sizeof(*c));
    c->fd = -1;
    rconn_set_timeout(c, timeout_ms);
    snprintf(c->where, sizeof(c->where), "%s", ep->where);
    if (!(c->reader = reader_new())) {
        fail(c, "redis %s: out of memory", c->where);
        goto fail;
    }
    /* One deadline for the connection and the handshake; AUTH and SELECT
     * have a timeout each, as any command. */
    int64_t deadline = clock_ms() + c->timeout_ms;
    const rconn_url_t *u = &ep->url;
    if ((u->kind == RCONN_UNIX ? open_unix(c, u, deadline) : open_tcp(c, u, deadline)) != 0)
        goto fail;
    if (u->kind == RCONN_TLS && tls_handshake(c, ep, deadline) != 0) goto fail;
    if (login(c, u) != 0) goto fail;
    return c;
fail:
    snprintf(errstr, errstr_size, "%s", c->errstr);
    if (why) *why = c->why ? c->why : RCONN_ERR_IO;
    rconn_free(c);
    return NULL;
}

void rconn_free(rconn_t *c) {
    if (!c) return;
    if (c->ssl) {
        if (!c->dead) { /* close_notify, not waiting for the answer */
            sigpipe_guard_t g;
            sigpipe_block(&g);
            SSL_shutdown(c->ssl);
            sigpipe_restore(&g);
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    if (c->fd >= 0) close(c->fd);
    if (c->reader) redisReaderFree(c->reader);
    if (c->obuf) explicit_bzero(c->obuf, c->ocap); /* it held AUTH */
    free(c->obuf);
    free(c);
}
