/*
 * watch.c — times `rapport run` from outside, through what it writes.
 *
 * bench/run.sh starts rapport on a topic that is already full, then runs
 * this program with rapport's pid.  It reads the topic's end offsets from
 * the brokers, then polls Redis every --poll-ms for HGETALL
 * <prefix>_offsets (fields <topic>:<partition>, the next offset of each
 * partition, written in the same atomic flush as the scores).  The clock
 * starts when rapport holds every partition (HLEN <prefix>_epochs: it
 * claims each in Redis before it reads from it, so this is when it starts
 * fetching, as the ceiling's clock starts at its first message) and stops
 * when every partition has reached its end offset.  Every event is timed:
 * a rapport that writes late (one batch for a whole backlog) is not
 * flattered.  The older measure, from the first offset stored, is printed
 * too (rate_after_first_write).  Between the two it reads the process's CPU
 * time (utime + stime of /proc/<pid>/stat, all threads) and Redis's own
 * (INFO cpu), and every 250 ms it samples rapport's RSS (/proc/<pid>/status)
 * against the customers in Redis (ZCARD <prefix>scores).
 *
 * At the end it reads INFO commandstats and INFO stats: the Redis commands
 * run (scripts' inner calls included, as Redis counts them) and the bytes
 * Redis received, minus this program's own commands and bytes, which it
 * counts exactly.  Run CONFIG RESETSTAT before starting rapport.
 *
 * Prints key=value lines (see the end of main).  One thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/redis_conn.h"

#define MAX_PARTITIONS 4096
#define MAX_SAMPLES 100000
#define MAX_CMDS 128
#define SAMPLE_EVERY_S 0.25

/* utime + stime of pid in seconds, or -1 when it is gone. */
static double proc_cpu_s(pid_t pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* After ")": state is field 3; utime and stime are fields 14 and 15. */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A "Name:   N kB" line of /proc/<pid>/status, in kB, or -1. */
static long proc_status_kb(pid_t pid, const char *name) {
    char path[64], line[256];
    size_t len = strlen(name);
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, len) == 0 && line[len] == ':') {
            kb = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Fills lo[] and hi[] for topic, using a short-lived producer handle.
 * Returns 0, or -1 with errstr. */
static int end_offsets(const char *brokers, const char *topic, int64_t *lo, int64_t *hi,
                       int *n_parts, char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(kc, "bootstrap.servers", brokers, errstr, errstr_size)) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int rc = -1;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (err) {
        snprintf(errstr, errstr_size, "metadata: %s", rd_kafka_err2str(err));
        goto done;
    }
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1 ||
        md->topics[0].partition_cnt > MAX_PARTITIONS) {
        snprintf(errstr, errstr_size, "topic %s: no usable metadata", topic);
        goto done;
    }
    *n_parts = md->topics[0].partition_cnt;
    for (int p = 0; p < *n_parts; p++) {
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo[p], &hi[p], 10000);
        if (err) {
            snprintf(errstr, errstr_size, "watermarks of partition %d: %s", p,
                     rd_kafka_err2str(err));
            goto done;
        }
        if (lo[p] > 0) {
            snprintf(errstr, errstr_size,
                     "partition %d starts at offset %" PRId64
                     ": the broker dropped messages (use more partitions)", p, lo[p]);
            goto done;
        }
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* This program's own Redis traffic, to subtract from Redis's counters. */
typedef struct own {
    uint64_t hgetall, zcard, info, hlen, other;
    uint64_t bytes;
} own_t;

typedef struct watcher {
    rconn_t *rc;
    own_t own;
    const char *prefix;
} watcher_t;

/* Runs a command given as an argv, counting its request bytes.  Caller
 * frees the reply with freeReplyObject(); NULL on a dead connection. */
static redisReply *cmd(watcher_t *w, uint64_t *counter, int argc, const char **argv) {
    char *req = NULL;
    int len = redisFormatCommandArgv(&req, argc, argv, NULL);
    if (len > 0)
        w->own.bytes += (uint64_t)len;
    free(req);
    (*counter)++;
    return rconn_command_argv(w->rc, argc, argv, NULL);
}

