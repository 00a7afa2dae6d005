/*
 * decode.c — the SPEC §1.1 checks, in table order, from a Kafka message's
 * bytes to a valid event_t or a dead-letter reason; and the cache of
 * compiled writer schemas by id.
 *
 * Schema cache.  A writer schema id maps to its compiled plan (or, when the
 * schema does not parse or resolve, to that error) in an open-addressing
 * hash table that grows by doubling; the last id used is checked first,
 * since a topic's producers mostly share one schema.  Only ids that exist
 * are cached, so the table is bounded by the number of schemas there are.
 * Like a Confluent registry id, an id's schema never changes: a schema
 * file edited after its id was first seen is read only after a restart.
 * An id that is not found is remembered in a small direct-mapped table
 * (MISSING_SLOTS entries) and looked up again at most once per
 * MISSING_RECHECK_MS, so a flood of messages with an unknown id does not
 * hit the disk or the registry per message, and a schema file that appears
 * later is found within a second.  A source that cannot answer now
 * (SCHEMA_UNAVAILABLE, an unreadable file) is not remembered: the caller
 * retries, paced by its own back-off.
 *
 * Owns: the schema_dir copy, the cache and every plan in it.
 * Thread: one thread owns a decoder (nothing here is locked).
 */
#include "consumer/decode.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/escape.h"
#include "common/log.h"
#include "consumer/schema_plan.h"
#include "consumer/utf8.h"

#define DEFAULT_MAX_MESSAGE_BYTES 65536
#define FRAME_HEADER_BYTES 5
#define SCHEMA_FILE_MAX_BYTES (1024 * 1024)
#define MISSING_SLOTS 64               /* power of two */
#define MISSING_RECHECK_MS 1000
#define KEY_SHOWN 48                   /* bytes of a key quoted in a dead letter's detail */

const char *const dlq_reason_names[DLQ_REASON_COUNT] = {
    [DLQ_NONE] = "none",
    [DLQ_EMPTY_MESSAGE] = "empty_message",
    [DLQ_MESSAGE_TOO_LARGE] = "message_too_large",
    [DLQ_BAD_FRAMING] = "bad_framing",
    [DLQ_UNKNOWN_SCHEMA] = "unknown_schema",
    [DLQ_INCOMPATIBLE_SCHEMA] = "incompatible_schema",
    [DLQ_DECODE_ERROR] = "decode_error",
    [DLQ_INVALID_FIELD] = "invalid_field",
    [DLQ_KEY_MISMATCH] = "key_mismatch",
    [DLQ_FUTURE_TIMESTAMP] = "future_timestamp",
};

/* Same content as schemas/interaction_event.avsc (a test compares the two
 * as JSON). */
const char decode_reader_schema_json[] =
    "{\"type\": \"record\", \"name\": \"InteractionEvent\", \"namespace\": \"rapport.v1\",\n"
    " \"fields\": [\n"
    "  {\"name\": \"event_id\",       \"type\": \"string\"},\n"
    "  {\"name\": \"customer_id\",    \"type\": \"string\"},\n"
    "  {\"name\": \"occurred_at\",    \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"}},\n"
    "  {\"name\": \"kind\",           \"type\": {\"type\": \"enum\", \"name\": \"Kind\",\n"
    "                               \"symbols\": [\"CONTACT\", \"FEEDBACK\", \"PURCHASE\", \"CANCELLATION\"]}},\n"
    "  {\"name\": \"channel\",        \"type\": {\"type\": \"enum\", \"name\": \"Channel\",\n"
    "                               \"symbols\": [\"CHAT\", \"VOICE\", \"EMAIL\", \"SOCIAL\", \"IN_PERSON\", \"APP\", \"OTHER\"]},\n"
    "                             \"default\": \"OTHER\"},\n"
    "  {\"name\": \"handled_by\",     \"type\": {\"type\": \"enum\", \"name\": \"Handler\",\n"
    "                               \"symbols\": [\"AI\", \"HUMAN\", \"HYBRID\", \"NONE\"]}, \"default\": \"NONE\"},\n"
    "  {\"name\": \"resolved\",       \"type\": [\"null\", \"boolean\"], \"default\": null},\n"
    "  {\"name\": \"sentiment\",      \"type\": [\"null\", \"float\"],   \"default\": null},\n"
    "  {\"name\": \"csat\",           \"type\": [\"null\", \"int\"],     \"default\": null},\n"
    "  {\"name\": \"nps\",            \"type\": [\"null\", \"int\"],     \"default\": null},\n"
    "  {\"name\": \"handle_time_ms\", \"type\": [\"null\", \"long\"],    \"default\": null},\n"
    "  {\"name\": \"feedback_text\",  \"type\": [\"null\", \"string\"],  \"default\": null}\n"
    " ]}\n";

