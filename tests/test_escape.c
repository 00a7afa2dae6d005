/*
 * test_escape.c — common/escape.c and the logfmt quoting built on it
 * (common/log.c): outside bytes come out printable, one line, cut with
 * "..." at the limit, and never overflow the buffer.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/escape.h"
#include "common/log.h"

Test(escape, table) {
    const struct {
        const char *in;
        size_t n, max;
        const char *want;
    } t[] = {
        {"c-42", 4, 0, "c-42"},
        {"say \"hi\"", 8, 0, "say \\\"hi\\\""},
        {"a\\b", 3, 0, "a\\\\b"},
        {"two\nlines", 9, 0, "two\\nlines"},
        {"nul\0byte", 8, 0, "nul\\x00byte"},
        {"\x1b[2J", 4, 0, "\\x1b[2J"},
        {"Zo\xc3\xab", 4, 0, "Zo\\xc3\\xab"},
        {"abcdef", 6, 4, "abcd..."},
        {"abcd", 4, 4, "abcd"},
        {"", 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char out[64];
        cr_expect_str_eq(escape_bytes(t[i].in, t[i].n, t[i].max, out, sizeof(out)), t[i].want,
                         "case %zu", i);
    }
}

/* A small buffer: cut, marked, NUL-terminated, nothing written past it. */
Test(escape, small_buffer) {
    char out[12];
    memset(out, 'X', sizeof(out));
    escape_bytes("\x01\x02\x03\x04\x05", 5, 0, out, 10);
    cr_expect_str_eq(out, "\\x01...");
    cr_expect_eq(out[10], 'X');
    cr_expect_eq(out[11], 'X');
}

Test(escape, log_quote) {
    char q[32];
    cr_expect_str_eq(log_quote("err \"x\"\n", q, sizeof(q)), "\"err \\\"x\\\"\\n\"");
    cr_expect_str_eq(log_quote("", q, sizeof(q)), "\"\"");
    char small[12];
    log_quote("a long message text", small, sizeof(small));
    cr_expect_str_eq(small, "\"a long...\"");
    char tiny[2];
    cr_expect_str_eq(log_quote("x", tiny, sizeof(tiny)), "");
}
