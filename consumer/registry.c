/*
 * registry.c — a client for a Confluent-compatible schema registry: one
 * `GET <url>/schemas/ids/<id>` per schema id the decoder has not seen, on
 * one libcurl easy handle kept for the process (so the connection, and a
 * TLS session, are reused), its answer parsed with jansson.
 *
 * What an answer means:
 *   200 {"schema": "<text>"}            SCHEMA_FOUND (the text)
 *   404 {"error_code": 40403, …}        SCHEMA_NOT_FOUND (dead-lettered as
 *                                       unknown_schema by the decoder)
 *   anything else                       SCHEMA_UNAVAILABLE: nothing is
 *                                       dead-lettered, the caller retries
 * "Anything else" includes a 404 without error_code 40403 (a proxy's page,
 * or a schema_registry_url with a wrong path: dead-lettering every message
 * as unknown_schema would be the wrong answer to a typo), 401/403, 5xx, a
 * redirect, a 200 whose body is not {"schema": "<string>"}, a body over
 * RESPONSE_MAX_BYTES, and every transport error (refused, timed out, TLS).
 *
 * Back-off.  After an unavailable answer the registry is not asked again
 * for backoff_ms (REGISTRY_BACKOFF_MIN_MS, doubling up to
 * REGISTRY_BACKOFF_MAX_MS); fetches in that time fail at once with the last
 * error.  A registry that times out therefore blocks the consumer's thread
 * for timeout_ms once per back-off, not once per message.  The change of
 * state is logged once each way; the password never appears in a log line
 * or an errstr.
 *
 * Owns: the curl handle, its header list, the response buffer, copies of
 * the URL and credentials (the password is wiped on free).
 * Thread: the decoder's thread (one owner; nothing is locked).
 */
#include "consumer/registry.h"

#include <assert.h>
#include <errno.h>
#include <unistd.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

/* A schema is at most 1 MiB in a schema file (decode.c); its JSON-escaped
 * form in an answer can be up to about twice that. */
#define RESPONSE_MAX_BYTES (4 * 1024 * 1024)
#define CONFLUENT_SCHEMA_NOT_FOUND 40403
/* How much of a server's own error message goes into errstr. */
#define SERVER_MESSAGE_MAX 160

struct registry {
    CURL *curl;
    struct curl_slist *headers;
    char *base;                 /* the URL without a trailing '/'; owned */
    char *user, *password;      /* owned; NULL without basic auth */
    char curl_err[CURL_ERROR_SIZE];

    char *body;                 /* the last answer's bytes, NUL-terminated; owned */
    size_t body_len, body_cap;
    bool body_too_big;

    bool down;                  /* the last request got no usable answer */
    int backoff_ms;
    int64_t retry_at;           /* CLOCK_MONOTONIC ms; ask again from then */
    char last_err[512];
};

/* Makes s safe inside a logfmt quoted value: quotes become ', backslashes
 * /, control characters spaces. */
static void text_clean(char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') *s = '\'';
        else if (c == '\\') *s = '/';
        else if (c < 0x20 || c == 0x7F) *s = ' ';
    }
}

int registry_url_check(const char *url, char *errstr, size_t errstr_size) {
    CURLU *u = curl_url();
    char *part = NULL;
    int rc = -1;

    if (!u) {
        snprintf(errstr, errstr_size, "schema_registry_url: out of memory");
        return -1;
    }
    /* The URL itself is never echoed: it may hold a password. */
    if (!url || !*url) {
        snprintf(errstr, errstr_size, "schema_registry_url: must not be empty");
        goto done;
    }
    if (strchr(url, ',')) {
        snprintf(errstr, errstr_size,
                 "schema_registry_url: one URL only (a comma-separated list is not supported)");
        goto done;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        snprintf(errstr, errstr_size, "schema_registry_url: must start with http:// or https://");
        goto done;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(errstr, errstr_size, "schema_registry_url: not a URL (%s)",
                 curl_url_strerror(uc));
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
        snprintf(errstr, errstr_size,
                 "schema_registry_url: no credentials in the URL; set schema_registry_user and "
                 "schema_registry_password");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
        snprintf(errstr, errstr_size, "schema_registry_url: must have no ?query or #fragment");
        goto done;
    }
    rc = 0;

done:
    curl_free(part);
    curl_url_cleanup(u);
    return rc;
}

/* The normalised form of a checked URL without its trailing '/'s (caller
 * frees with free()), or NULL when libcurl ran out of memory. */
static char *url_base(const char *url) {
    CURLU *u = curl_url();
    char *norm = NULL, *base = NULL;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &norm, 0) == CURLUE_OK) {
        base = xstrdup(norm);
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/') base[--n] = '\0';
    }
    curl_free(norm);
    curl_url_cleanup(u);
    return base;
}

