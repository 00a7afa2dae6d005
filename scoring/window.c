/*
 * window.c — the scoring state of one partition: customers, buckets,
 * watermark, expiry, the connection index and its alerts (SPEC §2–4).
 *
 * Design note.
 *
 *   Customers live in an open-addressing hash table (linear probing,
 *   backward-shift deletion, no tombstones in the table) keyed by the bytes
 *   of customer_id.  Each customer keeps only the buckets it has events in,
 *   as a small array sorted by bucket index: most customers have a few
 *   events per window, so a dense array of window_buckets counters would
 *   waste most of its memory.
 *
 *   Expiry uses a timer wheel of window_buckets slots.  A customer sits in
 *   the slot of its oldest bucket (b mod window_buckets).  Every oldest
 *   bucket lies inside the window, so one slot holds exactly one bucket
 *   value, and when the watermark moves from bucket B to B' the customers
 *   to expire are exactly those in the slots of the buckets that left the
 *   window: no scan of the partition.  Those customers are handled in
 *   customer_id byte order, so the expiry alerts of one watermark move come
 *   out in an order that does not depend on the table layout.
 *
 *   Re-scoring sums a customer's buckets oldest first (sums in double, each
 *   bucket's in event order).  Alert thresholds compare the score as
 *   written, %.4f (SPEC §4); the formatting runs only when the score is
 *   within 0.001 of a threshold, where it could matter.
 *
 *   An evicted customer becomes a tombstone until window_commit(), so that
 *   the sink learns to delete it exactly once; an event for it before the
 *   commit brings it back as a new customer.
 *
 *   Cost per event: one hash lookup, an insertion into a few-element bucket
 *   array, and a sum over the customer's buckets.  Amortised expiry work is
 *   proportional to the customers that actually lose a bucket.
 *
 * Pure: no I/O, no clock.  One thread owns a window.
 */
#include "scoring/window.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const alert_type_names[ALERT_TYPE_COUNT] = {"churn_risk", "recovered", "needs_human"};
const char *const alert_trigger_names[2] = {"event", "expiry"};

void score_params_default(score_params_t *p) {
    p->bucket_ms = 86400000;
    p->window_buckets = 30;
    p->prior_weight = 3;
    p->w_resolution = 0.4;
    p->w_sentiment = 0.3;
    p->w_loyalty = 0.3;
    p->streak_penalty = 4;
    p->streak_cap = 5;
    p->risk_threshold = 35;
    p->recover_threshold = 50;
    p->needs_human_streak = 3;
    p->needs_human_sentiment = -0.6;
    p->needs_human_cooldown_ms = 86400000;
}

/* ------------------------------------------------------------------ */
/* Data                                                                */

typedef struct bucket {
    int64_t b;                 /* bucket index floor(t / bucket_ms) */
    uint32_t contacts, resolved, ai_contacts, events;
    uint32_t sent_n, loy_n, aht_n;
    int32_t loy_half;          /* loyalty sum times two: every signal is a multiple of 0.5 */
    double sent_sum;
    double aht_sum;
} bucket_t;

typedef struct customer {
    struct customer *wheel_prev, *wheel_next; /* slot of its oldest bucket */
    bucket_t *buckets;         /* sorted by b, ascending; NULL when none */
    uint32_t nbuckets, cap;
    uint32_t streak;
    int64_t last_fail_at;      /* valid when streak > 0 */
    int64_t last_nh_at;        /* valid when has_nh */
    int64_t updated_at;
    double last_ci;            /* valid when has_score */
    char *last_event_id;       /* malloc'd, last_event_id_len bytes */
    char *narrative;           /* malloc'd, cut to ALERT_NARRATIVE_MAX; NULL when none */
    int64_t narrative_bucket;
    uint16_t last_event_id_len, narrative_len;
    uint16_t cid_len;
    unsigned at_risk : 1, has_score : 1, has_nh : 1, dirty : 1, tomb : 1;
    char cid[];                /* customer_id bytes, not NUL-terminated */
} customer_t;

typedef struct slot {
    uint64_t hash;
    customer_t *c;             /* NULL: empty */
} slot_t;

struct window {
    score_params_t p;
    int32_t partition;
    int64_t watermark;         /* -1: none yet */
    bool watermark_dirty;

    slot_t *table;
    size_t table_mask;         /* capacity - 1, capacity a power of two */
    size_t table_used;         /* customers in the table, tombstones included */
    size_t tombs;

    customer_t **wheel;        /* window_buckets list heads */

