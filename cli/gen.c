/*
 * gen.c — `rapport gen`: produces synthetic customer stories (gen/story.h)
 * to a Kafka topic at a rate, reproducibly from a seed (gen/produce.h).
 *
 * Runs on the main thread; SIGINT and SIGTERM only set a flag that the
 * produce loop polls, after which it flushes what it has sent and prints
 * the summary.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "gen/encode.h"
#include "gen/produce.h"
#include "gen/story.h"

#define MAX_PROPS 64

static volatile sig_atomic_t gen_stop;

static void on_signal(int sig) {
    (void)sig;
    gen_stop = 1;
}

static void usage(FILE *f) {
    fputs(
        "usage: rapport gen -b BROKERS -t TOPIC [options]\n"
        "\n"
        "Produces synthetic customer interaction events (Confluent-framed Avro,\n"
        "key = customer_id) to TOPIC.  The same options and seed give the same\n"
        "messages, byte for byte.\n"
        "\n"
        "  -b, --brokers BROKERS   bootstrap servers (host:port,...)\n"
        "  -t, --topic TOPIC       topic to produce to\n"
        "      --rate N            messages per second; 0 = as fast as possible (default 0)\n"
        "      --count N           stop after N messages\n"
        "      --seconds N         stop after N seconds (with --count: whichever comes first;\n"
        "                          with neither: run until SIGINT or SIGTERM)\n"
        "      --customers N       number of customers, 1..10000000 (default 1000)\n"
        "      --seed N            PRNG seed (default 1)\n"
        "      --schemas LIST      writer schemas to mix: v1,v2,v3 (default v1)\n"
        "      --schema-dir DIR    write the writer schemas there first (1.avsc, 2.avsc,\n"
        "                          3.avsc and 900.avsc, the incompatible one)\n"
        "      --late-ratio F      fraction of late events, 0..1 (default 0)\n"
        "      --bad-ratio F       fraction of malformed messages, one per dead-letter\n"
        "                          reason, 0..1 (default 0)\n"
        "      --start-ms N        simulated start, ms since the epoch\n"
        "                          (default 1767225600000, 2026-01-01T00:00:00Z)\n"
        "      --step-ms N         simulated ms per message, at least (default\n"
        "                          43200000 / customers)\n"
        "  -X NAME=VALUE           librdkafka producer property (repeatable)\n"
        "  -h, --help              this text\n"
        "\n"
        "Prints one summary line at the end.  Exit status: 0 all delivered,\n"
        "1 some message failed or the producer could not start, 2 bad arguments.\n",
        f);
}

static int bad_value(const char *opt, const char *want, const char *got) {
    fprintf(stderr, "rapport gen: %s: expected %s, got \"%s\"\n", opt, want, got);
    return 2;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    if (*s == '\0' || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || errno != 0 || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

enum {
    OPT_RATE = 256, OPT_COUNT, OPT_SECONDS, OPT_CUSTOMERS, OPT_SEED, OPT_SCHEMAS, OPT_SCHEMA_DIR,
    OPT_LATE, OPT_BAD, OPT_START, OPT_STEP
};

static const struct option long_opts[] = {
    {"brokers", required_argument, NULL, 'b'},
    {"topic", required_argument, NULL, 't'},
    {"rate", required_argument, NULL, OPT_RATE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"seconds", required_argument, NULL, OPT_SECONDS},
    {"customers", required_argument, NULL, OPT_CUSTOMERS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"schemas", required_argument, NULL, OPT_SCHEMAS},
    {"schema-dir", required_argument, NULL, OPT_SCHEMA_DIR},
    {"late-ratio", required_argument, NULL, OPT_LATE},
    {"bad-ratio", required_argument, NULL, OPT_BAD},
    {"start-ms", required_argument, NULL, OPT_START},
    {"step-ms", required_argument, NULL, OPT_STEP},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct gen_args {
    gen_conf_t gen;
    produce_conf_t produce;
    const char *schema_dir;
    const char *props[MAX_PROPS];
} gen_args_t;

/* Fills a from argv.  Returns -1 to go on, or the exit status (0 for
 * --help, 2 for a bad argument, with the message printed). */
