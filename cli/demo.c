/*
 * demo.c — `rapport demo`: the whole pipeline on one machine.
 *
 * This process hosts librdkafka's mock cluster and the story generator (a
 * thread); it starts a private redis-server on a free port in a temp dir,
 * and runs the processor as a child, `rapport run`, exactly as an operator
 * would.  The main thread shows the lowest scores and the alerts as they
 * fire, read from Redis like any app would, and serves the leaders'
 * dashboard (report/dashboard.h, its own HTTP thread) on the same Redis.
 * After --seconds it stops everything, prints a summary and the leaders'
 * report, and removes its temp files.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/view.h"
#include "common/clock.h"
#include "common/redis_conn.h"
#include "common/redis_proc.h"
#include "report/dashboard.h"
#include "report/report.h"
#include "gen/encode.h"
#include "gen/produce.h"
#include "gen/story.h"

#define DEMO_PREFIX "rapport:"  /* the processor's key prefix, set explicitly */
#define DEMO_COLS 100           /* width of an alert's lines */

static volatile sig_atomic_t demo_stop;

static void on_signal(int sig) {
    (void)sig;
    demo_stop = 1;
}

typedef struct demo_opts {
    int seconds;
    uint32_t customers;
    double rate;
    int partitions;
    uint64_t seed;
} demo_opts_t;

typedef struct gen_thread {
    gen_t *gen;
    produce_conf_t pc;
    produce_stats_t stats;
    int rc;
    char err[256];
} gen_thread_t;

static void *gen_main(void *arg) {
    gen_thread_t *t = arg;
    t->rc = produce_run(t->gen, &t->pc, &t->stats, t->err, sizeof(t->err));
    return NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

/* Starts `rapport run` (this same binary) with its log in logpath. */
static pid_t start_processor(const char *brokers, const char *redis_url, const char *schema_dir,
                             const char *logpath) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        dup2(fd, 1);
        close(fd);
    }
    char sd[700];
    snprintf(sd, sizeof(sd), "schema_dir=%s", schema_dir);
    execl("/proc/self/exe", "rapport", "run", "-b", brokers, "-r", redis_url, "-X", sd, "-X",
          "prefix=" DEMO_PREFIX, "-X", "metrics_listen=", "-X", "flush_ms=50", (char *)NULL);
    fprintf(stderr, "exec rapport run: %s\n", strerror(errno));
    _exit(127);
}

typedef struct tally {
    long churn_risk, recovered, needs_human;
} tally_t;

/* Prints the alerts of <prefix>alerts newer than *last_id (at most
 * max_show of them, then how many more), counts every one by type, and
 * moves *last_id past them. */
static void show_alerts(rconn_t *rc, char *last_id, size_t size, tally_t *t, int max_show) {
    char err[256];
    redisReply *r = rconn_command_ok(rc, err, sizeof(err), "XRANGE %salerts (%s + COUNT 1000",
                                 DEMO_PREFIX, last_id);
    if (!r) return;
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        size_t len;
        const char *type = view_alert_field(e, "type", &len);
        if (!strcmp(type, "churn_risk")) t->churn_risk++;
        if (!strcmp(type, "recovered")) t->recovered++;
        if (!strcmp(type, "needs_human")) t->needs_human++;
        if (n < max_show) view_alert(stdout, e, DEMO_COLS);
        n++;
        if (e->type == REDIS_REPLY_ARRAY && e->elements > 0 && e->element[0]->str)
            snprintf(last_id, size, "%s", e->element[0]->str);
    }
    if (n > max_show) printf("  … and %d more alerts\n", n - max_show);
    freeReplyObject(r);
}

