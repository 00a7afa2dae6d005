/*
 * batch.c — the neutral batch (see batch.h).
 *
 * Strings live in an arena of blocks that never move, so a pointer handed
 * out stays valid while more is appended; a string larger than a quarter
 * of a block gets a block of its own.  Partitions are allocated one by one
 * and kept across batch_reset(), with their arrays, so that a steady
 * stream of flushes allocates nothing after the first few.  What a very
 * large batch grew beyond ARENA_KEEP_BYTES, and each array beyond
 * ARRAY_KEEP_BYTES, is given back on reset (and reported to
 * alloc_released()).
 *
 * One thread at a time.
 */
#include "batch/batch.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

#define BLOCK_BYTES (64u << 10)
/* Arena bytes kept for the next batch after a reset. */
#define ARENA_KEEP_BYTES (4u << 20)
/* A partition's array bigger than this (a catch-up batch's) is freed on
 * reset rather than kept: a steady flush needs far less. */
#define ARRAY_KEEP_BYTES ((size_t)64 << 10)

typedef struct block {
    struct block *next;
    size_t used, size;
    char data[];
} block_t;

struct batch {
    batch_partition_t **parts;  /* nparts in use, cap_parts allocated */
    size_t nparts, cap_parts;
    block_t *blocks;            /* the current block first */
    block_t *spare;             /* emptied blocks, reused before new ones */
};

batch_t *batch_new(void) { return xcalloc(1, sizeof(batch_t)); }

static void blocks_free(block_t *k) {
    while (k) {
        block_t *next = k->next;
        free(k);
        k = next;
    }
}

static void part_free(batch_partition_t *bp) {
    if (!bp) return;
    free(bp->customers);
    free(bp->deletes);
    free(bp->alerts);
    free(bp->history);
    free(bp->org);
    free(bp->erasures);
    free(bp);
}

void batch_free(batch_t *b) {
    if (!b) return;
    for (size_t i = 0; i < b->cap_parts; i++) part_free(b->parts[i]);
    free(b->parts);
    blocks_free(b->blocks);
    blocks_free(b->spare);
    free(b);
}

/* Frees *arr when it takes more than ARRAY_KEEP_BYTES; returns the bytes freed. */
static size_t array_shrink(void **arr, size_t *cap, size_t size) {
    if (*cap * size <= ARRAY_KEEP_BYTES) return 0;
    size_t n = *cap * size;
    free(*arr);
    *arr = NULL;
    *cap = 0;
    return n;
}

void batch_reset(batch_t *b) {
    size_t freed = 0;
    for (size_t i = 0; i < b->nparts; i++) {
        batch_partition_t *bp = b->parts[i];
        freed += array_shrink((void **)&bp->customers, &bp->cap_customers, sizeof(*bp->customers)) +
                 array_shrink((void **)&bp->deletes, &bp->cap_deletes, sizeof(*bp->deletes)) +
                 array_shrink((void **)&bp->alerts, &bp->cap_alerts, sizeof(*bp->alerts)) +
                 array_shrink((void **)&bp->history, &bp->cap_history, sizeof(*bp->history)) +
                 array_shrink((void **)&bp->org, &bp->cap_org, sizeof(*bp->org)) +
                 array_shrink((void **)&bp->erasures, &bp->cap_erasures, sizeof(*bp->erasures));
    }
    b->nparts = 0;
    /* Standard-size blocks go to the spare list up to the budget; the rest
     * (and every oversize block) is freed. */
    size_t kept = 0;
    for (block_t *k = b->spare; k; k = k->next) kept += k->size;
    for (block_t *k = b->blocks, *next; k; k = next) {
        next = k->next;
        if (k->size == BLOCK_BYTES && kept + k->size <= ARENA_KEEP_BYTES) {
            k->used = 0;
            k->next = b->spare;
            b->spare = k;
            kept += k->size;
        } else {
            freed += k->size;
            free(k);
        }
    }
    b->blocks = NULL;
    if (freed) alloc_released(freed);
}

batch_str_t batch_copy(batch_t *b, const void *p, size_t n) {
    if (n == 0) return (batch_str_t){"", 0};
    block_t *k = b->blocks;
    if (!k || k->size - k->used < n) {
        if (n > BLOCK_BYTES / 4) {
            /* Its own block, behind the current one so that the current
             * block's free room stays in use. */
            block_t *big = xmalloc(sizeof(block_t) + n);
            big->size = big->used = n;
            memcpy(big->data, p, n);
            if (k) {
                big->next = k->next;
                k->next = big;
            } else {
                big->next = NULL;
                b->blocks = big;
            }
            return (batch_str_t){big->data, n};
        }
        if (b->spare) {
            k = b->spare;
            b->spare = k->next;
        } else {
            k = xmalloc(sizeof(block_t) + BLOCK_BYTES);
            k->size = BLOCK_BYTES;
        }
        k->used = 0;
        k->next = b->blocks;
        b->blocks = k;
    }
    char *d = k->data + k->used;
    memcpy(d, p, n);
    k->used += n;
    return (batch_str_t){d, n};
}

batch_str_t batch_static(const char *s) { return (batch_str_t){s, strlen(s)}; }

