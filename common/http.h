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

typedef struct http_route {
    const char *path;            /* exact match, e.g. "/metrics" */
    http_handler_fn fn;
} http_route_t;

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

/* The bound port, and the bound address as "host:port" text. */
int http_server_port(const http_server_t *s);
const char *http_server_address(const http_server_t *s);

/* Stops the thread, closes the socket, frees.  NULL is a no-op. */
void http_server_stop(http_server_t *s);

#endif
