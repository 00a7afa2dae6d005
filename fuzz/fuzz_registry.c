/*
 * fuzz_registry.c — libFuzzer harness for the schema registry client's
 * reading of an answer (registry_answer_parse(), consumer/registry.h):
 * the 200 body {"schema": …, "schemaType": …}, Confluent error bodies
 * {"error_code": …, "message": …} under every status the client tells
 * apart, and, when a schema is found, its compilation as the decoder would
 * do next (schema_plan_new()).
 *
 * Input: byte 0 picks the HTTP status; the rest is the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "consumer/registry.h"
#include "consumer/schema_plan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR); /* the warnings still format their values */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const long statuses[16] = {200, 200, 200, 200, 200, 200, 200, 200,
                                      404, 404, 401, 403, 500, 503, 302, 204};
    if (size < 1) return 0;
    long status = statuses[data[0] & 15];
    /* A copy of its own, without a NUL after it, so that ASan sees any
     * read past the answer. */
    size_t n = size - 1;
    char *body = malloc(n ? n : 1);
    memcpy(body, data + 1, n);

    char *json = NULL, err[512];
    size_t len = 0;
    err[0] = '\0';
    schema_lookup_t res = registry_answer_parse("http://127.0.0.1:1", "GET http://127.0.0.1:1/schemas/ids/1",
                                                status, body, n, &json, &len, err, sizeof err);
    free(body);
    switch (res) {
    case SCHEMA_FOUND: {
        if (!json || json[len] != '\0') abort();
        char perr[256];
        schema_plan_free(schema_plan_new(json, len, perr, sizeof perr));
        free(json);
        break;
    }
    case SCHEMA_NOT_FOUND:
        if (status != 404) abort();
        break;
    case SCHEMA_UNAVAILABLE:
        if (!err[0] || !memchr(err, '\0', sizeof err)) abort();
        break;
    }
    return 0;
}