/* The value of "key:" in an INFO section's text, or def. */
static double info_num(const char *text, const char *key, double def) {
    size_t len = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, len) == 0 && p[len] == ':')
            return strtod(p + len + 1, NULL);
    return def;
}

static char *info(watcher_t *w, const char *section) {
    const char *argv[] = {"INFO", section};
    redisReply *r = cmd(w, &w->own.info, 2, argv);
    if (!r)
        return NULL;
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

/* Reads <prefix>_offsets into stored[] (-1: none).  Returns 0 or -1. */
static int read_offsets(watcher_t *w, const char *topic, int n_parts, int64_t *stored) {
    char key[512];
    snprintf(key, sizeof key, "%s_offsets", w->prefix);
    const char *argv[] = {"HGETALL", key};
    redisReply *r = cmd(w, &w->own.hgetall, 2, argv);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    size_t tlen = strlen(topic);
    for (int p = 0; p < n_parts; p++)
        stored[p] = -1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str;
        if (r->element[i]->len <= tlen || strncmp(f, topic, tlen) != 0 || f[tlen] != ':')
            continue;
        long p = strtol(f + tlen + 1, NULL, 10);
        if (p >= 0 && p < n_parts)
            stored[p] = strtoll(r->element[i + 1]->str, NULL, 10);
    }
    freeReplyObject(r);
    return 0;
}

/* Partitions rapport has claimed: fields of <prefix>_epochs; -1 on error. */
static long long claimed(watcher_t *w) {
    char key[512];
    snprintf(key, sizeof key, "%s_epochs", w->prefix);
    const char *argv[] = {"HLEN", key};
    redisReply *r = cmd(w, &w->own.hlen, 2, argv);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

static long long zcard(watcher_t *w) {
    char key[512];
    snprintf(key, sizeof key, "%sscores", w->prefix);
    const char *argv[] = {"ZCARD", key};
    redisReply *r = cmd(w, &w->own.zcard, 2, argv);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

typedef struct sample {
    double t;
    uint64_t events;
    long rss_kb;
    long long customers;
} sample_t;

/* Least-squares slope of RSS bytes against customers over the samples
 * whose events are within [from, to] of total.  0 when undefined. */
static double rss_slope(const sample_t *s, size_t n, uint64_t total, double from, double to) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        double f = (double)s[i].events / (double)total;
        if (f < from || f > to || s[i].customers < 0 || s[i].rss_kb < 0)
            continue;
        double x = (double)s[i].customers, y = (double)s[i].rss_kb * 1024.0;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
        k++;
    }
    double den = (double)k * sxx - sx * sx;
    return k >= 3 && den > 0 ? ((double)k * sxy - sx * sy) / den : 0;
}

