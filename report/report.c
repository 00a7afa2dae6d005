/*
 * report.c — see report.h.  Reading: the highest S of
 * <prefix>history_index is `to`, from = to - (days - 1) * bucket_ms;
 * ZRANGEBYSCORE picks the hashes in [from, to], HGETALL reads them
 * (pipelined, one round trip), and every known counter is added with an
 * overflow check.  The org hash, the newest alerts (XREVRANGE) and the
 * lowest scores (ZRANGE, then HMGET of each customer hash, pipelined)
 * complete it.  Rendering is pure: JSON with jansson, text with stdio.
 *
 * The report owns copies of everything it shows; the thread that read it
 * owns it.
 */
#include "report/report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/alloc.h"
#include "common/escape.h"
#include "common/log.h"
#include "scoring/event.h"
#include "sinks/redis.h"

#define NCH EVENT_CHANNEL_COUNT
#define NH EVENT_HANDLER_COUNT
#define NBINS 10
#define MAX_BUCKETS 100000

const char *const report_counter_names[RC_COUNT] = {
    "events", "contacts", "resolved", "unresolved", "aht_n", "aht_sum", "sent_n", "sent_sum",
    "ci_n", "ci_sum", "churn_risk", "recovered", "needs_human", "followups", "followup_ms"};

/* The alert types, as in the EXPIRY:<type> fields. */
static const char *const expiry_names[3] = {"churn_risk", "recovered", "needs_human"};

typedef struct counts {
    int64_t v[RC_COUNT];
} counts_t;

typedef struct bucket {
    int64_t s;
    counts_t by_handler[NH];
} bucket_t;

typedef struct ralert {
    char *id, *type, *customer_id, *score, *previous_score, *trigger, *occurred_at, *reason,
        *narrative;
} ralert_t;

typedef struct lowest {
    char *customer_id, *route, *route_reason;
    double ci;
    int64_t at_risk, streak, contacts;
} lowest_t;

struct report {
    bool has_history;
    int64_t from, to, bucket_ms;
    int days;
    counts_t seg[NCH][NH];
    bool seg_present[NCH][NH];
    int64_t expiry[3];
    bucket_t *buckets;       /* ascending S, only the hashes that exist */
    size_t nbuckets;
    int64_t customers, at_risk, route_human, ci_sum, ci_bins[NBINS];
    ralert_t *alerts;
    size_t nalerts;
    lowest_t *lowest;
    size_t nlowest;
    size_t skipped;
    char skipped_example[300];
};

/* ---- Redis ------------------------------------------------------------ */

rconn_t *report_connect(const char *url, const rconn_tls_conf_t *tls, int timeout_ms,
                        char *errstr, size_t errstr_size) {
    rconn_endpoint_t *ep = rconn_endpoint_new(url, tls, errstr, errstr_size);
    if (!ep) return NULL;
    rconn_t *c = rconn_connect(ep, timeout_ms, NULL, errstr, errstr_size);
    rconn_endpoint_free(ep); /* a connection keeps what it needs of it */
    return c;
}

/* A whole reply string as an int64: optional '-', digits, nothing else. */
static bool parse_i64(const char *s, size_t len, int64_t *out) {
    char buf[32];
    if (!s || len == 0 || len >= sizeof(buf)) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    const char *p = buf[0] == '-' ? buf + 1 : buf;
    if (!*p) return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno) return false;
    *out = v;
    return true;
}

static bool is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static void skip_field(report_t *r, const char *key, const redisReply *field) {
    if (r->skipped++ == 0) {
        char k[120], f[120];
        snprintf(r->skipped_example, sizeof(r->skipped_example), "%s %s",
                 escape_bytes(key, strlen(key), 100, k, sizeof(k)),
                 escape_bytes(field->str, field->len, 100, f, sizeof(f)));
    }
}

/* Adds v to *sum; -1 with errstr on overflow. */
static int add_i64(int64_t *sum, int64_t v, const char *what, char *errstr, size_t errstr_size) {
    if (__builtin_add_overflow(*sum, v, sum)) {
        snprintf(errstr, errstr_size, "the sum of %s overflows a 64-bit integer", what);
        return -1;
    }
    return 0;
}

/* The index of name (n bytes) in names[count], or -1. */
static int name_index(const char *const *names, int count, const char *name, size_t n) {
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], name, n)) return i;
    return -1;
}

