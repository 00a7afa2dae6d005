/*
 * model.c — the reference model of the scorer (see model.h).
 *
 * History (SPEC §9.1) is one sorted array of (S, field) → total over every
 * event since model_new(), counted in 128 bits; the organisation (§9.2) is
 * computed from scratch over the tracked customers whenever it is asked
 * for.  Route and follow-through (§10) are per customer, set literally as
 * the spec's rules say, at the moments it says.
 *
 * Storage: a sorted array of customers (customer_id byte order, so that an
 * expiry visits them in the order its alerts must come out); per customer
 * a sorted array of buckets, each holding the SPEC §3 sums of its events in
 * the order they arrived.  Every re-score sums the buckets in the window,
 * oldest first, from scratch.  Every expiry scans every customer.  Nothing
 * here is clever on purpose: it is what the optimized scorer is checked
 * against.
 *
 * Where SPEC.md is silent the model follows docs/DESIGN.md §3; where both
 * are, the most literal reading of the spec (see the comments marked
 * "literal").  Test code: aborts on memory exhaustion.  One thread.
 */
#include "tests/support/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mbucket {
    int64_t b;
    int64_t contacts, resolved, ai_contacts, sent_n, loy_n, aht_n, events;
    double sent_sum, loy_sum, aht_sum;
} mbucket_t;

typedef struct mcust {
    strview_t id;                 /* owned copy */
    mbucket_t *buckets;           /* ascending b */
    size_t nbuckets, capbuckets;
    int64_t streak;
    int64_t last_fail_at;         /* max occurred_at of the streak's contacts */
    bool at_risk;
    bool has_needs_human;
    int64_t needs_human_at;       /* max occurred_at of its needs_human alerts */
    bool has_narrative;
    strview_t narrative;          /* owned, already cut to 280 bytes */
    int64_t narrative_bucket;
    strview_t last_event_id;      /* owned */
    bool scored;                  /* has a score (has_previous for alerts) */
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t contacts, resolved, events;
    int64_t updated_at;
    bool dirty;                   /* re-scored since the last commit */
    bool pending;                 /* SPEC §10.2 */
    int64_t pending_since;
    bool has_last_sent;           /* the latest event with a sentiment */
    double last_sent;             /* its sentiment, the float widened */
    int64_t last_sent_bucket;     /* its bucket */
    bool route_human;             /* SPEC §10.1, as of the last re-score */
    const char *route_reason;
} mcust_t;

typedef struct mhist {
    int64_t bucket_start;
    char field[WINDOW_HIST_FIELD_MAX];
    __int128 total;
} mhist_t;

typedef struct idlist {
    strview_t *ids;               /* each ptr owned */
    size_t n, cap;
} idlist_t;

