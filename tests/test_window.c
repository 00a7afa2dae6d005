/*
 * test_window.c — scoring/window.c against numbers computed by hand from
 * SPEC §2–4.  Each scenario is a table of steps: an event, the expected ci
 * (or NAN to skip), and the alerts it must raise.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "scoring/window.h"

#define DAY 86400000LL
#define HOUR 3600000LL
#define NONE_F NAN

/* A compact event description for tables. */
typedef struct ev {
    const char *cid;
    int64_t t;
    event_kind_t kind;
    event_handler_t by;
    tri_t resolved;
    double sentiment; /* NAN: none */
    int nps;          /* -1: none */
    int csat;         /* -1: none */
    const char *text; /* NULL: none */
} ev_t;

typedef struct step {
    ev_t e;
    double ci;            /* expected ci of e's customer after it; NAN: don't check */
    const char *alerts;   /* expected alert types, space separated, in order; "" none */
} step_t;

static event_t make_event(const ev_t *d, char *idbuf, size_t idsize, int n) {
    event_t e;
    memset(&e, 0, sizeof(e));
    snprintf(idbuf, idsize, "evt-%s-%d", d->cid, n);
    e.event_id = (strview_t){idbuf, strlen(idbuf)};
    e.customer_id = (strview_t){d->cid, strlen(d->cid)};
    e.occurred_at = d->t;
    e.kind = d->kind;
    e.channel = CHANNEL_CHAT;
    e.handled_by = d->by;
    e.resolved = d->resolved;
    e.has_sentiment = !isnan(d->sentiment);
    e.sentiment = (float)d->sentiment;
    e.has_nps = d->nps >= 0;
    e.nps = d->nps;
    e.has_csat = d->csat >= 0;
    e.csat = d->csat;
    e.feedback_text = d->text ? (strview_t){d->text, strlen(d->text)} : (strview_t){NULL, 0};
    return e;
}

