/*
 * run.c — `rapport run`: reads the configuration (file, then flags), sets
 * up signals, starts the metrics and health endpoints (their own HTTP
 * thread) and runs the consumer on this thread until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/config.h"
#include "common/http.h"
#include "common/log.h"
#include "consumer/metrics.h"
#include "common/version.h"
#include "consumer/consumer.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: rapport run [-c FILE] [-b BROKERS] [-t TOPIC] [-G GROUP] [-r REDIS_URL]\n"
            "                   [-X key=value]...\n\n"
            "  -c FILE       configuration file of key = value lines\n"
            "  -b BROKERS    Kafka bootstrap servers (key brokers)\n"
            "  -t TOPIC      input topic (key topic)\n"
            "  -G GROUP      consumer group (key group)\n"
            "  -r REDIS_URL  redis://[:password@]host[:port][/db] or unix:///path.sock\n"
            "  -X key=value  any configuration key, or kafka.<property> for librdkafka\n\n"
            "Flags override the file.  SIGTERM or SIGINT: write the batch in hand,\n"
            "commit, leave the group, exit 0.\n\n");
    config_print_help(out);
}

int cmd_run(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    char err[1024];
    const char *file = NULL;
    int opt;
    /* First pass: the file, so that flags override it whatever their order. */
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:b:t:G:r:X:h", longopts, NULL)) != -1) {
        if (opt == 'c') file = optarg;
        if (opt == 'h') {
            run_usage(stdout);
            return 0;
        }
        if (opt == '?') {
            run_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rapport run: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    config_t *conf = config_new();
    if (!conf) return 1;
    metrics_t *metrics = NULL;
    consumer_t *c = NULL;
    http_server_t *http = NULL;
    int rc = 2;
    if (file && config_load_file(conf, file, err, sizeof(err)) != 0) goto bad;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:b:t:G:r:X:h", longopts, NULL)) != -1) {
        const char *key = NULL;
        switch (opt) {
        case 'b': key = "brokers"; break;
        case 't': key = "topic"; break;
        case 'G': key = "group"; break;
        case 'r': key = "redis_url"; break;
        case 'X':
            if (config_set_pair(conf, optarg, err, sizeof(err)) != 0) goto bad;
            continue;
        default: continue;
        }
        if (config_set(conf, key, optarg, err, sizeof(err)) != 0) goto bad;
    }
    if (config_validate(conf, err, sizeof(err)) != 0) goto bad;
    log_level_t lvl;
    log_level_parse(conf->log_level, &lvl);
    log_set_level(lvl);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* /healthz fails when the main loop has not come round for longer
     * than any wait it does on purpose: a Redis call can take two
     * timeouts (connect, then the command). */
    metrics = metrics_new(RAPPORT_VERSION, 10000 + 2 * conf->redis_timeout_ms);
    if (!metrics) {
        snprintf(err, sizeof(err), "out of memory");
        goto bad;
    }
    c = consumer_new(conf, metrics, err, sizeof(err));
    if (!c) goto bad;
    if (*conf->metrics_listen) {
        char herr[512];
        http = metrics_serve(metrics, conf->metrics_listen, herr, sizeof(herr));
        if (!http) {
            snprintf(err, sizeof(err), "metrics_listen: %s", herr);
            goto bad;
        }
        log_info("serving /metrics, /healthz and /readyz", "addr=%s",
                 http_server_address(http));
    }
    log_info("rapport starting", "version=%s", RAPPORT_VERSION);
    rc = consumer_run(c, &stop_requested) == 0 ? 0 : 1;
    goto out;
bad:
    fprintf(stderr, "rapport run: %s\n", err);
    rc = 2;
out:
    http_server_stop(http); /* before what its thread reads goes away */
    consumer_free(c);
    metrics_free(metrics);
    config_free(conf);
    return rc;
}