/* CURLOPT_WRITEFUNCTION: appends to r->body, up to RESPONSE_MAX_BYTES. */
static size_t body_append(char *data, size_t size, size_t nmemb, void *opaque) {
    registry_t *r = opaque;
    size_t n = size * nmemb;

    if (n > RESPONSE_MAX_BYTES - r->body_len) {
        r->body_too_big = true;
        return 0;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        r->body = xrealloc(r->body, cap);
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

registry_t *registry_new(const char *url, const char *user, const char *password,
                         int timeout_ms, char *errstr, size_t errstr_size) {
    registry_t *r = NULL;
    char err[256];

    if (registry_url_check(url, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "%s", err);
        return NULL;
    }
    if (timeout_ms <= 0) {
        snprintf(errstr, errstr_size, "registry: timeout_ms %d must be positive", timeout_ms);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errstr, errstr_size, "registry: libcurl failed to initialise");
        return NULL;
    }
    r = xcalloc(1, sizeof *r);
    if (!(r->base = url_base(url))) goto oom;
    if (user && *user) {
        r->user = xstrdup(user);
        r->password = xstrdup(password ? password : "");
    }
    if (!(r->headers = curl_slist_append(
              NULL, "Accept: application/vnd.schemaregistry.v1+json, "
                    "application/vnd.schemaregistry+json, application/json")))
        goto oom;
    if (!(r->curl = curl_easy_init())) goto oom;

    CURL *c = r->curl;
    long connect_ms = timeout_ms < REGISTRY_CONNECT_TIMEOUT_MS ? timeout_ms
                                                               : REGISTRY_CONNECT_TIMEOUT_MS;
    /* No signals: librdkafka's threads share the process (libcurl's
     * alarm()-based DNS timeout is not thread-safe). */
    if (curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms) ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) ||
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers) ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, "rapport") ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_err) ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_append) ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r)) {
        snprintf(errstr, errstr_size, "registry: this libcurl lacks a needed option");
        goto fail;
    }
    if (r->user && (curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) ||
                    curl_easy_setopt(c, CURLOPT_USERNAME, r->user) ||
                    curl_easy_setopt(c, CURLOPT_PASSWORD, r->password))) {
        snprintf(errstr, errstr_size, "registry: this libcurl cannot do basic auth");
        goto fail;
    }
    r->backoff_ms = REGISTRY_BACKOFF_MIN_MS;
    return r;

oom:
    snprintf(errstr, errstr_size, "registry: out of memory");
fail:
    registry_free(r); /* and curl_global_cleanup() */
    return NULL;
}

int registry_set_ca_file(registry_t *r, const char *ca_file, char *errstr, size_t errstr_size) {
    if (access(ca_file, R_OK) != 0) {
        snprintf(errstr, errstr_size, "schema_registry_ca_file: %s: %s", ca_file, strerror(errno));
        return -1;
    }
    if (curl_easy_setopt(r->curl, CURLOPT_CAINFO, ca_file) != CURLE_OK) {
        snprintf(errstr, errstr_size, "schema_registry_ca_file: this libcurl cannot set a CA file");
        return -1;
    }
    return 0;
}

void registry_free(registry_t *r) {
    if (!r) return;
    if (r->curl) curl_easy_cleanup(r->curl);
    curl_slist_free_all(r->headers);
    if (r->password) explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r->user);
    free(r->base);
    free(r->body);
    free(r);
    curl_global_cleanup();
}

/* From a Confluent error body {"error_code": N, "message": "…"}: the code
 * (0 when there is none) and the message (cleaned and cut, "" when none). */
static long error_body(const char *body, size_t len, char *msg, size_t msg_size) {
    json_t *root = json_loadb(body, len, 0, NULL);
    long code = 0;

    msg[0] = '\0';
    if (json_is_object(root)) {
        json_t *c = json_object_get(root, "error_code");
        const char *m = json_string_value(json_object_get(root, "message"));
        if (json_is_integer(c)) code = (long)json_integer_value(c);
        if (m) {
            snprintf(msg, msg_size, "%s", m);
            text_clean(msg);
        }
    }
    json_decref(root);
    return code;
}

/* The registry answered 200: take the schema text from the body.  Returns
 * SCHEMA_FOUND with *json and *len, or SCHEMA_UNAVAILABLE with errstr. */
static schema_lookup_t found_body(const char *base, const char *where, const char *body,
                                  size_t body_len, char **json, size_t *len, char *errstr,
                                  size_t errstr_size) {
    json_error_t jerr;
    json_t *root = json_loadb(body, body_len, 0, &jerr);
    schema_lookup_t res = SCHEMA_UNAVAILABLE;

    if (!root) {
        snprintf(errstr, errstr_size, "%s: HTTP 200 but the body is not JSON (%s at byte %d)",
                 where, jerr.text, jerr.position);
        return SCHEMA_UNAVAILABLE;
    }
    json_t *schema = json_is_object(root) ? json_object_get(root, "schema") : NULL;
    if (!json_is_string(schema)) {
        snprintf(errstr, errstr_size, "%s: HTTP 200 but the body has no \"schema\" string",
                 where);
        goto done;
    }
    const char *type = json_string_value(json_object_get(root, "schemaType"));
    if (type && strcasecmp(type, "AVRO") != 0) {
        /* Handed over as it is: the decoder finds it unusable and
         * dead-letters its messages as incompatible_schema. */
        char q[64];
        log_warn("schema registry returned a non-Avro schema", "url=%s schema_type=%s", base,
                 log_quote(type, q, sizeof q));
    }
    size_t n = json_string_length(schema);
    *json = xstrndup(json_string_value(schema), n);
    *len = n;
    res = SCHEMA_FOUND;

done:
    json_decref(root);
    return res;
}