static window_t *new_window(const score_params_t *p) {
    char err[128];
    score_params_t def;
    score_params_default(&def);
    window_t *w = window_new(p ? p : &def, 0, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    return w;
}

static double ci_of(window_t *w, const char *cid) {
    window_customer_view_t v;
    cr_assert(window_get(w, (strview_t){cid, strlen(cid)}, &v), "%s not tracked", cid);
    return v.ci;
}

/* Alert types raised since the last commit, space separated. */
static void alert_types(window_t *w, char *out, size_t size) {
    size_t n, o = 0;
    const alert_t *a = window_alerts(w, &n);
    out[0] = '\0';
    for (size_t i = 0; i < n && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? " " : "", alert_type_names[a[i].type]);
}

static void run_steps(window_t *w, const step_t *steps, size_t n) {
    char id[64], got[256];
    for (size_t i = 0; i < n; i++) {
        event_t e = make_event(&steps[i].e, id, sizeof(id), (int)i);
        window_add(w, &e, (int64_t)i);
        if (!isnan(steps[i].ci))
            cr_assert_float_eq(ci_of(w, steps[i].e.cid), steps[i].ci, 0.005,
                               "step %zu: ci %.4f, expected %.2f", i, ci_of(w, steps[i].e.cid),
                               steps[i].ci);
        alert_types(w, got, sizeof(got));
        cr_assert_str_eq(got, steps[i].alerts, "step %zu: alerts '%s', expected '%s'", i, got,
                         steps[i].alerts);
        window_commit(w);
    }
}

#define AI_FAIL(c, t, s) {c, t, KIND_CONTACT, HANDLER_AI, TRI_FALSE, s, -1, -1, NULL}

/* The story of the issue: one customer, one event a day, defaults. */
Test(window, billing_error_story) {
    const step_t steps[] = {
        {AI_FAIL("c1", 0 * DAY, -0.3), 39.875, ""},
        {AI_FAIL("c1", 1 * DAY, -0.5), 31.60, "churn_risk"},
        {AI_FAIL("c1", 2 * DAY, -0.7), 24.25, "needs_human"},
        {{"c1", 3 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.6, -1, -1, NULL}, 42.36, ""},
        {{"c1", 4 * DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.8, 10, -1, NULL}, 47.85, ""},
        {{"c1", 5 * DAY, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL}, 50.10,
         "recovered"},
    };
    window_t *w = new_window(NULL);
    run_steps(w, steps, sizeof(steps) / sizeof(steps[0]));
    window_free(w);
}

/* Alert fields: previous score, reason, trigger, offset, narrative. */
Test(window, alert_fields) {
    window_t *w = new_window(NULL);
    char id[64];
    const ev_t evs[] = {
        {"c1", 0, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.3, -1, -1, "charged twice"},
        {"c1", DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.5, -1, -1, NULL},
        {"c1", 2 * DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.7, -1, -1, NULL},
    };
    for (int i = 0; i < 3; i++) {
        event_t e = make_event(&evs[i], id, sizeof(id), i);
        window_add(w, &e, 100 + i);
    }
    size_t n;
    const alert_t *a = window_alerts(w, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(a[0].type, ALERT_CHURN_RISK);
    cr_assert(a[0].has_previous);
    cr_assert_float_eq(a[0].previous_score, 39.875, 1e-3);
    cr_assert_eq(a[0].trigger, TRIGGER_EVENT);
    cr_assert_eq(a[0].offset, 101);
    cr_assert_eq(a[0].occurred_at, DAY);
    cr_assert_eq(a[0].event_id.len, strlen("evt-c1-1"));
    cr_assert_eq(memcmp(a[0].event_id.ptr, "evt-c1-1", a[0].event_id.len), 0);
    cr_assert_eq(a[1].type, ALERT_NEEDS_HUMAN);
    cr_assert_str_eq(a[1].reason, "3 unresolved AI contacts in a row; sentiment -0.70");
    cr_assert_eq(a[1].narrative.len, strlen("charged twice"));
    cr_assert_eq(memcmp(a[1].narrative.ptr, "charged twice", a[1].narrative.len), 0);
    window_free(w);
}

/* A new customer's first alert has no previous score. */
Test(window, first_alert_has_no_previous) {
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 45; /* a single bad contact is enough */
    window_t *w = new_window(&p);
    char id[64];
    ev_t d = AI_FAIL("c9", 0, -0.9);
    event_t e = make_event(&d, id, sizeof(id), 0);
    window_add(w, &e, 0);
    size_t n;
    const alert_t *a = window_alerts(w, &n);
    cr_assert_eq(n, 2); /* churn_risk, then needs_human (sentiment -0.9) */
    cr_assert_eq(a[0].type, ALERT_CHURN_RISK);
    cr_assert_not(a[0].has_previous);
    cr_assert_eq(a[1].type, ALERT_NEEDS_HUMAN);
    cr_assert_str_eq(a[1].reason, "AI contact with sentiment -0.90, at or below -0.6");
    window_free(w);
}

typedef struct changes {
    char upserts[512];
    char deletes[512];
} changes_t;

static void on_upsert(void *op, const window_customer_view_t *v) {
    changes_t *c = op;
    size_t o = strlen(c->upserts);
    snprintf(c->upserts + o, sizeof(c->upserts) - o, "%s%.*s", o ? " " : "",
             (int)v->customer_id.len, v->customer_id.ptr);
}

static void on_delete(void *op, strview_t id) {
    changes_t *c = op;
    size_t o = strlen(c->deletes);
    snprintf(c->deletes + o, sizeof(c->deletes) - o, "%s%.*s", o ? " " : "", (int)id.len, id.ptr);
}

static void add(window_t *w, const ev_t *d, int64_t offset) {
    char id[64];
    event_t e = make_event(d, id, sizeof(id), (int)offset);
    window_add(w, &e, offset);
}

/* a and b hold the customer alike, or both do not hold it; returns
 * whether they hold it. */
static bool same_customer(window_t *a, window_t *b, strview_t id) {
    window_customer_view_t va, vb;
    bool ha = window_get(a, id, &va), hb = window_get(b, id, &vb);
    cr_assert_eq(ha, hb, "%.*s", (int)id.len, id.ptr);
    if (!ha) return false;
    cr_assert_eq(va.ci, vb.ci);
    cr_assert_eq(va.sentiment, vb.sentiment);
    cr_assert_eq(va.streak, vb.streak);
    cr_assert_eq(va.events, vb.events);
    cr_assert_eq(va.at_risk, vb.at_risk);
    cr_assert_eq(va.updated_at, vb.updated_at);
    cr_assert_eq(va.state_len, vb.state_len);
    return true;
}

#define FEEDBACK(c, t) {c, t, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.5, -1, -1, NULL}

/* Expiry: buckets leave, customers with none left are evicted (deleted,
 * no alert), the others re-scored; untouched customers are not written. */
Test(window, expiry_and_eviction) {
    window_t *w = new_window(NULL);
    const ev_t a0 = FEEDBACK("a", 0), b10 = FEEDBACK("b", 10 * DAY), a5 = FEEDBACK("a", 5 * DAY),
               c30 = FEEDBACK("c", 30 * DAY + 5);
    add(w, &a0, 0);
    add(w, &b10, 1);
    add(w, &a5, 2);
    window_commit(w);
    cr_assert_eq(window_customer_count(w), 2);
    /* Watermark to day 30: window is days 1..30; a loses day 0 and keeps
     * day 5, so it is re-scored; b is untouched. */
    add(w, &c30, 3);
    changes_t ch = {"", ""};
    window_foreach_change(w, on_upsert, on_delete, &ch);
    cr_assert_str_eq(ch.upserts, "a c");
    cr_assert_str_eq(ch.deletes, "");
    window_customer_view_t v;
    cr_assert(window_get(w, (strview_t){"a", 1}, &v));
    cr_assert_eq(v.events, 1);
    cr_assert_eq(v.updated_at, 30 * DAY + 5);
    window_commit(w);
    /* Day 36: a's day 5 leaves -> evicted. */
    const ev_t c36 = FEEDBACK("c", 36 * DAY);
    add(w, &c36, 4);
    memset(&ch, 0, sizeof(ch));
    window_foreach_change(w, on_upsert, on_delete, &ch);
    cr_assert_str_eq(ch.deletes, "a");
    cr_assert_str_eq(ch.upserts, "c");
    cr_assert_not(window_get(w, (strview_t){"a", 1}, &v));
    size_t n;
    window_alerts(w, &n);
    cr_assert_eq(n, 0);
    window_commit(w);
    cr_assert_eq(window_customer_count(w), 2);
    window_free(w);
}

/* Evicted and back before the commit: one upsert, as a new customer. */
Test(window, evicted_then_back) {
    window_t *w = new_window(NULL);
    const ev_t a0 = FEEDBACK("a", 0), b40 = FEEDBACK("b", 40 * DAY), a40 = FEEDBACK("a", 40 * DAY);
    add(w, &a0, 0);
    window_commit(w);
    add(w, &b40, 1);
    add(w, &a40, 2);
    changes_t ch = {"", ""};
    window_foreach_change(w, on_upsert, on_delete, &ch);
    cr_assert_str_eq(ch.deletes, "");
    cr_assert_str_eq(ch.upserts, "a b");
    window_customer_view_t v;
    cr_assert(window_get(w, (strview_t){"a", 1}, &v));
    cr_assert_eq(v.events, 1);
    window_commit(w);
    window_free(w);
}

/* Late events are dropped; the window edge is inclusive. */
Test(window, late_events) {
    window_t *w = new_window(NULL);
    const ev_t x = FEEDBACK("x", 40 * DAY), late = FEEDBACK("y", 10 * DAY + DAY - 1),
               edge = FEEDBACK("y", 11 * DAY);
    add(w, &x, 0);
    char id[64];
    event_t e = make_event(&late, id, sizeof(id), 1);
    cr_assert_eq(window_add(w, &e, 1), WINDOW_LATE);
    e = make_event(&edge, id, sizeof(id), 2);
    cr_assert_eq(window_add(w, &e, 2), WINDOW_SCORED);
    cr_assert_eq(window_watermark(w), 40 * DAY);
    window_free(w);
}

/* The first event is never late, and the watermark never goes back. */
Test(window, first_event_and_watermark) {
    window_t *w = new_window(NULL);
    const ev_t a = FEEDBACK("a", 100 * DAY), b = FEEDBACK("b", 99 * DAY);
    add(w, &a, 0);
    add(w, &b, 1);
    cr_assert_eq(window_watermark(w), 100 * DAY);
    window_free(w);
}

/* The streak resets when its last failed contact leaves the window, which
 * re-scores the customer with trigger expiry (and may recover it). */
Test(window, streak_expires) {
    score_params_t p;
    score_params_default(&p);
    p.window_buckets = 3;
    window_t *w = new_window(&p);
    const ev_t f0 = AI_FAIL("s", 0, NONE_F), f1 = AI_FAIL("s", 10, NONE_F),
               fb = FEEDBACK("s", 2 * DAY), other = FEEDBACK("o", 3 * DAY);
    add(w, &f0, 0);
    add(w, &f1, 1);
    add(w, &fb, 2);
    window_customer_view_t v;
    window_get(w, (strview_t){"s", 1}, &v);
    cr_assert_eq(v.streak, 2);
    double before = v.ci;
    window_commit(w);
    add(w, &other, 3); /* window now days 1..3: day 0 leaves */
    window_get(w, (strview_t){"s", 1}, &v);
    cr_assert_eq(v.streak, 0);
    cr_assert_eq(v.contacts, 0);
    cr_assert_gt(v.ci, before);
    cr_assert_eq(v.updated_at, 3 * DAY);
    window_free(w);
}

/* A streak whose last failure is still in the window survives expiry. */
Test(window, streak_survives_when_last_failure_stays) {
    score_params_t p;
    score_params_default(&p);
    p.window_buckets = 3;
    window_t *w = new_window(&p);
    const ev_t f0 = AI_FAIL("s", 0, NONE_F), f1 = AI_FAIL("s", 2 * DAY, NONE_F),
               other = FEEDBACK("o", 3 * DAY);
    add(w, &f0, 0);
    add(w, &f1, 1);
    add(w, &other, 2);
    window_customer_view_t v;
    window_get(w, (strview_t){"s", 1}, &v);
    cr_assert_eq(v.streak, 2);
    cr_assert_eq(v.contacts, 1);
    window_free(w);
}

/* Expiry alerts: trigger expiry, the moving event's offset, T_p, no event_id. */
Test(window, expiry_alert_fields) {
    score_params_t p;
    score_params_default(&p);
    p.window_buckets = 2;
    window_t *w = new_window(&p);
    /* Day 0: a purchase lifts r; day 1 four AI failures put r at risk;
     * day 2 the purchase leaves the window -> lower ci, but it was at risk
     * already, so: use the opposite: failures on day 0 leave -> recovered. */
    const ev_t f[] = {AI_FAIL("r", 0, -0.9), AI_FAIL("r", 1, -0.9), AI_FAIL("r", 2, -0.9),
                      FEEDBACK("r", DAY), FEEDBACK("z", 2 * DAY + 7)};
    for (int i = 0; i < 5; i++) add(w, &f[i], i);
    window_commit(w);
    size_t n;
    window_customer_view_t v;
    window_get(w, (strview_t){"r", 1}, &v);
    cr_assert_eq(v.at_risk, 0, "r should have recovered when day 0 left");
    window_free(w);
    /* Same again, looking at the alert itself. */
    w = new_window(&p);
    for (int i = 0; i < 4; i++) add(w, &f[i], i);
    window_commit(w);
    add(w, &f[4], 77);
    const alert_t *a = window_alerts(w, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(a[0].type, ALERT_RECOVERED);
    cr_assert_eq(a[0].trigger, TRIGGER_EXPIRY);
    cr_assert_eq(a[0].offset, 77);
    cr_assert_eq(a[0].occurred_at, 2 * DAY + 7);
    cr_assert_eq(a[0].event_id.len, 0);
    window_free(w);
}

/* needs_human cooldown: within a day suppressed; an alert later than e
 * counts too. */
Test(window, needs_human_cooldown) {
    const step_t steps[] = {
        {AI_FAIL("h", 10 * DAY, -0.9), NONE_F, "needs_human"},
        {AI_FAIL("h", 10 * DAY + HOUR, -0.9), NONE_F, ""},
        {AI_FAIL("h", 11 * DAY, -0.9), NONE_F, "needs_human"}, /* 10d is not > 11d - 1d */
        {AI_FAIL("h", 11 * DAY + 1, -0.9), NONE_F, ""},
        {AI_FAIL("h", 12 * DAY + 1, -0.9), NONE_F, "needs_human"},
        {AI_FAIL("h", 10 * DAY + 2, -0.9), NONE_F, ""},          /* an alert later than e counts */
    };
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 0; /* keep churn alerts out of this test */
    window_t *w = new_window(&p);
    run_steps(w, steps, sizeof(steps) / sizeof(steps[0]));
    window_free(w);
}

/* needs_human only for AI contacts; resolved=null does not count toward
 * the streak rule; sentiment threshold inclusive on the widened float. */
Test(window, needs_human_conditions) {
    const step_t steps[] = {
        {{"n", 0, KIND_FEEDBACK, HANDLER_AI, TRI_FALSE, -0.9, -1, -1, NULL}, NONE_F, ""},
        {{"n", 1, KIND_CONTACT, HANDLER_HUMAN, TRI_FALSE, -0.9, -1, -1, NULL}, NONE_F, ""},
        {{"n", 2, KIND_CONTACT, HANDLER_AI, TRI_NULL, -0.5, -1, -1, NULL}, NONE_F, ""},
        {{"n", 3, KIND_CONTACT, HANDLER_AI, TRI_NULL, -0.6, -1, -1, NULL}, NONE_F, "needs_human"},
    };
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 0;
    window_t *w = new_window(&p);
    run_steps(w, steps, sizeof(steps) / sizeof(steps[0]));
    window_free(w);
}

/* Streak rules: AI+unresolved adds, resolved or human/hybrid resets,
 * anything else leaves it. */
Test(window, streak_rules) {
    struct {
        ev_t e;
        int streak;
    } t[] = {
        {AI_FAIL("s", 0, NONE_F), 1},
        {AI_FAIL("s", 1, NONE_F), 2},
        {{"s", 2, KIND_CONTACT, HANDLER_AI, TRI_NULL, NONE_F, -1, -1, NULL}, 2},
        {{"s", 3, KIND_CONTACT, HANDLER_NONE, TRI_FALSE, NONE_F, -1, -1, NULL}, 2},
        {{"s", 4, KIND_FEEDBACK, HANDLER_HUMAN, TRI_TRUE, NONE_F, -1, -1, NULL}, 2},
        {AI_FAIL("s", 5, NONE_F), 3},
        {{"s", 6, KIND_CONTACT, HANDLER_HYBRID, TRI_FALSE, NONE_F, -1, -1, NULL}, 0},
        {AI_FAIL("s", 7, NONE_F), 1},
        {{"s", 8, KIND_CONTACT, HANDLER_AI, TRI_TRUE, NONE_F, -1, -1, NULL}, 0},
    };
    window_t *w = new_window(NULL);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        add(w, &t[i].e, (int64_t)i);
        window_customer_view_t v;
        window_get(w, (strview_t){"s", 1}, &v);
        cr_assert_eq(v.streak, t[i].streak, "step %zu", i);
    }
    window_free(w);
}

/* Hysteresis: at risk stays at risk between 35 and 50; churn_risk fires
 * once; recovered at 50 exactly (as written). */
Test(window, hysteresis) {
    const step_t steps[] = {
        {AI_FAIL("y", 0, -0.3), 39.875, ""},
        {AI_FAIL("y", 1, -0.5), 31.60, "churn_risk"},
        {{"y", 2, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NONE_F, -1, -1, NULL}, NONE_F, ""},
        {AI_FAIL("y", 3, NONE_F), NONE_F, ""}, /* lower again: no second churn_risk */
    };
    window_t *w = new_window(NULL);
    run_steps(w, steps, 4);
    window_customer_view_t v;
    window_get(w, (strview_t){"y", 1}, &v);
    cr_assert_eq(v.at_risk, 1);
    window_free(w);
}

/* Loyalty signals: nps buckets, csat, purchase, cancellation; several per
 * event. */
Test(window, loyalty_signals) {
    struct {
        int nps, csat;
        event_kind_t kind;
        double loyalty; /* after this event alone, fresh customer */
    } t[] = {
        {10, -1, KIND_FEEDBACK, (1.0 / 4 + 1) / 2},
        {9, -1, KIND_FEEDBACK, (1.0 / 4 + 1) / 2},
        {8, -1, KIND_FEEDBACK, 0.5},
        {7, -1, KIND_FEEDBACK, 0.5},
        {6, -1, KIND_FEEDBACK, (-1.0 / 4 + 1) / 2},
        {0, -1, KIND_FEEDBACK, (-1.0 / 4 + 1) / 2},
        {-1, 5, KIND_FEEDBACK, (1.0 / 4 + 1) / 2},
        {-1, 4, KIND_FEEDBACK, (0.5 / 4 + 1) / 2},
        {-1, 1, KIND_FEEDBACK, (-1.0 / 4 + 1) / 2},
        {-1, -1, KIND_PURCHASE, (1.0 / 4 + 1) / 2},
        {-1, -1, KIND_CANCELLATION, (-1.0 / 4 + 1) / 2},
        {10, 2, KIND_CANCELLATION, ((1 - 0.5 - 1) / 6.0 + 1) / 2},
        {-1, -1, KIND_CONTACT, 0.5},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        window_t *w = new_window(NULL);
        ev_t d = {"l", 0, t[i].kind, HANDLER_NONE, TRI_NULL, NONE_F, t[i].nps, t[i].csat, NULL};
        add(w, &d, 0);
        window_customer_view_t v;
        window_get(w, (strview_t){"l", 1}, &v);
        cr_assert_float_eq(v.loyalty, t[i].loyalty, 1e-12, "case %zu: %f", i, v.loyalty);
        window_free(w);
    }
}

/* ai_share, aht_ms, and the window totals. */
Test(window, efficiency_view) {
    window_t *w = new_window(NULL);
    char id[64];
    ev_t d1 = AI_FAIL("e", 0, NONE_F), d2 = {"e", 1, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE,
                                             NONE_F, -1, -1, NULL},
         d3 = FEEDBACK("e", 2);
    event_t e = make_event(&d1, id, sizeof(id), 0);
    e.has_handle_time = true;
    e.handle_time_ms = 1000;
    window_add(w, &e, 0);
    e = make_event(&d2, id, sizeof(id), 1);
    e.has_handle_time = true;
    e.handle_time_ms = 4000;
    window_add(w, &e, 1);
    add(w, &d3, 2);
    window_customer_view_t v;
    window_get(w, (strview_t){"e", 1}, &v);
    cr_assert_float_eq(v.ai_share, 0.5, 1e-12);
    cr_assert_float_eq(v.aht_ms, 2500, 1e-9);
    cr_assert_eq(v.contacts, 2);
    cr_assert_eq(v.resolved, 1);
    cr_assert_eq(v.events, 3);
    cr_assert_eq(v.last_event_id.len, strlen("evt-e-2"));
    window_free(w);
}

/* The score is clamped to 0..100. */
Test(window, clamp) {
    score_params_t p;
    score_params_default(&p);
    p.streak_penalty = 100;
    window_t *w = new_window(&p);
    const ev_t d = AI_FAIL("z", 0, NONE_F);
    add(w, &d, 0);
    cr_assert_eq(ci_of(w, "z"), 0.0);
    window_free(w);
}

/* Thresholds compare the value as written (%.4f): 39.87499999… is written
 * 39.8750, which is not below 39.875. */
Test(window, threshold_as_written) {
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 39.875;
    window_t *w = new_window(&p);
    const ev_t d = AI_FAIL("q", 0, -0.3);
    add(w, &d, 0);
    double ci = ci_of(w, "q");
    cr_assert_lt(ci, 39.875, "the raw value is just below: %.17g", ci);
    size_t n;
    window_alerts(w, &n);
    cr_assert_eq(n, 0);
    window_free(w);
}

static const alert_t *only_alert(window_t *w) {
    size_t n;
    const alert_t *a = window_alerts(w, &n);
    cr_assert_eq(n, 1, "%zu alerts", n);
    return a;
}

/* The narrative: latest non-empty text in partition order, cut to 280
 * bytes on a character boundary, empty once its bucket left the window. */
Test(window, narrative) {
    char text[400];
    memset(text, 'a', 279);
    memcpy(text + 279, "\xc3\xa9tail", 7); /* é straddles byte 280 */
    text[286] = '\0';
    struct {
        const char *first;   /* text of the first event */
        const char *second;  /* text of a second, earlier-in-time event */
        size_t len;          /* expected narrative length */
        const char *prefix;  /* expected start */
    } t[] = {
        {"hello", NULL, 5, "hello"},
        {"hello", "", 5, "hello"},      /* empty text does not replace */
        {"old", "newer", 5, "newer"},   /* partition order, not time order */
        {text, NULL, 279, "aaa"},
        {"\xe2\x82\xac", NULL, 3, "\xe2\x82\xac"},
    };
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        window_t *w = new_window(&p);
        ev_t d = {"n", 5 * DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, t[i].first};
        add(w, &d, 0);
        if (t[i].second) {
            ev_t d2 = {"n", 4 * DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1,
                       t[i].second};
            add(w, &d2, 1);
        }
        window_commit(w);
        ev_t trigger = AI_FAIL("n", 5 * DAY + 1, -0.9);
        add(w, &trigger, 2);
        const alert_t *a = only_alert(w);
        cr_assert_eq(a->narrative.len, t[i].len, "case %zu: %zu", i, a->narrative.len);
        cr_assert_eq(memcmp(a->narrative.ptr, t[i].prefix, strlen(t[i].prefix)), 0);
        window_free(w);
    }
    /* Its bucket leaves the window: empty, no fallback to an older text. */
    p.window_buckets = 2;
    window_t *w = new_window(&p);
    ev_t old = {"n", 0, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, "old text"};
    ev_t keep = FEEDBACK("n", 1 * DAY);
    ev_t later = AI_FAIL("n", 2 * DAY, -0.9);
    add(w, &old, 0);
    add(w, &keep, 1);
    window_commit(w);
    add(w, &later, 2);
    cr_assert_eq(only_alert(w)->narrative.len, 0);
    window_free(w);
}

/* State blobs: a window rebuilt from its changes behaves like the original. */
typedef struct copy_ctx {
    window_t *dst;
} copy_ctx_t;

static void copy_upsert(void *op, const window_customer_view_t *v) {
    copy_ctx_t *c = op;
    char err[128];
    cr_assert_eq(window_load_customer(c->dst, v->customer_id, v->state, v->state_len, err,
                                      sizeof(err)), 0, "%s", err);
}

Test(window, state_round_trip) {
    window_t *a = new_window(NULL);
    const ev_t evs[] = {
        AI_FAIL("c1", 0, -0.3),
        AI_FAIL("c1", DAY, -0.5),
        {"c2", DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.9, 10, 4, "love it \xe2\x9c\x93"},
        {"c3", 2 * DAY, KIND_CONTACT, HANDLER_HYBRID, TRI_TRUE, NONE_F, -1, -1, NULL},
        AI_FAIL("c1", 2 * DAY, -0.7),
    };
    for (int i = 0; i < 5; i++) add(a, &evs[i], i);
    window_t *b = new_window(NULL);
    window_set_watermark(b, window_watermark(a));
    copy_ctx_t ctx = {b};
    window_foreach_change(a, copy_upsert, NULL, &ctx);
    window_commit(a);
    cr_assert_eq(window_customer_count(b), 3);
    /* The same further events give the same views and alerts. */
    const ev_t more[] = {
        AI_FAIL("c1", 3 * DAY, -0.8),
        {"c1", 3 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.6, -1, -1, NULL},
        {"c2", 33 * DAY, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL},
    };
    for (int i = 0; i < 3; i++) {
        add(a, &more[i], 10 + i);
        add(b, &more[i], 10 + i);
        size_t na, nb;
        const alert_t *xa = window_alerts(a, &na), *xb = window_alerts(b, &nb);
        cr_assert_eq(na, nb, "step %d", i);
        for (size_t k = 0; k < na; k++) {
            cr_assert_eq(xa[k].type, xb[k].type);
            cr_assert_eq(xa[k].score, xb[k].score);
            cr_assert_eq(xa[k].previous_score, xb[k].previous_score);
            cr_assert_eq(xa[k].narrative.len, xb[k].narrative.len);
        }
        window_commit(a);
        window_commit(b);
    }
    const char *ids[] = {"c1", "c2", "c3"};
    for (int i = 0; i < 3; i++) same_customer(a, b, (strview_t){ids[i], 2});
    window_free(a);
    window_free(b);
}

/* Corrupt blobs are refused, never crash, never leak. */
Test(window, state_blob_rejects_garbage) {
    window_t *a = new_window(NULL);
    const ev_t d = {"g", 0, KIND_FEEDBACK, HANDLER_AI, TRI_FALSE, 0.1, 9, 3, "text"};
    add(a, &d, 0);
    window_customer_view_t v;
    window_get(a, (strview_t){"g", 1}, &v);
    unsigned char blob[512];
    size_t len = v.state_len;
    memcpy(blob, v.state, len);
    char err[128];
    for (size_t cut = 0; cut < len; cut++) {
        window_t *b = new_window(NULL);
        cr_assert_eq(window_load_customer(b, (strview_t){"g", 1}, blob, cut, err, sizeof(err)), -1,
                     "cut %zu", cut);
        cr_assert_eq(window_customer_count(b), 0);
        window_free(b);
    }
    blob[len] = 0;
    window_t *b = new_window(NULL);
    cr_assert_eq(window_load_customer(b, (strview_t){"g", 1}, blob, len + 1, err, sizeof(err)), -1);
    window_free(b);
    window_free(a);
}

/* Many customers, many watermark moves: the table grows, expiry keeps the
 * count bounded, and nothing leaks (run under ASan/valgrind). */
Test(window, churn_of_customers) {
    score_params_t p;
    score_params_default(&p);
    p.window_buckets = 5;
    window_t *w = new_window(&p);
    char cid[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(cid, sizeof(cid), "cust-%d", i);
        ev_t d = {cid, (int64_t)(i / 1000) * DAY + i, KIND_CONTACT, HANDLER_AI,
                  (i % 3) ? TRI_FALSE : TRI_TRUE, -0.2, -1, -1, NULL};
        add(w, &d, i);
        if (i % 97 == 0) window_commit(w);
    }
    window_commit(w);
    cr_assert_leq(window_customer_count(w), 5000);
    cr_assert_geq(window_customer_count(w), 4000);
    window_free(w);
}

/* ---- SPEC §9 and §10: route, follow-through, history, org ---- */

static int64_t hist_get(window_t *w, int64_t bucket_start, const char *field) {
    size_t n;
    const window_hist_delta_t *d = window_history_deltas(w, &n);
    int64_t found = 0;
    int times = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i].bucket_start == bucket_start && strcmp(d[i].field, field) == 0) {
            found = d[i].delta;
            times++;
        }
    }
    cr_assert_leq(times, 1, "%s at %lld appears %d times", field, (long long)bucket_start, times);
    return found;
}

