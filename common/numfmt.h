/*
 * numfmt.h — decimal formatting for the hot path of the Redis sink, with
 * the exact output of printf: fmt_i64 is "%lld", fmt_f4 is "%.4f", fmt_f2
 * is "%.2f" (the scorer's alert reasons).
 * Pure functions, any thread.
 */
#ifndef RAPPORT_NUMFMT_H
#define RAPPORT_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

#define NUMFMT_MAX 330 /* "%.4f" of -DBL_MAX is 316 characters */

/* Write v into buf (at least NUMFMT_MAX bytes, NUL-terminated); return
 * the length. */
size_t fmt_i64(char *buf, int64_t v);
size_t fmt_f4(char *buf, double v);
size_t fmt_f2(char *buf, double v);

#endif
