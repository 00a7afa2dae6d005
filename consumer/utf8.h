/*
 * utf8.h — strict UTF-8 validation (RFC 3629): no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF.  NUL is valid.
 *
 * Pure function, no state: any thread may call it.
 */
#ifndef RAPPORT_UTF8_H
#define RAPPORT_UTF8_H

#include <stddef.h>

/* Returns the length of the longest prefix of s[0..len) made of whole valid
 * sequences: len when the whole string is valid UTF-8, else the offset of
 * the first byte that starts an invalid or truncated sequence.  s may be
 * NULL when len is 0. */
size_t utf8_valid_prefix(const void *s, size_t len);

#endif