static int64_t org_get(const window_t *w, const char *name) {
    int64_t d[WINDOW_ORG_FIELDS];
    window_org_deltas(w, d);
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++)
        if (strcmp(window_org_field_names[k], name) == 0) return d[k];
    cr_assert_fail("no org field %s", name);
    return 0;
}

static void route_of(window_t *w, const char *cid, bool *human, const char **reason) {
    window_customer_view_t v;
    cr_assert(window_get(w, (strview_t){cid, strlen(cid)}, &v), "%s not tracked", cid);
    cr_assert_not_null(v.route_reason);
    *human = v.route_human;
    *reason = v.route_reason;
}

#define EV(c, t, k, by, res, s) {c, t, k, by, res, s, -1, -1, NULL}
#define PURCHASE(c, t) EV(c, t, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F)
#define SENT(c, t, s) EV(c, t, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, s)

/* SPEC §10.1: the first rule that holds, after the alerts. */
Test(window, route_rules) {
    struct {
        const char *name;
        int window_buckets;        /* 0: default */
        double route_sentiment;    /* NAN: default */
        ev_t ev[4];
        int nev;
        const char *reason;        /* of customer "r" after the events */
    } t[] = {
        /* at risk and a streak of 2: rule 1 first */
        {"at_risk", 0, NAN, {AI_FAIL("r", 0, -0.3), AI_FAIL("r", DAY, -0.5)}, 2, "at_risk"},
        /* needs_human by sentiment at ci 37.625 (not at risk): pending */
        {"needs_human", 0, NAN, {AI_FAIL("r", 0, -0.9)}, 1, "needs_human"},
        /* a purchase keeps ci at 37.75 with a streak of 2, no needs_human */
        {"streak", 0, NAN,
         {PURCHASE("r", 0), AI_FAIL("r", 1, NONE_F), AI_FAIL("r", 2, NONE_F)}, 3, "streak"},
        {"streak_1", 0, NAN, {PURCHASE("r", 0), AI_FAIL("r", 1, NONE_F)}, 2, ""},
        /* -0.5f is exactly -0.5: at or below */
        {"sentiment", 0, NAN, {SENT("r", 0, -0.5)}, 1, "sentiment"},
        {"sentiment_above", 0, NAN, {SENT("r", 0, -0.49)}, 1, ""},
        /* the float widened: -0.7f is -0.69999998..., above -0.7 */
        {"sentiment_widened", 0, -0.7, {SENT("r", 0, -0.7)}, 1, ""},
        {"sentiment_widened_at", 0, -0.699999988079071, {SENT("r", 0, -0.7)}, 1, "sentiment"},
        /* the latest in partition order, not in time; an event without a
         * sentiment does not replace it */
        {"latest_by_order", 0, NAN,
         {SENT("r", 5 * DAY, 0.5), SENT("r", 4 * DAY, -0.9), PURCHASE("r", 5 * DAY)}, 3,
         "sentiment"},
        {"latest_positive", 0, NAN, {SENT("r", 0, -0.9), SENT("r", 1, 0.4)}, 2, ""},
        /* its bucket left the window: no fallback to an older one */
        {"sentiment_gone", 2, NAN,
         {SENT("r", 0, -0.9), PURCHASE("r", DAY), SENT("x", 2 * DAY, 0.1)}, 3, ""},
        {"sentiment_kept", 2, NAN,
         {PURCHASE("r", 0), SENT("r", DAY, -0.9), SENT("x", 2 * DAY, 0.1)}, 3, "sentiment"},
        {"ai", 0, NAN, {SENT("r", 0, 0.2), PURCHASE("r", 1)}, 2, ""},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        score_params_t p;
        score_params_default(&p);
        if (t[i].window_buckets) p.window_buckets = t[i].window_buckets;
        if (!isnan(t[i].route_sentiment)) p.route_sentiment = t[i].route_sentiment;
        window_t *w = new_window(&p);
        for (int k = 0; k < t[i].nev; k++) add(w, &t[i].ev[k], k);
        bool human;
        const char *reason;
        route_of(w, "r", &human, &reason);
        cr_expect_str_eq(reason, t[i].reason, "%s: reason '%s'", t[i].name, reason);
        cr_expect_eq(human, t[i].reason[0] != '\0', "%s: route_human %d", t[i].name, human);
        window_free(w);
    }
}

