/*
 * schema_plan.c — writer schema → flat resolution plan → event_t.
 *
 * Design.  avro-c parses the writer schema and is used only to walk it; its
 * value readers never see message bytes (SPEC §1: they allocate whatever a
 * string claims and cannot tell trailing bytes from the end).  Compiling
 * matches each writer field by name to the reader's table below and emits
 * one step per writer field:
 *
 *   - a reader field: an op naming the wire type and the conversion
 *     (int→long, long→float, bytes→string…), plus the offset in event_t to
 *     store into and, for nullable fields, the offset of the has_ flag;
 *   - a writer enum: a map from writer symbol index to reader index (-1 when
 *     the reader lacks the symbol, an error only when a message uses it);
 *   - a writer union: one such step per branch; branches that resolve to
 *     nothing become FAIL steps, an error only when a message selects them;
 *     the usual union of null and one type is fused into that type's step,
 *     marked optional (fuse_optional);
 *   - a field the reader lacks: a SKIP step into a small tree of skip nodes
 *     (records, arrays, maps, unions, fixed, recursive named types through
 *     a memo), skipped with bounds checks and a depth limit.
 *
 * Reader fields the writer lacks keep the reader default, which is where
 * decoding starts (reader_defaults).  Decoding is one switch per writer
 * field and a few more for union branches: no string compares, no
 * allocation, nothing proportional to a claimed length.  Every varint is at
 * most 10 bytes, every length and count is checked against the bytes left,
 * and an array block of items that occupy at least one byte each cannot
 * claim more items than bytes left, so the work is bounded by the body size
 * times SCHEMA_PLAN_MAX_DEPTH.
 *
 * Owns: the writer schema reference (field and symbol names in the plan
 * point into it), the steps, enum maps, FAIL texts and skip nodes.
 * Thread: whichever thread owns the decoder; plans are read-only after
 * schema_plan_new().
 */
#include "consumer/schema_plan.h"

#include <avro.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* How deep compiling may recurse into a schema (the JSON parser allows
 * more; no real schema comes close). */
#define COMPILE_MAX_DEPTH 200

/* ---- the reader schema, as a table ---- */

typedef enum { RT_STRING, RT_LONG, RT_INT, RT_FLOAT, RT_BOOLEAN, RT_ENUM } reader_type_t;

#define NO_HAS UINT16_MAX

typedef struct reader_field {
    const char *name;
    reader_type_t type;
    bool nullable;              /* ["null", X] with default null */
    bool required;              /* no default */
    uint16_t off;               /* where the value goes in event_t */
    uint16_t has_off;           /* the bool has_ flag, or NO_HAS */
    const char *enum_name;      /* RT_ENUM: unqualified name and symbols */
    const char *const *symbols;
    int nsymbols;
} reader_field_t;

/* Same order and content as decode_reader_schema_json; tests/test_decode.c
 * round-trips every field and symbol through that schema as a writer. */
static const reader_field_t reader_fields[] = {
    {"event_id", RT_STRING, false, true, offsetof(event_t, event_id), NO_HAS, NULL, NULL, 0},
    {"customer_id", RT_STRING, false, true, offsetof(event_t, customer_id), NO_HAS, NULL, NULL, 0},
    {"occurred_at", RT_LONG, false, true, offsetof(event_t, occurred_at), NO_HAS, NULL, NULL, 0},
    {"kind", RT_ENUM, false, true, offsetof(event_t, kind), NO_HAS, "Kind", event_kind_names,
     EVENT_KIND_COUNT},
    {"channel", RT_ENUM, false, false, offsetof(event_t, channel), NO_HAS, "Channel",
     event_channel_names, EVENT_CHANNEL_COUNT},
    {"handled_by", RT_ENUM, false, false, offsetof(event_t, handled_by), NO_HAS, "Handler",
     event_handler_names, EVENT_HANDLER_COUNT},
    {"resolved", RT_BOOLEAN, true, false, offsetof(event_t, resolved), NO_HAS, NULL, NULL, 0},
    {"sentiment", RT_FLOAT, true, false, offsetof(event_t, sentiment),
     offsetof(event_t, has_sentiment), NULL, NULL, 0},
    {"csat", RT_INT, true, false, offsetof(event_t, csat), offsetof(event_t, has_csat), NULL, NULL,
     0},
    {"nps", RT_INT, true, false, offsetof(event_t, nps), offsetof(event_t, has_nps), NULL, NULL, 0},
    {"handle_time_ms", RT_LONG, true, false, offsetof(event_t, handle_time_ms),
     offsetof(event_t, has_handle_time), NULL, NULL, 0},
    {"feedback_text", RT_STRING, true, false, offsetof(event_t, feedback_text), NO_HAS, NULL, NULL,
     0},
};
#define READER_FIELD_COUNT (sizeof reader_fields / sizeof reader_fields[0])

