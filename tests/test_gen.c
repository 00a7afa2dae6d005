/*
 * test_gen.c — gen/encode.c and gen/story.c.
 *
 * Encoded events are read back with avro-c's generic reader (not with the
 * project's decoder) under each writer schema; v2 also through avro-c's
 * resolver into the reader schema.  The malformed messages are checked by
 * a small Avro walker written here for the v1 layout, independent of both
 * the encoder and avro-c (whose reader would allocate what a bad length
 * claims).  The generator is checked for determinism, time order, the
 * billing-error story, and every message it makes.
 */
#include <avro.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen/encode.h"
#include "gen/story.h"
#include "scoring/window.h"

#define BUF_SIZE ENCODE_MALFORMED_BUF_MIN
#define DAY_MS INT64_C(86400000)

static strview_t sv(const char *s) { return (strview_t){s, s ? strlen(s) : 0}; }

/* ---- avro-c wrappers ---- */

typedef struct avro_doc {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    int read_rc;       /* avro_value_read's result */
    bool at_eof;       /* every byte of the body was used */
} avro_doc_t;

static avro_schema_t parse_schema(const char *json) {
    avro_schema_t s = NULL;
    cr_assert_eq(avro_schema_from_json_length(json, strlen(json), &s), 0, "schema: %s",
                 avro_strerror());
    return s;
}

/* Reads a body (after the frame) with the writer schema json. */
static void avro_doc_read(avro_doc_t *d, const char *json, const uint8_t *body, size_t len) {
    d->schema = parse_schema(json);
    d->iface = avro_generic_class_from_schema(d->schema);
    cr_assert_not_null(d->iface);
    cr_assert_eq(avro_generic_value_new(d->iface, &d->value), 0);
    avro_reader_t r = avro_reader_memory((const char *)body, (int64_t)len);
    d->read_rc = avro_value_read(r, &d->value);
    char more;
    d->at_eof = avro_read(r, &more, 1) != 0;   /* (avro_reader_is_eof is for files only) */
    avro_reader_free(r);
}

static void avro_doc_free(avro_doc_t *d) {
    avro_value_decref(&d->value);
    avro_value_iface_decref(d->iface);
    avro_schema_decref(d->schema);
}

static bool has_field(const avro_value_t *rec, const char *name) {
    avro_value_t f;
    return avro_value_get_by_name(rec, name, &f, NULL) == 0;
}

static avro_value_t field(const avro_value_t *rec, const char *name) {
    avro_value_t f;
    cr_assert_eq(avro_value_get_by_name(rec, name, &f, NULL), 0, "no field %s", name);
    return f;
}

static void expect_string(const avro_value_t *v, strview_t want, const char *name) {
    const char *p;
    size_t n;
    cr_assert_eq(avro_value_get_string(v, &p, &n), 0, "%s not a string", name);
    cr_assert_eq(n - 1, want.len, "%s length %zu, want %zu", name, n - 1, want.len);
    cr_assert(memcmp(p, want.ptr, want.len) == 0, "%s differs", name);
}

/* For ["null", T]: returns the branch (0 null, 1 value) and the value. */
static int union_branch(const avro_value_t *u, avro_value_t *branch) {
    int disc;
    cr_assert_eq(avro_value_get_discriminant(u, &disc), 0);
    cr_assert_eq(avro_value_get_current_branch(u, branch), 0);
    return disc;
}

static int64_t get_long(const avro_value_t *v) {
    int64_t l;
    cr_assert_eq(avro_value_get_long(v, &l), 0);
    return l;
}

static int32_t get_int(const avro_value_t *v) {
    int32_t i;
    cr_assert_eq(avro_value_get_int(v, &i), 0);
    return i;
}

static int get_enum(const avro_value_t *v) {
    int e;
    cr_assert_eq(avro_value_get_enum(v, &e), 0);
    return e;
}

/* Checks a record read under writer schema s against the event encoded;
 * with check_extra, v2's tags and agent_notes against extra (NULL: none). */
static void expect_event(const avro_value_t *rec, encode_schema_t s, const event_t *ev,
                         const encode_extra_t *extra, bool check_extra) {
    avro_value_t f = field(rec, "event_id"), b;
    expect_string(&f, ev->event_id, "event_id");
    f = field(rec, "customer_id");
    expect_string(&f, ev->customer_id, "customer_id");
    f = field(rec, "occurred_at");
    cr_assert_eq(get_long(&f), ev->occurred_at);
    f = field(rec, "kind");
    cr_assert_eq(get_enum(&f), (int)ev->kind);
    f = field(rec, "handled_by");
    cr_assert_eq(get_enum(&f), (int)ev->handled_by);
    if (s == ENCODE_V3) {
        cr_assert(!has_field(rec, "channel") && !has_field(rec, "nps"));
    } else {
        f = field(rec, "channel");
        cr_assert_eq(get_enum(&f), (int)ev->channel);
        f = field(rec, "nps");
        cr_assert_eq(union_branch(&f, &b), ev->has_nps ? 1 : 0);
        if (ev->has_nps)
            cr_assert_eq(get_int(&b), ev->nps);
    }
    f = field(rec, "resolved");
    cr_assert_eq(union_branch(&f, &b), ev->resolved == TRI_NULL ? 0 : 1);
    if (ev->resolved != TRI_NULL) {
        int v;
        cr_assert_eq(avro_value_get_boolean(&b, &v), 0);
        cr_assert_eq(v != 0, ev->resolved == TRI_TRUE);
    }
    f = field(rec, "sentiment");
    cr_assert_eq(union_branch(&f, &b), ev->has_sentiment ? 1 : 0);
    if (ev->has_sentiment) {
        float x;
        cr_assert_eq(avro_value_get_float(&b, &x), 0);
        cr_assert(memcmp(&x, &ev->sentiment, sizeof x) == 0, "sentiment %g != %g", x,
                  ev->sentiment);
    }
    f = field(rec, "csat");
    cr_assert_eq(union_branch(&f, &b), ev->has_csat ? 1 : 0);
    if (ev->has_csat)
        cr_assert_eq(get_int(&b), ev->csat);
    f = field(rec, "handle_time_ms");
    cr_assert_eq(union_branch(&f, &b), ev->has_handle_time ? 1 : 0);
    if (ev->has_handle_time)
        cr_assert_eq(s == ENCODE_V3 ? get_int(&b) : get_long(&b), ev->handle_time_ms);
    f = field(rec, "feedback_text");
    cr_assert_eq(union_branch(&f, &b), ev->feedback_text.ptr ? 1 : 0);
    if (ev->feedback_text.ptr)
        expect_string(&b, ev->feedback_text, "feedback_text");
    if (s != ENCODE_V2 || !check_extra)
        return;
    size_t n_tags = extra ? extra->n_tags : 0, size;
    f = field(rec, "tags");
    cr_assert_eq(avro_value_get_size(&f, &size), 0);
    cr_assert_eq(size, n_tags);
    for (size_t i = 0; i < n_tags; i++) {
        avro_value_t t;
        cr_assert_eq(avro_value_get_by_index(&f, i, &t, NULL), 0);
        expect_string(&t, sv(extra->tags[i]), "tag");
    }
    const char *notes = extra ? extra->agent_notes : NULL;
    f = field(rec, "agent_notes");
    cr_assert_eq(union_branch(&f, &b), notes ? 1 : 0);
    if (notes)
        expect_string(&b, sv(notes), "agent_notes");
}

