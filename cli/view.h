/*
 * view.h — what `rapport top` and `rapport demo` show of rapport's output
 * in Redis: the lowest connection indexes and the alerts.
 *
 * Every key is built from the caller's prefix and every value is read by
 * its length (customer ids and narratives are outside bytes), and what is
 * printed carries no control bytes from the data (a customer id or a
 * narrative could hold terminal escapes).  Reads Redis only.  One thread:
 * the caller's.
 */
#ifndef RAPPORT_VIEW_H
#define RAPPORT_VIEW_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/redis_conn.h"

/* Connects to ep (TLS, AUTH and SELECT as its URL says) with a 2 s
 * timeout.  NULL with errstr when Redis cannot be reached or refuses. */
rconn_t *view_connect(const rconn_endpoint_t *ep, char *errstr, size_t errstr_size);

/* Writes s (n bytes) to f in exactly `cols` columns, padded with spaces:
 * control bytes become '?', and a cut falls on a UTF-8 character
 * boundary, marked with "…". */
void view_cell(FILE *f, const char *s, size_t n, int cols);
/* "2026-02-05 02:41:06" (UTC) for ms since the epoch; "-" when < 0. */
const char *view_time(int64_t ms, char *buf, size_t size);

/* The `rows` lowest scores of <prefix>scores with their customers' hash
 * fields, as a table under the heading "lowest connection index".
 * Returns 0, or -1 with errstr when Redis fails. */
int view_lowest(FILE *f, rconn_t *c, const char *prefix, int rows, char *errstr,
                size_t errstr_size);

/* Field `name` of an entry of <prefix>alerts (an element of an XRANGE
 * reply): its bytes and *len, or "" and 0 when the entry lacks it. */
const char *view_alert_field(const redisReply *entry, const char *name, size_t *len);
/* Prints one alert (time, type, customer, score, reason, narrative) in
 * `cols` columns. */
void view_alert(FILE *f, const redisReply *entry, int cols);

#endif
