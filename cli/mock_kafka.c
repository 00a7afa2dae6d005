/*
 * mock_kafka.c — `rapport mock-kafka`: librdkafka's mock cluster as a
 * standalone broker for local work and tests.
 *
 * Creates the cluster on a dummy producer handle, creates the requested
 * topics, prints the bootstrap address as the first line on stdout, then
 * waits.  The mock cluster runs on librdkafka's own threads; the main
 * thread only sleeps and watches the flag that SIGINT and SIGTERM set.
 * Topics that clients ask for and that were not created here are created
 * by the mock cluster itself on first use.
 */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/clock.h"
#include "common/log.h"

#define MAX_TOPICS 64
#define DEFAULT_PARTITIONS 4

static volatile sig_atomic_t mock_stop;

static void on_signal(int sig) {
    (void)sig;
    mock_stop = 1;
}

static void usage(FILE *f) {
    fputs("usage: rapport mock-kafka [--brokers N] [--topic NAME [--partitions N]]...\n"
          "\n"
          "Runs librdkafka's mock Kafka cluster until SIGINT or SIGTERM.  The first\n"
          "line on stdout is the bootstrap address (host:port,...).  Topics not\n"
          "created with --topic are created on first use.  Data lives in memory only.\n"
          "\n"
          "      --brokers N       number of brokers, 1..16 (default 1)\n"
          "      --topic NAME      create topic NAME (repeatable)\n"
          "      --partitions N    partitions of the --topic just before, 1..1024\n"
          "                        (default 4); the replication factor is\n"
          "                        min(brokers, 3)\n"
          "  -h, --help            this text\n",
          f);
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

typedef struct mock_topic {
    const char *name;
    int partitions;
} mock_topic_t;

enum { OPT_BROKERS = 256, OPT_TOPIC, OPT_PARTITIONS };

static const struct option long_opts[] = {
    {"brokers", required_argument, NULL, OPT_BROKERS},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"partitions", required_argument, NULL, OPT_PARTITIONS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, or the exit status (0 for --help, 2 for a bad
 * argument, with the message printed). */
static int parse_args(int argc, char **argv, int *brokers, mock_topic_t *topics, int *n_topics) {
    optind = 0;   /* glibc: start over, whatever parsed argv before */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case OPT_BROKERS:
            if (parse_int(optarg, 1, 16, brokers) != 0) {
                fprintf(stderr, "rapport mock-kafka: --brokers: expected 1..16, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_TOPIC:
            if (*n_topics == MAX_TOPICS) {
                fprintf(stderr, "rapport mock-kafka: --topic: at most %d topics\n", MAX_TOPICS);
                return 2;
            }
            if (optarg[0] == '\0') {
                fprintf(stderr, "rapport mock-kafka: --topic: empty name\n");
                return 2;
            }
            topics[(*n_topics)++] = (mock_topic_t){optarg, DEFAULT_PARTITIONS};
            break;
        case OPT_PARTITIONS:
            if (*n_topics == 0) {
                fprintf(stderr, "rapport mock-kafka: --partitions must follow a --topic\n");
                return 2;
            }
            if (parse_int(optarg, 1, 1024, &topics[*n_topics - 1].partitions) != 0) {
                fprintf(stderr,
                        "rapport mock-kafka: --partitions: expected 1..1024, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "rapport mock-kafka: option %s needs a value\n", opt);
            return 2;
        default:
            fprintf(stderr, "rapport mock-kafka: unknown option %s (see --help)\n", opt);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rapport mock-kafka: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return -1;
}

int cmd_mock_kafka(int argc, char **argv) {
    int brokers = 1, n_topics = 0;
    mock_topic_t topics[MAX_TOPICS];
    int status = parse_args(argc, argv, &brokers, topics, &n_topics);
    if (status >= 0)
        return status;

    char errstr[512];
    rd_kafka_mock_cluster_t *mc = NULL;
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    /* The dummy handle has no bootstrap.servers, on purpose: keep its notice quiet. */
    rd_kafka_conf_set(kc, "log_level", "4", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "rapport mock-kafka: cannot create the librdkafka handle: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "rapport mock-kafka: cannot create the mock cluster\n");
        goto fail;
    }
    int replication = brokers < 3 ? brokers : 3;
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(mc, topics[i].name, topics[i].partitions, replication);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "rapport mock-kafka: topic %s: %s\n", topics[i].name,
                    rd_kafka_err2str(e));
            goto fail;
        }
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    log_info("mock kafka cluster up", "bootstrap=%s brokers=%d topics=%d", bootstrap, brokers,
             n_topics);

    while (!mock_stop) clock_sleep_ms(100);
    log_info("mock kafka cluster stopping", NULL);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
fail:
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 1;
}
