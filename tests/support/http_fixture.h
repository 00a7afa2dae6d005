/*
 * http_fixture.h — a small HTTP server on 127.0.0.1 (libmicrohttpd) that
 * answers GET requests from response files, for tests of HTTP clients such
 * as the schema-registry client.
 *
 * A GET of /a/b/c is answered:
 *   - 401 with <dir>/errors/401.json (and WWW-Authenticate: Basic) when
 *     basic auth is required and the request's user or password differ;
 *   - status N with <dir>/errors/N.json while http_fixture_set_status(N);
 *   - 200 with <dir>/a/b/c.json when that file exists;
 *   - 404 with <dir>/a/b/not_found.json when that file exists (an API's
 *     own "not found" body);
 *   - 404 with a small HTML page otherwise (what a proxy or a wrong path
 *     gives).
 * JSON answers carry Content-Type application/vnd.schemaregistry.v1+json.
 * Other methods get 405; a path with anything but [A-Za-z0-9_./-] or ".."
 * gets 400.
 *
 * The server runs a thread per connection (so a slow answer delays only
 * its own connection).  Settings may be changed from the test's thread at
 * any time: they are atomics.  Test binaries only.
 */
#ifndef RAPPORT_TEST_HTTP_FIXTURE_H
#define RAPPORT_TEST_HTTP_FIXTURE_H

#include <stddef.h>

typedef struct http_fixture http_fixture_t;

/* Starts serving dir (copied) on a free port of 127.0.0.1.  user and
 * password: basic auth required when user is non-NULL.  Returns NULL with
 * errstr on failure. */
http_fixture_t *http_fixture_start(const char *dir, const char *user, const char *password,
                                   char *errstr, size_t errstr_size);

/* The same over HTTPS, with the PEM certificate and key in these files
 * (no auth).  Its URL starts with https://. */
http_fixture_t *http_fixture_start_tls(const char *dir, const char *cert_file,
                                       const char *key_file, char *errstr, size_t errstr_size);

/* Stops the server (closing the port) and frees f.  NULL is a no-op. */
void http_fixture_free(http_fixture_t *f);

int http_fixture_port(const http_fixture_t *f);

/* "http://127.0.0.1:<port>" (https:// with TLS), valid until
 * http_fixture_free(). */
const char *http_fixture_url(const http_fixture_t *f);

/* Every answer waits this long first (0: none). */
void http_fixture_set_delay(http_fixture_t *f, int delay_ms);

/* Every answer (after the auth check) is this status with
 * <dir>/errors/<status>.json; 0 restores normal answers. */
void http_fixture_set_status(http_fixture_t *f, int status);

/* Stops listening: the port is closed and connections are refused. */
void http_fixture_pause(http_fixture_t *f);

/* Listens again on the same port.  Returns 0 or -1 with errstr. */
int http_fixture_resume(http_fixture_t *f, char *errstr, size_t errstr_size);

/* Requests answered (any status) and TCP connections accepted so far. */
unsigned long http_fixture_requests(const http_fixture_t *f);
unsigned long http_fixture_connections(const http_fixture_t *f);

#endif