/* Enum and tri-state fields are stored as int through their offsets. */
_Static_assert(sizeof(event_kind_t) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(event_channel_t) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(event_handler_t) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(tri_t) == sizeof(int), "tri_t stored as int");
_Static_assert(sizeof(event_t) < NO_HAS, "offsets fit in 16 bits");

/* The reader defaults: channel OTHER, handled_by NONE, every union null. */
static const event_t reader_defaults = {
    .channel = CHANNEL_OTHER,
    .handled_by = HANDLER_NONE,
    .resolved = TRI_NULL,
};

/* ---- the plan ---- */

typedef enum {
    OP_NULL = 0,      /* writer null into a nullable field: keep the default */
    OP_SKIP,          /* n = skip node */
    OP_FAIL,          /* u.fail: this writer branch resolves to nothing */
    OP_UNION,         /* u.branches[n], never themselves unions */
    OP_STR,           /* string or bytes → strview_t */
    OP_I64_FROM_INT,
    OP_I64_FROM_LONG,
    OP_I32_FROM_INT,
    OP_F32_FROM_INT,
    OP_F32_FROM_LONG,
    OP_F32_FROM_FLOAT,
    OP_BOOL,          /* → tri_t */
    OP_ENUM           /* u.enum_map[n] */
} op_t;

typedef struct step {
    uint8_t op;
    uint8_t opt;                 /* 0, or 1 + the index of the null branch of
                                    a fused two-branch union (see fuse_optional) */
    uint16_t off;
    uint16_t has_off;
    uint32_t n;
    const char *name;            /* writer field name (owned by the schema) */
    const reader_field_t *rf;    /* target, NULL for OP_SKIP */
    avro_schema_t wenum;         /* OP_ENUM: writer enum, for symbol names */
    union {
        struct step *branches;   /* OP_UNION, owned */
        int8_t *enum_map;        /* OP_ENUM, owned */
        char *fail;              /* OP_FAIL, owned */
    } u;
} step_t;

typedef enum {
    SK_NULL, SK_BOOLEAN, SK_INT, SK_LONG, SK_FIXED, SK_BYTES, SK_ENUM,
    SK_RECORD, SK_ARRAY, SK_MAP, SK_UNION
} skip_kind_t;

typedef struct skip_node {
    uint8_t kind;
    bool zero_size;     /* always encoded in 0 bytes (null, fixed(0), records of such) */
    uint32_t n;         /* FIXED: size; ENUM: symbols; RECORD, UNION: children */
    uint32_t first;     /* RECORD, UNION: first child in kids; ARRAY, MAP: item node */
} skip_node_t;

struct schema_plan {
    avro_schema_t writer;   /* owned reference */
    step_t *steps;          /* one per writer field */
    size_t nsteps;
    skip_node_t *nodes;
    size_t nnodes, nodes_cap;
    uint32_t *kids;
    size_t nkids, kids_cap;
};

/* ---- compiling ---- */

typedef struct memo_entry {
    avro_schema_t schema;
    uint32_t node;
} memo_entry_t;

typedef struct compiler {
    schema_plan_t *plan;
    memo_entry_t *memo;     /* named types already compiled into skip nodes */
    size_t nmemo, memo_cap;
    char *errstr;
    size_t errstr_size;
} compiler_t;

static int compile_error(compiler_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int compile_error(compiler_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, c->errstr_size, fmt, ap);
    va_end(ap);
    return -1;
}

static avro_schema_t deref(avro_schema_t s) {
    return is_avro_link(s) ? avro_schema_link_target(s) : s;
}

/* A type's name for details: the primitive or container name, or the
 * unqualified name of a named type. */
static const char *type_label(avro_schema_t s) {
    s = deref(s);
    switch (avro_typeof(s)) {
    case AVRO_STRING: return "string";
    case AVRO_BYTES: return "bytes";
    case AVRO_INT32: return "int";
    case AVRO_INT64: return "long";
    case AVRO_FLOAT: return "float";
    case AVRO_DOUBLE: return "double";
    case AVRO_BOOLEAN: return "boolean";
    case AVRO_NULL: return "null";
    case AVRO_ARRAY: return "array";
    case AVRO_MAP: return "map";
    case AVRO_UNION: return "union";
    case AVRO_RECORD:
    case AVRO_ENUM:
    case AVRO_FIXED: return avro_schema_name(s);
    default: return "?";
    }
}

