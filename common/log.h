/*
 * log.h — logfmt lines on stderr: ts=… level=… msg="…" key=value…
 *
 * One line per thing worth a human's attention; state changes are logged
 * once by the caller, not per retry.  Thread-safe (one fprintf per line).
 */
#ifndef RAPPORT_LOG_H
#define RAPPORT_LOG_H

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "error", "warn", "info" or "debug".  Returns 0 or -1. */
int log_level_parse(const char *s, log_level_t *out);

/* log_emit(LOG_INFO, "partition assigned", "topic=%s partition=%d", t, p):
 * msg is quoted for the reader; kvfmt (may be NULL) is printf-formatted and
 * appended as is, so values with spaces must be quoted by the caller
 * (log_quote() helps). */
void log_emit(log_level_t level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s between double quotes, escaped by escape_bytes() (common/escape.h),
 * into buf: a logfmt value.  Returns buf. */
const char *log_quote(const char *s, char *buf, unsigned long size);

#define log_error(msg, ...) log_emit(LOG_ERROR, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_emit(LOG_WARN, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_emit(LOG_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...) \
    do { if (log_get_level() >= LOG_DEBUG) log_emit(LOG_DEBUG, msg, __VA_ARGS__); } while (0)

#endif