struct model {
    score_params_t p;
    int32_t partition;
    bool has_watermark;
    int64_t watermark;
    bool watermark_dirty;
    mcust_t **custs;              /* sorted by id bytes */
    size_t ncusts, capcusts;
    model_alert_t *alerts;
    size_t nalerts, capalerts;
    idlist_t evicted;             /* since model_new, not back */
    idlist_t deleted;             /* since the last commit, not back */
    idlist_t erased;              /* SPEC §1.2: tombstones since the last commit, in order */
    idlist_t erased_gone;         /* held when erased, since the last commit, not back */
    size_t commit_alerts;         /* alerts[commit_alerts..] were raised since the last commit */
    size_t evictions;
    size_t pending_evictions;
    model_customer_t *views;      /* scratch for model_customers() */
    mhist_t *hist;                /* sorted by (bucket_start, field) */
    size_t nhist, caphist;
    model_hist_t *hist_views;     /* scratch for model_history() */
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

static strview_t dup_bytes(const char *ptr, size_t len)
{
    char *c = xrealloc(NULL, len + 1);
    if (len > 0)
        memcpy(c, ptr, len);
    c[len] = '\0';
    return (strview_t){ c, len };
}

static int id_cmp(strview_t a, strview_t b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static bool id_eq(strview_t a, strview_t b)
{
    return id_cmp(a, b) == 0;
}

/* floor(t / bucket_ms); t >= 0 but written for any sign. */
static int64_t bucket_of(const model_t *m, int64_t t)
{
    int64_t q = t / m->p.bucket_ms;
    if (t % m->p.bucket_ms != 0 && t < 0)
        q--;
    return q;
}

/* The oldest bucket in the window at the current watermark. */
static int64_t window_low(const model_t *m)
{
    return bucket_of(m, m->watermark) - m->p.window_buckets + 1;
}

/* SPEC §9.1: adds v to field `field` of the history hash of bucket b. */
static void hist_add(model_t *m, int64_t b, const char *field, __int128 v)
{
    int64_t S = b * m->p.bucket_ms;
    size_t lo = 0, hi = m->nhist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mhist_t *h = &m->hist[mid];
        int c = h->bucket_start < S ? -1 : h->bucket_start > S ? 1 : strcmp(h->field, field);
        if (c == 0) {
            m->hist[mid].total += v;
            return;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (m->nhist == m->caphist) {
        m->caphist = m->caphist ? 2 * m->caphist : 64;
        m->hist = xrealloc(m->hist, m->caphist * sizeof *m->hist);
    }
    memmove(&m->hist[lo + 1], &m->hist[lo], (m->nhist - lo) * sizeof *m->hist);
    memset(&m->hist[lo], 0, sizeof m->hist[lo]);
    m->hist[lo].bucket_start = S;
    snprintf(m->hist[lo].field, sizeof m->hist[lo].field, "%s", field);
    m->hist[lo].total = v;
    m->nhist++;
}

/* Adds v to `<CHANNEL>:<HANDLER>:<counter>` of e's segment, bucket b. */
static void hist_seg(model_t *m, int64_t b, const event_t *e, const char *counter, __int128 v)
{
    char f[WINDOW_HIST_FIELD_MAX];
    snprintf(f, sizeof f, "%s:%s:%s", event_channel_names[e->channel],
             event_handler_names[e->handled_by], counter);
    hist_add(m, b, f, v);
}

int64_t model_c(double x)
{
    char buf[64], digits[64];
    snprintf(buf, sizeof buf, "%.4f", x);
    size_t n = 0;
    for (const char *p = buf; *p; p++)
        if (*p != '.')
            digits[n++] = *p;
    digits[n] = '\0';
    return strtoll(digits, NULL, 10);
}

static void idlist_add(idlist_t *l, strview_t id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->ids = xrealloc(l->ids, l->cap * sizeof *l->ids);
    }
    l->ids[l->n++] = dup_bytes(id.ptr, id.len);
}

static void idlist_remove(idlist_t *l, strview_t id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (id_eq(l->ids[i], id)) {
            free((char *)l->ids[i].ptr);
            memmove(&l->ids[i], &l->ids[i + 1], (l->n - i - 1) * sizeof *l->ids);
            l->n--;
            return;
        }
    }
}

static bool idlist_has(const idlist_t *l, strview_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (id_eq(l->ids[i], id))
            return true;
    return false;
}

static void idlist_clear(idlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free((char *)l->ids[i].ptr);
    l->n = 0;
}

static void cust_free(mcust_t *c)
{
    if (c == NULL)
        return;
    free((char *)c->id.ptr);
    free((char *)c->narrative.ptr);
    free((char *)c->last_event_id.ptr);
    free(c->buckets);
    free(c);
}

model_t *model_new(const score_params_t *params, int32_t partition)
{
    model_t *m = xrealloc(NULL, sizeof *m);
    memset(m, 0, sizeof *m);
    m->p = *params;
    m->partition = partition;
    m->watermark = -1;
    return m;
}

void model_free(model_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->ncusts; i++)
        cust_free(m->custs[i]);
    free(m->custs);
    for (size_t i = 0; i < m->nalerts; i++) {
        free((char *)m->alerts[i].customer_id.ptr);
        free((char *)m->alerts[i].event_id.ptr);
        free((char *)m->alerts[i].narrative.ptr);
    }
    free(m->alerts);
    idlist_clear(&m->evicted);
    free(m->evicted.ids);
    idlist_clear(&m->deleted);
    free(m->deleted.ids);
    idlist_clear(&m->erased);
    free(m->erased.ids);
    idlist_clear(&m->erased_gone);
    free(m->erased_gone.ids);
    free(m->views);
    free(m->hist);
    free(m->hist_views);
    free(m);
}