static const char *reader_label(const reader_field_t *rf) {
    static const char *const names[] = {
        [RT_STRING] = "string", [RT_LONG] = "long", [RT_INT] = "int",
        [RT_FLOAT] = "float", [RT_BOOLEAN] = "boolean"};
    return rf->type == RT_ENUM ? rf->enum_name : names[rf->type];
}

static int64_t node_add(compiler_t *c, skip_kind_t kind) {
    schema_plan_t *p = c->plan;
    if (p->nnodes == p->nodes_cap) {
        size_t cap = p->nodes_cap ? 2 * p->nodes_cap : 16;
        p->nodes = xrealloc(p->nodes, cap * sizeof *p->nodes);
        p->nodes_cap = cap;
    }
    p->nodes[p->nnodes] = (skip_node_t){.kind = (uint8_t)kind};
    return (int64_t)p->nnodes++;
}

static int kids_append(compiler_t *c, const uint32_t *kids, size_t n, uint32_t *first) {
    schema_plan_t *p = c->plan;
    if (p->nkids + n > p->kids_cap) {
        size_t cap = p->kids_cap ? p->kids_cap : 16;
        while (cap < p->nkids + n) cap *= 2;
        p->kids = xrealloc(p->kids, cap * sizeof *p->kids);
        p->kids_cap = cap;
    }
    *first = (uint32_t)p->nkids;
    if (n) memcpy(p->kids + p->nkids, kids, n * sizeof *kids);
    p->nkids += n;
    return 0;
}

static int memo_add(compiler_t *c, avro_schema_t s, uint32_t node) {
    if (c->nmemo == c->memo_cap) {
        size_t cap = c->memo_cap ? 2 * c->memo_cap : 8;
        c->memo = xrealloc(c->memo, cap * sizeof *c->memo);
        c->memo_cap = cap;
    }
    c->memo[c->nmemo++] = (memo_entry_t){s, node};
    return 0;
}

static int64_t memo_find(const compiler_t *c, avro_schema_t s) {
    for (size_t i = 0; i < c->nmemo; i++) {
        if (c->memo[i].schema == s) return c->memo[i].node;
    }
    return -1;
}

static int64_t compile_skip(compiler_t *c, avro_schema_t s, int depth);

/* Compiles the n children of a record (its fields) or a union (its
 * branches) into skip node `node`.  Returns 0 or -1. */
static int compile_children(compiler_t *c, avro_schema_t s, int64_t node, size_t n, int depth) {
    uint32_t *kids = NULL;
    bool zero = true;
    int rc = -1;

    if (n > UINT32_MAX / 2) return compile_error(c, "type %s has too many children", type_label(s));
    if (n) kids = xmalloc(n * sizeof *kids);
    for (size_t i = 0; i < n; i++) {
        avro_schema_t child = avro_typeof(s) == AVRO_RECORD
                                  ? avro_schema_record_field_get_by_index(s, (int)i)
                                  : avro_schema_union_branch(s, (int)i);
        int64_t k = compile_skip(c, child, depth + 1);
        if (k < 0) goto fail;
        kids[i] = (uint32_t)k;
        zero = zero && c->plan->nodes[k].zero_size;
    }
    uint32_t first = 0;
    if (kids_append(c, kids, n, &first) < 0) goto fail;
    skip_node_t *nd = &c->plan->nodes[node];
    nd->n = (uint32_t)n;
    nd->first = first;
    /* a union always spends at least its branch index */
    nd->zero_size = nd->kind == SK_RECORD && zero;
    rc = 0;
fail:
    free(kids);
    return rc;
}

/* Compiles a writer type into skip nodes.  Returns the node index, or -1
 * with the reason in c->errstr. */
