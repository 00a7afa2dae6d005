/*
 * test_model.c — differential test of scoring/window.c against the
 * reference model in tests/support/model.c (SPEC §2–4, docs/DESIGN.md §3).
 *
 * Random event streams, one seeded PRNG (splitmix64) per stream, are fed in
 * the same order to window_add() and model_add().  Customers have moods
 * (angry, neutral, happy, shifting over time) so that scores cross the
 * thresholds both ways; times mostly increase with jitter, jump many
 * buckets now and then (expiry, eviction), land exactly on the window's
 * edge, or come late; now and then an event is sent twice (a producer's
 * retry), and now and then a tombstone (SPEC §1.2) erases a customer of the
 * stream, who may come back as a new one, or one never seen.  After each
 * tombstone: held or not alike, the alerts since the commit alike, the
 * customer gone from both, the watermark unmoved, the organisation equal;
 * at commits, the same erasures in the same order.  window_commit() is called at random points: it must not change
 * any result.  Two cases also restart at random commits: a new window
 * resumes from window_set_watermark() and the state blobs of the upsert
 * callbacks (window_load_customer()) and must go on like the uninterrupted
 * model (SPEC §6).  Each event's strings are copied into buffers
 * that are scribbled over and freed right after window_add(), so a scorer
 * that keeps a view into the event is caught (under ASan: at once).
 *
 * Compared after every event: the add result, the watermark, every new
 * alert (all fields but reason; scores as %.4f text), the customer count,
 * the event's customer view (route and route_reason included, SPEC §10.1)
 * and the organisation (§9.2): the sum of every window_org_deltas() so far,
 * committed or not, must equal the model's org computed from scratch.  The
 * history (§9.1): the sum of every flush's window_history_deltas() must
 * equal the model's totals, compared at random points and at the end.  At commits: the change set that
 * window_foreach_change() reports and the watermark's dirty flag; and each
 * upsert's changed mask, applied to a shadow of the public fields as a
 * sink that writes only the named ones would hold them (kept across
 * restarts, like Redis), must leave it equal to the view.  At
 * random points and at the end: every customer's view, and the set of
 * customers evicted and not back.  Each case also checks that its streams
 * produced what it is there for (late events, evictions, each alert type
 * and trigger, cut and vanished narratives), so it cannot pass vacuously.
 *
 * A mismatch prints the case, the seed, the event index and both sides,
 * then the smallest event sequence still showing a mismatch (delta
 * debugging), one event per line.  RAPPORT_MODEL_SEED=<n> runs one seed.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "scoring/window.h"
#include "tests/support/model.h"

/* ---- PRNG ---- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static uint64_t rng_below(rng_t *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* Uniform in [0, 1). */
static double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static bool rng_chance(rng_t *r, double p)
{
    return rng_unit(r) < p;
}

/* ---- the cases ---- */

typedef struct gen_knobs {
    int streams;
    int events;
    int min_customers, max_customers;
    int64_t step_max;             /* ms between consecutive events, at most */
    double jump_prob;             /* a jump of 1..window+3 buckets */
    double late_prob;
    double edge_prob;             /* exactly at (or just before) the window's edge */
    int64_t jitter_max;           /* ms an event may be older than the newest */
    bool huge_handle_times;
    int64_t far_jump_max;         /* now and then a jump of up to this many ms */
    bool near_int64_max;          /* times end just below INT64_MAX */
    double restart_prob;          /* after a commit, resume from the state blobs */
} gen_knobs_t;

typedef struct model_case {
    char name[32];                /* an array: Criterion copies params across processes */
    uint64_t seed_base;
    gen_knobs_t g;
    /* score_params_t fields, 0 meaning the default where noted */
    int64_t bucket_ms;
    int32_t window_buckets;
    double prior_weight;
    double w_resolution, w_sentiment, w_loyalty;
    double streak_penalty;
    int32_t streak_cap;
    double risk_threshold, recover_threshold;
    int32_t needs_human_streak;
    double needs_human_sentiment;
    int64_t needs_human_cooldown_ms;
    int32_t route_streak;         /* 0: route_streak and route_sentiment default */
    double route_sentiment;
    bool use_defaults;            /* ignore the fields above */
    bool expect_clamped;          /* scores of exactly 0 and 100 must occur */
} model_case_t;

static void case_params(const model_case_t *c, score_params_t *p)
{
    score_params_default(p);
    if (c->use_defaults)
        return;
    p->bucket_ms = c->bucket_ms;
    p->window_buckets = c->window_buckets;
    p->prior_weight = c->prior_weight;
    p->w_resolution = c->w_resolution;
    p->w_sentiment = c->w_sentiment;
    p->w_loyalty = c->w_loyalty;
    p->streak_penalty = c->streak_penalty;
    p->streak_cap = c->streak_cap;
    p->risk_threshold = c->risk_threshold;
    p->recover_threshold = c->recover_threshold;
    p->needs_human_streak = c->needs_human_streak;
    p->needs_human_sentiment = c->needs_human_sentiment;
    p->needs_human_cooldown_ms = c->needs_human_cooldown_ms;
    if (c->route_streak > 0) {
        p->route_streak = c->route_streak;
        p->route_sentiment = c->route_sentiment;
    }
}

/* One row per parameter set; 310 streams × 2,000 events in all. */
static model_case_t cases[] = {
    { .name = "defaults", .seed_base = 1000, .use_defaults = true,
      .g = { 40, 2000, 20, 300, 7200000, 0.004, 0.01, 0.01, 3 * 86400000LL, false } },
    { .name = "small_window", .seed_base = 2000,
      .g = { 40, 2000, 3, 60, 300, 0.01, 0.02, 0.02, 2500, false },
      1000, 3, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 3, -0.6, 2500, 1, -1.0 },
    { .name = "one_bucket_window", .seed_base = 3000,
      .g = { 30, 2000, 3, 40, 200, 0.01, 0.02, 0.02, 1500, false },
      1000, 1, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 2, -0.6, 1000 },
    { .name = "churn_flips", .seed_base = 4000,
      .g = { 40, 2000, 3, 30, 250, 0.01, 0.02, 0.02, 3000, false },
      1000, 5, 3, 0.4, 0.3, 0.3, 2.5, 5, 48, 52, 2, -0.6, 0, 3, -0.2 },
    { .name = "equal_thresholds", .seed_base = 5000,
      .g = { 30, 2000, 3, 20, 3, 0.01, 0.02, 0.03, 20, false },
      7, 4, 0.5, 0.5, 0.25, 0.25, 4, 0, 50, 50, 1, 0.0, 10 },
    { .name = "heavy_penalty", .seed_base = 6000,
      .g = { 40, 2000, 5, 200, 600000, 0.005, 0.01, 0.01, 7200000, false },
      3600000, 24, 1, 0.4, 0.3, 0.3, 30, 3, 40, 60, 3, -0.25, 7200000 },
    { .name = "huge_handle_times", .seed_base = 7000,
      .g = { 30, 2000, 3, 40, 300, 0.01, 0.02, 0.02, 2500, true },
      1000, 3, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 3, -0.6, 2500 },
    /* occurred_at is only bounded by the Kafka timestamp + skew, and not at
     * all for a message without a timestamp */
    { .name = "far_jumps", .seed_base = 8000,
      .g = { 10, 2000, 3, 40, 300, 0.01, 0.02, 0.02, 2500, false, 1000000000000000LL, false },
      1000, 5, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 3, -0.6, 2500 },
    { .name = "near_int64_max", .seed_base = 9000,
      .g = { 10, 2000, 3, 40, 300, 0.01, 0.02, 0.02, 2500, false, 0, true },
      1000, 5, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 3, -0.6, INT64_MAX },
    { .name = "widest_window", .seed_base = 10000,
      .g = { 10, 2000, 3, 40, 200, 0.01, 0.02, 0.02, 50000, false, 0, false },
      1, 100000, 3, 0.4, 0.3, 0.3, 4, 5, 35, 50, 3, -0.6, 100000 },
    /* weights over 1 and a heavy penalty: ci clamped at 100 (org bin 9)
     * and at 0 (bin 0) */
    { .name = "clamped", .seed_base = 13000, .expect_clamped = true,
      .g = { 20, 2000, 3, 40, 300, 0.01, 0.02, 0.02, 2500, false },
      1000, 5, 3, 0.7, 0.5, 0.5, 40, 3, 35, 50, 3, -0.6, 2500, 2, -0.5 },
    /* a restart: a new window, window_set_watermark() and
     * window_load_customer() from the blobs of the upsert callbacks, must
     * go on exactly as the uninterrupted model (SPEC §6) */
    { .name = "restarts_defaults", .seed_base = 11000, .use_defaults = true,
      .g = { 15, 2000, 20, 300, 7200000, 0.004, 0.01, 0.01, 3 * 86400000LL, false, 0, false, 0.1 } },
    { .name = "restarts_churn_flips", .seed_base = 12000,
      .g = { 15, 2000, 3, 30, 250, 0.01, 0.02, 0.02, 3000, false, 0, false, 0.1 },
      1000, 5, 3, 0.4, 0.3, 0.3, 2.5, 5, 48, 52, 2, -0.6, 1500, 4, 0.0 },
};

/* ---- generated events ---- */

typedef struct gev {
    event_t e;                    /* strings point at the fields below */
    char *event_id;
    char *customer_id;
    char *text;                   /* NULL for a null feedback_text */
    size_t text_len;
    bool commit_after;
    bool restart_after;           /* only after a commit */
    bool check_all_after;
    bool tombstone;               /* SPEC §1.2: erase e.customer_id (no event) */
} gev_t;

typedef struct stream {
    gev_t *ev;
    size_t n;
    int32_t partition;
} stream_t;

