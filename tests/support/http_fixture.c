/*
 * http_fixture.c — see http_fixture.h.
 *
 * Owns: the libmicrohttpd daemon (and through it a listening thread and a
 * thread per connection), copies of dir, user and password, the TLS
 * certificate and key.  The access
 * handler runs on the daemon's connection threads and reads only the
 * atomics and the strings fixed at start.
 */
#include "tests/support/http_fixture.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/clock.h"

#define JSON_TYPE "application/vnd.schemaregistry.v1+json"
#define FILE_MAX_BYTES (8 * 1024 * 1024)

struct http_fixture {
    struct MHD_Daemon *daemon;
    char *dir, *user, *password;   /* owned; user NULL: no auth */
    char *cert, *key;              /* owned PEM text; NULL: plain HTTP */
    int port;
    char url[64];
    atomic_int delay_ms;
    atomic_int status;
    atomic_bool stopping;          /* the daemon is being stopped: cut delays short */
    atomic_ulong requests, connections;
};

/* Reads a whole file (caller frees).  NULL when it does not exist or
 * cannot be read. */
static char *file_read(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!fp) return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && n <= FILE_MAX_BYTES &&
        fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, fp) == (size_t)n) {
            buf[n] = '\0';
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(fp);
    return buf;
}

static bool path_ok(const char *url) {
    if (url[0] != '/' || strstr(url, "..")) return false;
    for (const char *p = url; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '/' || *p == '-'))
            return false;
    return true;
}

/* Queues status with body (taking it over; NULL: an empty body). */
static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, char *body,
                              size_t len, const char *type, bool auth_fail) {
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = auth_fail
                             ? MHD_queue_basic_auth_fail_response(conn, "SchemaRegistry", resp)
                             : MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Answers status with <dir>/errors/<status>.json (or an empty body). */
static enum MHD_Result answer_error_file(http_fixture_t *f, struct MHD_Connection *conn,
                                        unsigned status, bool auth_fail) {
    char path[4096];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/errors/%u.json", f->dir, status);
    char *body = file_read(path, &len);
    return answer(conn, status, body, len, JSON_TYPE, auth_fail);
}

static bool auth_ok(http_fixture_t *f, struct MHD_Connection *conn) {
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    bool ok = user && pass && strcmp(user, f->user) == 0 && strcmp(pass, f->password) == 0;
    MHD_free(user);
    MHD_free(pass);
    return ok;
}

static void delay(http_fixture_t *f) {
    int left = atomic_load(&f->delay_ms);
    while (left > 0 && !atomic_load(&f->stopping)) {
        clock_sleep_ms(10);
        left -= 10;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    static int headers_seen;
    http_fixture_t *f = cls;
    char path[4096];
    size_t len = 0;
    char *body;

    if (!*con_cls) { /* the first call: headers only */
        *con_cls = &headers_seen;
        return MHD_YES;
    }
    atomic_fetch_add(&f->requests, 1);
    delay(f);
    if (strcmp(method, "GET") != 0) return answer(conn, 405, NULL, 0, "text/plain", false);
    if (!path_ok(url)) return answer(conn, 400, NULL, 0, "text/plain", false);
    if (f->user && !auth_ok(f, conn)) return answer_error_file(f, conn, 401, true);
    int forced = atomic_load(&f->status);
    if (forced) return answer_error_file(f, conn, (unsigned)forced, false);

    snprintf(path, sizeof path, "%s%s.json", f->dir, url);
    if ((body = file_read(path, &len))) return answer(conn, 200, body, len, JSON_TYPE, false);

    snprintf(path, sizeof path, "%s%s", f->dir, url);
    char *slash = strrchr(path, '/');
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "not_found.json");
    if ((body = file_read(path, &len))) return answer(conn, 404, body, len, JSON_TYPE, false);

    static const char page[] = "<html><body><h1>404 Not Found</h1></body></html>\n";
    body = strdup(page);
    return answer(conn, 404, body, body ? sizeof page - 1 : 0, "text/html", false);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_fixture_t *f = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&f->connections, 1);
}

/* Starts the daemon on f->port (0: a free one, stored in f->port). */
static int listen_on(http_fixture_t *f, char *errstr, size_t errstr_size) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (f->cert) {
        f->daemon = MHD_start_daemon(
            flags | MHD_USE_TLS, 0, NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR,
            (struct sockaddr *)&sin, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, f, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)30, MHD_OPTION_HTTPS_MEM_KEY, f->key, MHD_OPTION_HTTPS_MEM_CERT, f->cert,
            MHD_OPTION_END);
    } else {
        f->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_NOTIFY_CONNECTION,
            on_connection, f, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    }
    if (!f->daemon) {
        snprintf(errstr, errstr_size, "http fixture: cannot listen on 127.0.0.1:%d", f->port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        snprintf(errstr, errstr_size, "http fixture: cannot tell the port it listens on");
        MHD_stop_daemon(f->daemon);
        f->daemon = NULL;
        return -1;
    }
    f->port = info->port;
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d", f->cert ? "https" : "http", f->port);
    return 0;
}

http_fixture_t *http_fixture_start(const char *dir, const char *user, const char *password,
                                   char *errstr, size_t errstr_size) {
    http_fixture_t *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir)) || (user && !(f->user = strdup(user))) ||
        (user && !(f->password = strdup(password ? password : "")))) {
        snprintf(errstr, errstr_size, "http fixture: out of memory");
        goto fail;
    }
    if (listen_on(f, errstr, errstr_size) != 0) goto fail;
    return f;

fail:
    http_fixture_free(f);
    return NULL;
}

http_fixture_t *http_fixture_start_tls(const char *dir, const char *cert_file,
                                       const char *key_file, char *errstr, size_t errstr_size) {
    size_t len;
    http_fixture_t *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir))) {
        snprintf(errstr, errstr_size, "http fixture: out of memory");
        goto fail;
    }
    if (!(f->cert = file_read(cert_file, &len)) || !(f->key = file_read(key_file, &len))) {
        snprintf(errstr, errstr_size, "http fixture: cannot read %s or %s", cert_file, key_file);
        goto fail;
    }
    if (listen_on(f, errstr, errstr_size) != 0) goto fail;
    return f;

fail:
    http_fixture_free(f);
    return NULL;
}

void http_fixture_pause(http_fixture_t *f) {
    if (!f->daemon) return;
    atomic_store(&f->stopping, true);
    MHD_stop_daemon(f->daemon);
    f->daemon = NULL;
    atomic_store(&f->stopping, false);
}

int http_fixture_resume(http_fixture_t *f, char *errstr, size_t errstr_size) {
    if (f->daemon) return 0;
    return listen_on(f, errstr, errstr_size);
}

void http_fixture_free(http_fixture_t *f) {
    if (!f) return;
    http_fixture_pause(f);
    free(f->dir);
    free(f->user);
    free(f->password);
    free(f->cert);
    free(f->key);
    free(f);
}

int http_fixture_port(const http_fixture_t *f) { return f->port; }

const char *http_fixture_url(const http_fixture_t *f) { return f->url; }

void http_fixture_set_delay(http_fixture_t *f, int delay_ms) {
    atomic_store(&f->delay_ms, delay_ms);
}

void http_fixture_set_status(http_fixture_t *f, int status) { atomic_store(&f->status, status); }

unsigned long http_fixture_requests(const http_fixture_t *f) {
    return atomic_load(&f->requests);
}

unsigned long http_fixture_connections(const http_fixture_t *f) {
    return atomic_load(&f->connections);
}
