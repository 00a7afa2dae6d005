/*
 * fuzz_decode.c — libFuzzer harness for decoder_decode() (consumer/decode.h):
 * the Confluent framing, the schema cache, the Avro body decoded by every
 * compiled writer schema in fuzz/schemas/ (those the tests use: the reader
 * schema, the test_decode.c writer schemas, the registry test answers,
 * and unusable ones), the invalid_field checks, the key and the timestamp.
 *
 * Input layout:
 *   byte 0       which schema id (an index into the ids found in the
 *                directory, or one past them: an id with no schema)
 *   byte 1       bit 0-1: key none / "c-42" / taken from the input
 *                (byte 2 is its length, then the key bytes);
 *                bit 2-3: message timestamp -1 / 0 / 1700000000000 / INT64_MAX;
 *                bit 4:   the rest is the whole value (framing included),
 *                         else the value is 0x00, the id, then the rest;
 *                bit 5-6: which decoder: schema_dir with max_future_skew_ms
 *                         300000, the same with INT64_MAX, or a decoder
 *                         whose only source is a fetch callback (as the
 *                         registry is) that finds the same schemas, says
 *                         "unavailable" for ids ending in 3 and "not found"
 *                         for the id with no file
 *   rest         the message value (or body)
 *
 * Decoders live for the whole run, so the schema cache is exercised as in
 * production: each id is parsed once, later messages hit the cache.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer/decode.h"

#ifndef FUZZ_SCHEMA_DIR
#define FUZZ_SCHEMA_DIR "fuzz/schemas"
#endif

#define MAX_IDS 64
#define BASE_TS 1700000000000LL

static decoder_t *decoders[3];
static const char *schema_dir;
static uint32_t ids[MAX_IDS];
static size_t nids;
static volatile unsigned sink;

static int id_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The registry's part, from the same directory: a schema_fetch_fn. */
static schema_lookup_t fetch(void *opaque, uint32_t id, char **json, size_t *len, char *errstr,
                             size_t errstr_size) {
    (void)opaque;
    if (id % 10 == 3) {
        snprintf(errstr, errstr_size, "registry down (fuzz)");
        return SCHEMA_UNAVAILABLE;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%u.avsc", schema_dir, id);
    FILE *f = fopen(path, "rb");
    if (!f) return SCHEMA_NOT_FOUND;
    char *buf = malloc(1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    buf[n] = '\0';
    *json = buf;
    *len = n;
    return SCHEMA_FOUND;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("RAPPORT_FUZZ_SCHEMAS");
    if (!dir) dir = FUZZ_SCHEMA_DIR;
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "fuzz_decode: cannot open %s (set RAPPORT_FUZZ_SCHEMAS)\n", dir);
        abort();
    }
    struct dirent *de;
    while ((de = readdir(dp)) && nids < MAX_IDS - 1) {
        unsigned id;
        char tail[8];
        if (sscanf(de->d_name, "%u.%7s", &id, tail) == 2 && strcmp(tail, "avsc") == 0)
            ids[nids++] = id;
    }
    closedir(dp);
    qsort(ids, nids, sizeof ids[0], id_cmp); /* byte 0 means the same id on every machine */
    ids[nids++] = 999999; /* no such schema: unknown_schema */
    char err[256];
    schema_dir = dir;
    for (int i = 0; i < 3; i++) {
        decoder_conf_t conf = {.schema_dir = i < 2 ? dir : NULL,
                               .fetch = i < 2 ? NULL : fetch,
                               .max_future_skew_ms = i == 1 ? INT64_MAX : 300000};
        if (!(decoders[i] = decoder_new(&conf, err, sizeof err))) {
            fprintf(stderr, "fuzz_decode: %s\n", err);
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int64_t stamps[4] = {-1, 0, BASE_TS, INT64_MAX};
    if (size < 2) return 0;
    uint32_t id = ids[data[0] % nids];
    uint8_t flags = data[1];
    data += 2;
    size -= 2;

    kafka_msg_view_t msg = {.timestamp = stamps[(flags >> 2) & 3]};
    switch (flags & 3) {
    case 0:
        break;
    case 1:
        msg.key = "c-42";
        msg.key_len = 4;
        break;
    default: {
        if (size < 1) return 0;
        size_t klen = data[0] < size - 1 ? data[0] : size - 1;
        /* A copy of its own, so that ASan sees a read past the key. */
        msg.key = klen ? memcpy(malloc(klen), data + 1, klen) : malloc(1);
        msg.key_len = klen;
        data += 1 + klen;
        size -= 1 + klen;
    }
    }

    uint8_t *v;
    size_t n;
    if (flags & 0x10) {
        v = malloc(size ? size : 1);
        memcpy(v, data, size);
        n = size;
    } else {
        n = size + 5;
        v = malloc(n);
        v[0] = 0;
        v[1] = (uint8_t)(id >> 24);
        v[2] = (uint8_t)(id >> 16);
        v[3] = (uint8_t)(id >> 8);
        v[4] = (uint8_t)id;
        memcpy(v + 5, data, size);
    }
    msg.value = v;
    msg.value_len = n;

    event_t ev;
    dlq_reason_t reason;
    char detail[512];
    decode_result_t res = decoder_decode(decoders[((flags >> 5) & 3) % 3], &msg, &ev, &reason, detail,
                                         sizeof detail);
    if (res == DECODE_OK) {
        /* Touch every string the event points to: all must lie inside the value. */
        const strview_t *sv[3] = {&ev.event_id, &ev.customer_id, &ev.feedback_text};
        for (int i = 0; i < 3; i++)
            for (size_t k = 0; sv[i]->ptr && k < sv[i]->len; k++) sink += (uint8_t)sv[i]->ptr[k];
        if (reason != DLQ_NONE) abort();
    } else if (res == DECODE_DEAD) {
        if (reason <= DLQ_NONE || reason >= DLQ_REASON_COUNT) abort();
        if (!memchr(detail, '\0', sizeof detail)) abort();
    }
    free(v);
    if ((flags & 3) >= 2) free((void *)msg.key);
    return 0;
}