static char *xstrndup(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    cr_assert_not_null(c);
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

/* Appends one random valid UTF-8 character of width 1..4 (width 0: any). */
static size_t put_char(rng_t *r, char *out, int width)
{
    static const char *const wide[] = { "", "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
    static const char ascii[] = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,!?'";
    if (width == 0)
        width = rng_chance(r, 0.7) ? 1 : 2 + (int)rng_below(r, 3);
    if (width == 1) {
        out[0] = ascii[rng_below(r, sizeof ascii - 1)];
        return 1;
    }
    memcpy(out, wide[width], (size_t)width);
    return (size_t)width;
}

/* Random valid UTF-8 of about `len` bytes (never more). */
static size_t put_text(rng_t *r, char *out, size_t len)
{
    size_t n = 0;
    char c[4];
    while (n < len) {
        size_t w = put_char(r, c, 0);
        if (n + w > len)
            w = put_char(r, c, 1);
        memcpy(out + n, c, w);
        n += w;
    }
    return n;
}

static char *gen_text(rng_t *r, size_t *len_out)
{
    char buf[EVENT_FEEDBACK_TEXT_MAX + 8];
    size_t n;
    uint64_t pick = rng_below(r, 100);
    if (pick < 15) {
        n = 0;                                      /* empty */
    } else if (pick < 60) {
        n = put_text(r, buf, 1 + rng_below(r, 80));
    } else if (pick < 85) {
        /* a character of width w starting at 280 - s: it straddles byte 280
         * when s < w */
        size_t s = rng_below(r, 4);
        int w = 1 + (int)rng_below(r, 4);
        n = 0;
        while (n < ALERT_NARRATIVE_MAX - s)
            buf[n++] = 'x';
        n += put_char(r, buf + n, w);
        n += put_text(r, buf + n, rng_below(r, 200));
    } else if (pick < 93) {
        n = ALERT_NARRATIVE_MAX - 1 + rng_below(r, 3);  /* 279, 280, 281 */
        n = put_text(r, buf, n);
    } else if (pick < 99) {
        n = put_text(r, buf, 281 + rng_below(r, 700));
    } else {
        n = put_text(r, buf, EVENT_FEEDBACK_TEXT_MAX - rng_below(r, 4));
    }
    *len_out = n;
    return xstrndup(buf, n);
}

static char *gen_customer_id(rng_t *r, char **taken, size_t ntaken)
{
    char buf[EVENT_CUSTOMER_ID_MAX + 8];
    for (;;) {
        size_t n = 0;
        uint64_t style = rng_below(r, 10);
        if (style < 4) {
            n = (size_t)snprintf(buf, sizeof buf, "c%" PRIu64, rng_below(r, 1000));
        } else if (style < 7) {
            n = put_text(r, buf, 1 + rng_below(r, 12));
        } else if (style < 9 && ntaken > 0) {
            /* an existing id plus a suffix: a prefix of it sorts first */
            const char *base = taken[rng_below(r, ntaken)];
            n = strlen(base);
            if (n > 200)
                continue;
            memcpy(buf, base, n);
            n += put_text(r, buf + n, 1 + rng_below(r, 3));
        } else {
            n = put_text(r, buf, EVENT_CUSTOMER_ID_MAX - rng_below(r, 30));
        }
        bool dup = false;
        for (size_t i = 0; i < ntaken && !dup; i++)
            dup = strlen(taken[i]) == n && memcmp(taken[i], buf, n) == 0;
        if (!dup && n > 0)
            return xstrndup(buf, n);
    }
}

enum { MOOD_ANGRY, MOOD_NEUTRAL, MOOD_HAPPY };

static float gen_sentiment(rng_t *r, int mood, const score_params_t *p)
{
    double nh_threshold = p->needs_human_sentiment;
    uint64_t pick = rng_below(r, 100);
    if (pick < 6) {
        /* the route threshold (SPEC §10.1) and values either side */
        float f = (float)p->route_sentiment;
        return pick < 3 ? f : nextafterf(f, pick == 3 ? -1.0f : 1.0f);
    }
    pick = rng_below(r, 100);
    if (pick < 10)
        return -0.6f;
    if (pick < 14)
        return nextafterf(-0.6f, -1.0f);
    if (pick < 18)
        return nextafterf(-0.6f, 1.0f);
    if (pick < 22)
        return (float)nh_threshold;
    if (pick < 25)
        return nextafterf((float)nh_threshold, rng_chance(r, 0.5) ? -1.0f : 1.0f);
    if (pick < 28) {
        /* 10000 times 0.03125 or 0.65625 is a half: SPEC §9.1 rounds it
         * away from zero */
        static const float edges[] = { -1.0f, 1.0f, 0.0f, -0.0f, -0.7f, 0.5f, 1e-45f, -1e-45f,
                                       0.03125f, -0.03125f, -0.65625f, 0.00005f, -0.00005f };
        return edges[rng_below(r, sizeof edges / sizeof edges[0])];
    }
    double u = rng_unit(r);
    if (mood == MOOD_ANGRY)
        u = -1.0 + u * 1.2;                         /* [-1, 0.2) */
    else if (mood == MOOD_HAPPY)
        u = -0.2 + u * 1.2;                         /* [-0.2, 1) */
    else
        u = -1.0 + 2.0 * u;
    float f = (float)u;
    if (f > 1.0f)
        f = 1.0f;
    if (f < -1.0f)
        f = -1.0f;
    return f;
}

static void gen_event(rng_t *r, gev_t *g, int mood, const score_params_t *p, bool huge_ht)
{
    event_t *e = &g->e;
    uint64_t k = rng_below(r, 100);
    int cancel = mood == MOOD_ANGRY ? 12 : 4, purchase = mood == MOOD_HAPPY ? 14 : 5;
    e->kind = k < 60 ? KIND_CONTACT : k < 80 ? KIND_FEEDBACK
            : k < 80 + (uint64_t)purchase ? KIND_PURCHASE
            : k < 80 + (uint64_t)(purchase + cancel) ? KIND_CANCELLATION : KIND_FEEDBACK;
    e->channel = (event_channel_t)rng_below(r, EVENT_CHANNEL_COUNT);
    uint64_t h = rng_below(r, 100);
    e->handled_by = h < 55 ? HANDLER_AI : h < 75 ? HANDLER_HUMAN : h < 85 ? HANDLER_HYBRID
                                                                        : HANDLER_NONE;
    uint64_t res = rng_below(r, 100);
    int p_false = mood == MOOD_ANGRY ? 65 : mood == MOOD_HAPPY ? 10 : 30;
    e->resolved = res < 20 ? TRI_NULL : res < 20 + (uint64_t)p_false ? TRI_FALSE : TRI_TRUE;
    e->has_sentiment = rng_chance(r, 0.6);
    e->sentiment = e->has_sentiment ? gen_sentiment(r, mood, p) : 0.0f;
    e->has_csat = rng_chance(r, 0.3);
    if (e->has_csat)
        e->csat = mood == MOOD_ANGRY ? 1 + (int32_t)rng_below(r, 3)
                : mood == MOOD_HAPPY ? 3 + (int32_t)rng_below(r, 3) : 1 + (int32_t)rng_below(r, 5);
    e->has_nps = rng_chance(r, 0.3);
    if (e->has_nps)
        e->nps = mood == MOOD_ANGRY ? (int32_t)rng_below(r, 8)
               : mood == MOOD_HAPPY ? 6 + (int32_t)rng_below(r, 5) : (int32_t)rng_below(r, 11);
    e->has_handle_time = rng_chance(r, 0.5);
    if (e->has_handle_time) {
        if (huge_ht && rng_chance(r, 0.2)) {
            static const int64_t big[] = { INT64_MAX, INT64_MAX - 1, (1LL << 53) + 1,
                                           (1LL << 62), 4611686018427387903LL };
            e->handle_time_ms = big[rng_below(r, sizeof big / sizeof big[0])];
        } else {
            e->handle_time_ms = (int64_t)rng_below(r, 3600001);
        }
    }
    if (rng_chance(r, 0.4))
        g->text = gen_text(r, &g->text_len);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* a + d, saturating at INT64_MAX; a, d >= 0. */
static int64_t sat_add(int64_t a, int64_t d)
{
    return a > INT64_MAX - d ? INT64_MAX : a + d;
}

static void stream_free(stream_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->ev[i].event_id);
        free(s->ev[i].customer_id);
        free(s->ev[i].text);
    }
    free(s->ev);
    s->ev = NULL;
    s->n = 0;
}

/* Points each event's views at its own strings. */
static void stream_link(stream_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        gev_t *g = &s->ev[i];
        g->e.event_id = (strview_t){ g->event_id, strlen(g->event_id) };
        g->e.customer_id = (strview_t){ g->customer_id, strlen(g->customer_id) };
        g->e.feedback_text = (strview_t){ g->text, g->text ? g->text_len : 0 };
    }
}