static int64_t compile_skip(compiler_t *c, avro_schema_t s, int depth) {
    int64_t node;

    if (depth > COMPILE_MAX_DEPTH) {
        return compile_error(c, "writer schema nests deeper than %d", COMPILE_MAX_DEPTH);
    }
    s = deref(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        if ((node = node_add(c, SK_NULL)) >= 0) c->plan->nodes[node].zero_size = true;
        return node;
    case AVRO_BOOLEAN: return node_add(c, SK_BOOLEAN);
    case AVRO_INT32: return node_add(c, SK_INT);
    case AVRO_INT64: return node_add(c, SK_LONG);
    case AVRO_STRING:
    case AVRO_BYTES: return node_add(c, SK_BYTES);
    case AVRO_FLOAT:
    case AVRO_DOUBLE:
        if ((node = node_add(c, SK_FIXED)) >= 0) {
            c->plan->nodes[node].n = avro_typeof(s) == AVRO_FLOAT ? 4 : 8;
        }
        return node;
    case AVRO_FIXED: {
        int64_t size = avro_schema_fixed_size(s);
        if (size < 0 || size > INT32_MAX) {
            return compile_error(c, "fixed %s has size %lld", avro_schema_name(s), (long long)size);
        }
        if ((node = memo_find(c, s)) >= 0) return node;
        if ((node = node_add(c, SK_FIXED)) < 0 || memo_add(c, s, (uint32_t)node) < 0) return -1;
        c->plan->nodes[node].n = (uint32_t)size;
        c->plan->nodes[node].zero_size = size == 0;
        return node;
    }
    case AVRO_ENUM:
        if ((node = memo_find(c, s)) >= 0) return node;
        if ((node = node_add(c, SK_ENUM)) < 0 || memo_add(c, s, (uint32_t)node) < 0) return -1;
        c->plan->nodes[node].n = (uint32_t)avro_schema_enum_number_of_symbols(s);
        return node;
    case AVRO_RECORD:
        /* registered before its fields, so a recursive reference finds it */
        if ((node = memo_find(c, s)) >= 0) return node;
        if ((node = node_add(c, SK_RECORD)) < 0 || memo_add(c, s, (uint32_t)node) < 0) return -1;
        if (compile_children(c, s, node, avro_schema_record_size(s), depth) < 0) return -1;
        return node;
    case AVRO_UNION:
        if ((node = node_add(c, SK_UNION)) < 0) return -1;
        if (compile_children(c, s, node, avro_schema_union_size(s), depth) < 0) return -1;
        return node;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        bool is_array = avro_typeof(s) == AVRO_ARRAY;
        if ((node = node_add(c, is_array ? SK_ARRAY : SK_MAP)) < 0) return -1;
        int64_t item = compile_skip(
            c, is_array ? avro_schema_array_items(s) : avro_schema_map_values(s), depth + 1);
        if (item < 0) return -1;
        c->plan->nodes[node].first = (uint32_t)item;
        return node;
    }
    default:
        return compile_error(c, "writer schema has a type avro-c could not name");
    }
}

/* Fills *st for one non-union writer type against a reader field.  Returns
 * 0 when it resolves, 1 when it never can (*st becomes an OP_FAIL step whose
 * text says why), -1 when memory ran out. */
static int resolve_branch(compiler_t *c, avro_schema_t w, const reader_field_t *rf,
                          const char *fname, step_t *st) {
    op_t op = OP_FAIL;
    w = deref(w);
    avro_type_t t = avro_typeof(w);

    st->name = fname;
    st->rf = rf;
    st->off = rf->off;
    st->has_off = rf->has_off;
    if (t == AVRO_NULL) {
        if (rf->nullable) op = OP_NULL;
    } else {
        switch (rf->type) {
        case RT_STRING:
            if (t == AVRO_STRING || t == AVRO_BYTES) op = OP_STR;
            break;
        case RT_LONG:
            if (t == AVRO_INT32) op = OP_I64_FROM_INT;
            else if (t == AVRO_INT64) op = OP_I64_FROM_LONG;
            break;
        case RT_INT:
            if (t == AVRO_INT32) op = OP_I32_FROM_INT;
            break;
        case RT_FLOAT:
            if (t == AVRO_INT32) op = OP_F32_FROM_INT;
            else if (t == AVRO_INT64) op = OP_F32_FROM_LONG;
            else if (t == AVRO_FLOAT) op = OP_F32_FROM_FLOAT;
            break;
        case RT_BOOLEAN:
            if (t == AVRO_BOOLEAN) op = OP_BOOL;
            break;
        case RT_ENUM:
            if (t == AVRO_ENUM && strcmp(avro_schema_name(w), rf->enum_name) == 0) op = OP_ENUM;
            break;
        }
    }
    st->op = (uint8_t)op;
    if (op == OP_ENUM) {
        int n = avro_schema_enum_number_of_symbols(w);
        if (n <= 0) {
            st->op = OP_NULL;   /* nothing owned */
            return compile_error(c, "enum %s has no symbols", rf->enum_name);
        }
        st->u.enum_map = xmalloc((size_t)n);
        st->n = (uint32_t)n;
        st->wenum = w;
        for (int i = 0; i < n; i++) {
            const char *sym = avro_schema_enum_get(w, i);
            st->u.enum_map[i] = -1;
            for (int r = 0; r < rf->nsymbols; r++) {
                if (sym && strcmp(sym, rf->symbols[r]) == 0) st->u.enum_map[i] = (int8_t)r;
            }
        }
    } else if (op == OP_FAIL) {
        char text[256];
        snprintf(text, sizeof text, "field %s: writer type %s does not resolve to reader type %s%s",
                 fname, type_label(w), rf->nullable ? "null or " : "", reader_label(rf));
        st->u.fail = xstrdup(text);
        return 1;
    }
    return 0;
}