    customer_t **dirty;        /* changed since the last commit */
    size_t ndirty, dirty_cap;

    alert_t *alerts;
    size_t nalerts, alerts_cap;

    unsigned char *blob;       /* scratch for the state of one customer */
    size_t blob_cap;
};

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("rapport: out of memory\n", stderr);
        abort();
    }
    return q;
}

static int64_t bucket_of(const window_t *w, int64_t t) { return t / w->p.bucket_ms; }

/* First bucket inside the window when the watermark is at bucket bt. */
static int64_t window_start(const window_t *w, int64_t bt) {
    return bt - w->p.window_buckets + 1;
}

static size_t wheel_slot(const window_t *w, int64_t b) {
    int64_t n = w->p.window_buckets;
    return (size_t)(((b % n) + n) % n);
}

/* ------------------------------------------------------------------ */
/* Hash table                                                          */

static uint64_t hash_bytes(const char *s, size_t n) {
    /* FNV-1a, then a final avalanche so that linear probing spreads well. */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static slot_t *table_find(const window_t *w, const char *cid, size_t len, uint64_t h) {
    for (size_t i = h & w->table_mask;; i = (i + 1) & w->table_mask) {
        slot_t *s = &w->table[i];
        if (!s->c) return s;
        if (s->hash == h && s->c->cid_len == len && memcmp(s->c->cid, cid, len) == 0) return s;
    }
}

static void table_grow(window_t *w) {
    size_t oldcap = w->table_mask + 1, newcap = oldcap * 2;
    slot_t *old = w->table;
    w->table = xrealloc(NULL, newcap * sizeof(slot_t));
    memset(w->table, 0, newcap * sizeof(slot_t));
    w->table_mask = newcap - 1;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].c) continue;
        size_t j = old[i].hash & w->table_mask;
        while (w->table[j].c) j = (j + 1) & w->table_mask;
        w->table[j] = old[i];
    }
    free(old);
}

