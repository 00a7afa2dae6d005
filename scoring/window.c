/*
 * window.c — the scoring state of one partition: customers, buckets,
 * watermark, expiry, the connection index and its alerts (SPEC §2–4), each
 * customer's route and pending follow-up (§10), and the history and
 * organisation counters a flush must add (§9).
 *
 * Design note.
 *
 *   Memory is the constraint: a partition may track millions of customers,
 *   most with a few events in a few buckets.  So a customer is a fixed
 *   48-byte record in a slab (chunks of 4096, no per-record malloc header)
 *   plus one byte string in a cell of the window's own pages (sizes in
 *   steps of 8 bytes, no header either): its customer_id followed by its "body",
 *   the varint encoding of the buckets it has events in and of the rare
 *   fields (streak start, needs_human cooldown, narrative).  The body is
 *   exactly what the Redis state blob carries after a small header, so
 *   saving and restoring a customer is a copy.  An event decodes the body
 *   into a scratch array, updates it, re-scores from it and encodes it
 *   back: a few dozen bytes each way.  A body that grows or shrinks
 *   within its cell's 8-byte step stays where it is; a move is a pop and
 *   a push on two free lists, not a realloc.
 *
 *   With a million customers the table slot, the record and the string
 *   are three cache misses in a row, most of an event's cost.
 *   window_prefetch() takes the next event's customer id; window_add()
 *   then fetches one more link of it at two points of its own work, so
 *   that the next event finds all three in the cache.  Cost per event
 *   (bench/micro, BENCHMARKS.md): about 2 200 instructions, 0.7-0.9 us
 *   at a million customers with the hint, 1-1.4 us without.
 *
 *   last_event_id is written to Redis and never read by the scorer, so it
 *   is not kept: a changed customer points into a per-flush arena of event
 *   ids, emptied by window_commit().  A view of a customer not changed by
 *   an event since the last commit has an empty last_event_id, and the sink
 *   leaves that hash field as it is.
 *
 *   A sink writes only the public fields that changed (batch/batch.h
 *   BATCH_CF_*).  When a customer first changes after a commit, its fields
 *   as last written are computed from its body (one more sum over its
 *   buckets) and kept beside its entry in the change list, 88 bytes per
 *   changed customer until the commit; the batch's mask compares the new
 *   ones with them as the sink writes them (%.4f text or integers).  A
 *   customer new, loaded or evicted since then is written whole.
 *
 *   The table maps customer_id to a slab id: open addressing, linear
 *   probing, 8-byte slots (the low 32 bits of the hash, which also pick the
 *   home slot, and the id), backward-shift deletion.
 *
 *   Expiry uses a timer wheel of window_buckets slots.  A customer sits in
 *   the slot of its oldest bucket (b mod window_buckets), linked by slab
 *   ids.  Every oldest bucket lies inside the window, so one slot holds one
 *   bucket value, and when the watermark moves from bucket B to B' the
 *   customers to expire are exactly those in the slots of the buckets that
 *   left: no scan of the partition.  They are handled in customer_id byte
 *   order, so expiry alerts do not depend on the table layout.
 *
 *   Re-scoring sums a customer's buckets oldest first (sums in double, each
 *   bucket's in event order; the loyalty sum exactly, in halves).  Alert
 *   thresholds compare the score as written, %.4f (SPEC §4); the formatting
 *   runs only within 0.001 of a threshold, where it could matter.
 *
 *   An evicted customer becomes a tombstone until window_commit(), so that
 *   the sink deletes its keys exactly once; an event for it before the
 *   commit brings it back as a new customer.  An erased one (SPEC §1.2) is
 *   the same tombstone marked F_ERASED, which the change export skips: its
 *   keys go with the erasure, listed apart (held or not) in the order of
 *   the tombstones, and its alerts not yet written are dropped.
 *
 *   The route (§10.1), the pending follow-up (§10.2) and the latest
 *   sentiment with its bucket are rare-ish fields of the body, so they
 *   live in the state blob too.  History (§9.1) is accumulated per flush
 *   in a small open-addressing map keyed by (bucket start, segment), one
 *   record of counters per pair touched (one lookup per event), flattened
 *   to (bucket start, field) entries for the sink and cleared by
 *   window_commit().  The organisation
 *   (§9.2) is one array of 14 deltas kept up to date at every re-score and
 *   eviction: the customer's contribution before is subtracted and the one
 *   after added, so the sum over a flush is "now minus as last written".
 *   A customer's contribution is a function of what its blob stores (the
 *   last score, at_risk and the route), so it survives a restart.
 *
 * Pure: no I/O, no clock.  One thread owns a window.
 */
#include "scoring/window.h"

#include "common/alloc.h"
#include "common/numfmt.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const alert_type_names[ALERT_TYPE_COUNT] = {"churn_risk", "recovered", "needs_human"};
const char *const alert_trigger_names[2] = {"event", "expiry"};

/* ------------------------------------------------------------------ */
/* Data                                                                */

/* A bucket, decoded. */
typedef struct bucket {
    int64_t b;                 /* bucket index floor(t / bucket_ms) */
    uint32_t events, contacts, resolved, ai_contacts;
    uint32_t sent_n, loy_n, aht_n;
    int32_t loy_half;          /* loyalty sum times two: every signal is a multiple of 0.5 */
    double sent_sum;
    double aht_sum;
} bucket_t;

/* SPEC §10.1: the route and the rule that chose it. */
typedef enum {
    ROUTE_AI = 0, ROUTE_AT_RISK, ROUTE_NEEDS_HUMAN, ROUTE_STREAK, ROUTE_SENTIMENT
} route_t;
#define ROUTE_COUNT 5
static const char *const route_reason_names[ROUTE_COUNT] = {
    "", "at_risk", "needs_human", "streak", "sentiment"};

/* A customer's body, decoded.  Strings point into the customer's data or
 * into the event being applied. */
typedef struct body {
    uint8_t route;             /* route_t, as of the last re-score */
    bool pending;              /* a needs_human awaits a person (§10.2) */
    bool has_sent;             /* an event with a sentiment was seen */
    int64_t pending_since;     /* when pending: the first needs_human's time */
    int64_t sent_bucket;       /* when has_sent: the latest such event's bucket */
    float last_sent;           /* when has_sent: its sentiment */
    int64_t last_fail_at;      /* when streak > 0 */
    int64_t last_nh_at;        /* when F_HAS_NH */
    int64_t narrative_bucket;  /* when F_NARR */
    const char *narrative;
    uint32_t narrative_len;
    uint32_t nbuckets;
    bucket_t *bk;              /* the window's scratch array */
} body_t;

enum {
    F_AT_RISK = 1,
    F_HAS_SCORE = 2,
    F_HAS_NH = 4,
    F_NARR = 8,     /* the four above are stored in the state blob */
    F_DIRTY = 16,
    F_TOMB = 32,
    F_ERASED = 64,  /* erased since the last commit (SPEC §1.2): its keys go with the erasure */
    F_WRITE_ALL = 128 /* loaded, or evicted since the last commit: what the sink holds of it is
                       * not known, so its next write carries every field */
};
#define F_STORED (F_AT_RISK | F_HAS_SCORE | F_HAS_NH | F_NARR)

typedef struct cust {
    uint32_t wheel_prev, wheel_next; /* slab ids in the wheel slot of its oldest bucket */
    uint32_t eid;              /* 1 + offset of last_event_id in the id arena; 0: none */
    uint32_t streak;
    double last_ci;            /* valid with F_HAS_SCORE */
    int64_t updated_at;
    unsigned char *data;       /* customer_id bytes, then the body encoding */
    uint32_t data_len;
    uint16_t cid_len;
    uint8_t flags;
    uint8_t eid_len;
} cust_t;

#define SLAB_SHIFT 10
#define SLAB_SIZE (1u << SLAB_SHIFT)

#define DATA_GRAIN 8
#define DATA_CLASSES 64            /* cells up to 512 bytes */
#define DATA_PAGE (32u << 10)

typedef struct slot {
    uint32_t tag;              /* low 32 bits of the hash; picks the home slot too */
    uint32_t id;               /* 0: empty */
} slot_t;

typedef struct bytes {
    char *p;
    size_t len, cap;
} bytes_t;

/* A customer's scores (SPEC §3), computed from its body. */
typedef struct scores {
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t contacts, resolved, events;
} scores_t;

/* A changed customer's public fields (SPEC §5) as the sink last wrote them:
 * taken when the customer first changes after a commit, compared with
 * the new ones when the batch is filled (BATCH_CF_* bits).  valid is false
 * when the sink's copy is unknown (a new, loaded or evicted customer). */
typedef struct snap {
    scores_t s;                /* s.ci: the last score as written (last_ci) */
    int64_t updated_at;
    uint32_t streak;
    uint8_t route, at_risk;
    bool valid;
} snap_t;

/* The counters of one history segment `<CHANNEL>:<HANDLER>:<counter>`
 * (SPEC §9.1), the three alert counters in alert_type_t's order.  The
 * segment HIST_EXPIRY holds `EXPIRY:<type>`, its counters indexed by
 * alert type. */
enum {
    HC_EVENTS = 0, HC_CONTACTS, HC_RESOLVED, HC_UNRESOLVED, HC_AHT_N, HC_AHT_SUM,
    HC_SENT_N, HC_SENT_SUM, HC_CI_N, HC_CI_SUM, HC_ALERT, /* + alert type */
    HC_FOLLOWUPS = HC_ALERT + ALERT_TYPE_COUNT, HC_FOLLOWUP_MS, HC_COUNT
};
#define HIST_EXPIRY ((uint32_t)(EVENT_CHANNEL_COUNT * EVENT_HANDLER_COUNT))

/* One segment's deltas in one bucket since the last commit. */
typedef struct hseg {
    int64_t start;             /* S = b * bucket_ms */
    uint32_t seg;              /* channel * EVENT_HANDLER_COUNT + handler, or HIST_EXPIRY */
    uint32_t slot;             /* its slot in hseg_tab */
    uint32_t touched;          /* bit c: counter c was added to */
    int64_t d[HC_COUNT];
} hseg_t;

struct window {
    score_params_t p;
    int32_t partition;
    int64_t watermark;         /* -1: none yet */
    bool watermark_dirty;

    cust_t **slab;             /* chunks of SLAB_SIZE records; id 1 is slab[0][0] */

    /* The customers' strings (id and body): cells of a multiple of
     * DATA_GRAIN bytes carved from DATA_PAGE pages, a free list per size;
     * longer strings are malloc'd. */
    void *data_free[DATA_CLASSES + 1];
    unsigned char *data_bump, *data_end;   /* the rest of the newest page */
    unsigned char **data_pages;
    size_t ndata_pages, data_pages_cap;
    uint32_t nchunks, next_id, free_head;
    size_t live;

    slot_t *table;
    size_t table_mask;         /* capacity - 1, a power of two */
    size_t table_used;

    uint32_t *wheel;           /* window_buckets list heads (slab ids) */