/* One schema id that exists: its plan, or why it cannot be used. */
typedef struct cache_entry {
    uint32_t id;
    bool used;
    schema_plan_t *plan;    /* owned; NULL when error is set */
    char *error;            /* owned */
} cache_entry_t;

/* One schema id recently found missing. */
typedef struct missing {
    uint32_t id;
    bool used;
    int64_t checked_ms;     /* CLOCK_MONOTONIC */
} missing_t;

struct decoder {
    char *schema_dir;                 /* owned copy, or NULL */
    schema_fetch_fn fetch;
    void *fetch_opaque;
    size_t max_message_bytes;
    int64_t max_future_skew_ms;

    cache_entry_t *cache;             /* cache_cap slots, a power of two */
    size_t cache_cap, cache_count;
    uint32_t last_id;                 /* the last id decoded with last_plan */
    const schema_plan_t *last_plan;   /* points into the cache, or NULL */
    missing_t missing[MISSING_SLOTS];
};

decoder_t *decoder_new(const decoder_conf_t *conf, char *errstr, size_t errstr_size) {
    decoder_t *d = NULL;

    if (!conf->schema_dir && !conf->fetch) {
        snprintf(errstr, errstr_size, "decoder: no schema source (schema_dir or a registry)");
        return NULL;
    }
    if (conf->schema_dir && (!*conf->schema_dir || strlen(conf->schema_dir) > PATH_MAX - 32)) {
        snprintf(errstr, errstr_size, "decoder: schema_dir is empty or too long");
        return NULL;
    }
    if (conf->max_future_skew_ms < 0) {
        snprintf(errstr, errstr_size, "decoder: max_future_skew_ms %lld is negative",
                 (long long)conf->max_future_skew_ms);
        return NULL;
    }
    d = xcalloc(1, sizeof *d);
    if (conf->schema_dir) d->schema_dir = xstrdup(conf->schema_dir);
    d->cache_cap = 16;
    d->cache = xcalloc(d->cache_cap, sizeof *d->cache);
    d->fetch = conf->fetch;
    d->fetch_opaque = conf->fetch_opaque;
    d->max_message_bytes = conf->max_message_bytes ? conf->max_message_bytes
                                                   : DEFAULT_MAX_MESSAGE_BYTES;
    d->max_future_skew_ms = conf->max_future_skew_ms;
    return d;
}

void decoder_free(decoder_t *d) {
    if (!d) return;
    for (size_t i = 0; i < d->cache_cap && d->cache; i++) {
        schema_plan_free(d->cache[i].plan);
        free(d->cache[i].error);
    }
    free(d->cache);
    free(d->schema_dir);
    free(d);
}

/* ---- schema cache ---- */

static size_t cache_slot(uint32_t id, size_t cap) {
    return (size_t)((id * 2654435761u) & (cap - 1));
}

static cache_entry_t *cache_find(decoder_t *d, uint32_t id) {
    for (size_t i = cache_slot(id, d->cache_cap);; i = (i + 1) & (d->cache_cap - 1)) {
        if (!d->cache[i].used) return NULL;
        if (d->cache[i].id == id) return &d->cache[i];
    }
}

/* Inserts an entry for an id not in the cache, growing the table to keep
 * it at most half full; the cache takes ownership of plan and error.
 * Returns the entry. */
