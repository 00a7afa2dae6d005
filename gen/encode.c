/*
 * encode.c — hand-written Avro binary encoding of event_t for three writer
 * schemas, the schema texts, and the malformed-message builder.
 *
 * Every write goes through wbuf_t, which counts what it would have written
 * and writes only what fits, so a short buffer is detected once at the end
 * (like a snprintf) and nothing is ever written past it.  Stateless and
 * thread-safe; owns no memory.
 */
#include "gen/encode.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const encode_schema_names[ENCODE_SCHEMA_COUNT] = {"v1", "v2", "v3"};

const char *const encode_malformed_reasons[ENCODE_MALFORMED_REASON_COUNT] = {
    "empty_message", "message_too_large", "bad_framing", "unknown_schema",
    "incompatible_schema", "decode_error", "invalid_field", "key_mismatch",
    "future_timestamp"};

/* The pieces the schema texts share. */
#define F_IDS \
    "  {\"name\": \"event_id\",       \"type\": \"string\"},\n" \
    "  {\"name\": \"customer_id\",    \"type\": \"string\"},\n"
#define F_OCCURRED \
    "  {\"name\": \"occurred_at\",    \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"}},\n"
#define F_KIND \
    "  {\"name\": \"kind\",           \"type\": {\"type\": \"enum\", \"name\": \"Kind\",\n" \
    "                               \"symbols\": [\"CONTACT\", \"FEEDBACK\", \"PURCHASE\", \"CANCELLATION\"]}},\n"
#define F_CHANNEL \
    "  {\"name\": \"channel\",        \"type\": {\"type\": \"enum\", \"name\": \"Channel\",\n" \
    "                               \"symbols\": [\"CHAT\", \"VOICE\", \"EMAIL\", \"SOCIAL\", \"IN_PERSON\", \"APP\", \"OTHER\"]},\n" \
    "                             \"default\": \"OTHER\"},\n"
#define F_HANDLER \
    "  {\"name\": \"handled_by\",     \"type\": {\"type\": \"enum\", \"name\": \"Handler\",\n" \
    "                               \"symbols\": [\"AI\", \"HUMAN\", \"HYBRID\", \"NONE\"]}, \"default\": \"NONE\"},\n"
#define F_RESOLVED  "  {\"name\": \"resolved\",       \"type\": [\"null\", \"boolean\"], \"default\": null},\n"
#define F_SENTIMENT "  {\"name\": \"sentiment\",      \"type\": [\"null\", \"float\"],   \"default\": null},\n"
#define F_CSAT      "  {\"name\": \"csat\",           \"type\": [\"null\", \"int\"],     \"default\": null},\n"
#define F_NPS       "  {\"name\": \"nps\",            \"type\": [\"null\", \"int\"],     \"default\": null},\n"
#define F_AHT       "  {\"name\": \"handle_time_ms\", \"type\": [\"null\", \"long\"],    \"default\": null},\n"
#define F_TEXT_LAST "  {\"name\": \"feedback_text\",  \"type\": [\"null\", \"string\"],  \"default\": null}\n"
#define RECORD_HEAD \
    "{\"type\": \"record\", \"name\": \"InteractionEvent\", \"namespace\": \"rapport.v1\",\n" \
    " \"fields\": [\n"
#define RECORD_TAIL " ]}\n"

/* v1: the same text as schemas/interaction_event.avsc. */
static const char schema_v1_json[] =
    RECORD_HEAD F_IDS F_OCCURRED F_KIND F_CHANNEL F_HANDLER F_RESOLVED F_SENTIMENT F_CSAT F_NPS
    F_AHT F_TEXT_LAST RECORD_TAIL;

static const char schema_v2_json[] =
    RECORD_HEAD F_IDS F_OCCURRED F_KIND F_CHANNEL F_HANDLER
    "  {\"name\": \"tags\",           \"type\": {\"type\": \"array\", \"items\": \"string\"}, \"default\": []},\n"
    F_RESOLVED F_SENTIMENT F_CSAT F_NPS F_AHT
    "  {\"name\": \"feedback_text\",  \"type\": [\"null\", \"string\"],  \"default\": null},\n"
    "  {\"name\": \"agent_notes\",    \"type\": [\"null\", \"string\"],  \"default\": null}\n"
    RECORD_TAIL;