/* route_streak and route_sentiment move rules 3 and 4. */
Test(window, route_params) {
    score_params_t p;
    score_params_default(&p);
    p.route_streak = 1;
    window_t *w = new_window(&p);
    const ev_t e[] = {PURCHASE("r", 0), AI_FAIL("r", 1, NONE_F)};
    add(w, &e[0], 0);
    add(w, &e[1], 1);
    bool human;
    const char *reason;
    route_of(w, "r", &human, &reason);
    cr_expect_str_eq(reason, "streak");
    window_free(w);

    char err[128];
    p.route_streak = 0;
    cr_expect_null(window_new(&p, 0, err, sizeof(err)));
}

/* SPEC §10.2: pending since the first needs_human; the next CONTACT by a
 * person ends it, in its own bucket and segment, with the wait. */
Test(window, follow_through) {
    window_t *w = new_window(NULL);
    /* three purchases keep ci above 35; needs_human at 10d (pending since
     * 10d); again at 11d + 1 (cooldown over): the first since stays */
    const ev_t pu[] = {PURCHASE("f", 9 * DAY), PURCHASE("f", 9 * DAY), PURCHASE("f", 9 * DAY)};
    for (int i = 0; i < 3; i++) add(w, &pu[i], 10 + i);
    const ev_t a = AI_FAIL("f", 10 * DAY, -0.9), b = AI_FAIL("f", 11 * DAY + 1, -0.9);
    add(w, &a, 0);
    add(w, &b, 1);
    char got[128];
    alert_types(w, got, sizeof(got));
    cr_assert_str_eq(got, "needs_human needs_human");
    bool human;
    const char *reason;
    route_of(w, "f", &human, &reason);
    cr_expect_str_eq(reason, "needs_human");
    window_commit(w);
    /* neither feedback from a person nor an AI contact ends it */
    const ev_t fb = EV("f", 11 * DAY + 2, KIND_FEEDBACK, HANDLER_HUMAN, TRI_NULL, 0.9);
    const ev_t ai = EV("f", 11 * DAY + 3, KIND_CONTACT, HANDLER_AI, TRI_TRUE, 0.9);
    add(w, &fb, 2);
    add(w, &ai, 3);
    cr_expect_eq(hist_get(w, 11 * DAY, "CHAT:HUMAN:followups"), 0);
    cr_expect_eq(hist_get(w, 11 * DAY, "CHAT:AI:followups"), 0);
    route_of(w, "f", &human, &reason);
    cr_expect_str_eq(reason, "needs_human");
    window_commit(w);
    /* a HYBRID contact 2 days 5 h after the first needs_human ends it */
    const ev_t hy = EV("f", 12 * DAY + 5 * HOUR, KIND_CONTACT, HANDLER_HYBRID, TRI_TRUE, NONE_F);
    add(w, &hy, 4);
    cr_expect_eq(hist_get(w, 12 * DAY, "CHAT:HYBRID:followups"), 1);
    cr_expect_eq(hist_get(w, 12 * DAY, "CHAT:HYBRID:followup_ms"), 2 * DAY + 5 * HOUR);
    route_of(w, "f", &human, &reason);
    cr_expect_str_neq(reason, "needs_human");
    window_commit(w);
    /* only once */
    const ev_t hu = EV("f", 12 * DAY + 6 * HOUR, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NONE_F);
    add(w, &hu, 5);
    cr_expect_eq(hist_get(w, 12 * DAY, "CHAT:HUMAN:followups"), 0);
    window_free(w);

    /* a person's contact earlier in time than the needs_human: a wait of 0 */
    w = new_window(NULL);
    const ev_t c1 = AI_FAIL("g", 5 * DAY, -0.9);
    const ev_t c2 = EV("g", 4 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_FALSE, NONE_F);
    add(w, &c1, 0);
    add(w, &c2, 1);
    cr_expect_eq(hist_get(w, 4 * DAY, "CHAT:HUMAN:followups"), 1);
    cr_expect_eq(hist_get(w, 4 * DAY, "CHAT:HUMAN:followup_ms"), 0);
    window_free(w);
}

/* Eviction ends a pending follow-up with none: a customer back later is
 * new. */
Test(window, follow_through_ended_by_eviction) {
    window_t *w = new_window(NULL);
    const ev_t a = AI_FAIL("e", 0, -0.9), x = SENT("x", 40 * DAY, 0.1),
               hu = EV("e", 40 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NONE_F);
    add(w, &a, 0);
    window_commit(w);
    add(w, &x, 1);                 /* e's only bucket leaves: evicted */
    window_customer_view_t v;
    cr_assert_not(window_get(w, (strview_t){"e", 1}, &v));
    add(w, &hu, 2);
    cr_expect_eq(hist_get(w, 40 * DAY, "CHAT:HUMAN:followups"), 0);
    cr_expect_eq(hist_get(w, 40 * DAY, "CHAT:HUMAN:contacts"), 1);
    window_free(w);
}

/* SPEC §9.1: round(10000 · sentiment), half away from zero, of the float
 * widened to double. */
Test(window, history_sentiment_rounding) {
    const struct {
        float s;
        int64_t want;
    } t[] = {
        {-0.70000005f, -7000},   /* -7000.00047... */
        {-0.7f, -7000},          /* -6999.9998... */
        {0.03125f, 313},         /* 312.5 exactly: away from zero */
        {-0.03125f, -313},
        {-0.65625f, -6563},      /* -6562.5 */
        {0.00005f, 0},           /* 0.49999998... */
        {1.0f, 10000},
        {-1.0f, -10000},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        window_t *w = new_window(NULL);
        ev_t d = SENT("s", 3 * DAY + 1, 0);
        char id[64];
        event_t e = make_event(&d, id, sizeof(id), 0);
        e.sentiment = t[i].s;
        window_add(w, &e, 0);
        cr_expect_eq(hist_get(w, 3 * DAY, "CHAT:NONE:sent_sum"), t[i].want, "case %zu: %lld", i,
                     (long long)hist_get(w, 3 * DAY, "CHAT:NONE:sent_sum"));
        cr_expect_eq(hist_get(w, 3 * DAY, "CHAT:NONE:sent_n"), 1);
        window_free(w);
    }
}

/* SPEC §9.1: every counter of an event, in its bucket and segment,
 * coalesced over a flush; C(ci) of 31.6 is 316000. */
Test(window, history_counters) {
    window_t *w = new_window(NULL);
    const ev_t a = AI_FAIL("c1", 0, -0.3), b = AI_FAIL("c1", DAY, -0.5);
    add(w, &a, 0);
    char id[64];
    event_t e = make_event(&b, id, sizeof(id), 1);
    e.has_handle_time = true;
    e.handle_time_ms = 90000;
    window_add(w, &e, 1);          /* ci 31.60: churn_risk */
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:events"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:contacts"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:unresolved"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:resolved"), 0);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:aht_n"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:aht_sum"), 90000);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:ci_n"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:ci_sum"), 316000);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:churn_risk"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:sent_sum"), -5000);
    cr_expect_eq(hist_get(w, 0, "CHAT:AI:ci_sum"), 398750);    /* 39.875 */
    cr_expect_eq(hist_get(w, 0, "CHAT:AI:aht_n"), 0);
    /* another event of the same segment and bucket adds to the same entry */
    const ev_t c = EV("c2", DAY + 5, KIND_CONTACT, HANDLER_AI, TRI_TRUE, NONE_F);
    add(w, &c, 2);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:events"), 2);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:resolved"), 1);
    /* a non-contact adds no contact counters; a late event nothing */
    const ev_t f = PURCHASE("c2", DAY + 6);
    add(w, &f, 3);
    cr_expect_eq(hist_get(w, DAY, "CHAT:NONE:events"), 1);
    cr_expect_eq(hist_get(w, DAY, "CHAT:NONE:contacts"), 0);
    cr_expect_eq(hist_get(w, DAY, "CHAT:NONE:ci_n"), 0);
    window_commit(w);
    size_t n;
    window_history_deltas(w, &n);
    cr_expect_eq(n, 0, "commit clears the history deltas");
    const ev_t x = SENT("x", 40 * DAY, 0.1), late = SENT("y", DAY, 0.1);
    add(w, &x, 4);
    window_commit(w);
    char lid[64];
    event_t le = make_event(&late, lid, sizeof(lid), 5);
    cr_assert_eq(window_add(w, &le, 5), WINDOW_LATE);
    window_history_deltas(w, &n);
    cr_expect_eq(n, 0, "a late event counts nowhere");
    window_free(w);
}