/* Compiles writer field `fname` of type w into step *st for reader field rf.
 * Returns 0 or -1 (incompatible or out of memory, c->errstr says which). */
static int resolve_field(compiler_t *c, avro_schema_t w, const reader_field_t *rf,
                         const char *fname, step_t *st) {
    w = deref(w);
    if (avro_typeof(w) != AVRO_UNION) {
        int rc = resolve_branch(c, w, rf, fname, st);
        if (rc > 0) compile_error(c, "%s", st->u.fail);
        return rc == 0 ? 0 : -1;
    }

    size_t n = avro_schema_union_size(w);
    size_t ok = 0;
    if (n == 0 || n > UINT32_MAX / 2) {
        return compile_error(c, "field %s: union has %zu branches", fname, n);
    }
    step_t *br = xcalloc(n, sizeof *br);
    st->op = OP_UNION;
    st->name = fname;
    st->rf = rf;
    st->n = (uint32_t)n;
    st->u.branches = br;
    for (size_t i = 0; i < n; i++) {
        int rc = resolve_branch(c, avro_schema_union_branch(w, (int)i), rf, fname, &br[i]);
        if (rc < 0) return -1;
        if (rc == 0) ok++;
    }
    if (ok == 0) {
        return compile_error(c,
                             "field %s: no branch of the writer union resolves to reader type %s%s",
                             fname, rf->nullable ? "null or " : "", reader_label(rf));
    }
    return 0;
}

/* A writer union of null and one type X (either order) becomes X's step
 * marked optional, so decoding reads the branch index and, unless it is the
 * null branch, goes straight on with X: one dispatch per field instead of
 * two.  Other unions keep their branch table. */
static void fuse_optional(step_t *st) {
    if (st->op != OP_UNION || st->n != 2) return;
    step_t *br = st->u.branches;
    for (unsigned null = 0; null < 2; null++) {
        uint8_t other = br[1 - null].op;
        if (br[null].op == OP_NULL && other != OP_NULL && other != OP_FAIL) {
            step_t fused = br[1 - null];   /* takes over its enum map */
            fused.opt = (uint8_t)(1 + null);
            free(br);
            *st = fused;
            return;
        }
    }
}

static void step_release(step_t *st) {
    switch (st->op) {
    case OP_UNION:
        for (uint32_t i = 0; i < st->n; i++) step_release(&st->u.branches[i]);
        free(st->u.branches);
        break;
    case OP_ENUM: free(st->u.enum_map); break;
    case OP_FAIL: free(st->u.fail); break;
    default: break;
    }
}

void schema_plan_free(schema_plan_t *plan) {
    if (!plan) return;
    for (size_t i = 0; i < plan->nsteps; i++) step_release(&plan->steps[i]);
    free(plan->steps);
    free(plan->nodes);
    free(plan->kids);
    if (plan->writer) avro_schema_decref(plan->writer);
    free(plan);
}

static const reader_field_t *reader_field_find(const char *name, size_t *index) {
    for (size_t i = 0; i < READER_FIELD_COUNT; i++) {
        if (strcmp(reader_fields[i].name, name) == 0) {
            *index = i;
            return &reader_fields[i];
        }
    }
    return NULL;
}

schema_plan_t *schema_plan_new(const char *json, size_t len, char *errstr, size_t errstr_size) {
    compiler_t c = {.errstr = errstr, .errstr_size = errstr_size};
    bool seen[READER_FIELD_COUNT] = {false};
    avro_schema_t w;

    c.plan = xcalloc(1, sizeof *c.plan);
    if (len == 0 || avro_schema_from_json_length(json, len, &c.plan->writer) != 0) {
        c.plan->writer = NULL;
        const char *why = len ? avro_strerror() : "empty text";
        compile_error(&c, "not a valid Avro schema: %.*s", (int)strcspn(why, "\n"), why);
        goto fail;
    }
    w = deref(c.plan->writer);
    if (avro_typeof(w) != AVRO_RECORD) {
        compile_error(&c, "writer schema is a %s, not the record InteractionEvent", type_label(w));
        goto fail;
    }
    if (strcmp(avro_schema_name(w), "InteractionEvent") != 0) {
        compile_error(&c, "writer record is named %s, not InteractionEvent", avro_schema_name(w));
        goto fail;
    }

    size_t nfields = avro_schema_record_size(w);
    c.plan->steps = xcalloc(nfields, sizeof *c.plan->steps);
    c.plan->nsteps = nfields;
    for (size_t i = 0; i < nfields; i++) {
        const char *fname = avro_schema_record_field_name(w, (int)i);
        avro_schema_t ftype = avro_schema_record_field_get_by_index(w, (int)i);
        step_t *st = &c.plan->steps[i];
        size_t ri;
        const reader_field_t *rf = reader_field_find(fname, &ri);

        if (rf) {
            if (seen[ri]) {
                compile_error(&c, "writer schema has field %s twice", fname);
                goto fail;
            }
            seen[ri] = true;
            if (resolve_field(&c, ftype, rf, fname, st) < 0) goto fail;
            fuse_optional(st);
        } else {
            int64_t node = compile_skip(&c, ftype, 1);
            if (node < 0) goto fail;
            st->op = OP_SKIP;
            st->name = fname;
            st->n = (uint32_t)node;
        }
    }
    for (size_t i = 0; i < READER_FIELD_COUNT; i++) {
        if (!seen[i] && reader_fields[i].required) {
            compile_error(&c, "writer schema lacks field %s, which has no default",
                          reader_fields[i].name);
            goto fail;
        }
    }
    free(c.memo);
    return c.plan;

fail:
    free(c.memo);
    schema_plan_free(c.plan);
    return NULL;
}