static const char schema_v3_json[] =
    RECORD_HEAD
    "  {\"name\": \"customer_id\",    \"type\": \"string\"},\n"
    F_OCCURRED
    "  {\"name\": \"event_id\",       \"type\": \"string\"},\n"
    F_KIND F_HANDLER F_RESOLVED
    "  {\"name\": \"handle_time_ms\", \"type\": [\"null\", \"int\"],     \"default\": null},\n"
    F_SENTIMENT F_CSAT F_TEXT_LAST RECORD_TAIL;

const char encode_incompatible_schema_json[] =
    RECORD_HEAD
    "  {\"name\": \"event_id\",       \"type\": \"int\"},\n"
    "  {\"name\": \"customer_id\",    \"type\": \"string\"},\n"
    F_OCCURRED F_KIND F_CHANNEL F_HANDLER F_RESOLVED F_SENTIMENT F_CSAT F_NPS F_AHT F_TEXT_LAST
    RECORD_TAIL;

uint32_t encode_schema_id(encode_schema_t schema) {
    static const uint32_t ids[ENCODE_SCHEMA_COUNT] = {
        ENCODE_SCHEMA_ID_V1, ENCODE_SCHEMA_ID_V2, ENCODE_SCHEMA_ID_V3};
    assert((unsigned)schema < ENCODE_SCHEMA_COUNT);
    return ids[schema];
}

const char *encode_schema_json(encode_schema_t schema) {
    static const char *const texts[ENCODE_SCHEMA_COUNT] = {
        schema_v1_json, schema_v2_json, schema_v3_json};
    assert((unsigned)schema < ENCODE_SCHEMA_COUNT);
    return texts[schema];
}

/* Writes text to <dir>/<id>.avsc through a temporary file and a rename, so
 * that a consumer reading the directory never sees half a schema. */
static int write_schema_file(const char *dir, uint32_t id, const char *text, char *errstr,
                             size_t errstr_size) {
    char path[4096], tmp[4096];
    int n = snprintf(path, sizeof path, "%s/%" PRIu32 ".avsc", dir, id);
    int m = snprintf(tmp, sizeof tmp, "%s/.%" PRIu32 ".avsc.%ld.tmp", dir, id, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof path || m < 0 || (size_t)m >= sizeof tmp) {
        snprintf(errstr, errstr_size, "schema directory path too long: %s", dir);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            snprintf(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

int encode_write_schemas(const char *dir, char *errstr, size_t errstr_size) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "%s: %s", dir, strerror(errno));
        return -1;
    }
    for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++) {
        if (write_schema_file(dir, encode_schema_id((encode_schema_t)s),
                              encode_schema_json((encode_schema_t)s), errstr, errstr_size) != 0)
            return -1;
    }
    return write_schema_file(dir, ENCODE_SCHEMA_ID_INCOMPATIBLE, encode_incompatible_schema_json,
                             errstr, errstr_size);
}

/* ---- the byte writer ---- */

/* len counts every byte asked for; only those below cap are stored. */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf_t;

static void put_byte(wbuf_t *w, uint8_t b) {
    if (w->len < w->cap)
        w->p[w->len] = b;
    w->len++;
}

