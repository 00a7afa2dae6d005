/*
 * decode.h — from a Kafka message's bytes to a valid event_t, or to the
 * dead-letter reason that says why not (SPEC §1.1, checks in table order).
 *
 * Writer schemas are parsed with avro-c and compiled once per schema id
 * into a flat, bounds-checked plan that resolves them against the reader
 * schema (schemas/interaction_event.avsc) by the Avro rules; the body bytes
 * are decoded by that plan, never by avro-c's value readers (which allocate
 * whatever length a string claims, do not check enum indexes and cannot tell
 * trailing bytes from the end).  Decoding allocates nothing per message:
 * strings in the event point into the message.
 *
 * One thread owns a decoder (its schema cache is not locked).
 */
#ifndef RAPPORT_DECODE_H
#define RAPPORT_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scoring/event.h"

typedef enum {
    DLQ_NONE = 0,
    DLQ_EMPTY_MESSAGE,
    DLQ_MESSAGE_TOO_LARGE,
    DLQ_BAD_FRAMING,
    DLQ_UNKNOWN_SCHEMA,
    DLQ_INCOMPATIBLE_SCHEMA,
    DLQ_DECODE_ERROR,
    DLQ_INVALID_FIELD,
    DLQ_KEY_MISMATCH,
    DLQ_FUTURE_TIMESTAMP,
    DLQ_REASON_COUNT
} dlq_reason_t;

/* "empty_message", … — the SPEC §1.1 codes; [DLQ_NONE] is "none". */
extern const char *const dlq_reason_names[DLQ_REASON_COUNT];

/* Where writer schemas come from.  Returns SCHEMA_FOUND with *json (caller
 * frees with free()) and *len, SCHEMA_NOT_FOUND when the id does not exist,
 * SCHEMA_UNAVAILABLE when the source cannot answer now (retry later). */
typedef enum { SCHEMA_FOUND = 0, SCHEMA_NOT_FOUND, SCHEMA_UNAVAILABLE } schema_lookup_t;
typedef schema_lookup_t (*schema_fetch_fn)(void *opaque, uint32_t id, char **json, size_t *len,
                                           char *errstr, size_t errstr_size);

typedef struct decoder_conf {
    const char *schema_dir;        /* <schema_dir>/<id>.avsc; NULL: none */
    schema_fetch_fn fetch;         /* optional other source (registry), asked when the dir has no file */
    void *fetch_opaque;
    size_t max_message_bytes;      /* default 65536 */
    int64_t max_future_skew_ms;    /* default 300000 */
} decoder_conf_t;

typedef struct decoder decoder_t;

decoder_t *decoder_new(const decoder_conf_t *conf, char *errstr, size_t errstr_size);
void decoder_free(decoder_t *d);

/* The parts of a Kafka message that the checks look at. */
typedef struct kafka_msg_view {
    const void *key;          /* NULL when the message has no key */
    size_t key_len;
    const void *value;        /* NULL when null */
    size_t value_len;
    int64_t timestamp;        /* ms, or -1 when the message has none */
} kafka_msg_view_t;

typedef enum {
    DECODE_OK = 0,     /* *out is a valid event (views into msg->value / key) */
    DECODE_DEAD,       /* *reason and detail say why; send to the DLQ */
    DECODE_RETRY,      /* a schema source is unreachable: do not dead-letter, retry later */
    DECODE_TOMBSTONE   /* SPEC §1.2: a null value keyed by a valid customer_id, a request
                        * to erase that customer; out->customer_id views msg->key, the
                        * other fields of *out are zero */
} decode_result_t;

/* Runs every SPEC §1.1 check in order, after telling a tombstone (§1.2)
 * from an empty message.  `detail` receives one readable line (for DEAD
 * and RETRY). */
decode_result_t decoder_decode(decoder_t *d, const kafka_msg_view_t *msg, event_t *out,
                               dlq_reason_t *reason, char *detail, size_t detail_size);

/* The reader schema's JSON (the same text as schemas/interaction_event.avsc). */
extern const char decode_reader_schema_json[];

#endif