/* An expiry alert adds 1 to EXPIRY:<type> in the bucket of T_p. */
Test(window, history_expiry_alerts) {
    score_params_t p;
    score_params_default(&p);
    p.window_buckets = 2;
    window_t *w = new_window(&p);
    const ev_t f[] = {AI_FAIL("r", 0, -0.9), AI_FAIL("r", 1, -0.9), AI_FAIL("r", 2, -0.9),
                      FEEDBACK("r", DAY), FEEDBACK("z", 2 * DAY + 7)};
    for (int i = 0; i < 4; i++) add(w, &f[i], i);
    window_commit(w);
    add(w, &f[4], 4);              /* day 0 leaves: r recovers on expiry */
    size_t n;
    const alert_t *a = window_alerts(w, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(a[0].trigger, TRIGGER_EXPIRY);
    cr_expect_eq(hist_get(w, 2 * DAY, "EXPIRY:recovered"), 1);
    cr_expect_eq(hist_get(w, 2 * DAY, "CHAT:NONE:recovered"), 0);
    cr_expect_eq(hist_get(w, 2 * DAY, "CHAT:NONE:events"), 1);
    window_free(w);
}

/* SPEC §9.2: deltas are contribution now minus as last written; a ci of
 * 100 is bin 9; an evicted customer contributes 0. */
Test(window, org_deltas) {
    score_params_t p;
    score_params_default(&p);
    p.w_resolution = p.w_sentiment = p.w_loyalty = 1;   /* ci clamps at 100 */
    window_t *w = new_window(&p);
    const ev_t a = SENT("o", 0, 1.0);
    add(w, &a, 0);
    cr_expect_eq(org_get(w, "customers"), 1);
    cr_expect_eq(org_get(w, "ci_sum"), 1000000);
    cr_expect_eq(org_get(w, "ci_bin:9"), 1);
    cr_expect_eq(org_get(w, "at_risk"), 0);
    cr_expect_eq(org_get(w, "route_human"), 0);
    window_commit(w);
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++) cr_expect_eq(org_get(w, window_org_field_names[k]), 0);
    /* re-scored to the same contribution: nothing */
    const ev_t b = SENT("o", 1, 1.0);
    add(w, &b, 1);
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++) cr_expect_eq(org_get(w, window_org_field_names[k]), 0);
    window_commit(w);
    /* evicted: everything it contributed goes */
    const ev_t x = SENT("x", 40 * DAY, -0.9);
    add(w, &x, 2);
    cr_expect_eq(org_get(w, "customers"), 0);   /* o leaves, x comes */
    cr_expect_eq(org_get(w, "ci_bin:9"), 0);
    cr_expect_eq(org_get(w, "route_human"), 1); /* x: sentiment */
    window_free(w);

    /* C(31.6) = 316000 in bin 3, at risk and routed to a person */
    w = new_window(NULL);
    const ev_t c[] = {AI_FAIL("c", 0, -0.3), AI_FAIL("c", DAY, -0.5)};
    add(w, &c[0], 0);
    window_commit(w);
    add(w, &c[1], 1);
    cr_expect_eq(org_get(w, "customers"), 0);
    cr_expect_eq(org_get(w, "ci_sum"), 316000 - 398750);
    cr_expect_eq(org_get(w, "ci_bin:3"), 1 - 1);       /* 39.875 was bin 3 too */
    cr_expect_eq(org_get(w, "at_risk"), 1);
    cr_expect_eq(org_get(w, "route_human"), 1);
    window_free(w);
}

/* Route, pending and the last written org contribution survive a restart
 * (the state blob), and a version 2 blob is refused with a clear message. */
Test(window, routing_state_round_trip) {
    window_t *a = new_window(NULL);
    const ev_t e1 = AI_FAIL("p", 10 * DAY, -0.9);
    add(a, &e1, 0);
    window_t *b = new_window(NULL);
    window_set_watermark(b, window_watermark(a));
    copy_ctx_t ctx = {b};
    window_foreach_change(a, copy_upsert, NULL, &ctx);
    window_commit(a);
    window_commit(b);
    bool human;
    const char *reason;
    route_of(b, "p", &human, &reason);
    cr_expect_str_eq(reason, "needs_human");
    /* the person's contact ends the follow-up in the restarted window; the
     * org delta is against the contribution the blob says was written */
    const ev_t hu = EV("p", 11 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.5);
    add(a, &hu, 1);
    add(b, &hu, 1);
    cr_expect_eq(hist_get(b, 11 * DAY, "CHAT:HUMAN:followups"), 1);
    cr_expect_eq(hist_get(b, 11 * DAY, "CHAT:HUMAN:followup_ms"), DAY);
    int64_t da[WINDOW_ORG_FIELDS], db[WINDOW_ORG_FIELDS];
    window_org_deltas(a, da);
    window_org_deltas(b, db);
    cr_expect_eq(memcmp(da, db, sizeof(da)), 0);
    cr_expect_eq(org_get(b, "route_human"), -1);
    cr_expect_eq(org_get(b, "customers"), 0);

    window_customer_view_t v;
    cr_assert(window_get(a, (strview_t){"p", 1}, &v));
    unsigned char old[512];
    cr_assert_lt(v.state_len, sizeof(old));
    memcpy(old, v.state, v.state_len);
    old[0] = 2;
    window_t *c = new_window(NULL);
    char err[256];
    cr_expect_eq(window_load_customer(c, (strview_t){"p", 1}, old, v.state_len, err, sizeof(err)),
                 -1);
    cr_expect(strstr(err, "version 2") != NULL, "%s", err);
    cr_expect(strstr(err, "rebuild") != NULL, "%s", err);
    window_free(a);
    window_free(b);
    window_free(c);
}

/* ------------------------------------------------------------------ */
/* Erasure (SPEC §1.2)                                                 */

static strview_t sv(const char *s) { return (strview_t){s, strlen(s)}; }

static void erasures_of(window_t *w, char *out, size_t size) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < window_erasure_count(w) && o < size; i++) {
        strview_t id = window_erasure(w, i);
        o += (size_t)snprintf(out + o, size - o, "%s%.*s", i ? " " : "", (int)id.len, id.ptr);
    }
}

/* A held customer is forgotten: not tracked, not upserted nor deleted but
 * listed as an erasure, org no longer counts it, history stays; the
 * watermark does not move.  An unknown one is listed too and returns
 * false. */
Test(window, erase_held_and_unknown) {
    window_t *w = new_window(NULL);
    const ev_t steps[] = {AI_FAIL("c", 0, -0.3), AI_FAIL("c", DAY, -0.5), FEEDBACK("k", DAY)};
    add(w, &steps[0], 0);
    window_commit(w);
    int64_t wm = window_watermark(w);
    add(w, &steps[1], 1);                 /* churn_risk for c */
    add(w, &steps[2], 2);
    size_t n;
    window_alerts(w, &n);
    cr_assert_eq(n, 1);
    int64_t events_hist = hist_get(w, DAY, "CHAT:AI:events");
    wm = window_watermark(w);

    cr_expect(window_erase(w, sv("c"), 3));
    cr_expect(!window_erase(w, sv("nobody"), 4));
    cr_expect_eq(window_watermark(w), wm, "an erasure does not move the watermark");
    window_alerts(w, &n);
    cr_expect_eq(n, 0, "c's alert raised before its tombstone is dropped");
    window_customer_view_t v;
    cr_expect(!window_get(w, sv("c"), &v));
    cr_expect_eq(window_customer_count(w), 1);
    changes_t ch = {"", ""};
    window_foreach_change(w, on_upsert, on_delete, &ch);
    cr_expect_str_eq(ch.upserts, "k");
    cr_expect_str_eq(ch.deletes, "", "an erasure is not a delete");
    char er[128];
    erasures_of(w, er, sizeof er);
    cr_expect_str_eq(er, "c nobody");
    /* Org: c as last written (39.875, bin 3) leaves; k comes. */
    cr_expect_eq(org_get(w, "customers"), 1 - 1);
    cr_expect_eq(org_get(w, "ci_bin:3"), -1);
    cr_assert(window_get(w, sv("k"), &v));
    cr_expect_eq(org_get(w, "ci_sum"), -398750 + llround(v.ci * 10000));
    cr_expect_eq(org_get(w, "at_risk"), 0);
    cr_expect_eq(hist_get(w, DAY, "CHAT:AI:events"), events_hist, "history stays");

    /* The batch carries the erasures, no alert, no delete. */
    batch_t *b = batch_new();
    batch_partition_t *bp = batch_add_partition(b, "t", 0, 1, -1, 5);
    window_fill_batch(w, b, bp);
    cr_expect_eq(bp->nerasures, 2);
    cr_expect_eq(bp->ndeletes, 0);
    cr_expect_eq(bp->nalerts, 0);
    cr_expect(bp->erasures[0].len == 1 && bp->erasures[0].ptr[0] == 'c');
    batch_free(b);

    window_commit(w);
    cr_expect_eq(window_erasure_count(w), 0);
    cr_expect(!window_erase(w, sv("c"), 5), "already gone");
    window_free(w);
}

/* A customer seen again after its erasure starts afresh: no previous
 * score, streak, cooldown, pending follow-up or narrative, whether it
 * comes back before or after the commit. */