static void put_bytes(wbuf_t *w, const void *src, size_t n) {
    if (n <= w->cap && w->len <= w->cap - n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

static uint64_t zigzag(int64_t v) {
    return ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
}

/* Avro int and long: zigzag, then base-128 varint, low groups first. */
static void put_long(wbuf_t *w, int64_t v) {
    uint64_t u = zigzag(v);
    while (u >= 0x80) {
        put_byte(w, (uint8_t)(u | 0x80));
        u >>= 7;
    }
    put_byte(w, (uint8_t)u);
}

static size_t long_size(int64_t v) {
    uint64_t u = zigzag(v);
    size_t n = 1;
    while (u >= 0x80) {
        u >>= 7;
        n++;
    }
    return n;
}

/* Avro float: IEEE 754 single, little-endian. */
static void put_float(wbuf_t *w, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++)
        put_byte(w, (uint8_t)(u >> (8 * i)));
}

static void put_string(wbuf_t *w, const char *s, size_t n) {
    put_long(w, (int64_t)n);
    put_bytes(w, s, n);
}

static void put_view(wbuf_t *w, strview_t v) {
    put_string(w, v.ptr ? v.ptr : "", v.ptr ? v.len : 0);
}

/* ["null", T] unions: branch 0 is null, branch 1 the value. */
static void put_opt_view(wbuf_t *w, strview_t v) {
    if (!v.ptr) {
        put_long(w, 0);
        return;
    }
    put_long(w, 1);
    put_string(w, v.ptr, v.len);
}

static void put_opt_cstr(wbuf_t *w, const char *s) {
    put_opt_view(w, (strview_t){s, s ? strlen(s) : 0});
}

static void put_opt_bool(wbuf_t *w, tri_t t) {
    if (t == TRI_NULL) {
        put_long(w, 0);
        return;
    }
    put_long(w, 1);
    put_byte(w, t == TRI_TRUE ? 1 : 0);
}

static void put_opt_float(wbuf_t *w, bool has, float f) {
    put_long(w, has ? 1 : 0);
    if (has)
        put_float(w, f);
}

static void put_opt_long(wbuf_t *w, bool has, int64_t v) {
    put_long(w, has ? 1 : 0);
    if (has)
        put_long(w, v);
}

static void put_frame(wbuf_t *w, uint32_t id) {
    put_byte(w, 0x00);
    for (int shift = 24; shift >= 0; shift -= 8)
        put_byte(w, (uint8_t)(id >> shift));
}

/* The v2 `tags` array: one block then the terminating zero count. */
static void put_tags(wbuf_t *w, const encode_extra_t *extra) {
    size_t n = extra ? extra->n_tags : 0;
    if (n > 0) {
        if (extra->sized_blocks) {
            size_t bytes = 0;
            for (size_t i = 0; i < n; i++) {
                size_t len = strlen(extra->tags[i]);
                bytes += long_size((int64_t)len) + len;
            }
            put_long(w, -(int64_t)n);
            put_long(w, (int64_t)bytes);
        } else {
            put_long(w, (int64_t)n);
        }
        for (size_t i = 0; i < n; i++)
            put_string(w, extra->tags[i], strlen(extra->tags[i]));
    }
    put_long(w, 0);
}

/* Defects that encode_malformed() plants in a v1 body. */
typedef enum {
    FAULT_NONE = 0,
    FAULT_UNION_BRANCH,     /* `resolved` with union branch 5 */
    FAULT_ENUM_INDEX,       /* `kind` with symbol index 9 */
    FAULT_NEGATIVE_LENGTH,  /* `event_id` claiming -3 bytes */
    FAULT_HUGE_LENGTH,      /* `feedback_text` claiming 2^40 bytes, then nothing */
    FAULT_INT_EVENT_ID      /* `event_id` as an int: the body of schema 900 */
} fault_t;

static void put_v1_body(wbuf_t *w, const event_t *ev, fault_t fault) {
    if (fault == FAULT_INT_EVENT_ID)
        put_long(w, 42);
    else if (fault == FAULT_NEGATIVE_LENGTH)
        put_long(w, -3);
    else
        put_view(w, ev->event_id);
    if (fault == FAULT_NEGATIVE_LENGTH)
        return;
    put_view(w, ev->customer_id);
    put_long(w, ev->occurred_at);
    put_long(w, fault == FAULT_ENUM_INDEX ? 9 : (int64_t)ev->kind);
    put_long(w, (int64_t)ev->channel);
    put_long(w, (int64_t)ev->handled_by);
    if (fault == FAULT_UNION_BRANCH) {
        put_long(w, 5);
        put_byte(w, 1);
    } else {
        put_opt_bool(w, ev->resolved);
    }
    put_opt_float(w, ev->has_sentiment, ev->sentiment);
    put_opt_long(w, ev->has_csat, ev->csat);
    put_opt_long(w, ev->has_nps, ev->nps);
    put_opt_long(w, ev->has_handle_time, ev->handle_time_ms);
    if (fault == FAULT_HUGE_LENGTH) {
        put_long(w, 1);
        put_long(w, INT64_C(1) << 40);
        return;
    }
    put_opt_view(w, ev->feedback_text);
}

static void put_v2_body(wbuf_t *w, const event_t *ev, const encode_extra_t *extra) {
    put_view(w, ev->event_id);
    put_view(w, ev->customer_id);
    put_long(w, ev->occurred_at);
    put_long(w, (int64_t)ev->kind);
    put_long(w, (int64_t)ev->channel);
    put_long(w, (int64_t)ev->handled_by);
    put_tags(w, extra);
    put_opt_bool(w, ev->resolved);
    put_opt_float(w, ev->has_sentiment, ev->sentiment);
    put_opt_long(w, ev->has_csat, ev->csat);
    put_opt_long(w, ev->has_nps, ev->nps);
    put_opt_long(w, ev->has_handle_time, ev->handle_time_ms);
    put_opt_view(w, ev->feedback_text);
    put_opt_cstr(w, extra ? extra->agent_notes : NULL);
}

static void put_v3_body(wbuf_t *w, const event_t *ev) {
    put_view(w, ev->customer_id);
    put_long(w, ev->occurred_at);
    put_view(w, ev->event_id);
    put_long(w, (int64_t)ev->kind);
    put_long(w, (int64_t)ev->handled_by);
    put_opt_bool(w, ev->resolved);
    put_opt_long(w, ev->has_handle_time, ev->handle_time_ms);   /* an int: range checked by the caller */
    put_opt_float(w, ev->has_sentiment, ev->sentiment);
    put_opt_long(w, ev->has_csat, ev->csat);
    put_opt_view(w, ev->feedback_text);
}

/* Returns the length, or -1 when it did not fit. */
static int finish(const wbuf_t *w) {
    if (w->len > w->cap || w->len > (size_t)INT32_MAX)
        return -1;
    return (int)w->len;
}

int encode_event(const event_t *ev, encode_schema_t schema, const encode_extra_t *extra,
                 uint8_t *buf, size_t size) {
    wbuf_t w = {buf, 0, size};
    assert((unsigned)schema < ENCODE_SCHEMA_COUNT);
    put_frame(&w, encode_schema_id(schema));
    switch (schema) {
    case ENCODE_V1:
        put_v1_body(&w, ev, FAULT_NONE);
        break;
    case ENCODE_V2:
        put_v2_body(&w, ev, extra);
        break;
    case ENCODE_V3:
        if (ev->has_handle_time &&
            (ev->handle_time_ms < INT32_MIN || ev->handle_time_ms > INT32_MAX))
            return -1;
        put_v3_body(&w, ev);
        break;
    case ENCODE_SCHEMA_COUNT:
        return -1;
    }
    return finish(&w);
}

/* ---- malformed messages ---- */

enum {
    R_EMPTY = 0, R_TOO_LARGE, R_FRAMING, R_UNKNOWN, R_INCOMPATIBLE, R_DECODE, R_INVALID, R_KEY,
    R_FUTURE
};

static const unsigned variant_counts[ENCODE_MALFORMED_REASON_COUNT] = {2, 1, 3, 1, 1, 6, 12, 2, 1};

static int reason_index(const char *reason) {
    for (int i = 0; i < ENCODE_MALFORMED_REASON_COUNT; i++) {
        if (reason && strcmp(reason, encode_malformed_reasons[i]) == 0)
            return i;
    }
    return -1;
}

unsigned encode_malformed_variants(const char *reason) {
    int r = reason_index(reason);
    return r < 0 ? 0 : variant_counts[r];
}

/* Encodes ev as v1 (with an optional fault and schema id) at the start of
 * buf and points out->value at it. */
static int malformed_v1(const event_t *ev, uint32_t id, fault_t fault, uint8_t *buf, size_t size,
                        encode_msg_t *out, char *errstr, size_t errstr_size) {
    wbuf_t w = {buf, 0, size};
    put_frame(&w, id);
    put_v1_body(&w, ev, fault);
    int n = finish(&w);
    if (n < 0) {
        snprintf(errstr, errstr_size, "malformed message does not fit in %zu bytes", size);
        return -1;
    }
    out->value = buf;
    out->value_len = (size_t)n;
    return 0;
}

/* A string of n copies of c in the last n bytes of buf, for the oversize
 * fields of invalid_field.  The body is written from the start of buf and
 * is at most n + 1024 bytes, which ENCODE_MALFORMED_BUF_MIN leaves room for. */
static strview_t fill_tail(uint8_t *buf, size_t size, size_t n, char c) {
    assert(size >= 2 * n + 1024);
    memset(buf + size - n, c, n);
    return (strview_t){(const char *)buf + size - n, n};
}

static int malformed_invalid(unsigned v, event_t *ev, uint8_t *buf, size_t size,
                             encode_msg_t *out, char *errstr, size_t errstr_size) {
    static const char bad_utf8[] = "refund \xC3\x28 not received \xFF";
    switch (v) {
    case 0: ev->has_csat = true; ev->csat = 9; out->what = "csat 9"; break;
    case 1: ev->has_nps = true; ev->nps = 11; out->what = "nps 11"; break;
    case 2: ev->has_sentiment = true; ev->sentiment = 1.5f; out->what = "sentiment 1.5"; break;
    case 3: ev->has_sentiment = true; ev->sentiment = NAN; out->what = "sentiment NaN"; break;
    case 4: ev->customer_id = (strview_t){"", 0}; out->what = "empty customer_id"; break;
    case 5:
        ev->customer_id = fill_tail(buf, size, EVENT_CUSTOMER_ID_MAX + 1, 'c');
        out->what = "257-byte customer_id";
        break;
    case 6: ev->event_id = (strview_t){"", 0}; out->what = "empty event_id"; break;
    case 7:
        ev->event_id = fill_tail(buf, size, EVENT_EVENT_ID_MAX + 1, 'e');
        out->what = "129-byte event_id";
        break;
    case 8:
        ev->feedback_text = fill_tail(buf, size, EVENT_FEEDBACK_TEXT_MAX + 1, 'f');
        out->what = "8193-byte feedback_text";
        break;
    case 9:
        ev->feedback_text = (strview_t){bad_utf8, sizeof bad_utf8 - 1};
        out->what = "invalid UTF-8 in feedback_text";
        break;
    case 10: ev->occurred_at = -1; out->what = "occurred_at -1"; break;
    default:
        ev->has_handle_time = true;
        ev->handle_time_ms = -1;
        out->what = "handle_time_ms -1";
        break;
    }
    return malformed_v1(ev, ENCODE_SCHEMA_ID_V1, FAULT_NONE, buf, size, out, errstr, errstr_size);
}

static int malformed_decode(unsigned v, const event_t *ev, uint8_t *buf, size_t size,
                            encode_msg_t *out, char *errstr, size_t errstr_size) {
    static const fault_t faults[] = {FAULT_NONE, FAULT_NONE, FAULT_UNION_BRANCH,
                                     FAULT_ENUM_INDEX, FAULT_NEGATIVE_LENGTH, FAULT_HUGE_LENGTH};
    static const char *const whats[] = {
        "body cut short", "trailing bytes", "union branch 5 in resolved",
        "kind enum index 9", "negative event_id length", "feedback_text length 2^40"};
    if (malformed_v1(ev, ENCODE_SCHEMA_ID_V1, faults[v], buf, size, out, errstr, errstr_size) != 0)
        return -1;
    out->what = whats[v];
    if (v == 0) {
        /* Any proper prefix of a record's encoding is incomplete. */
        out->value_len = ENCODE_FRAME_BYTES + (out->value_len - ENCODE_FRAME_BYTES) / 2;
    } else if (v == 1) {
        buf[out->value_len++] = 0x02;
        buf[out->value_len++] = 0x00;
    }
    return 0;
}

int encode_malformed(const char *reason, unsigned variant, const event_t *base,
                     int64_t timestamp_ms, uint8_t *buf, size_t size, encode_msg_t *out,
                     char *errstr, size_t errstr_size) {
    int r = reason_index(reason);
    if (r < 0) {
        snprintf(errstr, errstr_size, "unknown dead-letter reason \"%s\"", reason ? reason : "");
        return -1;
    }
    if (size < ENCODE_MALFORMED_BUF_MIN) {
        snprintf(errstr, errstr_size, "buffer of %zu bytes is under ENCODE_MALFORMED_BUF_MIN", size);
        return -1;
    }
    unsigned v = variant % variant_counts[r];
    event_t ev = *base;
    *out = (encode_msg_t){
        .key = base->customer_id.ptr,
        .key_len = base->customer_id.len,
        .timestamp_ms = timestamp_ms,
    };
    switch (r) {
    case R_EMPTY:
        /* A null value with a valid key is a tombstone (SPEC §1.2), an
         * erasure request rather than bad input: the null variant has no
         * key, so that it stays a dead letter. */
        if (v == 0) {
            out->key = NULL;
            out->key_len = 0;
        }
        out->value = v == 0 ? NULL : buf;
        out->value_len = 0;
        out->what = v == 0 ? "null value without a key" : "zero-length value";
        return 0;
    case R_TOO_LARGE: {
        wbuf_t w = {buf, 0, size};
        put_frame(&w, ENCODE_SCHEMA_ID_V1);
        memset(buf + w.len, 'x', ENCODE_OVERSIZE_BYTES - w.len);
        out->value = buf;
        out->value_len = ENCODE_OVERSIZE_BYTES;
        out->what = "value over 65536 bytes";
        return 0;
    }
    case R_FRAMING:
        if (v == 0) {
            memset(buf, 0, 4);
            out->value = buf;
            out->value_len = 4;
            out->what = "4-byte value";
            return 0;
        }
        if (v == 1) {
            if (malformed_v1(&ev, ENCODE_SCHEMA_ID_V1, FAULT_NONE, buf, size, out, errstr,
                             errstr_size) != 0)
                return -1;
            buf[0] = 0x01;
            out->what = "magic byte 0x01";
            return 0;
        }
        {
            int n = snprintf((char *)buf, size,
                             "{\"event_id\":\"%.*s\",\"customer_id\":\"%.*s\","
                             "\"occurred_at\":%" PRId64 ",\"kind\":\"%s\"}",
                             (int)ev.event_id.len, ev.event_id.ptr, (int)ev.customer_id.len,
                             ev.customer_id.ptr, ev.occurred_at, event_kind_names[ev.kind]);
            if (n < 0 || (size_t)n >= size) {
                snprintf(errstr, errstr_size, "JSON text does not fit");
                return -1;
            }
            out->value = buf;
            out->value_len = (size_t)n;
            out->what = "JSON text instead of Avro";
            return 0;
        }
    case R_UNKNOWN:
        out->what = "schema id 999";
        return malformed_v1(&ev, ENCODE_SCHEMA_ID_UNKNOWN, FAULT_NONE, buf, size, out, errstr,
                            errstr_size);
    case R_INCOMPATIBLE:
        out->what = "schema id 900 (event_id an int)";
        return malformed_v1(&ev, ENCODE_SCHEMA_ID_INCOMPATIBLE, FAULT_INT_EVENT_ID, buf, size,
                            out, errstr, errstr_size);
    case R_DECODE:
        return malformed_decode(v, &ev, buf, size, out, errstr, errstr_size);
    case R_INVALID:
        return malformed_invalid(v, &ev, buf, size, out, errstr, errstr_size);
    case R_KEY:
        if (v == 0) {
            out->key = NULL;
            out->key_len = 0;
            out->what = "no key";
        } else {
            static const char other[] = "cust-999999", other2[] = "cust-999998";
            bool same = base->customer_id.len == sizeof other - 1 &&
                        memcmp(base->customer_id.ptr, other, sizeof other - 1) == 0;
            out->key = same ? other2 : other;
            out->key_len = sizeof other - 1;
            out->what = "key of another customer";
        }
        return malformed_v1(&ev, ENCODE_SCHEMA_ID_V1, FAULT_NONE, buf, size, out, errstr,
                            errstr_size);
    default:
        ev.occurred_at = timestamp_ms + 300000 + 3600000;
        out->what = "occurred_at an hour past the allowed skew";
        return malformed_v1(&ev, ENCODE_SCHEMA_ID_V1, FAULT_NONE, buf, size, out, errstr,
                            errstr_size);
    }
}
