/*
 * encode.h — events to Confluent-framed Avro, for the generator, the demo
 * and the tests; and one deliberately broken message per SPEC §1.1 reason.
 *
 * The encoder is written by hand (zigzag varints, little-endian floats,
 * length-prefixed strings) into a caller's buffer with a bounds check on
 * every byte, so that it shares no code with the consumer's decoder and
 * with avro-c: a test that round-trips through both tests something.
 *
 * Three writer schemas, all resolvable to the reader schema
 * rapport.v1.InteractionEvent (schemas/interaction_event.avsc):
 *
 *   v1, id 1   the reader schema itself.
 *   v2, id 2   the reader's fields plus `tags` (array of string) after
 *              `handled_by`, and a trailing `agent_notes` (["null","string"],
 *              default null): fields the reader must skip.
 *   v3, id 3   the fields in another order, without `channel` and `nps`
 *              (the reader's defaults apply: OTHER, null), and with
 *              `handle_time_ms` as ["null","int"] (promoted to long).
 *
 * Two more ids for dead-letter demos (see encode_malformed()):
 *   id 900     installed by encode_write_schemas(), with `event_id` as an
 *              int: a writer schema that cannot resolve (incompatible_schema).
 *   id 999     never installed anywhere (unknown_schema).
 *
 * Nothing here allocates, keeps state or touches a global: any thread may
 * call any function.
 */
#ifndef RAPPORT_ENCODE_H
#define RAPPORT_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scoring/event.h"

typedef enum { ENCODE_V1 = 0, ENCODE_V2, ENCODE_V3, ENCODE_SCHEMA_COUNT } encode_schema_t;

#define ENCODE_SCHEMA_ID_V1           1u
#define ENCODE_SCHEMA_ID_V2           2u
#define ENCODE_SCHEMA_ID_V3           3u
#define ENCODE_SCHEMA_ID_INCOMPATIBLE 900u
#define ENCODE_SCHEMA_ID_UNKNOWN      999u

/* Bytes of the Confluent frame: magic 0x00 and the big-endian schema id. */
#define ENCODE_FRAME_BYTES 5

/* "v1", "v2", "v3". */
extern const char *const encode_schema_names[ENCODE_SCHEMA_COUNT];

/* The schema id of a writer schema version. */
uint32_t encode_schema_id(encode_schema_t schema);

/* The JSON text of a writer schema version (static, never freed). */
const char *encode_schema_json(encode_schema_t schema);

/* The JSON text of schema 900, which cannot resolve to the reader schema. */
extern const char encode_incompatible_schema_json[];

/* Writes <dir>/1.avsc, 2.avsc, 3.avsc and 900.avsc (creating dir, one
 * level, if it does not exist), each replaced atomically by rename.  Never
 * writes 999.avsc.  Returns 0 or -1 with errstr filled. */
int encode_write_schemas(const char *dir, char *errstr, size_t errstr_size);

/* What v2 carries beyond the reader's fields; ignored by v1 and v3. */
typedef struct encode_extra {
    const char *const *tags;   /* n_tags NUL-terminated strings (caller owns) */
    size_t n_tags;
    const char *agent_notes;   /* NULL: Avro null */
    bool sized_blocks;         /* write `tags` as one block with a negative count
                                * followed by its byte size (Avro's skippable
                                * form) instead of a plain count */
} encode_extra_t;

/* Encodes ev, framed, as the given writer schema into buf.  extra may be
 * NULL (v2 then writes no tags and a null agent_notes).  The values are
 * written as given, in or out of the SPEC's ranges; enum values must be
 * within their types.  v3 drops channel and nps.  Returns the number of
 * bytes written, or -1 when buf is too small or v3 cannot hold
 * handle_time_ms in an int.  Writes nothing past buf + size. */
int encode_event(const event_t *ev, encode_schema_t schema, const encode_extra_t *extra,
                 uint8_t *buf, size_t size);

/* A message as a producer would send it.  Pointers are views: see the
 * function that filled it for how long they stay valid. */
typedef struct encode_msg {
    const void *key;           /* NULL: no key */
    size_t key_len;
    const void *value;         /* NULL: null value */
    size_t value_len;
    int64_t timestamp_ms;      /* the Kafka message timestamp to set */
    const char *what;          /* static text: which defect, e.g. "csat 9" */
} encode_msg_t;

/* The SPEC §1.1 reason codes that encode_malformed() knows, in table order. */
#define ENCODE_MALFORMED_REASON_COUNT 9
extern const char *const encode_malformed_reasons[ENCODE_MALFORMED_REASON_COUNT];

/* Length of the message_too_large message: over the default
 * max_message_bytes (65536) by 1024. */
#define ENCODE_OVERSIZE_BYTES (65536 + 1024)

/* The smallest buf that encode_malformed() accepts. */
#define ENCODE_MALFORMED_BUF_MIN (ENCODE_OVERSIZE_BYTES + 4096)

/* How many variants encode_malformed() has for a reason code, or 0 when
 * the code is not one of encode_malformed_reasons. */
unsigned encode_malformed_variants(const char *reason);

/* Builds variant (variant % encode_malformed_variants(reason)) of a message
 * that a consumer with default settings, with schema ids 1, 2, 3 and 900
 * installed (encode_write_schemas), dead-letters with `reason`: it passes
 * every check of the table before that one.  The variants:
 *
 *   empty_message        null value without a key (with a valid key it
 *                        would be a tombstone, SPEC §1.2); zero-length value
 *   message_too_large    ENCODE_OVERSIZE_BYTES bytes
 *   bad_framing          4 bytes; magic byte 0x01; a JSON text
 *   unknown_schema       schema id 999
 *   incompatible_schema  schema id 900
 *   decode_error         body cut short; trailing bytes; union branch 5;
 *                        kind enum index 9; negative string length;
 *                        string length of 2^40 bytes in a short message
 *   invalid_field        csat 9; nps 11; sentiment 1.5; sentiment NaN;
 *                        empty customer_id; 257-byte customer_id;
 *                        empty event_id; 129-byte event_id;
 *                        8193-byte feedback_text; invalid UTF-8 in
 *                        feedback_text; occurred_at -1; handle_time_ms -1
 *   key_mismatch         no key; another customer's key
 *   future_timestamp     occurred_at one hour past timestamp_ms + 300000
 *
 * base is a valid event (ids within limits) the message is made from; its
 * customer_id is the key unless the variant says otherwise, and
 * timestamp_ms is the Kafka timestamp a valid copy of it would carry.
 * buf (at least ENCODE_MALFORMED_BUF_MIN bytes) receives the value.  out's
 * pointers point into buf, into base's strings or at static text: valid as
 * long as those are.  Returns 0, or -1 with errstr filled for an unknown
 * reason or a small buffer. */
int encode_malformed(const char *reason, unsigned variant, const event_t *base,
                     int64_t timestamp_ms, uint8_t *buf, size_t size, encode_msg_t *out,
                     char *errstr, size_t errstr_size);

#endif
