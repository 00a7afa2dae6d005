/*
 * registry.h — writer schemas by id from a Confluent-compatible schema
 * registry (`GET <url>/schemas/ids/<id>`), as a schema_fetch_fn for the
 * decoder (consumer/decode.h).
 *
 * The client tells a missing id (HTTP 404 with Confluent error_code 40403:
 * SCHEMA_NOT_FOUND, dead-lettered as unknown_schema) from a registry that
 * cannot answer now (anything else: SCHEMA_UNAVAILABLE, the caller pauses
 * and retries).  After an unavailable answer it does not ask again before
 * a back-off (REGISTRY_BACKOFF_MIN_MS doubling to REGISTRY_BACKOFF_MAX_MS)
 * has passed, so a dead or slow registry costs one request per back-off,
 * not one per message or partition.  Caching is the decoder's: an id's
 * schema never changes, and the decoder keeps every schema found.
 *
 * One thread owns a registry_t (the decoder's thread); nothing is locked.
 */
#ifndef RAPPORT_REGISTRY_H
#define RAPPORT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "consumer/decode.h"

/* A request (connect, TLS, answer) that takes longer than this fails. */
#define REGISTRY_TIMEOUT_MS 5000
/* Connecting, TLS handshake included, may take at most this long (or the
 * whole timeout_ms, when that is shorter). */
#define REGISTRY_CONNECT_TIMEOUT_MS 3000
#define REGISTRY_BACKOFF_MIN_MS 250
#define REGISTRY_BACKOFF_MAX_MS 5000

typedef struct registry registry_t;

/* Checks a schema_registry_url: http:// or https://, a host, no
 * credentials, query or fragment (user and password have their own keys),
 * one URL only.  Returns 0, or -1 with errstr. */
int registry_url_check(const char *url, char *errstr, size_t errstr_size);

/* A client for the registry at url (checked by registry_url_check; a path
 * prefix such as https://host/registry is kept, a trailing '/' dropped).
 * user and password: basic auth when user is non-empty (both may be NULL).
 * timeout_ms: the limit on each request, > 0 (REGISTRY_TIMEOUT_MS in
 * production).  Copies every string; sends nothing until the first fetch.
 * Returns NULL with errstr on a bad argument or when libcurl cannot start. */
registry_t *registry_new(const char *url, const char *user, const char *password,
                         int timeout_ms, char *errstr, size_t errstr_size);

/* Verifies an https registry against the CA certificates (PEM) in
 * ca_file instead of the system's (key schema_registry_ca_file).  Call
 * before the first fetch.  Returns 0, or -1 with errstr naming the file
 * when it cannot be read. */
int registry_set_ca_file(registry_t *r, const char *ca_file, char *errstr, size_t errstr_size);

/* Frees r and closes its connection.  NULL is a no-op. */
void registry_free(registry_t *r);

/* schema_fetch_fn: opaque is a registry_t *.  SCHEMA_FOUND with *json (the
 * schema text, NUL-terminated; caller frees with free()) and *len;
 * SCHEMA_NOT_FOUND; or SCHEMA_UNAVAILABLE with errstr saying why (no
 * quotes, backslashes or control characters in it, never the password). */
schema_lookup_t registry_fetch(void *opaque, uint32_t id, char **json, size_t *len,
                               char *errstr, size_t errstr_size);

/* What one registry answer means, the transport aside: HTTP `status` and
 * `body_len` bytes of `body` (need not be NUL-terminated) for the request
 * described by `where` ("GET <url>", for errstr); `base` is the registry
 * URL, for log lines.  Results as registry_fetch() (errstr not yet
 * cleaned of quotes).  registry_fetch() calls it for every answer; it is
 * public so that fuzz/fuzz_registry.c can feed it hostile answers. */
schema_lookup_t registry_answer_parse(const char *base, const char *where, long status,
                                      const char *body, size_t body_len, char **json,
                                      size_t *len, char *errstr, size_t errstr_size);

#endif