/* ---- decoding ----
 *
 * The read position p and the end are passed and returned by value so that
 * they stay in registers: every read depends on p, and a p kept in memory
 * would be reloaded after each store into the event.  A reader returns the
 * new position, or NULL after rd_fail() has written the reason and detail
 * into the rd_t. */

typedef struct rd {
    const char *field;          /* writer field being read, for details */
    const skip_node_t *nodes;
    const uint32_t *kids;
    char *detail;
    size_t detail_size;
    dlq_reason_t why;           /* set by rd_fail() */
} rd_t;

static const uint8_t *rd_fail(rd_t *r, dlq_reason_t why, const char *fmt, ...)
    __attribute__((cold, noinline, format(printf, 3, 4)));

static const uint8_t *rd_fail(rd_t *r, dlq_reason_t why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, r->detail_size, fmt, ap);
    va_end(ap);
    r->why = why;
    return NULL;
}

static size_t left(const uint8_t *p, const uint8_t *end) { return (size_t)(end - p); }

static const uint8_t *rd_varint_slow(rd_t *r, const uint8_t *p, const uint8_t *end,
                                     uint64_t *out) __attribute__((noinline));

static const uint8_t *rd_varint_slow(rd_t *r, const uint8_t *p, const uint8_t *end,
                                     uint64_t *out) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (p == end) {
            return rd_fail(r, DLQ_DECODE_ERROR, "body ends inside a varint at field %s", r->field);
        }
        uint8_t b = *p++;
        if (i == 9 && b > 1) {
            return rd_fail(r, DLQ_DECODE_ERROR, "%s at field %s",
                           b & 0x80 ? "varint longer than 10 bytes" : "varint overflows 64 bits",
                           r->field);
        }
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return p;
        }
    }
    /* not reached: the tenth byte either ends the varint or fails above */
    return rd_fail(r, DLQ_DECODE_ERROR, "varint longer than 10 bytes at field %s", r->field);
}

static inline const uint8_t *rd_long(rd_t *r, const uint8_t *p, const uint8_t *end,
                                     int64_t *out) {
    uint64_t u;
    if (p < end && *p < 0x80) {
        u = *p++;
    } else if (!(p = rd_varint_slow(r, p, end, &u))) {
        return NULL;
    }
    *out = (int64_t)((u >> 1) ^ (0 - (u & 1)));
    return p;
}

static inline const uint8_t *rd_int(rd_t *r, const uint8_t *p, const uint8_t *end,
                                    int32_t *out) {
    int64_t v = 0;
    if (!(p = rd_long(r, p, end, &v))) return NULL;
    if (v < INT32_MIN || v > INT32_MAX) {
        return rd_fail(r, DLQ_DECODE_ERROR, "int %lld outside 32 bits at field %s", (long long)v,
                       r->field);
    }
    *out = (int32_t)v;
    return p;
}

static inline const uint8_t *rd_bytes(rd_t *r, const uint8_t *p, const uint8_t *end,
                                      strview_t *out) {
    int64_t n = 0;
    if (!(p = rd_long(r, p, end, &n))) return NULL;
    if (n < 0) {
        return rd_fail(r, DLQ_DECODE_ERROR, "negative string length %lld at field %s",
                       (long long)n, r->field);
    }
    if ((uint64_t)n > left(p, end)) {
        return rd_fail(r, DLQ_DECODE_ERROR,
                       "string length %lld exceeds the %zu bytes left at field %s", (long long)n,
                       left(p, end), r->field);
    }
    out->ptr = (const char *)p;
    out->len = (size_t)n;
    return p + n;
}