/* Removes the slot's entry, shifting later entries of its cluster back. */
static void table_remove(window_t *w, slot_t *s) {
    size_t i = (size_t)(s - w->table);
    for (;;) {
        w->table[i].c = NULL;
        size_t j = i;
        for (;;) {
            j = (j + 1) & w->table_mask;
            if (!w->table[j].c) {
                w->table_used--;
                return;
            }
            size_t home = w->table[j].hash & w->table_mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        w->table[i] = w->table[j];
        i = j;
    }
}

/* ------------------------------------------------------------------ */
/* Wheel                                                               */

static void wheel_unlink(window_t *w, customer_t *c) {
    if (!c->nbuckets) return;
    if (c->wheel_prev)
        c->wheel_prev->wheel_next = c->wheel_next;
    else
        w->wheel[wheel_slot(w, c->buckets[0].b)] = c->wheel_next;
    if (c->wheel_next) c->wheel_next->wheel_prev = c->wheel_prev;
    c->wheel_prev = c->wheel_next = NULL;
}

static void wheel_link(window_t *w, customer_t *c) {
    if (!c->nbuckets) return;
    customer_t **head = &w->wheel[wheel_slot(w, c->buckets[0].b)];
    c->wheel_prev = NULL;
    c->wheel_next = *head;
    if (*head) (*head)->wheel_prev = c;
    *head = c;
}

/* ------------------------------------------------------------------ */
/* Customers                                                           */

static void customer_reset(customer_t *c) {
    free(c->buckets);
    free(c->last_event_id);
    free(c->narrative);
    uint16_t len = c->cid_len;
    /* Not sizeof(*c): cid[] may begin inside the struct's tail padding. */
    memset(c, 0, offsetof(customer_t, cid));
    c->cid_len = len;
}

static void customer_free(customer_t *c) {
    if (!c) return;
    free(c->buckets);
    free(c->last_event_id);
    free(c->narrative);
    free(c);
}

static void mark_dirty(window_t *w, customer_t *c) {
    if (c->dirty) return;
    if (w->ndirty == w->dirty_cap) {
        w->dirty_cap = w->dirty_cap ? w->dirty_cap * 2 : 64;
        w->dirty = xrealloc(w->dirty, w->dirty_cap * sizeof(*w->dirty));
    }
    w->dirty[w->ndirty++] = c;
    c->dirty = 1;
}

/* Finds the customer, creating it (or reviving its tombstone) when absent. */
static customer_t *customer_get(window_t *w, strview_t id, bool *created) {
    uint64_t h = hash_bytes(id.ptr, id.len);
    slot_t *s = table_find(w, id.ptr, id.len, h);
    *created = false;
    if (s->c) {
        if (s->c->tomb) {
            s->c->tomb = 0;
            w->tombs--;
            *created = true;
        }
        return s->c;
    }
    assert(id.len <= EVENT_CUSTOMER_ID_MAX);
    customer_t *c = xrealloc(NULL, offsetof(customer_t, cid) + id.len);
    memset(c, 0, offsetof(customer_t, cid));
    memcpy(c->cid, id.ptr, id.len);
    c->cid_len = (uint16_t)id.len;
    s->hash = h;
    s->c = c;
    w->table_used++;
    if (w->table_used * 4 > (w->table_mask + 1) * 3) table_grow(w);
    *created = true;
    return c;
}

static customer_t *customer_lookup(const window_t *w, strview_t id) {
    slot_t *s = table_find(w, id.ptr, id.len, hash_bytes(id.ptr, id.len));
    return (s->c && !s->c->tomb) ? s->c : NULL;
}

/* Evicts: the customer's state is forgotten; it stays as a tombstone until
 * the commit so that the sink deletes its keys. */
static void customer_evict(window_t *w, customer_t *c) {
    wheel_unlink(w, c);
    bool dirty = c->dirty;
    customer_reset(c);
    c->dirty = dirty;
    c->tomb = 1;
    w->tombs++;
    mark_dirty(w, c);
}

/* Returns the customer's bucket b, inserting it in order when absent. */
static bucket_t *customer_bucket(window_t *w, customer_t *c, int64_t b) {
    uint32_t i = c->nbuckets;
    while (i > 0 && c->buckets[i - 1].b > b) i--;
    if (i > 0 && c->buckets[i - 1].b == b) return &c->buckets[i - 1];
    bool new_oldest = (i == 0);
    if (new_oldest) wheel_unlink(w, c);
    if (c->nbuckets == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 2;
        c->buckets = xrealloc(c->buckets, c->cap * sizeof(bucket_t));
    }
    memmove(&c->buckets[i + 1], &c->buckets[i], (c->nbuckets - i) * sizeof(bucket_t));
    c->nbuckets++;
    memset(&c->buckets[i], 0, sizeof(bucket_t));
    c->buckets[i].b = b;
    if (new_oldest) wheel_link(w, c);
    return &c->buckets[i];
}

/* ------------------------------------------------------------------ */
/* Scoring (SPEC §3)                                                   */

typedef struct scores {
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t contacts, resolved, events;
} scores_t;

static void customer_score(const window_t *w, const customer_t *c, scores_t *s) {
    const score_params_t *p = &w->p;
    double ssum = 0, aht_sum = 0;
    int64_t contacts = 0, resolved = 0, ai = 0, events = 0, sn = 0, ln = 0, aht_n = 0, lhalf = 0;
    for (uint32_t i = 0; i < c->nbuckets; i++) {
        const bucket_t *b = &c->buckets[i];
        contacts += b->contacts;
        resolved += b->resolved;
        ai += b->ai_contacts;
        events += b->events;
        sn += b->sent_n;
        ssum += b->sent_sum;
        ln += b->loy_n;
        lhalf += b->loy_half;
        aht_n += b->aht_n;
        aht_sum += b->aht_sum;
    }
    double k = p->prior_weight;
    s->resolution = ((double)resolved + 0.5 * k) / ((double)contacts + k);
    s->sentiment = (ssum / ((double)sn + k) + 1.0) / 2.0;
    s->loyalty = (((double)lhalf / 2.0) / ((double)ln + k) + 1.0) / 2.0;
    uint32_t st = c->streak < (uint32_t)p->streak_cap ? c->streak : (uint32_t)p->streak_cap;
    double penalty = p->streak_penalty * (double)st;
    double ci = 100.0 * (p->w_resolution * s->resolution + p->w_sentiment * s->sentiment +
                         p->w_loyalty * s->loyalty) - penalty;
    s->ci = ci < 0 ? 0 : (ci > 100 ? 100 : ci);
    s->ai_share = contacts ? (double)ai / (double)contacts : 0;
    s->aht_ms = aht_n ? aht_sum / (double)aht_n : 0;
    s->contacts = contacts;
    s->resolved = resolved;
    s->events = events;
}

/* The score as written to Redis: %.4f, read back. */
static double as_written(double v) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%.4f", v);
    return strtod(buf, NULL);
}

