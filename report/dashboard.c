/*
 * dashboard.c — see dashboard.h.  The page is report/dashboard.html,
 * built into the binary with the assembler's .incbin (so it stays a file
 * one can edit and open); the JSON comes from report.c.  Handlers run on
 * the HTTP server's thread; the mutex keeps them safe on whatever thread
 * libmicrohttpd runs them.
 */
#include "report/dashboard.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/http.h"
#include "common/log.h"

__asm__(".section .rodata\n"
        ".global dashboard_page\n"
        ".type dashboard_page, @object\n"
        "dashboard_page:\n"
        ".incbin \"report/dashboard.html\"\n"
        ".global dashboard_page_end\n"
        "dashboard_page_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char dashboard_page[], dashboard_page_end[];

struct dashboard {
    http_server_t *http;
    char *redis_url;
    rconn_tls_conf_t tls;        /* strings owned */
    char *prefix;
    int redis_timeout_ms;
    report_opts_t report;
    pthread_mutex_t lock;        /* guards redis and last_skipped */
    rconn_t *redis;         /* NULL: connect on the next request */
    char last_skipped[300];
    char url[320];
};

static int on_page(void *opaque, char **body, size_t *len, const char **ctype) {
    (void)opaque;
    *len = (size_t)(dashboard_page_end - dashboard_page);
    *body = xmalloc(*len);
    memcpy(*body, dashboard_page, *len);
    *ctype = "text/html; charset=utf-8";
    return 200;
}

/* A JSON error object {"error": msg} as the body. */
static int json_error(int status, const char *msg, char **body, size_t *len, const char **ctype) {
    json_t *j = json_pack("{s:s}", "error", msg);
    char *s = j ? json_dumps(j, 0) : NULL;
    json_decref(j);
    if (!s) s = xstrdup("{\"error\": \"?\"}");
    *body = s;
    *len = strlen(s);
    *ctype = "application/json";
    return status;
}

static int on_json(void *opaque, const http_request_t *req, char **body, size_t *len,
                   const char **ctype) {
    dashboard_t *d = opaque;
    report_opts_t o = d->report;
    const char *days = http_request_arg(req, "days");
    if (days) {
        char *end;
        errno = 0;
        long v = strtol(days, &end, 10);
        if (!*days || *end || errno || v < 1 || v > 100000)
            return json_error(400, "days must be a number in 1..100000", body, len, ctype);
        o.days = (int)v;
    }
    char err[512], msg[700];
    pthread_mutex_lock(&d->lock);
    report_t *r = NULL;
    if (!d->redis) d->redis = report_connect(d->redis_url, &d->tls, d->redis_timeout_ms, err, sizeof(err));
    if (d->redis) r = report_read(d->redis, &o, err, sizeof(err));
    if (!r && d->redis) { /* dead after any failure: connect afresh next time */
        rconn_free(d->redis);
        d->redis = NULL;
    }
    if (r) report_warn_skipped(r, d->last_skipped, sizeof(d->last_skipped));
    pthread_mutex_unlock(&d->lock);
    if (!r) {
        char q[600];
        log_warn("dashboard cannot read Redis", "err=%s", log_quote(err, q, sizeof(q)));
        snprintf(msg, sizeof(msg), "redis: %s", err);
        return json_error(503, msg, body, len, ctype);
    }
    *body = report_json_text(r);
    report_free(r);
    if (!*body) return 500;
    *len = strlen(*body);
    *ctype = "application/json";
    return 200;
}

static const http_route_t dashboard_routes[] = {
    {"/", on_page, NULL},
    {"/index.html", on_page, NULL},
    {"/api/report.json", NULL, on_json},
};

dashboard_t *dashboard_start(const dashboard_conf_t *conf, char *errstr, size_t errstr_size) {
    dashboard_t *d = xcalloc(1, sizeof(*d));
    d->redis_url = xstrdup(conf->redis_url);
    d->tls.ca_file = xstrdup(conf->redis_tls.ca_file ? conf->redis_tls.ca_file : "");
    d->tls.cert_file = xstrdup(conf->redis_tls.cert_file ? conf->redis_tls.cert_file : "");
    d->tls.key_file = xstrdup(conf->redis_tls.key_file ? conf->redis_tls.key_file : "");
    d->tls.server_name = xstrdup(conf->redis_tls.server_name ? conf->redis_tls.server_name : "");
    d->prefix = xstrdup(conf->report.prefix);
    d->redis_timeout_ms = conf->redis_timeout_ms;
    d->report = conf->report;
    d->report.prefix = d->prefix;
    pthread_mutex_init(&d->lock, NULL);
    http_options_t ho = {.auth_user = conf->auth_user,
                         .auth_password = conf->auth_password,
                         .realm = "rapport dashboard",
                         .tls_cert_pem = conf->tls_cert_pem,
                         .tls_key_pem = conf->tls_key_pem};
    d->http = http_server_start_opts(conf->listen, dashboard_routes,
                                     sizeof(dashboard_routes) / sizeof(dashboard_routes[0]), d,
                                     &ho, errstr, errstr_size);
    if (!d->http) {
        dashboard_stop(d);
        return NULL;
    }
    /* A wildcard address is shown as loopback: that one opens here. */
    const char *addr = http_server_address(d->http);
    bool any = !strncmp(addr, "0.0.0.0:", 8) || !strncmp(addr, "[::]:", 5);
    bool tls = conf->tls_cert_pem && conf->tls_key_pem;
    if (any)
        snprintf(d->url, sizeof(d->url), "%s://127.0.0.1:%d/", tls ? "https" : "http",
                 http_server_port(d->http));
    else
        snprintf(d->url, sizeof(d->url), "%s://%s/", tls ? "https" : "http", addr);
    return d;
}

const char *dashboard_url(const dashboard_t *d) { return d->url; }

void dashboard_stop(dashboard_t *d) {
    if (!d) return;
    http_server_stop(d->http); /* first: its thread uses the rest */
    rconn_free(d->redis);
    pthread_mutex_destroy(&d->lock);
    free(d->redis_url);
    free((char *)d->tls.ca_file);
    free((char *)d->tls.cert_file);
    free((char *)d->tls.key_file);
    free((char *)d->tls.server_name);
    free(d->prefix);
    free(d);
}

char *dashboard_read_file(const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        if (cap >= (1u << 20)) {
            snprintf(errstr, errstr_size, "%s: larger than 1 MB", path);
            goto fail;
        }
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    if (ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

int dashboard_read_auth_file(const char *path, char **user, char **password, char *errstr,
                             size_t errstr_size) {
    char *text = dashboard_read_file(path, errstr, errstr_size);
    if (!text) return -1;
    text[strcspn(text, "\r\n")] = '\0';
    char *colon = strchr(text, ':');
    if (!colon || colon == text) {
        snprintf(errstr, errstr_size, "%s: expected one line user:password", path);
        free(text);
        return -1;
    }
    *colon = '\0';
    *user = xstrdup(text);
    *password = xstrdup(colon + 1);
    free(text);
    return 0;
}