static inline const uint8_t *rd_float(rd_t *r, const uint8_t *p, const uint8_t *end,
                                      float *out) {
    if (left(p, end) < 4) {
        return rd_fail(r, DLQ_DECODE_ERROR, "body ends inside a float at field %s", r->field);
    }
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    memcpy(out, &u, sizeof *out);
    return p + 4;
}

static inline const uint8_t *rd_boolean(rd_t *r, const uint8_t *p, const uint8_t *end,
                                        bool *out) {
    if (p == end) {
        return rd_fail(r, DLQ_DECODE_ERROR, "body ends before a boolean at field %s", r->field);
    }
    if (*p > 1) {
        return rd_fail(r, DLQ_DECODE_ERROR, "boolean byte 0x%02x at field %s", *p, r->field);
    }
    *out = *p == 1;
    return p + 1;
}

/* Reads an enum or union index in 0..n-1. */
static inline const uint8_t *rd_index(rd_t *r, const uint8_t *p, const uint8_t *end, uint32_t n,
                                      const char *what, uint32_t *out) {
    int64_t v = 0;
    if (!(p = rd_long(r, p, end, &v))) return NULL;
    if (v < 0 || v >= (int64_t)n) {
        return rd_fail(r, DLQ_DECODE_ERROR, "%s index %lld outside the writer's 0..%u at field %s",
                       what, (long long)v, n - 1, r->field);
    }
    *out = (uint32_t)v;
    return p;
}

/* Skips one value of skip node `node`, nested `depth` levels in the record. */
static const uint8_t *rd_skip(rd_t *r, const uint8_t *p, const uint8_t *end, uint32_t node,
                              int depth) {
    const skip_node_t *k = &r->nodes[node];
    int64_t v = 0;
    int32_t i32 = 0;
    bool b = false;
    strview_t sv;
    uint32_t idx = 0;

    switch ((skip_kind_t)k->kind) {
    case SK_NULL: return p;
    case SK_BOOLEAN: return rd_boolean(r, p, end, &b);
    case SK_INT: return rd_int(r, p, end, &i32);
    case SK_LONG: return rd_long(r, p, end, &v);
    case SK_BYTES: return rd_bytes(r, p, end, &sv);
    case SK_ENUM: return rd_index(r, p, end, k->n, "enum", &idx);
    case SK_FIXED:
        if (k->n > left(p, end)) {
            return rd_fail(r, DLQ_DECODE_ERROR,
                           "fixed of %u bytes exceeds the %zu bytes left at field %s", k->n,
                           left(p, end), r->field);
        }
        return p + k->n;
    default: break;
    }

    if (depth > SCHEMA_PLAN_MAX_DEPTH) {
        return rd_fail(r, DLQ_DECODE_ERROR, "value nests deeper than %d at field %s",
                       SCHEMA_PLAN_MAX_DEPTH, r->field);
    }
    switch ((skip_kind_t)k->kind) {
    case SK_RECORD:
        for (uint32_t i = 0; i < k->n && p; i++) {
            p = rd_skip(r, p, end, r->kids[k->first + i], depth + 1);
        }
        return p;
    case SK_UNION:
        if (!(p = rd_index(r, p, end, k->n, "union branch", &idx))) return NULL;
        return rd_skip(r, p, end, r->kids[k->first + idx], depth + 1);
    case SK_ARRAY:
    case SK_MAP: {
        bool is_map = k->kind == SK_MAP;
        /* a map entry spends at least its key's length byte */
        bool zero = !is_map && r->nodes[k->first].zero_size;
        for (;;) {
            int64_t count = 0;
            if (!(p = rd_long(r, p, end, &count))) return NULL;
            if (count == 0) return p;
            if (count < 0) {
                /* a negative count is followed by the block's size in bytes */
                int64_t size = 0;
                if (count == INT64_MIN) {
                    return rd_fail(r, DLQ_DECODE_ERROR, "block count overflows at field %s",
                                   r->field);
                }
                if (!(p = rd_long(r, p, end, &size))) return NULL;
                if (size < 0 || (uint64_t)size > left(p, end)) {
                    return rd_fail(r, DLQ_DECODE_ERROR,
                                   "block size %lld outside the %zu bytes left at field %s",
                                   (long long)size, left(p, end), r->field);
                }
                p += size;
                continue;
            }
            if (zero) continue;
            if ((uint64_t)count > left(p, end)) {
                return rd_fail(r, DLQ_DECODE_ERROR,
                               "block of %lld items exceeds the %zu bytes left at field %s",
                               (long long)count, left(p, end), r->field);
            }
            for (int64_t i = 0; i < count; i++) {
                if (is_map && !(p = rd_bytes(r, p, end, &sv))) return NULL;
                if (!(p = rd_skip(r, p, end, k->first, depth + 1))) return NULL;
            }
        }
    }
    default:
        return rd_fail(r, DLQ_DECODE_ERROR, "bad skip node at field %s", r->field);
    }
}