static cache_entry_t *cache_insert(decoder_t *d, uint32_t id, schema_plan_t *plan, char *error) {
    if (2 * (d->cache_count + 1) > d->cache_cap) {
        size_t cap = 2 * d->cache_cap;
        cache_entry_t *grown = xcalloc(cap, sizeof *grown);
        for (size_t i = 0; i < d->cache_cap; i++) {
            if (!d->cache[i].used) continue;
            size_t j = cache_slot(d->cache[i].id, cap);
            while (grown[j].used) j = (j + 1) & (cap - 1);
            grown[j] = d->cache[i];
        }
        free(d->cache);
        d->cache = grown;
        d->cache_cap = cap;
    }
    size_t j = cache_slot(id, d->cache_cap);
    while (d->cache[j].used) j = (j + 1) & (d->cache_cap - 1);
    d->cache[j] = (cache_entry_t){.id = id, .used = true, .plan = plan, .error = error};
    d->cache_count++;
    return &d->cache[j];
}

/* Reads <schema_dir>/<id>.avsc.  Returns 0 with *json (caller frees) and
 * *len, 1 when there is no such file, -1 with errstr when the file exists
 * but cannot be read now, -2 with errstr when it is over the size limit. */
static int schema_file_read(const char *path, char **json, size_t *len, char *errstr,
                            size_t errstr_size) {
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return 1;
        snprintf(errstr, errstr_size, "cannot open the schema file: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(errstr, errstr_size, "the schema file is not a readable regular file");
        goto fail;
    }
    if (st.st_size > SCHEMA_FILE_MAX_BYTES) {
        snprintf(errstr, errstr_size, "the schema file is %lld bytes, over the %d-byte limit",
                 (long long)st.st_size, SCHEMA_FILE_MAX_BYTES);
        close(fd);
        return -2;
    }
    buf = xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(errstr, errstr_size, "cannot read the schema file: %s", strerror(errno));
            goto fail;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *json = buf;
    *len = got;
    return 0;

fail:
    free(buf);
    close(fd);
    return -1;
}

static decode_result_t dead(dlq_reason_t *reason, dlq_reason_t why, char *detail,
                            size_t detail_size, const char *fmt, ...)
    __attribute__((cold, format(printf, 5, 6)));

static decode_result_t dead(dlq_reason_t *reason, dlq_reason_t why, char *detail,
                            size_t detail_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, detail_size, fmt, ap);
    va_end(ap);
    *reason = why;
    return DECODE_DEAD;
}

/* Reads schema id `id` from its sources, compiles it and caches the result
 * (a plan or the reason it cannot be used).  Returns DECODE_OK with *entry,
 * DECODE_DEAD with unknown_schema, or DECODE_RETRY. */
static decode_result_t schema_load(decoder_t *d, uint32_t id, cache_entry_t **entry,
                                   dlq_reason_t *reason, char *detail, size_t detail_size) {
    missing_t *miss = &d->missing[id & (MISSING_SLOTS - 1)];
    const char *where = d->schema_dir ? d->schema_dir : "";
    const char *also = !d->fetch ? "" : d->schema_dir ? " or the registry" : "the registry";
    int64_t now = clock_ms();
    char path[PATH_MAX];
    char err[512] = "";
    char *json = NULL;
    size_t len = 0;
    const char *source = "";
    int found = 0;   /* 1: the text is in json; -2: over the size limit (err says so) */

    if (miss->used && miss->id == id && now - miss->checked_ms < MISSING_RECHECK_MS) {
        return dead(reason, DLQ_UNKNOWN_SCHEMA, detail, detail_size,
                    "schema id %u not found in %s%s", id, where, also);
    }
    if (d->schema_dir) {
        snprintf(path, sizeof path, "%s/%u.avsc", d->schema_dir, id);
        int rc = schema_file_read(path, &json, &len, err, sizeof err);
        if (rc == -1) {
            snprintf(detail, detail_size, "schema id %u: %s: %s", id, path, err);
            return DECODE_RETRY;
        }
        if (rc == 0 || rc == -2) {
            found = rc == 0 ? 1 : -2;
            source = path;
        }
    }
    if (!found && d->fetch) {
        switch (d->fetch(d->fetch_opaque, id, &json, &len, err, sizeof err)) {
        case SCHEMA_FOUND:
            found = 1;
            source = "registry";
            break;
        case SCHEMA_NOT_FOUND:
            break;
        case SCHEMA_UNAVAILABLE:
            snprintf(detail, detail_size, "schema id %u: registry unavailable: %s", id, err);
            return DECODE_RETRY;
        }
    }
    if (!found) {
        *miss = (missing_t){.id = id, .used = true, .checked_ms = now};
        return dead(reason, DLQ_UNKNOWN_SCHEMA, detail, detail_size,
                    "schema id %u not found in %s%s", id, where, also);
    }

    schema_plan_t *plan = NULL;
    if (found == 1) {
        plan = schema_plan_new(json, len, err, sizeof err);
        free(json);
    }
    *entry = cache_insert(d, id, plan, plan ? NULL : xstrdup(err));
    if (plan) {
        log_info("writer schema loaded", "schema_id=%u source=%s", id, source);
    } else {
        char q[600];
        log_warn("writer schema unusable", "schema_id=%u source=%s error=%s", id, source,
                 log_quote(err, q, sizeof q));
    }
    return DECODE_OK;
}