static int parse_args(int argc, char **argv, gen_args_t *a) {
    uint64_t u;
    double d;
    gen_conf_default(&a->gen);
    a->produce = (produce_conf_t){.props = a->props};
    optind = 0;   /* glibc: start over, whatever parsed argv before */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":b:t:X:h", long_opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case 'b': a->produce.brokers = optarg; break;
        case 't': a->produce.topic = optarg; break;
        case 'X':
            if (a->produce.props_count == MAX_PROPS) {
                fprintf(stderr, "rapport gen: -X: at most %d properties\n", MAX_PROPS);
                return 2;
            }
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return bad_value("-X", "NAME=VALUE", optarg);
            a->props[a->produce.props_count++] = optarg;
            break;
        case OPT_RATE:
            if (parse_double(optarg, &d) != 0 || d < 0)
                return bad_value("--rate", "a number >= 0", optarg);
            a->produce.rate = d;
            break;
        case OPT_COUNT:
            if (parse_u64(optarg, &u) != 0 || u == 0)
                return bad_value("--count", "an integer >= 1", optarg);
            a->produce.count = u;
            break;
        case OPT_SECONDS:
            if (parse_double(optarg, &d) != 0 || d <= 0)
                return bad_value("--seconds", "a number > 0", optarg);
            a->produce.seconds = d;
            break;
        case OPT_CUSTOMERS:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > 10000000)
                return bad_value("--customers", "an integer in 1..10000000", optarg);
            a->gen.customers = (uint32_t)u;
            break;
        case OPT_SEED:
            if (parse_u64(optarg, &u) != 0)
                return bad_value("--seed", "an unsigned 64-bit integer", optarg);
            a->gen.seed = u;
            break;
        case OPT_SCHEMAS:
            if (gen_schemas_parse(optarg, &a->gen.schemas) != 0)
                return bad_value("--schemas", "a comma-separated list of v1, v2, v3", optarg);
            break;
        case OPT_SCHEMA_DIR: a->schema_dir = optarg; break;
        case OPT_LATE:
            if (parse_double(optarg, &d) != 0 || d < 0 || d > 1)
                return bad_value("--late-ratio", "a number in 0..1", optarg);
            a->gen.late_ratio = d;
            break;
        case OPT_BAD:
            if (parse_double(optarg, &d) != 0 || d < 0 || d > 1)
                return bad_value("--bad-ratio", "a number in 0..1", optarg);
            a->gen.bad_ratio = d;
            break;
        case OPT_START:
            if (parse_u64(optarg, &u) != 0 || u > UINT64_C(253402300799999))
                return bad_value("--start-ms", "ms since the epoch, up to year 9999", optarg);
            a->gen.start_ms = (int64_t)u;
            break;
        case OPT_STEP:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > UINT64_C(31536000000))
                return bad_value("--step-ms", "an integer in 1..31536000000", optarg);
            a->gen.step_ms = (int64_t)u;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "rapport gen: option %s needs a value\n", opt);
            return 2;
        default:
            fprintf(stderr, "rapport gen: unknown option %s (see rapport gen --help)\n", opt);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rapport gen: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!a->produce.brokers || !a->produce.topic) {
        fprintf(stderr, "rapport gen: %s is required (see rapport gen --help)\n",
                a->produce.brokers ? "-t/--topic" : "-b/--brokers");
        return 2;
    }
    if (a->gen.late_ratio + a->gen.bad_ratio > 1) {
        fprintf(stderr, "rapport gen: --late-ratio plus --bad-ratio must be at most 1\n");
        return 2;
    }
    return -1;
}

int cmd_gen(int argc, char **argv) {
    gen_args_t a = {0};
    int status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;

    char errstr[512];
    if (produce_conf_check(&a.produce, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "rapport gen: kafka configuration: %s\n", errstr);
        return 2;
    }
    if (a.schema_dir && encode_write_schemas(a.schema_dir, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "rapport gen: --schema-dir: %s\n", errstr);
        return 1;
    }
    gen_t *g = gen_new(&a.gen, errstr, sizeof errstr);
    if (!g) {   /* the arguments were checked: too many customers for this machine */
        fprintf(stderr, "rapport gen: %s\n", errstr);
        return 1;
    }
    int64_t clock0 = gen_clock(g);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    a.produce.stop = &gen_stop;

    produce_stats_t st;
    int rc = produce_run(g, &a.produce, &st, errstr, sizeof errstr);
    if (rc != 0)
        fprintf(stderr, "rapport gen: %s\n", errstr);
    printf("rapport gen: topic=%s produced=%" PRIu64 " delivered=%" PRIu64 " failed=%" PRIu64
           " valid=%" PRIu64 " late=%" PRIu64 " malformed=%" PRIu64
           " seconds=%.2f rate=%.0f/s seed=%" PRIu64 " customers=%" PRIu32
           " simulated_days=%.2f\n",
           a.produce.topic, st.produced, st.delivered, st.failed, st.valid, st.late,
           st.malformed, st.seconds, st.seconds > 0 ? (double)st.produced / st.seconds : 0.0,
           a.gen.seed, a.gen.customers, (double)(gen_clock(g) - clock0) / 86400000.0);
    fflush(stdout);
    gen_free(g);
    return rc != 0 || st.failed > 0 ? 1 : 0;
}