static void usage(FILE *f) {
    fputs("usage: watch -b BROKERS -t TOPIC -r REDIS_URL -p PID [--prefix P]\n"
          "             [--poll-ms N] [--timeout S] [--samples FILE]\n"
          "\n"
          "Times rapport (pid PID) from its claim of every partition in Redis to the topic's\n"
          "end; prints key=value lines.  Exit status: 0 done, 1 error or timeout.\n",
          f);
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {{"prefix", required_argument, NULL, 'P'},
                                             {"poll-ms", required_argument, NULL, 'M'},
                                             {"timeout", required_argument, NULL, 'T'},
                                             {"samples", required_argument, NULL, 'S'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *brokers = NULL, *topic = NULL, *url = NULL, *samples_path = NULL;
    watcher_t w = {.prefix = "rapport:"};
    pid_t pid = 0;
    double poll_ms = 5, timeout = 600;
    int c;
    while ((c = getopt_long(argc, argv, "b:t:r:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'r': url = optarg; break;
        case 'p': pid = (pid_t)strtol(optarg, NULL, 10); break;
        case 'P': w.prefix = optarg; break;
        case 'M': poll_ms = strtod(optarg, NULL); break;
        case 'T': timeout = strtod(optarg, NULL); break;
        case 'S': samples_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!brokers || !topic || !url || pid <= 0 || optind < argc || !(poll_ms > 0)) {
        usage(stderr);
        return 2;
    }

    static int64_t lo[MAX_PARTITIONS], hi[MAX_PARTITIONS], stored[MAX_PARTITIONS];
    static sample_t samples[MAX_SAMPLES];
    size_t n_samples = 0;
    char errstr[512];
    int n_parts = 0, rc = 1;
    char *cstats = NULL, *stats = NULL, *mem = NULL, *cpu0 = NULL, *cpu1 = NULL;
    if (end_offsets(brokers, topic, lo, hi, &n_parts, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "watch: %s\n", errstr);
        return 1;
    }
    uint64_t total = 0;
    for (int p = 0; p < n_parts; p++)
        total += (uint64_t)(hi[p] - lo[p]);

    rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, errstr, sizeof errstr);
    w.rc = ep ? rconn_connect(ep, 5000, NULL, errstr, sizeof errstr) : NULL;
    rconn_endpoint_free(ep);
    if (!w.rc) {
        fprintf(stderr, "watch: %s\n", errstr);
        goto out;
    }

    double t_start = clock_s(), t_first = 0, t_last = 0, next_sample = 0, t_write = 0;
    double cpu_first = 0, cpu_last = 0;
    uint64_t events_at_write = 0;
    bool started = false, written = false;
    for (;;) {
        double t = clock_s();
        if (t - t_start > timeout) {
            fprintf(stderr, "watch: timeout after %.0f s\n", timeout);
            goto out;
        }
        double cpu = proc_cpu_s(pid);
        if (cpu < 0) {
            fprintf(stderr, "watch: process %d is gone\n", (int)pid);
            goto out;
        }
        if (read_offsets(&w, topic, n_parts, stored) != 0) {
            fprintf(stderr, "watch: redis: %s\n", rconn_dead(w.rc) ? rconn_errstr(w.rc) : "bad reply");
            goto out;
        }
        uint64_t done = 0;
        int behind = 0, any = 0;
        for (int p = 0; p < n_parts; p++) {
            if (stored[p] >= 0) {
                any = 1;
                done += (uint64_t)(stored[p] - lo[p]);
            }
            if (hi[p] > lo[p] && stored[p] < hi[p])
                behind++;
        }
        if (!started && (any || claimed(&w) >= n_parts)) {
            started = true;
            t_first = t;
            cpu_first = cpu;
            cpu0 = info(&w, "cpu");
        }
        if (any && !written) {
            written = true;
            t_write = t;
            events_at_write = done;
        }
        if (started && (t >= next_sample || behind == 0) && n_samples < MAX_SAMPLES) {
            samples[n_samples++] = (sample_t){t - t_first, done,
                                              proc_status_kb(pid, "VmRSS"), zcard(&w)};
            next_sample = t + SAMPLE_EVERY_S;
        }
        if (behind == 0) {
            t_last = t;
            cpu_last = cpu;
            break;
        }
        clock_sleep_ms(poll_ms >= 1 ? (int64_t)poll_ms : 1); /* whole ms */
    }
    cpu1 = info(&w, "cpu");
    mem = info(&w, "memory");
    long long customers = zcard(&w);
    long rss_kb = proc_status_kb(pid, "VmRSS"), hwm_kb = proc_status_kb(pid, "VmHWM");
    stats = info(&w, "stats");
    cstats = info(&w, "commandstats"); /* the last of our commands: not in its own counts */
    if (!cpu0 || !cpu1 || !mem || !stats || !cstats) {
        fprintf(stderr, "watch: INFO failed\n");
        goto out;
    }

    /* cmdstat_<name>:calls=N,... minus our own calls. */
    uint64_t commands = 0, evalsha = 0;
    char breakdown[2048] = "";
    size_t blen = 0;
    for (const char *p = strstr(cstats, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
        char name[64];
        unsigned long long calls;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%llu", name, &calls) != 2)
            continue;
        if (strcmp(name, "hgetall") == 0)
            calls -= calls >= w.own.hgetall ? w.own.hgetall : calls;
        else if (strcmp(name, "zcard") == 0)
            calls -= calls >= w.own.zcard ? w.own.zcard : calls;
        else if (strcmp(name, "hlen") == 0)
            calls -= calls >= w.own.hlen ? w.own.hlen : calls;
        else if (strcmp(name, "info") == 0)
            calls -= calls >= w.own.info - 1 ? w.own.info - 1 : calls;
        else if (strcmp(name, "auth") == 0 || strcmp(name, "select") == 0)
            calls = 0;
        if (calls == 0)
            continue;
        commands += calls;
        if (strncmp(name, "evalsha", 7) == 0 || strncmp(name, "eval", 4) == 0)
            evalsha += calls;
        if (blen < sizeof breakdown - 80)
            blen += (size_t)snprintf(breakdown + blen, sizeof breakdown - blen, "%s%s=%llu",
                                     blen ? "," : "", name, calls);
    }
    double in_bytes = info_num(stats, "total_net_input_bytes", 0) - (double)w.own.bytes;
    double redis_cpu = info_num(cpu1, "used_cpu_sys", 0) + info_num(cpu1, "used_cpu_user", 0) -
                       info_num(cpu0, "used_cpu_sys", 0) - info_num(cpu0, "used_cpu_user", 0);
    double secs = t_last - t_first;
    uint64_t timed = total;

    if (samples_path) {
        FILE *f = fopen(samples_path, "w");
        if (f) {
            fprintf(f, "t_s events rss_kb customers\n");
            for (size_t i = 0; i < n_samples; i++)
                fprintf(f, "%.3f %" PRIu64 " %ld %lld\n", samples[i].t, samples[i].events,
                        samples[i].rss_kb, samples[i].customers);
            fclose(f);
        }
    }
    printf("events=%" PRIu64 " partitions=%d timed_events=%" PRIu64 " seconds=%.3f rate=%.0f"
           " first_write_s=%.3f rate_after_first_write=%.0f\n",
           total, n_parts, timed, secs, secs > 0 ? (double)timed / secs : 0.0, t_write - t_first,
           t_last > t_write ? (double)(total - events_at_write) / (t_last - t_write) : 0.0);
    printf("cpu_s=%.2f cpu_s_per_m=%.3f redis_cpu_s=%.2f redis_cpu_s_per_m=%.3f\n",
           cpu_last - cpu_first, timed ? (cpu_last - cpu_first) * 1e6 / (double)timed : 0.0,
           redis_cpu, timed ? redis_cpu * 1e6 / (double)timed : 0.0);
    printf("rss_kb=%ld hwm_kb=%ld rss_slope_b_per_customer=%.1f customers=%lld\n", rss_kb,
           hwm_kb, rss_slope(samples, n_samples, total, 0.25, 0.9), customers);
    printf("redis_used_memory=%.0f\n", info_num(mem, "used_memory", 0));
    printf("redis_commands=%" PRIu64 " commands_per_event=%.4f evalsha=%" PRIu64
           " evalsha_per_event=%.5f bytes_in=%.0f bytes_per_event=%.1f\n",
           commands, total ? (double)commands / (double)total : 0.0, evalsha,
           total ? (double)evalsha / (double)total : 0.0, in_bytes,
           total ? in_bytes / (double)total : 0.0);
    printf("commandstats=%s\n", breakdown);
    fflush(stdout);
    rc = 0;
out:
    free(cstats);
    free(stats);
    free(mem);
    free(cpu0);
    free(cpu1);
    rconn_free(w.rc);
    return rc;
}
