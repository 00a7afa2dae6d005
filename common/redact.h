/*
 * redact.h — URLs made safe to print: the password in a URL's user info
 * becomes "***" (redis://alice:***@host:6379/0).  Every log line, error
 * message, metric label and help text that shows a URL given by the user
 * goes through redact_url().  Pure function, any thread.
 */
#ifndef RAPPORT_REDACT_H
#define RAPPORT_REDACT_H

#include <stddef.h>

/* Writes url into out[size] (cut to fit) with the password of its user
 * info replaced by three stars: redis://user:secret@host becomes
 * redis://user:(stars)@host, and https://token@host (a user part alone,
 * which may be a token) becomes https://(stars)@host.  The user
 * info ends at the last '@', as rapport's Redis URL parser reads it.
 * Returns out. */
const char *redact_url(const char *url, char *out, size_t size);

#endif