static void stream_gen(const model_case_t *c, uint64_t seed, stream_t *s)
{
    rng_t r = { seed };
    score_params_t p;
    case_params(c, &p);
    const gen_knobs_t *g = &c->g;
    int64_t bms = p.bucket_ms, W = p.window_buckets;

    size_t ncust = (size_t)(g->min_customers +
                            (int)rng_below(&r, (uint64_t)(g->max_customers - g->min_customers + 1)));
    char **ids = calloc(ncust, sizeof *ids);
    int *mood = calloc(ncust, sizeof *mood);
    cr_assert(ids && mood);
    for (size_t i = 0; i < ncust; i++) {
        ids[i] = gen_customer_id(&r, ids, i);
        mood[i] = (int)rng_below(&r, 3);
    }
    size_t hot = ncust < 6 ? ncust : 6;
    static const uint64_t commit_every[] = { 1, 3, 10, 60, 400, 1000000 };
    uint64_t every = commit_every[rng_below(&r, sizeof commit_every / sizeof commit_every[0])];

    s->n = (size_t)g->events;
    s->ev = calloc(s->n, sizeof *s->ev);
    cr_assert_not_null(s->ev);
    s->partition = (int32_t)rng_below(&r, 8);

    /* base: sometimes 0 (the first buckets), else an ordinary epoch time */
    int64_t now = rng_chance(&r, 0.2) ? (int64_t)rng_below(&r, (uint64_t)bms * 2)
                                      : 1700000000000LL + (int64_t)rng_below(&r, (uint64_t)bms * 10);
    if (g->near_int64_max)
        now = INT64_MAX - (int64_t)g->events * (g->step_max + bms / 10) -
              (int64_t)rng_below(&r, (uint64_t)bms * 4);
    int64_t top = -1;                           /* the watermark the stream builds */
    for (size_t i = 0; i < s->n; i++) {
        gev_t *ge = &s->ev[i];
        size_t ci = rng_chance(&r, 0.5) ? rng_below(&r, hot) : rng_below(&r, ncust);
        if (rng_chance(&r, 0.01))
            mood[ci] = (int)rng_below(&r, 3);

        if (i > 0) {
            if (g->far_jump_max > 0 && rng_chance(&r, 0.003))
                now = sat_add(now, (int64_t)rng_below(&r, (uint64_t)g->far_jump_max));
            else if (rng_chance(&r, g->jump_prob))
                now = sat_add(now, bms * (1 + (int64_t)rng_below(&r, (uint64_t)(W + 3))) +
                                   (int64_t)rng_below(&r, (uint64_t)bms));
            else if (rng_chance(&r, 0.02) && now < INT64_MAX - bms)
                now = (floor_div(now, bms) + 1) * bms;     /* a bucket's first ms */
            else
                now = sat_add(now, (int64_t)rng_below(&r, (uint64_t)g->step_max + 1));
        }
        if (i > 0 && rng_chance(&r, 0.01)) {
            /* a producer's retry: an earlier event again, at a later
             * offset; it counts again (perhaps late by now) */
            const gev_t *src = &s->ev[i - 1 - rng_below(&r, i < 50 ? i : 50)];
            ge->e = src->e;
            ge->event_id = xstrndup(src->event_id, strlen(src->event_id));
            ge->customer_id = xstrndup(src->customer_id, strlen(src->customer_id));
            ge->text = src->text ? xstrndup(src->text, src->text_len) : NULL;
            ge->text_len = src->text_len;
            ge->tombstone = src->tombstone;
            ge->commit_after = rng_below(&r, every) == 0;
            ge->restart_after = ge->commit_after && rng_chance(&r, g->restart_prob);
            continue;
        }
        if (rng_chance(&r, 0.015)) {
            /* SPEC §1.2: a tombstone, mostly for a customer of the stream
             * (who may come back), now and then for one never seen */
            char unknown[32];
            const char *id = ids[ci];
            if (rng_chance(&r, 0.15)) {
                snprintf(unknown, sizeof unknown, "never-seen-%zu", i);
                id = unknown;
            }
            ge->tombstone = true;
            ge->customer_id = xstrndup(id, strlen(id));
            ge->event_id = xstrndup("", 0);
            ge->commit_after = rng_below(&r, every) == 0;
            ge->restart_after = ge->commit_after && rng_chance(&r, g->restart_prob);
            continue;
        }
        int64_t t = now;
        if (top >= 0) {
            int64_t low_ms = (floor_div(top, bms) - W + 1) * bms;  /* window's first ms */
            double u = rng_unit(&r);
            if (u < g->late_prob)
                t = low_ms - 1 - (int64_t)rng_below(&r, (uint64_t)(bms * 3));
            else if (u < g->late_prob + g->edge_prob)
                t = low_ms - (int64_t)rng_below(&r, 2);    /* in, or just late */
            else if (u < g->late_prob + g->edge_prob + 0.25)
                t = now - (int64_t)rng_below(&r, (uint64_t)g->jitter_max + 1);
        }
        if (t < 0)
            t = 0;
        if (t > top)
            top = t;

        gen_event(&r, ge, mood[ci], &p, g->huge_handle_times);
        ge->e.occurred_at = t;
        ge->customer_id = xstrndup(ids[ci], strlen(ids[ci]));
        char eid[EVENT_EVENT_ID_MAX + 1];
        int n = snprintf(eid, sizeof eid, "ev-%" PRIu64 "-%zu", seed, i);
        if (rng_chance(&r, 0.05)) {
            while (n < EVENT_EVENT_ID_MAX)
                eid[n++] = (char)('a' + rng_below(&r, 26));
            eid[n] = '\0';
        }
        ge->event_id = xstrndup(eid, strlen(eid));
        ge->commit_after = rng_below(&r, every) == 0;
        ge->restart_after = ge->commit_after && rng_chance(&r, g->restart_prob);
        ge->check_all_after = rng_chance(&r, 0.003);
    }
    for (size_t i = 0; i < ncust; i++)
        free(ids[i]);
    free(ids);
    free(mood);
    stream_link(s);
}

/* ---- printing ---- */

typedef struct msgbuf {
    char text[16384];
    size_t len;
} msgbuf_t;

static void say(msgbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(msgbuf_t *b, const char *fmt, ...)
{
    if (b->len >= sizeof b->text - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n;
    if (b->len > sizeof b->text - 1)
        b->len = sizeof b->text - 1;
}

/* A byte string, printable: non-ASCII as \xNN, long ones shortened. */
static void say_bytes(msgbuf_t *b, strview_t s)
{
    say(b, "\"");
    for (size_t i = 0; i < s.len; i++) {
        if (s.len > 48 && i == 20) {
            say(b, "...(%zu bytes)...", s.len);
            i = s.len - 20;
        }
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            say(b, "%c", ch);
        else
            say(b, "\\x%02x", ch);
    }
    say(b, "\"");
}

static const char *tri_name(tri_t t)
{
    return t == TRI_NULL ? "null" : t == TRI_TRUE ? "true" : "false";
}

static void say_event(msgbuf_t *b, size_t idx, const gev_t *g)
{
    const event_t *e = &g->e;
    if (g->tombstone) {
        say(b, "  [%zu] offset=%zu tombstone customer=", idx, idx);
        say_bytes(b, e->customer_id);
        say(b, "%s%s\n", g->commit_after ? " commit" : "", g->restart_after ? " restart" : "");
        return;
    }
    say(b, "  [%zu] offset=%zu id=", idx, idx);
    say_bytes(b, e->event_id);
    say(b, " customer=");
    say_bytes(b, e->customer_id);
    say(b, " t=%" PRId64 " %s %s %s resolved=%s", e->occurred_at, event_kind_names[e->kind],
        event_channel_names[e->channel], event_handler_names[e->handled_by],
        tri_name(e->resolved));
    if (e->has_sentiment)
        say(b, " sentiment=%.9g(%a)", (double)e->sentiment, (double)e->sentiment);
    if (e->has_csat)
        say(b, " csat=%d", e->csat);
    if (e->has_nps)
        say(b, " nps=%d", e->nps);
    if (e->has_handle_time)
        say(b, " ht=%" PRId64, e->handle_time_ms);
    if (e->feedback_text.ptr) {
        say(b, " text=");
        say_bytes(b, e->feedback_text);
    }
    if (g->commit_after)
        say(b, " +commit");
    if (g->restart_after)
        say(b, " +restart");
    say(b, "\n");
}

static const char *fmt4(char buf[64], double v)
{
    snprintf(buf, 64, "%.4f", v);
    return buf;
}

/* ---- one run: window and model side by side ---- */

typedef struct idset {
    char **ids;
    size_t *lens;
    size_t n, cap;
} idset_t;

static ssize_t idset_find(const idset_t *s, strview_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->lens[i] == id.len && memcmp(s->ids[i], id.ptr, id.len) == 0)
            return (ssize_t)i;
    return -1;
}

static void idset_add(idset_t *s, strview_t id)
{
    if (idset_find(s, id) >= 0)
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
        s->lens = realloc(s->lens, s->cap * sizeof *s->lens);
        cr_assert(s->ids && s->lens);
    }
    s->ids[s->n] = xstrndup(id.ptr, id.len);
    s->lens[s->n++] = id.len;
}

static void idset_remove(idset_t *s, strview_t id)
{
    ssize_t i = idset_find(s, id);
    if (i < 0)
        return;
    free(s->ids[i]);
    s->ids[i] = s->ids[s->n - 1];
    s->lens[i] = s->lens[s->n - 1];
    s->n--;
}

