/*
 * view.c — see view.h.
 */
#include "cli/view.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define VIEW_TIMEOUT_MS 2000

/* ---- Text ------------------------------------------------------------- */

/* Writes s (n bytes) to f in at most `cols` columns: control bytes become
 * '?', and a cut falls on a UTF-8 character boundary, marked with "…".
 * Counts one column per character. */
static void view_text(FILE *f, const char *s, size_t n, int cols) {
    int used = 0;
    if (cols <= 0) return;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t len = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 1;
        if (i + len > n) len = n - i;
        if (used == cols - 1 && i + len < n) {
            fputs("…", f);
            return;
        }
        if (used >= cols) return;
        if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && len == 1))
            fputc('?', f);
        else
            fwrite(s + i, 1, len, f);
        used++;
        i += len;
    }
}

void view_cell(FILE *f, const char *s, size_t n, int cols) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    view_text(f, s, n, cols);
    for (int i = (int)chars; i < cols; i++) fputc(' ', f);
}

const char *view_time(int64_t ms, char *buf, size_t size) {
    if (ms < 0) return "-";
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm)) return "?";
    return buf;
}

/* ---- Redis ------------------------------------------------------------ */

rconn_t *view_connect(const rconn_endpoint_t *ep, char *errstr, size_t errstr_size) {
    return rconn_connect(ep, VIEW_TIMEOUT_MS, NULL, errstr, errstr_size);
}

/* ---- Scores and alerts ------------------------------------------------ */

static const char *hash_str(const redisReply *r, size_t i) {
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements || !r->element[i]->str) return "-";
    return r->element[i]->str;
}

int view_lowest(FILE *f, rconn_t *c, const char *prefix, int rows, char *errstr,
                size_t errstr_size) {
    redisReply *z = rconn_command_ok(c, errstr, errstr_size, "ZRANGE %sscores 0 %d WITHSCORES",
                                 prefix, rows - 1);
    if (!z) return -1;
    /* Pairs of strings (member, score), or it is not the sorted set
     * rapport writes. */
    bool ok = z->type == REDIS_REPLY_ARRAY && z->elements % 2 == 0;
    for (size_t i = 0; ok && i < z->elements; i++)
        ok = z->element[i]->type == REDIS_REPLY_STRING;
    if (!ok) {
        snprintf(errstr, errstr_size, "%sscores: unexpected reply to ZRANGE", prefix);
        freeReplyObject(z);
        return -1;
    }
    fprintf(f, "lowest connection index\n");
    fprintf(f, "  %-24s %8s %-7s %6s %8s %8s  %-19s\n", "customer", "ci", "at risk", "streak",
            "contacts", "ai share", "updated (UTC)");
    size_t n = z->elements / 2;
    for (size_t i = 0; i < n; i++) /* pipelined: one round trip for every row */
        rconn_append(c, "HMGET %sci:%b at_risk streak contacts ai_share updated_at",
                           prefix, z->element[2 * i]->str, (size_t)z->element[2 * i]->len);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *h = NULL;
        if (rconn_get_reply_wait(c, &h) != 0) {
            snprintf(errstr, errstr_size, "%s", rconn_errstr(c));
            rc = -1;
            break;
        }
        char t[32];
        const redisReply *id = z->element[2 * i];
        const char *updated = hash_str(h, 4);
        fputs("  ", f);
        view_cell(f, id->str, id->len, 24);
        fprintf(f, " %8.2f %-7s %6s %8s %8s  %-19s\n", strtod(z->element[2 * i + 1]->str, NULL),
                strcmp(hash_str(h, 0), "1") == 0 ? "YES" : "no", hash_str(h, 1), hash_str(h, 2),
                hash_str(h, 3),
                view_time(strcmp(updated, "-") ? strtoll(updated, NULL, 10) : -1, t, sizeof(t)));
        freeReplyObject(h);
    }
    if (n == 0) fprintf(f, "  (no scores yet)\n");
    freeReplyObject(z);
    return rc;
}

const char *view_alert_field(const redisReply *e, const char *name, size_t *len) {
    const redisReply *kv = e->type == REDIS_REPLY_ARRAY && e->elements >= 2 ? e->element[1] : NULL;
    for (size_t i = 0; kv && i + 1 < kv->elements; i += 2) {
        if (kv->element[i]->str && !strcmp(kv->element[i]->str, name)) {
            *len = kv->element[i + 1]->len;
            return kv->element[i + 1]->str;
        }
    }
    *len = 0;
    return "";
}

void view_alert(FILE *f, const redisReply *e, int cols) {
    size_t n;
    char t[32], head[160];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) return;
    const char *type = view_alert_field(e, "type", &n);
    const char *cid = view_alert_field(e, "customer_id", &n);
    size_t cid_len = n;
    const char *score = view_alert_field(e, "score", &n);
    const char *prev = view_alert_field(e, "previous_score", &n);
    const char *reason = view_alert_field(e, "reason", &n);
    size_t reason_len = n;
    const char *narr = view_alert_field(e, "narrative", &n);
    size_t narr_len = n;
    const char *at = view_alert_field(e, "occurred_at", &n);
    snprintf(head, sizeof(head), "  %s  %-11s ", view_time(strtoll(at, NULL, 10), t, sizeof(t)),
             type);
    fputs(head, f);
    view_text(f, cid, cid_len, 24);
    if (*prev)
        fprintf(f, "  ci %s (was %s)\n", score, prev);
    else
        fprintf(f, "  ci %s (new)\n", score);
    fputs("      ", f);
    view_text(f, reason, reason_len, cols - 6);
    fputc('\n', f);
    if (narr_len) {
        fputs("      \"", f);
        view_text(f, narr, narr_len, cols - 8);
        fputs("\"\n", f);
    }
}