    uint32_t *dirty;           /* changed since the last commit */
    snap_t *snap;              /* snap[i]: dirty[i] as last written */
    size_t ndirty, dirty_cap;

    alert_t *alerts;
    size_t nalerts, alerts_cap;
    bytes_t alert_text;        /* the alerts' strings */
    bytes_t event_ids;         /* last_event_id of changed customers */

    bucket_t *bk;              /* scratch: one customer's buckets */
    uint32_t bk_cap;
    bytes_t enc;               /* scratch: an encoded body or blob */

    /* The thresholds as alert reasons print them ("%g"), formatted once. */
    char risk_g[32], recover_g[32], nh_sentiment_g[32];

    /* History deltas since the last commit (SPEC §9.1): one record per
     * (bucket, segment) touched, found through hseg_tab (1 + the record's
     * index, 0 for empty); hist is their flat export. */
    hseg_t *hsegs;
    size_t nhsegs, hsegs_cap;
    uint32_t *hseg_tab;
    size_t hseg_mask;          /* capacity - 1; 0 before the first record */
    window_hist_delta_t *hist;
    size_t hist_cap;

    /* Org deltas since the last commit (SPEC §9.2), window_org_field_names order. */
    int64_t org[WINDOW_ORG_FIELDS];

    /* Prefetches under way (window_prefetch()): the customers of the next
     * events, each a step further down the chain slot, record, data at
     * each step of window_add(). */
    struct { uint32_t tag, id; uint8_t stage; } pf[WINDOW_PREFETCH_MAX];
    uint32_t npf;

    /* Customers erased since the last commit (SPEC §1.2), in the order of
     * their tombstones: offset and length of each id in erased_text. */
    struct { uint32_t off, len; } *erased;
    size_t nerased, erased_cap;
    bytes_t erased_text;
};

/* Makes room for n more bytes; returns the old base (for rebasing). */
static char *bytes_need(bytes_t *b, size_t n) {
    char *old = b->p;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    return old;
}

static int64_t bucket_of(const window_t *w, int64_t t) { return t / w->p.bucket_ms; }

/* Asks the CPU to fetch the bytes [p, p + n) into its cache. */
static inline void prefetch_range(const void *p, size_t n) {
    const char *q = p;
    __builtin_prefetch(q);
    if (n > 1 && ((uintptr_t)q & 63) + n > 64) __builtin_prefetch(q + n - 1);
}

/* First bucket inside the window when the watermark is at bucket bt. */
static int64_t window_start(const window_t *w, int64_t bt) {
    return bt - w->p.window_buckets + 1;
}

static size_t wheel_slot(const window_t *w, int64_t b) {
    int64_t n = w->p.window_buckets;
    return (size_t)(((b % n) + n) % n);
}

static cust_t *cust_at(const window_t *w, uint32_t id) {
    return &w->slab[(id - 1) >> SLAB_SHIFT][(id - 1) & (SLAB_SIZE - 1)];
}

/* Fetches ahead what a walk over customer ids (the change list, the expired) will touch: the record of
 * the customer 8 on, the data of the one 4 on (its record fetched by now). */
static void prefetch_ids(const window_t *w, const uint32_t *ids, size_t i, size_t n) {
    if (i + 8 < n) prefetch_range(cust_at(w, ids[i + 8]), sizeof(cust_t));
    if (i + 4 < n) {
        const cust_t *c = cust_at(w, ids[i + 4]);
        if (c->data) prefetch_range(c->data, c->data_len);
    }
}


/* ------------------------------------------------------------------ */
/* Body encoding                                                       */
/*
 * Version 4 (this build's; in memory and in the state blob).  Integers
 * are LEB128 varints (signed ones zigzagged), floats 4 bytes and doubles 8
 * little-endian.  Bucket indexes after the first, and times, are stored
 * as differences, which are small: the base is the first bucket b0 (or
 * its start, b0 * bucket_ms, for times in ms; 0 without buckets).
 *   routing: route | pending << 3 | has_sent << 4
 *   nbuckets, [b0 if nbuckets]
 *   [pending_since - base if pending]
 *   [sent_bucket - b0, last_sent if has_sent]
 *   [last_fail_at - base if streak > 0] [last_nh_at - base if F_HAS_NH]
 *   [narrative_bucket - b0, narrative (len, bytes) if F_NARR]
 *   per bucket: [gap to the previous one, after the first], a mask of
 *   what follows (BM_*), events, then the non-zero ones of contacts,
 *   resolved, ai_contacts, sent_n, loy_n, aht_n and loy_half, then
 *   sent_sum (a float when the double is one, most often) and aht_sum
 *   (an integer when the double is one below 2^53, always for valid
 *   events) when their counts are not zero.
 * A typical bucket takes 8-14 bytes (version 3: 13-25).
 *
 * Version 3 (read only, from blobs of earlier builds): routing,
 * [pending_since] [sent_bucket, last_sent] [last_fail_at] [last_nh_at]
 * [narrative_bucket, len, bytes], all absolute, then nbuckets and per
 * bucket b (first absolute, then the gap), events, contacts, resolved,
 * ai_contacts, sent_n, loy_n, aht_n, loy_half, [sent_sum] [aht_sum] as
 * doubles.
 */

enum {
    BM_CONTACTS = 1, BM_RESOLVED = 2, BM_AI = 4, BM_SENT_N = 8, BM_LOY_N = 16, BM_AHT_N = 32,
    BM_LOY_HALF = 64,
    BM_SENT_F64 = 128,   /* sent_sum as a double (else a float) */
    BM_AHT_F64 = 256     /* aht_sum as a double (else an integer) */
};

/* The most bytes body_encode() writes for y. */
static size_t body_bound(const body_t *y) {
    /* routing, nbuckets, b0, five times or bucket offsets, a float, the
     * narrative; per bucket a gap, a mask, seven counters of at most 5
     * bytes and 8 + 8 of sums */
    return 1 + 10 + 10 + 5 * 10 + 4 + 10 + y->narrative_len + (size_t)y->nbuckets * 69;
}

static inline unsigned char *wr_u64(unsigned char *q, uint64_t v) {
    while (v >= 0x80) {
        *q++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *q++ = (unsigned char)v;
    return q;
}

static inline uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static inline unsigned char *wr_i64(unsigned char *q, int64_t v) { return wr_u64(q, zigzag(v)); }

static inline unsigned char *wr_f64(unsigned char *q, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++) q[i] = (unsigned char)(u >> (8 * i));
    return q + 8;
}

static inline unsigned char *wr_f32(unsigned char *q, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++) q[i] = (unsigned char)(u >> (8 * i));
    return q + 4;
}

/* a - b for times an encoder stores as differences: wraps rather than
 * overflows (a decoder adds it back the same way). */
static inline int64_t tdiff(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }

/* Encodes y at q, which has body_bound(y) bytes; returns the end. */
static unsigned char *body_encode(const window_t *w, unsigned char *q, uint32_t streak,
                                  uint8_t flags, const body_t *y) {
    *q++ = (unsigned char)(y->route | y->pending << 3 | y->has_sent << 4);
    q = wr_u64(q, y->nbuckets);
    int64_t b0 = y->nbuckets ? y->bk[0].b : 0, base = b0 * w->p.bucket_ms;
    if (y->nbuckets) q = wr_i64(q, b0);
    if (y->pending) q = wr_i64(q, tdiff(y->pending_since, base));
    if (y->has_sent) {
        q = wr_i64(q, tdiff(y->sent_bucket, b0));
        q = wr_f32(q, y->last_sent);
    }
    if (streak) q = wr_i64(q, tdiff(y->last_fail_at, base));
    if (flags & F_HAS_NH) q = wr_i64(q, tdiff(y->last_nh_at, base));
    if (flags & F_NARR) {
        q = wr_i64(q, tdiff(y->narrative_bucket, b0));
        q = wr_u64(q, y->narrative_len);
        memcpy(q, y->narrative, y->narrative_len);
        q += y->narrative_len;
    }
    int64_t prev = b0;
    for (uint32_t i = 0; i < y->nbuckets; i++) {
        const bucket_t *k = &y->bk[i];
        if (i) q = wr_u64(q, (uint64_t)(k->b - prev));
        prev = k->b;
        unsigned m = (k->contacts ? BM_CONTACTS : 0) | (k->resolved ? BM_RESOLVED : 0) |
                     (k->ai_contacts ? BM_AI : 0) | (k->sent_n ? BM_SENT_N : 0) |
                     (k->loy_n ? BM_LOY_N : 0) | (k->aht_n ? BM_AHT_N : 0) |
                     (k->loy_half ? BM_LOY_HALF : 0);
        if (k->sent_n && (double)(float)k->sent_sum != k->sent_sum) m |= BM_SENT_F64;
        if (k->aht_n && !(k->aht_sum >= 0 && k->aht_sum < 9007199254740992.0 &&
                          !signbit(k->aht_sum) && k->aht_sum == floor(k->aht_sum)))
            m |= BM_AHT_F64;
        q = wr_u64(q, m);
        q = wr_u64(q, k->events);
        if (k->contacts) q = wr_u64(q, k->contacts);
        if (k->resolved) q = wr_u64(q, k->resolved);
        if (k->ai_contacts) q = wr_u64(q, k->ai_contacts);
        if (k->sent_n) q = wr_u64(q, k->sent_n);
        if (k->loy_n) q = wr_u64(q, k->loy_n);
        if (k->aht_n) q = wr_u64(q, k->aht_n);
        if (k->loy_half) q = wr_i64(q, k->loy_half);
        if (k->sent_n) q = (m & BM_SENT_F64) ? wr_f64(q, k->sent_sum) : wr_f32(q, (float)k->sent_sum);
        if (k->aht_n) q = (m & BM_AHT_F64) ? wr_f64(q, k->aht_sum) : wr_u64(q, (uint64_t)k->aht_sum);
    }
    return q;
}

static void put_u64(bytes_t *o, uint64_t v) {
    bytes_need(o, 10);
    o->len = (size_t)((char *)wr_u64((unsigned char *)o->p + o->len, v) - o->p);
}

static void put_i64(bytes_t *o, int64_t v) { put_u64(o, zigzag(v)); }

static void put_raw(bytes_t *o, const void *s, size_t n) {
    bytes_need(o, n);
    if (n) memcpy(o->p + o->len, s, n);
    o->len += n;
}

typedef struct rd {
    const unsigned char *p, *end;
    bool bad;
} rd_t;