/* Adds one HGETALL reply of history hash `key` to the report and bucket. */
static int add_history(report_t *r, bucket_t *b, const char *key, const redisReply *h,
                       char *errstr, size_t errstr_size) {
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (!is_str(f) || !is_str(v)) continue;
        const char *c1 = memchr(f->str, ':', f->len);
        if (!c1) continue;
        size_t rest = f->len - (size_t)(c1 + 1 - f->str);
        if ((size_t)(c1 - f->str) == 6 && !memcmp(f->str, "EXPIRY", 6)) {
            int t = name_index(expiry_names, 3, c1 + 1, rest);
            if (t < 0) continue;
            int64_t x;
            if (!parse_i64(v->str, v->len, &x)) {
                skip_field(r, key, f);
                continue;
            }
            if (add_i64(&r->expiry[t], x, f->str, errstr, errstr_size) != 0) return -1;
            continue;
        }
        const char *c2 = memchr(c1 + 1, ':', rest);
        if (!c2) continue;
        int ch = name_index(event_channel_names, NCH, f->str, (size_t)(c1 - f->str));
        int hd = name_index(event_handler_names, NH, c1 + 1, (size_t)(c2 - c1 - 1));
        int k = name_index(report_counter_names, RC_COUNT, c2 + 1,
                           f->len - (size_t)(c2 + 1 - f->str));
        if (ch < 0 || hd < 0 || k < 0) continue; /* not a field this version knows */
        int64_t x;
        if (!parse_i64(v->str, v->len, &x)) {
            skip_field(r, key, f);
            continue;
        }
        r->seg_present[ch][hd] = true;
        if (add_i64(&r->seg[ch][hd].v[k], x, f->str, errstr, errstr_size) != 0) return -1;
        if (add_i64(&b->by_handler[hd].v[k], x, f->str, errstr, errstr_size) != 0) return -1;
    }
    return 0;
}

static int read_history(rconn_t *c, report_t *r, const report_opts_t *o, char *errstr,
                        size_t errstr_size) {
    rconn_append(c, "ZREVRANGE %shistory_index 0 0", o->prefix);
    redisReply *top = rconn_get_reply_ok(c, errstr, errstr_size);
    if (!top) return -1;
    int64_t to;
    bool have = top->type == REDIS_REPLY_ARRAY && top->elements == 1 &&
                is_str(top->element[0]) &&
                parse_i64(top->element[0]->str, top->element[0]->len, &to);
    if (!have && top->type == REDIS_REPLY_ARRAY && top->elements == 1) {
        snprintf(errstr, errstr_size, "%shistory_index holds a member that is not a bucket start",
                 o->prefix);
        freeReplyObject(top);
        return -1;
    }
    freeReplyObject(top);
    if (!have) return 0;
    int64_t span, from;
    if (__builtin_mul_overflow((int64_t)(o->days - 1), o->bucket_ms, &span) ||
        __builtin_sub_overflow(to, span, &from))
        from = INT64_MIN;
    r->has_history = true;
    r->from = from;
    r->to = to;
    rconn_append(c, "ZRANGEBYSCORE %shistory_index %lld %lld", o->prefix,
                       (long long)from, (long long)to);
    redisReply *idx = rconn_get_reply_ok(c, errstr, errstr_size);
    if (!idx) return -1;
    int rc = 0;
    size_t n = idx->type == REDIS_REPLY_ARRAY ? idx->elements : 0;
    if (n > MAX_BUCKETS) n = MAX_BUCKETS;
    r->buckets = xcalloc(n ? n : 1, sizeof(*r->buckets));
    for (size_t i = 0; i < n; i++) /* pipelined: one round trip for all */
        rconn_append(c, "HGETALL %shistory:%b", o->prefix, idx->element[i]->str,
                           (size_t)idx->element[i]->len);
    for (size_t i = 0; i < n; i++) {
        redisReply *h = rconn_get_reply_ok(c, errstr, errstr_size);
        if (!h) {
            rc = -1;
            break; /* the context is dead: the rest of the replies go with it */
        }
        const redisReply *m = idx->element[i];
        int64_t s;
        char key[400];
        snprintf(key, sizeof(key), "%shistory:%.*s", o->prefix, (int)m->len, m->str);
        if (rc == 0 && is_str(m) && parse_i64(m->str, m->len, &s)) {
            bucket_t *b = &r->buckets[r->nbuckets++];
            b->s = s;
            rc = add_history(r, b, key, h, errstr, errstr_size);
        }
        freeReplyObject(h);
    }
    freeReplyObject(idx);
    return rc;
}