static uint32_t frame_id(const uint8_t *v) {
    return (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
}

/* Reads an encoded, framed message under its schema and checks it. */
static void expect_roundtrip(const uint8_t *buf, int len, encode_schema_t s, const event_t *ev,
                             const encode_extra_t *extra, bool check_extra) {
    cr_assert_gt(len, ENCODE_FRAME_BYTES);
    cr_assert_eq(buf[0], 0x00);
    cr_assert_eq(frame_id(buf), encode_schema_id(s));
    avro_doc_t d;
    avro_doc_read(&d, encode_schema_json(s), buf + ENCODE_FRAME_BYTES,
                  (size_t)len - ENCODE_FRAME_BYTES);
    cr_assert_eq(d.read_rc, 0, "avro-c read under %s: %s", encode_schema_names[s],
                 avro_strerror());
    cr_assert(d.at_eof, "bytes left after the record under %s", encode_schema_names[s]);
    expect_event(&d.value, s, ev, extra, check_extra);
    avro_doc_free(&d);
}

/* ---- events for the tables ---- */

static char long_text[EVENT_FEEDBACK_TEXT_MAX + 1];

static event_t full_event(void) {
    return (event_t){
        .event_id = sv("3f0c2a9e-1b7d-4c1e-9a55-0d6f2e7b8c41"),
        .customer_id = sv("cust-000042"),
        .occurred_at = INT64_C(1767225600123),
        .kind = KIND_CONTACT,
        .channel = CHANNEL_VOICE,
        .handled_by = HANDLER_HYBRID,
        .resolved = TRI_TRUE,
        .has_sentiment = true, .sentiment = -0.7f,
        .has_csat = true, .csat = 5,
        .has_nps = true, .nps = 10,
        .has_handle_time = true, .handle_time_ms = 540000,
        .feedback_text = sv("Danke schön — the agent fixed it. \xF0\x9F\x91\x8D"),
    };
}

static event_t null_event(void) {
    return (event_t){
        .event_id = sv("e"),
        .customer_id = sv("c"),
        .occurred_at = 0,
        .kind = KIND_CANCELLATION,
        .channel = CHANNEL_OTHER,
        .handled_by = HANDLER_NONE,
        .resolved = TRI_NULL,
    };
}

static event_t extreme_event(void) {
    memset(long_text, 'z', sizeof long_text - 1);
    return (event_t){
        .event_id = sv("evt-extreme"),
        .customer_id = sv("cust-999999"),
        .occurred_at = INT64_MAX,
        .kind = KIND_PURCHASE,
        .channel = CHANNEL_APP,
        .handled_by = HANDLER_AI,
        .resolved = TRI_FALSE,
        .has_sentiment = true, .sentiment = -1.0f,
        .has_csat = true, .csat = INT32_MIN,
        .has_nps = true, .nps = INT32_MAX,
        .has_handle_time = true, .handle_time_ms = INT32_MAX,
        .feedback_text = {long_text, sizeof long_text - 1},
    };
}

static event_t (*const event_makers[])(void) = {full_event, null_event, extreme_event};
#define N_EVENTS (sizeof event_makers / sizeof event_makers[0])

Test(encode, roundtrip_through_avro_c_for_each_writer_schema) {
    static const char *const tags[] = {"billing", "chat", ""};
    static const encode_extra_t extras[] = {
        {NULL, 0, NULL, false},
        {tags, 3, "Escalated from the bot.", false},
        {tags, 3, NULL, true},
        {tags, 1, "", true},
    };
    uint8_t *buf = malloc(BUF_SIZE);
    for (size_t e = 0; e < N_EVENTS; e++) {
        event_t ev = event_makers[e]();
        for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++) {
            for (size_t x = 0; x < sizeof extras / sizeof extras[0]; x++) {
                int len = encode_event(&ev, (encode_schema_t)s, &extras[x], buf, BUF_SIZE);
                expect_roundtrip(buf, len, (encode_schema_t)s, &ev, &extras[x], true);
            }
            int len = encode_event(&ev, (encode_schema_t)s, NULL, buf, BUF_SIZE);
            expect_roundtrip(buf, len, (encode_schema_t)s, &ev, NULL, true);
        }
    }
    free(buf);
}

/* avro-c's resolver cannot fill reader defaults (SPEC §1), so it can
 * resolve v1 and v2 but not v3; it must refuse 900. */
