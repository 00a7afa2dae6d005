/*
 * escape.c — see escape.h.
 */
#include "common/escape.h"

#include <string.h>

static const char hex[] = "0123456789abcdef";

const char *escape_bytes(const void *p, size_t n, size_t max, char *out, size_t size) {
    const unsigned char *s = p;
    size_t o = 0, i = 0;
    if (!size) return out;
    if (max && n > max) n = max + 1; /* one more than allowed: cut below */
    for (; i < n; i++) {
        if (max && i == max) break;
        unsigned char c = s[i];
        char buf[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c == '\n') {
            buf[k++] = '\\';
            buf[k++] = 'n';
        } else if (c >= 0x20 && c < 0x7f) {
            buf[k++] = (char)c;
        } else {
            buf[k++] = '\\';
            buf[k++] = 'x';
            buf[k++] = hex[c >> 4];
            buf[k++] = hex[c & 15];
        }
        if (o + k + 4 > size) break; /* room for "..." and the NUL */
        memcpy(out + o, buf, k);
        o += k;
    }
    if (i < n && o + 4 <= size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