static int read_org(rconn_t *c, report_t *r, const report_opts_t *o, char *errstr,
                    size_t errstr_size) {
    rconn_append(c, "HGETALL %sorg", o->prefix);
    redisReply *h = rconn_get_reply_ok(c, errstr, errstr_size);
    if (!h) return -1;
    char key[300];
    snprintf(key, sizeof(key), "%sorg", o->prefix);
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (!is_str(f) || !is_str(v)) continue;
        int64_t *dst = NULL;
        if (!strcmp(f->str, "customers")) dst = &r->customers;
        else if (!strcmp(f->str, "at_risk")) dst = &r->at_risk;
        else if (!strcmp(f->str, "route_human")) dst = &r->route_human;
        else if (!strcmp(f->str, "ci_sum")) dst = &r->ci_sum;
        else if (!strncmp(f->str, "ci_bin:", 7) && f->len == 8 && f->str[7] >= '0' &&
                 f->str[7] <= '9')
            dst = &r->ci_bins[f->str[7] - '0'];
        if (!dst) continue;
        if (!parse_i64(v->str, v->len, dst)) {
            *dst = 0;
            skip_field(r, key, f);
        }
    }
    freeReplyObject(h);
    return 0;
}

/* A copy of a reply string, or of "" when r is not one. */
static char *dup_str(const redisReply *r) {
    return is_str(r) ? xstrndup(r->str, r->len) : xstrdup("");
}

static char *entry_field(const redisReply *e, const char *name) {
    const redisReply *kv = e->element[1];
    for (size_t i = 0; kv && kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2)
        if (is_str(kv->element[i]) && !strcmp(kv->element[i]->str, name))
            return dup_str(kv->element[i + 1]);
    return xstrdup("");
}

static int read_alerts(rconn_t *c, report_t *r, const report_opts_t *o, char *errstr,
                       size_t errstr_size) {
    if (o->alerts <= 0) return 0;
    rconn_append(c, "XREVRANGE %salerts + - COUNT %d", o->prefix, o->alerts);
    redisReply *x = rconn_get_reply_ok(c, errstr, errstr_size);
    if (!x) return -1;
    size_t n = x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
    r->alerts = xcalloc(n ? n : 1, sizeof(*r->alerts));
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = x->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
        ralert_t *a = &r->alerts[r->nalerts++];
        a->id = dup_str(e->element[0]);
        a->type = entry_field(e, "type");
        a->customer_id = entry_field(e, "customer_id");
        a->score = entry_field(e, "score");
        a->previous_score = entry_field(e, "previous_score");
        a->trigger = entry_field(e, "trigger");
        a->occurred_at = entry_field(e, "occurred_at");
        a->reason = entry_field(e, "reason");
        a->narrative = entry_field(e, "narrative");
    }
    freeReplyObject(x);
    return 0;
}

static int64_t hash_i64(const redisReply *h, size_t i) {
    int64_t v = 0;
    if (h->type == REDIS_REPLY_ARRAY && i < h->elements && is_str(h->element[i]))
        parse_i64(h->element[i]->str, h->element[i]->len, &v);
    return v;
}

static int read_lowest(rconn_t *c, report_t *r, const report_opts_t *o, char *errstr,
                       size_t errstr_size) {
    if (o->lowest <= 0) return 0;
    rconn_append(c, "ZRANGE %sscores 0 %d WITHSCORES", o->prefix, o->lowest - 1);
    redisReply *z = rconn_get_reply_ok(c, errstr, errstr_size);
    if (!z) return -1;
    size_t n = z->type == REDIS_REPLY_ARRAY ? z->elements / 2 : 0;
    r->lowest = xcalloc(n ? n : 1, sizeof(*r->lowest));
    for (size_t i = 0; i < n; i++)
        rconn_append(c, "HMGET %sci:%b at_risk streak contacts route route_reason",
                           o->prefix, z->element[2 * i]->str, (size_t)z->element[2 * i]->len);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *h = rconn_get_reply_ok(c, errstr, errstr_size);
        if (!h) {
            rc = -1;
            break;
        }
        lowest_t *l = &r->lowest[r->nlowest++];
        l->customer_id = dup_str(z->element[2 * i]);
        l->ci = is_str(z->element[2 * i + 1]) ? strtod(z->element[2 * i + 1]->str, NULL) : 0;
        l->at_risk = hash_i64(h, 0);
        l->streak = hash_i64(h, 1);
        l->contacts = hash_i64(h, 2);
        l->route = dup_str(h->type == REDIS_REPLY_ARRAY && h->elements > 3 ? h->element[3] : NULL);
        l->route_reason =
            dup_str(h->type == REDIS_REPLY_ARRAY && h->elements > 4 ? h->element[4] : NULL);
        freeReplyObject(h);
    }
    freeReplyObject(z);
    return rc;
}

