/*
 * http.c — see http.h.  Owns one listening socket and one libmicrohttpd
 * daemon; the daemon's internal thread accepts connections and runs the
 * route handlers.  The thread that calls http_server_start() and
 * http_server_stop() touches nothing else here.
 */
#include "common/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"

#define HTTP_CONNECTION_LIMIT 32
#define HTTP_CONNECTION_TIMEOUT_S 10

struct http_server {
    struct MHD_Daemon *daemon;
    char *auth_user, *auth_password, *realm, *tls_cert, *tls_key;
    const http_route_t *routes;     /* borrowed */
    size_t nroutes;
    void *opaque;
    int port;
    char address[300];
};

/* Splits "host:port", "[v6]:port" or ":port" into host (may be empty)
 * and port.  Returns 0 or -1 with errstr. */
static int listen_split(const char *listen, char *host, size_t host_size, int *port,
                        char *errstr, size_t errstr_size) {
    const char *colon, *h = listen;
    size_t hlen;
    if (*listen == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') goto bad;
        h = listen + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon) goto bad;
        hlen = (size_t)(colon - listen);
        if (memchr(listen, ':', hlen)) goto bad; /* a bare IPv6 address needs brackets */
    }
    if (hlen >= host_size) goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || errno || p < 0 || p > 65535) goto bad;
    *port = (int)p;
    return 0;
bad:
    snprintf(errstr, errstr_size,
             "\"%s\" is not [host]:port (e.g. \":9464\", \"127.0.0.1:9464\", \"[::1]:9464\")",
             listen);
    return -1;
}

/* A socket bound to addr and listening.  -1 with *err (errno) and errstr
 * (naming the address) on failure. */
static int listen_on(const struct sockaddr *addr, socklen_t addrlen, bool dual_stack,
                     const char *what, int *err, char *errstr, size_t errstr_size) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        snprintf(errstr, errstr_size, "%s: %s", what, strerror(*err));
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (dual_stack) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, addr, addrlen) != 0 || listen(fd, 64) != 0) {
        *err = errno;
        snprintf(errstr, errstr_size, "%s: %s", what, strerror(*err));
        close(fd);
        return -1;
    }
    return fd;
}

/* Binds the listening socket for `listen`.  Returns the fd or -1. */
static int http_bind(const char *listen, char *errstr, size_t errstr_size) {
    char host[256];
    int port, err = 0;
    if (listen_split(listen, host, sizeof(host), &port, errstr, errstr_size) != 0) return -1;
    if (!*host) {
        /* Every interface: IPv6 with IPv4-mapped addresses when the
         * machine has IPv6, else IPv4 alone. */
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = in6addr_any};
        int fd = listen_on((struct sockaddr *)&a6, sizeof(a6), true, listen, &err, errstr,
                           errstr_size);
        if (fd >= 0 || (err != EAFNOSUPPORT && err != EADDRNOTAVAIL)) return fd;
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_ANY)};
        return listen_on((struct sockaddr *)&a4, sizeof(a4), false, listen, &err, errstr,
                         errstr_size);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(errstr, errstr_size, "%s: %s", listen, gai_strerror(gai));
        return -1;
    }
    int fd = listen_on(res->ai_addr, res->ai_addrlen, false, listen, &err, errstr, errstr_size);
    freeaddrinfo(res);
    return fd;
}

/* Fills s->port and s->address from the bound socket fd. */
static void http_describe(http_server_t *s, int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        s->port = ntohs(a->sin6_port);
        snprintf(s->address, sizeof(s->address), "[%s]:%d", ip, s->port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        s->port = ntohs(a->sin_port);
        snprintf(s->address, sizeof(s->address), "%s:%d", ip, s->port);
    }
}

static enum MHD_Result respond(struct MHD_Connection *conn, int status, char *body, size_t len,
                               const char *content_type) {
    struct MHD_Response *r = body
        ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
        : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned int)status, r);
    MHD_destroy_response(r);
    return ok;
}

struct http_request {
    struct MHD_Connection *conn;
};