static void idset_free(idset_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

/* The latest state blob of every customer, as a sink would keep it. */
typedef struct blobs {
    idset_t ids;
    unsigned char **data;         /* parallel to ids */
    size_t *len;
    size_t cap;
} blobs_t;

static void blobs_put(blobs_t *b, strview_t id, const unsigned char *data, size_t len)
{
    ssize_t i = idset_find(&b->ids, id);
    if (i < 0) {
        idset_add(&b->ids, id);
        i = (ssize_t)b->ids.n - 1;
        if (b->ids.n > b->cap) {
            b->cap = b->ids.cap;
            b->data = realloc(b->data, b->cap * sizeof *b->data);
            b->len = realloc(b->len, b->cap * sizeof *b->len);
            cr_assert(b->data && b->len);
        }
        b->data[i] = NULL;
    }
    free(b->data[i]);
    b->data[i] = malloc(len ? len : 1);
    cr_assert_not_null(b->data[i]);
    if (len > 0)
        memcpy(b->data[i], data, len);
    b->len[i] = len;
}

static void blobs_del(blobs_t *b, strview_t id)
{
    ssize_t i = idset_find(&b->ids, id);
    if (i < 0)
        return;
    size_t last = b->ids.n - 1;
    free(b->data[i]);
    b->data[i] = b->data[last];
    b->len[i] = b->len[last];
    idset_remove(&b->ids, id);      /* moves the last id to i, as above */
}

static void blobs_free(blobs_t *b)
{
    for (size_t i = 0; i < b->ids.n; i++)
        free(b->data[i]);
    free(b->data);
    free(b->len);
    idset_free(&b->ids);
}

/* History counters (SPEC §9.1) summed over flushes, sorted by
 * (bucket_start, field) as model_history() is. */
typedef struct hsum {
    int64_t bucket_start;
    char field[WINDOW_HIST_FIELD_MAX];
    __int128 total;
} hsum_t;

typedef struct hsums {
    hsum_t *v;
    size_t n, cap;
} hsums_t;

static int hkey_cmp(int64_t s1, const char *f1, int64_t s2, const char *f2)
{
    return s1 < s2 ? -1 : s1 > s2 ? 1 : strcmp(f1, f2);
}

static void hsums_add(hsums_t *h, int64_t bucket_start, const char *field, int64_t d)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = hkey_cmp(h->v[mid].bucket_start, h->v[mid].field, bucket_start, field);
        if (c == 0) {
            h->v[mid].total += d;
            return;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->v = realloc(h->v, h->cap * sizeof *h->v);
        cr_assert_not_null(h->v);
    }
    memmove(&h->v[lo + 1], &h->v[lo], (h->n - lo) * sizeof *h->v);
    memset(&h->v[lo], 0, sizeof h->v[lo]);
    h->v[lo].bucket_start = bucket_start;
    snprintf(h->v[lo].field, sizeof h->v[lo].field, "%s", field);
    h->v[lo].total = d;
    h->n++;
}

static int64_t sat64(__int128 t)
{
    return t > INT64_MAX ? INT64_MAX : t < INT64_MIN ? INT64_MIN : (int64_t)t;
}

typedef struct run {
    window_t *w;
    model_t *m;
    msgbuf_t *msg;                /* the first mismatch */
    bool bad;
    size_t bad_index;             /* event index of the first mismatch */
    size_t cur_index;             /* the event being checked, for callbacks */
    size_t wseen, mseen;          /* alerts compared so far */
    idset_t evicted;              /* the window's deletes, minus re-upserts */
    idset_t changes;              /* one commit's foreach_change, for duplicates */
    idset_t change_upserts;
    blobs_t blobs;
    blobs_t shadow;               /* the public fields as a sink holds them, applying
                                   * only the fields each upsert's mask names */
    hsums_t hist;                 /* every committed history delta, summed */
    int64_t org[WINDOW_ORG_FIELDS];   /* every committed org delta, summed */
} run_t;

/* Records the first mismatch; true when this is it (the caller then adds
 * the details), false when an earlier one is already recorded. */
static bool mismatch(run_t *r, size_t idx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool mismatch(run_t *r, size_t idx, const char *fmt, ...)
{
    if (r->bad)
        return false;
    r->bad = true;
    r->bad_index = idx;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->msg->text + r->msg->len, sizeof r->msg->text - r->msg->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->msg->len += (size_t)n;
    if (r->msg->len > sizeof r->msg->text - 1)
        r->msg->len = sizeof r->msg->text - 1;
    return true;
}

static bool sv_eq(strview_t a, strview_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void say_model_alert(msgbuf_t *b, const model_alert_t *a)
{
    char s1[64], s2[64];
    say(b, "{%s %s customer=", alert_type_names[a->type], alert_trigger_names[a->trigger]);
    say_bytes(b, a->customer_id);
    say(b, " score=%s previous=%s event_id=", fmt4(s1, a->score),
        a->has_previous ? fmt4(s2, a->previous_score) : "(none)");
    say_bytes(b, a->event_id);
    say(b, " occurred_at=%" PRId64 " partition=%d offset=%" PRId64 " narrative=",
        a->occurred_at, a->partition, a->offset);
    say_bytes(b, a->narrative);
    say(b, "}");
}

static void say_window_alert(msgbuf_t *b, const alert_t *a)
{
    char s1[64], s2[64];
    say(b, "{%s %s customer=", a->type < ALERT_TYPE_COUNT ? alert_type_names[a->type] : "?",
        a->trigger <= TRIGGER_EXPIRY ? alert_trigger_names[a->trigger] : "?");
    say_bytes(b, a->customer_id);
    say(b, " score=%s previous=%s event_id=", fmt4(s1, a->score),
        a->has_previous ? fmt4(s2, a->previous_score) : "(none)");
    say_bytes(b, a->event_id);
    say(b, " occurred_at=%" PRId64 " partition=%d offset=%" PRId64 " narrative=",
        a->occurred_at, a->partition, a->offset);
    say_bytes(b, a->narrative);
    say(b, "} reason=\"%.200s\"", a->reason);
}

static bool alert_eq(const alert_t *w, const model_alert_t *m)
{
    char a[64], b[64];
    if (w->type != m->type || w->trigger != m->trigger)
        return false;
    if (!sv_eq(w->customer_id, m->customer_id) || !sv_eq(w->event_id, m->event_id) ||
        !sv_eq(w->narrative, m->narrative))
        return false;
    if (strcmp(fmt4(a, w->score), fmt4(b, m->score)) != 0)
        return false;
    if (w->has_previous != m->has_previous)
        return false;
    if (m->has_previous && strcmp(fmt4(a, w->previous_score), fmt4(b, m->previous_score)) != 0)
        return false;
    return w->occurred_at == m->occurred_at && w->partition == m->partition &&
           w->offset == m->offset;
}

static void compare_alerts(run_t *r, size_t idx)
{
    size_t wn, mn;
    const alert_t *wa = window_alerts(r->w, &wn);
    const model_alert_t *ma = model_alerts(r->m, &mn);
    size_t wnew = wn - r->wseen, mnew = mn - r->mseen;
    bool same = wnew == mnew;
    for (size_t i = 0; same && i < wnew; i++)
        same = alert_eq(&wa[r->wseen + i], &ma[r->mseen + i]);
    if (!same && mismatch(r, idx, "alerts after event %zu differ: window raised %zu, model %zu\n",
                          idx, wnew, mnew)) {
        say(r->msg, " window:\n");
        for (size_t i = 0; i < wnew; i++) {
            say(r->msg, "  ");
            say_window_alert(r->msg, &wa[r->wseen + i]);
            say(r->msg, "\n");
        }
        say(r->msg, " model:\n");
        for (size_t i = 0; i < mnew; i++) {
            say(r->msg, "  ");
            say_model_alert(r->msg, &ma[r->mseen + i]);
            say(r->msg, "\n");
        }
    }
    r->wseen = wn;
    r->mseen = mn;
}

static void say_view(msgbuf_t *b, strview_t id, double ci, double res, double sen, double loy,
                     double ai, double aht, int64_t streak, int64_t contacts, int64_t resolved,
                     int64_t events, int at_risk, int64_t updated_at, strview_t last_event_id,
                     bool route_human, const char *route_reason)
{
    char f[6][64];
    say(b, "customer=");
    say_bytes(b, id);
    say(b, " ci=%s resolution=%s sentiment=%s loyalty=%s ai_share=%s aht_ms=%s streak=%" PRId64
        " contacts=%" PRId64 " resolved=%" PRId64 " events=%" PRId64 " at_risk=%d updated_at=%"
        PRId64 " last_event_id=", fmt4(f[0], ci), fmt4(f[1], res), fmt4(f[2], sen),
        fmt4(f[3], loy), fmt4(f[4], ai), fmt4(f[5], aht), streak, contacts, resolved, events,
        at_risk, updated_at);
    say_bytes(b, last_event_id);
    say(b, " route=%s route_reason=\"%s\"", route_human ? "human" : "ai",
        route_reason ? route_reason : "(null)");
}

static void compare_customer(run_t *r, size_t idx, strview_t id)
{
    model_customer_t mv;
    window_customer_view_t wv;
    bool min = model_get(r->m, id, &mv);
    bool win = window_get(r->w, id, &wv);
    if (!min && !win)
        return;
    if (min != win) {
        if (!mismatch(r, idx, "after event %zu, customer ", idx))
            return;
        say_bytes(r->msg, id);
        say(r->msg, " is %s by the window but %s by the model\n",
            win ? "tracked" : "not tracked", min ? "tracked" : "not tracked");
        return;
    }
    char a[6][64], b[6][64];
    bool same =
        sv_eq(wv.customer_id, mv.customer_id) &&
        !strcmp(fmt4(a[0], wv.ci), fmt4(b[0], mv.ci)) &&
        !strcmp(fmt4(a[1], wv.resolution), fmt4(b[1], mv.resolution)) &&
        !strcmp(fmt4(a[2], wv.sentiment), fmt4(b[2], mv.sentiment)) &&
        !strcmp(fmt4(a[3], wv.loyalty), fmt4(b[3], mv.loyalty)) &&
        !strcmp(fmt4(a[4], wv.ai_share), fmt4(b[4], mv.ai_share)) &&
        !strcmp(fmt4(a[5], wv.aht_ms), fmt4(b[5], mv.aht_ms)) &&
        wv.streak == mv.streak && wv.contacts == mv.contacts && wv.resolved == mv.resolved &&
        wv.events == mv.events && wv.at_risk == mv.at_risk && wv.updated_at == mv.updated_at &&
        /* The window keeps last_event_id only until the commit after the
         * customer's last event (the hash holds it; DESIGN.md §3): when it
         * has one, it must be the model's. */
        (wv.last_event_id.len == 0 || sv_eq(wv.last_event_id, mv.last_event_id)) &&
        wv.route_human == mv.route_human && wv.route_reason != NULL &&
        strcmp(wv.route_reason, mv.route_reason) == 0;
    if (!same && mismatch(r, idx, "after event %zu, customer views differ\n window: ", idx)) {
        say_view(r->msg, wv.customer_id, wv.ci, wv.resolution, wv.sentiment, wv.loyalty,
                 wv.ai_share, wv.aht_ms, wv.streak, wv.contacts, wv.resolved, wv.events,
                 wv.at_risk, wv.updated_at, wv.last_event_id, wv.route_human, wv.route_reason);
        say(r->msg, "\n model:  ");
        say_view(r->msg, mv.customer_id, mv.ci, mv.resolution, mv.sentiment, mv.loyalty,
                 mv.ai_share, mv.aht_ms, mv.streak, mv.contacts, mv.resolved, mv.events,
                 mv.at_risk, mv.updated_at, mv.last_event_id, mv.route_human, mv.route_reason);
        say(r->msg, "\n");
    }
}

static void compare_all(run_t *r, size_t idx)
{
    size_t n;
    const model_customer_t *views = model_customers(r->m, &n);
    /* model_customers' array is invalidated by nothing compare_customer
     * calls (model_get only reads), so it can be walked here. */
    for (size_t i = 0; i < n && !r->bad; i++)
        compare_customer(r, idx, views[i].customer_id);
    size_t ne;
    const strview_t *ev = model_evicted(r->m, &ne);
    for (size_t i = 0; i < ne && !r->bad; i++)
        compare_customer(r, idx, ev[i]);
}

/* SPEC §9.2: the org deltas written so far plus the ones not yet written
 * must be the model's organisation, computed from scratch. */
static void compare_org(run_t *r, size_t idx)
{
    int64_t d[WINDOW_ORG_FIELDS], want[WINDOW_ORG_FIELDS];
    window_org_deltas(r->w, d);
    model_org(r->m, want);
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++) {
        if (r->org[k] + d[k] != want[k] &&
            mismatch(r, idx, "after event %zu, org %s: written %" PRId64 " + pending delta %"
                     PRId64 ", model %" PRId64 "\n", idx, window_org_field_names[k], r->org[k],
                     d[k], want[k]))
            return;
    }
}

/* SPEC §9.1: the sum of every flush's history deltas (and the ones not yet
 * committed) must be the model's totals, counter by counter. */
static void compare_history(run_t *r, size_t idx)
{
    hsums_t all = { 0 };
    all.v = malloc((r->hist.n ? r->hist.n : 1) * sizeof *all.v);
    cr_assert_not_null(all.v);
    if (r->hist.n > 0)
        memcpy(all.v, r->hist.v, r->hist.n * sizeof *all.v);
    all.n = all.cap = r->hist.n;
    size_t nd;
    const window_hist_delta_t *d = window_history_deltas(r->w, &nd);
    for (size_t i = 0; i < nd; i++)
        hsums_add(&all, d[i].bucket_start, d[i].field, d[i].delta);
    size_t nm;
    const model_hist_t *mh = model_history(r->m, &nm);
    size_t i = 0, j = 0;
    while ((i < all.n || j < nm) && !r->bad) {
        int c = i == all.n ? 1 : j == nm ? -1
              : hkey_cmp(all.v[i].bucket_start, all.v[i].field, mh[j].bucket_start, mh[j].field);
        int64_t wv = c <= 0 ? sat64(all.v[i].total) : 0;
        int64_t mv = c >= 0 ? mh[j].total : 0;
        int64_t S = c <= 0 ? all.v[i].bucket_start : mh[j].bucket_start;
        const char *f = c <= 0 ? all.v[i].field : mh[j].field;
        if (wv != mv)
            mismatch(r, idx, "after event %zu, history:%" PRId64 " %s: window deltas sum to %"
                     PRId64 ", model %" PRId64 "\n", idx, S, f, wv, mv);
        if (c <= 0)
            i++;
        if (c >= 0)
            j++;
    }
    free(all.v);
}

static int hdelta_cmp(const void *a, const void *b)
{
    const window_hist_delta_t *x = a, *y = b;
    return hkey_cmp(x->bucket_start, x->field, y->bucket_start, y->field);
}

/* One flush's history and org deltas, as a sink would write them: each
 * (S, field) at most once, fields well formed; then summed into r. */
static void take_deltas(run_t *r, size_t idx)
{
    size_t nd;
    const window_hist_delta_t *d = window_history_deltas(r->w, &nd);
    window_hist_delta_t *sorted = malloc((nd ? nd : 1) * sizeof *sorted);
    cr_assert_not_null(sorted);
    if (nd > 0)
        memcpy(sorted, d, nd * sizeof *sorted);
    qsort(sorted, nd, sizeof *sorted, hdelta_cmp);
    for (size_t i = 0; i < nd; i++) {
        if (i > 0 && hdelta_cmp(&sorted[i - 1], &sorted[i]) == 0)
            mismatch(r, idx, "after event %zu, history delta %" PRId64 " %s twice in a flush\n",
                     idx, sorted[i].bucket_start, sorted[i].field);
        if (memchr(sorted[i].field, '\0', sizeof sorted[i].field) == NULL)
            mismatch(r, idx, "after event %zu, a history field is not terminated\n", idx);
        hsums_add(&r->hist, d[i].bucket_start, d[i].field, d[i].delta);
    }
    free(sorted);
    int64_t od[WINDOW_ORG_FIELDS];
    window_org_deltas(r->w, od);
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++)
        r->org[k] += od[k];
}