/* Index of the customer, or of where it would go (and *found = false). */
static size_t cust_find(const model_t *m, strview_t id, bool *found)
{
    size_t lo = 0, hi = m->ncusts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(m->custs[mid]->id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static mcust_t *cust_get_or_create(model_t *m, strview_t id)
{
    bool found;
    size_t i = cust_find(m, id, &found);
    if (found)
        return m->custs[i];
    mcust_t *c = xrealloc(NULL, sizeof *c);
    memset(c, 0, sizeof *c);
    c->id = dup_bytes(id.ptr, id.len);
    c->narrative = dup_bytes("", 0);
    c->last_event_id = dup_bytes("", 0);
    c->route_reason = "";
    if (m->ncusts == m->capcusts) {
        m->capcusts = m->capcusts ? 2 * m->capcusts : 64;
        m->custs = xrealloc(m->custs, m->capcusts * sizeof *m->custs);
    }
    memmove(&m->custs[i + 1], &m->custs[i], (m->ncusts - i) * sizeof *m->custs);
    m->custs[i] = c;
    m->ncusts++;
    /* A customer that comes back is new, and no longer "evicted". */
    idlist_remove(&m->evicted, id);
    idlist_remove(&m->deleted, id);
    idlist_remove(&m->erased_gone, id);
    return c;
}

static mbucket_t *bucket_get_or_create(mcust_t *c, int64_t b)
{
    size_t i = 0;
    while (i < c->nbuckets && c->buckets[i].b < b)
        i++;
    if (i < c->nbuckets && c->buckets[i].b == b)
        return &c->buckets[i];
    if (c->nbuckets == c->capbuckets) {
        c->capbuckets = c->capbuckets ? 2 * c->capbuckets : 4;
        c->buckets = xrealloc(c->buckets, c->capbuckets * sizeof *c->buckets);
    }
    memmove(&c->buckets[i + 1], &c->buckets[i], (c->nbuckets - i) * sizeof *c->buckets);
    memset(&c->buckets[i], 0, sizeof c->buckets[i]);
    c->buckets[i].b = b;
    c->nbuckets++;
    return &c->buckets[i];
}

/* SPEC §3: the sums of one event. */
static void bucket_add(mbucket_t *bk, const event_t *e)
{
    bk->events++;
    if (e->kind == KIND_CONTACT) {
        bk->contacts++;
        if (e->resolved == TRI_TRUE)
            bk->resolved++;
        if (e->handled_by == HANDLER_AI)
            bk->ai_contacts++;
        if (e->has_handle_time) {
            bk->aht_sum += (double)e->handle_time_ms;
            bk->aht_n++;
        }
    }
    if (e->has_sentiment) {
        bk->sent_sum += (double)e->sentiment;
        bk->sent_n++;
    }
    if (e->has_nps) {
        bk->loy_sum += e->nps >= 9 ? 1.0 : e->nps >= 7 ? 0.0 : -1.0;
        bk->loy_n++;
    }
    if (e->has_csat) {
        bk->loy_sum += (e->csat - 3) / 2.0;
        bk->loy_n++;
    }
    if (e->kind == KIND_PURCHASE) {
        bk->loy_sum += 1.0;
        bk->loy_n++;
    }
    if (e->kind == KIND_CANCELLATION) {
        bk->loy_sum -= 1.0;
        bk->loy_n++;
    }
}

/* SPEC §3: the AI-failure streak, in partition order. */
static void streak_update(mcust_t *c, const event_t *e)
{
    if (e->kind != KIND_CONTACT)
        return;
    if (e->handled_by == HANDLER_AI && e->resolved == TRI_FALSE) {
        if (c->streak == 0 || e->occurred_at > c->last_fail_at)
            c->last_fail_at = e->occurred_at;
        c->streak++;
    } else if (e->resolved == TRI_TRUE || e->handled_by == HANDLER_HUMAN ||
               e->handled_by == HANDLER_HYBRID) {
        c->streak = 0;
    }
}

/* The longest prefix of at most ALERT_NARRATIVE_MAX bytes that ends on a
 * character boundary (the text is valid UTF-8). */
static size_t narrative_cut(const char *s, size_t len)
{
    if (len <= ALERT_NARRATIVE_MAX)
        return len;
    size_t n = ALERT_NARRATIVE_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* ci as written to Redis (%.4f) and read back: what thresholds compare. */
static double as_written(double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.4f", v);
    return strtod(buf, NULL);
}

static void alert_push(model_t *m, const mcust_t *c, alert_type_t type,
                       alert_trigger_t trigger, bool has_previous,
                       double previous, const event_t *e, int64_t offset)
{
    if (m->nalerts == m->capalerts) {
        m->capalerts = m->capalerts ? 2 * m->capalerts : 64;
        m->alerts = xrealloc(m->alerts, m->capalerts * sizeof *m->alerts);
    }
    model_alert_t *a = &m->alerts[m->nalerts++];
    memset(a, 0, sizeof *a);
    a->type = type;
    a->trigger = trigger;
    a->customer_id = dup_bytes(c->id.ptr, c->id.len);
    a->score = c->ci;
    a->has_previous = has_previous;
    a->previous_score = has_previous ? previous : 0.0;
    if (trigger == TRIGGER_EVENT) {
        a->event_id = dup_bytes(e->event_id.ptr, e->event_id.len);
        a->occurred_at = e->occurred_at;
    } else {
        a->event_id = dup_bytes("", 0);
        a->occurred_at = m->watermark;
    }
    a->partition = m->partition;
    a->offset = offset;
    /* SPEC §4: no fallback to an older text once this one's bucket left. */
    if (c->has_narrative && c->narrative_bucket >= window_low(m))
        a->narrative = dup_bytes(c->narrative.ptr, c->narrative.len);
    else
        a->narrative = dup_bytes("", 0);
}

/* SPEC §3 and §4: re-score from scratch, then evaluate the alerts. */
static void rescore(model_t *m, mcust_t *c, alert_trigger_t trigger,
                    const event_t *e, int64_t offset)
{
    const score_params_t *p = &m->p;
    int64_t lo = window_low(m);
    int64_t C = 0, R = 0, ai = 0, sn = 0, ln = 0, an = 0, ev = 0;
    double ss = 0.0, ls = 0.0, as = 0.0;
    for (size_t i = 0; i < c->nbuckets; i++) {     /* oldest first */
        const mbucket_t *bk = &c->buckets[i];
        if (bk->b < lo || bk->b > bucket_of(m, m->watermark))
            continue;
        C += bk->contacts;
        R += bk->resolved;
        ai += bk->ai_contacts;
        sn += bk->sent_n;
        ln += bk->loy_n;
        an += bk->aht_n;
        ev += bk->events;
        ss += bk->sent_sum;
        ls += bk->loy_sum;
        as += bk->aht_sum;
    }
    double k = p->prior_weight;
    double resolution = ((double)R + 0.5 * k) / ((double)C + k);
    double sentiment = (ss / ((double)sn + k) + 1.0) / 2.0;
    double loyalty = (ls / ((double)ln + k) + 1.0) / 2.0;
    int64_t capped = c->streak < p->streak_cap ? c->streak : p->streak_cap;
    double penalty = p->streak_penalty * (double)capped;
    double ci = 100.0 * (p->w_resolution * resolution + p->w_sentiment * sentiment +
                         p->w_loyalty * loyalty) - penalty;
    if (ci < 0.0)
        ci = 0.0;
    if (ci > 100.0)
        ci = 100.0;

    bool has_previous = c->scored;
    double previous = c->ci;
    c->scored = true;
    c->ci = ci;
    c->resolution = resolution;
    c->sentiment = sentiment;
    c->loyalty = loyalty;
    c->ai_share = C > 0 ? (double)ai / (double)C : 0.0;
    c->aht_ms = an > 0 ? as / (double)an : 0.0;
    c->contacts = C;
    c->resolved = R;
    c->events = ev;
    c->updated_at = m->watermark;
    c->dirty = true;

    double written = as_written(ci);
    if (!c->at_risk && written < p->risk_threshold) {
        c->at_risk = true;
        alert_push(m, c, ALERT_CHURN_RISK, trigger, has_previous, previous, e, offset);
    }
    if (c->at_risk && written >= p->recover_threshold) {
        c->at_risk = false;
        alert_push(m, c, ALERT_RECOVERED, trigger, has_previous, previous, e, offset);
    }
    if (trigger == TRIGGER_EVENT && e->kind == KIND_CONTACT && e->handled_by == HANDLER_AI) {
        bool by_streak = e->resolved == TRI_FALSE && c->streak >= p->needs_human_streak;
        bool by_sentiment = e->has_sentiment &&
                            (double)e->sentiment <= p->needs_human_sentiment;
        /* Literal: any earlier needs_human alert later than
         * e - cooldown blocks, including one later than e. */
        bool cooling = c->has_needs_human &&
                       c->needs_human_at > e->occurred_at - p->needs_human_cooldown_ms;
        if ((by_streak || by_sentiment) && !cooling) {
            alert_push(m, c, ALERT_NEEDS_HUMAN, trigger, has_previous, previous, e, offset);
            if (!c->has_needs_human || e->occurred_at > c->needs_human_at)
                c->needs_human_at = e->occurred_at;
            c->has_needs_human = true;
            /* SPEC §10.2: pending since the first needs_human */
            if (!c->pending) {
                c->pending = true;
                c->pending_since = e->occurred_at;
            }
        }
    }

    /* SPEC §10.1, after the alerts: the first rule that holds */
    c->route_human = true;
    if (c->at_risk)
        c->route_reason = "at_risk";
    else if (c->pending)
        c->route_reason = "needs_human";
    else if (c->streak >= p->route_streak)
        c->route_reason = "streak";
    else if (c->has_last_sent && c->last_sent <= p->route_sentiment &&
             c->last_sent_bucket >= window_low(m))
        c->route_reason = "sentiment";
    else {
        c->route_human = false;
        c->route_reason = "";
    }
}

/* SPEC §2.1 step 2, after T_p moved to a new bucket: every customer, in
 * customer_id byte order, loses its buckets that left; re-scored
 * (trigger expiry) when it lost any, evicted when it has none left. */
static void expire(model_t *m, int64_t offset)
{
    int64_t lo = window_low(m);
    size_t i = 0;
    while (i < m->ncusts) {
        mcust_t *c = m->custs[i];
        size_t keep = 0;
        for (size_t j = 0; j < c->nbuckets; j++)
            if (c->buckets[j].b >= lo)
                c->buckets[keep++] = c->buckets[j];
        bool lost = keep < c->nbuckets;
        c->nbuckets = keep;
        if (!lost) {
            i++;
            continue;
        }
        if (c->nbuckets == 0) {
            m->evictions++;
            if (c->pending)
                m->pending_evictions++;     /* ended with no follow-up */
            idlist_add(&m->evicted, c->id);
            idlist_add(&m->deleted, c->id);
            cust_free(c);
            memmove(&m->custs[i], &m->custs[i + 1], (m->ncusts - i - 1) * sizeof *m->custs);
            m->ncusts--;
            continue;
        }
        if (c->streak > 0 && bucket_of(m, c->last_fail_at) < lo)
            c->streak = 0;
        size_t before = m->nalerts;
        rescore(m, c, TRIGGER_EXPIRY, NULL, offset);
        /* SPEC §9.1: an expiry alert counts in the bucket of T_p */
        for (size_t k = before; k < m->nalerts; k++) {
            char f[WINDOW_HIST_FIELD_MAX];
            snprintf(f, sizeof f, "EXPIRY:%s", alert_type_names[m->alerts[k].type]);
            hist_add(m, bucket_of(m, m->watermark), f, 1);
        }
        i++;
    }
}

window_result_t model_add(model_t *m, const event_t *e, int64_t offset)
{
    int64_t b = bucket_of(m, e->occurred_at);
    if (!m->has_watermark) {
        m->has_watermark = true;
        m->watermark = e->occurred_at;
        m->watermark_dirty = true;
    } else {
        if (b < window_low(m))
            return WINDOW_LATE;
        if (b > bucket_of(m, m->watermark)) {
            m->watermark = e->occurred_at;
            m->watermark_dirty = true;
            expire(m, offset);
        } else if (e->occurred_at > m->watermark) {
            m->watermark = e->occurred_at;
            m->watermark_dirty = true;
        }
    }

    mcust_t *c = cust_get_or_create(m, e->customer_id);
    bucket_add(bucket_get_or_create(c, b), e);
    streak_update(c, e);
    free((char *)c->last_event_id.ptr);
    c->last_event_id = dup_bytes(e->event_id.ptr, e->event_id.len);
    if (e->feedback_text.ptr != NULL && e->feedback_text.len > 0) {
        free((char *)c->narrative.ptr);
        c->narrative = dup_bytes(e->feedback_text.ptr,
                                 narrative_cut(e->feedback_text.ptr, e->feedback_text.len));
        c->has_narrative = true;
        c->narrative_bucket = b;
    }
    if (e->has_sentiment) {
        c->has_last_sent = true;
        c->last_sent = (double)e->sentiment;
        c->last_sent_bucket = b;
    }
    /* SPEC §10.2, step 3: a person's contact ends a pending follow-up */
    if (c->pending && e->kind == KIND_CONTACT &&
        (e->handled_by == HANDLER_HUMAN || e->handled_by == HANDLER_HYBRID)) {
        int64_t waited = e->occurred_at - c->pending_since;
        hist_seg(m, b, e, "followups", 1);
        hist_seg(m, b, e, "followup_ms", waited > 0 ? waited : 0);
        c->pending = false;
    }
    size_t before = m->nalerts;
    rescore(m, c, TRIGGER_EVENT, e, offset);

    /* SPEC §9.1, step 4: e in its bucket's history, in its segment */
    hist_seg(m, b, e, "events", 1);
    if (e->kind == KIND_CONTACT) {
        hist_seg(m, b, e, "contacts", 1);
        if (e->resolved == TRI_TRUE)
            hist_seg(m, b, e, "resolved", 1);
        if (e->resolved == TRI_FALSE)
            hist_seg(m, b, e, "unresolved", 1);
        if (e->has_handle_time) {
            hist_seg(m, b, e, "aht_n", 1);
            hist_seg(m, b, e, "aht_sum", e->handle_time_ms);
        }
        hist_seg(m, b, e, "ci_n", 1);
        hist_seg(m, b, e, "ci_sum", model_c(c->ci));
    }
    if (e->has_sentiment) {
        hist_seg(m, b, e, "sent_n", 1);
        hist_seg(m, b, e, "sent_sum", (__int128)round(10000.0 * (double)e->sentiment));
    }
    for (size_t k = before; k < m->nalerts; k++)
        hist_seg(m, b, e, alert_type_names[m->alerts[k].type], 1);
    return WINDOW_SCORED;
}

/* SPEC §1.2, read plainly: the stream loses every alert naming the
 * customer in this partition (all of the model's alerts are this
 * partition's); a held customer is forgotten (the organisation, computed
 * over the tracked customers, no longer counts it); the history stays; the
 * watermark does not move. */
bool model_erase(model_t *m, strview_t customer_id, int64_t offset)
{
    (void)offset;
    idlist_add(&m->erased, customer_id);
    size_t keep = 0, committed = m->commit_alerts;
    for (size_t i = 0; i < m->nalerts; i++) {
        model_alert_t *a = &m->alerts[i];
        if (id_eq(a->customer_id, customer_id) && a->partition == m->partition) {
            free((char *)a->customer_id.ptr);
            free((char *)a->event_id.ptr);
            free((char *)a->narrative.ptr);
            if (i < committed)
                m->commit_alerts--;
            continue;
        }
        m->alerts[keep++] = *a;
    }
    m->nalerts = keep;
    bool found;
    size_t i = cust_find(m, customer_id, &found);
    if (!found)
        return false;
    cust_free(m->custs[i]);
    memmove(&m->custs[i], &m->custs[i + 1], (m->ncusts - i - 1) * sizeof *m->custs);
    m->ncusts--;
    idlist_add(&m->erased_gone, customer_id);
    return true;
}

const strview_t *model_erasures(const model_t *m, size_t *count)
{
    *count = m->erased.n;
    return m->erased.ids;
}

size_t model_erased_gone_count(const model_t *m)
{
    return m->erased_gone.n;
}

const model_alert_t *model_alerts_since_commit(const model_t *m, size_t *count)
{
    *count = m->nalerts - m->commit_alerts;
    return m->alerts + m->commit_alerts;
}

int64_t model_watermark(const model_t *m)
{
    return m->has_watermark ? m->watermark : -1;
}

const model_alert_t *model_alerts(const model_t *m, size_t *count)
{
    *count = m->nalerts;
    return m->alerts;
}

size_t model_customer_count(const model_t *m)
{
    return m->ncusts;
}

static void fill_view(const mcust_t *c, model_customer_t *v)
{
    v->customer_id = c->id;
    v->ci = c->ci;
    v->resolution = c->resolution;
    v->sentiment = c->sentiment;
    v->loyalty = c->loyalty;
    v->ai_share = c->ai_share;
    v->aht_ms = c->aht_ms;
    v->streak = c->streak;
    v->contacts = c->contacts;
    v->resolved = c->resolved;
    v->events = c->events;
    v->at_risk = c->at_risk ? 1 : 0;
    v->updated_at = c->updated_at;
    v->last_event_id = c->last_event_id;
    v->route_human = c->route_human;
    v->route_reason = c->route_reason;
    v->pending = c->pending;
    v->pending_since = c->pending_since;
}

const model_customer_t *model_customers(model_t *m, size_t *count)
{
    m->views = xrealloc(m->views, (m->ncusts ? m->ncusts : 1) * sizeof *m->views);
    for (size_t i = 0; i < m->ncusts; i++)
        fill_view(m->custs[i], &m->views[i]);
    *count = m->ncusts;
    return m->views;
}

bool model_get(const model_t *m, strview_t customer_id, model_customer_t *out)
{
    bool found;
    size_t i = cust_find(m, customer_id, &found);
    if (!found)
        return false;
    fill_view(m->custs[i], out);
    return true;
}

const strview_t *model_evicted(const model_t *m, size_t *count)
{
    *count = m->evicted.n;
    return m->evicted.ids;
}

size_t model_eviction_count(const model_t *m)
{
    return m->evictions;
}

size_t model_pending_eviction_count(const model_t *m)
{
    return m->pending_evictions;
}

model_change_t model_change(const model_t *m, strview_t customer_id)
{
    bool found;
    size_t i = cust_find(m, customer_id, &found);
    if (found)
        return m->custs[i]->dirty ? MODEL_UPSERT : MODEL_UNCHANGED;
    return idlist_has(&m->deleted, customer_id) ? MODEL_DELETE : MODEL_UNCHANGED;
}

size_t model_change_count(const model_t *m)
{
    size_t n = m->deleted.n + m->erased_gone.n;
    for (size_t i = 0; i < m->ncusts; i++)
        if (m->custs[i]->dirty)
            n++;
    return n;
}

bool model_watermark_dirty(const model_t *m)
{
    return m->watermark_dirty;
}

void model_commit(model_t *m)
{
    for (size_t i = 0; i < m->ncusts; i++)
        m->custs[i]->dirty = false;
    idlist_clear(&m->deleted);
    idlist_clear(&m->erased);
    idlist_clear(&m->erased_gone);
    m->commit_alerts = m->nalerts;
    m->watermark_dirty = false;
}

const model_hist_t *model_history(model_t *m, size_t *count)
{
    model_t *mm = m;
    mm->hist_views = xrealloc(mm->hist_views, (m->nhist ? m->nhist : 1) * sizeof *m->hist_views);
    for (size_t i = 0; i < m->nhist; i++) {
        model_hist_t *v = &mm->hist_views[i];
        v->bucket_start = m->hist[i].bucket_start;
        memcpy(v->field, m->hist[i].field, sizeof v->field);
        __int128 t = m->hist[i].total;
        v->total = t > INT64_MAX ? INT64_MAX : t < INT64_MIN ? INT64_MIN : (int64_t)t;
    }
    *count = m->nhist;
    return mm->hist_views;
}

int64_t model_history_get(const model_t *m, int64_t bucket_start, const char *field)
{
    for (size_t i = 0; i < m->nhist; i++) {
        if (m->hist[i].bucket_start == bucket_start && strcmp(m->hist[i].field, field) == 0) {
            __int128 t = m->hist[i].total;
            return t > INT64_MAX ? INT64_MAX : t < INT64_MIN ? INT64_MIN : (int64_t)t;
        }
    }
    return 0;
}

void model_org(const model_t *m, int64_t out[WINDOW_ORG_FIELDS])
{
    memset(out, 0, WINDOW_ORG_FIELDS * sizeof *out);
    for (size_t i = 0; i < m->ncusts; i++) {
        const mcust_t *c = m->custs[i];
        out[0]++;                                 /* customers */
        out[1] += c->at_risk ? 1 : 0;             /* at_risk */
        out[2] += c->route_human ? 1 : 0;         /* route_human */
        out[3] += model_c(c->ci);                 /* ci_sum */
        /* ci_bin:<k>: [10k, 10k + 10) of the written value, 100 in bin 9 */
        int bin = (int)floor(as_written(c->ci) / 10.0);
        if (bin > 9)
            bin = 9;
        out[4 + bin]++;
    }
}
