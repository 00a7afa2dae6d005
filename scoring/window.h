/*
 * window.h — the scoring state of one Kafka partition.
 *
 * A window_t holds, for one partition, the watermark T_p and every customer
 * seen in the current window: per-bucket counters, the AI-failure streak,
 * the at-risk flag, the needs_human cooldown, the latest narrative, the
 * route and the pending follow-up.  It applies events in partition order
 * (SPEC §2.1), re-scores (§3), raises alerts (§4), routes (§10), and
 * forgets customers on erasure (§1.2), and remembers what changed since the
 * last window_commit() (customers, alerts, history and organisation deltas
 * (§9), erasures) so that a sink can write it in one transaction.
 *
 * Pure: no I/O, no clock, no Kafka, no Redis.  Not thread-safe: one thread
 * owns a window (the consumer's main loop).
 */
#ifndef RAPPORT_WINDOW_H
#define RAPPORT_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "scoring/event.h"
#include "scoring/params.h"

typedef enum { ALERT_CHURN_RISK = 0, ALERT_RECOVERED, ALERT_NEEDS_HUMAN } alert_type_t;
typedef enum { TRIGGER_EVENT = 0, TRIGGER_EXPIRY } alert_trigger_t;
#define ALERT_TYPE_COUNT 3
extern const char *const alert_type_names[ALERT_TYPE_COUNT];
extern const char *const alert_trigger_names[2];

#define ALERT_NARRATIVE_MAX 280

/* One alert (SPEC §4).  Owned by the window; valid until window_commit(). */
typedef struct alert {
    alert_type_t type;
    alert_trigger_t trigger;
    strview_t customer_id;
    double score;
    bool has_previous;
    double previous_score;
    strview_t event_id;           /* empty (len 0) for expiry */
    int64_t occurred_at;
    int32_t partition;
    int64_t offset;
    char reason[200];
    strview_t narrative;          /* empty when there is none */
} alert_t;

/* What a sink writes for one customer (SPEC §5), plus the serialized state
 * that lets another process resume it.  Valid only during the callback. */
typedef struct window_customer_view {
    strview_t customer_id;
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t streak, contacts, resolved, events;
    int at_risk;
    int64_t updated_at;
    strview_t last_event_id;
    bool route_human;             /* SPEC §10.1: route human (true) or ai */
    const char *route_reason;     /* "at_risk", "needs_human", "streak",
                                   * "sentiment", or "" for ai; static */
    const unsigned char *state;   /* window_load_customer() reads this back */
    size_t state_len;
    uint32_t changed;             /* BATCH_CF_* (batch/batch.h): the fields that may differ
                                   * from what the sink last wrote; BATCH_CF_ALL for a
                                   * customer new, loaded or evicted since the last
                                   * commit, and from window_get() */
} window_customer_view_t;

typedef struct window window_t;

typedef enum { WINDOW_SCORED = 0, WINDOW_LATE } window_result_t;

/* A new, empty window for partition `partition`.  The params are copied. */
window_t *window_new(const score_params_t *params, int32_t partition,
                     char *errstr, size_t errstr_size);
void window_free(window_t *w);

/* Apply one valid event at `offset` (SPEC §2.1).  Returns WINDOW_LATE when
 * the event was dropped as late, else WINDOW_SCORED.  Never fails: memory
 * exhaustion aborts (a daemon that cannot allocate 100 bytes cannot go on). */
window_result_t window_add(window_t *w, const event_t *e, int64_t offset);

/* Hint: an event for customer_id is coming soon (the consumer's next
 * message for this partition).  Starts fetching its table slot into the
 * CPU's cache; each of the next window_add() calls fetches one more link
 * (the customer's record, then its data), so that with a million
 * customers its window_add() finds them in the cache instead of waiting on
 * memory three times.  Changes nothing else: an id not tracked, or never
 * added, costs a wasted fetch.  Up to WINDOW_PREFETCH_MAX hints are kept;
 * an older one is dropped.  customer_id need not outlive the call. */
#define WINDOW_PREFETCH_MAX 4
void window_prefetch(window_t *w, strview_t customer_id);

/* Apply one tombstone at `offset` (SPEC §1.2), in partition order like an
 * event, but never late and without moving the watermark.  If the window
 * holds the customer it forgets it entirely (buckets, streak, at-risk,
 * cooldown, pending follow-up, narrative, route), subtracting its
 * contribution from the org deltas as an eviction does; a later event
 * brings it back as a new customer.  Alerts about it raised since the last
 * commit are dropped.  Held or not, the erasure is recorded for the sink
 * (window_erasure(), window_fill_batch()), which deletes the customer's
 * keys and the alerts naming it in this partition.  History deltas stay.
 * Returns true when the window held the customer (SPEC §8: "erased"),
 * false otherwise ("erased_unknown").  customer_id: 1 to
 * EVENT_CUSTOMER_ID_MAX bytes (the decoder checks it). */
bool window_erase(window_t *w, strview_t customer_id, int64_t offset);

/* The customers erased since the last window_commit(), in tombstone order
 * (a customer erased twice is listed twice).  Views valid until the next
 * window_erase() or window_commit(). */
