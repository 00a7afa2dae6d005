/*
 * utf8.c — strict UTF-8 validation with an ASCII fast path.
 *
 * Most text in events is ASCII (ids, English feedback), so a string of at
 * least eight bytes is first checked a word at a time for any high bit;
 * otherwise the loop skips ASCII runs eight bytes at a time and walks
 * multi-byte sequences one by one.  The multi-byte rules are the table of RFC 3629 §4: the
 * second byte's range depends on the lead byte (E0, ED, F0, F4 narrow it
 * to exclude overlongs, surrogates and code points above U+10FFFF).
 *
 * Stateless; any thread.
 */
#include "consumer/utf8.h"

#include <stdint.h>
#include <string.h>

#define UTF8_HIGH_BITS 0x8080808080808080ULL

static int is_cont(uint8_t c) { return (c & 0xC0) == 0x80; }

size_t utf8_valid_prefix(const void *buf, size_t len) {
    const uint8_t *s = buf;
    size_t i = 0;

    if (len >= 8) {
        /* all ASCII?  OR every word, the last one overlapping, no branch */
        uint64_t w, any = 0;
        for (i = 0; i + 8 <= len; i += 8) {
            memcpy(&w, s + i, sizeof w);
            any |= w;
        }
        memcpy(&w, s + len - 8, sizeof w);
        if (!((any | w) & UTF8_HIGH_BITS)) return len;
        i = 0;
    }
    while (i < len) {
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            if (w & UTF8_HIGH_BITS) break;
            i += 8;
        }
        while (i < len && s[i] < 0x80) i++;
        if (i == len) break;

        uint8_t c = s[i];
        size_t need;          /* continuation bytes after the lead */
        uint8_t lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;        /* overlong */
            else if (c == 0xED) hi = 0x9F;   /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;        /* overlong */
            else if (c == 0xF4) hi = 0x8F;   /* above U+10FFFF */
        } else {
            return i;   /* 80..C1 (continuation or overlong lead), F5..FF */
        }
        if (len - i <= need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++) {
            if (!is_cont(s[i + k])) return i;
        }
        i += need + 1;
    }
    return len;
}
