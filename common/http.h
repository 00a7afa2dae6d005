/*
 * http.h — a small HTTP/1.1 server for read-only GET endpoints, on
 * libmicrohttpd.
 *
 * The server binds its own listening socket (so that a bad or busy address
 * is an error the caller can report at start-up) and hands it to
 * libmicrohttpd, which runs every request on one internal thread of its
 * own.  Route handlers therefore run on that thread, never on the
 * caller's: whatever they read must be safe to read from another thread.
 */
#ifndef RAPPORT_HTTP_H
#define RAPPORT_HTTP_H

#include <stddef.h>

typedef struct http_server http_server_t;

/* A GET (or HEAD) handler: returns the HTTP status and sets *body to a
 * malloc()ed text of *len bytes, which the server frees; *content_type is
 * a static string (it starts as "text/plain; charset=utf-8").  A handler
 * that cannot allocate its body returns 500 with *body NULL. */
typedef int (*http_handler_fn)(void *opaque, char **body, size_t *len,
                               const char **content_type);

/* The request a handler answers, for handlers that read its query. */
typedef struct http_request http_request_t;

/* The value of query argument `name` ("/x?days=7": "7"), or NULL when
 * absent.  Valid while the handler runs. */
const char *http_request_arg(const http_request_t *req, const char *name);

/* Like http_handler_fn, with the request. */
typedef int (*http_request_fn)(void *opaque, const http_request_t *req, char **body,
                               size_t *len, const char **content_type);

typedef struct http_route {
    const char *path;            /* exact match, e.g. "/metrics" */
    http_handler_fn fn;
    http_request_fn fn_req;      /* used instead of fn when set */
} http_route_t;

/* What a server that may face more than loopback needs. */
typedef struct http_options {
    const char *auth_user;       /* HTTP basic auth when set: every path asks for it */
    const char *auth_password;
    const char *realm;           /* shown by browsers; default "rapport" */
    const char *tls_cert_pem;    /* HTTPS when both are set: PEM text, not file names */
    const char *tls_key_pem;
} http_options_t;

/* True when this libmicrohttpd was built with TLS (HTTPS). */
int http_tls_supported(void);

/* Listens on `listen` and serves `routes` (n of them; the array and its
 * strings must outlive the server), passing `opaque` to each handler.
 * Other paths answer 404, other methods 405.
 *
 * listen: "host:port", "[ipv6]:port" or ":port".  An empty host means
 * every interface (IPv6 and IPv4 when the machine has IPv6, else IPv4);
 * host may be a name, whose first address is used; port 0 picks a free
 * port (see http_server_port()).
 *
 * NULL with errstr ("…: Address already in use") when the address does
 * not parse or cannot be bound. */
http_server_t *http_server_start(const char *listen, const http_route_t *routes, size_t n,
                                 void *opaque, char *errstr, size_t errstr_size);

/* http_server_start() with options (may be NULL; its strings are copied).
 * NULL with errstr also when TLS is asked for and not supported, or the
 * certificate or key is refused. */
http_server_t *http_server_start_opts(const char *listen, const http_route_t *routes, size_t n,
                                      void *opaque, const http_options_t *opts, char *errstr,
                                      size_t errstr_size);

/* The bound port, and the bound address as "host:port" text. */
int http_server_port(const http_server_t *s);
const char *http_server_address(const http_server_t *s);

/* Stops the thread, closes the socket, frees.  NULL is a no-op. */
void http_server_stop(http_server_t *s);

#endif
