/*
 * model.h — a reference model of the scorer (SPEC §2–4, §9, §10), written
 * from the spec and docs/DESIGN.md §3 alone, without looking at
 * scoring/window.c, so that a differential test can compare the two.
 *
 * It is meant to be obviously correct, not fast: per customer a plain array
 * of per-bucket sums, re-scored from scratch on every change, expiry by a
 * scan of every customer in customer_id byte order.  It owns copies of
 * every string it keeps.  Test code only; one thread per model.
 */
#ifndef RAPPORT_TEST_MODEL_H
#define RAPPORT_TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scoring/event.h"
#include "scoring/window.h"

/* One alert as the model raises it; strings are owned by the model and
 * valid until model_free(). */
typedef struct model_alert {
    alert_type_t type;
    alert_trigger_t trigger;
    strview_t customer_id;
    double score;
    bool has_previous;
    double previous_score;
    strview_t event_id;           /* len 0 for expiry */
    int64_t occurred_at;
    int32_t partition;
    int64_t offset;
    strview_t narrative;          /* len 0 when there is none */
} model_alert_t;

/* One tracked customer as of its last re-score (SPEC §5 fields). */
typedef struct model_customer {
    strview_t customer_id;
    double ci, resolution, sentiment, loyalty, ai_share, aht_ms;
    int64_t streak, contacts, resolved, events;
    int at_risk;
    int64_t updated_at;
    strview_t last_event_id;
    bool route_human;             /* SPEC §10.1 */
    const char *route_reason;     /* static: "at_risk" ... or "" */
    bool pending;                 /* SPEC §10.2 */
    int64_t pending_since;
} model_customer_t;

/* One history counter (SPEC §9.1): its total over every event since
 * model_new(), saturated to int64 (the model counts in 128 bits). */
typedef struct model_hist {
    int64_t bucket_start;
    char field[WINDOW_HIST_FIELD_MAX];
    int64_t total;
} model_hist_t;

/* What a sink would be told about a customer since the last model_commit(). */
typedef enum { MODEL_UNCHANGED = 0, MODEL_UPSERT, MODEL_DELETE } model_change_t;

typedef struct model model_t;

/* A new, empty model of partition `partition`; params are copied.  Aborts
 * on memory exhaustion (test code). */
model_t *model_new(const score_params_t *params, int32_t partition);
void model_free(model_t *m);

/* Apply one valid event at `offset` (SPEC §2.1).  Copies what it keeps. */
window_result_t model_add(model_t *m, const event_t *e, int64_t offset);

/* T_p, or -1 before the first event. */
int64_t model_watermark(const model_t *m);

/* Every alert raised since model_new() and not erased since (what the
 * stream holds, SPEC §1.2), in order.  Valid until the next model_add() or
 * model_erase(). */
const model_alert_t *model_alerts(const model_t *m, size_t *count);
/* The tail of model_alerts() raised since the last model_commit(). */
const model_alert_t *model_alerts_since_commit(const model_t *m, size_t *count);

/* Apply one tombstone at `offset` (SPEC §1.2).  Returns true when the
 * model held the customer ("erased"), false otherwise ("erased_unknown"). */
bool model_erase(model_t *m, strview_t customer_id, int64_t offset);
/* The tombstones since the last model_commit(), in order (one erased twice
 * is listed twice).  Owned by the model, valid until the next call on it. */
const strview_t *model_erasures(const model_t *m, size_t *count);
/* How many customers were held when erased since the last model_commit()
 * and have not come back. */
size_t model_erased_gone_count(const model_t *m);

size_t model_customer_count(const model_t *m);
/* Every tracked customer, in customer_id byte order.  The array is owned
 * by the model and valid until the next call on it. */
const model_customer_t *model_customers(model_t *m, size_t *count);
/* Looks up one customer; false when it is not tracked. */
bool model_get(const model_t *m, strview_t customer_id, model_customer_t *out);

/* Customers evicted since model_new() and not re-created since, in
 * eviction order.  Owned by the model, valid until the next call on it. */
const strview_t *model_evicted(const model_t *m, size_t *count);

/* How many evictions happened since model_new(), re-created ones too. */
size_t model_eviction_count(const model_t *m);
/* How many of them ended a pending follow-up (SPEC §10.2). */
size_t model_pending_eviction_count(const model_t *m);

/* The change set since the last model_commit(), as window_foreach_change()
 * reports it: upsert for every customer re-scored and still tracked,
 * delete for every customer evicted and not re-created since.  The count
 * also includes the customers held when erased and not back, which
 * foreach does not report (they go with the erasures). */
model_change_t model_change(const model_t *m, strview_t customer_id);
size_t model_change_count(const model_t *m);
bool model_watermark_dirty(const model_t *m);
void model_commit(model_t *m);

/* Every history counter ever added to, sorted by (bucket_start, field).
 * Valid until the next model_add(). */
const model_hist_t *model_history(model_t *m, size_t *count);
/* One counter's total; 0 when it was never added to. */
int64_t model_history_get(const model_t *m, int64_t bucket_start, const char *field);

/* The organisation (SPEC §9.2) computed from scratch over the tracked
 * customers, in the order of window_org_field_names. */
void model_org(const model_t *m, int64_t out[WINDOW_ORG_FIELDS]);

/* C(x) of SPEC §9: the %.4f text of x without its point, as an integer. */
int64_t model_c(double x);

#endif
