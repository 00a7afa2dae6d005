/*
 * event.h — one customer interaction event, as the scorer sees it.
 *
 * This is the interface between consumer/ (which decodes and validates
 * Avro into it) and scoring/ (which only reads it).  Strings are views:
 * they point into the Kafka message's bytes and are valid only as long as
 * the message is; nothing here owns memory.  A decoded event has already
 * passed every SPEC §1.1 check, so the scorer trusts its ranges.
 */
#ifndef RAPPORT_EVENT_H
#define RAPPORT_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Enum values follow the symbol order of schemas/interaction_event.avsc. */
typedef enum { KIND_CONTACT = 0, KIND_FEEDBACK, KIND_PURCHASE, KIND_CANCELLATION } event_kind_t;
typedef enum {
    CHANNEL_CHAT = 0, CHANNEL_VOICE, CHANNEL_EMAIL, CHANNEL_SOCIAL,
    CHANNEL_IN_PERSON, CHANNEL_APP, CHANNEL_OTHER
} event_channel_t;
typedef enum { HANDLER_AI = 0, HANDLER_HUMAN, HANDLER_HYBRID, HANDLER_NONE } event_handler_t;

#define EVENT_KIND_COUNT    4
#define EVENT_CHANNEL_COUNT 7
#define EVENT_HANDLER_COUNT 4

/* Limits from SPEC §1.1 (invalid_field). */
#define EVENT_CUSTOMER_ID_MAX   256
#define EVENT_EVENT_ID_MAX      128
#define EVENT_FEEDBACK_TEXT_MAX 8192

/* A byte string that someone else owns; ptr is NULL for an Avro null. */
typedef struct strview {
    const char *ptr;
    size_t len;
} strview_t;

typedef enum { TRI_NULL = -1, TRI_FALSE = 0, TRI_TRUE = 1 } tri_t;

typedef struct event {
    strview_t event_id;
    strview_t customer_id;
    int64_t occurred_at;          /* ms since the epoch, >= 0 */
    event_kind_t kind;
    event_channel_t channel;
    event_handler_t handled_by;
    tri_t resolved;
    bool has_sentiment;
    float sentiment;              /* the Avro float, widened only when used */
    bool has_csat;
    int32_t csat;
    bool has_nps;
    int32_t nps;
    bool has_handle_time;
    int64_t handle_time_ms;
    strview_t feedback_text;      /* ptr NULL when null */
} event_t;

extern const char *const event_kind_names[EVENT_KIND_COUNT];
extern const char *const event_channel_names[EVENT_CHANNEL_COUNT];
extern const char *const event_handler_names[EVENT_HANDLER_COUNT];

#endif
