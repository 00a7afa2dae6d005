/*
 * report.c — `rapport report`: the leaders' view of what rapport keeps in
 * Redis (docs/SPEC.md §9–§10), as a table for people or, with --json, as
 * one JSON object.  Reads Redis only.  One thread.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/log.h"
#include "common/redact.h"
#include "report/report.h"

typedef struct report_cli {
    int days;         /* 0: window_buckets */
    bool json;
} report_cli_t;

static void report_usage(FILE *out) {
    fprintf(out,
            "usage: rapport report [-c FILE] [-r REDIS_URL] [-X key=value]... [--days N] [--json]\n\n"
            "The leaders' view: AI, people and both side by side (efficiency next to\n"
            "empathy), by channel; the organisation's connection index now; follow-through\n"
            "of needs_human alerts; the newest alerts.  Reads Redis only.\n\n"
            "  -c FILE       configuration file (prefix, bucket_ms, window_buckets, redis_url)\n"
            "  -r REDIS_URL  redis://[:password@]host[:port][/db] or unix:///path.sock\n"
            "  -X key=value  any configuration key\n"
            "  --days N      buckets summed, ending with the newest (default window_buckets)\n"
            "  --json        one JSON object (see docs/REDIS.md)\n");
}

static int report_opt(void *opaque, int opt, const char *arg, char *errstr, size_t errstr_size) {
    report_cli_t *o = opaque;
    if (opt == 'j') {
        o->json = true;
        return 0;
    }
    if (opt == 'd') {
        char *end;
        long v = strtol(arg, &end, 10);
        if (*arg == '\0' || *end || v < 1 || v > 100000) {
            snprintf(errstr, errstr_size, "--days: \"%s\" is not a number in 1..100000", arg);
            return -1;
        }
        o->days = (int)v;
    }
    return 0;
}

int cmd_report(int argc, char **argv) {
    static const struct option longopts[] = {{"days", required_argument, NULL, 'd'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    static const cli_flag_t flags[] = {{'r', "redis_url"}, {0, NULL}};
    char err[1024];
    report_cli_t o = {0};
    config_t *conf = config_new();
    if (!conf) return 1;
    switch (cli_config_parse(argc, argv, "c:r:X:h", longopts, flags, report_opt, &o, conf, err,
                             sizeof(err))) {
    case CLI_OK: break;
    case CLI_HELP:
        report_usage(stdout);
        config_free(conf);
        return 0;
    default:
        if (err[0])
            fprintf(stderr, "rapport report: %s\n", err);
        else
            report_usage(stderr);
        config_free(conf);
        return 2;
    }
    log_level_t lvl;
    log_level_parse(conf->log_level, &lvl);
    log_set_level(lvl);
    report_opts_t ro = {.prefix = conf->prefix,
                        .bucket_ms = conf->score.bucket_ms,
                        .days = o.days ? o.days : conf->score.window_buckets,
                        .alerts = REPORT_ALERTS,
                        .lowest = REPORT_LOWEST};
    int rc = 1;
    report_t *r = NULL;
    rconn_tls_conf_t tls = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                            conf->redis_tls_key_file, conf->redis_tls_server_name};
    rconn_t *c = report_connect(conf->redis_url, &tls, (int)conf->redis_timeout_ms, err,
                                sizeof(err));
    if (!c || !(r = report_read(c, &ro, err, sizeof(err)))) {
        char shown[600];
        fprintf(stderr, "rapport report: redis %s: %s\n",
                redact_url(conf->redis_url, shown, sizeof(shown)), err);
        goto out;
    }
    char last[8] = "";
    report_warn_skipped(r, last, sizeof(last));
    if (o.json) {
        char *text = report_json_text(r);
        if (!text) {
            fprintf(stderr, "rapport report: out of memory\n");
            goto out;
        }
        puts(text);
        free(text);
    } else {
        struct winsize ws;
        int cols = isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
                           ws.ws_col >= 60
                       ? ws.ws_col
                       : 100;
        report_text(r, stdout, cols > 100 ? 100 : cols);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    report_free(r);
    rconn_free(c);
    config_free(conf);
    return rc;
}