/* Finds schema id `id` in the cache or its sources.  Returns DECODE_OK with
 * *plan (owned by the cache), DECODE_DEAD with unknown_schema or
 * incompatible_schema, or DECODE_RETRY. */
static decode_result_t schema_lookup(decoder_t *d, uint32_t id, const schema_plan_t **plan,
                                     dlq_reason_t *reason, char *detail, size_t detail_size)
    __attribute__((noinline));

static decode_result_t schema_lookup(decoder_t *d, uint32_t id, const schema_plan_t **plan,
                                     dlq_reason_t *reason, char *detail, size_t detail_size) {
    cache_entry_t *e = cache_find(d, id);
    decode_result_t res;

    if (!e && (res = schema_load(d, id, &e, reason, detail, detail_size)) != DECODE_OK) {
        return res;
    }
    if (e->error) {
        return dead(reason, DLQ_INCOMPATIBLE_SCHEMA, detail, detail_size, "schema id %u: %s", id,
                    e->error);
    }
    d->last_id = id;
    d->last_plan = e->plan;
    *plan = e->plan;
    return DECODE_OK;
}

/* ---- field checks ---- */

static bool check_string(const char *name, strview_t s, size_t max, bool may_be_empty,
                         char *detail, size_t detail_size) {
    if (!s.ptr) return true;
    if (s.len == 0 && !may_be_empty) {
        snprintf(detail, detail_size, "%s is empty", name);
        return false;
    }
    if (s.len > max) {
        snprintf(detail, detail_size, "%s is %zu bytes, over %zu", name, s.len, max);
        return false;
    }
    return true;
}

static bool check_utf8(const char *name, strview_t s, char *detail, size_t detail_size) {
    if (!s.ptr) return true;
    size_t ok = utf8_valid_prefix(s.ptr, s.len);
    if (ok == s.len) return true;
    snprintf(detail, detail_size, "invalid UTF-8 in %s at byte %zu", name, ok);
    return false;
}

/* The invalid_field checks, in SPEC order.  Returns true when ev passes. */
static bool event_check(const event_t *ev, char *detail, size_t detail_size) {
    if (!check_string("customer_id", ev->customer_id, EVENT_CUSTOMER_ID_MAX, false, detail,
                      detail_size) ||
        !check_string("event_id", ev->event_id, EVENT_EVENT_ID_MAX, false, detail, detail_size) ||
        !check_string("feedback_text", ev->feedback_text, EVENT_FEEDBACK_TEXT_MAX, true, detail,
                      detail_size) ||
        !check_utf8("customer_id", ev->customer_id, detail, detail_size) ||
        !check_utf8("event_id", ev->event_id, detail, detail_size) ||
        !check_utf8("feedback_text", ev->feedback_text, detail, detail_size)) {
        return false;
    }
    if (ev->occurred_at < 0) {
        snprintf(detail, detail_size, "occurred_at %lld is negative", (long long)ev->occurred_at);
        return false;
    }
    if (ev->has_sentiment && !(ev->sentiment >= -1.0f && ev->sentiment <= 1.0f)) {
        snprintf(detail, detail_size, isfinite(ev->sentiment) ? "sentiment %.8g outside [-1, 1]"
                                                              : "sentiment %g is not finite",
                 (double)ev->sentiment);
        return false;
    }
    if (ev->has_csat && (ev->csat < 1 || ev->csat > 5)) {
        snprintf(detail, detail_size, "csat %d outside 1..5", (int)ev->csat);
        return false;
    }
    if (ev->has_nps && (ev->nps < 0 || ev->nps > 10)) {
        snprintf(detail, detail_size, "nps %d outside 0..10", (int)ev->nps);
        return false;
    }
    if (ev->has_handle_time && ev->handle_time_ms < 0) {
        snprintf(detail, detail_size, "handle_time_ms %lld is negative",
                 (long long)ev->handle_time_ms);
        return false;
    }
    return true;
}