report_t *report_read(rconn_t *c, const report_opts_t *o, char *errstr,
                      size_t errstr_size) {
    report_t *r = xcalloc(1, sizeof(*r));
    r->bucket_ms = o->bucket_ms;
    r->days = o->days;
    if (o->days < 1 || o->bucket_ms < 1) {
        snprintf(errstr, errstr_size, "days and bucket_ms must be at least 1");
        goto fail;
    }
    if (read_history(c, r, o, errstr, errstr_size) != 0 ||
        read_org(c, r, o, errstr, errstr_size) != 0 ||
        read_alerts(c, r, o, errstr, errstr_size) != 0 ||
        read_lowest(c, r, o, errstr, errstr_size) != 0)
        goto fail;
    return r;
fail:
    report_free(r);
    return NULL;
}

void report_free(report_t *r) {
    if (!r) return;
    for (size_t i = 0; i < r->nalerts; i++) {
        ralert_t *a = &r->alerts[i];
        free(a->id), free(a->type), free(a->customer_id), free(a->score);
        free(a->previous_score), free(a->trigger), free(a->occurred_at), free(a->reason);
        free(a->narrative);
    }
    for (size_t i = 0; i < r->nlowest; i++) {
        free(r->lowest[i].customer_id);
        free(r->lowest[i].route);
        free(r->lowest[i].route_reason);
    }
    free(r->alerts);
    free(r->lowest);
    free(r->buckets);
    free(r);
}

size_t report_skipped(const report_t *r, const char **example) {
    if (example) *example = r->skipped_example;
    return r->skipped;
}

void report_warn_skipped(const report_t *r, char *last, size_t last_size) {
    if (!r->skipped || !strcmp(last, r->skipped_example)) return;
    char q[400];
    log_warn("history or org fields that are not integers were skipped",
             "count=%zu first=%s", r->skipped,
             log_quote(r->skipped_example, q, sizeof(q)));
    snprintf(last, last_size, "%s", r->skipped_example);
}

/* ---- Derived values --------------------------------------------------- */

static void counts_add(counts_t *sum, const counts_t *x) {
    /* Each part was summed with a check; a total over channels or
     * handlers saturates rather than wrap (the parts are what is exact). */
    for (int k = 0; k < RC_COUNT; k++)
        if (__builtin_add_overflow(sum->v[k], x->v[k], &sum->v[k]))
            sum->v[k] = x->v[k] > 0 ? INT64_MAX : INT64_MIN;
}

static counts_t handler_total(const report_t *r, int h) {
    counts_t t = {{0}};
    for (int ch = 0; ch < NCH; ch++) counts_add(&t, &r->seg[ch][h]);
    return t;
}

static counts_t grand_total(const report_t *r) {
    counts_t t = {{0}};
    for (int h = 0; h < NH; h++) {
        counts_t x = handler_total(r, h);
        counts_add(&t, &x);
    }
    return t;
}

/* num / den, or NAN when den is 0. */
static double ratio(double num, double den) { return den != 0 ? num / den : NAN; }

typedef struct derived {
    double resolution_rate;       /* resolved / (resolved + unresolved) */
    double mean_sentiment;        /* -1..1 */
    double mean_handle_ms;
    double mean_ci_after_contact; /* 0..100 */
    double alerts_per_1000_contacts; /* churn_risk + needs_human */
} derived_t;