batch_partition_t *batch_add_partition(batch_t *b, const char *topic, int32_t partition,
                                       int64_t epoch, int64_t prev_offset, int64_t next_offset) {
    if (b->nparts == b->cap_parts) {
        size_t cap = b->cap_parts ? b->cap_parts * 2 : 8;
        b->parts = xrealloc(b->parts, cap * sizeof(*b->parts));
        memset(b->parts + b->cap_parts, 0, (cap - b->cap_parts) * sizeof(*b->parts));
        b->cap_parts = cap;
    }
    batch_partition_t *bp = b->parts[b->nparts];
    if (!bp) bp = b->parts[b->nparts] = xcalloc(1, sizeof(*bp));
    b->nparts++;
    /* Empty, keeping the arrays. */
    bp->ncustomers = bp->ndeletes = bp->nalerts = bp->nhistory = bp->norg = bp->nerasures = 0;
    bp->topic = batch_copy(b, topic, strlen(topic));
    bp->partition = partition;
    bp->epoch = epoch;
    bp->prev_offset = prev_offset;
    bp->next_offset = next_offset;
    bp->has_watermark = false;
    bp->watermark = -1;
    bp->result = BATCH_PENDING;
    return bp;
}

size_t batch_partition_count(const batch_t *b) { return b->nparts; }

batch_partition_t *batch_partition(const batch_t *b, size_t i) {
    return i < b->nparts ? b->parts[i] : NULL;
}

/* Room for one more element in an array of `size`-byte elements. */
static void *grow(void *arr, size_t n, size_t *cap, size_t size) {
    if (n < *cap) return arr;
    *cap = *cap ? *cap * 2 : 16;
    return xrealloc(arr, *cap * size);
}

batch_customer_t *batch_add_customer(batch_t *b, batch_partition_t *bp) {
    (void)b;
    bp->customers = grow(bp->customers, bp->ncustomers, &bp->cap_customers,
                         sizeof(*bp->customers));
    batch_customer_t *c = &bp->customers[bp->ncustomers++];
    memset(c, 0, sizeof(*c));
    c->changed = BATCH_CF_ALL;
    c->customer_id = c->last_event_id = c->route = c->route_reason = c->state =
        (batch_str_t){"", 0};
    return c;
}

batch_alert_t *batch_add_alert(batch_t *b, batch_partition_t *bp) {
    (void)b;
    bp->alerts = grow(bp->alerts, bp->nalerts, &bp->cap_alerts, sizeof(*bp->alerts));
    batch_alert_t *a = &bp->alerts[bp->nalerts++];
    memset(a, 0, sizeof(*a));
    a->type = a->trigger = a->customer_id = a->event_id = a->reason = a->narrative =
        (batch_str_t){"", 0};
    return a;
}

void batch_add_delete(batch_t *b, batch_partition_t *bp, const void *customer_id, size_t len) {
    bp->deletes = grow(bp->deletes, bp->ndeletes, &bp->cap_deletes, sizeof(*bp->deletes));
    bp->deletes[bp->ndeletes++] = batch_copy(b, customer_id, len);
}

void batch_add_erasure(batch_t *b, batch_partition_t *bp, const void *customer_id, size_t len) {
    bp->erasures = grow(bp->erasures, bp->nerasures, &bp->cap_erasures, sizeof(*bp->erasures));
    bp->erasures[bp->nerasures++] = batch_copy(b, customer_id, len);
}

void batch_add_history(batch_t *b, batch_partition_t *bp, int64_t bucket_start,
                       const char *field, int64_t delta) {
    bp->history = grow(bp->history, bp->nhistory, &bp->cap_history, sizeof(*bp->history));
    bp->history[bp->nhistory++] =
        (batch_counter_t){bucket_start, batch_copy(b, field, strlen(field)), delta};
}

void batch_add_org(batch_t *b, batch_partition_t *bp, const char *field, int64_t delta) {
    bp->org = grow(bp->org, bp->norg, &bp->cap_org, sizeof(*bp->org));
    bp->org[bp->norg++] = (batch_counter_t){0, batch_copy(b, field, strlen(field)), delta};
}

size_t batch_partition_items(const batch_partition_t *bp) {
    return bp->ncustomers + bp->ndeletes + bp->nalerts + bp->nhistory + bp->norg +
           bp->nerasures;
}

size_t batch_bytes(const batch_t *b) {
    size_t n = 0;
    for (const block_t *k = b->blocks; k; k = k->next) n += sizeof(*k) + k->used;
    for (size_t i = 0; i < b->nparts; i++) {
        const batch_partition_t *bp = b->parts[i];
        n += sizeof(*bp) + bp->ncustomers * sizeof(*bp->customers) +
             bp->ndeletes * sizeof(*bp->deletes) + bp->nalerts * sizeof(*bp->alerts) +
             bp->nhistory * sizeof(*bp->history) + bp->norg * sizeof(*bp->org) +
             bp->nerasures * sizeof(*bp->erasures);
    }
    return n;
}

size_t batch_item_count(const batch_t *b) {
    size_t n = 0;
    for (size_t i = 0; i < b->nparts; i++) n += batch_partition_items(b->parts[i]);
    return n;
}