Test(window, erased_customer_returns_fresh) {
    for (int commit_between = 0; commit_between < 2; commit_between++) {
        window_t *w = new_window(NULL);
        const ev_t before[] = {
            {"c", 0, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.3, -1, -1, "charged twice"},
            AI_FAIL("c", DAY, -0.5), AI_FAIL("c", 2 * DAY, -0.7)};
        for (int i = 0; i < 3; i++) add(w, &before[i], i);
        window_customer_view_t v;
        cr_assert(window_get(w, sv("c"), &v));
        cr_assert_eq(v.streak, 3);
        bool human;
        const char *reason;
        route_of(w, "c", &human, &reason);
        cr_assert(human, "needs a person before");
        window_commit(w);

        cr_assert(window_erase(w, sv("c"), 3));
        if (commit_between) window_commit(w);
        const ev_t back[] = {AI_FAIL("c", 2 * DAY + 1, -0.7), AI_FAIL("c", 2 * DAY + 2, -0.7)};
        add(w, &back[0], 4);
        cr_assert(window_get(w, sv("c"), &v));
        cr_expect_eq(v.events, 1, "only the new event");
        cr_expect_eq(v.streak, 1);
        /* The same score, alerts and route as a customer never seen: a
         * needs_human again (no cooldown from before). */
        window_t *fresh = new_window(NULL);
        add(fresh, &before[0], 0);
        window_commit(fresh);
        const ev_t other = AI_FAIL("d", 2 * DAY + 1, -0.7);
        add(fresh, &other, 1);
        cr_expect_float_eq(v.ci, ci_of(fresh, "d"), 1e-9);
        char got[128], want[128];
        alert_types(w, got, sizeof got);
        alert_types(fresh, want, sizeof want);
        cr_expect_str_eq(got, want);
        cr_expect(strstr(got, "needs_human") != NULL, "alerts '%s'", got);
        bool fresh_human;
        const char *fresh_reason;
        route_of(fresh, "d", &fresh_human, &fresh_reason);
        route_of(w, "c", &human, &reason);
        cr_expect_str_eq(reason, fresh_reason);
        window_free(fresh);
        size_t n;
        const alert_t *a = window_alerts(w, &n);
        for (size_t i = 0; i < n; i++) {
            cr_expect(!a[i].has_previous, "no previous score");
            cr_expect_eq(a[i].narrative.len, 0, "no narrative from before");
        }
        add(w, &back[1], 5);
        changes_t ch = {"", ""};
        window_foreach_change(w, on_upsert, on_delete, &ch);
        cr_expect_str_eq(ch.upserts, "c");
        cr_expect_str_eq(ch.deletes, "");
        /* Org: as a new customer when erased in this flush, net of the
         * old contribution. */
        cr_expect_eq(org_get(w, "customers"), commit_between ? 1 : 0);
        window_free(w);
    }
}

/* Evicted in this flush, then erased: not held (erased_unknown), still
 * deleted and listed as an erasure. */
Test(window, erase_after_eviction) {
    window_t *w = new_window(NULL);
    const ev_t a0 = FEEDBACK("a", 0), b40 = FEEDBACK("b", 40 * DAY);
    add(w, &a0, 0);
    window_commit(w);
    add(w, &b40, 1);
    cr_expect(!window_erase(w, sv("a"), 2));
    changes_t ch = {"", ""};
    window_foreach_change(w, on_upsert, on_delete, &ch);
    cr_expect_str_eq(ch.deletes, "a");
    char er[64];
    erasures_of(w, er, sizeof er);
    cr_expect_str_eq(er, "a");
    window_free(w);
}

/* ------------------------------------------------------------------ */
/* The changed mask (batch/batch.h BATCH_CF_*)                         */

/* The mask of customer cid in a batch filled from w now; 0 when the batch
 * does not carry it.  Commits w. */
static uint32_t flush_mask(window_t *w, const char *cid) {
    batch_t *b = batch_new();
    batch_partition_t *bp = batch_add_partition(b, "t", 0, 1, -1, 1);
    window_fill_batch(w, b, bp);
    uint32_t m = 0;
    for (size_t i = 0; i < bp->ncustomers; i++)
        if (bp->customers[i].customer_id.len == strlen(cid) &&
            memcmp(bp->customers[i].customer_id.ptr, cid, strlen(cid)) == 0)
            m = bp->customers[i].changed;
    batch_free(b);
    window_commit(w);
    return m;
}

#define CF_SCORES (BATCH_CF_CI | BATCH_CF_SENTIMENT | BATCH_CF_LOYALTY)
#define END {NULL, -1, KIND_CONTACT, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL}

typedef struct mask_case {
    const char *name;
    ev_t before[3];        /* written and committed first (cid "m"); t < 0 ends */
    ev_t change;           /* then this, flushed */
    uint32_t must, must_not;
} mask_case_t;

/* Each case: what an event must name, and what it must not. */
Test(window, changed_mask_cases) {
    const mask_case_t cases[] = {
        {"feedback only",
         {AI_FAIL("m", 0, -0.3), {"m", DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.2, -1, -1, NULL},
          END},
         {"m", DAY + 5, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.9, 10, -1, NULL},
         BATCH_CF_EVENTS | CF_SCORES | BATCH_CF_UPDATED_AT,
         BATCH_CF_CONTACTS | BATCH_CF_RESOLVED | BATCH_CF_AHT_MS | BATCH_CF_AI_SHARE |
             BATCH_CF_STREAK | BATCH_CF_ROUTE | BATCH_CF_AT_RISK},
        {"a purchase moves loyalty, not sentiment",
         {FEEDBACK("m", 0), END},
         {"m", 0, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL},
         BATCH_CF_EVENTS | BATCH_CF_LOYALTY | BATCH_CF_CI,
         BATCH_CF_SENTIMENT | BATCH_CF_CONTACTS | BATCH_CF_UPDATED_AT | BATCH_CF_STREAK},
        {"an unresolved AI contact",
         {FEEDBACK("m", 0), END},
         AI_FAIL("m", 1, NONE_F),
         BATCH_CF_EVENTS | BATCH_CF_CONTACTS | BATCH_CF_AI_SHARE | BATCH_CF_STREAK |
             BATCH_CF_RESOLUTION | BATCH_CF_CI | BATCH_CF_UPDATED_AT,
         BATCH_CF_RESOLVED | BATCH_CF_SENTIMENT | BATCH_CF_LOYALTY | BATCH_CF_AHT_MS},
        {"a feedback that leaves the %.4f text as it was",
         {{"m", 0, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.5, -1, -1, NULL}, END},
         {"m", 0, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, "just text"},
         BATCH_CF_EVENTS, BATCH_CF_ALL & ~BATCH_CF_EVENTS},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const mask_case_t *c = &cases[k];
        window_t *w = new_window(NULL);
        int64_t off = 0;
        for (int i = 0; i < 3 && c->before[i].t >= 0; i++) add(w, &c->before[i], off++);
        cr_expect_eq(flush_mask(w, "m"), BATCH_CF_ALL, "%s: a new customer", c->name);
        add(w, &c->change, off++);
        uint32_t m = flush_mask(w, "m");
        cr_expect_eq(m & c->must, c->must, "%s: mask %#x lacks %#x", c->name, m,
                     c->must & ~m);
        cr_expect_eq(m & c->must_not, 0, "%s: mask %#x has %#x", c->name, m, m & c->must_not);
        window_free(w);
    }
}

/* Expiry re-scores name what the dropped bucket moved, and only that. */
Test(window, changed_mask_expiry) {
    window_t *w = new_window(NULL);
    const ev_t old = {"m", 0, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL};
    const ev_t later = {"m", 5 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, NONE_F, -1, -1, NULL};
    const ev_t other = FEEDBACK("o", 30 * DAY);
    add(w, &old, 0);
    add(w, &later, 1);
    flush_mask(w, "m");
    add(w, &other, 2); /* day 0 leaves the window */
    uint32_t m = flush_mask(w, "m");
    cr_expect_eq(m, BATCH_CF_EVENTS | BATCH_CF_LOYALTY | BATCH_CF_CI | BATCH_CF_UPDATED_AT,
                 "mask %#x", m);
    window_free(w);
}

/* A customer loaded from its state, or evicted and back before the
 * commit, is written whole: what the sink holds of it is not known. */
Test(window, changed_mask_all_when_unknown) {
    window_t *a = new_window(NULL);
    const ev_t e0 = FEEDBACK("m", 0), e1 = FEEDBACK("m", DAY);
    add(a, &e0, 0);
    window_t *b = new_window(NULL);
    window_set_watermark(b, window_watermark(a));
    copy_ctx_t ctx = {b};
    window_foreach_change(a, copy_upsert, NULL, &ctx);
    window_commit(a);
    add(a, &e1, 1);
    add(b, &e1, 1);
    cr_expect_neq(flush_mask(a, "m"), BATCH_CF_ALL);
    cr_expect_eq(flush_mask(b, "m"), BATCH_CF_ALL, "loaded");
    add(b, &(ev_t)FEEDBACK("m", 2 * DAY), 2);
    cr_expect_neq(flush_mask(b, "m"), BATCH_CF_ALL, "written once since the load");

    /* evicted by the watermark, then back before the commit */
    const ev_t far = FEEDBACK("x", 40 * DAY), back = FEEDBACK("m", 40 * DAY);
    add(b, &far, 3);
    add(b, &back, 4);
    cr_expect_eq(flush_mask(b, "m"), BATCH_CF_ALL, "evicted and back");
    /* erased, then back */
    add(b, &(ev_t)FEEDBACK("m", 40 * DAY + 1), 5);
    window_erase(b, sv("m"), 6);
    add(b, &(ev_t)FEEDBACK("m", 40 * DAY + 2), 7);
    cr_expect_eq(flush_mask(b, "m"), BATCH_CF_ALL, "erased and back");
    window_free(a);
    window_free(b);
}

/* The public fields as the sink writes them, one string each (SPEC §5). */
#define NFIELDS 13
typedef struct shadow {
    char id[16];
    bool held;
    char f[NFIELDS][48];
} shadow_t;

static void view_texts(const batch_customer_t *c, char f[NFIELDS][48]) {
    const double d[6] = {c->ci, c->resolution, c->sentiment, c->loyalty, c->ai_share, c->aht_ms};
    for (int i = 0; i < 6; i++) snprintf(f[i], 48, "%.4f", d[i]);
    const int64_t n[6] = {c->streak, c->contacts, c->resolved, c->events, c->at_risk,
                          c->updated_at};
    for (int i = 0; i < 6; i++) snprintf(f[6 + i], 48, "%lld", (long long)n[i]);
    snprintf(f[12], 48, "%.*s/%.*s", (int)c->route.len, c->route.ptr, (int)c->route_reason.len,
             c->route_reason.ptr);
}

/* BATCH_CF_* bit of each view_texts() field. */
static const uint32_t field_bit[NFIELDS] = {
    BATCH_CF_CI, BATCH_CF_RESOLUTION, BATCH_CF_SENTIMENT, BATCH_CF_LOYALTY, BATCH_CF_AI_SHARE,
    BATCH_CF_AHT_MS, BATCH_CF_STREAK, BATCH_CF_CONTACTS, BATCH_CF_RESOLVED, BATCH_CF_EVENTS,
    BATCH_CF_AT_RISK, BATCH_CF_UPDATED_AT, BATCH_CF_ROUTE};

static uint64_t mix_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A sink that writes only the named fields keeps the same hash as one
 * that writes them all: random events over a few customers (expiry,
 * eviction, erasure, restarts from the state blobs), a flush at random
 * points; each flush's masks applied to a shadow of the written hashes,
 * which must equal every field of the batch.  Also counts that masks
 * other than BATCH_CF_ALL were seen, so the check is not vacuous. */
