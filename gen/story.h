/*
 * story.h — a deterministic generator of customer stories, as Kafka
 * messages (key = customer_id, Confluent-framed Avro value, timestamp).
 *
 * Each customer lives through one story after another, chosen by a seeded
 * PRNG (xoshiro256**, seeded by splitmix64; never libc's rand):
 *
 *   billing_error   (3 %) three unresolved AI chats about a double charge,
 *                   the sentiment falling -0.3, -0.5, -0.7; then a human on
 *                   the phone resolves it (0.6); feedback with NPS 10 and
 *                   0.8 and a thank-you; then a purchase.
 *   happy           (52 %) routine: 1-3 resolved contacts, mostly a bot on
 *                   chat and app, a person on the phone; then a purchase,
 *                   a CSAT or a promoter's NPS.
 *   silent_churn    (4 %) unresolved contacts, no words, a low NPS, a
 *                   cancellation; then a long silence (20-60 days: eviction).
 *   bot_loop        (3 %) 3-6 unresolved AI contacts, sentiment sliding to
 *                   -0.9.
 *   mixed_service   (38 %) everyday service on every channel: AI 45 %
 *                   (72 % resolved), human 35 % (90 %), hybrid 20 % (82 %).
 *
 * Between stories a customer pauses 2-10 days; first stories start within
 * the first week.  docs/DEMO.md gives the assumptions and the measured mix.
 *
 * Simulated time: every message advances the clock by step_ms.  The next
 * valid event is the one of the customer due first; if none is due yet the
 * clock jumps to it.  Its occurred_at is the clock, so occurred_at never
 * goes back across valid events and a customer's events are in time order.
 * Customers interleave.  The Kafka timestamp is occurred_at plus up to
 * 999 ms, so the clock can run far ahead of the wall clock without a valid
 * event ever looking "future".
 *
 * Besides valid events, with the configured probabilities a message is
 * late or malformed.  A late event is a random customer's contact whose
 * occurred_at is late_age_ms (default 40 days) plus up to a day before the
 * clock, and whose Kafka timestamp is the clock: with the default window
 * (30 one-day buckets) a consumer drops it as late once its partition's
 * watermark is within about 9 days of the clock, which valid events keep
 * it; only the first event of a partition is never late.  A malformed
 * message is encode_malformed() of a random reason and variant, made from
 * a random customer's valid event.
 *
 * The same conf gives the same messages, byte for byte.  One thread owns a
 * gen_t.
 */
#ifndef RAPPORT_STORY_H
#define RAPPORT_STORY_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>

#include "gen/encode.h"
#include "scoring/event.h"

typedef enum {
    GEN_STORY_BILLING_ERROR = 0,
    GEN_STORY_HAPPY,
    GEN_STORY_SILENT_CHURN,
    GEN_STORY_BOT_LOOP,
    GEN_STORY_MIXED_SERVICE,
    GEN_STORY_COUNT
} gen_story_t;

/* "billing_error", "happy", "silent_churn", "bot_loop", "mixed_service". */
extern const char *const gen_story_names[GEN_STORY_COUNT];

/* Customer ids: "cust-000123" for customer index 123. */
#define GEN_CUSTOMER_ID_FMT "cust-%06" PRIu32

/* 2026-01-01T00:00:00Z */
#define GEN_DEFAULT_START_MS INT64_C(1767225600000)

typedef struct gen_conf {
    uint64_t seed;             /* default 1 */
    uint32_t customers;        /* 1 .. 10 000 000, default 1000 */
    int64_t start_ms;          /* simulated start, ms epoch, >= 0; default GEN_DEFAULT_START_MS */
    int64_t step_ms;           /* simulated ms per message, >= 0; 0 (default): 43 200 000 /
                                * customers, so each customer can have about two events a day */
    double late_ratio;         /* 0..1, default 0 */
    int64_t late_age_ms;       /* > 0, default 40 days: late events are this much (plus up to
                                * a day) older than the clock */
    double bad_ratio;          /* 0..1, default 0; late_ratio + bad_ratio <= 1 */
    unsigned schemas;          /* writer schemas to mix, bit (1u << encode_schema_t);
                                * default 1u << ENCODE_V1 */
} gen_conf_t;

/* Fills c with the defaults above. */
void gen_conf_default(gen_conf_t *c);

/* Parses "v1,v2,v3" (any non-empty subset, any order) into a schemas mask.
 * Returns 0 or -1. */
int gen_schemas_parse(const char *s, unsigned *mask);

typedef enum { GEN_MSG_VALID = 0, GEN_MSG_LATE, GEN_MSG_MALFORMED } gen_msg_kind_t;

/* One message.  Every pointer is owned by the gen_t and valid until the
 * next gen_next() or gen_free(). */
typedef struct gen_msg {
    const void *key;           /* NULL: no key (a key_mismatch variant) */
    size_t key_len;
    const void *value;         /* NULL: null value (an empty_message variant) */
    size_t value_len;
    int64_t timestamp_ms;      /* the Kafka message timestamp to set */
    gen_msg_kind_t kind;
    /* VALID, LATE: the event as a consumer decodes it (under v3, channel
     * OTHER and no nps).  MALFORMED: the valid event it was made from. */
    const event_t *event;
    encode_schema_t schema;    /* VALID, LATE: the writer schema used */
    const char *reason;        /* MALFORMED: the SPEC §1.1 code; else NULL */
    const char *what;          /* MALFORMED: the defect, e.g. "csat 9"; else NULL */
    uint32_t customer;         /* the customer's index */
    gen_story_t story;         /* VALID: the story the event belongs to */
} gen_msg_t;

typedef struct gen gen_t;

/* Returns a generator, or NULL with errstr filled when conf is out of
 * range or memory runs out (about 28 bytes per customer). */
gen_t *gen_new(const gen_conf_t *conf, char *errstr, size_t errstr_size);
void gen_free(gen_t *g);

/* Makes the next message.  Returns 0, or -1 only if an event failed to
 * encode, which would be a bug (errors are never part of the stream). */
int gen_next(gen_t *g, gen_msg_t *out);

/* The story customer `customer` is living now (before the first
 * gen_next(): its first story). */
gen_story_t gen_customer_story(const gen_t *g, uint32_t customer);

/* The simulated clock (ms epoch). */
int64_t gen_clock(const gen_t *g);

#endif
