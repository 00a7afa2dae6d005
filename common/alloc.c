/*
 * alloc.c — see alloc.h.
 */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static _Noreturn void oom(size_t size) {
    /* No log_emit(): it formats into a stack buffer, but stay minimal. */
    fprintf(stderr, "level=error msg=\"out of memory, aborting\" bytes=%zu\n", size);
    fflush(stderr);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

static _Atomic size_t released;

void alloc_released(size_t bytes) { atomic_fetch_add(&released, bytes); }

bool alloc_trim(size_t min_bytes) {
    size_t n = atomic_load(&released);
    if (n == 0 || n < min_bytes) return false;
    atomic_fetch_sub(&released, n); /* keeps what another thread reports meanwhile */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    return true;
}

void alloc_init(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, (int)ALLOC_MMAP_BYTES);
#endif
}