/* ci < threshold, comparing ci as written. */
static bool below(double ci, double threshold) {
    if (fabs(ci - threshold) > 0.001) return ci < threshold;
    return as_written(ci) < threshold;
}

/* ------------------------------------------------------------------ */
/* Alerts (SPEC §4)                                                    */

static alert_t *alert_push(window_t *w, alert_type_t type, alert_trigger_t trigger,
                           const customer_t *c, double ci, bool has_prev, double prev,
                           strview_t event_id, int64_t occurred_at, int64_t offset) {
    if (w->nalerts == w->alerts_cap) {
        w->alerts_cap = w->alerts_cap ? w->alerts_cap * 2 : 16;
        w->alerts = xrealloc(w->alerts, w->alerts_cap * sizeof(alert_t));
    }
    /* The narrative: the latest non-empty feedback_text, unless its bucket
     * has left the window. */
    strview_t narr = {NULL, 0};
    if (c->narrative &&
        c->narrative_bucket >= window_start(w, bucket_of(w, w->watermark))) {
        narr.ptr = c->narrative;
        narr.len = c->narrative_len;
    }
    /* One allocation owns the alert's strings. */
    char *mem = xrealloc(NULL, c->cid_len + event_id.len + narr.len);
    memcpy(mem, c->cid, c->cid_len);
    if (event_id.len) memcpy(mem + c->cid_len, event_id.ptr, event_id.len);
    if (narr.len) memcpy(mem + c->cid_len + event_id.len, narr.ptr, narr.len);

    alert_t *a = &w->alerts[w->nalerts++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->trigger = trigger;
    a->customer_id = (strview_t){mem, c->cid_len};
    a->score = ci;
    a->has_previous = has_prev;
    a->previous_score = prev;
    a->event_id = (strview_t){mem + c->cid_len, event_id.len};
    a->occurred_at = occurred_at;
    a->partition = w->partition;
    a->offset = offset;
    a->narrative = (strview_t){mem + c->cid_len + event_id.len, narr.len};
    return a;
}

/* Re-scores c and raises churn_risk / recovered, and for an event trigger
 * needs_human (SPEC §4).  e is NULL for expiry. */
static void customer_rescore(window_t *w, customer_t *c, const event_t *e, int64_t offset) {
    const score_params_t *p = &w->p;
    scores_t s;
    customer_score(w, c, &s);
    bool has_prev = c->has_score;
    double prev = c->last_ci;
    alert_trigger_t trig = e ? TRIGGER_EVENT : TRIGGER_EXPIRY;
    strview_t eid = e ? e->event_id : (strview_t){NULL, 0};
    int64_t at = e ? e->occurred_at : w->watermark;
    alert_t *a;

    if (!c->at_risk && below(s.ci, p->risk_threshold)) {
        c->at_risk = 1;
        a = alert_push(w, ALERT_CHURN_RISK, trig, c, s.ci, has_prev, prev, eid, at, offset);
        if (e)
            snprintf(a->reason, sizeof(a->reason),
                     "connection index fell to %.2f, below %g%s", s.ci, p->risk_threshold,
                     c->streak ? " after repeated unresolved AI contacts" : "");
        else
            snprintf(a->reason, sizeof(a->reason),
                     "connection index fell to %.2f, below %g, as older events left the window",
                     s.ci, p->risk_threshold);
    }
    if (c->at_risk && !below(s.ci, p->recover_threshold)) {
        c->at_risk = 0;
        a = alert_push(w, ALERT_RECOVERED, trig, c, s.ci, has_prev, prev, eid, at, offset);
        snprintf(a->reason, sizeof(a->reason), "connection index back to %.2f, at or above %g%s",
                 s.ci, p->recover_threshold, e ? "" : " as older events left the window");
    }
    if (e && e->kind == KIND_CONTACT && e->handled_by == HANDLER_AI) {
        bool by_streak = e->resolved == TRI_FALSE && c->streak >= (uint32_t)p->needs_human_streak;
        bool by_sent = e->has_sentiment && (double)e->sentiment <= p->needs_human_sentiment;
        bool cooling = c->has_nh && c->last_nh_at > e->occurred_at - p->needs_human_cooldown_ms;
        if ((by_streak || by_sent) && !cooling) {
            a = alert_push(w, ALERT_NEEDS_HUMAN, trig, c, s.ci, has_prev, prev, eid, at, offset);
            char sent[48] = "";
            if (e->has_sentiment)
                snprintf(sent, sizeof(sent), "%ssentiment %.2f", by_streak ? "; " : "",
                         (double)e->sentiment);
            if (by_streak)
                snprintf(a->reason, sizeof(a->reason), "%u unresolved AI contacts in a row%s",
                         c->streak, sent);
            else
                snprintf(a->reason, sizeof(a->reason), "AI contact with %s, at or below %g", sent,
                         p->needs_human_sentiment);
            if (!c->has_nh || c->last_nh_at < e->occurred_at) c->last_nh_at = e->occurred_at;
            c->has_nh = 1;
        }
    }
    c->last_ci = s.ci;
    c->has_score = 1;
    c->updated_at = w->watermark;
    mark_dirty(w, c);
}

/* ------------------------------------------------------------------ */
/* Expiry (SPEC §2.1 step 2)                                           */

static int cmp_customer_id(const void *a, const void *b) {
    const customer_t *x = *(customer_t *const *)a, *y = *(customer_t *const *)b;
    size_t n = x->cid_len < y->cid_len ? x->cid_len : y->cid_len;
    int r = memcmp(x->cid, y->cid, n);
    return r ? r : (x->cid_len > y->cid_len) - (x->cid_len < y->cid_len);
}

/* The watermark moves from bucket old_b to new_b (> old_b); w->watermark is
 * already the new one.  `offset` is the event that moved it. */
static void window_expire(window_t *w, int64_t old_b, int64_t new_b, int64_t offset) {
    int64_t old_start = window_start(w, old_b), new_start = window_start(w, new_b);
    int64_t end = new_start;
    if (end - old_start > w->p.window_buckets) end = old_start + w->p.window_buckets;

    customer_t **list = NULL;
    size_t n = 0, cap = 0;
    for (int64_t b = old_start; b < end; b++) {
        customer_t **head = &w->wheel[wheel_slot(w, b)];
        for (customer_t *c = *head, *next; c; c = next) {
            next = c->wheel_next;
            c->wheel_prev = c->wheel_next = NULL;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                list = xrealloc(list, cap * sizeof(*list));
            }
            list[n++] = c;
        }
        *head = NULL;
    }
    if (n > 1) qsort(list, n, sizeof(*list), cmp_customer_id);

    for (size_t i = 0; i < n; i++) {
        customer_t *c = list[i];
        uint32_t drop = 0;
        while (drop < c->nbuckets && c->buckets[drop].b < new_start) drop++;
        assert(drop > 0);
        if (drop == c->nbuckets) {
            c->nbuckets = 0; /* already out of the wheel */
            customer_evict(w, c);
            continue;
        }
        memmove(c->buckets, c->buckets + drop, (c->nbuckets - drop) * sizeof(bucket_t));
        c->nbuckets -= drop;
        if (c->streak && bucket_of(w, c->last_fail_at) < new_start) c->streak = 0;
        wheel_link(w, c);
        customer_rescore(w, c, NULL, offset);
    }
    free(list);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

window_t *window_new(const score_params_t *params, int32_t partition, char *errstr,
                     size_t errstr_size) {
    if (params->bucket_ms <= 0 || params->window_buckets <= 0 || params->streak_cap < 0) {
        snprintf(errstr, errstr_size, "bucket_ms and window_buckets must be positive");
        return NULL;
    }
    window_t *w = calloc(1, sizeof(*w));
    if (!w) goto fail;
    w->p = *params;
    w->partition = partition;
    w->watermark = -1;
    w->table_mask = 1023;
    w->table = calloc(w->table_mask + 1, sizeof(slot_t));
    w->wheel = calloc((size_t)params->window_buckets, sizeof(customer_t *));
    if (!w->table || !w->wheel) goto fail;
    return w;
fail:
    window_free(w);
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

static void alerts_clear(window_t *w) {
    for (size_t i = 0; i < w->nalerts; i++) free((void *)w->alerts[i].customer_id.ptr);
    w->nalerts = 0;
}

void window_free(window_t *w) {
    if (!w) return;
    if (w->table)
        for (size_t i = 0; i <= w->table_mask; i++) customer_free(w->table[i].c);
    free(w->table);
    free(w->wheel);
    free(w->dirty);
    alerts_clear(w);
    free(w->alerts);
    free(w->blob);
    free(w);
}

window_result_t window_add(window_t *w, const event_t *e, int64_t offset) {
    int64_t t = e->occurred_at, b = bucket_of(w, t);

    /* 1. Late: older than the window at the current watermark. */
    if (w->watermark >= 0 && b < window_start(w, bucket_of(w, w->watermark)))
        return WINDOW_LATE;

    /* 2. Advance the watermark, expiring what leaves the window. */
    if (w->watermark < 0) {
        w->watermark = t;
        w->watermark_dirty = true;
    } else if (b > bucket_of(w, w->watermark)) {
        int64_t old_b = bucket_of(w, w->watermark);
        w->watermark = t;
        w->watermark_dirty = true;
        window_expire(w, old_b, b, offset);
    } else if (t > w->watermark) {
        w->watermark = t;
        w->watermark_dirty = true;
    }

    /* 3. Add the event to its customer's bucket; update the streak. */
    bool created;
    customer_t *c = customer_get(w, e->customer_id, &created);
    bucket_t *bk = customer_bucket(w, c, b);
    bk->events++;
    if (e->kind == KIND_CONTACT) {
        bk->contacts++;
        if (e->resolved == TRI_TRUE) bk->resolved++;
        if (e->handled_by == HANDLER_AI) bk->ai_contacts++;
        if (e->has_handle_time) {
            bk->aht_sum += (double)e->handle_time_ms;
            bk->aht_n++;
        }
        if (e->handled_by == HANDLER_AI && e->resolved == TRI_FALSE) {
            if (c->streak == 0 || c->last_fail_at < t) c->last_fail_at = t;
            c->streak++;
        } else if (e->resolved == TRI_TRUE || e->handled_by == HANDLER_HUMAN ||
                   e->handled_by == HANDLER_HYBRID) {
            c->streak = 0;
        }
    }
    if (e->has_sentiment) {
        bk->sent_sum += (double)e->sentiment;
        bk->sent_n++;
    }
    if (e->has_nps) {
        bk->loy_half += e->nps >= 9 ? 2 : (e->nps >= 7 ? 0 : -2);
        bk->loy_n++;
    }
    if (e->has_csat) {
        bk->loy_half += e->csat - 3; /* (csat - 3) / 2, doubled */
        bk->loy_n++;
    }
    if (e->kind == KIND_PURCHASE || e->kind == KIND_CANCELLATION) {
        bk->loy_half += e->kind == KIND_PURCHASE ? 2 : -2;
        bk->loy_n++;
    }
    if (e->feedback_text.ptr && e->feedback_text.len > 0) {
        size_t n = e->feedback_text.len;
        if (n > ALERT_NARRATIVE_MAX) {
            n = ALERT_NARRATIVE_MAX;
            /* Back up to a character boundary: never end inside a sequence. */
            while (n > 0 && ((unsigned char)e->feedback_text.ptr[n] & 0xC0) == 0x80) n--;
        }
        c->narrative = xrealloc(c->narrative, n);
        memcpy(c->narrative, e->feedback_text.ptr, n);
        c->narrative_len = (uint16_t)n;
        c->narrative_bucket = b;
    }
    if (c->last_event_id_len != e->event_id.len || !c->last_event_id) {
        c->last_event_id = xrealloc(c->last_event_id, e->event_id.len);
        c->last_event_id_len = (uint16_t)e->event_id.len;
    }
    memcpy(c->last_event_id, e->event_id.ptr, e->event_id.len);
    (void)created;

    /* 4. Re-score and evaluate alerts. */
    customer_rescore(w, c, e, offset);
    return WINDOW_SCORED;
}

int64_t window_watermark(const window_t *w) { return w->watermark; }
void window_set_watermark(window_t *w, int64_t t) { w->watermark = t; }
bool window_watermark_dirty(const window_t *w) { return w->watermark_dirty; }
size_t window_customer_count(const window_t *w) { return w->table_used - w->tombs; }
size_t window_change_count(const window_t *w) { return w->ndirty; }

const alert_t *window_alerts(const window_t *w, size_t *count) {
    *count = w->nalerts;
    return w->alerts;
}

/* ------------------------------------------------------------------ */
/* State blob                                                          */
/*
 * Version 1, all integers as LEB128 varints (signed ones zigzagged),
 * doubles as 8 little-endian bytes:
 *   u8 version=1, u8 flags (1 at_risk, 2 has_score, 4 has_nh, 8 narrative)
 *   streak, [last_fail_at if streak], [last_ci if has_score],
 *   [last_nh_at if has_nh], updated_at, last_event_id (len, bytes),
 *   [narrative_bucket, narrative (len, bytes) if narrative],
 *   nbuckets, then per bucket: b (first absolute, then delta), contacts,
 *   resolved, ai_contacts, events, sent_n, loy_n, aht_n, loy_half,
 *   [sent_sum if sent_n], [aht_sum if aht_n].
 */

#define STATE_VERSION 1

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    unsigned char **owner;
    size_t *owner_cap;
} wbuf_t;

static void wb_need(wbuf_t *b, size_t n) {
    if (b->len + n <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
    *b->owner = b->p;
    *b->owner_cap = cap;
}

static void wb_u64(wbuf_t *b, uint64_t v) {
    wb_need(b, 10);
    while (v >= 0x80) {
        b->p[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (unsigned char)v;
}

static void wb_i64(wbuf_t *b, int64_t v) { wb_u64(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }

static void wb_f64(wbuf_t *b, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    wb_need(b, 8);
    for (int i = 0; i < 8; i++) b->p[b->len++] = (unsigned char)(u >> (8 * i));
}

static void wb_bytes(wbuf_t *b, const char *s, size_t n) {
    wb_u64(b, n);
    wb_need(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static size_t customer_encode(window_t *w, const customer_t *c) {
    wbuf_t b = {w->blob, 0, w->blob_cap, &w->blob, &w->blob_cap};
    wb_need(&b, 2);
    b.p[b.len++] = STATE_VERSION;
    b.p[b.len++] = (unsigned char)((c->at_risk ? 1 : 0) | (c->has_score ? 2 : 0) |
                                   (c->has_nh ? 4 : 0) | (c->narrative ? 8 : 0));
    wb_u64(&b, c->streak);
    if (c->streak) wb_i64(&b, c->last_fail_at);
    if (c->has_score) wb_f64(&b, c->last_ci);
    if (c->has_nh) wb_i64(&b, c->last_nh_at);
    wb_i64(&b, c->updated_at);
    wb_bytes(&b, c->last_event_id, c->last_event_id_len);
    if (c->narrative) {
        wb_i64(&b, c->narrative_bucket);
        wb_bytes(&b, c->narrative, c->narrative_len);
    }
    wb_u64(&b, c->nbuckets);
    int64_t prev = 0;
    for (uint32_t i = 0; i < c->nbuckets; i++) {
        const bucket_t *k = &c->buckets[i];
        wb_i64(&b, k->b - prev);
        prev = k->b;
        wb_u64(&b, k->contacts);
        wb_u64(&b, k->resolved);
        wb_u64(&b, k->ai_contacts);
        wb_u64(&b, k->events);
        wb_u64(&b, k->sent_n);
        wb_u64(&b, k->loy_n);
        wb_u64(&b, k->aht_n);
        wb_i64(&b, k->loy_half);
        if (k->sent_n) wb_f64(&b, k->sent_sum);
        if (k->aht_n) wb_f64(&b, k->aht_sum);
    }
    return b.len;
}

typedef struct rbuf {
    const unsigned char *p, *end;
    bool bad;
} rbuf_t;

static uint64_t rb_u64(rbuf_t *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        unsigned char byte = *r->p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

static int64_t rb_i64(rbuf_t *r) {
    uint64_t u = rb_u64(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static uint32_t rb_u32(rbuf_t *r) {
    uint64_t v = rb_u64(r);
    if (v > UINT32_MAX) r->bad = true;
    return (uint32_t)v;
}

static double rb_f64(rbuf_t *r) {
    if (r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* A malloc'd copy of a length-prefixed string of at most max bytes. */
static char *rb_bytes(rbuf_t *r, size_t max, uint16_t *len) {
    uint64_t n = rb_u64(r);
    if (r->bad || n > max || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return NULL;
    }
    char *s = xrealloc(NULL, (size_t)n);
    if (n) memcpy(s, r->p, (size_t)n);
    r->p += n;
    *len = (uint16_t)n;
    return s;
}

int window_load_customer(window_t *w, strview_t customer_id, const unsigned char *state,
                         size_t state_len, char *errstr, size_t errstr_size) {
    if (customer_id.len == 0 || customer_id.len > EVENT_CUSTOMER_ID_MAX) {
        snprintf(errstr, errstr_size, "customer id of %zu bytes", customer_id.len);
        return -1;
    }
    rbuf_t r = {state, state + state_len, false};
    if (state_len < 2 || state[0] != STATE_VERSION) {
        snprintf(errstr, errstr_size, "state version %d is not %d", state_len ? state[0] : -1,
                 STATE_VERSION);
        return -1;
    }
    unsigned flags = state[1];
    r.p += 2;
    bool created;
    customer_t *c = customer_get(w, customer_id, &created);
    if (!created) {
        snprintf(errstr, errstr_size, "customer loaded twice");
        return -1;
    }
    c->at_risk = (flags & 1) != 0;
    c->has_score = (flags & 2) != 0;
    c->has_nh = (flags & 4) != 0;
    c->streak = rb_u32(&r);
    if (c->streak) c->last_fail_at = rb_i64(&r);
    if (c->has_score) c->last_ci = rb_f64(&r);
    if (c->has_nh) c->last_nh_at = rb_i64(&r);
    c->updated_at = rb_i64(&r);
    c->last_event_id = rb_bytes(&r, EVENT_EVENT_ID_MAX, &c->last_event_id_len);
    if (flags & 8) {
        c->narrative_bucket = rb_i64(&r);
        c->narrative = rb_bytes(&r, ALERT_NARRATIVE_MAX, &c->narrative_len);
    }
    uint64_t nb = rb_u64(&r);
    if (nb == 0 || nb > (uint64_t)w->p.window_buckets) r.bad = true;
    if (!r.bad) {
        c->buckets = xrealloc(NULL, (size_t)nb * sizeof(bucket_t));
        c->cap = (uint32_t)nb;
        int64_t prev = 0;
        for (uint64_t i = 0; i < nb && !r.bad; i++) {
            bucket_t *k = &c->buckets[i];
            memset(k, 0, sizeof(*k));
            k->b = prev + rb_i64(&r);
            if (i > 0 && k->b <= prev) r.bad = true;
            prev = k->b;
            k->contacts = rb_u32(&r);
            k->resolved = rb_u32(&r);
            k->ai_contacts = rb_u32(&r);
            k->events = rb_u32(&r);
            k->sent_n = rb_u32(&r);
            k->loy_n = rb_u32(&r);
            k->aht_n = rb_u32(&r);
            k->loy_half = (int32_t)rb_i64(&r);
            if (k->sent_n) k->sent_sum = rb_f64(&r);
            if (k->aht_n) k->aht_sum = rb_f64(&r);
            c->nbuckets = (uint32_t)i + 1;
        }
    }
    if (!r.bad && r.p != r.end) r.bad = true;
    if (r.bad) {
        /* Forget the half-loaded customer. */
        slot_t *s = table_find(w, customer_id.ptr, customer_id.len,
                               hash_bytes(customer_id.ptr, customer_id.len));
        customer_free(s->c);
        table_remove(w, s);
        snprintf(errstr, errstr_size, "state blob of %zu bytes does not parse", state_len);
        return -1;
    }
    wheel_link(w, c);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Views and commit                                                    */

static void customer_view(window_t *w, const customer_t *c, window_customer_view_t *v) {
    scores_t s;
    customer_score(w, c, &s);
    v->customer_id = (strview_t){c->cid, c->cid_len};
    v->ci = c->last_ci;
    v->resolution = s.resolution;
    v->sentiment = s.sentiment;
    v->loyalty = s.loyalty;
    v->ai_share = s.ai_share;
    v->aht_ms = s.aht_ms;
    v->streak = c->streak;
    v->contacts = s.contacts;
    v->resolved = s.resolved;
    v->events = s.events;
    v->at_risk = c->at_risk;
    v->updated_at = c->updated_at;
    v->last_event_id = (strview_t){c->last_event_id, c->last_event_id_len};
    v->state_len = customer_encode(w, c);
    v->state = w->blob;
}

void window_foreach_change(window_t *w, window_upsert_cb upsert, window_delete_cb del,
                           void *opaque) {
    window_customer_view_t v;
    for (size_t i = 0; i < w->ndirty; i++) {
        customer_t *c = w->dirty[i];
        if (c->tomb) {
            if (del) del(opaque, (strview_t){c->cid, c->cid_len});
        } else if (upsert) {
            customer_view(w, c, &v);
            upsert(opaque, &v);
        }
    }
}

bool window_get(window_t *w, strview_t customer_id, window_customer_view_t *out) {
    customer_t *c = customer_lookup(w, customer_id);
    if (!c) return false;
    customer_view(w, c, out);
    return true;
}

void window_commit(window_t *w) {
    for (size_t i = 0; i < w->ndirty; i++) {
        customer_t *c = w->dirty[i];
        c->dirty = 0;
        if (c->tomb) {
            slot_t *s = table_find(w, c->cid, c->cid_len, hash_bytes(c->cid, c->cid_len));
            assert(s->c == c);
            table_remove(w, s);
            w->tombs--;
            customer_free(c);
        }
    }
    w->ndirty = 0;
    alerts_clear(w);
    w->watermark_dirty = false;
}