Test(window, changed_mask_keeps_the_sink_exact) {
    enum { NCUST = 12, NEVENTS = 20000 };
    shadow_t sh[NCUST];
    memset(sh, 0, sizeof(sh));
    for (int i = 0; i < NCUST; i++) snprintf(sh[i].id, sizeof(sh[i].id), "s%d", i);
    uint64_t seed = 42;
    window_t *w = new_window(NULL);
    int64_t t = 0;
    size_t partial = 0, skipped_fields = 0, restarts = 0;
    for (int64_t i = 0; i < NEVENTS; i++) {
        uint64_t r = mix_next(&seed);
        int ci = (int)(r % NCUST);
        r >>= 8;
        if (r % 200 == 0)
            t += (int64_t)(r % 40) * DAY; /* expiry and eviction */
        else
            t += (int64_t)((r >> 8) % (6 * HOUR));
        r >>= 16;
        if (r % 300 == 0) {
            window_erase(w, sv(sh[ci].id), i);
        } else {
            static const event_kind_t kinds[] = {KIND_CONTACT, KIND_CONTACT, KIND_FEEDBACK,
                                                 KIND_PURCHASE, KIND_CANCELLATION};
            ev_t d = {sh[ci].id, t, kinds[r % 5], (event_handler_t)((r >> 3) % 4),
                      (tri_t)((int)((r >> 5) % 3) - 1), NONE_F, -1, -1, NULL};
            if (d.kind != KIND_CONTACT) {
                d.by = HANDLER_NONE;
                d.resolved = TRI_NULL;
            }
            if ((r >> 7) % 2) d.sentiment = (double)((int)((r >> 8) % 21) - 10) / 10.0;
            if ((r >> 13) % 4 == 0) d.nps = (int)((r >> 15) % 11);
            if ((r >> 19) % 5 == 0) d.csat = 1 + (int)((r >> 21) % 5);
            add(w, &d, i);
        }
        if (mix_next(&seed) % 7) continue;
        /* flush, as a sink would */
        batch_t *b = batch_new();
        batch_partition_t *bp = batch_add_partition(b, "t", 0, 1, -1, i);
        window_fill_batch(w, b, bp);
        for (size_t k = 0; k < bp->nerasures + bp->ndeletes; k++) {
            batch_str_t id = k < bp->nerasures ? bp->erasures[k] : bp->deletes[k - bp->nerasures];
            for (int j = 0; j < NCUST; j++)
                if (strlen(sh[j].id) == id.len && memcmp(sh[j].id, id.ptr, id.len) == 0)
                    sh[j].held = false;
        }
        for (size_t k = 0; k < bp->ncustomers; k++) {
            const batch_customer_t *c = &bp->customers[k];
            int j = 0;
            while (j < NCUST && !(strlen(sh[j].id) == c->customer_id.len &&
                                  memcmp(sh[j].id, c->customer_id.ptr, c->customer_id.len) == 0))
                j++;
            cr_assert_lt(j, NCUST);
            cr_assert(sh[j].held || c->changed == BATCH_CF_ALL,
                      "event %lld: %s not in the sink, mask %#x", (long long)i, sh[j].id,
                      c->changed);
            cr_assert_eq(c->changed & ~BATCH_CF_ALL, 0);
            char f[NFIELDS][48];
            view_texts(c, f);
            if (c->changed != BATCH_CF_ALL) partial++;
            for (int x = 0; x < NFIELDS; x++) {
                if (c->changed & field_bit[x])
                    strcpy(sh[j].f[x], f[x]);
                else
                    skipped_fields++;
                cr_assert_str_eq(sh[j].f[x], f[x], "event %lld: %s field %d: sink %s, now %s",
                                 (long long)i, sh[j].id, x, sh[j].f[x], f[x]);
            }
            sh[j].held = true;
        }
        /* now and then, a restart from the state blobs of this flush and
         * earlier ones: the sink keeps its hashes */
        if (mix_next(&seed) % 10 == 0) {
            window_t *n = new_window(NULL);
            window_set_watermark(n, window_watermark(w));
            char err[256];
            for (int j = 0; j < NCUST; j++) {
                window_customer_view_t v;
                if (!window_get(w, sv(sh[j].id), &v)) continue;
                cr_assert_eq(window_load_customer(n, v.customer_id, v.state, v.state_len, err,
                                                  sizeof(err)), 0, "%s", err);
            }
            window_free(w);
            w = n;
            restarts++;
        } else {
            window_commit(w);
        }
        batch_free(b);
    }
    cr_expect_gt(partial, 1000, "only %zu partial masks", partial);
    cr_expect_gt(skipped_fields, 5000, "only %zu fields left out", skipped_fields);
    cr_expect_gt(restarts, 10);
    window_free(w);
}

/* ------------------------------------------------------------------ */
/* State versions                                                      */

/* A handle time on top of an ev_t; -1: none. */
typedef struct ev_ht {
    ev_t e;
    int64_t ht;
} ev_ht_t;

static const ev_ht_t v3_events[] = {
    {{"a", 1 * DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.3, -1, -1, "charged twice"}, 240000},
    {{"a", 2 * DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.5, -1, -1, NULL}, 61000},
    {{"a", 3 * DAY + 7, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.7, -1, -1, NULL}, -1},
    {{"b", 3 * DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.9, 10, 4, "love it \xe2\x9c\x93"}, -1},
    {{"b", 5 * DAY, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL}, -1},
    {{"c", 4 * DAY, KIND_CONTACT, HANDLER_HYBRID, TRI_TRUE, 0.123456, -1, 2, NULL}, 1234567},
    {{"c", 4 * DAY + 1, KIND_CONTACT, HANDLER_HUMAN, TRI_NULL, 0.3, 3, -1, NULL}, 7},
    {{"d", 6 * DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, -1, -1, NULL}, 5000},
};

static void add_ht(window_t *w, const ev_ht_t *d, int64_t offset) {
    char id[64];
    event_t e = make_event(&d->e, id, sizeof(id), (int)offset);
    e.has_handle_time = d->ht >= 0;
    e.handle_time_ms = d->ht >= 0 ? d->ht : 0;
    window_add(w, &e, offset);
}

/* The blobs a build writing state version 3 wrote after v3_events, at
 * watermark 6 days (the event indexes were the offsets). */
static const struct {
    const char *id;
    const char *blob;
    size_t len;
} v3_blobs[] = {
    {"a", "\x03\x0f\x03\x00\x00\x00\x00\x00\x40\x38\x40\x8e\xd0\x98\xf7\x01\x19\x8e\xd0\x98\xf7\x01\x06\x33\x33\x33\xbf\x8e\xd0\x98\xf7\x01\x8e\xd0\x98\xf7\x01\x02\x0d\x63\x68\x61\x72\x67\x65\x64\x20\x74\x77\x69\x63\x65\x03\x02\x01\x01\x00\x01\x01\x00\x01\x00\x00\x00\x00\x40\x33\x33\xd3\xbf\x00\x00\x00\x00\x00\x4c\x0d\x41\x01\x01\x01\x00\x01\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\xe0\xbf\x00\x00\x00\x00\x00\xc9\xed\x40\x01\x01\x01\x00\x01\x01\x00\x00\x00\x00\x00\x00\x60\x66\x66\xe6\xbf", 120},
    {"b", "\x03\x0a\x00\x00\x00\x40\xff\xff\xcf\x4d\x40\x80\xb0\xfe\x9b\x03\x10\x06\x66\x66\x66\x3f\x06\x0b\x6c\x6f\x76\x65\x20\x69\x74\x20\xe2\x9c\x93\x02\x06\x01\x00\x00\x00\x01\x02\x00\x06\x00\x00\x00\xc0\xcc\xcc\xec\x3f\x02\x01\x00\x00\x00\x00\x01\x00\x04", 62},
    {"c", "\x03\x02\x00\x00\x00\x80\x6b\x9b\x62\x47\x40\x80\xb0\xfe\x9b\x03\x10\x08\x9a\x99\x99\x3e\x01\x08\x02\x02\x01\x00\x02\x02\x02\x05\x00\x00\x00\x40\xe7\x19\xdb\x3f\x00\x00\x00\x00\x8e\xd6\x32\x41", 48},
    {"d", "\x03\x06\x01\x01\x00\xc0\x00\x00\xd0\x42\x40\x80\xa0\xb1\xee\x03\x1a\x80\xa0\xb1\xee\x03\x0c\x66\x66\x66\xbf\x80\xa0\xb1\xee\x03\x80\xa0\xb1\xee\x03\x01\x0c\x01\x01\x00\x01\x01\x00\x01\x00\x00\x00\x00\xc0\xcc\xcc\xec\xbf\x00\x00\x00\x00\x00\x88\xb3\x40", 63},
};

/* The public fields of a view as a sink writes them, one line. */
static void view_line(const window_customer_view_t *v, char *out, size_t size) {
    snprintf(out, size, "%.4f %.4f %.4f %.4f %.4f %.4f %lld %lld %lld %lld %d %lld %d %s", v->ci,
             v->resolution, v->sentiment, v->loyalty, v->ai_share, v->aht_ms,
             (long long)v->streak, (long long)v->contacts, (long long)v->resolved,
             (long long)v->events, v->at_risk, (long long)v->updated_at, v->route_human,
             v->route_reason);
}

/* A state written by the previous build (version 3) loads, and the window
 * goes on exactly as one that never stopped; it is written back as
 * version 4, smaller. */