Test(encode, v2_resolves_to_the_reader_schema_through_avro_c) {
    static const char *const tags[] = {"order", "app"};
    encode_extra_t extra = {tags, 2, "notes", true};
    uint8_t *buf = malloc(BUF_SIZE);
    event_t ev = full_event();
    int len = encode_event(&ev, ENCODE_V2, &extra, buf, BUF_SIZE);
    avro_schema_t reader = parse_schema(encode_schema_json(ENCODE_V1));
    avro_schema_t writer = parse_schema(encode_schema_json(ENCODE_V2));
    avro_value_iface_t *rw = avro_resolved_writer_new(writer, reader);
    cr_assert_not_null(rw, "%s", avro_strerror());
    avro_value_iface_t *ri = avro_generic_class_from_schema(reader);
    avro_value_t rv, wv;
    cr_assert_eq(avro_generic_value_new(ri, &rv), 0);
    cr_assert_eq(avro_resolved_writer_new_value(rw, &wv), 0);
    avro_resolved_writer_set_dest(&wv, &rv);
    avro_reader_t r = avro_reader_memory((const char *)buf + 5, len - 5);
    cr_assert_eq(avro_value_read(r, &wv), 0, "%s", avro_strerror());
    char more;
    cr_assert_neq(avro_read(r, &more, 1), 0, "bytes left after the record");
    expect_event(&rv, ENCODE_V1, &ev, NULL, true);
    cr_assert(!has_field(&rv, "tags") && !has_field(&rv, "agent_notes"));
    avro_reader_free(r);
    avro_value_decref(&wv);
    avro_value_decref(&rv);
    avro_value_iface_decref(ri);
    avro_value_iface_decref(rw);
    avro_schema_decref(writer);
    avro_schema_decref(reader);
    free(buf);
}

Test(encode, schema_texts) {
    /* v1 is the reader schema of the repository. */
    FILE *f = fopen("schemas/interaction_event.avsc", "r");
    cr_assert_not_null(f, "run from the repository root");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    avro_schema_t file = parse_schema(text), v1 = parse_schema(encode_schema_json(ENCODE_V1));
    cr_assert(avro_schema_equal(file, v1));
    for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++) {
        avro_schema_t w = parse_schema(encode_schema_json((encode_schema_t)s));
        avro_value_iface_t *it = avro_resolved_writer_new(w, v1);
        cr_assert_eq(it != NULL, s != ENCODE_V3, "%s: %s", encode_schema_names[s],
                     avro_strerror());
        if (it)
            avro_value_iface_decref(it);
        avro_schema_decref(w);
    }
    avro_schema_t bad = parse_schema(encode_incompatible_schema_json);
    cr_assert_null(avro_resolved_writer_new(bad, v1), "schema 900 must not resolve");
    avro_schema_decref(bad);
    avro_schema_decref(file);
    avro_schema_decref(v1);
}

Test(encode, write_schemas_installs_1_2_3_900_and_not_999) {
    char dir[] = "/tmp/rapport-test-gen-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char sub[128], err[256];
    snprintf(sub, sizeof sub, "%s/schemas", dir);
    cr_assert_eq(encode_write_schemas(sub, err, sizeof err), 0, "%s", err);
    cr_assert_eq(encode_write_schemas(sub, err, sizeof err), 0, "rewrite: %s", err);
    static const uint32_t ids[] = {1, 2, 3, 900};
    for (size_t i = 0; i < 4; i++) {
        char path[256], text[8192];
        snprintf(path, sizeof path, "%s/%" PRIu32 ".avsc", sub, ids[i]);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "%s", path);
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        const char *want = i < 3 ? encode_schema_json((encode_schema_t)i)
                                 : encode_incompatible_schema_json;
        cr_assert_str_eq(text, want);
        unlink(path);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/999.avsc", sub);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(rmdir(sub), 0, "only the four schema files were written");
    rmdir(dir);
    cr_assert_eq(encode_write_schemas("/nonexistent-dir/x", err, sizeof err), -1);
    cr_assert(strstr(err, "/nonexistent-dir/x") != NULL, "%s", err);
}

/* Every size short of the encoding fails, writing nothing past it. */
Test(encode, short_buffers_fail_without_writing_past_them) {
    static const char *const tags[] = {"a", "bb"};
    encode_extra_t extra = {tags, 2, "n", true};
    uint8_t *buf = malloc(BUF_SIZE);
    event_t ev = full_event();
    for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++) {
        int len = encode_event(&ev, (encode_schema_t)s, &extra, buf, BUF_SIZE);
        cr_assert_gt(len, 0);
        for (int size = 0; size < len; size++) {
            memset(buf, 0xAA, (size_t)len + 16);
            cr_assert_eq(encode_event(&ev, (encode_schema_t)s, &extra, buf, (size_t)size), -1);
            for (int i = size; i < len + 16; i++)
                cr_assert_eq(buf[i], 0xAA, "%s: byte %d written with size %d",
                             encode_schema_names[s], i, size);
        }
        cr_assert_eq(encode_event(&ev, (encode_schema_t)s, &extra, buf, (size_t)len), len);
    }
    cr_assert_eq(encode_event(&ev, ENCODE_V1, NULL, NULL, 0), -1);
    free(buf);
}

Test(encode, v3_refuses_a_handle_time_beyond_int) {
    uint8_t buf[512];
    event_t ev = full_event();
    ev.handle_time_ms = (int64_t)INT32_MAX + 1;
    cr_assert_eq(encode_event(&ev, ENCODE_V3, NULL, buf, sizeof buf), -1);
    cr_assert_gt(encode_event(&ev, ENCODE_V1, NULL, buf, sizeof buf), 0);
}

/* Varints by the Avro specification's examples. */
Test(encode, zigzag_varints) {
    static const struct { int64_t v; uint8_t bytes[10]; size_t n; } cases[] = {
        {0, {0x00}, 1}, {-1, {0x01}, 1}, {1, {0x02}, 1}, {-2, {0x03}, 1},
        {-64, {0x7f}, 1}, {64, {0x80, 0x01}, 2},
        {INT64_MAX, {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
        {INT64_MIN, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
    };
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        event_t ev = null_event();
        ev.occurred_at = cases[i].v;
        int len = encode_event(&ev, ENCODE_V1, NULL, buf, sizeof buf);
        /* frame, "e" (2 bytes), "c" (2 bytes), then occurred_at */
        cr_assert_eq(len, (int)(5 + 4 + cases[i].n + 3 + 6 * 1));
        cr_assert(memcmp(buf + 9, cases[i].bytes, cases[i].n) == 0, "varint of %" PRId64,
                  cases[i].v);
    }
}

/* ---- an independent walker for v1 bodies ---- */

typedef enum { WALK_OK = 0, WALK_TRUNCATED, WALK_TRAILING, WALK_BAD_UNION, WALK_BAD_ENUM, WALK_BAD_LENGTH } walk_t;

typedef struct walker {
    const uint8_t *p, *end;
    walk_t err;
} walker_t;

static int64_t w_long(walker_t *w) {
    uint64_t u = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) {
            w->err = WALK_TRUNCATED;
            return 0;
        }
        uint8_t b = *w->p++;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    }
    w->err = WALK_BAD_LENGTH;
    return 0;
}