/* After a commit (or a restart) nothing is left to write. */
static void expect_no_deltas(run_t *r, size_t idx, const char *when)
{
    size_t nd;
    window_history_deltas(r->w, &nd);
    int64_t od[WINDOW_ORG_FIELDS];
    window_org_deltas(r->w, od);
    bool zero = nd == 0;
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++)
        zero = zero && od[k] == 0;
    if (!zero)
        mismatch(r, idx, "after event %zu, %s: %zu history deltas or org deltas left\n", idx,
                 when, nd);
}

/* Upserts seen with a mask short of BATCH_CF_ALL, and fields they left
 * out, over the process: the shadow check must not pass vacuously. */
static size_t mask_partial, mask_fields_left;

#define NFIELDS 13
#define FIELD_MAX 48

/* The public fields of v as a sink writes them (SPEC §5), with the
 * BATCH_CF_* bit of each. */
static void view_fields(const window_customer_view_t *v, char f[NFIELDS][FIELD_MAX])
{
    const double d[6] = { v->ci, v->resolution, v->sentiment, v->loyalty, v->ai_share, v->aht_ms };
    for (int i = 0; i < 6; i++)
        snprintf(f[i], FIELD_MAX, "%.4f", d[i]);
    const int64_t n[6] = { v->streak, v->contacts, v->resolved, v->events, v->at_risk,
                           v->updated_at };
    for (int i = 0; i < 6; i++)
        snprintf(f[6 + i], FIELD_MAX, "%" PRId64, n[i]);
    snprintf(f[12], FIELD_MAX, "%d/%s", v->route_human, v->route_reason ? v->route_reason : "");
}

static const uint32_t field_bits[NFIELDS] = {
    BATCH_CF_CI, BATCH_CF_RESOLUTION, BATCH_CF_SENTIMENT, BATCH_CF_LOYALTY, BATCH_CF_AI_SHARE,
    BATCH_CF_AHT_MS, BATCH_CF_STREAK, BATCH_CF_CONTACTS, BATCH_CF_RESOLVED, BATCH_CF_EVENTS,
    BATCH_CF_AT_RISK, BATCH_CF_UPDATED_AT, BATCH_CF_ROUTE };

/* A sink writing only the fields v->changed names must end up with every
 * field of v: checked against the shadow of what earlier upserts wrote. */
static void check_mask(run_t *r, const window_customer_view_t *v)
{
    char f[NFIELDS][FIELD_MAX];
    view_fields(v, f);
    ssize_t i = idset_find(&r->shadow.ids, v->customer_id);
    if (v->changed != BATCH_CF_ALL) {
        mask_partial++;
        if (i < 0) {
            if (mismatch(r, r->cur_index, "after event %zu, mask %#x for a customer the sink "
                         "does not hold: ", r->cur_index, v->changed)) {
                say_bytes(r->msg, v->customer_id);
                say(r->msg, "\n");
            }
            return;
        }
        const char (*old)[FIELD_MAX] = (const char (*)[FIELD_MAX])r->shadow.data[i];
        for (int k = 0; k < NFIELDS; k++) {
            if (v->changed & field_bits[k])
                continue;
            mask_fields_left++;
            if (strcmp(old[k], f[k]) != 0 &&
                mismatch(r, r->cur_index, "after event %zu, field %d left out by mask %#x "
                         "changed from %s to %s for ", r->cur_index, k, v->changed, old[k],
                         f[k])) {
                say_bytes(r->msg, v->customer_id);
                say(r->msg, "\n");
            }
        }
    }
    blobs_put(&r->shadow, v->customer_id, (const unsigned char *)f, sizeof f);
}

static void on_upsert(void *opaque, const window_customer_view_t *v)
{
    run_t *r = opaque;
    check_mask(r, v);
    if (idset_find(&r->changes, v->customer_id) >= 0)
        mismatch(r, r->cur_index, "foreach_change reported a customer twice\n");
    idset_add(&r->changes, v->customer_id);
    idset_add(&r->change_upserts, v->customer_id);
    idset_remove(&r->evicted, v->customer_id);
    blobs_put(&r->blobs, v->customer_id, v->state, v->state_len);
}

static void on_delete(void *opaque, strview_t id)
{
    run_t *r = opaque;
    if (idset_find(&r->changes, id) >= 0)
        mismatch(r, r->cur_index, "foreach_change reported a customer twice\n");
    idset_add(&r->changes, id);
    idset_add(&r->evicted, id);
    blobs_del(&r->blobs, id);
    blobs_del(&r->shadow, id);
}

