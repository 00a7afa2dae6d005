/*
 * dashboard.h — `rapport dashboard`: the leaders' view (report.h) as a
 * web page that refreshes itself, and as JSON.
 *
 *   /                  one self-contained page (no CDN, no external script
 *                      or font) that fetches the JSON every 5 s and draws
 *                      it with SVG; strings from Redis go in as text only
 *   /api/report.json   exactly `rapport report --json`'s object; ?days=N
 *                      sums N buckets instead of the configured window
 *
 * Reads Redis only.  The server runs on libmicrohttpd's one internal
 * thread (common/http.h), which owns the Redis connection: it connects on
 * the first request, and after any failure frees it and connects again on
 * the next, so an outage shows as a banner on the page (503 from the
 * JSON) and heals by itself.  Optional HTTP basic auth and HTTPS.
 */
#ifndef RAPPORT_DASHBOARD_H
#define RAPPORT_DASHBOARD_H

#include <stddef.h>

#include "report/report.h"

typedef struct dashboard_conf {
    const char *listen;          /* [host]:port, e.g. "127.0.0.1:8088" */
    const char *redis_url;
    rconn_tls_conf_t redis_tls;  /* for rediss:// */
    int redis_timeout_ms;
    report_opts_t report;        /* prefix, bucket_ms, days (the default window) */
    const char *auth_user;       /* basic auth when set */
    const char *auth_password;
    const char *tls_cert_pem;    /* HTTPS when both are set (PEM text) */
    const char *tls_key_pem;
} dashboard_conf_t;

typedef struct dashboard dashboard_t;

/* Starts serving (the strings are copied).  NULL with errstr when the
 * address cannot be bound or TLS cannot be had. */
dashboard_t *dashboard_start(const dashboard_conf_t *conf, char *errstr, size_t errstr_size);

/* "http://127.0.0.1:8088/" (https:// with TLS), for people to open. */
const char *dashboard_url(const dashboard_t *d);

/* Stops the server and frees.  NULL is a no-op. */
void dashboard_stop(dashboard_t *d);

/* Reads a basic-auth file: one line "user:password" (the password may
 * hold ':'; a trailing newline is dropped).  *user and *password are
 * malloc()ed; the caller frees.  -1 with errstr when the file cannot be
 * read or has no "user:" part. */
int dashboard_read_auth_file(const char *path, char **user, char **password, char *errstr,
                             size_t errstr_size);

/* Reads a whole file (a PEM certificate or key) into a malloc()ed,
 * NUL-terminated buffer.  NULL with errstr. */
char *dashboard_read_file(const char *path, char *errstr, size_t errstr_size);

#endif