static void w_skip(walker_t *w, int64_t n) {
    if (w->err)
        return;
    if (n < 0) {
        w->err = WALK_BAD_LENGTH;
        return;
    }
    if (n > w->end - w->p) {
        w->err = WALK_TRUNCATED;
        return;
    }
    w->p += n;
}

static void w_string(walker_t *w) {
    int64_t n = w_long(w);
    w_skip(w, n);
}

static void w_enum(walker_t *w, int64_t count) {
    int64_t i = w_long(w);
    if (!w->err && (i < 0 || i >= count))
        w->err = WALK_BAD_ENUM;
}

/* kind: 'b' boolean, 'f' float, 'l' long, 's' string */
static void w_opt(walker_t *w, char kind) {
    int64_t branch = w_long(w);
    if (w->err)
        return;
    if (branch < 0 || branch > 1) {
        w->err = WALK_BAD_UNION;
        return;
    }
    if (branch == 0)
        return;
    switch (kind) {
    case 'b': w_skip(w, 1); break;
    case 'f': w_skip(w, 4); break;
    case 'l': w_long(w); break;
    default: w_string(w); break;
    }
}

static walk_t walk_v1(const uint8_t *body, size_t len) {
    walker_t w = {body, body + len, WALK_OK};
    w_string(&w);
    w_string(&w);
    w_long(&w);
    w_enum(&w, EVENT_KIND_COUNT);
    w_enum(&w, EVENT_CHANNEL_COUNT);
    w_enum(&w, EVENT_HANDLER_COUNT);
    w_opt(&w, 'b');
    w_opt(&w, 'f');
    w_opt(&w, 'l');
    w_opt(&w, 'l');
    w_opt(&w, 'l');
    w_opt(&w, 's');
    if (w.err)
        return w.err;
    return w.p == w.end ? WALK_OK : WALK_TRAILING;
}

Test(encode, walker_agrees_with_the_encoder_on_valid_bodies) {
    uint8_t *buf = malloc(BUF_SIZE);
    for (size_t e = 0; e < N_EVENTS; e++) {
        event_t ev = event_makers[e]();
        int len = encode_event(&ev, ENCODE_V1, NULL, buf, BUF_SIZE);
        cr_assert_eq(walk_v1(buf + 5, (size_t)len - 5), WALK_OK);
    }
    free(buf);
}

/* ---- malformed messages ---- */

static bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        int k = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
              : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (k < 0 || end - p <= k)
            return false;
        for (int i = 1; i <= k; i++)
            if ((p[i] & 0xC0) != 0x80)
                return false;
        p += k + 1;
    }
    return true;
}

/* True when a decoded v1 record breaks one of the SPEC's invalid_field
 * rules.  (A rough reading, enough to see the intended defect.) */
static bool breaks_a_field_rule(const avro_value_t *rec) {
    const char *p = NULL;
    size_t n = 0;
    avro_value_t f = field(rec, "customer_id"), b;
    cr_assert_eq(avro_value_get_string(&f, &p, &n), 0);
    if (n - 1 == 0 || n - 1 > EVENT_CUSTOMER_ID_MAX || !utf8_valid(p, n - 1))
        return true;
    f = field(rec, "event_id");
    cr_assert_eq(avro_value_get_string(&f, &p, &n), 0);
    if (n - 1 == 0 || n - 1 > EVENT_EVENT_ID_MAX || !utf8_valid(p, n - 1))
        return true;
    f = field(rec, "occurred_at");
    if (get_long(&f) < 0)
        return true;
    f = field(rec, "sentiment");
    if (union_branch(&f, &b) == 1) {
        float x = 0;
        cr_assert_eq(avro_value_get_float(&b, &x), 0);
        if (!isfinite(x) || x < -1 || x > 1)
            return true;
    }
    f = field(rec, "csat");
    if (union_branch(&f, &b) == 1 && (get_int(&b) < 1 || get_int(&b) > 5))
        return true;
    f = field(rec, "nps");
    if (union_branch(&f, &b) == 1 && (get_int(&b) < 0 || get_int(&b) > 10))
        return true;
    f = field(rec, "handle_time_ms");
    if (union_branch(&f, &b) == 1 && get_long(&b) < 0)
        return true;
    f = field(rec, "feedback_text");
    if (union_branch(&f, &b) == 1) {
        cr_assert_eq(avro_value_get_string(&b, &p, &n), 0);
        if (n - 1 > EVENT_FEEDBACK_TEXT_MAX || !utf8_valid(p, n - 1))
            return true;
    }
    return false;
}

/* Checks that m fails with `reason` and with no check before it: the
 * SPEC §1.1 table, read by hand, for a consumer with ids 1, 2, 3, 900. */