Test(window, state_version_3_loads) {
    const size_t n = sizeof(v3_events) / sizeof(v3_events[0]);
    window_t *a = new_window(NULL);
    for (size_t i = 0; i < n; i++) add_ht(a, &v3_events[i], (int64_t)i);
    cr_assert_eq(window_watermark(a), 6 * DAY);
    window_commit(a);
    window_t *b = new_window(NULL);
    window_set_watermark(b, 6 * DAY);
    char err[256];
    for (size_t i = 0; i < sizeof(v3_blobs) / sizeof(v3_blobs[0]); i++) {
        cr_assert_eq(v3_blobs[i].blob[0], 3);
        cr_assert_eq(window_load_customer(b, sv(v3_blobs[i].id),
                                          (const unsigned char *)v3_blobs[i].blob,
                                          v3_blobs[i].len, err, sizeof(err)), 0,
                     "%s: %s", v3_blobs[i].id, err);
    }
    const ev_ht_t more[] = {
        {{"a", 7 * DAY, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.8, -1, -1, NULL}, 100},
        {{"a", 7 * DAY, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.6, -1, -1, NULL}, 100},
        {{"b", 33 * DAY, KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NONE_F, -1, -1, NULL}, -1},
        {{"d", 34 * DAY, KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.1, -1, -1, "ok"}, -1},
    };
    for (size_t k = 0; k <= sizeof(more) / sizeof(more[0]); k++) {
        const char *ids[] = {"a", "b", "c", "d"};
        for (int i = 0; i < 4; i++) {
            window_customer_view_t va, vb;
            char la[256], lb[256];
            bool ha = window_get(a, sv(ids[i]), &va);
            cr_assert_eq(ha, window_get(b, sv(ids[i]), &vb), "step %zu: %s", k, ids[i]);
            if (!ha) continue;
            view_line(&va, la, sizeof(la));
            view_line(&vb, lb, sizeof(lb));
            cr_expect_str_eq(la, lb, "step %zu: %s", k, ids[i]);
            cr_expect_eq(vb.state[0], 4);
            if (k == 0)
                for (size_t j = 0; j < 4; j++)
                    if (strcmp(v3_blobs[j].id, ids[i]) == 0)
                        cr_expect_lt(vb.state_len, v3_blobs[j].len, "%s: %zu bytes, v3 %zu",
                                     ids[i], vb.state_len, v3_blobs[j].len);
        }
        if (k == sizeof(more) / sizeof(more[0])) break;
        add_ht(a, &more[k], 100 + (int64_t)k);
        add_ht(b, &more[k], 100 + (int64_t)k);
        size_t na, nb;
        const alert_t *xa = window_alerts(a, &na), *xb = window_alerts(b, &nb);
        cr_assert_eq(na, nb, "step %zu", k);
        for (size_t j = 0; j < na; j++) {
            cr_expect_eq(xa[j].type, xb[j].type);
            cr_expect_eq(xa[j].score, xb[j].score);
            cr_expect_eq(xa[j].previous_score, xb[j].previous_score);
            cr_expect_eq(xa[j].narrative.len, xb[j].narrative.len);
        }
        int64_t da[WINDOW_ORG_FIELDS], db[WINDOW_ORG_FIELDS];
        window_org_deltas(a, da);
        window_org_deltas(b, db);
        cr_expect_eq(memcmp(da, db, sizeof(da)), 0, "step %zu: org deltas", k);
        window_commit(a);
        window_commit(b);
    }
    window_free(a);
    window_free(b);
}

/* A version 4 blob gives back the very customer that wrote it: the same
 * view (ci bit for bit) and the same blob again. */
Test(window, state_version_4_round_trip) {
    window_t *a = new_window(NULL);
    for (size_t i = 0; i < sizeof(v3_events) / sizeof(v3_events[0]); i++)
        add_ht(a, &v3_events[i], (int64_t)i);
    window_t *b = new_window(NULL);
    window_set_watermark(b, window_watermark(a));
    copy_ctx_t ctx = {b};
    window_foreach_change(a, copy_upsert, NULL, &ctx);
    window_commit(a);
    const char *ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        window_customer_view_t va, vb;
        char la[256], lb[256];
        cr_assert(window_get(a, sv(ids[i]), &va));
        view_line(&va, la, sizeof(la));
        size_t len = va.state_len;
        unsigned char blob[512];
        memcpy(blob, va.state, len);
        cr_assert(window_get(b, sv(ids[i]), &vb));
        view_line(&vb, lb, sizeof(lb));
        cr_expect_str_eq(la, lb, "%s", ids[i]);
        cr_expect_eq(va.ci, vb.ci, "%s", ids[i]);
        cr_expect_eq(vb.state_len, len, "%s", ids[i]);
        cr_expect_eq(memcmp(vb.state, blob, len), 0, "%s: the same blob again", ids[i]);
    }
    window_free(a);
    window_free(b);
}

/* window_prefetch() is a hint: a stream with hints (for the next event's
 * customer, for customers never seen, for one evicted and freed by a
 * commit since) gives the same alerts, views and changes as without. */
Test(window, prefetch_changes_nothing) {
    window_t *a = new_window(NULL), *b = new_window(NULL);
    uint64_t seed = 7;
    char cid[16], other[16];
    int64_t jump = 0;
    for (int64_t i = 0; i < 5000; i++) {
        uint64_t r = mix_next(&seed);
        snprintf(cid, sizeof(cid), "p%d", (int)(r % 300));
        snprintf(other, sizeof(other), "p%d", (int)((r >> 20) % 400));
        if (i % 1000 == 999) jump += 31 * DAY; /* evictions */
        int64_t t = jump + i * (HOUR / 2) + (int64_t)((r >> 40) % HOUR);
        const ev_t d = {cid, t, (r >> 9) % 2 ? KIND_CONTACT : KIND_FEEDBACK,
                        (event_handler_t)((r >> 11) % 3), (tri_t)((int)((r >> 13) % 3) - 1),
                        (double)((int)((r >> 15) % 21) - 10) / 10.0, -1, -1, NULL};
        window_prefetch(b, sv(other));
        window_prefetch(b, sv(cid));
        add(a, &d, i);
        add(b, &d, i);
        size_t na, nb;
        const alert_t *xa = window_alerts(a, &na), *xb = window_alerts(b, &nb);
        cr_assert_eq(na, nb, "event %lld", (long long)i);
        for (size_t k = 0; k < na; k++) cr_assert_eq(xa[k].score, xb[k].score);
        window_customer_view_t va, vb;
        cr_assert(window_get(a, sv(cid), &va) && window_get(b, sv(cid), &vb));
        char la[256], lb[256];
        view_line(&va, la, sizeof(la));
        view_line(&vb, lb, sizeof(lb));
        cr_assert_str_eq(la, lb, "event %lld", (long long)i);
        if (r % 13 == 0) {
            cr_assert_eq(window_change_count(a), window_change_count(b));
            window_commit(a);
            window_commit(b);
        }
    }
    cr_expect_eq(window_customer_count(a), window_customer_count(b));
    window_free(a);
    window_free(b);
}

/* A body that outgrows the window's cells (a long narrative and a month
 * of buckets) and shrinks back as buckets expire, next to customers
 * coming and going: the same views as a window that restarts from the
 * state blobs at every step, and nothing leaks (ASan, valgrind). */
Test(window, bodies_grow_and_shrink) {
    char text[ALERT_NARRATIVE_MAX + 1];
    memset(text, 'n', ALERT_NARRATIVE_MAX);
    text[ALERT_NARRATIVE_MAX] = '\0';
    window_t *w = new_window(NULL);
    int64_t off = 0;
    for (int day = 0; day < 60; day++) {
        for (int k = 0; k < 3; k++) {
            const ev_t big = {"big", day * DAY + k, KIND_CONTACT, (event_handler_t)(k % 3),
                              (tri_t)(k % 3 - 1), 0.1 * k - 0.1, 9, 2 + k,
                              day < 30 ? text : "x"};
            add(w, &big, off++);
        }
        char id[16];
        snprintf(id, sizeof(id), "s%d", day % 7);
        const ev_t small = FEEDBACK(id, day * DAY + 5);
        add(w, &small, off++);
        window_customer_view_t v;
        cr_assert(window_get(w, sv("big"), &v));
        if (day == 29) cr_expect_gt(v.state_len, 512, "the body is past the cells");
        if (day == 59) cr_expect_lt(v.state_len, 512, "and back: %zu", v.state_len);
        /* the same state through a blob */
        window_t *b = new_window(NULL);
        window_set_watermark(b, window_watermark(w));
        char err[256], la[256], lb[256];
        cr_assert_eq(window_load_customer(b, sv("big"), v.state, v.state_len, err, sizeof(err)),
                     0, "%s", err);
        window_customer_view_t vb;
        cr_assert(window_get(b, sv("big"), &vb));
        view_line(&v, la, sizeof(la));
        view_line(&vb, lb, sizeof(lb));
        cr_expect_str_eq(la, lb, "day %d", day);
        window_free(b);
        if (day % 5 == 0) window_commit(w);
    }
    window_free(w);
}

/* A commit after a catch-up-sized batch frees the change lists it grew
 * (scratch kept only up to a steady flush's size); the window goes on
 * exactly as one committed in small steps. */
Test(window, large_commit_gives_back_and_goes_on) {
    window_t *a = new_window(NULL), *b = new_window(NULL);
    size_t alerts_a = 0, alerts_b = 0, n;
    char cid[32];
    for (int64_t i = 0; i < 12000; i++) {
        snprintf(cid, sizeof(cid), "big-%d", (int)(i % 3000));
        const ev_t d = {cid, i * 60000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.9, -1, -1,
                        "still waiting"};
        add(a, &d, i);
        add(b, &d, i);
        if (i % 10 == 9) {
            window_alerts(b, &n);
            alerts_b += n;
            window_commit(b);
        }
        if (i == 5999 || i == 11999 || (i > 6000 && i % 500 == 0)) {
            window_alerts(a, &n);
            alerts_a += n;
            if (i == 5999) alloc_trim(1); /* b's small commits kept all they grew */
            window_commit(a);
            if (i == 5999) cr_expect(alloc_trim(1), "the lists a grew reported freed");
        }
    }
    window_alerts(b, &n);
    alerts_b += n;
    window_commit(b);
    cr_expect_gt(alerts_a, 600, "enough alerts to outgrow what a commit keeps");
    cr_expect_eq(alerts_a, alerts_b);
    for (int k = 0; k < 3000; k += 7) {
        snprintf(cid, sizeof(cid), "big-%d", k);
        cr_assert(same_customer(a, b, sv(cid)), "%s", cid);
    }
    window_free(a);
    window_free(b);
}

/* window_release(): nothing while changes are pending; after a commit, the
 * room kept for the next large batch; then nothing more. */
Test(window, release_frees_the_room_kept_between_batches) {
    window_t *w = new_window(NULL);
    char cid[32];
    for (int64_t i = 0; i < 10000; i++) {
        snprintf(cid, sizeof(cid), "r-%d", (int)i);
        const ev_t d = {cid, i * 1000, KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.5, -1, -1, NULL};
        add(w, &d, i);
    }
    window_commit(w); /* every customer changed: more than a quarter, freed */
    for (int64_t i = 0; i < 2000; i++) {
        snprintf(cid, sizeof(cid), "r-%d", (int)i);
        const ev_t d = {cid, 10000000 + i * 1000, KIND_FEEDBACK, HANDLER_HUMAN, TRI_NULL,
                        0.4, -1, -1, NULL};
        add(w, &d, 10000 + i);
    }
    cr_expect_eq(window_release(w), 0, "changes pending: nothing is freed");
    window_commit(w); /* 2 000 of 10 000: the room is kept */
    cr_expect_gt(window_release(w), 2000 * sizeof(uint32_t), "the kept room is freed");
    cr_expect_eq(window_release(w), 0, "and only once");
    const ev_t d = {"r-1", 20000000, KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.5, -1, -1, NULL};
    add(w, &d, 12000);
    cr_expect_eq(window_change_count(w), 1, "the lists grow again from nothing");
    window_free(w);
}
