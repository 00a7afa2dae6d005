/*
 * log.c — logfmt on stderr.  The level is process-wide and set once at
 * start-up from the `log_level` key; reads are relaxed atomics.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/escape.h"

static _Atomic int current_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(log_level_t level) { atomic_store(&current_level, (int)level); }
log_level_t log_get_level(void) { return (log_level_t)atomic_load(&current_level); }

int log_level_parse(const char *s, log_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *log_quote(const char *s, char *buf, unsigned long size) {
    if (size < 3) {
        if (size) buf[0] = '\0';
        return buf;
    }
    buf[0] = '"';
    escape_bytes(s, strlen(s), 0, buf + 1, size - 2);
    size_t o = 1 + strlen(buf + 1);
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_emit(log_level_t level, const char *msg, const char *kvfmt, ...) {
    if ((int)level > atomic_load(&current_level)) return;
    char line[2048], quoted[512];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level],
                     log_quote(msg, quoted, sizeof(quoted)));
    if (kvfmt && *kvfmt && n > 0 && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kvfmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, kvfmt, ap);
        va_end(ap);
        if (m > 0) n += m;
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof(line) - 1) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}