/* Both sides' change sets since the last commit, then commit both. */
static void commit_both(run_t *r, size_t idx)
{
    if (window_watermark_dirty(r->w) != model_watermark_dirty(r->m))
        mismatch(r, idx, "after event %zu, watermark_dirty: window %d, model %d\n", idx,
                 window_watermark_dirty(r->w), model_watermark_dirty(r->m));
    r->cur_index = idx;
    idset_free(&r->changes);
    idset_free(&r->change_upserts);
    window_foreach_change(r->w, on_upsert, on_delete, r);
    size_t mcount = model_change_count(r->m), gone = model_erased_gone_count(r->m);
    if (window_change_count(r->w) != mcount || r->changes.n != mcount - gone)
        mismatch(r, idx, "after event %zu, change count: window_change_count %zu, "
                 "foreach_change %zu, model %zu (%zu erased)\n", idx,
                 window_change_count(r->w), r->changes.n, mcount, gone);
    /* The erasures, as the sink gets them: the same tombstones in order,
     * and the sink forgets their resume state. */
    size_t me;
    const strview_t *mer = model_erasures(r->m, &me);
    bool same = window_erasure_count(r->w) == me;
    for (size_t i = 0; same && i < me; i++)
        same = sv_eq(window_erasure(r->w, i), mer[i]);
    if (!same)
        mismatch(r, idx, "after event %zu, erasures: window %zu, model %zu\n", idx,
                 window_erasure_count(r->w), me);
    for (size_t i = 0; i < me; i++)
        if (idset_find(&r->change_upserts, mer[i]) < 0) {
            blobs_del(&r->blobs, mer[i]);
            blobs_del(&r->shadow, mer[i]);
        }
    for (size_t i = 0; i < r->changes.n && !r->bad; i++) {
        strview_t id = { r->changes.ids[i], r->changes.lens[i] };
        bool up = idset_find(&r->change_upserts, id) >= 0;
        model_change_t want = model_change(r->m, id);
        if (want != (up ? MODEL_UPSERT : MODEL_DELETE) &&
            mismatch(r, idx, "after event %zu, foreach_change says %s for ", idx,
                     up ? "upsert" : "delete")) {
            say_bytes(r->msg, id);
            say(r->msg, ", the model says %s\n",
                want == MODEL_UPSERT ? "upsert" : want == MODEL_DELETE ? "delete" : "unchanged");
        }
    }
    take_deltas(r, idx);
    window_commit(r->w);
    model_commit(r->m);
    expect_no_deltas(r, idx, "commit");
    r->wseen = 0;
}

static void compare_evicted(run_t *r, size_t idx)
{
    size_t ne;
    const strview_t *ev = model_evicted(r->m, &ne);
    bool same = ne == r->evicted.n;
    for (size_t i = 0; i < ne && same; i++)
        same = idset_find(&r->evicted, ev[i]) >= 0;
    if (!same)
        mismatch(r, idx, "at the end, evicted-and-not-back: window %zu customers, model %zu\n",
                 r->evicted.n, ne);
}

/* Right after a commit: a new window resumes from the watermark and the
 * blobs, as a restarted process would from Redis, and replaces the old. */
static void restart(run_t *r, size_t idx, int32_t partition, const score_params_t *p)
{
    char err[256];
    window_t *w = window_new(p, partition, err, sizeof err);
    cr_assert_not_null(w, "window_new: %s", err);
    window_set_watermark(w, window_watermark(r->w));
    for (size_t i = 0; i < r->blobs.ids.n; i++) {
        strview_t id = { r->blobs.ids.ids[i], r->blobs.ids.lens[i] };
        if (window_load_customer(w, id, r->blobs.data[i], r->blobs.len[i], err, sizeof err) != 0 &&
            mismatch(r, idx, "after event %zu, restart: window_load_customer(", idx)) {
            say_bytes(r->msg, id);
            say(r->msg, ") failed: %s\n", err);
        }
    }
    /* loading writes nothing: no history, and every customer's org
     * contribution is what its blob says was written */
    window_free(r->w);
    r->w = w;
    expect_no_deltas(r, idx, "restart");
    /* nothing is left to write: the blobs came from the sink */
    window_commit(w);
    r->wseen = 0;
    if (window_watermark(r->w) != model_watermark(r->m))
        mismatch(r, idx, "after event %zu, restart: watermark %" PRId64 ", model %" PRId64 "\n",
                 idx, window_watermark(r->w), model_watermark(r->m));
    if (window_customer_count(r->w) != model_customer_count(r->m))
        mismatch(r, idx, "after event %zu, restart: customer count: window %zu, model %zu\n",
                 idx, window_customer_count(r->w), model_customer_count(r->m));
    compare_all(r, idx);
    compare_org(r, idx);
    compare_history(r, idx);
}

/* Feeds one event to the window from private copies of its strings, freed
 * (after scribbling) as soon as window_add() returns. */
static window_result_t window_add_copy(window_t *w, const event_t *src, int64_t offset)
{
    event_t e = *src;
    char *eid = xstrndup(src->event_id.ptr, src->event_id.len);
    char *cid = xstrndup(src->customer_id.ptr, src->customer_id.len);
    char *txt = src->feedback_text.ptr ? xstrndup(src->feedback_text.ptr, src->feedback_text.len)
                                       : NULL;
    e.event_id.ptr = eid;
    e.customer_id.ptr = cid;
    e.feedback_text.ptr = txt;
    window_result_t res = window_add(w, &e, offset);
    memset(eid, '#', src->event_id.len);
    memset(cid, '#', src->customer_id.len);
    if (txt)
        memset(txt, '#', src->feedback_text.len);
    free(eid);
    free(cid);
    free(txt);
    return res;
}

/* One tombstone to both (SPEC §1.2), from a private copy of the id that is
 * scribbled over and freed at once: held or not alike, the alerts since the
 * last commit alike (the customer's raised earlier in this flush gone), the
 * customer gone from both, the watermark unmoved, the org equal. */
static void erase_both(run_t *r, size_t idx, strview_t id)
{
    char *cid = xstrndup(id.ptr, id.len);
    int64_t wm = window_watermark(r->w);
    bool wh = window_erase(r->w, (strview_t){ cid, id.len }, (int64_t)idx);
    memset(cid, '#', id.len);
    free(cid);
    bool mh = model_erase(r->m, id, (int64_t)idx);
    /* Held: it came back after any eviction, which the upsert callback
     * (never called for it now) would have noted. */
    if (wh)
        idset_remove(&r->evicted, id);
    if (wh != mh)
        mismatch(r, idx, "tombstone %zu: window says %s, model says %s\n", idx,
                 wh ? "erased" : "erased_unknown", mh ? "erased" : "erased_unknown");
    if (window_watermark(r->w) != wm)
        mismatch(r, idx, "tombstone %zu moved the watermark\n", idx);
    size_t wn, mn;
    const alert_t *wa = window_alerts(r->w, &wn);
    const model_alert_t *ma = model_alerts_since_commit(r->m, &mn);
    bool same = wn == mn;
    for (size_t i = 0; same && i < wn; i++)
        same = alert_eq(&wa[i], &ma[i]);
    if (!same)
        mismatch(r, idx, "after tombstone %zu, alerts since the commit: window %zu, model %zu\n",
                 idx, wn, mn);
    r->wseen = wn;
    model_alerts(r->m, &r->mseen);
    window_customer_view_t v;
    if (window_get(r->w, id, &v))
        mismatch(r, idx, "after tombstone %zu the window still holds the customer\n", idx);
    if (window_customer_count(r->w) != model_customer_count(r->m))
        mismatch(r, idx, "after tombstone %zu, customer count: window %zu, model %zu\n", idx,
                 window_customer_count(r->w), model_customer_count(r->m));
    compare_org(r, idx);
}

/* Runs the events through both; returns true when they agree all along.
 * On a mismatch *msg holds the first one and *bad_index its event. */
static bool run_events(const score_params_t *p, const stream_t *s, msgbuf_t *msg,
                       size_t *bad_index)
{
    char err[256];
    run_t r = { 0 };
    r.msg = msg;
    msg->len = 0;
    msg->text[0] = '\0';
    r.w = window_new(p, s->partition, err, sizeof err);
    cr_assert_not_null(r.w, "window_new: %s", err);
    r.m = model_new(p, s->partition);

    for (size_t i = 0; i < s->n && !r.bad; i++) {
        const event_t *e = &s->ev[i].e;
        if (s->ev[i].tombstone) {
            erase_both(&r, i, e->customer_id);
            if (s->ev[i].commit_after)
                commit_both(&r, i);
            if (s->ev[i].commit_after && s->ev[i].restart_after && !r.bad)
                restart(&r, i, s->partition, p);
            continue;
        }
        window_result_t wr = window_add_copy(r.w, e, (int64_t)i);
        window_result_t mr = model_add(r.m, e, (int64_t)i);
        if (wr != mr) {
            mismatch(&r, i, "event %zu: window says %s, model says %s\n", i,
                     wr == WINDOW_LATE ? "late" : "scored", mr == WINDOW_LATE ? "late" : "scored");
            break;
        }
        if (window_watermark(r.w) != model_watermark(r.m))
            mismatch(&r, i, "after event %zu, watermark: window %" PRId64 ", model %" PRId64 "\n",
                     i, window_watermark(r.w), model_watermark(r.m));
        compare_alerts(&r, i);
        if (window_customer_count(r.w) != model_customer_count(r.m))
            mismatch(&r, i, "after event %zu, customer count: window %zu, model %zu\n", i,
                     window_customer_count(r.w), model_customer_count(r.m));
        compare_customer(&r, i, e->customer_id);
        compare_org(&r, i);
        if (s->ev[i].check_all_after) {
            compare_all(&r, i);
            compare_history(&r, i);
        }
        if (s->ev[i].commit_after)
            commit_both(&r, i);
        if (s->ev[i].commit_after && s->ev[i].restart_after && !r.bad)
            restart(&r, i, s->partition, p);
    }
    if (!r.bad && s->n > 0) {
        compare_all(&r, s->n - 1);
        commit_both(&r, s->n - 1);
        compare_evicted(&r, s->n - 1);
        compare_org(&r, s->n - 1);
        compare_history(&r, s->n - 1);
    }
    *bad_index = r.bad_index;
    window_free(r.w);
    model_free(r.m);
    idset_free(&r.evicted);
    idset_free(&r.changes);
    idset_free(&r.change_upserts);
    blobs_free(&r.blobs);
    blobs_free(&r.shadow);
    free(r.hist.v);
    return !r.bad;
}

