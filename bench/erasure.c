/*
 * erasure.c — what one erasure (SPEC §1.2) costs in Redis, and that the
 * cost does not grow with the alerts stream.
 *
 * Starts a private redis-server (common/redis_proc.h), claims one
 * partition through the Redis sink, and fills the alerts stream through
 * ordinary flushes (batches of 2000 alerts, so the alert index is kept as
 * in production) for --customers customers in turn, up to each size of
 * --sizes.  At each size it erases --erasures customers that have alerts,
 * one flush each, and prints the median and maximum of: the flush's wall
 * time (send to answer), the script's Redis CPU (INFO commandstats,
 * cmdstat_evalsha usec), the Redis commands the script ran (the sink's
 * statistics) and the alerts it deleted.
 *
 *   erasure [--sizes 10000,1000000] [--customers 100000] [--erasures 21]
 *
 * Every line of output is "name key=value...".  One thread.
 */
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/redis_proc.h"
#include "sinks/redis.h"
#include "sinks/redis_testing.h"

#define TOPIC "interactions"
#define PREFIX "bench:"
#define FILL_BATCH 2000
#define MAX_SIZES 8
#define MAX_ERASURES 101

static void no_watermark(void *opaque, int64_t wm) {
    (void)opaque;
    (void)wm;
}

static int no_customer(void *opaque, const char *id, size_t id_len, const unsigned char *state,
                       size_t state_len, char *errstr, size_t errstr_size) {
    (void)opaque, (void)id, (void)id_len, (void)state, (void)state_len, (void)errstr,
        (void)errstr_size;
    return 0;
}

typedef struct part {
    redis_sink_t *s;
    int64_t epoch, offset; /* the next offset Redis holds; -1 none */
} part_t;

static void customer_id(char *out, size_t size, uint32_t c) {
    snprintf(out, size, "cust-%06" PRIu32, c);
}

/* Flushes b as the partition's next message; exits on failure. */
static void flush(part_t *p, batch_t *b) {
    char err[256];
    if (redis_sink_flush(p->s, b, err, sizeof err) != SINK_OK ||
        batch_partition(b, 0)->result != BATCH_WRITTEN) {
        fprintf(stderr, "erasure: flush: %s\n", err);
        exit(1);
    }
    p->offset = batch_partition(b, 0)->next_offset;
}

static batch_partition_t *next_part(part_t *p, batch_t *b) {
    batch_reset(b);
    return batch_add_partition(b, TOPIC, 0, p->epoch, p->offset, p->offset + 1);
}

/* Alerts n .. to-1, alert k for customer k % customers. */
static void fill(part_t *p, batch_t *b, uint64_t from, uint64_t to, uint32_t customers) {
    for (uint64_t k = from; k < to;) {
        batch_partition_t *bp = next_part(p, b);
        for (int i = 0; i < FILL_BATCH && k < to; i++, k++) {
            char cid[32];
            customer_id(cid, sizeof cid, (uint32_t)(k % customers));
            batch_alert_t *a = batch_add_alert(b, bp);
            a->type = batch_static("churn_risk");
            a->trigger = batch_static("event");
            a->customer_id = batch_copy(b, cid, strlen(cid));
            a->score = 31.6;
            a->has_previous = true;
            a->previous_score = 39.875;
            a->event_id = batch_copy(b, "f8436847-0a20-45ba-88e3-9a8b4775475f", 36);
            a->occurred_at = 1772237819891;
            a->partition = 0;
            a->offset = (int64_t)k;
            a->reason = batch_static("connection index 31.6 fell below 35 (was 39.875)");
            a->narrative = batch_static("I was charged twice and the bot keeps looping");
        }
        flush(p, b);
    }
}