static void expect_dead_letter(const char *reason, const encode_msg_t *m, const event_t *base) {
    const uint8_t *v = m->value;
    const char *what = m->what;
    cr_assert_not_null(what);
    if (strcmp(reason, "empty_message") == 0) {
        cr_assert_eq(m->value_len, 0, "%s", what);
        /* A null value with a key would be a tombstone (SPEC §1.2). */
        if (!v)
            cr_assert_null(m->key, "%s: a null value with a key is a tombstone", what);
        return;
    }
    cr_assert(v && m->value_len > 0, "%s: empty", what);
    if (strcmp(reason, "message_too_large") == 0) {
        cr_assert_gt(m->value_len, 65536, "%s", what);
        return;
    }
    cr_assert_leq(m->value_len, 65536, "%s: too large", what);
    if (strcmp(reason, "bad_framing") == 0) {
        cr_assert(m->value_len < 5 || v[0] != 0x00, "%s", what);
        return;
    }
    cr_assert(m->value_len >= 5 && v[0] == 0x00, "%s: framing", what);
    uint32_t id = frame_id(v);
    if (strcmp(reason, "unknown_schema") == 0) {
        cr_assert_eq(id, ENCODE_SCHEMA_ID_UNKNOWN, "%s", what);
        cr_assert_eq(walk_v1(v + 5, m->value_len - 5), WALK_OK, "%s: body", what);
        return;
    }
    if (strcmp(reason, "incompatible_schema") == 0) {
        cr_assert_eq(id, ENCODE_SCHEMA_ID_INCOMPATIBLE, "%s", what);
        avro_doc_t d;
        avro_doc_read(&d, encode_incompatible_schema_json, v + 5, m->value_len - 5);
        cr_assert(d.read_rc == 0 && d.at_eof, "%s: body is not schema 900's", what);
        avro_doc_free(&d);
        return;
    }
    cr_assert_eq(id, ENCODE_SCHEMA_ID_V1, "%s: schema id %" PRIu32, what, id);
    walk_t wr = walk_v1(v + 5, m->value_len - 5);
    if (strcmp(reason, "decode_error") == 0) {
        cr_assert_neq(wr, WALK_OK, "%s decodes", what);
        return;
    }
    cr_assert_eq(wr, WALK_OK, "%s: body (%d)", what, (int)wr);
    avro_doc_t d;
    avro_doc_read(&d, encode_schema_json(ENCODE_V1), v + 5, m->value_len - 5);
    cr_assert(d.read_rc == 0 && d.at_eof, "%s: avro-c read", what);
    bool broken = breaks_a_field_rule(&d.value);
    avro_value_t f = field(&d.value, "customer_id");
    const char *cid = NULL;
    size_t cid_n = 0;
    cr_assert_eq(avro_value_get_string(&f, &cid, &cid_n), 0);
    bool key_ok = m->key && m->key_len == cid_n - 1 && memcmp(m->key, cid, cid_n - 1) == 0;
    f = field(&d.value, "occurred_at");
    int64_t at = get_long(&f);
    avro_doc_free(&d);
    if (strcmp(reason, "invalid_field") == 0) {
        cr_assert(broken, "%s: every field is valid", what);
        return;
    }
    cr_assert(!broken, "%s: a field is invalid", what);
    if (strcmp(reason, "key_mismatch") == 0) {
        cr_assert(!key_ok, "%s", what);
        return;
    }
    cr_assert(key_ok, "%s: key", what);
    cr_assert_str_eq(reason, "future_timestamp");
    cr_assert_gt(at, m->timestamp_ms + 300000, "%s", what);
    (void)base;
}

Test(encode, malformed_messages_fail_with_their_reason_and_no_earlier_one) {
    uint8_t *buf = malloc(BUF_SIZE);
    event_t base = full_event();
    char err[128];
    unsigned total = 0;
    for (int r = 0; r < ENCODE_MALFORMED_REASON_COUNT; r++) {
        const char *reason = encode_malformed_reasons[r];
        unsigned n = encode_malformed_variants(reason);
        cr_assert_gt(n, 0, "%s", reason);
        for (unsigned v = 0; v < n; v++) {
            encode_msg_t m;
            memset(buf, 0x5C, BUF_SIZE);
            cr_assert_eq(encode_malformed(reason, v, &base, base.occurred_at + 10, buf,
                                          BUF_SIZE, &m, err, sizeof err), 0, "%s", err);
            expect_dead_letter(reason, &m, &base);
            total++;
        }
    }
    cr_assert_eq(total, 29);
    free(buf);
}