/* ---- what the streams exercise ---- */

/* Counted on the model's side over a case's streams, so that a generator
 * that stops producing some situation makes the test fail rather than
 * pass vacuously. */
typedef struct coverage {
    size_t events, late, evictions, streams_with_eviction, restarts;
    size_t alerts[ALERT_TYPE_COUNT][2];         /* [type][trigger] */
    size_t with_narrative, narrative_cut, narrative_gone, needs_human_by_sentiment;
    size_t route[5];              /* at_risk, needs_human, streak, sentiment, ai */
    size_t followups, followups_late, pending_evictions, expiry_history, half_sentiments;
    size_t ci_100, ci_0;          /* re-scores written as 100.0000 and 0.0000 */
    size_t erased, erased_unknown, erased_back; /* SPEC §1.2; back: seen again after */
} coverage_t;

static const char *const route_reasons[5] = { "at_risk", "needs_human", "streak", "sentiment",
                                               "" };

static void coverage_add(coverage_t *cov, const score_params_t *p, const stream_t *s)
{
    model_t *m = model_new(p, s->partition);
    for (size_t i = 0; i < s->n; i++) {
        cov->events++;
        if (s->ev[i].restart_after)
            cov->restarts++;
        const event_t *e = &s->ev[i].e;
        if (s->ev[i].tombstone) {
            if (model_erase(m, e->customer_id, (int64_t)i)) {
                cov->erased++;
                for (size_t j = i + 1; j < s->n; j++) {
                    if (sv_eq(s->ev[j].e.customer_id, e->customer_id)) {
                        cov->erased_back += !s->ev[j].tombstone;
                        break;
                    }
                }
            } else {
                cov->erased_unknown++;
            }
            continue;
        }
        if (model_add(m, e, (int64_t)i) == WINDOW_LATE) {
            cov->late++;
            continue;
        }
        model_customer_t v;
        if (model_get(m, e->customer_id, &v))
            for (int k = 0; k < 5; k++)
                if (strcmp(v.route_reason, route_reasons[k]) == 0)
                    cov->route[k]++;
        if (model_c(v.ci) == 1000000)
            cov->ci_100++;
        if (model_c(v.ci) == 0)
            cov->ci_0++;
        if (e->has_sentiment && fabs(fmod(10000.0 * (double)e->sentiment, 1.0)) == 0.5)
            cov->half_sentiments++;
    }
    size_t nh;
    const model_hist_t *h = model_history(m, &nh);
    for (size_t i = 0; i < nh; i++) {
        size_t fl = strlen(h[i].field);
        if (fl > 10 && strcmp(h[i].field + fl - 10, ":followups") == 0)
            cov->followups += (size_t)h[i].total;
        if (fl > 12 && strcmp(h[i].field + fl - 12, ":followup_ms") == 0 && h[i].total > 0)
            cov->followups_late++;
        if (strncmp(h[i].field, "EXPIRY:", 7) == 0)
            cov->expiry_history += (size_t)h[i].total;
    }
    cov->pending_evictions += model_pending_eviction_count(m);
    size_t n;
    const model_alert_t *a = model_alerts(m, &n);
    for (size_t i = 0; i < n; i++) {
        cov->alerts[a[i].type][a[i].trigger]++;
        if (a[i].narrative.len > 0)
            cov->with_narrative++;
        if (a[i].narrative.len >= ALERT_NARRATIVE_MAX - 3)
            cov->narrative_cut++;
        if (a[i].type == ALERT_NEEDS_HUMAN) {
            const event_t *e = &s->ev[a[i].offset].e;
            if (e->has_sentiment && (double)e->sentiment <= p->needs_human_sentiment)
                cov->needs_human_by_sentiment++;
        }
    }
    /* an alert with no narrative though its customer wrote one earlier:
     * the text's bucket left the window */
    for (size_t i = 0; i < n; i++) {
        if (a[i].narrative.len > 0)
            continue;
        for (size_t j = 0; j < s->n && (int64_t)j <= a[i].offset; j++) {
            const event_t *e = &s->ev[j].e;
            if (e->feedback_text.len > 0 && sv_eq(e->customer_id, a[i].customer_id)) {
                cov->narrative_gone++;
                break;
            }
        }
    }
    cov->evictions += model_eviction_count(m);
    if (model_eviction_count(m) > 0)
        cov->streams_with_eviction++;
    model_free(m);
}

/* ---- shrinking a failing stream ---- */

/* A stream made of s's events where keep[i]; views point into s. */
static void stream_subset(const stream_t *s, const bool *keep, stream_t *out)
{
    out->partition = s->partition;
    out->n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (keep[i])
            out->ev[out->n++] = s->ev[i];
}

/* Delta debugging: drops chunks of events while a mismatch remains. */
static void shrink(const score_params_t *p, const stream_t *s, size_t bad_index, bool *keep,
                   msgbuf_t *scratch)
{
    stream_t t = { .ev = calloc(s->n, sizeof *s->ev) };
    cr_assert_not_null(t.ev);
    size_t bi;
    for (size_t i = 0; i < s->n; i++)
        keep[i] = i <= bad_index;
    for (size_t chunk = (bad_index + 1) / 2; chunk >= 1; chunk /= 2) {
        for (size_t start = 0; start < s->n; start += chunk) {
            bool any = false;
            bool saved[chunk];
            size_t seen = 0;
            for (size_t i = start; i < s->n && seen < chunk; i++, seen++) {
                saved[seen] = keep[i];
                any |= keep[i];
                keep[i] = false;
            }
            if (!any)
                continue;
            stream_subset(s, keep, &t);
            if (t.n > 0 && !run_events(p, &t, scratch, &bi))
                continue;                   /* still failing: keep them out */
            for (size_t i = start, j = 0; j < seen; i++, j++)
                keep[i] = saved[j];
        }
        if (chunk == 1)
            break;
    }
    free(t.ev);
}

static bool run_one_seed(const model_case_t *c, uint64_t seed, coverage_t *cov)
{
    static msgbuf_t msg, scratch, out;
    score_params_t p;
    case_params(c, &p);
    stream_t s = { 0 };
    stream_gen(c, seed, &s);
    size_t bad_index;
    bool ok = run_events(&p, &s, &msg, &bad_index);
    coverage_add(cov, &p, &s);
    if (!ok) {
        out.len = 0;
        say(&out, "\n==== case %s, seed %" PRIu64 " (RAPPORT_MODEL_SEED=%" PRIu64
            "), %zu events: first mismatch at event %zu\n%s", c->name, seed, seed, s.n,
            bad_index, msg.text);
        say(&out, "the event:\n");
        say_event(&out, bad_index, &s.ev[bad_index]);
        fputs(out.text, stderr);

        bool *keep = calloc(s.n, sizeof *keep);
        cr_assert_not_null(keep);
        shrink(&p, &s, bad_index, keep, &scratch);
        stream_t t = { .ev = calloc(s.n, sizeof *s.ev) };
        cr_assert_not_null(t.ev);
        stream_subset(&s, keep, &t);
        size_t bi;
        run_events(&p, &t, &scratch, &bi);
        out.len = 0;
        say(&out, "---- minimal sequence (%zu events, partition %d; offsets renumbered 0..):\n",
            t.n, t.partition);
        for (size_t i = 0; i < t.n; i++)
            say_event(&out, i, &t.ev[i]);
        say(&out, "its mismatch at event %zu:\n%s====\n", bi, scratch.text);
        fputs(out.text, stderr);
        free(t.ev);
        free(keep);
    }
    stream_free(&s);
    return ok;
}

static void print_case_params(const model_case_t *c)
{
    score_params_t p;
    case_params(c, &p);
    fprintf(stderr, "params of %s: bucket_ms=%" PRId64 " window_buckets=%d prior_weight=%g "
            "w=%g/%g/%g streak_penalty=%g streak_cap=%d risk=%g recover=%g nh_streak=%d "
            "nh_sentiment=%g nh_cooldown_ms=%" PRId64 "\n", c->name, p.bucket_ms,
            p.window_buckets, p.prior_weight, p.w_resolution, p.w_sentiment, p.w_loyalty,
            p.streak_penalty, p.streak_cap, p.risk_threshold, p.recover_threshold,
            p.needs_human_streak, p.needs_human_sentiment, p.needs_human_cooldown_ms);
}

/* ---- the tests ---- */

