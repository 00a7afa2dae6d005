/*
 * test_alloc.c — common/alloc.c: the wrappers copy and zero as their libc
 * counterparts do, and a failed allocation logs one line and aborts
 * (docs/DESIGN.md §6) instead of returning NULL.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"

/* Under ASan: let its malloc return NULL for an impossible size (as libc's
 * does) instead of stopping the process with its own report. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

Test(alloc, copies_and_zeroes) {
    char *s = xstrdup("rapport");
    cr_expect_str_eq(s, "rapport");
    char *t = xstrndup("customer\0id", 11);
    cr_expect_eq(memcmp(t, "customer\0id", 11), 0);
    cr_expect_eq(t[11], '\0');
    unsigned char *z = xcalloc(64, 1);
    for (int i = 0; i < 64; i++) cr_expect_eq(z[i], 0);
    z = xrealloc(z, 4096);
    cr_expect_eq(z[63], 0, "realloc keeps the old bytes");
    void *empty = xmalloc(0);
    cr_expect_not_null(empty, "a size of 0 is not a failure");
    free(s);
    free(t);
    free(z);
    free(empty);
}

/* SIZE_MAX / 2 bytes cannot be had: the process aborts. */
Test(alloc, aborts_when_memory_runs_out, .signal = SIGABRT) {
    void *p = xmalloc(SIZE_MAX / 2);
    free(p);
}

Test(alloc, calloc_overflow_aborts, .signal = SIGABRT) {
    void *p = xcalloc(SIZE_MAX / 2, 4);
    free(p);
}

/* alloc_trim() trims only once min_bytes were reported, then starts
 * counting again; with nothing reported it never does. */
Test(alloc, trims_after_a_large_release_only) {
    alloc_trim(1); /* whatever an earlier test reported */
    cr_expect_not(alloc_trim(1), "nothing reported: nothing to hand back");
    alloc_released(ALLOC_TRIM_BYTES / 2);
    cr_expect_not(alloc_trim(ALLOC_TRIM_BYTES), "half the threshold: not yet");
    alloc_released(ALLOC_TRIM_BYTES / 2);
    cr_expect(alloc_trim(ALLOC_TRIM_BYTES), "the threshold reached: trimmed");
    cr_expect_not(alloc_trim(ALLOC_TRIM_BYTES), "the count starts again after a trim");
    alloc_released(100);
    cr_expect(alloc_trim(1), "idle: any amount is worth a trim");
}
