/*
 * schema_plan.h — one writer schema compiled against the reader schema
 * rapport.v1.InteractionEvent (schemas/interaction_event.avsc), and the
 * decoder of Avro bodies that runs the compiled plan.
 *
 * Compiling applies the Avro specification's resolution rules once per
 * writer schema: the result is a flat array of steps, one per writer field,
 * each saying what the writer put on the wire and where it lands in
 * event_t (or how to skip it).  Decoding walks that array over the bytes,
 * checks every length and index against the bytes left, and allocates
 * nothing.
 *
 * A plan is immutable once built; the thread that owns the decoder owns it.
 */
#ifndef RAPPORT_SCHEMA_PLAN_H
#define RAPPORT_SCHEMA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "consumer/decode.h"
#include "scoring/event.h"

/* Skipped writer values may nest records, arrays, maps and unions this
 * deep (counting the event record as 0); deeper is a decode_error. */
#define SCHEMA_PLAN_MAX_DEPTH 32

typedef struct schema_plan schema_plan_t;

/* Parses `len` bytes of writer schema JSON (no NUL needed) with avro-c and
 * compiles it.  Returns the plan (caller frees with schema_plan_free()), or
 * NULL with one line in errstr when the text is not an Avro schema or cannot
 * be resolved to the reader schema. */
schema_plan_t *schema_plan_new(const char *json, size_t len, char *errstr, size_t errstr_size);
void schema_plan_free(schema_plan_t *plan);

/* Decodes one Avro body (the message value after the 5-byte header) into
 * *ev: reader defaults first, then the writer's values; strings point into
 * body.  Returns DLQ_NONE, DLQ_INCOMPATIBLE_SCHEMA (the message uses a writer
 * enum symbol or union branch that the reader lacks) or DLQ_DECODE_ERROR,
 * with one line in detail.  *ev is unspecified unless DLQ_NONE.  Ranges are
 * not checked here (that is decoder_decode's invalid_field step). */
dlq_reason_t schema_plan_decode(const schema_plan_t *plan, const uint8_t *body, size_t len,
                                event_t *ev, char *detail, size_t detail_size);

#endif
