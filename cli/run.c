/*
 * run.c — `rapport run`: reads the configuration (file, then flags), sets
 * up signals, starts the metrics and health endpoints (their own HTTP
 * thread) and runs the consumer on this thread until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/config.h"
#include "common/http.h"
#include "common/log.h"
#include "consumer/metrics.h"
#include "common/version.h"
#include "consumer/consumer.h"

static volatile sig_atomic_t stop_requested;
/* Seconds a stop may take before the process ends anyway: set once,
 * before the handlers are installed. */
static unsigned stop_deadline_s;

/* Ends the process at once, without leaving the group: the offsets live
 * in Redis (SPEC §6), so what was not written is read again by the next
 * owner.  Only async-signal-safe calls. */
static void exit_now(const char *msg, size_t len) {
    ssize_t n = write(STDERR_FILENO, msg, len);
    (void)n;
    _exit(1);
}

/* The first SIGTERM or SIGINT stops: the batch in hand is written (within
 * shutdown_timeout_ms) and the group left.  A second one, or a stop still
 * under way stop_deadline_s later (librdkafka 2.0.2's close can wait
 * forever for brokers that have gone), ends the process at once. */
static void on_signal(int sig) {
    (void)sig;
    if (stop_requested) {
        static const char msg[] =
            "level=warn msg=\"second signal: exiting without leaving the group\"\n";
        exit_now(msg, sizeof(msg) - 1);
    }
    stop_requested = 1;
    alarm(stop_deadline_s);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "level=error msg=\"stopping took too long: exiting without "
                              "leaving the group\"\n";
    exit_now(msg, sizeof(msg) - 1);
}

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: rapport run [-c FILE] [-b BROKERS] [-t TOPIC] [-G GROUP] [-r REDIS_URL]\n"
            "                   [-X key=value]...\n\n"
            "  -c FILE       configuration file of key = value lines\n"
            "  -b BROKERS    Kafka bootstrap servers (key brokers)\n"
            "  -t TOPIC      input topic (key topic)\n"
            "  -G GROUP      consumer group (key group)\n"
            "  -r REDIS_URL  redis://[[user]:password@]host[:port][/db], rediss://... (TLS)\n"
            "                or unix:///path.sock; RAPPORT_REDIS_URL or redis_url_file keep\n"
            "                a password off the command line (docs/SECURITY.md)\n"
            "  -X key=value  any configuration key, or kafka.<property> for librdkafka\n\n"
            "Flags override the file.  SIGTERM or SIGINT: write the batch in hand,\n"
            "commit, leave the group, exit 0.\n\n");
    config_print_help(out);
}

int cmd_run(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    static const cli_flag_t flags[] = {
        {'b', "brokers"}, {'t', "topic"}, {'G', "group"}, {'r', "redis_url"}, {0, NULL}};
    char err[1024];
    config_t *conf = config_new();
    metrics_t *metrics = NULL;
    consumer_t *c = NULL;
    http_server_t *http = NULL;
    int rc = 2;
    switch (cli_config_parse(argc, argv, "c:b:t:G:r:X:h", longopts, flags, NULL, NULL, conf, err,
                             sizeof(err))) {
    case CLI_OK: break;
    case CLI_HELP:
        run_usage(stdout);
        config_free(conf);
        return 0;
    default:
        if (!err[0]) {
            run_usage(stderr);
            config_free(conf);
            return 2;
        }
        goto bad;
    }
    if (config_finish(conf, err, sizeof(err)) != 0) goto bad;
    log_level_t lvl;
    log_level_parse(conf->log_level, &lvl);
    log_set_level(lvl);

    /* The drain is bounded by shutdown_timeout_ms plus a write under way
     * (redis_timeout_ms); leaving the group normally takes well under a
     * second more. */
    stop_deadline_s = (unsigned)((conf->shutdown_timeout_ms + conf->redis_timeout_ms) / 1000) + 10;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* /healthz fails when the main loop has not come round for longer
     * than any wait it does on purpose: a Redis call can take two
     * timeouts (connect, then the command). */
    metrics = metrics_new(RAPPORT_VERSION, 10000 + 2 * conf->redis_timeout_ms);
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
