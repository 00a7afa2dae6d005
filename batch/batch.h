/*
 * batch.h — one flush's worth of effects, in a form neither the scorer nor
 * a sink owns.
 *
 * scoring/ fills a batch (window_fill_batch()); a sink (batch/sink.h)
 * reads it and writes it; the flush engine (batch/engine.h) owns it in
 * between and reads back, per partition, what the sink did with it.  The
 * batch copies every string it is given into an arena it owns, so the
 * producer (a window) can forget its changes and go on while a sink still
 * holds the batch.  A sink needs nothing but this header to write one.
 *
 * Per partition (SPEC §5, §9, §10, §1.2): the position it moves Redis
 * from and to, the new watermark or none, the changed customers' public
 * fields and resume state, the evicted customers, the alerts, the history
 * and organisation counter deltas, and the erased customers.  Fields that
 * nothing fills yet stay empty: a sink skips an empty route, and empty
 * counter and erasure lists.
 *
 * Not thread-safe: one thread at a time (the consumer's main loop).
 */
#ifndef RAPPORT_BATCH_H
#define RAPPORT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes in the batch's arena (or a static string); never NUL-terminated
 * by contract.  len 0 is "empty"; ptr is then not NULL. */
typedef struct batch_str {
    const char *ptr;
    size_t len;
} batch_str_t;

/* Which public fields of a customer (SPEC §5) may differ from what the sink
 * holds: a sink writes only these, and the score (the `scores` sorted set)
 * only with BATCH_CF_CI.  A superset is always safe (writing a field again
 * with its value changes nothing); a missing bit leaves a stale field.
 * BATCH_CF_ROUTE covers route and route_reason together.  last_event_id
 * has its own rule (empty: keep the stored one) and the resume state is
 * always written. */
enum {
    BATCH_CF_CI = 1u << 0,
    BATCH_CF_RESOLUTION = 1u << 1,
    BATCH_CF_SENTIMENT = 1u << 2,
    BATCH_CF_LOYALTY = 1u << 3,
    BATCH_CF_AI_SHARE = 1u << 4,
    BATCH_CF_AHT_MS = 1u << 5,
    BATCH_CF_STREAK = 1u << 6,
    BATCH_CF_CONTACTS = 1u << 7,
    BATCH_CF_RESOLVED = 1u << 8,
    BATCH_CF_EVENTS = 1u << 9,
    BATCH_CF_AT_RISK = 1u << 10,
    BATCH_CF_UPDATED_AT = 1u << 11,
    BATCH_CF_ROUTE = 1u << 12
};
#define BATCH_CF_ALL 0x1fffu

/* A changed customer: the public hash of SPEC §5 and its resume state. */
typedef struct batch_customer {
    uint32_t changed;           /* BATCH_CF_* bits; batch_add_customer() sets BATCH_CF_ALL */
    batch_str_t customer_id;
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t streak, contacts, resolved, events;
    int at_risk;                /* 0 or 1 */
    int64_t updated_at;         /* T_p when written */
    batch_str_t last_event_id;  /* empty: no event changed it; keep the stored one */
    batch_str_t route;          /* "human" or "ai" (SPEC §10.1); empty: not computed */
    batch_str_t route_reason;   /* "at_risk", "streak"… or empty */
    batch_str_t state;          /* resume state, handed back to a loader on claim */
} batch_customer_t;

/* One alert, SPEC §4, every field as text or number. */
typedef struct batch_alert {
    batch_str_t type;           /* "churn_risk", "recovered", "needs_human" */
    batch_str_t trigger;        /* "event" or "expiry" */
    batch_str_t customer_id;
    double score;
    bool has_previous;          /* false: previous_score is written empty */
    double previous_score;
    batch_str_t event_id;       /* empty for expiry */
    int64_t occurred_at;
    int32_t partition;
    int64_t offset;
    batch_str_t reason;
    batch_str_t narrative;      /* empty when there is none */
} batch_alert_t;

/* A counter delta: history (SPEC §9.1: bucket start S, field such as
 * "CHAT:AI:contacts") or organisation (SPEC §9.2: field such as
 * "customers" or "ci_bin:3"; bucket_start unused, 0). */