static inline void put(event_t *ev, uint16_t off, const void *v, size_t size) {
    memcpy((char *)ev + off, v, size);
}

static inline void put_has(event_t *ev, uint16_t has_off) {
    static const bool yes = true;
    if (has_off != NO_HAS) put(ev, has_off, &yes, sizeof yes);
}

/* Runs one step (following a union to its branch).  Returns the new
 * position or NULL. */
static inline const uint8_t *run_step(rd_t *r, const uint8_t *p, const uint8_t *end,
                                      const step_t *s, event_t *ev) {
    int64_t v = 0;
    int32_t i32 = 0;
    float f = 0;
    bool b = false;
    strview_t sv;
    uint32_t idx = 0;

    if (s->opt) {
        if (!(p = rd_index(r, p, end, 2, "union branch", &idx))) return NULL;
        if (idx == s->opt - 1u) return p;   /* null: keep the default */
    }
    for (;;) {
        switch ((op_t)s->op) {
        case OP_NULL: return p;
        case OP_UNION:
            if (!(p = rd_index(r, p, end, s->n, "union branch", &idx))) return NULL;
            s = &s->u.branches[idx];
            continue;
        case OP_STR:
            if (!(p = rd_bytes(r, p, end, &sv))) return NULL;
            put(ev, s->off, &sv, sizeof sv);
            return p;
        case OP_I64_FROM_INT:
            if (!(p = rd_int(r, p, end, &i32))) return NULL;
            v = i32;
            put(ev, s->off, &v, sizeof v);
            put_has(ev, s->has_off);
            return p;
        case OP_I64_FROM_LONG:
            if (!(p = rd_long(r, p, end, &v))) return NULL;
            put(ev, s->off, &v, sizeof v);
            put_has(ev, s->has_off);
            return p;
        case OP_I32_FROM_INT:
            if (!(p = rd_int(r, p, end, &i32))) return NULL;
            put(ev, s->off, &i32, sizeof i32);
            put_has(ev, s->has_off);
            return p;
        case OP_F32_FROM_INT:
            if (!(p = rd_int(r, p, end, &i32))) return NULL;
            f = (float)i32;
            put(ev, s->off, &f, sizeof f);
            put_has(ev, s->has_off);
            return p;
        case OP_F32_FROM_LONG:
            if (!(p = rd_long(r, p, end, &v))) return NULL;
            f = (float)v;
            put(ev, s->off, &f, sizeof f);
            put_has(ev, s->has_off);
            return p;
        case OP_F32_FROM_FLOAT:
            if (!(p = rd_float(r, p, end, &f))) return NULL;
            put(ev, s->off, &f, sizeof f);
            put_has(ev, s->has_off);
            return p;
        case OP_BOOL: {
            if (!(p = rd_boolean(r, p, end, &b))) return NULL;
            int t = b ? TRI_TRUE : TRI_FALSE;
            put(ev, s->off, &t, sizeof t);
            return p;
        }
        case OP_ENUM: {
            if (!(p = rd_index(r, p, end, s->n, "enum", &idx))) return NULL;
            int sym = s->u.enum_map[idx];
            if (sym < 0) {
                return rd_fail(r, DLQ_INCOMPATIBLE_SCHEMA,
                               "field %s: writer symbol %s is not in reader enum %s", s->name,
                               avro_schema_enum_get(s->wenum, (int)idx), s->rf->enum_name);
            }
            put(ev, s->off, &sym, sizeof sym);
            return p;
        }
        case OP_SKIP: return rd_skip(r, p, end, s->n, 1);
        case OP_FAIL: return rd_fail(r, DLQ_INCOMPATIBLE_SCHEMA, "%s", s->u.fail);
        }
        return rd_fail(r, DLQ_DECODE_ERROR, "bad plan step at field %s", s->name);
    }
}

dlq_reason_t schema_plan_decode(const schema_plan_t *plan, const uint8_t *body, size_t len,
                                event_t *ev, char *detail, size_t detail_size) {
    rd_t r = {
        .nodes = plan->nodes, .kids = plan->kids, .detail = detail, .detail_size = detail_size,
    };
    const uint8_t *p = body, *end = body + len;
    const step_t *s = plan->steps, *last = plan->steps + plan->nsteps;

    *ev = reader_defaults;
    for (; s < last; s++) {
        r.field = s->name;
        if (!(p = run_step(&r, p, end, s, ev))) return r.why;
    }
    if (p != end) {
        rd_fail(&r, DLQ_DECODE_ERROR, "%zu trailing bytes after the record", left(p, end));
        return r.why;
    }
    return DLQ_NONE;
}
