/*
 * clock.h — the one monotonic clock and the one sleep of rapport.
 *
 * Every timeout, backoff and deadline is measured on CLOCK_MONOTONIC, which
 * wall-clock steps (NTP, an operator's `date`) cannot move.  Thread-safe.
 * Scores never read a clock (docs/SPEC.md §2): only scheduling does.
 */
#ifndef RAPPORT_CLOCK_H
#define RAPPORT_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds since an arbitrary point. */
int64_t clock_ms(void);
/* The same clock in seconds, with sub-millisecond precision (durations). */
double clock_s(void);
/* Sleeps ms milliseconds (<= 0: returns at once), resuming after signals
 * so that the whole time passes; a caller that must notice a stop flag
 * sleeps in short steps. */
void clock_sleep_ms(int64_t ms);

#endif
