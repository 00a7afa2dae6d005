/*
 * story.c — the customer-story generator behind `rapport gen`, the demo and
 * the benchmark.
 *
 * Design: a customer costs 24 bytes.  It stores only its current story,
 * that story's seed, the next step and the story's length; the content of
 * step i is a pure function of (story, seed, i, length), drawn from a PRNG
 * seeded from (seed, i), so no event list is kept for a million customers.
 * A binary min-heap of customer indexes, ordered by (due time, index),
 * picks whose event comes next: O(log customers) per message.  Everything
 * else (which message is late or malformed, writer schema, event ids,
 * timestamp jitter, the next story) comes from one xoshiro256** stream in
 * a fixed order, so a seed fixes the messages byte for byte.
 *
 * Owns its customers, its heap and one message buffer; one thread uses it.
 */
#include "gen/story.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

#define MIN_MS  INT64_C(60000)
#define HOUR_MS INT64_C(3600000)
#define DAY_MS  INT64_C(86400000)

const char *const gen_story_names[GEN_STORY_COUNT] = {
    "billing_error", "happy", "silent_churn", "bot_loop", "mixed_service"};

/* ---- PRNG: xoshiro256** seeded by splitmix64 (Blackman and Vigna) ---- */

typedef struct rng {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n), n > 0, without modulo bias. */
static uint64_t rng_below(rng_t *r, uint64_t n) {
    uint64_t threshold = (0 - n) % n;   /* 2^64 mod n */
    for (;;) {
        uint64_t x = rng_next(r);
        if (x >= threshold)
            return x % n;
    }
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(rng_t *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* Uniform in [0, 1). */
static double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static bool rng_chance(rng_t *r, double p) { return rng_unit(r) < p; }

/* A sentiment in [lo, hi] with two decimals, as a scoring model reports it. */
static float rng_sentiment(rng_t *r, double lo, double hi) {
    /* + 0.0 turns a rounded -0.0 into 0.0 */
    return (float)(round((lo + rng_unit(r) * (hi - lo)) * 100.0) / 100.0 + 0.0);
}

#define PICK(r, arr) ((arr)[rng_below((r), sizeof(arr) / sizeof((arr)[0]))])

/* ---- story content ---- */

/* One planned event: what happens, and how long after the previous one. */
typedef struct step {
    int64_t gap_ms;
    event_kind_t kind;
    event_channel_t channel;
    event_handler_t handler;
    tri_t resolved;
    bool has_sentiment;
    float sentiment;
    int32_t csat;              /* 0: none */
    int32_t nps;               /* -1: none */
    int64_t handle_time_ms;    /* -1: none */
    const char *text;          /* NULL: none */
    const char *topic;         /* the v2 tag */
} step_t;

static const char *const billing_texts[3] = {
    "I was charged twice for my plan this month. Please refund the second charge.",
    "Still two charges on my card. The bot sent me a FAQ link about billing cycles.",
    "I was charged twice for my plan and the bot keeps sending me the same FAQ link"};
static const char billing_human_text[] =
    "Finally spoke to a person. She found the double charge and refunded it.";
static const char *const billing_thanks[] = {
    "Thank you, Dana sorted out the double charge in five minutes. Really appreciate it.",
    "Thanks for fixing the double charge so quickly on the phone. That is service.",
    "Great help from the agent on the phone, the refund arrived the next day. Thank you!"};
static const char *const happy_texts[] = {
    "Quick answer, thanks!",
    "Sorted in two minutes, great app.",
    "Very helpful, the new plan is exactly what I needed.",
    "Thanks, changing the delivery slot worked.",
    "Friendly and fast, as always."};
static const char *const promoter_texts[] = {
    "Best support I have had from any provider.",
    "Would recommend to friends, everything just works.",
    "Happy customer for five years now."};
static const char *const bot_texts[] = {
    "The bot doesn't understand 'cancel my order'.",
    "I asked where my order is and got a link to the returns policy.",
    "Let me talk to a human, please.",
    "Third time explaining the same thing to a chatbot.",
    "AGENT. HUMAN. ANYONE.",
    "This is going in circles. My order is still missing."};
static const char *const mixed_texts[] = {
    "The app keeps logging me out.",
    "Agent was helpful but I had to repeat my account number three times.",
    "Okay answer, took a while.",
    "The chat handed me over to a person, who fixed it.",
    "Router replacement arrives Friday, fine.",
    "Please stop sending me promotional emails."};

static const char *const channel_tags[EVENT_CHANNEL_COUNT] = {
    "chat", "voice", "email", "social", "in_person", "app", "other"};

/* How long an agent (or bot) spends on a contact: a bot 0.5-5 min, AI with
 * a person 3-10 min, a person 3-20 min by channel (docs/DEMO.md). */
static int64_t handle_time(rng_t *r, event_channel_t ch, event_handler_t h) {
    if (h == HANDLER_AI)
        return rng_range(r, 30000, 300000);
    if (h == HANDLER_HYBRID)
        return rng_range(r, 180000, 600000);
    if (ch == CHANNEL_VOICE)
        return rng_range(r, 300000, 1200000);
    if (ch == CHANNEL_EMAIL)
        return rng_range(r, 300000, 900000);
    return rng_range(r, 180000, 720000);
}

static void step_contact(step_t *st, event_channel_t ch, event_handler_t h, tri_t resolved) {
    st->kind = KIND_CONTACT;
    st->channel = ch;
    st->handler = h;
    st->resolved = resolved;
}

static void step_sentiment(step_t *st, float s) {
    st->has_sentiment = true;
    st->sentiment = s;
}

static unsigned story_length(gen_story_t story, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    switch (story) {
    case GEN_STORY_BILLING_ERROR: return 6;
    case GEN_STORY_HAPPY: return (unsigned)rng_range(&r, 2, 4);
    case GEN_STORY_SILENT_CHURN: return (unsigned)rng_range(&r, 4, 6);
    case GEN_STORY_BOT_LOOP: return (unsigned)rng_range(&r, 3, 6);
    default: return (unsigned)rng_range(&r, 2, 5);
    }
}

static void billing_step(rng_t *r, unsigned i, step_t *st) {
    static const float falling[3] = {-0.3f, -0.5f, -0.7f};
    st->topic = "billing";
    if (i < 3) {
        st->gap_ms = i == 0 ? 0 : rng_range(r, 2 * HOUR_MS, 8 * HOUR_MS);
        step_contact(st, CHANNEL_CHAT, HANDLER_AI, TRI_FALSE);
        step_sentiment(st, falling[i]);
        st->handle_time_ms = handle_time(r, st->channel, st->handler);
        st->text = billing_texts[i];
    } else if (i == 3) {
        st->gap_ms = rng_range(r, 18 * HOUR_MS, 30 * HOUR_MS);
        step_contact(st, CHANNEL_VOICE, HANDLER_HUMAN, TRI_TRUE);
        step_sentiment(st, 0.6f);
        st->handle_time_ms = rng_range(r, 420000, 900000);
        st->text = billing_human_text;
    } else if (i == 4) {
        st->gap_ms = rng_range(r, HOUR_MS, 3 * HOUR_MS);
        st->kind = KIND_FEEDBACK;
        st->channel = CHANNEL_EMAIL;
        st->nps = 10;
        step_sentiment(st, 0.8f);
        st->text = PICK(r, billing_thanks);
    } else {
        st->gap_ms = rng_range(r, 2 * DAY_MS, 5 * DAY_MS);
        st->kind = KIND_PURCHASE;
        st->channel = CHANNEL_APP;
    }
}

/* Routine: the bot answers most chat and app questions, a person the
 * calls and most emails; all resolved. */
static void happy_step(rng_t *r, unsigned i, unsigned n, step_t *st) {
    static const event_channel_t channels[] = {CHANNEL_CHAT, CHANNEL_CHAT, CHANNEL_APP,
                                               CHANNEL_APP, CHANNEL_VOICE, CHANNEL_EMAIL};
    st->topic = "account";
    st->gap_ms = i == 0 ? 0 : rng_range(r, 4 * HOUR_MS, 3 * DAY_MS);
    if (i + 1 < n) {
        event_channel_t ch = PICK(r, channels);
        bool bot = (ch == CHANNEL_CHAT || ch == CHANNEL_APP) ? rng_chance(r, 0.9)
                                                              : rng_chance(r, 0.25);
        step_contact(st, ch, bot ? HANDLER_AI : HANDLER_HUMAN, TRI_TRUE);
        if (rng_chance(r, 0.6))
            step_sentiment(st, rng_sentiment(r, 0.2, 0.9));
        if (rng_chance(r, 0.3))
            st->csat = (int32_t)rng_range(r, 4, 5);
        st->handle_time_ms = handle_time(r, st->channel, st->handler);
        if (rng_chance(r, 0.3))
            st->text = PICK(r, happy_texts);
    } else if (rng_chance(r, 0.3)) {
        st->kind = KIND_PURCHASE;
        st->channel = rng_chance(r, 0.7) ? CHANNEL_APP : CHANNEL_IN_PERSON;
    } else if (rng_chance(r, 0.6)) {
        st->kind = KIND_FEEDBACK;
        st->channel = CHANNEL_EMAIL;
        st->csat = (int32_t)rng_range(r, 4, 5);
        step_sentiment(st, rng_sentiment(r, 0.3, 0.9));
        if (rng_chance(r, 0.3))
            st->text = PICK(r, happy_texts);
    } else {
        st->kind = KIND_FEEDBACK;
        st->channel = CHANNEL_EMAIL;
        st->nps = (int32_t)rng_range(r, 9, 10);
        step_sentiment(st, rng_sentiment(r, 0.6, 0.95));
        if (rng_chance(r, 0.5))
            st->text = PICK(r, promoter_texts);
    }
}

/* No feedback_text anywhere: the silent churner never says why. */
static void churn_step(rng_t *r, unsigned i, unsigned n, step_t *st) {
    static const event_channel_t channels[] = {CHANNEL_EMAIL, CHANNEL_VOICE, CHANNEL_CHAT};
    st->topic = "service";
    if (i + 2 < n) {
        st->gap_ms = i == 0 ? 0 : rng_range(r, 2 * DAY_MS, 6 * DAY_MS);
        event_channel_t ch = PICK(r, channels);
        step_contact(st, ch, rng_chance(r, 0.5) ? HANDLER_AI : HANDLER_HUMAN, TRI_FALSE);
        if (rng_chance(r, 0.6))
            step_sentiment(st, rng_sentiment(r, -0.4, -0.1));
        if (rng_chance(r, 0.4))
            st->csat = (int32_t)rng_range(r, 1, 2);
        st->handle_time_ms = handle_time(r, st->channel, st->handler);
    } else if (i + 2 == n) {
        st->gap_ms = rng_range(r, DAY_MS, 3 * DAY_MS);
        st->kind = KIND_FEEDBACK;
        st->channel = CHANNEL_EMAIL;
        st->nps = (int32_t)rng_range(r, 0, 4);
    } else {
        st->gap_ms = rng_range(r, 3 * DAY_MS, 10 * DAY_MS);
        st->kind = KIND_CANCELLATION;
        st->channel = CHANNEL_APP;
    }
}

/* Stuck with a bot: unresolved AI contacts, the customer's mood sliding;
 * the story ends there, and the customer's next story (most often a
 * routine contact that is resolved) ends the streak. */
static void bot_step(rng_t *r, unsigned i, unsigned n, step_t *st) {
    st->topic = "order";
    st->gap_ms = i == 0 ? 0 : rng_range(r, 20 * MIN_MS, 6 * HOUR_MS);
    step_contact(st, rng_chance(r, 0.7) ? CHANNEL_CHAT : CHANNEL_APP, HANDLER_AI, TRI_FALSE);
    double s = -0.2 - 0.7 * (double)i / (double)(n - 1) + (rng_unit(r) - 0.5) * 0.1;
    s = s < -1.0 ? -1.0 : s > 1.0 ? 1.0 : s;
    step_sentiment(st, (float)(round(s * 100.0) / 100.0 + 0.0));
    st->handle_time_ms = handle_time(r, st->channel, st->handler);
    if (rng_chance(r, 0.6))
        st->text = PICK(r, bot_texts);
}

/* Everyday service on every channel: the bot resolves 72 %, AI with a
 * person 82 %, a person 90 % (docs/DEMO.md). */
static void mixed_step(rng_t *r, unsigned i, unsigned n, step_t *st) {
    static const event_channel_t channels[] = {CHANNEL_CHAT, CHANNEL_VOICE, CHANNEL_EMAIL,
                                               CHANNEL_SOCIAL, CHANNEL_IN_PERSON, CHANNEL_APP};
    st->topic = "support";
    st->gap_ms = i == 0 ? 0 : rng_range(r, 6 * HOUR_MS, 3 * DAY_MS);
    if (i + 1 == n && rng_chance(r, 0.4)) {
        st->kind = KIND_FEEDBACK;
        st->channel = CHANNEL_EMAIL;
        st->nps = (int32_t)rng_range(r, 5, 10);
        step_sentiment(st, rng_sentiment(r, 0.0, 0.7));
    } else {
        event_channel_t ch = PICK(r, channels);
        uint64_t roll = rng_below(r, 100);
        event_handler_t h = roll < 45 ? HANDLER_AI : roll < 80 ? HANDLER_HUMAN : HANDLER_HYBRID;
        double p_resolved = h == HANDLER_AI ? 0.72 : h == HANDLER_HYBRID ? 0.82 : 0.90;
        bool ok = rng_chance(r, p_resolved);
        step_contact(st, ch, h, ok ? TRI_TRUE : TRI_FALSE);
        if (rng_chance(r, 0.7))
            step_sentiment(st, ok ? rng_sentiment(r, 0.1, 0.8) : rng_sentiment(r, -0.5, 0.1));
        if (rng_chance(r, 0.25))
            st->csat = (int32_t)(ok ? rng_range(r, 3, 5) : rng_range(r, 1, 3));
        st->handle_time_ms = handle_time(r, st->channel, st->handler);
    }
    if (rng_chance(r, 0.3))
        st->text = PICK(r, mixed_texts);
}

/* Step i of n of a story: a pure function of its arguments. */
static void story_step(gen_story_t story, uint64_t seed, unsigned i, unsigned n, step_t *st) {
    rng_t r;
    rng_seed(&r, seed ^ ((uint64_t)(i + 1) * UINT64_C(0xD1B54A32D192ED03)));
    *st = (step_t){.kind = KIND_CONTACT, .channel = CHANNEL_OTHER, .handler = HANDLER_NONE,
                   .resolved = TRI_NULL, .nps = -1, .handle_time_ms = -1};
    switch (story) {
    case GEN_STORY_BILLING_ERROR: billing_step(&r, i, st); break;
    case GEN_STORY_HAPPY: happy_step(&r, i, n, st); break;
    case GEN_STORY_SILENT_CHURN: churn_step(&r, i, n, st); break;
    case GEN_STORY_BOT_LOOP: bot_step(&r, i, n, st); break;
    default: mixed_step(&r, i, n, st); break;
    }
}

/* ---- the generator ---- */

typedef struct customer {
    int64_t due;               /* occurred_at of its next valid event, at the earliest */
    uint64_t seed;             /* the current story's seed */
    uint8_t story;             /* gen_story_t */
    uint8_t step;              /* next step of the story */
    uint8_t n_steps;
} customer_t;

struct gen {
    gen_conf_t conf;
    int64_t step_ms;
    int64_t clock;
    rng_t rng;
    customer_t *cust;          /* conf.customers of them */
    uint32_t *heap;            /* customer indexes, min-heap on (due, index) */
    unsigned n_schemas;
    encode_schema_t schemas[ENCODE_SCHEMA_COUNT];
    /* The current message: what gen_msg_t points at. */
    event_t ev;
    char customer_id[32];
    char event_id[40];
    const char *tags[2];
    uint8_t *buf;              /* ENCODE_MALFORMED_BUF_MIN bytes */
};

void gen_conf_default(gen_conf_t *c) {
    *c = (gen_conf_t){
        .seed = 1,
        .customers = 1000,
        .start_ms = GEN_DEFAULT_START_MS,
        .step_ms = 0,
        .late_ratio = 0,
        .late_age_ms = 40 * DAY_MS,
        .bad_ratio = 0,
        .schemas = 1u << ENCODE_V1,
    };
}

int gen_schemas_parse(const char *s, unsigned *mask) {
    unsigned m = 0;
    const char *p = s;
    for (;;) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < ENCODE_SCHEMA_COUNT; i++) {
            if (n == strlen(encode_schema_names[i]) && strncmp(p, encode_schema_names[i], n) == 0)
                found = i;
        }
        if (found < 0)
            return -1;
        m |= 1u << found;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    *mask = m;
    return 0;
}

/* The heap orders by due time, then by index, so that ties never depend
 * on the heap's history. */
static bool heap_less(const gen_t *g, uint32_t a, uint32_t b) {
    const customer_t *ca = &g->cust[a], *cb = &g->cust[b];
    return ca->due < cb->due || (ca->due == cb->due && a < b);
}

static void heap_sift_down(gen_t *g, size_t i) {
    size_t n = g->conf.customers;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(g, g->heap[l], g->heap[m]))
            m = l;
        if (r < n && heap_less(g, g->heap[r], g->heap[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = g->heap[i];
        g->heap[i] = g->heap[m];
        g->heap[m] = t;
        i = m;
    }
}

static void story_start(gen_t *g, customer_t *c) {
    /* billing_error, happy, silent_churn, bot_loop, mixed_service: most
     * stories are routine; about one in ten goes wrong (docs/DEMO.md). */
    static const unsigned weights[GEN_STORY_COUNT] = {3, 52, 4, 3, 38};   /* of 100 */
    unsigned roll = (unsigned)rng_below(&g->rng, 100), story = 0;
    while (roll >= weights[story]) {
        roll -= weights[story];
        story++;
    }
    c->story = (uint8_t)story;
    c->seed = rng_next(&g->rng);
    c->step = 0;
    c->n_steps = (uint8_t)story_length((gen_story_t)story, c->seed);
}

static const char *conf_error(const gen_conf_t *c) {
    if (c->customers < 1 || c->customers > 10000000)
        return "customers must be in 1..10000000";
    if (c->start_ms < 0 || c->start_ms > INT64_C(253402300799999))
        return "start_ms must be in 0..253402300799999 (year 9999)";
    if (c->step_ms < 0 || c->step_ms > 365 * DAY_MS)
        return "step_ms must be in 0..31536000000";
    if (!(c->late_ratio >= 0 && c->late_ratio <= 1))
        return "late_ratio must be in 0..1";
    if (!(c->bad_ratio >= 0 && c->bad_ratio <= 1))
        return "bad_ratio must be in 0..1";
    if (c->late_ratio + c->bad_ratio > 1)
        return "late_ratio + bad_ratio must be at most 1";
    if (c->late_age_ms <= 0 || c->late_age_ms > 3650 * DAY_MS)
        return "late_age_ms must be in 1..315360000000";
    if (c->schemas == 0 || c->schemas >= (1u << ENCODE_SCHEMA_COUNT))
        return "schemas must name at least one of v1, v2, v3 and nothing else";
    return NULL;
}

gen_t *gen_new(const gen_conf_t *conf, char *errstr, size_t errstr_size) {
    const char *err = conf_error(conf);
    if (err) {
        snprintf(errstr, errstr_size, "%s", err);
        return NULL;
    }
    gen_t *g = xcalloc(1, sizeof *g);
    g->conf = *conf;
    g->step_ms = conf->step_ms > 0 ? conf->step_ms : 43200000 / (int64_t)conf->customers;
    if (g->step_ms < 1)
        g->step_ms = 1;
    g->clock = conf->start_ms;
    rng_seed(&g->rng, conf->seed);
    for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++) {
        if (conf->schemas & (1u << s))
            g->schemas[g->n_schemas++] = (encode_schema_t)s;
    }
    /* Sized by --customers (up to 10^7): a clear error, not the abort of
     * common/alloc.h, when the machine cannot hold that many. */
    g->cust = calloc(conf->customers, sizeof *g->cust);
    g->heap = calloc(conf->customers, sizeof *g->heap);
    g->buf = xmalloc(ENCODE_MALFORMED_BUF_MIN);
    if (!g->cust || !g->heap)
        goto nomem;
    for (uint32_t i = 0; i < conf->customers; i++) {
        story_start(g, &g->cust[i]);
        /* first stories spread over a week, the mean time between stories */
        g->cust[i].due = conf->start_ms + (int64_t)rng_below(&g->rng, (uint64_t)(7 * DAY_MS));
        g->heap[i] = i;
    }
    for (size_t i = conf->customers / 2; i-- > 0;)
        heap_sift_down(g, i);
    return g;
nomem:
    gen_free(g);
    snprintf(errstr, errstr_size, "out of memory for %" PRIu32 " customers", conf->customers);
    return NULL;
}

void gen_free(gen_t *g) {
    if (!g)
        return;
    free(g->buf);
    free(g->heap);
    free(g->cust);
    free(g);
}

gen_story_t gen_customer_story(const gen_t *g, uint32_t customer) {
    assert(customer < g->conf.customers);
    return (gen_story_t)g->cust[customer].story;
}

int64_t gen_clock(const gen_t *g) { return g->clock; }

/* Fills g->ev (and the id buffers it points at) from a step. */
static void event_fill(gen_t *g, uint32_t customer, const step_t *st, int64_t at) {
    uint64_t a = rng_next(&g->rng), b = rng_next(&g->rng);
    int n = snprintf(g->customer_id, sizeof g->customer_id, GEN_CUSTOMER_ID_FMT, customer);
    snprintf(g->event_id, sizeof g->event_id,
             "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
             (uint32_t)(a >> 32), (uint32_t)(a >> 16) & 0xffff, (uint32_t)a & 0xfff,
             (uint32_t)(b >> 48 & 0x3fff) | 0x8000, b & UINT64_C(0xffffffffffff));
    g->ev = (event_t){
        .event_id = {g->event_id, 36},
        .customer_id = {g->customer_id, (size_t)n},
        .occurred_at = at,
        .kind = st->kind,
        .channel = st->channel,
        .handled_by = st->handler,
        .resolved = st->resolved,
        .has_sentiment = st->has_sentiment,
        .sentiment = st->sentiment,
        .has_csat = st->csat > 0,
        .csat = st->csat,
        .has_nps = st->nps >= 0,
        .nps = st->nps >= 0 ? st->nps : 0,
        .has_handle_time = st->handle_time_ms >= 0,
        .handle_time_ms = st->handle_time_ms >= 0 ? st->handle_time_ms : 0,
        .feedback_text = {st->text, st->text ? strlen(st->text) : 0},
    };
}

/* Encodes g->ev with a writer schema drawn from the enabled ones; v3 is
 * avoided for an event with an nps when another schema is enabled, so that
 * the mix does not change scores.  Under v3, g->ev is changed to what a
 * consumer decodes. */
static int encode_current(gen_t *g, const char *topic, gen_msg_t *out) {
    encode_schema_t pool[ENCODE_SCHEMA_COUNT];
    unsigned n = 0;
    for (unsigned i = 0; i < g->n_schemas; i++) {
        if (!(g->schemas[i] == ENCODE_V3 && g->ev.has_nps))
            pool[n++] = g->schemas[i];
    }
    if (n == 0)
        pool[n++] = ENCODE_V3;
    encode_schema_t s = pool[rng_below(&g->rng, n)];
    encode_extra_t extra = {0};
    if (s == ENCODE_V2) {
        g->tags[0] = topic;
        g->tags[1] = channel_tags[g->ev.channel];
        extra.tags = g->tags;
        extra.n_tags = 2;
        extra.sized_blocks = rng_chance(&g->rng, 0.5);
        if (g->ev.handled_by == HANDLER_HUMAN || g->ev.handled_by == HANDLER_HYBRID)
            extra.agent_notes = "Identity verified; case notes in CRM.";
    } else if (s == ENCODE_V3) {
        g->ev.channel = CHANNEL_OTHER;
        g->ev.has_nps = false;
        g->ev.nps = 0;
    }
    int len = encode_event(&g->ev, s, &extra, g->buf, ENCODE_MALFORMED_BUF_MIN);
    if (len < 0)
        return -1;
    out->key = g->ev.customer_id.ptr;
    out->key_len = g->ev.customer_id.len;
    out->value = g->buf;
    out->value_len = (size_t)len;
    out->event = &g->ev;
    out->schema = s;
    return 0;
}

static int next_valid(gen_t *g, gen_msg_t *out) {
    uint32_t idx = g->heap[0];
    customer_t *c = &g->cust[idx];
    if (c->due > g->clock)
        g->clock = c->due;
    gen_story_t story = (gen_story_t)c->story;
    step_t st;
    story_step(story, c->seed, c->step, c->n_steps, &st);
    event_fill(g, idx, &st, g->clock);
    c->step++;
    if (c->step < c->n_steps) {
        step_t next;
        story_step(story, c->seed, c->step, c->n_steps, &next);
        c->due = g->clock + next.gap_ms;
    } else {
        int64_t pause = story == GEN_STORY_SILENT_CHURN
                            ? rng_range(&g->rng, 20 * DAY_MS, 60 * DAY_MS)
                            : rng_range(&g->rng, 2 * DAY_MS, 10 * DAY_MS);
        story_start(g, c);
        c->due = g->clock + pause;
    }
    heap_sift_down(g, 0);
    out->kind = GEN_MSG_VALID;
    out->customer = idx;
    out->story = story;
    out->timestamp_ms = g->clock + (int64_t)rng_below(&g->rng, 1000);
    return encode_current(g, st.topic, out);
}

/* A random contact of a random customer, outside any story. */
static uint32_t stray_event(gen_t *g, int64_t at, step_t *st) {
    uint32_t idx = (uint32_t)rng_below(&g->rng, g->conf.customers);
    story_step(GEN_STORY_MIXED_SERVICE, rng_next(&g->rng), 0, 1, st);
    event_fill(g, idx, st, at);
    return idx;
}

/* Uploaded now by an app that was offline: occurred long before the clock. */
static int next_late(gen_t *g, gen_msg_t *out) {
    step_t st;
    int64_t at = g->clock - g->conf.late_age_ms - (int64_t)rng_below(&g->rng, (uint64_t)DAY_MS);
    out->customer = stray_event(g, at, &st);
    out->kind = GEN_MSG_LATE;
    out->timestamp_ms = g->clock + (int64_t)rng_below(&g->rng, 1000);
    return encode_current(g, st.topic, out);
}

static int next_malformed(gen_t *g, gen_msg_t *out) {
    step_t st;
    char errstr[128];
    out->customer = stray_event(g, g->clock, &st);
    const char *reason =
        encode_malformed_reasons[rng_below(&g->rng, ENCODE_MALFORMED_REASON_COUNT)];
    unsigned variant = (unsigned)rng_next(&g->rng);
    int64_t ts = g->clock + (int64_t)rng_below(&g->rng, 1000);
    encode_msg_t m;
    if (encode_malformed(reason, variant, &g->ev, ts, g->buf, ENCODE_MALFORMED_BUF_MIN, &m,
                         errstr, sizeof errstr) != 0)
        return -1;
    out->kind = GEN_MSG_MALFORMED;
    out->key = m.key;
    out->key_len = m.key_len;
    out->value = m.value;
    out->value_len = m.value_len;
    out->timestamp_ms = m.timestamp_ms;
    out->event = &g->ev;
    out->reason = reason;
    out->what = m.what;
    return 0;
}

int gen_next(gen_t *g, gen_msg_t *out) {
    *out = (gen_msg_t){0};
    g->clock += g->step_ms;
    double roll = rng_unit(&g->rng);
    if (roll < g->conf.bad_ratio)
        return next_malformed(g, out);
    if (roll < g->conf.bad_ratio + g->conf.late_ratio &&
        g->clock >= g->conf.late_age_ms + DAY_MS)
        return next_late(g, out);
    return next_valid(g, out);
}