size_t window_erasure_count(const window_t *w);
strview_t window_erasure(const window_t *w, size_t i);

/* The watermark T_p, or -1 before the first event. */
int64_t window_watermark(const window_t *w);
/* Set the watermark when resuming from stored state (before any add). */
void window_set_watermark(window_t *w, int64_t t);
/* True when the watermark moved since the last window_commit(). */
bool window_watermark_dirty(const window_t *w);

size_t window_customer_count(const window_t *w);
/* How many customers changed (written or evicted) since the last commit. */
size_t window_change_count(const window_t *w);

typedef void (*window_upsert_cb)(void *opaque, const window_customer_view_t *v);
typedef void (*window_delete_cb)(void *opaque, strview_t customer_id);

/* Calls `upsert` for each customer changed since the last commit and still
 * tracked, `delete` for each one evicted and not re-created since (not for
 * one erased: window_erasure() lists those).  Each customer appears once,
 * whatever the number of its changes.  An upsert's `changed` names the
 * public fields whose %.4f or integer text differs from the one written
 * by the last commit's batch: exact, so a feedback event does not name
 * contacts, resolved, ai_share or aht_ms.  An event always changes
 * `events` and an expiry always drops a bucket, so a changed customer
 * always has a field and its state to write. */
void window_foreach_change(window_t *w, window_upsert_cb upsert,
                           window_delete_cb del, void *opaque);

/* The alerts raised since the last commit, in the order they were raised. */
const alert_t *window_alerts(const window_t *w, size_t *count);

/* Copies the changes and alerts since the last commit into bp, one
 * partition of batch b (batch/batch.h): every changed customer still
 * tracked (its public fields and state blob), every evicted one, every
 * alert, the history and org deltas, every erasure (SPEC §1.2), and the
 * watermark when it moved.  The batch owns the copies; the
 * window is left as it is (window_commit() forgets the changes). */
void window_fill_batch(window_t *w, batch_t *b, batch_partition_t *bp);

/* History counters (SPEC §9.1) added since the last window_commit(),
 * coalesced: one entry per (bucket_start, field), grouped by bucket and
 * segment in the order each was first touched.  `field` is
 * `<CHANNEL>:<HANDLER>:<counter>` or `EXPIRY:<alert type>`; `bucket_start`
 * is S = b(t) * bucket_ms, the hash `<prefix>history:<S>`.  Deltas are
 * never negative except `sent_sum` (which may also be 0), and saturate at
 * the int64 limits (an `aht_sum` of huge handle times; docs/DESIGN.md
 * §3a).  Owned by the window; valid until the next window_add(),
 * window_history_deltas() or window_commit(). */
#define WINDOW_HIST_FIELD_MAX 48
typedef struct window_hist_delta {
    int64_t bucket_start;
    char field[WINDOW_HIST_FIELD_MAX];   /* NUL-terminated */
    int64_t delta;
} window_hist_delta_t;

const window_hist_delta_t *window_history_deltas(window_t *w, size_t *count);

/* The organisation counters (SPEC §9.2), in this order. */
#define WINDOW_ORG_FIELDS 14
extern const char *const window_org_field_names[WINDOW_ORG_FIELDS];

/* What `<prefix>org` must change by to account for this partition's
 * changes since the last window_commit(): the sum over changed customers of
 * their contribution now minus their contribution as last written (0 for an
 * evicted customer now, 0 for a new one before).  Fills out[] in the order
 * of window_org_field_names; a field may be 0. */
void window_org_deltas(const window_t *w, int64_t out[WINDOW_ORG_FIELDS]);

/* Forget the changes, alerts, history and org deltas: the sink has written
 * them (they are in a batch, or written). */
void window_commit(window_t *w);

/* Frees what the change lists keep for the next batch (window_commit()
 * keeps room for up to a quarter of the customers, so that a window
 * flushed in large batches does not regrow its lists each time).  For a
 * window with no change pending, idle for a while; returns the bytes
 * freed (see alloc_released() in common/alloc.h). */
size_t window_release(window_t *w);

/* Restore one customer from a state blob written by the upsert callback.
 * Call after window_set_watermark() and before any window_add().  Returns 0,
 * or -1 with errstr on a blob that does not parse (the version is checked). */
int window_load_customer(window_t *w, strview_t customer_id,
                         const unsigned char *state, size_t state_len,
                         char *errstr, size_t errstr_size);

/* The two callbacks of a sink loader (batch/sink.h's sink_loader_t) that
 * restore a claimed partition into the window passed as opaque, which
 * must be new and empty: the watermark (-1: none) first, then each
 * customer (one handed twice keeps its first copy).  0, or -1 with errstr
 * on a state that does not load. */
void window_restore_watermark(void *opaque, int64_t watermark);
int window_restore_customer(void *opaque, const char *customer_id, size_t id_len,
                            const unsigned char *state, size_t state_len, char *errstr,
                            size_t errstr_size);

/* Look up a customer's current view (for tests and tools).  Returns false
 * when the customer is not tracked.  The view is valid until the next call
 * on this window. */
bool window_get(window_t *w, strview_t customer_id, window_customer_view_t *out);

#endif
