/*
 * redact.c — passwords taken out of URLs before they are printed (see
 * redact.h).
 */
#include "common/redact.h"

#include <stdio.h>
#include <string.h>

const char *redact_url(const char *url, char *out, size_t size) {
    if (!size) return out;
    if (!url) url = "";
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
    if (!at) {
        snprintf(out, size, "%s", url);
        return out;
    }
    const char *info = scheme + 3;
    const char *colon = memchr(info, ':', (size_t)(at - info));
    if (colon)
        snprintf(out, size, "%.*s:***%s", (int)(colon - url), url, at);
    else
        snprintf(out, size, "%.*s***%s", (int)(info - url), url, at);
    return out;
}