static uint64_t get_u64_slow(rd_t *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        unsigned char byte = *r->p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

static inline uint64_t get_u64(rd_t *r) {
    if (r->p < r->end && *r->p < 0x80) return *r->p++;
    return get_u64_slow(r);
}

static inline int64_t get_i64(rd_t *r) {
    uint64_t u = get_u64(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static inline uint32_t get_u32(rd_t *r) {
    uint64_t v = get_u64(r);
    if (v > UINT32_MAX) r->bad = true;
    return (uint32_t)v;
}

static double get_f64(rd_t *r) {
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

static float get_f32(rd_t *r) {
    if (r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t u = 0;
    for (int i = 0; i < 4; i++) u |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* base + a stored difference (wrapping, as tdiff() made it). */
static inline int64_t tadd(int64_t base, int64_t d) { return (int64_t)((uint64_t)base + (uint64_t)d); }

static void bk_reserve(window_t *w, uint32_t n) {
    if (n <= w->bk_cap) return;
    uint32_t cap = w->bk_cap ? w->bk_cap : 8;
    while (cap < n) cap *= 2;
    w->bk = xrealloc(w->bk, cap * sizeof(bucket_t));
    w->bk_cap = cap;
}

/* The routing byte, common to versions 3 and 4. */
static int body_routing(rd_t *r, body_t *y) {
    uint64_t routing = get_u64(r);
    if (r->bad || (routing & 7) >= ROUTE_COUNT || routing >> 5) return -1;
    y->route = (uint8_t)(routing & 7);
    y->pending = (routing >> 3) & 1;
    y->has_sent = (routing >> 4) & 1;
    return 0;
}

/* The narrative's length and bytes. */
static int body_narrative(rd_t *r, body_t *y) {
    uint64_t n = get_u64(r);
    if (r->bad || n == 0 || n > ALERT_NARRATIVE_MAX || n > (uint64_t)(r->end - r->p)) return -1;
    y->narrative = (const char *)r->p;
    y->narrative_len = (uint32_t)n;
    r->p += n;
    return 0;
}

/* Decodes a version 4 body into y (buckets into w->bk).  With check, the
 * body may come from Redis: every value is checked, and a body that a
 * window would not have written is refused (-1).  Without, it is one the
 * window encoded itself, and only the reads stay bounded. */
static inline __attribute__((always_inline)) int
body_decode_v4(window_t *w, const unsigned char *p, size_t len, uint32_t streak, uint8_t flags,
               body_t *y, bool check) {
    rd_t r = {p, p + len, false};
    memset(y, 0, sizeof(*y));
    if (body_routing(&r, y) != 0) return -1;
    uint64_t nb = get_u64(&r);
    if (check && (r.bad || nb > (uint64_t)w->p.window_buckets)) return -1;
    int64_t b0 = nb ? get_i64(&r) : 0;
    if (check && (b0 < 0 || b0 > INT64_MAX / w->p.bucket_ms)) return -1;
    int64_t base = b0 * w->p.bucket_ms;
    if (y->pending) y->pending_since = tadd(base, get_i64(&r));
    if (y->has_sent) {
        y->sent_bucket = tadd(b0, get_i64(&r));
        y->last_sent = get_f32(&r);
        if (check && !(y->last_sent >= -1.0f && y->last_sent <= 1.0f)) return -1;
    }
    if (streak) y->last_fail_at = tadd(base, get_i64(&r));
    if (flags & F_HAS_NH) y->last_nh_at = tadd(base, get_i64(&r));
    if (flags & F_NARR) {
        y->narrative_bucket = tadd(b0, get_i64(&r));
        if (body_narrative(&r, y) != 0) return -1;
    }
    bk_reserve(w, (uint32_t)nb + 1);
    y->bk = w->bk;
    y->nbuckets = (uint32_t)nb;
    int64_t prev = b0;
    for (uint32_t i = 0; i < nb && !r.bad; i++) {
        bucket_t *k = &y->bk[i];
        if (i) {
            uint64_t gap = get_u64(&r);
            if (check && (gap == 0 || gap > (uint64_t)(INT64_MAX - prev))) {
                r.bad = true;
                break;
            }
            prev += (int64_t)gap;
        }
        k->b = prev;
        uint64_t m = get_u64(&r);
        if (check && (m >> 9 || ((m & BM_SENT_F64) && !(m & BM_SENT_N)) ||
                      ((m & BM_AHT_F64) && !(m & BM_AHT_N))))
            r.bad = true;
        k->events = get_u32(&r);
        k->contacts = (m & BM_CONTACTS) ? get_u32(&r) : 0;
        k->resolved = (m & BM_RESOLVED) ? get_u32(&r) : 0;
        k->ai_contacts = (m & BM_AI) ? get_u32(&r) : 0;
        k->sent_n = (m & BM_SENT_N) ? get_u32(&r) : 0;
        k->loy_n = (m & BM_LOY_N) ? get_u32(&r) : 0;
        k->aht_n = (m & BM_AHT_N) ? get_u32(&r) : 0;
        int64_t lh = (m & BM_LOY_HALF) ? get_i64(&r) : 0;
        k->loy_half = (int32_t)lh;
        /* a flagged count of zero is not canonical: refused */
        if (check && (lh < INT32_MIN || lh > INT32_MAX || ((m & BM_CONTACTS) && !k->contacts) ||
                      ((m & BM_RESOLVED) && !k->resolved) || ((m & BM_AI) && !k->ai_contacts) ||
                      ((m & BM_SENT_N) && !k->sent_n) || ((m & BM_LOY_N) && !k->loy_n) ||
                      ((m & BM_AHT_N) && !k->aht_n) || ((m & BM_LOY_HALF) && !k->loy_half)))
            r.bad = true;
        if (k->sent_n)
            k->sent_sum = (m & BM_SENT_F64) ? get_f64(&r) : (double)get_f32(&r);
        if (k->aht_n)
            k->aht_sum = (m & BM_AHT_F64) ? get_f64(&r) : (double)get_u64(&r);
        else
            k->aht_sum = 0;
        if (!k->sent_n) k->sent_sum = 0;
    }
    return (r.bad || r.p != r.end) ? -1 : 0;
}

/* A version 4 body from outside (a state blob). */
static int body_decode(window_t *w, const unsigned char *p, size_t len, uint32_t streak,
                       uint8_t flags, body_t *y) {
    return body_decode_v4(w, p, len, streak, flags, y, true);
}

/* Decodes a version 3 body (a blob of an earlier build) into y. */
static int body_decode_v3(window_t *w, const unsigned char *p, size_t len, uint32_t streak,
                          uint8_t flags, body_t *y) {
    rd_t r = {p, p + len, false};
    memset(y, 0, sizeof(*y));
    if (body_routing(&r, y) != 0) return -1;
    if (y->pending) y->pending_since = get_i64(&r);
    if (y->has_sent) {
        y->sent_bucket = get_i64(&r);
        y->last_sent = get_f32(&r);
        if (!(y->last_sent >= -1.0f && y->last_sent <= 1.0f)) return -1;
    }
    if (streak) y->last_fail_at = get_i64(&r);
    if (flags & F_HAS_NH) y->last_nh_at = get_i64(&r);
    if (flags & F_NARR) {
        y->narrative_bucket = get_i64(&r);
        if (body_narrative(&r, y) != 0) return -1;
    }
    uint64_t nb = get_u64(&r);
    if (r.bad || nb > (uint64_t)w->p.window_buckets) return -1;
    bk_reserve(w, (uint32_t)nb + 1);
    y->bk = w->bk;
    y->nbuckets = (uint32_t)nb;
    int64_t prev = 0;
    for (uint32_t i = 0; i < nb && !r.bad; i++) {
        bucket_t *k = &y->bk[i];
        if (i == 0) {
            k->b = get_i64(&r);
        } else {
            uint64_t gap = get_u64(&r);
            if (gap == 0 || gap > (uint64_t)INT64_MAX - (uint64_t)(prev < 0 ? 0 : prev)) {
                r.bad = true;
                break;
            }
            k->b = prev + (int64_t)gap;
        }
        prev = k->b;
        k->events = get_u32(&r);
        k->contacts = get_u32(&r);
        k->resolved = get_u32(&r);
        k->ai_contacts = get_u32(&r);
        k->sent_n = get_u32(&r);
        k->loy_n = get_u32(&r);
        k->aht_n = get_u32(&r);
        int64_t lh = get_i64(&r);
        if (lh < INT32_MIN || lh > INT32_MAX) r.bad = true;
        k->loy_half = (int32_t)lh;
        k->sent_sum = k->sent_n ? get_f64(&r) : 0;
        k->aht_sum = k->aht_n ? get_f64(&r) : 0;
    }
    return (r.bad || r.p != r.end) ? -1 : 0;
}

/* The customer's body, decoded (trusted: we encoded it). */
static void cust_body(window_t *w, const cust_t *c, body_t *y) {
    if (c->data_len == c->cid_len) { /* new: nothing yet */
        memset(y, 0, sizeof(*y));
        y->bk = w->bk;
        return;
    }
    int rc = body_decode_v4(w, c->data + c->cid_len, c->data_len - c->cid_len, c->streak,
                            c->flags, y, false);
    assert(rc == 0);
    (void)rc;
}

/* ------------------------------------------------------------------ */
/* Customer strings                                                    */
/*
 * A customer's id and body are one string of len bytes in a cell of
 * data_class(len) * DATA_GRAIN bytes, so that a body that grows or shrinks
 * within its cell stays where it is, and a cell costs no malloc header:
 * about 12 bytes a customer less than malloc's 16-byte chunks with their
 * 8-byte header, and no malloc call for most changes of size.  Freed cells
 * go to their size's free list, for the next string of that size; pages
 * go back only with the window (like the record slab).  Strings longer
 * than DATA_CLASSES cells (a long narrative and many buckets) are malloc'd.
 */

static uint32_t data_class(uint32_t len) { return (len + DATA_GRAIN - 1) / DATA_GRAIN; }

static void data_free(window_t *w, unsigned char *p, uint32_t len) {
    if (!p) return;
    uint32_t k = data_class(len);
    if (k > DATA_CLASSES) {
        free(p);
        return;
    }
    memcpy(p, &w->data_free[k], sizeof(void *));
    w->data_free[k] = p;
}

static unsigned char *data_alloc(window_t *w, uint32_t len) {
    uint32_t k = data_class(len);
    if (k > DATA_CLASSES) return xmalloc((size_t)k * DATA_GRAIN); /* the whole step too */
    if (k == 0) k = 1;
    unsigned char *p = w->data_free[k];
    if (p) {
        memcpy(&w->data_free[k], p, sizeof(void *));
        return p;
    }
    size_t size = (size_t)k * DATA_GRAIN;
    if ((size_t)(w->data_end - w->data_bump) < size) {
        /* the page's tail becomes a free cell of its own size */
        size_t rest = (size_t)(w->data_end - w->data_bump);
        if (rest >= DATA_GRAIN) data_free(w, w->data_bump, (uint32_t)rest);
        if (w->ndata_pages == w->data_pages_cap) {
            w->data_pages_cap = w->data_pages_cap ? 2 * w->data_pages_cap : 16;
            w->data_pages = xrealloc(w->data_pages, w->data_pages_cap * sizeof(*w->data_pages));
        }
        w->data_bump = w->data_pages[w->ndata_pages++] = xmalloc(DATA_PAGE);
        w->data_end = w->data_bump + DATA_PAGE;
    }
    p = w->data_bump;
    w->data_bump += size;
    return p;
}

/* The string p of old bytes as one of len bytes: the same cell when it
 * fits its size, else a new one holding the first keep bytes. */
static unsigned char *data_resize(window_t *w, unsigned char *p, uint32_t old, uint32_t len,
                                  uint32_t keep) {
    if (p && data_class(old) == data_class(len)) return p;
    unsigned char *q = data_alloc(w, len);
    if (p) memcpy(q, p, keep);
    data_free(w, p, old);
    return q;
}

/* Stores y as the customer's body. */
static void cust_store(window_t *w, cust_t *c, const body_t *y) {
    size_t bound = body_bound(y);
    if (w->enc.cap < bound) {
        w->enc.len = 0;
        bytes_need(&w->enc, bound);
    }
    unsigned char *start = (unsigned char *)w->enc.p;
    size_t n = (size_t)(body_encode(w, start, c->streak, c->flags, y) - start);
    assert(n <= bound);
    uint32_t len = c->cid_len + (uint32_t)n;
    c->data = data_resize(w, c->data, c->data_len, len, c->cid_len);
    c->data_len = len;
    memcpy(c->data + c->cid_len, start, n);
}

/* ------------------------------------------------------------------ */
/* Table                                                               */

static uint64_t hash_bytes(const char *s, size_t n) {
    /* Eight bytes at a time, each word mixed in with a multiply, then
     * MurmurHash3's finalizer, so that linear probing spreads well.  The
     * hash lives only in memory: it may change between builds. */
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static slot_t *table_find(const window_t *w, const char *cid, size_t len, uint32_t tag) {
    for (size_t i = tag & w->table_mask;; i = (i + 1) & w->table_mask) {
        slot_t *s = &w->table[i];
        if (!s->id) return s;
        if (s->tag == tag) {
            const cust_t *c = cust_at(w, s->id);
            if (c->cid_len == len && memcmp(c->data, cid, len) == 0) return s;
        }
    }
}

static void table_grow(window_t *w) {
    size_t oldcap = w->table_mask + 1, newcap = oldcap * 2;
    slot_t *old = w->table;
    w->table = xcalloc(newcap, sizeof(slot_t));
    w->table_mask = newcap - 1;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].id) continue;
        size_t j = old[i].tag & w->table_mask;
        while (w->table[j].id) j = (j + 1) & w->table_mask;
        w->table[j] = old[i];
    }
    free(old);
}

/* Removes the slot's entry, shifting later entries of its cluster back. */
static void table_remove(window_t *w, slot_t *s) {
    size_t i = (size_t)(s - w->table);
    for (;;) {
        w->table[i].id = 0;
        size_t j = i;
        for (;;) {
            j = (j + 1) & w->table_mask;
            if (!w->table[j].id) {
                w->table_used--;
                return;
            }
            size_t home = w->table[j].tag & w->table_mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        w->table[i] = w->table[j];
        i = j;
    }
}

/* ------------------------------------------------------------------ */
/* Slab                                                                */

static uint32_t slab_alloc(window_t *w) {
    uint32_t id;
    if (w->free_head) {
        id = w->free_head;
        w->free_head = cust_at(w, id)->wheel_next;
    } else {
        id = ++w->next_id;
        if (((id - 1) >> SLAB_SHIFT) >= w->nchunks) {
            w->slab = xrealloc(w->slab, (w->nchunks + 1) * sizeof(cust_t *));
            w->slab[w->nchunks] = xcalloc(SLAB_SIZE, sizeof(cust_t));
            w->nchunks++;
        }
    }
    memset(cust_at(w, id), 0, sizeof(cust_t));
    return id;
}

static void slab_free(window_t *w, uint32_t id) {
    cust_t *c = cust_at(w, id);
    data_free(w, c->data, c->data_len);
    memset(c, 0, sizeof(*c));
    c->wheel_next = w->free_head;
    w->free_head = id;
}

/* ------------------------------------------------------------------ */
/* Wheel                                                               */

static void wheel_unlink(window_t *w, uint32_t id, int64_t oldest) {
    cust_t *c = cust_at(w, id);
    if (c->wheel_prev)
        cust_at(w, c->wheel_prev)->wheel_next = c->wheel_next;
    else
        w->wheel[wheel_slot(w, oldest)] = c->wheel_next;
    if (c->wheel_next) cust_at(w, c->wheel_next)->wheel_prev = c->wheel_prev;
    c->wheel_prev = c->wheel_next = 0;
}

static void wheel_link(window_t *w, uint32_t id, int64_t oldest) {
    cust_t *c = cust_at(w, id);
    uint32_t *head = &w->wheel[wheel_slot(w, oldest)];
    c->wheel_prev = 0;
    c->wheel_next = *head;
    if (*head) cust_at(w, *head)->wheel_prev = id;
    *head = id;
}

/* ------------------------------------------------------------------ */
/* Customers                                                           */

static void body_score(const window_t *w, uint32_t streak, const body_t *y, scores_t *s);

/* Adds the customer to the change list, unless it is on it.  before is its
 * body before the change (NULL for an eviction): while the customer holds
 * what was last written, its public fields are kept for the comparison
 * that makes the changed mask. */
static void mark_dirty(window_t *w, uint32_t id, const body_t *before) {
    cust_t *c = cust_at(w, id);
    if (c->flags & F_DIRTY) return;
    if (w->ndirty == w->dirty_cap) {
        w->dirty_cap = w->dirty_cap ? w->dirty_cap * 2 : 64;
        w->dirty = xrealloc(w->dirty, w->dirty_cap * sizeof(*w->dirty));
        w->snap = xrealloc(w->snap, w->dirty_cap * sizeof(*w->snap));
    }
    snap_t *sn = &w->snap[w->ndirty];
    w->dirty[w->ndirty++] = id;
    c->flags |= F_DIRTY;
    sn->valid = before && (c->flags & (F_HAS_SCORE | F_WRITE_ALL | F_TOMB)) == F_HAS_SCORE;
    if (!sn->valid) return;
    body_score(w, c->streak, before, &sn->s);
    sn->s.ci = c->last_ci;
    sn->updated_at = c->updated_at;
    sn->streak = c->streak;
    sn->route = before->route;
    sn->at_risk = (c->flags & F_AT_RISK) != 0;
}

/* Forgets everything but the id bytes and the dirty mark. */
static void cust_clear(window_t *w, cust_t *c) {
    c->streak = 0;
    c->last_ci = 0;
    c->updated_at = 0;
    c->eid = 0;
    c->eid_len = 0;
    c->flags &= F_DIRTY;
    c->data = data_resize(w, c->data, c->data_len, c->cid_len, c->cid_len);
    c->data_len = c->cid_len;
}

/* Finds the customer, creating it (or reviving its tombstone) when absent. */
static uint32_t cust_get(window_t *w, strview_t id) {
    uint32_t tag = (uint32_t)hash_bytes(id.ptr, id.len);
    slot_t *s = table_find(w, id.ptr, id.len, tag);
    if (s->id) {
        cust_t *c = cust_at(w, s->id);
        if (c->flags & F_TOMB) {
            c->flags &= (uint8_t)~F_TOMB;
            w->live++;
        }
        return s->id;
    }
    assert(id.len <= EVENT_CUSTOMER_ID_MAX);
    uint32_t cid = slab_alloc(w);
    cust_t *c = cust_at(w, cid);
    c->data = data_alloc(w, (uint32_t)id.len);
    memcpy(c->data, id.ptr, id.len);
    c->data_len = c->cid_len = (uint16_t)id.len;
    c->flags = 0;
    s->tag = tag;
    s->id = cid;
    w->table_used++;
    w->live++;
    if (w->table_used * 4 > (w->table_mask + 1) * 3) table_grow(w);
    return cid;
}

static uint32_t cust_lookup(const window_t *w, strview_t id) {
    slot_t *s = table_find(w, id.ptr, id.len, (uint32_t)hash_bytes(id.ptr, id.len));
    return (s->id && !(cust_at(w, s->id)->flags & F_TOMB)) ? s->id : 0;
}

static void org_add(window_t *w, int64_t sign, double ci, bool at_risk, bool route_human);

/* Evicts: the customer's state is forgotten (a pending follow-up ends with
 * none); it stays as a tombstone until the commit so that the sink deletes
 * its keys.  Not in the wheel.  y is its body, for its route. */
static void cust_evict(window_t *w, uint32_t id, const body_t *y) {
    cust_t *c = cust_at(w, id);
    if (c->flags & F_HAS_SCORE)
        org_add(w, -1, c->last_ci, (c->flags & F_AT_RISK) != 0, y->route != ROUTE_AI);
    cust_clear(w, c);
    c->flags |= F_TOMB | F_WRITE_ALL;
    w->live--;
    mark_dirty(w, id, NULL);
}

/* Returns y's bucket b, inserting it in order when absent. */
static bucket_t *body_bucket(window_t *w, body_t *y, int64_t b) {
    uint32_t i = y->nbuckets;
    while (i > 0 && y->bk[i - 1].b > b) i--;
    if (i > 0 && y->bk[i - 1].b == b) return &y->bk[i - 1];
    bk_reserve(w, y->nbuckets + 1);
    y->bk = w->bk;
    memmove(&y->bk[i + 1], &y->bk[i], (y->nbuckets - i) * sizeof(bucket_t));
    y->nbuckets++;
    memset(&y->bk[i], 0, sizeof(bucket_t));
    y->bk[i].b = b;
    return &y->bk[i];
}

/* ------------------------------------------------------------------ */
/* Scoring (SPEC §3)                                                   */

static void body_score(const window_t *w, uint32_t streak, const body_t *y, scores_t *s) {
    const score_params_t *p = &w->p;
    double ssum = 0, aht_sum = 0;
    int64_t contacts = 0, resolved = 0, ai = 0, events = 0, sn = 0, ln = 0, aht_n = 0, lhalf = 0;
    for (uint32_t i = 0; i < y->nbuckets; i++) {
        const bucket_t *b = &y->bk[i];
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
    uint32_t st = streak < (uint32_t)p->streak_cap ? streak : (uint32_t)p->streak_cap;
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
/* History and organisation deltas (SPEC §9)                           */

/* C(x): the %.4f text of x without its decimal point, as an integer
 * (31.6000 -> 316000).  A ci is finite in [0, 100]; a non-finite value
 * (which no valid configuration produces) counts as 0. */
static int64_t c4(double x) {
    /* Fast path: below 2^32 the product is within 2^-21 of x * 10^4, so
     * unless its fraction is within 1e-6 of a half, the nearest integer is
     * the one %.4f rounds to.  Near a half, format (the exact answer). */
    double p = x * 10000.0;
    if (p > -4294967296.0 && p < 4294967296.0 && fabs(p - floor(p) - 0.5) > 1e-6) {
        /* llround without the libm call: p - r is exact (Sterbenz) */
        int64_t r = (int64_t)p;
        double f = p - (double)r;
        return r + (f > 0.5) - (f < -0.5);
    }
    char buf[NUMFMT_MAX];
    fmt_f4(buf, x);
    int64_t v = 0;
    bool neg = buf[0] == '-';
    for (const char *q = buf + neg; *q; q++) {
        if (*q == '.') continue;
        if (*q < '0' || *q > '9' || v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*q - '0');
    }
    return neg ? -v : v;
}

static const char *const hc_names[HC_COUNT] = {
    "events", "contacts", "resolved", "unresolved", "aht_n", "aht_sum", "sent_n", "sent_sum",
    "ci_n", "ci_sum", "churn_risk", "recovered", "needs_human", "followups", "followup_ms"};

const char *const window_org_field_names[WINDOW_ORG_FIELDS] = {
    "customers", "at_risk", "route_human", "ci_sum", "ci_bin:0", "ci_bin:1", "ci_bin:2",
    "ci_bin:3", "ci_bin:4", "ci_bin:5", "ci_bin:6", "ci_bin:7", "ci_bin:8", "ci_bin:9"};

static void hist_field_name(uint32_t seg, uint32_t counter, char *out) {
    if (seg == HIST_EXPIRY) {
        stpcpy(stpcpy(out, "EXPIRY:"), alert_type_names[counter]);
        return;
    }
    char *q = stpcpy(out, event_channel_names[seg / EVENT_HANDLER_COUNT]);
    *q++ = ':';
    q = stpcpy(q, event_handler_names[seg % EVENT_HANDLER_COUNT]);
    *q++ = ':';
    stpcpy(q, hc_names[counter]);
}

/* e's segment. */
static uint32_t hist_segment(const event_t *e) {
    return (uint32_t)e->channel * EVENT_HANDLER_COUNT + (uint32_t)e->handled_by;
}

static size_t hist_home(const window_t *w, int64_t start, uint32_t seg) {
    uint64_t h = (uint64_t)start * 0x9E3779B97F4A7C15ULL ^ (uint64_t)seg * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 32;
    return (size_t)h & w->hseg_mask;
}

/* Doubles the map (or creates it) and re-inserts every record. */
static void hist_grow(window_t *w) {
    size_t cap = w->hseg_mask ? 2 * (w->hseg_mask + 1) : 64;
    free(w->hseg_tab);
    w->hseg_tab = xcalloc(cap, sizeof(*w->hseg_tab));
    w->hseg_mask = cap - 1;
    for (size_t i = 0; i < w->nhsegs; i++) {
        size_t j = hist_home(w, w->hsegs[i].start, w->hsegs[i].seg);
        while (w->hseg_tab[j]) j = (j + 1) & w->hseg_mask;
        w->hseg_tab[j] = (uint32_t)i + 1;
        w->hsegs[i].slot = (uint32_t)j;
    }
}

/* The deltas of segment seg in bucket b, created empty when absent.  Valid
 * until the next hist_seg(). */
static hseg_t *hist_seg(window_t *w, int64_t b, uint32_t seg) {
    int64_t start = b * w->p.bucket_ms;   /* <= occurred_at: no overflow */
    if ((w->nhsegs + 1) * 2 > w->hseg_mask + 1) hist_grow(w);
    size_t j = hist_home(w, start, seg);
    for (; w->hseg_tab[j]; j = (j + 1) & w->hseg_mask) {
        hseg_t *h = &w->hsegs[w->hseg_tab[j] - 1];
        if (h->start == start && h->seg == seg) return h;
    }
    if (w->nhsegs == w->hsegs_cap) {
        w->hsegs_cap = w->hsegs_cap ? 2 * w->hsegs_cap : 16;
        w->hsegs = xrealloc(w->hsegs, w->hsegs_cap * sizeof(*w->hsegs));
    }
    hseg_t *h = &w->hsegs[w->nhsegs];
    memset(h, 0, sizeof(*h));
    h->start = start;
    h->seg = seg;
    h->slot = (uint32_t)j;
    w->hseg_tab[j] = (uint32_t)++w->nhsegs;
    return h;
}

/* Adds v to one counter, saturating (only an aht_sum or followup_ms of
 * huge values can reach the limits). */
static void hist_bump(hseg_t *h, uint32_t counter, int64_t v) {
    h->touched |= 1u << counter;
    if (__builtin_add_overflow(h->d[counter], v, &h->d[counter]))
        h->d[counter] = v > 0 ? INT64_MAX : INT64_MIN;
}

/* SPEC §9.1 for event e in bucket b, after its re-score (ci), but for its
 * alerts (counted by cust_rescore) and follow-up (window_add). */
static void hist_event(window_t *w, const event_t *e, int64_t b, double ci) {
    hseg_t *h = hist_seg(w, b, hist_segment(e));
    hist_bump(h, HC_EVENTS, 1);
    if (e->kind == KIND_CONTACT) {
        hist_bump(h, HC_CONTACTS, 1);
        if (e->resolved == TRI_TRUE) hist_bump(h, HC_RESOLVED, 1);
        if (e->resolved == TRI_FALSE) hist_bump(h, HC_UNRESOLVED, 1);
        if (e->has_handle_time) {
            hist_bump(h, HC_AHT_N, 1);
            hist_bump(h, HC_AHT_SUM, e->handle_time_ms);
        }
        hist_bump(h, HC_CI_N, 1);
        hist_bump(h, HC_CI_SUM, c4(ci));
    }
    if (e->has_sentiment) {
        hist_bump(h, HC_SENT_N, 1);
        /* exact: a float times 10^4 fits a double; llround rounds a half
         * away from zero */
        hist_bump(h, HC_SENT_SUM, (int64_t)llround(10000.0 * (double)e->sentiment));
    }
}

/* Adds sign times a customer's contribution to the organisation (SPEC
 * §9.2): ci is the score as written, so its bin is read off C(ci). */
static void org_add(window_t *w, int64_t sign, double ci, bool at_risk, bool route_human) {
    int64_t c = c4(ci);
    int64_t bin = c / 100000;  /* [10k, 10k + 10) is C in [k * 100000, (k + 1) * 100000) */
    if (bin > 9) bin = 9;      /* 100 counts in bin 9 */
    if (bin < 0) bin = 0;
    w->org[0] += sign;
    w->org[1] += at_risk ? sign : 0;
    w->org[2] += route_human ? sign : 0;
    w->org[3] += sign * c;
    w->org[4 + bin] += sign;
}

/* ------------------------------------------------------------------ */
/* Alerts (SPEC §4)                                                    */

static alert_t *alert_push(window_t *w, alert_type_t type, alert_trigger_t trigger,
                           const cust_t *c, const body_t *y, double ci, bool has_prev,
                           double prev, strview_t event_id, int64_t occurred_at, int64_t offset) {
    if (w->nalerts == w->alerts_cap) {
        w->alerts_cap = w->alerts_cap ? w->alerts_cap * 2 : 16;
        w->alerts = xrealloc(w->alerts, w->alerts_cap * sizeof(alert_t));
    }
    /* The narrative: the latest non-empty feedback_text, unless its bucket
     * has left the window. */
    size_t narr_len = 0;
    if ((c->flags & F_NARR) &&
        y->narrative_bucket >= window_start(w, bucket_of(w, w->watermark)))
        narr_len = y->narrative_len;
    /* The alert's strings live in one arena; when it moves, the earlier
     * alerts' views move with it. */
    size_t total = c->cid_len + event_id.len + narr_len;
    char *old = bytes_need(&w->alert_text, total);
    if (old && old != w->alert_text.p) {
        for (size_t i = 0; i < w->nalerts; i++) {
            alert_t *a = &w->alerts[i];
            a->customer_id.ptr = w->alert_text.p + (a->customer_id.ptr - old);
            a->event_id.ptr = w->alert_text.p + (a->event_id.ptr - old);
            a->narrative.ptr = w->alert_text.p + (a->narrative.ptr - old);
        }
    }
    char *base = w->alert_text.p + w->alert_text.len;
    memcpy(base, c->data, c->cid_len);
    if (event_id.len) memcpy(base + c->cid_len, event_id.ptr, event_id.len);
    if (narr_len) memcpy(base + c->cid_len + event_id.len, y->narrative, narr_len);
    w->alert_text.len += total;

    alert_t *a = &w->alerts[w->nalerts++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->trigger = trigger;
    a->customer_id = (strview_t){base, c->cid_len};
    a->event_id = (strview_t){base + c->cid_len, event_id.len};
    a->narrative = (strview_t){base + c->cid_len + event_id.len, narr_len};
    a->score = ci;
    a->has_previous = has_prev;
    a->previous_score = prev;
    a->occurred_at = occurred_at;
    a->partition = w->partition;
    a->offset = offset;
    return a;
}

/* Re-scores customer id (whose body is y) and raises churn_risk /
 * recovered, and for an event trigger needs_human (SPEC §4).  e is NULL
 * for expiry.  May change the customer's needs_human fields in y and its
 * flags; the caller stores the body afterwards. */
static void cust_rescore(window_t *w, uint32_t id, body_t *y, const event_t *e, int64_t offset) {
    const score_params_t *p = &w->p;
    cust_t *c = cust_at(w, id);
    scores_t s;
    body_score(w, c->streak, y, &s);
    bool has_prev = (c->flags & F_HAS_SCORE) != 0;
    double prev = c->last_ci;
    alert_trigger_t trig = e ? TRIGGER_EVENT : TRIGGER_EXPIRY;
    strview_t eid = e ? e->event_id : (strview_t){NULL, 0};
    int64_t at = e ? e->occurred_at : w->watermark;
    alert_t *a;
    size_t first_alert = w->nalerts;
    bool was_at_risk = (c->flags & F_AT_RISK) != 0, was_human = y->route != ROUTE_AI;

    /* The reasons are built by appending, not with snprintf: a quarter of
     * the events raise an alert, and printf's "%.2f" was most of the
     * scorer's cost (common/numfmt.c writes the same text).  Each is well
     * under the 200 bytes of alert_t.reason. */
    char num[NUMFMT_MAX];
    if (!(c->flags & F_AT_RISK) && below(s.ci, p->risk_threshold)) {
        c->flags |= F_AT_RISK;
        a = alert_push(w, ALERT_CHURN_RISK, trig, c, y, s.ci, has_prev, prev, eid, at, offset);
        fmt_f2(num, s.ci);
        char *r = stpcpy(stpcpy(stpcpy(stpcpy(a->reason, "connection index fell to "), num),
                                ", below "),
                         w->risk_g);
        if (!e)
            stpcpy(r, ", as older events left the window");
        else if (c->streak)
            stpcpy(r, " after repeated unresolved AI contacts");
    }
    if ((c->flags & F_AT_RISK) && !below(s.ci, p->recover_threshold)) {
        c->flags &= (uint8_t)~F_AT_RISK;
        a = alert_push(w, ALERT_RECOVERED, trig, c, y, s.ci, has_prev, prev, eid, at, offset);
        fmt_f2(num, s.ci);
        char *r = stpcpy(stpcpy(stpcpy(stpcpy(a->reason, "connection index back to "), num),
                                ", at or above "),
                         w->recover_g);
        if (!e) stpcpy(r, " as older events left the window");
    }
    if (e && e->kind == KIND_CONTACT && e->handled_by == HANDLER_AI) {
        bool by_streak = e->resolved == TRI_FALSE && c->streak >= (uint32_t)p->needs_human_streak;
        bool by_sent = e->has_sentiment && (double)e->sentiment <= p->needs_human_sentiment;
        bool has_nh = (c->flags & F_HAS_NH) != 0;
        bool cooling = has_nh && y->last_nh_at > e->occurred_at - p->needs_human_cooldown_ms;
        if ((by_streak || by_sent) && !cooling) {
            a = alert_push(w, ALERT_NEEDS_HUMAN, trig, c, y, s.ci, has_prev, prev, eid, at, offset);
            /* "3 unresolved AI contacts in a row[; sentiment -0.80]" or
             * "AI contact with sentiment -0.80, at or below -0.6". */
            char *r = a->reason;
            if (by_streak) {
                fmt_i64(num, c->streak);
                r = stpcpy(stpcpy(r, num), " unresolved AI contacts in a row");
                if (e->has_sentiment) r = stpcpy(r, "; ");
            } else {
                r = stpcpy(r, "AI contact with ");
            }
            if (e->has_sentiment) {
                fmt_f2(num, (double)e->sentiment);
                r = stpcpy(stpcpy(r, "sentiment "), num);
            }
            if (!by_streak) stpcpy(stpcpy(r, ", at or below "), w->nh_sentiment_g);
            if (!has_nh || y->last_nh_at < e->occurred_at) y->last_nh_at = e->occurred_at;
            c->flags |= F_HAS_NH;
            /* SPEC §10.2: pending since the first needs_human */
            if (!y->pending) {
                y->pending = true;
                y->pending_since = e->occurred_at;
            }
        }
    }

    /* SPEC §10.1, after the alerts: the first rule that holds. */
    if (c->flags & F_AT_RISK)
        y->route = ROUTE_AT_RISK;
    else if (y->pending)
        y->route = ROUTE_NEEDS_HUMAN;
    else if (c->streak >= (uint32_t)p->route_streak)
        y->route = ROUTE_STREAK;
    else if (y->has_sent && (double)y->last_sent <= p->route_sentiment &&
             y->sent_bucket >= window_start(w, bucket_of(w, w->watermark)))
        y->route = ROUTE_SENTIMENT;
    else
        y->route = ROUTE_AI;

    /* SPEC §9.1: each alert in e's segment, or EXPIRY:<type> at T_p. */
    for (size_t i = first_alert; i < w->nalerts; i++) {
        if (e)
            hist_bump(hist_seg(w, bucket_of(w, e->occurred_at), hist_segment(e)),
                      HC_ALERT + (uint32_t)w->alerts[i].type, 1);
        else
            hist_bump(hist_seg(w, bucket_of(w, w->watermark), HIST_EXPIRY),
                      (uint32_t)w->alerts[i].type, 1);
    }
    /* SPEC §9.2: the contribution changes from the last score's to this one's. */
    if (has_prev) org_add(w, -1, prev, was_at_risk, was_human);
    org_add(w, 1, s.ci, (c->flags & F_AT_RISK) != 0, y->route != ROUTE_AI);

    c->last_ci = s.ci;
    c->flags |= F_HAS_SCORE;
    c->updated_at = w->watermark;
    mark_dirty(w, id, NULL);
}

/* ------------------------------------------------------------------ */
/* Expiry (SPEC §2.1 step 2)                                           */

static int cmp_cust_id(const void *a, const void *b, void *arg) {
    const window_t *w = arg;
    const cust_t *x = cust_at(w, *(const uint32_t *)a), *y = cust_at(w, *(const uint32_t *)b);
    size_t n = x->cid_len < y->cid_len ? x->cid_len : y->cid_len;
    int r = memcmp(x->data, y->data, n);
    return r ? r : (x->cid_len > y->cid_len) - (x->cid_len < y->cid_len);
}

/* The watermark moves from bucket old_b to new_b (> old_b); w->watermark is
 * already the new one.  `offset` is the event that moved it. */
static void window_expire(window_t *w, int64_t old_b, int64_t new_b, int64_t offset) {
    int64_t old_start = window_start(w, old_b), new_start = window_start(w, new_b);
    int64_t end = new_start;
    if (end - old_start > w->p.window_buckets) end = old_start + w->p.window_buckets;

    uint32_t *list = NULL;
    size_t n = 0, cap = 0;
    for (int64_t b = old_start; b < end; b++) {
        uint32_t *head = &w->wheel[wheel_slot(w, b)];
        for (uint32_t id = *head, next; id; id = next) {
            cust_t *c = cust_at(w, id);
            next = c->wheel_next;
            c->wheel_prev = c->wheel_next = 0;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                list = xrealloc(list, cap * sizeof(*list));
            }
            list[n++] = id;
        }
        *head = 0;
    }
    if (n > 1) qsort_r(list, n, sizeof(*list), cmp_cust_id, w);

    for (size_t i = 0; i < n; i++) {
        prefetch_ids(w, list, i, n);
        uint32_t id = list[i];
        cust_t *c = cust_at(w, id);
        body_t y;
        cust_body(w, c, &y);
        mark_dirty(w, id, &y);
        uint32_t drop = 0;
        while (drop < y.nbuckets && y.bk[drop].b < new_start) drop++;
        assert(drop > 0);
        if (drop == y.nbuckets) {
            cust_evict(w, id, &y);
            continue;
        }
        memmove(y.bk, y.bk + drop, (y.nbuckets - drop) * sizeof(bucket_t));
        y.nbuckets -= drop;
        if (c->streak && bucket_of(w, y.last_fail_at) < new_start) c->streak = 0;
        cust_rescore(w, id, &y, NULL, offset);
        cust_store(w, c, &y);
        wheel_link(w, id, y.bk[0].b);
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
    if (params->route_streak < 1) {
        snprintf(errstr, errstr_size, "route_streak must be at least 1");
        return NULL;
    }
    window_t *w = xcalloc(1, sizeof(*w));
    w->p = *params;
    snprintf(w->risk_g, sizeof(w->risk_g), "%g", params->risk_threshold);
    snprintf(w->recover_g, sizeof(w->recover_g), "%g", params->recover_threshold);
    snprintf(w->nh_sentiment_g, sizeof(w->nh_sentiment_g), "%g",
             params->needs_human_sentiment);
    w->partition = partition;
    w->watermark = -1;
    w->table_mask = 1023;
    w->table = xcalloc(w->table_mask + 1, sizeof(slot_t));
    w->wheel = xcalloc((size_t)params->window_buckets, sizeof(uint32_t));
    return w;
}

void window_free(window_t *w) {
    if (!w) return;
    for (uint32_t k = 0; k < w->nchunks; k++) {
        for (uint32_t i = 0; i < SLAB_SIZE; i++)
            if (data_class(w->slab[k][i].data_len) > DATA_CLASSES) free(w->slab[k][i].data);
        free(w->slab[k]);
    }
    free(w->slab);
    for (size_t i = 0; i < w->ndata_pages; i++) free(w->data_pages[i]);
    free(w->data_pages);
    free(w->table);
    free(w->wheel);
    free(w->dirty);
    free(w->snap);
    free(w->alerts);
    free(w->alert_text.p);
    free(w->event_ids.p);
    free(w->bk);
    free(w->enc.p);
    free(w->hsegs);
    free(w->hseg_tab);
    free(w->hist);
    free(w->erased);
    free(w->erased_text.p);
    free(w);
}

void window_prefetch(window_t *w, strview_t customer_id) {
    uint32_t tag = (uint32_t)hash_bytes(customer_id.ptr, customer_id.len);
    if (w->npf == WINDOW_PREFETCH_MAX) {
        memmove(w->pf, w->pf + 1, (WINDOW_PREFETCH_MAX - 1) * sizeof(w->pf[0]));
        w->npf--;
    }
    w->pf[w->npf].tag = tag;
    w->pf[w->npf].id = 0;
    w->pf[w->npf].stage = 0;
    w->npf++;
    __builtin_prefetch(&w->table[tag & w->table_mask]);
}

/* Moves every prefetch under way one step on: the slot, fetched by the
 * last step, names the record to fetch; the record names the data.  A
 * customer not found (new, or a tag shared with another) stops there: a
 * prefetch only ever costs a wasted fetch. */
static void prefetch_step(window_t *w) {
    uint32_t kept = 0;
    for (uint32_t i = 0; i < w->npf; i++) {
        if (w->pf[i].stage == 0) {
            uint32_t tag = w->pf[i].tag, id = 0;
            for (size_t j = tag & w->table_mask, n = 0; w->table[j].id && n < 4;
                 j = (j + 1) & w->table_mask, n++)
                if (w->table[j].tag == tag) {
                    id = w->table[j].id;
                    break;
                }
            if (!id) continue;
            prefetch_range(cust_at(w, id), sizeof(cust_t));
            w->pf[i].id = id;
            w->pf[i].stage = 1;
            w->pf[kept++] = w->pf[i];
        } else if (w->pf[i].id <= w->next_id) {
            const cust_t *c = cust_at(w, w->pf[i].id);
            if (c->data) prefetch_range(c->data, c->data_len);
        }
    }
    w->npf = kept;
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
    uint32_t id = cust_get(w, e->customer_id);
    cust_t *c = cust_at(w, id);
    body_t y;
    if (w->npf) prefetch_step(w);
    cust_body(w, c, &y);
    mark_dirty(w, id, &y);
    int64_t old_oldest = y.nbuckets ? y.bk[0].b : INT64_MIN;
    bucket_t *bk = body_bucket(w, &y, b);
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
            if (c->streak == 0 || y.last_fail_at < t) y.last_fail_at = t;
            c->streak++;
        } else if (e->resolved == TRI_TRUE || e->handled_by == HANDLER_HUMAN ||
                   e->handled_by == HANDLER_HYBRID) {
            c->streak = 0;
        }
    }
    if (e->has_sentiment) {
        bk->sent_sum += (double)e->sentiment;
        bk->sent_n++;
        y.has_sent = true;
        y.last_sent = e->sentiment;
        y.sent_bucket = b;
    }
    /* SPEC §10.2: a person's contact ends a pending follow-up. */
    if (y.pending && e->kind == KIND_CONTACT &&
        (e->handled_by == HANDLER_HUMAN || e->handled_by == HANDLER_HYBRID)) {
        hseg_t *h = hist_seg(w, b, hist_segment(e));
        hist_bump(h, HC_FOLLOWUPS, 1);
        hist_bump(h, HC_FOLLOWUP_MS, t > y.pending_since ? t - y.pending_since : 0);
        y.pending = false;
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
        y.narrative = e->feedback_text.ptr;
        y.narrative_len = (uint32_t)n;
        y.narrative_bucket = b;
        c->flags |= F_NARR;
    }
    /* last_event_id goes to Redis only: keep it until the commit. */
    bytes_need(&w->event_ids, e->event_id.len);
    c->eid = (uint32_t)w->event_ids.len + 1;
    c->eid_len = (uint8_t)e->event_id.len;
    memcpy(w->event_ids.p + w->event_ids.len, e->event_id.ptr, e->event_id.len);
    w->event_ids.len += e->event_id.len;

    /* 4. Re-score, evaluate alerts, route; store the body; history. */
    cust_rescore(w, id, &y, e, offset);
    cust_store(w, c, &y);
    hist_event(w, e, b, c->last_ci);
    if (y.bk[0].b != old_oldest) {
        if (old_oldest != INT64_MIN) wheel_unlink(w, id, old_oldest);
        wheel_link(w, id, y.bk[0].b);
    }
    if (w->npf) prefetch_step(w);
    return WINDOW_SCORED;
}

bool window_erase(window_t *w, strview_t customer_id, int64_t offset) {
    (void)offset; /* in partition order, but nothing of it is kept */
    assert(customer_id.len > 0 && customer_id.len <= EVENT_CUSTOMER_ID_MAX);

    /* Recorded whether or not it is held: the sink deletes the alerts that
     * name the customer in this partition, written by earlier flushes. */
    if (w->nerased == w->erased_cap) {
        w->erased_cap = w->erased_cap ? w->erased_cap * 2 : 16;
        w->erased = xrealloc(w->erased, w->erased_cap * sizeof(*w->erased));
    }
    bytes_need(&w->erased_text, customer_id.len);
    memcpy(w->erased_text.p + w->erased_text.len, customer_id.ptr, customer_id.len);
    w->erased[w->nerased].off = (uint32_t)w->erased_text.len;
    w->erased[w->nerased].len = (uint32_t)customer_id.len;
    w->nerased++;
    w->erased_text.len += customer_id.len;

    /* Alerts raised since the last commit come before the tombstone in
     * partition order: they are never written.  The sink writes the erasure
     * before the alerts, so the ones left (and any raised after this for
     * a customer coming back) survive it.  Their strings stay in the arena
     * until the commit. */
    size_t kept = 0;
    for (size_t i = 0; i < w->nalerts; i++) {
        const alert_t *a = &w->alerts[i];
        if (a->customer_id.len == customer_id.len &&
            memcmp(a->customer_id.ptr, customer_id.ptr, customer_id.len) == 0)
            continue;
        if (kept != i) w->alerts[kept] = *a;
        kept++;
    }
    w->nalerts = kept;

    uint32_t id = cust_lookup(w, customer_id);
    if (!id) return false;
    /* Forgotten like an eviction (org no longer counts it), but its keys go
     * with the erasure.  A later event brings it back as a new customer. */
    cust_t *c = cust_at(w, id);
    body_t y;
    cust_body(w, c, &y);
    if (y.nbuckets) wheel_unlink(w, id, y.bk[0].b);
    cust_evict(w, id, &y);
    c->flags |= F_ERASED;
    return true;
}

size_t window_erasure_count(const window_t *w) { return w->nerased; }

strview_t window_erasure(const window_t *w, size_t i) {
    return (strview_t){w->erased_text.p + w->erased[i].off, w->erased[i].len};
}

int64_t window_watermark(const window_t *w) { return w->watermark; }
void window_set_watermark(window_t *w, int64_t t) { w->watermark = t; }
bool window_watermark_dirty(const window_t *w) { return w->watermark_dirty; }
size_t window_customer_count(const window_t *w) { return w->live; }
size_t window_change_count(const window_t *w) { return w->ndirty; }

const alert_t *window_alerts(const window_t *w, size_t *count) {
    *count = w->nalerts;
    return w->alerts;
}

/* ------------------------------------------------------------------ */
/* State blob                                                          */
/*
 * Version 4: u8 version, u8 flags (1 at_risk, 2 has_score, 4 has_nh,
 * 8 narrative), streak, [the last score, a double, if has_score: kept
 * exact, so that a restarted window is the very one that stopped],
 * updated_at minus
 * the start of the newest bucket (zigzagged: usually under a day), then
 * the body (see "Body encoding" above).  last_event_id is not part of it: the
 * customer's hash holds it.
 *
 * Version 3 (earlier builds) is read: the same header with updated_at
 * absolute, then a version 3 body.  A window
 * writes version 4 from then on.
 *
 * The blob is written with the customer's hash, so last_ci, at_risk and the
 * route it holds are the customer's contribution to <prefix>org as last
 * written (SPEC §9.2): a restarted window goes on from there.
 *
 * Version 2 blobs are refused, loudly: they lack the route inputs and the
 * pending follow-up, and a Redis written by a version without §9 has no
 * history and no org to continue, so such a prefix must be rebuilt from the
 * log (docs/STATE.md).
 */

#define STATE_VERSION 4

/* The time updated_at is stored against: the start of y's newest bucket. */
static int64_t blob_base(const window_t *w, const body_t *y) {
    return y->nbuckets ? y->bk[y->nbuckets - 1].b * w->p.bucket_ms : 0;
}

/* The state blob of c, whose body decoded is y, in w->enc. */
static size_t cust_blob(window_t *w, const cust_t *c, const body_t *y) {
    bytes_t *o = &w->enc;
    o->len = 0;
    bytes_need(o, 2);
    o->p[o->len++] = STATE_VERSION;
    o->p[o->len++] = (char)(c->flags & F_STORED);
    put_u64(o, c->streak);
    if (c->flags & F_HAS_SCORE) {
        bytes_need(o, 8);
        o->len = (size_t)((char *)wr_f64((unsigned char *)o->p + o->len, c->last_ci) - o->p);
    }
    put_i64(o, tdiff(c->updated_at, blob_base(w, y)));
    put_raw(o, c->data + c->cid_len, c->data_len - c->cid_len);
    return o->len;
}

int window_load_customer(window_t *w, strview_t customer_id, const unsigned char *state,
                         size_t state_len, char *errstr, size_t errstr_size) {
    if (customer_id.len == 0 || customer_id.len > EVENT_CUSTOMER_ID_MAX) {
        snprintf(errstr, errstr_size, "customer id of %zu bytes", customer_id.len);
        return -1;
    }
    if (state_len >= 2 && state[0] == 2) {
        snprintf(errstr, errstr_size,
                 "state version 2 was written by a rapport without routing, history and org "
                 "(SPEC §9-10); rebuild this prefix from the log (docs/STATE.md)");
        return -1;
    }
    if (state_len < 2 || (state[0] != STATE_VERSION && state[0] != 3) ||
        (state[1] & ~F_STORED)) {
        snprintf(errstr, errstr_size, "state version %d is not 3 or %d",
                 state_len ? state[0] : -1, STATE_VERSION);
        return -1;
    }
    int version = state[0];
    if (cust_lookup(w, customer_id)) {
        snprintf(errstr, errstr_size, "customer loaded twice");
        return -1;
    }
    uint8_t flags = state[1];
    rd_t r = {state + 2, state + state_len, false};
    uint32_t streak = get_u32(&r);
    double last_ci = 0;
    int64_t updated_at;
    last_ci = (flags & F_HAS_SCORE) ? get_f64(&r) : 0;
    if (!(last_ci >= 0 && last_ci <= 100)) r.bad = true; /* ci is in [0, 100] */
    /* version 4: against blob_base(), once the body is read */
    updated_at = get_i64(&r);
    body_t y;
    if (r.bad ||
        (version == 3 ? body_decode_v3 : body_decode)(w, r.p, (size_t)(r.end - r.p), streak,
                                                        flags, &y) != 0 ||
        y.nbuckets == 0) {
        snprintf(errstr, errstr_size, "state blob of %zu bytes does not parse", state_len);
        return -1;
    }
    if (y.bk[0].b < 0 || y.bk[y.nbuckets - 1].b > INT64_MAX / w->p.bucket_ms ||
        (w->watermark >= 0 && (y.bk[0].b < window_start(w, bucket_of(w, w->watermark)) ||
                               y.bk[y.nbuckets - 1].b > bucket_of(w, w->watermark)))) {
        snprintf(errstr, errstr_size,
                 "state does not fit the window at the stored watermark "
                 "(were bucket_ms or window_buckets changed?)");
        return -1;
    }
    if (version == 4) updated_at = tadd(blob_base(w, &y), updated_at);
    for (uint32_t i = 0; i < y.nbuckets; i++) {
        const bucket_t *k = &y.bk[i];
        if (k->events == 0 || k->contacts > k->events || k->resolved > k->contacts ||
            k->ai_contacts > k->contacts) {
            snprintf(errstr, errstr_size, "state blob has inconsistent counters");
            return -1;
        }
    }
    uint32_t id = cust_get(w, customer_id);
    cust_t *c = cust_at(w, id);
    c->flags = flags | F_WRITE_ALL;
    c->streak = streak;
    c->last_ci = last_ci;
    c->updated_at = updated_at;
    cust_store(w, c, &y); /* re-encoded: canonical, whatever the blob's varints */
    wheel_link(w, id, y.bk[0].b);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Views and commit                                                    */

static void cust_view(window_t *w, const cust_t *c, window_customer_view_t *v) {
    body_t y;
    scores_t s;
    cust_body(w, c, &y);
    body_score(w, c->streak, &y, &s);
    v->customer_id = (strview_t){(const char *)c->data, c->cid_len};
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
    v->at_risk = (c->flags & F_AT_RISK) != 0;
    v->updated_at = c->updated_at;
    /* Empty, not NULL, when no event changed it since the commit: callers
     * may pass it to memcmp/memcpy. */
    v->last_event_id = c->eid ? (strview_t){w->event_ids.p + c->eid - 1, c->eid_len}
                              : (strview_t){"", 0};
    v->route_human = y.route != ROUTE_AI;
    v->route_reason = route_reason_names[y.route];
    v->state_len = cust_blob(w, c, &y);
    v->state = (const unsigned char *)w->enc.p;
    v->changed = BATCH_CF_ALL;
}

/* x and y print the same with %.4f, as the sink writes them.  A superset
 * of "differ" is safe: values that are not bit for bit equal and are not
 * small finite numbers count as different. */
static bool same_f4(double x, double y) {
    if (memcmp(&x, &y, sizeof(x)) == 0) return true;
    /* each text is within 0.00005 of its value: far apart, they differ */
    if (!(fabs(x) < 1e9 && fabs(y) < 1e9) || fabs(x - y) > 0.000101) return false;
    int64_t cx = c4(x);
    return cx == c4(y) && (cx != 0 || signbit(x) == signbit(y));
}

/* Which public fields of v differ from the snapshot taken before its
 * first change since the last commit (BATCH_CF_ALL when there is none). */
static uint32_t view_changed(const cust_t *c, const snap_t *sn, const window_customer_view_t *v) {
    if (!sn->valid || (c->flags & F_WRITE_ALL)) return BATCH_CF_ALL;
    uint32_t m = 0;
    if (!same_f4(v->ci, sn->s.ci)) m |= BATCH_CF_CI;
    if (!same_f4(v->resolution, sn->s.resolution)) m |= BATCH_CF_RESOLUTION;
    if (!same_f4(v->sentiment, sn->s.sentiment)) m |= BATCH_CF_SENTIMENT;
    if (!same_f4(v->loyalty, sn->s.loyalty)) m |= BATCH_CF_LOYALTY;
    if (!same_f4(v->ai_share, sn->s.ai_share)) m |= BATCH_CF_AI_SHARE;
    if (!same_f4(v->aht_ms, sn->s.aht_ms)) m |= BATCH_CF_AHT_MS;
    if (v->streak != (int64_t)sn->streak) m |= BATCH_CF_STREAK;
    if (v->contacts != sn->s.contacts) m |= BATCH_CF_CONTACTS;
    if (v->resolved != sn->s.resolved) m |= BATCH_CF_RESOLVED;
    if (v->events != sn->s.events) m |= BATCH_CF_EVENTS;
    if (v->at_risk != sn->at_risk) m |= BATCH_CF_AT_RISK;
    if (v->updated_at != sn->updated_at) m |= BATCH_CF_UPDATED_AT;
    if (v->route_reason != route_reason_names[sn->route]) m |= BATCH_CF_ROUTE;
    return m;
}

void window_foreach_change(window_t *w, window_upsert_cb upsert, window_delete_cb del,
                           void *opaque) {
    window_customer_view_t v;
    for (size_t i = 0; i < w->ndirty; i++) {
        prefetch_ids(w, w->dirty, i, w->ndirty);
        cust_t *c = cust_at(w, w->dirty[i]);
        if (c->flags & F_TOMB) {
            /* An erased customer's keys go with its erasure, not as a delete. */
            if (del && !(c->flags & F_ERASED))
                del(opaque, (strview_t){(const char *)c->data, c->cid_len});
        } else if (upsert) {
            cust_view(w, c, &v);
            v.changed = view_changed(c, &w->snap[i], &v);
            upsert(opaque, &v);
        }
    }
}

bool window_get(window_t *w, strview_t customer_id, window_customer_view_t *out) {
    uint32_t id = cust_lookup(w, customer_id);
    if (!id) return false;
    cust_view(w, cust_at(w, id), out);
    return true;
}

/* What the change lists keep across commits: room for a quarter of the
 * customers held, never less than KEEP_DIRTY, so that a window flushed in
 * large batches does not regrow them each time.  A catch-up batch grows
 * them to every changed customer (a million take about 150 MB here: the
 * dirty list with its snapshots, the alerts and the event ids); after its
 * commit they are freed, so that the peak is not held for the rest of the
 * process's life, and window_release() frees what is kept once the window
 * is idle.  The bytes go to alloc_released(). */
#define KEEP_DIRTY 512
#define KEEP_TEXT ((size_t)64 << 10)
#define KEEP_HSEGS 256             /* (bucket, segment) history records */

static size_t bytes_shrink(bytes_t *b, size_t keep) {
    if (b->cap <= keep) return 0;
    size_t n = b->cap;
    free(b->p);
    *b = (bytes_t){NULL, 0, 0};
    return n;
}

/* Frees the lists beyond room for keep changed customers (and a quarter as
 * many alerts, 36 bytes of text each); returns the bytes freed. */
static size_t scratch_shrink(window_t *w, size_t keep) {
    size_t freed = 0, keep_text = keep * 36 > KEEP_TEXT ? keep * 36 : KEEP_TEXT;
    if (w->dirty_cap > keep) {
        freed += w->dirty_cap * (sizeof(*w->dirty) + sizeof(*w->snap));
        free(w->dirty);
        free(w->snap);
        w->dirty = NULL;
        w->snap = NULL;
        w->dirty_cap = 0;
    }
    if (w->alerts_cap > keep / 4) {
        freed += w->alerts_cap * sizeof(*w->alerts);
        free(w->alerts);
        w->alerts = NULL;
        w->alerts_cap = 0;
    }
    if (w->hsegs_cap > KEEP_HSEGS) { /* a catch-up over many buckets */
        freed += w->hsegs_cap * sizeof(*w->hsegs) + (w->hseg_mask + 1) * sizeof(*w->hseg_tab) +
                 w->hist_cap * sizeof(*w->hist);
        free(w->hsegs);
        free(w->hseg_tab);
        free(w->hist);
        w->hsegs = NULL;
        w->hseg_tab = NULL;
        w->hist = NULL;
        w->hsegs_cap = w->hseg_mask = w->hist_cap = 0;
    }
    freed += bytes_shrink(&w->alert_text, keep_text) + bytes_shrink(&w->event_ids, keep_text) +
             bytes_shrink(&w->erased_text, KEEP_TEXT);
    if (freed) alloc_released(freed);
    return freed;
}

size_t window_release(window_t *w) {
    if (w->ndirty || w->nalerts || w->nerased || w->nhsegs) return 0;
    return scratch_shrink(w, KEEP_DIRTY);
}

void window_commit(window_t *w) {
    for (size_t i = 0; i < w->ndirty; i++) {
        if (i + 8 < w->ndirty) prefetch_range(cust_at(w, w->dirty[i + 8]), sizeof(cust_t));
        uint32_t id = w->dirty[i];
        cust_t *c = cust_at(w, id);
        c->flags &= (uint8_t)~(F_DIRTY | F_ERASED | F_WRITE_ALL);
        c->eid = 0;
        c->eid_len = 0;
        if (c->flags & F_TOMB) {
            slot_t *s = table_find(w, (const char *)c->data, c->cid_len,
                                   (uint32_t)hash_bytes((const char *)c->data, c->cid_len));
            assert(s->id == id);
            table_remove(w, s);
            slab_free(w, id);
        }
    }
    w->ndirty = 0;
    for (size_t i = 0; i < w->nhsegs; i++) w->hseg_tab[w->hsegs[i].slot] = 0;
    w->nhsegs = 0;
    memset(w->org, 0, sizeof(w->org));
    w->nalerts = 0;
    w->alert_text.len = 0;
    w->event_ids.len = 0;
    w->nerased = 0;
    w->erased_text.len = 0;
    w->watermark_dirty = false;
    scratch_shrink(w, w->live / 4 > KEEP_DIRTY ? w->live / 4 : KEEP_DIRTY);
}

/* ------------------------------------------------------------------ */
/* The batch (batch/batch.h) and resuming from a sink                  */

typedef struct fill_ctx {
    batch_t *b;
    batch_partition_t *bp;
} fill_ctx_t;

static void fill_upsert(void *opaque, const window_customer_view_t *v) {
    fill_ctx_t *f = opaque;
    batch_customer_t *c = batch_add_customer(f->b, f->bp);
    c->changed = v->changed;
    c->customer_id = batch_copy(f->b, v->customer_id.ptr, v->customer_id.len);
    c->ci = v->ci;
    c->resolution = v->resolution;
    c->sentiment = v->sentiment;
    c->loyalty = v->loyalty;
    c->ai_share = v->ai_share;
    c->aht_ms = v->aht_ms;
    c->streak = v->streak;
    c->contacts = v->contacts;
    c->resolved = v->resolved;
    c->events = v->events;
    c->at_risk = v->at_risk;
    c->updated_at = v->updated_at;
    c->last_event_id = batch_copy(f->b, v->last_event_id.ptr, v->last_event_id.len);
    c->state = batch_copy(f->b, v->state, v->state_len);
    c->route = batch_static(v->route_human ? "human" : "ai");
    c->route_reason = batch_static(v->route_reason ? v->route_reason : "");
}

static void fill_delete(void *opaque, strview_t customer_id) {
    fill_ctx_t *f = opaque;
    batch_add_delete(f->b, f->bp, customer_id.ptr, customer_id.len);
}

void window_fill_batch(window_t *w, batch_t *b, batch_partition_t *bp) {
    fill_ctx_t f = {b, bp};
    window_foreach_change(w, fill_upsert, fill_delete, &f);
    for (size_t i = 0; i < w->nalerts; i++) {
        const alert_t *a = &w->alerts[i];
        batch_alert_t *x = batch_add_alert(b, bp);
        x->type = batch_static(alert_type_names[a->type]);
        x->trigger = batch_static(alert_trigger_names[a->trigger]);
        x->customer_id = batch_copy(b, a->customer_id.ptr, a->customer_id.len);
        x->score = a->score;
        x->has_previous = a->has_previous;
        x->previous_score = a->previous_score;
        x->event_id = batch_copy(b, a->event_id.ptr, a->event_id.len);
        x->occurred_at = a->occurred_at;
        x->partition = a->partition;
        x->offset = a->offset;
        x->reason = batch_copy(b, a->reason, strlen(a->reason));
        x->narrative = batch_copy(b, a->narrative.ptr, a->narrative.len);
    }
    size_t nh;
    const window_hist_delta_t *h = window_history_deltas(w, &nh);
    for (size_t i = 0; i < nh; i++)
        batch_add_history(b, bp, h[i].bucket_start, h[i].field, h[i].delta);
    int64_t org[WINDOW_ORG_FIELDS];
    window_org_deltas(w, org);
    for (size_t i = 0; i < WINDOW_ORG_FIELDS; i++)
        if (org[i]) batch_add_org(b, bp, window_org_field_names[i], org[i]);
    for (size_t i = 0; i < w->nerased; i++) {
        strview_t id = window_erasure(w, i);
        batch_add_erasure(b, bp, id.ptr, id.len);
    }
    if (w->watermark_dirty) {
        bp->has_watermark = true;
        bp->watermark = w->watermark;
    }
}

void window_restore_watermark(void *opaque, int64_t watermark) {
    if (watermark >= 0) window_set_watermark(opaque, watermark);
}

int window_restore_customer(void *opaque, const char *customer_id, size_t id_len,
                            const unsigned char *state, size_t state_len, char *errstr,
                            size_t errstr_size) {
    window_t *w = opaque;
    strview_t id = {customer_id, id_len};
    if (window_load_customer(w, id, state, state_len, errstr, errstr_size) == 0) return 0;
    /* A sink may hand a customer twice (Redis's HSCAN can): the first
     * copy is loaded. */
    return (id_len > 0 && id_len <= EVENT_CUSTOMER_ID_MAX && cust_lookup(w, id)) ? 0 : -1;
}

const window_hist_delta_t *window_history_deltas(window_t *w, size_t *count) {
    size_t n = 0;
    for (size_t i = 0; i < w->nhsegs; i++) n += (size_t)__builtin_popcount(w->hsegs[i].touched);
    if (n > w->hist_cap) {
        w->hist_cap = n;
        w->hist = xrealloc(w->hist, n * sizeof(*w->hist));
    }
    window_hist_delta_t *o = w->hist;
    for (size_t i = 0; i < w->nhsegs; i++) {
        const hseg_t *h = &w->hsegs[i];
        for (uint32_t c = 0; c < HC_COUNT; c++) {
            if (!(h->touched & (1u << c))) continue;
            o->bucket_start = h->start;
            hist_field_name(h->seg, c, o->field);
            o->delta = h->d[c];
            o++;
        }
    }
    *count = n;
    return w->hist;
}

void window_org_deltas(const window_t *w, int64_t out[WINDOW_ORG_FIELDS]) {
    memcpy(out, w->org, sizeof(w->org));
}
