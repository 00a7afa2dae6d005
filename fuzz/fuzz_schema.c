/*
 * fuzz_schema.c — libFuzzer harness for the writer-schema compiler
 * (schema_plan_new(), consumer/schema_plan.h) and, when the schema
 * compiles, for the plan's body decoder (schema_plan_decode()).
 *
 * Input: the schema JSON, then optionally a NUL byte and an Avro body that
 * the compiled plan decodes.  A schema that arrives from a registry or a
 * schema file is outside text: it must compile or fail with one line,
 * never crash, leak or recurse without bound.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consumer/schema_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, '\0', size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    /* Copies of their own, so that ASan sees any read past either end. */
    char *json = malloc(jlen ? jlen : 1);
    memcpy(json, data, jlen);
    char err[256];
    err[0] = '\0';
    schema_plan_t *plan = schema_plan_new(json, jlen, err, sizeof err);
    free(json);
    if (!plan) {
        if (!err[0] || !memchr(err, '\0', sizeof err)) abort(); /* every failure says why */
        return 0;
    }
    if (nul) {
        size_t blen = size - jlen - 1;
        uint8_t *body = malloc(blen ? blen : 1);
        memcpy(body, nul + 1, blen);
        event_t ev;
        char detail[512];
        dlq_reason_t why = schema_plan_decode(plan, body, blen, &ev, detail, sizeof detail);
        if (why != DLQ_NONE && why != DLQ_INCOMPATIBLE_SCHEMA && why != DLQ_DECODE_ERROR) abort();
        free(body);
    }
    schema_plan_free(plan);
    return 0;
}
