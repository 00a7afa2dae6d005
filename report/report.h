/*
 * report.h — the leaders' view: reads what rapport keeps for people in
 * Redis (docs/SPEC.md §9–§10: <prefix>history:<S>, <prefix>history_index,
 * <prefix>org, with the newest alerts and the lowest scores) into a
 * report, and renders it as one JSON object (`rapport report --json`,
 * the dashboard's /api/report.json) or as a table for a terminal.
 *
 * Reads Redis only, never writes.  Every string read from Redis is
 * untrusted: the JSON holds it as valid UTF-8 (invalid bytes become
 * U+FFFD), the text output replaces control characters, and the
 * dashboard's page inserts it as text, never as markup.
 *
 * A report_t is built by one thread and then only read; nothing here is
 * shared between threads.
 */
#ifndef RAPPORT_REPORT_H
#define RAPPORT_REPORT_H

#include <hiredis/hiredis.h>

#include "common/redis_conn.h"
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* The counters of one history segment (docs/SPEC.md §9.1), in the order
 * the JSON lists them. */
typedef enum {
    RC_EVENTS = 0, RC_CONTACTS, RC_RESOLVED, RC_UNRESOLVED, RC_AHT_N, RC_AHT_SUM,
    RC_SENT_N, RC_SENT_SUM, RC_CI_N, RC_CI_SUM, RC_CHURN_RISK, RC_RECOVERED,
    RC_NEEDS_HUMAN, RC_FOLLOWUPS, RC_FOLLOWUP_MS, RC_COUNT
} report_counter_t;

/* "events", "contacts", … as in the Redis field names. */
extern const char *const report_counter_names[RC_COUNT];

/* The newest alerts and lowest scores `rapport report` and the dashboard
 * show. */
#define REPORT_ALERTS 5
#define REPORT_LOWEST 10

typedef struct report_opts {
    const char *prefix;     /* key prefix, e.g. "rapport:" */
    int64_t bucket_ms;      /* the writer's bucket width (config bucket_ms) */
    int days;               /* buckets summed, >= 1 (config window_buckets) */
    int alerts;             /* newest alerts to read, 0..1000 */
    int lowest;             /* lowest scores to read, 0..1000 */
} report_opts_t;

typedef struct report report_t;

/* Connects to `url` (redis://… or unix://…), with AUTH and SELECT as the
 * URL asks, and a timeout on connect and on every command.  The one place
 * the report and the dashboard open a connection.  NULL with errstr. */
rconn_t *report_connect(const char *url, const rconn_tls_conf_t *tls, int timeout_ms,
                        char *errstr, size_t errstr_size);

/* Reads the report.  NULL with errstr when Redis fails (the context is
 * then dead: free it and reconnect) or a sum would overflow int64.  A
 * history or org field whose value is not an integer is skipped and
 * counted (report_skipped()); fields of no known name are ignored.  The
 * caller frees the result with report_free(). */
report_t *report_read(rconn_t *c, const report_opts_t *o, char *errstr,
                      size_t errstr_size);
void report_free(report_t *r);

/* Fields skipped because their value is not an integer; *example (may be
 * NULL) gets the first one as printable "key field" text, valid while r
 * lives. */
size_t report_skipped(const report_t *r, const char **example);

/* Logs one warning when r skipped fields and its first example differs
 * from `last` (a buffer the caller keeps between reports, "" at first),
 * so that a page refreshing every few seconds warns once, not every
 * time. */
void report_warn_skipped(const report_t *r, char *last, size_t last_size);

/* The report as one JSON object (docs/REDIS.md, "rapport report --json").
 * A new reference: the caller json_decref()s it. */
json_t *report_json(const report_t *r);

/* report_json() as text: malloc()ed, caller frees; NULL when out of
 * memory. */
char *report_json_text(const report_t *r);

/* The report as a table for people, at most `cols` columns wide. */
void report_text(const report_t *r, FILE *f, int cols);

#endif
