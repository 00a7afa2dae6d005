/*
 * test_numfmt.c — common/numfmt.c must print exactly what printf prints.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/numfmt.h"

static void check_f4(double v) {
    char want[NUMFMT_MAX + 16], got[NUMFMT_MAX];
    snprintf(want, sizeof(want), "%.4f", v);
    size_t n = fmt_f4(got, v);
    cr_assert_str_eq(got, want, "%.17g: got %s, printf %s", v, got, want);
    cr_assert_eq(n, strlen(want));
}

Test(numfmt, f4_table) {
    const double t[] = {0, 1, 100, 99.99995, 0.00005, 0.00015, 0.5, 39.875, 31.6, 50.1,
                        24.25, 42.357142857142854, 47.848214285714285, 1e-300, 0.99995,
                        12.34565, 12.34575, 1e9 - 1, 1e9, 1e12, 123456.78905, -0.0, -1.5,
                        -0.00001, NAN, INFINITY, -INFINITY, DBL_MAX, DBL_MIN, 5e-5, 4.99999e-5};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) check_f4(t[i]);
}

/* Exact ties and their neighbours: k/10000 + 0.00005 and one ulp around. */
Test(numfmt, f4_near_ties) {
    for (int k = 0; k < 2000000; k += 7) {
        double tie = (double)k / 10000.0 + 0.00005;
        check_f4(tie);
        check_f4(nextafter(tie, 0));
        check_f4(nextafter(tie, 1e10));
    }
}

/* Random values over the ranges rapport writes. */
Test(numfmt, f4_random) {
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 3000000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        double v = i % 3 == 0 ? u : (i % 3 == 1 ? u * 100 : u * 1e7);
        check_f4(v);
    }
}

static void check_f2(double v) {
    char want[NUMFMT_MAX + 16], got[NUMFMT_MAX];
    snprintf(want, sizeof(want), "%.2f", v);
    size_t n = fmt_f2(got, v);
    cr_assert_str_eq(got, want, "%.17g: got %s, printf %s", v, got, want);
    cr_assert_eq(n, strlen(want));
}

Test(numfmt, f2_table) {
    const double t[] = {0, 1, 100, 43.875, 43.885, 0.005, 0.015, -0.005, -0.7, -0.70000000298,
                        -0.0, -0.001, -1, 0.125, 34.995, 49.995, NAN, -NAN, INFINITY, -INFINITY,
                        1e9, -1e12, DBL_MAX, DBL_MIN};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) check_f2(t[i]);
}

/* Ties k/100 + 0.005 and one ulp around, both signs; then random scores
 * and Avro-float sentiments as the reasons print them. */
Test(numfmt, f2_near_ties_and_random) {
    for (int k = -20000; k < 20000; k++) {
        double tie = (double)k / 100.0 + (k < 0 ? -0.005 : 0.005);
        check_f2(tie);
        check_f2(nextafter(tie, -1e10));
        check_f2(nextafter(tie, 1e10));
    }
    uint64_t x = 2463534242ULL;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        check_f2(i % 2 ? u * 100 : (double)(float)(2 * u - 1));
    }
}

Test(numfmt, i64) {
    const int64_t t[] = {0, 1, -1, 9, 10, 1767225600000, INT64_MAX, INT64_MIN, -1000};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char want[32], got[NUMFMT_MAX];
        snprintf(want, sizeof(want), "%" PRId64, t[i]);
        cr_assert_eq(fmt_i64(got, t[i]), strlen(want));
        cr_assert_str_eq(got, want);
    }
}
