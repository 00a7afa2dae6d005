/*
 * numfmt.c — "%.4f" without printf for the values rapport writes (scores
 * and averages, finite, non-negative, below 1e9).
 *
 * s = v * 10000 is computed in double; its error is at most |s| * 2^-53.
 * Unless the fraction of s lies within that error of one half, rounding s
 * to the nearest integer gives the same digits as printf's correctly
 * rounded result.  Anything else (a near-tie, a negative or huge value,
 * NaN) goes to snprintf, so the output is always printf's.
 */
#include "common/numfmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t fmt_i64(char *buf, int64_t v) {
    char tmp[24];
    size_t n = 0, o = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[o++] = '-';
    while (n) buf[o++] = tmp[--n];
    buf[o] = '\0';
    return o;
}

/* "%.<decimals>f" for decimals 2 or 4.  The fast path rounds v * 10^d in
 * double and writes the digits; when the product is within its rounding
 * error of a tie (x.5), or out of the range where that is exact enough,
 * printf decides. */
static size_t fmt_fixed(char *buf, double v, unsigned decimals) {
    const double scale = decimals == 2 ? 100.0 : 10000.0;
    const unsigned div = decimals == 2 ? 100u : 10000u;
    size_t o = 0;
    double a = v;
    if (isnan(v) || isinf(v)) goto slow;
    if (signbit(v)) {
        buf[o++] = '-';
        a = -v;
    }
    if (a >= 1e9) goto slow;
    double s = a * scale, fl = floor(s), f = s - fl;
    double tol = s * 2.3e-16 + 1e-12;
    if (fabs(f - 0.5) <= tol) goto slow;
    uint64_t r = (uint64_t)fl + (f > 0.5 ? 1 : 0);
    o += fmt_i64(buf + o, (int64_t)(r / div));
    unsigned frac = (unsigned)(r % div);
    buf[o++] = '.';
    for (unsigned d = div / 10; d; d /= 10) buf[o++] = (char)('0' + frac / d % 10);
    buf[o] = '\0';
    return o;
slow:;
    int n = snprintf(buf, NUMFMT_MAX, decimals == 2 ? "%.2f" : "%.4f", v);
    return n < 0 ? 0 : ((size_t)n < NUMFMT_MAX ? (size_t)n : NUMFMT_MAX - 1);
}

size_t fmt_f4(char *buf, double v) { return fmt_fixed(buf, v, 4); }

size_t fmt_f2(char *buf, double v) { return fmt_fixed(buf, v, 2); }