ParameterizedTestParameters(model, differential)
{
    return cr_make_param_array(model_case_t, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(model_case_t *c, model, differential, .timeout = 120)
{
    const char *only = getenv("RAPPORT_MODEL_SEED");
    coverage_t cov = { 0 };
    int failed = 0;
    uint64_t first_bad = 0;
    for (int i = 0; i < c->g.streams; i++) {
        uint64_t seed = c->seed_base + (uint64_t)i;
        if (only && strtoull(only, NULL, 10) != seed)
            continue;
        if (!run_one_seed(c, seed, &cov)) {
            if (failed++ == 0) {
                first_bad = seed;
                print_case_params(c);
            }
            if (failed >= 3)
                break;              /* enough to read; the first is shrunk */
        }
    }
    cr_log_info("%s: %zu events, %zu late, %zu evictions (in %zu streams), %zu restarts; "
                "alerts churn_risk %zu+%zu, recovered %zu+%zu, needs_human %zu (%zu by "
                "sentiment) (event+expiry); %zu with a narrative, %zu cut near 280 bytes, "
                "%zu gone", c->name, cov.events, cov.late, cov.evictions,
                cov.streams_with_eviction, cov.restarts,
                cov.alerts[ALERT_CHURN_RISK][0], cov.alerts[ALERT_CHURN_RISK][1],
                cov.alerts[ALERT_RECOVERED][0], cov.alerts[ALERT_RECOVERED][1],
                cov.alerts[ALERT_NEEDS_HUMAN][0], cov.needs_human_by_sentiment,
                cov.with_narrative, cov.narrative_cut, cov.narrative_gone);
    cr_log_info("%s: routes at_risk %zu, needs_human %zu, streak %zu, sentiment %zu, ai %zu; "
                "%zu follow-ups (%zu counters with waits), %zu pending evicted, %zu expiry "
                "alerts in history, %zu sentiments at a half; ci 100 %zu times, 0 %zu times",
                c->name, cov.route[0], cov.route[1], cov.route[2], cov.route[3], cov.route[4],
                cov.followups, cov.followups_late, cov.pending_evictions, cov.expiry_history,
                cov.half_sentiments, cov.ci_100, cov.ci_0);
    if (only == NULL) {
        /* what every case must exercise, or it checks less than it claims */
        score_params_t p;
        case_params(c, &p);
        cr_expect(cov.late > 0 && cov.evictions > 0, "%s: no late event or no eviction", c->name);
        cr_expect(cov.alerts[ALERT_CHURN_RISK][TRIGGER_EVENT] > 0 &&
                  cov.alerts[ALERT_NEEDS_HUMAN][TRIGGER_EVENT] > 0,
                  "%s: no churn_risk or no needs_human", c->name);
        cr_expect(cov.narrative_cut > 0 && cov.narrative_gone > 0,
                  "%s: no narrative cut or none gone with its bucket", c->name);
        /* a one-bucket window evicts whoever loses a bucket: no expiry
         * re-score, so no expiry alert and hardly a recovery */
        if (p.window_buckets > 1)
            cr_expect(cov.alerts[ALERT_RECOVERED][TRIGGER_EVENT] > 0 &&
                      cov.alerts[ALERT_CHURN_RISK][TRIGGER_EXPIRY] > 0 &&
                      cov.alerts[ALERT_RECOVERED][TRIGGER_EXPIRY] > 0,
                      "%s: no recovered or no expiry alert", c->name);
        if (c->g.restart_prob > 0)
            cr_expect(cov.restarts > 0, "%s: no restart", c->name);
        /* SPEC §9–10: every route rule but the streak (which needs_human
         * and at_risk shadow when their thresholds are close), follow-ups
         * with a wait, pending customers evicted, sentiments at a half */
        cr_expect(cov.route[0] > 0 && cov.route[1] > 0 && cov.route[3] > 0 && cov.route[4] > 0,
                  "%s: a route rule never chose", c->name);
        cr_expect(cov.followups > 0 && cov.followups_late > 0 && cov.pending_evictions > 0,
                  "%s: no follow-up, or no pending customer evicted", c->name);
        cr_expect(cov.half_sentiments > 0, "%s: no sentiment at a half", c->name);
        cr_expect(cov.erased > 0 && cov.erased_unknown > 0 && cov.erased_back > 0,
                  "%s: tombstones: %zu erased, %zu unknown, %zu back", c->name, cov.erased,
                  cov.erased_unknown, cov.erased_back);
        if (p.window_buckets > 1)
            cr_expect(cov.expiry_history > 0, "%s: no expiry alert in the history", c->name);
        if (c->expect_clamped)
            cr_expect(cov.ci_100 > 0 && cov.ci_0 > 0, "%s: no ci of 100 or of 0", c->name);
        /* the changed masks were checked against a sink's copy */
        cr_expect(mask_partial > 0 && mask_fields_left > 0,
                  "%s: %zu partial masks, %zu fields left out", c->name, mask_partial,
                  mask_fields_left);
    }
    cr_expect_eq(failed, 0, "case %s: %d stream(s) disagree with the model, first seed %" PRIu64
                 " (details on stderr)", c->name, failed, first_bad);
}

/* The model itself, on sequences small enough to work out by hand, so that
 * a bug shared by the model and the scorer has a chance to show. */
Test(model, hand_worked_sequence)
{
    score_params_t p;
    score_params_default(&p);
    p.bucket_ms = 1000;
    p.window_buckets = 2;
    model_t *m = model_new(&p, 3);
    event_t e = { .event_id = { "e1", 2 }, .customer_id = { "bob", 3 }, .occurred_at = 5000,
                  .kind = KIND_CONTACT, .handled_by = HANDLER_AI, .resolved = TRI_FALSE,
                  .has_sentiment = true, .sentiment = -0.6f };
    cr_assert_eq(model_add(m, &e, 10), WINDOW_SCORED);
    /* C=1 R=0: (0 + 1.5) / 4 = 0.375; S: (-0.6 / 4 + 1) / 2 = 0.425;
     * L: 0.5; streak 1: penalty 4.  ci = 100 (0.15 + 0.1275 + 0.15) - 4 = 38.75 */
    model_customer_t v;
    cr_assert(model_get(m, (strview_t){ "bob", 3 }, &v));
    char buf[64];
    cr_expect_str_eq(fmt4(buf, v.ci), "38.7500");
    cr_expect_eq(v.streak, 1);
    size_t n;
    const model_alert_t *a = model_alerts(m, &n);
    /* needs_human by sentiment: (double)-0.6f = -0.60000002 <= -0.6 */
    cr_assert_eq(n, 1);
    cr_expect_eq(a[0].type, ALERT_NEEDS_HUMAN);
    cr_expect_not(a[0].has_previous);

    /* e2: streak 2, C=2: ci = 100 (0.12 + 0.1275 + 0.15) - 8 = 31.75 < 35,
     * churn_risk at offset 11; e3: streak 3 but needs_human is cooling
     * down (same day), and the customer is already at risk */
    e.event_id = (strview_t){ "e2", 2 };
    e.occurred_at = 5500;
    e.has_sentiment = false;
    model_add(m, &e, 11);
    e.event_id = (strview_t){ "e3", 2 };
    e.occurred_at = 5600;
    e.feedback_text = (strview_t){ "still broken", 12 };
    model_add(m, &e, 12);
    a = model_alerts(m, &n);
    cr_assert_eq(n, 2);
    cr_expect_eq(a[1].type, ALERT_CHURN_RISK);
    cr_expect_eq(a[1].offset, 11);
    cr_expect(a[1].has_previous);

    /* a jump of 2 buckets: bucket 5 leaves, bob is evicted, no alert */
    e.customer_id = (strview_t){ "amy", 3 };
    e.event_id = (strview_t){ "e4", 2 };
    e.occurred_at = 7000;
    e.kind = KIND_PURCHASE;
    e.feedback_text = (strview_t){ NULL, 0 };
    cr_assert_eq(model_add(m, &e, 13), WINDOW_SCORED);
    cr_expect_not(model_get(m, (strview_t){ "bob", 3 }, &v));
    a = model_alerts(m, &n);
    cr_expect_eq(n, 2);
    size_t ne;
    const strview_t *ev = model_evicted(m, &ne);
    cr_assert_eq(ne, 1);
    cr_expect(sv_eq(ev[0], (strview_t){ "bob", 3 }));
    cr_expect_eq(model_change(m, (strview_t){ "bob", 3 }), MODEL_DELETE);

    /* bucket 5 is now older than the window (6..7): late */
    e.occurred_at = 5999;
    cr_expect_eq(model_add(m, &e, 14), WINDOW_LATE);
    e.occurred_at = 6000;
    cr_expect_eq(model_add(m, &e, 15), WINDOW_SCORED);
    model_free(m);
}

/* The narrative is cut at a character boundary at most 280 bytes in. */
Test(model, narrative_cut)
{
    score_params_t p;
    score_params_default(&p);
    p.risk_threshold = 100;                          /* every first score alerts */
    p.recover_threshold = 100;
    static const struct { size_t pad; const char *ch; size_t want; } tab[] = {
        { 279, "\xc3\xa9", 279 },                    /* é at 279..280 */
        { 278, "\xc3\xa9", 280 },                    /* é at 278..279 */
        { 278, "\xe2\x82\xac", 278 },                /* € at 278..280 */
        { 277, "\xf0\x9f\x98\x80", 277 },            /* 😀 at 277..280 */
        { 276, "\xf0\x9f\x98\x80", 280 },            /* 😀 at 276..279 */
        { 280, "", 280 },                            /* exactly 280 */
        { 281, "", 280 },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        char text[400];
        memset(text, 'x', tab[i].pad);
        size_t n = tab[i].pad;
        memcpy(text + n, tab[i].ch, strlen(tab[i].ch));
        n += strlen(tab[i].ch);
        model_t *m = model_new(&p, 0);
        event_t e = { .event_id = { "e", 1 }, .customer_id = { "c", 1 }, .occurred_at = 1,
                      .kind = KIND_FEEDBACK, .handled_by = HANDLER_NONE,
                      .resolved = TRI_NULL, .feedback_text = { text, n } };
        model_add(m, &e, 0);
        size_t na;
        const model_alert_t *a = model_alerts(m, &na);
        cr_assert_eq(na, 1, "case %zu", i);
        cr_expect_eq(a[0].narrative.len, tab[i].want, "case %zu: %zu", i, a[0].narrative.len);
        model_free(m);
    }
}