static derived_t derive(const counts_t *c) {
    const int64_t *v = c->v;
    derived_t d;
    d.resolution_rate = ratio((double)v[RC_RESOLVED], (double)v[RC_RESOLVED] + (double)v[RC_UNRESOLVED]);
    d.mean_sentiment = ratio((double)v[RC_SENT_SUM] / 10000.0, (double)v[RC_SENT_N]);
    d.mean_handle_ms = ratio((double)v[RC_AHT_SUM], (double)v[RC_AHT_N]);
    d.mean_ci_after_contact = ratio((double)v[RC_CI_SUM] / 10000.0, (double)v[RC_CI_N]);
    d.alerts_per_1000_contacts =
        ratio(1000.0 * ((double)v[RC_CHURN_RISK] + (double)v[RC_NEEDS_HUMAN]),
              (double)v[RC_CONTACTS]);
    return d;
}

/* ---- JSON ------------------------------------------------------------- */

/* A JSON string of bytes that may not be UTF-8: each invalid byte becomes
 * U+FFFD, so that no reader sees a byte it did not expect. */
static json_t *jstr(const char *s, size_t n) {
    char *buf = xmalloc(3 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && c != 0;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) { /* overlong, surrogate or beyond U+10FFFF */
            uint32_t cp = c & (0x7F >> len);
            for (size_t k = 1; k < len; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
            ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                   (len == 4 && cp < 0x10000) || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF);
        }
        if (ok) {
            memcpy(buf + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *jcstr(const char *s) { return jstr(s, strlen(s)); }

/* A derived value rounded to 4 decimals, or null when undefined. */
static json_t *jreal(double x) {
    if (!isfinite(x)) return json_null();
    return json_real(round(x * 10000.0) / 10000.0 + 0.0);
}

static void put_counts(json_t *o, const counts_t *c) {
    for (int k = 0; k < RC_COUNT; k++)
        json_object_set_new(o, report_counter_names[k], json_integer(c->v[k]));
    derived_t d = derive(c);
    json_object_set_new(o, "resolution_rate", jreal(d.resolution_rate));
    json_object_set_new(o, "mean_sentiment", jreal(d.mean_sentiment));
    json_object_set_new(o, "mean_handle_ms", jreal(d.mean_handle_ms));
    json_object_set_new(o, "mean_ci_after_contact", jreal(d.mean_ci_after_contact));
    json_object_set_new(o, "alerts_per_1000_contacts", jreal(d.alerts_per_1000_contacts));
}

json_t *report_json(const report_t *r) {
    json_t *o = json_object();
    json_object_set_new(o, "from", r->has_history ? json_integer(r->from) : json_null());
    json_object_set_new(o, "to", r->has_history ? json_integer(r->to) : json_null());
    json_object_set_new(o, "bucket_ms", json_integer(r->bucket_ms));
    json_object_set_new(o, "days", json_integer(r->days));

    json_t *segs = json_array();
    for (int ch = 0; ch < NCH; ch++)
        for (int h = 0; h < NH; h++) {
            if (!r->seg_present[ch][h]) continue;
            json_t *s = json_object();
            json_object_set_new(s, "channel", json_string(event_channel_names[ch]));
            json_object_set_new(s, "handled_by", json_string(event_handler_names[h]));
            put_counts(s, &r->seg[ch][h]);
            json_array_append_new(segs, s);
        }
    json_object_set_new(o, "segments", segs);

    counts_t all = grand_total(r);
    json_t *hs = json_array();
    for (int h = 0; h < NH; h++) {
        counts_t t = handler_total(r, h);
        json_t *s = json_object();
        json_object_set_new(s, "handled_by", json_string(event_handler_names[h]));
        put_counts(s, &t);
        json_object_set_new(s, "share_of_contacts",
                            jreal(ratio((double)t.v[RC_CONTACTS], (double)all.v[RC_CONTACTS])));
        json_array_append_new(hs, s);
    }
    json_object_set_new(o, "handlers", hs);
    json_t *tot = json_object();
    put_counts(tot, &all);
    json_object_set_new(o, "total", tot);

    json_t *ex = json_object();
    for (int t = 0; t < 3; t++) json_object_set_new(ex, expiry_names[t], json_integer(r->expiry[t]));
    json_object_set_new(o, "expiry", ex);

    json_t *ft = json_object();
    json_object_set_new(ft, "needs_human", json_integer(all.v[RC_NEEDS_HUMAN]));
    json_object_set_new(ft, "followups", json_integer(all.v[RC_FOLLOWUPS]));
    json_object_set_new(ft, "followup_rate",
                        jreal(ratio((double)all.v[RC_FOLLOWUPS], (double)all.v[RC_NEEDS_HUMAN])));
    json_object_set_new(ft, "mean_followup_ms",
                        jreal(ratio((double)all.v[RC_FOLLOWUP_MS], (double)all.v[RC_FOLLOWUPS])));
    json_object_set_new(o, "followthrough", ft);

    json_t *org = json_object();
    json_object_set_new(org, "customers", json_integer(r->customers));
    json_object_set_new(org, "at_risk", json_integer(r->at_risk));
    json_object_set_new(org, "route_human", json_integer(r->route_human));
    json_object_set_new(org, "ci_sum", json_integer(r->ci_sum));
    json_t *bins = json_array();
    for (int k = 0; k < NBINS; k++) json_array_append_new(bins, json_integer(r->ci_bins[k]));
    json_object_set_new(org, "ci_bins", bins);
    json_object_set_new(org, "mean_ci",
                        jreal(ratio((double)r->ci_sum / 10000.0, (double)r->customers)));
    json_object_set_new(o, "org", org);

    json_t *daily = json_array();
    for (size_t i = 0; i < r->nbuckets; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "s", json_integer(r->buckets[i].s));
        json_t *dh = json_array();
        for (int h = 0; h < NH; h++) {
            json_t *s = json_object();
            json_object_set_new(s, "handled_by", json_string(event_handler_names[h]));
            put_counts(s, &r->buckets[i].by_handler[h]);
            json_array_append_new(dh, s);
        }
        json_object_set_new(d, "handlers", dh);
        json_array_append_new(daily, d);
    }
    json_object_set_new(o, "daily", daily);

    json_t *al = json_array();
    for (size_t i = 0; i < r->nalerts; i++) {
        const ralert_t *a = &r->alerts[i];
        json_t *e = json_object();
        json_object_set_new(e, "id", jcstr(a->id));
        json_object_set_new(e, "type", jcstr(a->type));
        json_object_set_new(e, "customer_id", jcstr(a->customer_id));
        json_object_set_new(e, "score", jcstr(a->score));
        json_object_set_new(e, "previous_score", jcstr(a->previous_score));
        json_object_set_new(e, "trigger", jcstr(a->trigger));
        json_object_set_new(e, "occurred_at", jcstr(a->occurred_at));
        json_object_set_new(e, "reason", jcstr(a->reason));
        json_object_set_new(e, "narrative", jcstr(a->narrative));
        json_array_append_new(al, e);
    }
    json_object_set_new(o, "alerts", al);

    json_t *lo = json_array();
    for (size_t i = 0; i < r->nlowest; i++) {
        const lowest_t *l = &r->lowest[i];
        json_t *e = json_object();
        json_object_set_new(e, "customer_id", jcstr(l->customer_id));
        json_object_set_new(e, "ci", jreal(l->ci));
        json_object_set_new(e, "at_risk", json_integer(l->at_risk));
        json_object_set_new(e, "streak", json_integer(l->streak));
        json_object_set_new(e, "contacts", json_integer(l->contacts));
        json_object_set_new(e, "route", jcstr(l->route));
        json_object_set_new(e, "route_reason", jcstr(l->route_reason));
        json_array_append_new(lo, e);
    }
    json_object_set_new(o, "lowest", lo);
    json_object_set_new(o, "skipped_fields", json_integer((json_int_t)r->skipped));
    return o;
}

char *report_json_text(const report_t *r) {
    json_t *j = report_json(r);
    char *s = json_dumps(j, JSON_REAL_PRECISION(12));
    json_decref(j);
    return s;
}

/* ---- Text ------------------------------------------------------------- */

/* Writes s in at most `cols` columns: control bytes and invalid UTF-8
 * become '?', a cut ends with "…".  Returns the columns used. */
static int text_put(FILE *f, const char *s, int cols) {
    size_t n = strlen(s);
    int used = 0;
    for (size_t i = 0; i < n && used < cols;) {
        unsigned char ch = (unsigned char)s[i];
        size_t len = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (!ok) len = 1;
        if (used == cols - 1 && i + len < n) {
            fputs("…", f);
            return cols;
        }
        if (!ok || ch < 0x20 || ch == 0x7f)
            fputc('?', f);
        else
            fwrite(s + i, 1, len, f);
        used++;
        i += len;
    }
    return used;
}

/* "12 345" */
static const char *grp(int64_t v, char *buf, size_t size) {
    char raw[32];
    snprintf(raw, sizeof(raw), "%" PRId64, v < 0 ? -v : v);
    size_t n = strlen(raw), o = 0;
    if (v < 0 && o + 1 < size) buf[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ' ';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *pct(double x, char *buf, size_t size) {
    if (!isfinite(x)) return "-";
    snprintf(buf, size, "%.1f %%", 100.0 * x);
    return buf;
}

/* A duration for people: "45 s", "4.2 min", "3.1 h", "2.0 d". */
static const char *dur(double ms, char *buf, size_t size) {
    if (!isfinite(ms)) return "-";
    if (ms < 60000)
        snprintf(buf, size, "%.0f s", ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, size, "%.1f min", ms / 60000);
    else if (ms < 86400000)
        snprintf(buf, size, "%.1f h", ms / 3600000);
    else
        snprintf(buf, size, "%.1f d", ms / 86400000);
    return buf;
}

static const char *num(double x, const char *fmt, char *buf, size_t size) {
    if (!isfinite(x)) return "-";
    snprintf(buf, size, fmt, x);
    return buf;
}

static const char *day(int64_t ms, char *buf, size_t size) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d", &tm)) return "?";
    return buf;
}

static const char *minute(const char *ms_text, char *buf, size_t size) {
    int64_t ms;
    if (!parse_i64(ms_text, strlen(ms_text), &ms) || ms < 0) return "?";
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M", &tm)) return "?";
    return buf;
}

/* One row of the efficiency-next-to-empathy table. */
static void text_row(FILE *f, const char *label, const counts_t *c, int64_t all_contacts) {
    char a[32], b[32], d1[32], e[32], g[32], h[32], k[32];
    derived_t d = derive(c);
    fprintf(f, "  %-15s %9s %7s %10s │ %8s %9s %8s %9s\n", label,
            grp(c->v[RC_CONTACTS], a, sizeof(a)),
            pct(ratio((double)c->v[RC_CONTACTS], (double)all_contacts), b, sizeof(b)),
            dur(d.mean_handle_ms, d1, sizeof(d1)), pct(d.resolution_rate, e, sizeof(e)),
            num(d.mean_sentiment, "%+.2f", g, sizeof(g)),
            num(d.mean_ci_after_contact, "%.1f", h, sizeof(h)),
            num(d.alerts_per_1000_contacts, "%.1f", k, sizeof(k)));
}

static void text_header(FILE *f, const char *first) {
    fprintf(f, "  %-15s %9s %7s %10s │ %8s %9s %8s %9s\n", first, "contacts", "share",
            "handle", "resolved", "sentiment", "ci after", "alerts/1k");
}

void report_text(const report_t *r, FILE *f, int cols) {
    char a[32], b[32], c1[32], d1[32];
    if (cols < 60) cols = 60;
    if (!r->has_history) {
        fprintf(f, "rapport report: no history yet (nothing in history_index)\n\n");
    } else {
        fprintf(f, "rapport report  %s … %s  (%d buckets of %s; %zu with data)\n\n",
                day(r->from, a, sizeof(a)), day(r->to, b, sizeof(b)), r->days,
                dur((double)r->bucket_ms, c1, sizeof(c1)), r->nbuckets);
    }

    /* The organisation now. */
    double mean = ratio((double)r->ci_sum / 10000.0, (double)r->customers);
    fprintf(f, "THE ORGANISATION NOW   %s customers   mean connection index %s\n",
            grp(r->customers, a, sizeof(a)), num(mean, "%.1f", b, sizeof(b)));
    if (r->customers == 0) {
        fprintf(f, "  (no customer scored yet)\n\n");
        goto history;
    }
    int64_t maxbin = 0;
    for (int k = 0; k < NBINS; k++)
        if (r->ci_bins[k] > maxbin) maxbin = r->ci_bins[k];
    int barw = cols - 36 > 50 ? 50 : cols - 36;
    for (int k = NBINS - 1; k >= 0; k--) {
        int w = maxbin ? (int)((double)r->ci_bins[k] * barw / (double)maxbin + 0.5) : 0;
        if (r->ci_bins[k] && w == 0) w = 1;
        fprintf(f, "  ci %3d–%-3d ", 10 * k, k == 9 ? 100 : 10 * k + 9);
        for (int i = 0; i < w; i++) fputs("█", f);
        fprintf(f, "%*s %9s  %6s\n", barw - w, "", grp(r->ci_bins[k], a, sizeof(a)),
                pct(ratio((double)r->ci_bins[k], (double)r->customers), b, sizeof(b)));
    }
    fprintf(f, "  at risk %s (%s)   routed to a person %s (%s)\n\n",
            grp(r->at_risk, a, sizeof(a)),
            pct(ratio((double)r->at_risk, (double)r->customers), b, sizeof(b)),
            grp(r->route_human, c1, sizeof(c1)),
            pct(ratio((double)r->route_human, (double)r->customers), d1, sizeof(d1)));

history:
    if (r->has_history) {
        counts_t all = grand_total(r);
        fprintf(f, "AI, HUMAN AND HYBRID             efficiency │ empathy\n");
        text_header(f, "handled by");
        for (int h = 0; h < NH; h++) {
            counts_t t = handler_total(r, h);
            if (h == HANDLER_NONE && t.v[RC_CONTACTS] == 0) continue;
            text_row(f, event_handler_names[h], &t, all.v[RC_CONTACTS]);
        }
        text_row(f, "all", &all, all.v[RC_CONTACTS]);
        fprintf(f, "\nBY CHANNEL\n");
        text_header(f, "channel/handler");
        for (int ch = 0; ch < NCH; ch++)
            for (int h = 0; h < NH; h++) {
                if (!r->seg_present[ch][h] || r->seg[ch][h].v[RC_CONTACTS] == 0) continue;
                char label[40];
                snprintf(label, sizeof(label), "%s/%s", event_channel_names[ch],
                         event_handler_names[h]);
                text_row(f, label, &r->seg[ch][h], all.v[RC_CONTACTS]);
            }
        fprintf(f, "  share: of all contacts; handle: mean handle time; resolved: of contacts\n"
                   "  with a known outcome; ci after: mean connection index right after a\n"
                   "  contact; alerts/1k: churn_risk and needs_human per 1 000 contacts\n\n");

        fprintf(f, "FOLLOW-THROUGH\n");
        fprintf(f, "  needs_human raised %s; followed up by a person %s (%s); mean time to\n"
                   "  follow-up %s\n",
                grp(all.v[RC_NEEDS_HUMAN], a, sizeof(a)), grp(all.v[RC_FOLLOWUPS], b, sizeof(b)),
                pct(ratio((double)all.v[RC_FOLLOWUPS], (double)all.v[RC_NEEDS_HUMAN]), c1,
                    sizeof(c1)),
                dur(ratio((double)all.v[RC_FOLLOWUP_MS], (double)all.v[RC_FOLLOWUPS]), d1,
                    sizeof(d1)));
        fprintf(f, "  alerts raised by events: churn_risk %s, recovered %s, needs_human %s\n",
                grp(all.v[RC_CHURN_RISK], a, sizeof(a)), grp(all.v[RC_RECOVERED], b, sizeof(b)),
                grp(all.v[RC_NEEDS_HUMAN], c1, sizeof(c1)));
        fprintf(f, "  alerts raised as buckets left the window: churn_risk %s, recovered %s\n\n",
                grp(r->expiry[0], a, sizeof(a)), grp(r->expiry[1], b, sizeof(b)));
    }

    fprintf(f, "LATEST ALERTS (event time, UTC)\n");
    if (r->nalerts == 0) fprintf(f, "  (no alerts yet)\n");
    for (size_t i = 0; i < r->nalerts; i++) {
        const ralert_t *al = &r->alerts[i];
        fprintf(f, "  %s  ", minute(al->occurred_at, a, sizeof(a)));
        int w = text_put(f, al->type, 12);
        fprintf(f, "%*s ", 12 - w, "");
        w = text_put(f, al->customer_id, 24);
        fprintf(f, "%*s ci ", 24 - w, "");
        text_put(f, al->score, 10);
        if (*al->previous_score) {
            fputs(" (was ", f);
            text_put(f, al->previous_score, 10);
            fputc(')', f);
        }
        fputs("\n      ", f);
        text_put(f, al->reason, cols - 6);
        fputc('\n', f);
        if (*al->narrative) {
            fputs("      “", f);
            text_put(f, al->narrative, cols - 8);
            fputs("”\n", f);
        }
    }
    if (r->skipped)
        fprintf(f, "\n(%zu history or org fields were not integers and were skipped)\n",
                r->skipped);
}