static long long redis_int(redisContext *rc, const char *cmd) {
    redisReply *r = redisCommand(rc, cmd);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* cmdstat_evalsha usec since the last CONFIG RESETSTAT. */
static long long evalsha_usec(redisContext *rc) {
    redisReply *r = redisCommand(rc, "INFO commandstats");
    long long v = -1;
    const char *s = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_evalsha:") : NULL;
    if (s && (s = strstr(s, "usec="))) v = strtoll(s + 5, NULL, 10);
    freeReplyObject(r);
    return v;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void stat_line(const char *name, double *v, int n, const char *unit) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    printf(" %s_median=%.1f%s %s_max=%.1f%s", name, v[n / 2], unit, name, v[n - 1], unit);
}

int main(int argc, char **argv) {
    const char *sizes_arg = "10000,1000000";
    uint32_t customers = 100000;
    int erasures = 21;
    static const struct option opts[] = {{"sizes", required_argument, NULL, 's'},
                                         {"customers", required_argument, NULL, 'c'},
                                         {"erasures", required_argument, NULL, 'e'},
                                         {NULL, 0, NULL, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (o == 's') sizes_arg = optarg;
        else if (o == 'c') customers = (uint32_t)strtoul(optarg, NULL, 10);
        else if (o == 'e') erasures = atoi(optarg);
        else {
            fprintf(stderr, "usage: erasure [--sizes N,N...] [--customers N] [--erasures N]\n");
            return 2;
        }
    }
    uint64_t sizes[MAX_SIZES];
    int nsizes = 0;
    for (const char *p = sizes_arg; *p && nsizes < MAX_SIZES;) {
        char *end;
        sizes[nsizes++] = strtoull(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    if (customers == 0 || erasures < 1 || erasures > MAX_ERASURES || nsizes == 0) {
        fprintf(stderr, "erasure: bad arguments\n");
        return 2;
    }

    char err[256];
    redis_proc_t *rp = redis_proc_start(NULL, err, sizeof err);
    if (!rp) {
        fprintf(stderr, "erasure: %s\n", err);
        return 1;
    }
    redis_sink_conf_t conf = {.url = redis_proc_url(rp),
                              .prefix = PREFIX,
                              .alerts_maxlen = (int64_t)(sizes[nsizes - 1] * 2),
                              .timeout_ms = 10000};
    part_t p = {.offset = -1};
    p.s = redis_sink_new(&conf, err, sizeof err);
    sink_loader_t loader = {no_watermark, no_customer, NULL};
    sink_claim_t cl;
    if (!p.s || redis_sink_claim(p.s, TOPIC, 0, &loader, &cl, err, sizeof err) != SINK_OK) {
        fprintf(stderr, "erasure: %s\n", err);
        return 1;
    }
    p.epoch = cl.epoch;
    redisContext *rc = redisConnect("127.0.0.1", redis_proc_port(rp));
    if (!rc || rc->err) {
        fprintf(stderr, "erasure: cannot connect\n");
        return 1;
    }

    batch_t *b = batch_new();
    uint64_t have = 0;
    uint32_t next_victim = 0;
    for (int si = 0; si < nsizes; si++) {
        double t0 = clock_s();
        fill(&p, b, have, sizes[si], customers);
        double fill_s = clock_s() - t0;
        have = sizes[si];
        double wall[MAX_ERASURES], cpu[MAX_ERASURES], cmds[MAX_ERASURES],
            deleted[MAX_ERASURES];
        long long xlen = redis_int(rc, "XLEN " PREFIX "alerts");
        long long index_len = redis_int(rc, "HLEN " PREFIX "_alert_ids:" TOPIC ":0");
        for (int i = 0; i < erasures; i++) {
            char cid[32];
            /* Customers in turn from 0: each has about size / customers alerts. */
            customer_id(cid, sizeof cid, next_victim++ % customers);
            batch_partition_t *bp = next_part(&p, b);
            batch_add_erasure(b, bp, cid, strlen(cid));
            long long before = redis_int(rc, "XLEN " PREFIX "alerts");
            freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
            uint64_t c0 = redis_sink_stats(p.s)->commands;
            double w0 = clock_s();
            flush(&p, b);
            wall[i] = (clock_s() - w0) * 1e6;
            cmds[i] = (double)(redis_sink_stats(p.s)->commands - c0);
            cpu[i] = (double)evalsha_usec(rc);
            deleted[i] = (double)(before - redis_int(rc, "XLEN " PREFIX "alerts"));
        }
        printf("erasure stream=%lld index_customers=%lld fill_s=%.1f erasures=%d", xlen,
               index_len, fill_s, erasures);
        stat_line("wall", wall, erasures, "us");
        stat_line("redis_cpu", cpu, erasures, "us");
        stat_line("commands", cmds, erasures, "");
        stat_line("alerts_deleted", deleted, erasures, "");
        printf("\n");
        fflush(stdout);
    }
    batch_free(b);
    redisFree(rc);
    redis_sink_free(p.s);
    redis_proc_stop(rp);
    return 0;
}