const char *http_request_arg(const http_request_t *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_tls_supported(void) { return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES; }

/* Compares without an early exit, so that the time taken does not tell
 * how much of a guess was right. */
static bool same_secret(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = na != nb;
    for (size_t i = 0; i < na; i++) d |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return d == 0;
}

/* True when the request carries the server's user and password (or the
 * server asks for none). */
static bool authorized(const http_server_t *s, struct MHD_Connection *conn) {
    if (!s->auth_user) return true;
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    /* Both compared, always: the time taken says nothing of which was wrong. */
    bool ok = user && pass &&
              ((int)same_secret(user, s->auth_user) & (int)same_secret(pass, s->auth_password));
    if (user) MHD_free(user);
    if (pass) MHD_free(pass);
    return ok;
}

static enum MHD_Result ask_auth(const http_server_t *s, struct MHD_Connection *conn) {
    static const char msg[] = "authentication required\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result ok = MHD_queue_basic_auth_fail_response(conn, s->realm, r);
    MHD_destroy_response(r);
    return ok;
}

/* Runs on the daemon's thread, once per request (GET has no body). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    http_server_t *s = cls;
    (void)version;
    (void)upload_data;
    (void)req_cls;
    const char *text = "text/plain; charset=utf-8";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        *upload_data_size = 0; /* ignore any body */
        char *msg = xstrdup("only GET and HEAD\n");
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, msg, strlen(msg), text);
    }
    if (!authorized(s, conn)) return ask_auth(s, conn);
    for (size_t i = 0; i < s->nroutes; i++) {
        if (strcmp(url, s->routes[i].path) != 0) continue;
        char *body = NULL;
        size_t len = 0;
        const char *ctype = text;
        http_request_t req = {conn};
        int status = s->routes[i].fn_req
                         ? s->routes[i].fn_req(s->opaque, &req, &body, &len, &ctype)
                         : s->routes[i].fn(s->opaque, &body, &len, &ctype);
        return respond(conn, status, body, len, ctype);
    }
    char *msg = xstrdup("not found\n");
    return respond(conn, MHD_HTTP_NOT_FOUND, msg, strlen(msg), text);
}

/* libmicrohttpd's own errors (on its thread): one logfmt line each. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512], q[600];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    log_warn("http server", "err=%s", log_quote(msg, q, sizeof(q)));
}

http_server_t *http_server_start(const char *listen, const http_route_t *routes, size_t n,
                                 void *opaque, char *errstr, size_t errstr_size) {
    return http_server_start_opts(listen, routes, n, opaque, NULL, errstr, errstr_size);
}

static void server_free(http_server_t *s) {
    free(s->auth_user);
    free(s->auth_password);
    free(s->realm);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
}

http_server_t *http_server_start_opts(const char *listen, const http_route_t *routes, size_t n,
                                      void *opaque, const http_options_t *opts, char *errstr,
                                      size_t errstr_size) {
    bool tls = opts && opts->tls_cert_pem && opts->tls_key_pem;
    if (tls && !http_tls_supported()) {
        snprintf(errstr, errstr_size, "this libmicrohttpd was built without TLS: no HTTPS");
        return NULL;
    }
    http_server_t *s = xcalloc(1, sizeof(*s));
    if (opts && opts->auth_user) {
        s->auth_user = xstrdup(opts->auth_user);
        s->auth_password = xstrdup(opts->auth_password ? opts->auth_password : "");
    }
    s->realm = xstrdup(opts && opts->realm ? opts->realm : "rapport");
    if (tls) {
        s->tls_cert = xstrdup(opts->tls_cert_pem);
        s->tls_key = xstrdup(opts->tls_key_pem);
    }
    s->routes = routes;
    s->nroutes = n;
    s->opaque = opaque;
    int fd = http_bind(listen, errstr, errstr_size);
    if (fd < 0) goto fail;
    http_describe(s, fd);
    /* The daemon gets its own copy of the socket, which it closes when it
     * stops; ours is closed here either way.  Whether libmicrohttpd closes
     * its copy when it fails to start is not documented: this way the
     * worst case is one descriptor left open (in a process that is about
     * to exit with a start-up error), never one closed twice. */
    int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", listen, strerror(errno));
        goto fail;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (tls)
        s->daemon = MHD_start_daemon(
            flags | MHD_USE_TLS, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
            on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONNECTION_TIMEOUT_S,
            MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
            MHD_OPTION_END);
    else
        s->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
            NULL, /* first, or MHD warns */
            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_CONNECTION_LIMIT,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_CONNECTION_TIMEOUT_S,
            MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(errstr, errstr_size, "%s: cannot start the HTTP server (libmicrohttpd)%s",
                 listen, tls ? "; is the TLS certificate and key PEM that match?" : "");
        goto fail;
    }
    close(fd);
    return s;
fail:
    if (fd >= 0) close(fd);
    server_free(s);
    return NULL;
}

int http_server_port(const http_server_t *s) { return s->port; }

const char *http_server_address(const http_server_t *s) { return s->address; }

void http_server_stop(http_server_t *s) {
    if (!s) return;
    MHD_stop_daemon(s->daemon); /* joins its thread and closes the listening socket */
    server_free(s);
}