typedef struct batch_counter {
    int64_t bucket_start;
    batch_str_t field;
    int64_t delta;
} batch_counter_t;

/* What a sink did with a partition of the batch. */
typedef enum {
    BATCH_PENDING = 0, /* not answered yet */
    BATCH_WRITTEN,     /* the sink holds next_offset now (written, or found
                        * written by an attempt whose answer was lost) */
    BATCH_FENCED,      /* another owner holds the partition: nothing written */
    BATCH_REFUSED      /* written together with a fenced partition, so not
                        * written: the caller must load it again */
} batch_result_t;

/* One partition's part.  The arrays are owned by the batch. */
typedef struct batch_partition {
    batch_str_t topic;
    int32_t partition;
    int64_t epoch;              /* the owner's fencing epoch, from the claim */
    int64_t prev_offset;        /* the next offset the sink holds now; -1 none */
    int64_t next_offset;        /* the next offset once this is written */
    bool has_watermark;         /* false: the watermark did not move */
    int64_t watermark;

    batch_customer_t *customers;
    size_t ncustomers;
    batch_str_t *deletes;       /* evicted customers: hash, score, state go */
    size_t ndeletes;
    batch_alert_t *alerts;
    size_t nalerts;
    batch_counter_t *history;   /* SPEC §9.1 deltas */
    size_t nhistory;
    batch_counter_t *org;       /* SPEC §9.2 deltas */
    size_t norg;
    batch_str_t *erasures;      /* SPEC §1.2: hash, score, state and alerts go */
    size_t nerasures;

    batch_result_t result;      /* filled by the sink */

    /* The batch's bookkeeping: room allocated in each array. */
    size_t cap_customers, cap_deletes, cap_alerts, cap_history, cap_org, cap_erasures;
} batch_partition_t;

typedef struct batch batch_t;

batch_t *batch_new(void);
/* batch_free(NULL) does nothing. */
void batch_free(batch_t *b);

/* Empties the batch, keeping (most of) its memory for the next one.
 * Every pointer into it becomes invalid. */
void batch_reset(batch_t *b);

/* Appends a partition; the topic is copied.  The pointer stays valid until
 * batch_reset() or batch_free(), whatever is appended afterwards. */
batch_partition_t *batch_add_partition(batch_t *b, const char *topic, int32_t partition,
                                       int64_t epoch, int64_t prev_offset, int64_t next_offset);

size_t batch_partition_count(const batch_t *b);
/* Partition i, 0 <= i < batch_partition_count(). */
batch_partition_t *batch_partition(const batch_t *b, size_t i);

/* Copies n bytes into the batch's arena.  Valid until batch_reset(). */
batch_str_t batch_copy(batch_t *b, const void *p, size_t n);
/* A string that outlives the batch (a literal, a static name): not copied. */
batch_str_t batch_static(const char *s);

/* Appends a zeroed record to the partition and returns it for the caller to
 * fill (strings through batch_copy()).  Valid until the next append of the
 * same kind to the same partition. */
batch_customer_t *batch_add_customer(batch_t *b, batch_partition_t *bp);
batch_alert_t *batch_add_alert(batch_t *b, batch_partition_t *bp);
/* These copy their strings. */
void batch_add_delete(batch_t *b, batch_partition_t *bp, const void *customer_id, size_t len);
void batch_add_erasure(batch_t *b, batch_partition_t *bp, const void *customer_id, size_t len);
void batch_add_history(batch_t *b, batch_partition_t *bp, int64_t bucket_start,
                       const char *field, int64_t delta);
void batch_add_org(batch_t *b, batch_partition_t *bp, const char *field, int64_t delta);

/* Customers, deletes, alerts, counters and erasures of the whole batch:
 * what a sink writes, for sizing and statistics. */
size_t batch_item_count(const batch_t *b);
/* The same for one partition. */
size_t batch_partition_items(const batch_partition_t *bp);
/* Bytes the batch's content takes (its strings and records, not the room
 * kept for later batches), for bounding a batch's memory. */
size_t batch_bytes(const batch_t *b);

#endif