/* The variants that gen/encode.h lists for each reason, byte for byte. */
Test(encode, malformed_specific_variants) {
    uint8_t *buf = malloc(BUF_SIZE);
    event_t base = full_event();
    char err[128];
    encode_msg_t m;
    cr_assert_eq(encode_malformed("empty_message", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_null(m.value);
    cr_assert_null(m.key, "not a tombstone (SPEC §1.2)");
    cr_assert_eq(encode_malformed("empty_message", 1, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert(m.value != NULL && m.value_len == 0);
    cr_assert_eq(encode_malformed("bad_framing", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_lt(m.value_len, 5);
    cr_assert_eq(encode_malformed("bad_framing", 1, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_eq(((const uint8_t *)m.value)[0], 0x01);
    cr_assert_eq(encode_malformed("bad_framing", 2, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_eq(((const char *)m.value)[0], '{');
    cr_assert_eq(encode_malformed("message_too_large", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_eq(m.value_len, ENCODE_OVERSIZE_BYTES);
    cr_assert_eq(encode_malformed("invalid_field", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_str_eq(m.what, "csat 9");
    cr_assert_eq(encode_malformed("key_mismatch", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_null(m.key);
    cr_assert_eq(encode_malformed("decode_error", 5, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_lt(m.value_len, 128, "a 2^40-byte claim in a short message");
    /* variant numbers wrap */
    cr_assert_eq(encode_malformed("key_mismatch", 2, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), 0);
    cr_assert_null(m.key);
    /* errors */
    cr_assert_eq(encode_malformed_variants("nonsense"), 0);
    cr_assert_eq(encode_malformed("nonsense", 0, &base, 1, buf, BUF_SIZE, &m, err, sizeof err), -1);
    cr_assert(strstr(err, "nonsense") != NULL);
    cr_assert_eq(encode_malformed("bad_framing", 0, &base, 1, buf, 1000, &m, err, sizeof err), -1);
    free(buf);
}

/* ---- the generator ---- */

static gen_t *new_gen(const gen_conf_t *c) {
    char err[256];
    gen_t *g = gen_new(c, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    return g;
}

static gen_conf_t mixed_conf(uint64_t seed) {
    gen_conf_t c;
    gen_conf_default(&c);
    c.seed = seed;
    c.customers = 500;
    c.late_ratio = 0.03;
    c.bad_ratio = 0.05;
    c.schemas = 7;
    return c;
}

static bool same_msg(const gen_msg_t *a, const gen_msg_t *b) {
    return a->key_len == b->key_len && (a->key == NULL) == (b->key == NULL) &&
           (!a->key || memcmp(a->key, b->key, a->key_len) == 0) &&
           a->value_len == b->value_len && (a->value == NULL) == (b->value == NULL) &&
           (!a->value || memcmp(a->value, b->value, a->value_len) == 0) &&
           a->timestamp_ms == b->timestamp_ms && a->kind == b->kind;
}

Test(gen, same_seed_same_bytes_other_seed_other_bytes) {
    gen_conf_t c1 = mixed_conf(7), c3 = mixed_conf(8);
    gen_t *a = new_gen(&c1), *b = new_gen(&c1), *o = new_gen(&c3);
    unsigned differ = 0;
    for (int i = 0; i < 10000; i++) {
        gen_msg_t ma, mb, mo;
        cr_assert_eq(gen_next(a, &ma), 0);
        cr_assert_eq(gen_next(b, &mb), 0);
        cr_assert_eq(gen_next(o, &mo), 0);
        cr_assert(same_msg(&ma, &mb), "message %d differs for the same seed", i);
        differ += !same_msg(&ma, &mo);
    }
    cr_assert_gt(differ, 9900, "only %u of 10000 messages differ across seeds", differ);
    cr_assert_eq(gen_clock(a), gen_clock(b));
    gen_free(a);
    gen_free(b);
    gen_free(o);
    gen_free(NULL);
}

/* Every message: VALID and LATE decode with avro-c to exactly msg->event
 * (v3's dropped fields included), MALFORMED ones fail as their reason
 * says; times are ordered as the header promises. */
Test(gen, every_message_is_what_it_says) {
    gen_conf_t c = mixed_conf(42);
    gen_t *g = new_gen(&c);
    int64_t last_valid = INT64_MIN, start = gen_clock(g);
    int64_t *last_of = calloc(c.customers, sizeof *last_of);
    unsigned kinds[3] = {0}, schemas[ENCODE_SCHEMA_COUNT] = {0}, reasons = 0;
    char seen_reason[ENCODE_MALFORMED_REASON_COUNT] = {0};
    for (int i = 0; i < 10000; i++) {
        gen_msg_t m;
        cr_assert_eq(gen_next(g, &m), 0);
        kinds[m.kind]++;
        cr_assert_not_null(m.event);
        if (m.kind == GEN_MSG_MALFORMED) {
            encode_msg_t em = {m.key, m.key_len, m.value, m.value_len, m.timestamp_ms, m.what};
            expect_dead_letter(m.reason, &em, m.event);
            for (int r = 0; r < ENCODE_MALFORMED_REASON_COUNT; r++)
                if (strcmp(m.reason, encode_malformed_reasons[r]) == 0 && !seen_reason[r]++)
                    reasons++;
            continue;
        }
        const event_t *ev = m.event;
        schemas[m.schema]++;
        expect_roundtrip(m.value, (int)m.value_len, m.schema, ev, NULL, false);
        if (m.schema == ENCODE_V3)
            cr_assert(ev->channel == CHANNEL_OTHER && !ev->has_nps);
        char cid[32];
        snprintf(cid, sizeof cid, GEN_CUSTOMER_ID_FMT, m.customer);
        cr_assert(m.key_len == strlen(cid) && memcmp(m.key, cid, m.key_len) == 0);
        cr_assert_eq(ev->event_id.len, 36);
        cr_assert_geq(m.timestamp_ms, gen_clock(g));
        if (m.kind == GEN_MSG_LATE) {
            cr_assert_leq(ev->occurred_at, gen_clock(g) - c.late_age_ms);
            continue;
        }
        cr_assert_eq(ev->occurred_at, gen_clock(g));
        cr_assert_lt(m.timestamp_ms, ev->occurred_at + 1000);
        cr_assert_geq(ev->occurred_at, last_valid, "valid events go back in time at %d", i);
        cr_assert_geq(ev->occurred_at, last_of[m.customer]);
        last_valid = last_of[m.customer] = ev->occurred_at;
    }
    cr_assert(kinds[GEN_MSG_VALID] > 9000 && kinds[GEN_MSG_LATE] > 200 &&
              kinds[GEN_MSG_MALFORMED] > 400, "valid %u late %u malformed %u",
              kinds[0], kinds[1], kinds[2]);
    cr_assert_eq(reasons, ENCODE_MALFORMED_REASON_COUNT);
    for (int s = 0; s < ENCODE_SCHEMA_COUNT; s++)
        cr_assert_gt(schemas[s], 1000, "%s used %u times", encode_schema_names[s], schemas[s]);
    cr_assert_gt(gen_clock(g) - start, 3 * DAY_MS, "several simulated days pass");
    free(last_of);
    gen_free(g);
}

Test(gen, billing_error_story_for_its_customer) {
    gen_conf_t c;
    gen_conf_default(&c);
    c.customers = 200;
    c.seed = 3;
    c.bad_ratio = 0.02;
    c.late_ratio = 0.02;
    c.schemas = 7;
    gen_t *g = new_gen(&c);
    uint32_t cust = UINT32_MAX;
    for (uint32_t i = 0; i < c.customers && cust == UINT32_MAX; i++)
        if (gen_customer_story(g, i) == GEN_STORY_BILLING_ERROR)
            cust = i;
    cr_assert_neq(cust, UINT32_MAX, "no billing_error customer among 200");

    static const struct {
        event_kind_t kind;
        event_handler_t by;
        tri_t resolved;
        float sentiment;     /* NAN: none */
        int nps;             /* -1: none */
        const char *text;    /* substring of feedback_text; NULL: none */
    } want[] = {
        {KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.3f, -1, "charged twice"},
        {KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.5f, -1, "charges"},
        {KIND_CONTACT, HANDLER_AI, TRI_FALSE, -0.7f, -1,
         "I was charged twice for my plan and the bot keeps sending me the same FAQ link"},
        {KIND_CONTACT, HANDLER_HUMAN, TRI_TRUE, 0.6f, -1, "refunded"},
        {KIND_FEEDBACK, HANDLER_NONE, TRI_NULL, 0.8f, 10, "hank"},
        {KIND_PURCHASE, HANDLER_NONE, TRI_NULL, NAN, -1, NULL},
    };
    size_t n = 0;
    int64_t last = 0;
    for (int i = 0; i < 200000 && n < 6; i++) {
        gen_msg_t m;
        cr_assert_eq(gen_next(g, &m), 0);
        if (m.kind != GEN_MSG_VALID || m.customer != cust)
            continue;
        const event_t *e = m.event;
        cr_assert_eq(m.story, GEN_STORY_BILLING_ERROR);
        cr_assert_eq(e->kind, want[n].kind, "step %zu", n);
        cr_assert_eq(e->handled_by, want[n].by, "step %zu", n);
        cr_assert_eq(e->resolved, want[n].resolved, "step %zu", n);
        cr_assert_eq(e->has_sentiment, !isnan(want[n].sentiment), "step %zu", n);
        if (e->has_sentiment)
            cr_assert_eq(e->sentiment, want[n].sentiment, "step %zu", n);
        if (want[n].nps >= 0)   /* the feedback is never sent as v3 */
            cr_assert(e->has_nps && e->nps == want[n].nps, "step %zu", n);
        if (m.schema != ENCODE_V3) {
            if (n < 3)
                cr_assert_eq(e->channel, CHANNEL_CHAT);
            if (n == 3)
                cr_assert_eq(e->channel, CHANNEL_VOICE);
        }
        if (want[n].text) {
            cr_assert_not_null(e->feedback_text.ptr, "step %zu", n);
            cr_assert(memmem(e->feedback_text.ptr, e->feedback_text.len, want[n].text,
                             strlen(want[n].text)) != NULL, "step %zu: %.*s", n,
                      (int)e->feedback_text.len, e->feedback_text.ptr);
        } else {
            cr_assert_null(e->feedback_text.ptr);
        }
        cr_assert_gt(e->occurred_at, last);
        last = e->occurred_at;
        n++;
    }
    cr_assert_eq(n, 6, "saw %zu of the story's 6 events", n);
    gen_free(g);
}

Test(gen, conf_out_of_range_is_refused) {
    static const struct {
        const char *word;        /* the error names it */
        uint32_t customers;
        int64_t start_ms, step_ms;
        double late_ratio, bad_ratio;
        unsigned schemas;
    } cases[] = {
        {"customers", 0, 0, 0, 0, 0, 1},
        {"customers", 10000001, 0, 0, 0, 0, 1},
        {"start_ms", 10, -1, 0, 0, 0, 1},
        {"step_ms", 10, 0, -5, 0, 0, 1},
        {"late_ratio", 10, 0, 0, NAN, 0, 1},
        {"late_ratio", 10, 0, 0, -0.1, 0, 1},
        {"bad_ratio", 10, 0, 0, 0, 1.5, 1},
        {"late_ratio + bad_ratio", 10, 0, 0, 0.6, 0.6, 1},
        {"schemas", 10, 0, 0, 0, 0, 0},
        {"schemas", 10, 0, 0, 0, 0, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gen_conf_t c;
        gen_conf_default(&c);
        c.customers = cases[i].customers;
        c.start_ms = cases[i].start_ms;
        c.step_ms = cases[i].step_ms;
        c.late_ratio = cases[i].late_ratio;
        c.bad_ratio = cases[i].bad_ratio;
        c.schemas = cases[i].schemas;
        char err[256] = "";
        cr_assert_null(gen_new(&c, err, sizeof err), "case %zu", i);
        cr_assert(strstr(err, cases[i].word) != NULL, "case %zu: %s", i, err);
    }
}

Test(gen, schemas_parse) {
    static const struct { const char *s; int rc; unsigned mask; } cases[] = {
        {"v1", 0, 1}, {"v2", 0, 2}, {"v3,v1", 0, 5}, {"v1,v2,v3", 0, 7}, {"v2,v2", 0, 2},
        {"", -1, 0}, {"v4", -1, 0}, {"v1,", -1, 0}, {",v1", -1, 0}, {"V1", -1, 0},
        {"v1 ,v2", -1, 0}, {"v12", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned mask = 99;
        cr_assert_eq(gen_schemas_parse(cases[i].s, &mask), cases[i].rc, "\"%s\"", cases[i].s);
        if (cases[i].rc == 0)
            cr_assert_eq(mask, cases[i].mask, "\"%s\"", cases[i].s);
    }
}

/* Stories as the header describes them, over many customers. */
Test(gen, stories_have_their_shape) {
    gen_conf_t c;
    gen_conf_default(&c);
    c.customers = 300;
    c.seed = 11;
    gen_t *g = new_gen(&c);
    unsigned per_story[GEN_STORY_COUNT] = {0};
    for (int i = 0; i < 20000; i++) {
        gen_msg_t m;
        cr_assert_eq(gen_next(g, &m), 0);
        const event_t *e = m.event;
        per_story[m.story]++;
        switch (m.story) {
        case GEN_STORY_SILENT_CHURN:
            cr_assert_null(e->feedback_text.ptr, "a silent churner speaks");
            cr_assert(e->kind != KIND_CONTACT || e->resolved == TRI_FALSE);
            break;
        case GEN_STORY_BOT_LOOP:
            cr_assert(e->kind == KIND_CONTACT && e->handled_by == HANDLER_AI &&
                      e->resolved == TRI_FALSE && e->has_sentiment && e->sentiment < 0);
            break;
        case GEN_STORY_HAPPY:
            cr_assert(e->kind != KIND_CONTACT || e->resolved == TRI_TRUE);
            cr_assert(e->kind != KIND_CANCELLATION);
            break;
        default:
            break;
        }
        if (e->has_sentiment)
            cr_assert(e->sentiment >= -1 && e->sentiment <= 1 &&
                      !(e->sentiment == 0 && signbit(e->sentiment)), "sentiment %g", e->sentiment);
        if (e->has_csat)
            cr_assert(e->csat >= 1 && e->csat <= 5);
        if (e->has_nps)
            cr_assert(e->nps >= 0 && e->nps <= 10);
    }
    for (int s = 0; s < GEN_STORY_COUNT; s++)
        cr_assert_gt(per_story[s], 400, "%s: %u events", gen_story_names[s], per_story[s]); /* >= 2 % */
    gen_free(g);
}

/* The mix a contact-centre leader should recognise (docs/DEMO.md), scored
 * by the real scorer (scoring/window.c, default parameters, one
 * partition) over 90 days of 3 000 customers: most contacts handled by AI
 * and resolved; people resolve more, and take longer; hybrid in between;
 * a few alerts per hundred customers a day; streaks that end.  Prints the
 * numbers docs/DEMO.md quotes. */
Test(gen, mix_is_believable, .timeout = 120) {
    gen_conf_t c;
    gen_conf_default(&c);
    c.customers = 3000;
    c.seed = 7;
    gen_t *g = new_gen(&c);
    score_params_t sp;
    score_params_default(&sp);
    char err[256];
    window_t *w = window_new(&sp, 0, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    const int64_t warmup = 14 * DAY_MS, end = 90 * DAY_MS;
    uint64_t events = 0, contacts = 0, by_h[EVENT_HANDLER_COUNT] = {0},
             res_h[EVENT_HANDLER_COUNT] = {0}, known_h[EVENT_HANDLER_COUNT] = {0},
             aht_h[EVENT_HANDLER_COUNT] = {0}, aht_n[EVENT_HANDLER_COUNT] = {0},
             with_sent = 0, with_csat = 0, with_nps = 0, alerts[ALERT_TYPE_COUNT] = {0},
             by_story[GEN_STORY_COUNT] = {0};
    uint8_t *needs_human = calloc(c.customers, 1);
    int64_t max_streak = 0;
    for (int64_t off = 0;; off++) {
        gen_msg_t m;
        cr_assert_eq(gen_next(g, &m), 0);
        int64_t t = m.event->occurred_at - c.start_ms;
        if (t >= end) break;
        window_add(w, m.event, off);
        size_t na;
        const alert_t *a = window_alerts(w, &na);
        window_customer_view_t v;
        if (window_get(w, m.event->customer_id, &v) && v.streak > max_streak) max_streak = v.streak;
        if (t >= warmup) {
            for (size_t i = 0; i < na; i++) {
                alerts[a[i].type]++;
                if (a[i].type == ALERT_NEEDS_HUMAN) needs_human[m.customer] = 1;
            }
            const event_t *e = m.event;
            events++;
            by_story[m.story]++;
            with_sent += e->has_sentiment;
            with_csat += e->has_csat;
            with_nps += e->has_nps;
            if (e->kind == KIND_CONTACT) {
                contacts++;
                by_h[e->handled_by]++;
                if (e->resolved != TRI_NULL) {
                    known_h[e->handled_by]++;
                    res_h[e->handled_by] += e->resolved == TRI_TRUE;
                }
                if (e->has_handle_time) {
                    aht_h[e->handled_by] += (uint64_t)e->handle_time_ms;
                    aht_n[e->handled_by]++;
                }
            }
        }
        window_commit(w);
    }
    double days = (double)(end - warmup) / (double)DAY_MS, per100 = days * c.customers / 100.0;
    size_t low = 0, at_risk = 0, n = 0;
    double ci_sum = 0;
    for (uint32_t i = 0; i < c.customers; i++) {
        char id[32];
        snprintf(id, sizeof(id), GEN_CUSTOMER_ID_FMT, i);
        window_customer_view_t v;
        if (!window_get(w, sv(id), &v)) continue;
        n++;
        ci_sum += v.ci;
        low += v.ci < 10;
        at_risk += v.at_risk;
    }
    size_t stuck = 0;
    for (uint32_t i = 0; i < c.customers; i++) stuck += needs_human[i];
    printf("mix over %.0f days (after %d days' warm-up), %u customers, seed %" PRIu64 ":\n", days,
           (int)(warmup / DAY_MS), c.customers, c.seed);
    printf("  events %" PRIu64 " (%.2f per customer and day), contacts %" PRIu64 "\n", events,
           (double)events / days / c.customers, contacts);
    printf("  with sentiment %.1f %%, csat %.1f %%, nps %.1f %% of events\n",
           100.0 * (double)with_sent / (double)events, 100.0 * (double)with_csat / (double)events,
           100.0 * (double)with_nps / (double)events);
    for (int s = 0; s < GEN_STORY_COUNT; s++)
        printf("  story %-14s %5.1f %% of events\n", gen_story_names[s],
               100.0 * (double)by_story[s] / (double)events);
    for (int h = 0; h < EVENT_HANDLER_COUNT; h++)
        printf("  %-6s %5.1f %% of contacts, resolved %5.1f %%, mean handle %5.1f min\n",
               event_handler_names[h], 100.0 * (double)by_h[h] / (double)contacts,
               known_h[h] ? 100.0 * (double)res_h[h] / (double)known_h[h] : 0.0,
               aht_n[h] ? (double)aht_h[h] / (double)aht_n[h] / 60000.0 : 0.0);
    for (int t = 0; t < ALERT_TYPE_COUNT; t++)
        printf("  %-11s %.2f per 100 customers a day (%" PRIu64 ", 1 per %.0f events)\n",
               alert_type_names[t], (double)alerts[t] / per100, alerts[t],
               alerts[t] ? (double)events / (double)alerts[t] : 0.0);
    printf("  customers with a needs_human in %.0f days: %.1f %%\n", days,
           100.0 * (double)stuck / c.customers);
    printf("  at the end: %zu customers tracked, mean ci %.1f, at risk %.1f %%, ci under 10: "
           "%zu; longest AI-failure streak %" PRId64 "\n",
           n, ci_sum / (double)n, 100.0 * (double)at_risk / (double)n, low, max_streak);

    double ai = (double)by_h[HANDLER_AI] / (double)contacts;
    double rr[EVENT_HANDLER_COUNT], aht[EVENT_HANDLER_COUNT];
    for (int h = 0; h < EVENT_HANDLER_COUNT; h++) {
        rr[h] = known_h[h] ? (double)res_h[h] / (double)known_h[h] : 0;
        aht[h] = aht_n[h] ? (double)aht_h[h] / (double)aht_n[h] : 0;
    }
    cr_expect(ai > 0.5 && ai < 0.8, "AI handles most contacts: %.2f", ai);
    cr_expect_gt(rr[HANDLER_HUMAN], rr[HANDLER_HYBRID], "people resolve more than hybrid");
    cr_expect_gt(rr[HANDLER_HYBRID], rr[HANDLER_AI], "hybrid resolves more than AI");
    cr_expect_gt(aht[HANDLER_HUMAN], aht[HANDLER_HYBRID], "people take longer than hybrid");
    cr_expect_gt(aht[HANDLER_HYBRID], aht[HANDLER_AI], "hybrid takes longer than AI");
    for (int t = 0; t < ALERT_TYPE_COUNT; t++) {
        double r = (double)alerts[t] / per100;
        cr_expect(r > 0.2 && r < 8, "%s: %.2f per 100 customers a day", alert_type_names[t], r);
    }
    double stuck_share = (double)stuck / c.customers;
    cr_expect(stuck_share > 0.05 && stuck_share < 0.5, "needs_human reached %.2f of customers",
              stuck_share);
    cr_expect_leq(max_streak, 12, "streaks end");
    cr_expect_lt((double)low / (double)n, 0.03, "few customers near 0: %zu", low);
    free(needs_human);
    window_free(w);
    gen_free(g);
}