/* One request for id, and what its answer means. */
static schema_lookup_t request(registry_t *r, uint32_t id, char **json, size_t *len,
                               char *errstr, size_t errstr_size) {
    char url[2048], where[2100];
    long status = 0;

    snprintf(url, sizeof url, "%s/schemas/ids/%" PRIu32, r->base, id);
    snprintf(where, sizeof where, "GET %s", url);
    r->body_len = 0;
    r->body_too_big = false;
    r->curl_err[0] = '\0';
    if (curl_easy_setopt(r->curl, CURLOPT_URL, url) != CURLE_OK) {
        snprintf(errstr, errstr_size, "%s: libcurl refused the URL", where);
        return SCHEMA_UNAVAILABLE;
    }
    CURLcode cc = curl_easy_perform(r->curl);
    if (cc != CURLE_OK) {
        if (r->body_too_big)
            snprintf(errstr, errstr_size, "%s: the answer is over %d bytes", where,
                     RESPONSE_MAX_BYTES);
        else
            snprintf(errstr, errstr_size, "%s: %s", where,
                     r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
        return SCHEMA_UNAVAILABLE;
    }
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    return registry_answer_parse(r->base, where, status, r->body ? r->body : "", r->body_len,
                                 json, len, errstr, errstr_size);
}

schema_lookup_t registry_answer_parse(const char *base, const char *where, long status,
                                      const char *body, size_t body_len, char **json,
                                      size_t *len, char *errstr, size_t errstr_size) {
    char msg[SERVER_MESSAGE_MAX + 1];

    if (status == 200) return found_body(base, where, body, body_len, json, len, errstr,
                                         errstr_size);

    long code = error_body(body, body_len, msg, sizeof msg);
    if (status == 404 && code == CONFLUENT_SCHEMA_NOT_FOUND) return SCHEMA_NOT_FOUND;
    if (status == 404) {
        snprintf(errstr, errstr_size,
                 "%s: HTTP 404 without Confluent's error_code %d (schema not found); "
                 "is schema_registry_url right?",
                 where, CONFLUENT_SCHEMA_NOT_FOUND);
    } else if (status == 401 || status == 403) {
        snprintf(errstr, errstr_size, "%s: HTTP %ld; check schema_registry_user/password%s%s%s",
                 where, status, *msg ? " (" : "", msg, *msg ? ")" : "");
    } else if (status >= 300 && status < 400) {
        snprintf(errstr, errstr_size,
                 "%s: HTTP %ld redirect (not followed); set schema_registry_url to the "
                 "registry's own address",
                 where, status);
    } else if (code) {
        snprintf(errstr, errstr_size, "%s: HTTP %ld: error_code %ld: %s", where, status, code,
                 msg);
    } else {
        snprintf(errstr, errstr_size, "%s: HTTP %ld", where, status);
    }
    return SCHEMA_UNAVAILABLE;
}

schema_lookup_t registry_fetch(void *opaque, uint32_t id, char **json, size_t *len,
                               char *errstr, size_t errstr_size) {
    registry_t *r = opaque;
    int64_t now = clock_ms();
    char q[600];

    assert(errstr_size > 0);
    if (r->down && now < r->retry_at) {
        snprintf(errstr, errstr_size, "not asked again for %lld ms after: %s",
                 (long long)(r->retry_at - now), r->last_err);
        return SCHEMA_UNAVAILABLE;
    }
    schema_lookup_t res = request(r, id, json, len, errstr, errstr_size);
    if (res != SCHEMA_UNAVAILABLE) {
        if (r->down) log_info("schema registry answers again", "url=%s", r->base);
        r->down = false;
        r->backoff_ms = REGISTRY_BACKOFF_MIN_MS;
        return res;
    }
    text_clean(errstr);
    snprintf(r->last_err, sizeof r->last_err, "%s", errstr);
    if (!r->down) {
        log_warn("schema registry unavailable, retrying with backoff", "url=%s err=%s", r->base,
                 log_quote(errstr, q, sizeof q));
        r->down = true;
        r->backoff_ms = REGISTRY_BACKOFF_MIN_MS;
    } else {
        r->backoff_ms = r->backoff_ms * 2 > REGISTRY_BACKOFF_MAX_MS ? REGISTRY_BACKOFF_MAX_MS
                                                                    : r->backoff_ms * 2;
    }
    r->retry_at = clock_ms() + r->backoff_ms;
    return SCHEMA_UNAVAILABLE;
}
