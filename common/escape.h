/*
 * escape.h — bytes from outside (keys, customer ids, texts) made safe to
 * print in one log line or error message.
 *
 * Printable ASCII is kept, except '"' and '\\', which are escaped with a
 * backslash; newline is "\n"; every other byte is "\xNN".  The result is
 * cut, with "..." appended, when it would exceed `max` input bytes or the
 * output buffer.  Pure; thread-safe.
 */
#ifndef RAPPORT_ESCAPE_H
#define RAPPORT_ESCAPE_H

#include <stddef.h>

/* Writes the escaped form of p[0..n) (at most max input bytes; 0: no
 * limit) into out (always NUL-terminated when size > 0).  Returns out. */
const char *escape_bytes(const void *p, size_t n, size_t max, char *out, size_t size);

#endif
