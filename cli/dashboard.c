/*
 * dashboard.c — `rapport dashboard`: serves the leaders' view as a web
 * page and as JSON (report/dashboard.h) until SIGTERM or SIGINT.  The
 * main thread waits; the HTTP server has its own.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/clock.h"
#include "common/http.h"
#include "common/log.h"
#include "report/dashboard.h"

static volatile sig_atomic_t dashboard_stop_requested;

static void on_signal(int sig) {
    (void)sig;
    dashboard_stop_requested = 1;
}

typedef struct dashboard_cli {
    const char *listen;
    const char *auth_file;
    const char *tls_cert;
    const char *tls_key;
} dashboard_cli_t;

static void dashboard_usage(FILE *out) {
    fprintf(out,
            "usage: rapport dashboard [-c FILE] [-r REDIS_URL] [-X key=value]... [--listen ADDR]\n"
            "                         [--auth-file FILE] [--tls-cert FILE --tls-key FILE]\n\n"
            "The leaders' view as a web page that refreshes itself every 5 s, and its\n"
            "data at /api/report.json?days=N.  Reads Redis only.\n\n"
            "  -c FILE           configuration file (prefix, bucket_ms, window_buckets, redis_url,\n"
            "                    dashboard_auth_file)\n"
            "  -r REDIS_URL      redis://[:password@]host[:port][/db] or unix:///path.sock\n"
            "  -X key=value      any configuration key\n"
            "  --listen ADDR     [host]:port (default 127.0.0.1:8088: this machine only)\n"
            "  --auth-file FILE  HTTP basic auth: FILE holds one line user:password\n"
            "                    (or the key dashboard_auth_file); never a password flag\n"
            "  --tls-cert FILE   HTTPS: the certificate (PEM), with --tls-key\n"
            "  --tls-key FILE    HTTPS: the private key (PEM)\n\n"
            "Listening beyond loopback without --auth-file and TLS shows the customers'\n"
            "words to anyone who can reach the port.\n");
}

static int dashboard_opt(void *opaque, int opt, const char *arg, char *errstr,
                         size_t errstr_size) {
    dashboard_cli_t *o = opaque;
    (void)errstr;
    (void)errstr_size;
    switch (opt) {
    case 'l': o->listen = arg; break;
    case 'a': o->auth_file = arg; break;
    case 'C': o->tls_cert = arg; break;
    case 'K': o->tls_key = arg; break;
    }
    return 0;
}

int cmd_dashboard(int argc, char **argv) {
    static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"auth-file", required_argument, NULL, 'a'},
                                             {"tls-cert", required_argument, NULL, 'C'},
                                             {"tls-key", required_argument, NULL, 'K'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    static const cli_flag_t flags[] = {{'r', "redis_url"}, {0, NULL}};
    char err[1024];
    dashboard_cli_t o = {.listen = "127.0.0.1:8088"};
    char *user = NULL, *password = NULL, *cert = NULL, *key = NULL;
    dashboard_t *d = NULL;
    int rc = 2;
    config_t *conf = config_new();
    if (!conf) return 1;
    switch (cli_config_parse(argc, argv, "c:r:X:h", longopts, flags, dashboard_opt, &o, conf, err,
                             sizeof(err))) {
    case CLI_OK: break;
    case CLI_HELP:
        dashboard_usage(stdout);
        rc = 0;
        goto out;
    default:
        if (!err[0]) {
            dashboard_usage(stderr);
            goto out;
        }
        goto bad;
    }
    log_level_t lvl;
    log_level_parse(conf->log_level, &lvl);
    log_set_level(lvl);
    const char *auth_file = o.auth_file ? o.auth_file : conf->dashboard_auth_file;
    if (*auth_file && dashboard_read_auth_file(auth_file, &user, &password, err, sizeof(err)) != 0)
        goto bad;
    if (!o.tls_cert != !o.tls_key) {
        snprintf(err, sizeof(err), "--tls-cert and --tls-key go together");
        goto bad;
    }
    if (o.tls_cert && !http_tls_supported()) {
        snprintf(err, sizeof(err), "--tls-cert: this libmicrohttpd was built without TLS; "
                                   "put a TLS proxy in front of the dashboard instead");
        goto bad;
    }
    if (o.tls_cert && (!(cert = dashboard_read_file(o.tls_cert, err, sizeof(err))) ||
                       !(key = dashboard_read_file(o.tls_key, err, sizeof(err)))))
        goto bad;
    dashboard_conf_t dc = {.listen = o.listen,
                           .redis_url = conf->redis_url,
                           .redis_tls = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                         conf->redis_tls_key_file, conf->redis_tls_server_name},
                           .redis_timeout_ms = (int)conf->redis_timeout_ms,
                           .report = {.prefix = conf->prefix,
                                      .bucket_ms = conf->score.bucket_ms,
                                      .days = conf->score.window_buckets,
                                      .alerts = REPORT_ALERTS,
                                      .lowest = REPORT_LOWEST},
                           .auth_user = user,
                           .auth_password = password,
                           .tls_cert_pem = cert,
                           .tls_key_pem = key};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = dashboard_start(&dc, err, sizeof(err));
    if (!d) {
        rc = 1;
        fprintf(stderr, "rapport dashboard: --listen %s\n", err);
        goto out;
    }
    log_info("dashboard serving", "url=%s auth=%s", dashboard_url(d), user ? "basic" : "none");
    bool loopback = !strncmp(o.listen, "127.", 4) || !strncmp(o.listen, "[::1]:", 6) ||
                    !strncmp(o.listen, "localhost:", 10);
    if (!loopback && (!user || !cert))
        log_warn("dashboard reachable beyond this machine without a password and TLS: "
                 "anyone who reaches it reads the customers' words",
                 "listen=%s auth=%s tls=%s", o.listen, user ? "basic" : "none",
                 cert ? "yes" : "no");
    printf("rapport dashboard: %s\n", dashboard_url(d));
    fflush(stdout);
    while (!dashboard_stop_requested) clock_sleep_ms(200);
    rc = 0;
    goto out;
bad:
    fprintf(stderr, "rapport dashboard: %s\n", err);
    rc = 2;
out:
    dashboard_stop(d);
    free(user);
    if (password) memset(password, 0, strlen(password));
    free(password);
    if (key) memset(key, 0, strlen(key));
    free(cert);
    free(key);
    config_free(conf);
    return rc;
}