/* ---- the checks, in SPEC §1.1 order ---- */

decode_result_t decoder_decode(decoder_t *d, const kafka_msg_view_t *msg, event_t *out,
                               dlq_reason_t *reason, char *detail, size_t detail_size) {
    const uint8_t *v = msg->value;
    size_t n = msg->value_len;
    const schema_plan_t *plan;
    decode_result_t res;

    if (detail_size) detail[0] = '\0';
    *reason = DLQ_NONE;
    if (!v && msg->key && msg->key_len >= 1 && msg->key_len <= EVENT_CUSTOMER_ID_MAX &&
        utf8_valid_prefix(msg->key, msg->key_len) == msg->key_len) {
        /* SPEC §1.2: a tombstone.  A null value without a valid key stays
         * an empty message below. */
        memset(out, 0, sizeof(*out));
        out->customer_id = (strview_t){msg->key, msg->key_len};
        return DECODE_TOMBSTONE;
    }
    if (!v || n == 0) {
        return dead(reason, DLQ_EMPTY_MESSAGE, detail, detail_size, "value is %s",
                    v ? "empty" : "null");
    }
    if (n > d->max_message_bytes) {
        return dead(reason, DLQ_MESSAGE_TOO_LARGE, detail, detail_size,
                    "value is %zu bytes, over max_message_bytes %zu", n, d->max_message_bytes);
    }
    if (n < FRAME_HEADER_BYTES) {
        return dead(reason, DLQ_BAD_FRAMING, detail, detail_size,
                    "value is %zu bytes, shorter than the 5-byte header", n);
    }
    if (v[0] != 0x00) {
        return dead(reason, DLQ_BAD_FRAMING, detail, detail_size, "magic byte is 0x%02x, not 0x00",
                    v[0]);
    }

    uint32_t id = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
    if (d->last_plan && id == d->last_id) {
        plan = d->last_plan;
    } else if ((res = schema_lookup(d, id, &plan, reason, detail, detail_size)) != DECODE_OK) {
        return res;
    }

    dlq_reason_t why = schema_plan_decode(plan, v + FRAME_HEADER_BYTES, n - FRAME_HEADER_BYTES,
                                          out, detail, detail_size);
    if (why != DLQ_NONE) {
        *reason = why;
        return DECODE_DEAD;
    }
    if (!event_check(out, detail, detail_size)) {
        *reason = DLQ_INVALID_FIELD;
        return DECODE_DEAD;
    }

    if (!msg->key) {
        return dead(reason, DLQ_KEY_MISMATCH, detail, detail_size, "message has no key");
    }
    if (msg->key_len != out->customer_id.len ||
        memcmp(msg->key, out->customer_id.ptr, msg->key_len) != 0) {
        char k[200], c[200];
        return dead(reason, DLQ_KEY_MISMATCH, detail, detail_size,
                    "key \"%s\" differs from customer_id \"%s\"",
                    escape_bytes(msg->key, msg->key_len, KEY_SHOWN, k, sizeof k),
                    escape_bytes(out->customer_id.ptr, out->customer_id.len, KEY_SHOWN, c,
                                 sizeof c));
    }

    if (msg->timestamp >= 0) {
        int64_t limit = d->max_future_skew_ms > INT64_MAX - msg->timestamp
                            ? INT64_MAX
                            : msg->timestamp + d->max_future_skew_ms;
        if (out->occurred_at > limit) {
            return dead(reason, DLQ_FUTURE_TIMESTAMP, detail, detail_size,
                        "occurred_at %lld is after the message timestamp %lld + %lld ms",
                        (long long)out->occurred_at, (long long)msg->timestamp,
                        (long long)d->max_future_skew_ms);
        }
    }
    return DECODE_OK;
}