/* ZCARD <prefix>scores, or -1 when Redis does not answer. */
static long long zcard(rconn_t *rc) {
    char err[256];
    redisReply *r = rc ? rconn_command_ok(rc, err, sizeof(err), "ZCARD %sscores", DEMO_PREFIX) : NULL;
    long long n = (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

/* The leaders' report (`rapport report`) of the demo's Redis. */
static void print_report(const char *url) {
    char err[512];
    report_opts_t ro = {.prefix = "rapport:",
                        .bucket_ms = INT64_C(86400000),
                        .days = 30,
                        .alerts = REPORT_ALERTS,
                        .lowest = REPORT_LOWEST};
    rconn_t *c = report_connect(url, NULL, 5000, err, sizeof(err));
    report_t *r = c ? report_read(c, &ro, err, sizeof(err)) : NULL;
    if (r) {
        printf("\n");
        report_text(r, stdout, 100);
    } else {
        fprintf(stderr, "rapport demo: no report: %s\n", err);
    }
    report_free(r);
    rconn_free(c);
}

static void demo_usage(FILE *out) {
    fprintf(out,
            "usage: rapport demo [--seconds N] [--customers N] [--rate N] [--partitions N] "
            "[--seed N]\n\n"
            "Runs an embedded Kafka (librdkafka's mock cluster), a private redis-server on a\n"
            "free port, a generator of customer stories and `rapport run`, and shows the\n"
            "lowest scores and the alerts as they fire; the dashboard is served on\n"
            "http://127.0.0.1:8088/ (another free port when that one is taken).  Ends after\n"
            "--seconds (default 30), prints a summary and the leaders' report, and removes\n"
            "its processes and temp files.  Defaults: 3000 customers at 300 events/s, so\n"
            "that event time runs about 6 hours per second (docs/DEMO.md).\n");
}

static int parse_opts(int argc, char **argv, demo_opts_t *o) {
    static const struct option longopts[] = {
        {"seconds", required_argument, NULL, 's'}, {"customers", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},    {"partitions", required_argument, NULL, 'p'},
        {"seed", required_argument, NULL, 'S'},    {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    *o = (demo_opts_t){30, 3000, 300, 3, 7};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        long long v = optarg ? strtoll(optarg, &end, 10) : 0;
        bool bad = optarg && (*end || v <= 0);
        switch (opt) {
        case 's': o->seconds = (int)v; bad |= v > 86400; break;
        case 'c': o->customers = (uint32_t)v; bad |= v > 1000000; break;
        case 'r': o->rate = (double)v; break;
        case 'p': o->partitions = (int)v; bad |= v > 64; break;
        case 'S': o->seed = (uint64_t)v; break;
        case 'h': demo_usage(stdout); return 1;
        default: demo_usage(stderr); return -1;
        }
        if (bad) {
            fprintf(stderr, "rapport demo: --%s: \"%s\" is out of range\n",
                    longopts[opt == 's' ? 0 : opt == 'c' ? 1 : opt == 'r' ? 2 : opt == 'p' ? 3 : 4].name,
                    optarg);
            return -1;
        }
    }
    return 0;
}

int cmd_demo(int argc, char **argv) {
    demo_opts_t o;
    int pr = parse_opts(argc, argv, &o);
    if (pr) return pr > 0 ? 0 : 2;

    char err[512], tmpl[] = "/tmp/rapport-demo-XXXXXX", schema_dir[600], logpath[600];
    int rc = 1;
    rd_kafka_t *host = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    redis_proc_t *redis = NULL;
    rconn_t *rctx = NULL;
    rconn_endpoint_t *rep = NULL;
    dashboard_t *dash = NULL;
    gen_thread_t gt;
    memset(&gt, 0, sizeof(gt));
    bool gen_started = false;
    pthread_t gen_tid;
    pid_t child = -1;
    const char *tmp = mkdtemp(tmpl);
    if (!tmp) {
        perror("rapport demo: mkdtemp");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Embedded Kafka. */
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "log_level", "0", err, sizeof(err));
    host = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    if (!host) {
        fprintf(stderr, "rapport demo: %s\n", err);
        goto out;
    }
    mc = rd_kafka_mock_cluster_new(host, 1);
    if (!mc) {
        fprintf(stderr, "rapport demo: cannot start the mock cluster\n");
        goto out;
    }
    const char *brokers = rd_kafka_mock_cluster_bootstraps(mc);
    rd_kafka_mock_topic_create(mc, "interactions", o.partitions, 1);
    rd_kafka_mock_topic_create(mc, "interactions.dlq", 1, 1);

    /* Private Redis. */
    redis = redis_proc_start(NULL, err, sizeof(err));
    if (!redis || !(rep = rconn_endpoint_new(redis_proc_url(redis), NULL, err, sizeof(err)))) {
        fprintf(stderr, "rapport demo: %s\n", err);
        goto out;
    }
    snprintf(schema_dir, sizeof(schema_dir), "%s/schemas", tmp);
    if (mkdir(schema_dir, 0755) != 0 || encode_write_schemas(schema_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "rapport demo: writing schemas: %s\n", err);
        goto out;
    }
    snprintf(logpath, sizeof(logpath), "%s/rapport-run.log", tmp);

    /* The leaders' dashboard on the same Redis, default configuration. */
    dashboard_conf_t dc = {.listen = "127.0.0.1:8088",
                           .redis_url = redis_proc_url(redis),
                           .redis_timeout_ms = 2000,
                           .report = {.prefix = "rapport:",
                                      .bucket_ms = INT64_C(86400000),
                                      .days = 30,
                                      .alerts = REPORT_ALERTS,
                                      .lowest = REPORT_LOWEST}};
    dash = dashboard_start(&dc, err, sizeof(err));
    if (!dash) {
        dc.listen = "127.0.0.1:0";
        dash = dashboard_start(&dc, err, sizeof(err));
    }
    if (!dash) fprintf(stderr, "rapport demo: no dashboard: %s\n", err);

    printf("rapport demo: Kafka (mock) at %s, Redis at %s\n", brokers, redis_proc_url(redis));
    if (dash) printf("              dashboard: %s\n", dashboard_url(dash));
    printf("              %u customers, %.0f events/s, %d partitions, %d s; processor log: %s\n\n",
           o.customers, o.rate, o.partitions, o.seconds, logpath);
    fflush(stdout);

    child = start_processor(brokers, redis_proc_url(redis), schema_dir, logpath);
    if (child < 0) {
        perror("rapport demo: fork");
        goto out;
    }

    /* The generator: stories from three writer schemas, a few late events
     * and a few malformed messages.  Its clock follows the customers'
     * stories (about 0.3 events per customer and day), so with the
     * defaults event time runs about 6 hours per second and the window
     * shows days (docs/DEMO.md). */
    gen_conf_t gc;
    gen_conf_default(&gc);
    gc.seed = o.seed;
    gc.customers = o.customers;
    gc.late_ratio = 0.005;
    gc.bad_ratio = 0.005;
    gc.schemas = (1u << ENCODE_V1) | (1u << ENCODE_V2) | (1u << ENCODE_V3);
    gt.gen = gen_new(&gc, err, sizeof(err));
    if (!gt.gen) {
        fprintf(stderr, "rapport demo: %s\n", err);
        goto out;
    }
    gt.pc = (produce_conf_t){.brokers = brokers,
                             .topic = "interactions",
                             .rate = o.rate,
                             .seconds = o.seconds > 4 ? o.seconds - 3 : 1,
                             .stop = &demo_stop};
    if (pthread_create(&gen_tid, NULL, gen_main, &gt) != 0) goto out;
    gen_started = true;

    char last_id[64] = "0-0";
    tally_t tally = {0, 0, 0};
    double t0 = clock_s();
    int tick = 0;
    for (;;) {
        /* One second, in steps short enough to notice Ctrl-C. */
        for (int i = 0; i < 10 && !demo_stop; i++) clock_sleep_ms(100);
        double el = clock_s() - t0;
        if (rctx && rconn_dead(rctx)) {
            rconn_free(rctx);
            rctx = NULL;
        }
        if (!rctx) rctx = view_connect(rep, err, sizeof(err));
        int status;
        if (waitpid(child, &status, WNOHANG) == child) {
            fprintf(stderr, "rapport demo: the processor exited early; see %s\n", logpath);
            child = -1;
            goto out;
        }
        tick++;
        printf("── %2.0f s ─ customers scored: %lld ─────────────────────────────────────────\n",
               el, zcard(rctx));
        if (rctx) {
            show_alerts(rctx, last_id, sizeof(last_id), &tally, 6);
            if (tick % 3 == 0) view_lowest(stdout, rctx, DEMO_PREFIX, 8, err, sizeof(err));
        }
        fflush(stdout);
        if (demo_stop || el >= o.seconds) break;
    }

    /* Stop: generator first, then the processor (SIGTERM: it writes the
     * batch in hand, commits and leaves the group). */
    demo_stop = 1;
    rc = 0;
out:
    demo_stop = 1;
    if (gen_started) pthread_join(gen_tid, NULL); /* it sees demo_stop and flushes */
    if (child > 0) {
        kill(child, SIGTERM);
        int status = 0, waited = 0;
        while (waitpid(child, &status, WNOHANG) == 0 && waited < 12000) {
            clock_sleep_ms(50);
            waited += 50;
        }
        if (waited >= 12000) {
            fprintf(stderr, "rapport demo: processor did not stop in 12 s; killing it\n");
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            rc = 1;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "rapport demo: processor exited with status %d; see %s\n",
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1, logpath);
            rc = 1;
        }
    }
    if (rc == 0 && rctx) {
        show_alerts(rctx, last_id, sizeof(last_id), &tally, 0);
        long long customers = zcard(rctx);
        int64_t lo = 0, hi = 0;
        rd_kafka_conf_t *qc = rd_kafka_conf_new();
        rd_kafka_conf_set(qc, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), err,
                          sizeof(err));
        rd_kafka_t *q = rd_kafka_new(RD_KAFKA_PRODUCER, qc, err, sizeof(err));
        if (q) {
            rd_kafka_query_watermark_offsets(q, "interactions.dlq", 0, &lo, &hi, 5000);
            rd_kafka_destroy(q);
        }
        printf("\nrapport demo: summary\n");
        printf("  events produced      %llu (%llu valid, %llu late, %llu malformed)\n",
               (unsigned long long)gt.stats.produced, (unsigned long long)gt.stats.valid,
               (unsigned long long)gt.stats.late, (unsigned long long)gt.stats.malformed);
        printf("  customers in Redis   %lld\n", customers);
        printf("  alerts               %ld churn_risk, %ld recovered, %ld needs_human\n",
               tally.churn_risk, tally.recovered, tally.needs_human);
        printf("  dead letters         %lld in interactions.dlq\n", (long long)hi);
        if (customers <= 0) {
            fprintf(stderr, "rapport demo: no scores reached Redis; see %s\n", logpath);
            rc = 1;
        }
        print_report(redis_proc_url(redis));
    }
    if (rc != 0 && access(logpath, R_OK) == 0) {
        fprintf(stderr, "--- last lines of the processor log ---\n");
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "tail -n 20 '%s' >&2", logpath);
        if (system(cmd) != 0) fprintf(stderr, "(could not show the log)\n");
    }
    dashboard_stop(dash); /* before its Redis goes */
    rconn_free(rctx);
    rconn_endpoint_free(rep);
    gen_free(gt.gen);
    redis_proc_stop(redis);
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (host) rd_kafka_destroy(host);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
