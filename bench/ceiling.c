/*
 * ceiling.c — the benchmark's ceiling: a librdkafka group consumer that
 * does nothing with the messages it reads.
 *
 * It asks the brokers for the topic's low and high watermarks, subscribes
 * with a new group, and polls with rd_kafka_consumer_poll() until it has
 * seen every offset up to the high watermarks, touching nothing but the
 * message length.  It is timed from the first message received to the last,
 * so group join and assignment are not counted (the end-to-end measure of
 * `rapport run` excludes them too).  Its consumer properties are the ones
 * consumer/consumer.c sets (keep them in step), plus any -X NAME=VALUE
 * given to both programs by bench/run.sh.
 *
 * Prints one line of key=value pairs: events, bytes, seconds, rate (events
 * per second), cpu_s (user + system CPU of this process, all librdkafka
 * threads included, over the same interval).
 *
 * One thread (main) does everything; librdkafka runs its own.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/clock.h"

#define MAX_PROPS 32
#define MAX_PARTITIONS 4096

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(FILE *f) {
    fputs("usage: ceiling -b BROKERS -t TOPIC [-G GROUP] [-X NAME=VALUE]... [--timeout S]\n"
          "\n"
          "Reads TOPIC from the start to its current end with a do-nothing group\n"
          "consumer and prints events, bytes, seconds, rate and cpu_s.\n"
          "Exit status: 0 done, 1 error or timeout, 2 bad arguments.\n",
          f);
}

/* Fills lo[] and hi[] (n_parts entries) for topic.  Returns 0, or -1 with
 * errstr. */
static int end_offsets(rd_kafka_t *rk, const char *topic, int64_t *lo, int64_t *hi,
                       int *n_parts, char *errstr, size_t errstr_size) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int rc = -1;
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic handle: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
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
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {{"timeout", required_argument, NULL, 'T'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *brokers = NULL, *topic = NULL, *group = "rapport-bench-ceiling";
    const char *props[MAX_PROPS];
    size_t n_props = 0;
    double timeout = 300;
    int c;
    while ((c = getopt_long(argc, argv, "b:t:G:X:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'G': group = optarg; break;
        case 'X':
            if (n_props == MAX_PROPS || !strchr(optarg, '=')) {
                fprintf(stderr, "ceiling: -X %s: expected NAME=VALUE (at most %d)\n", optarg,
                        MAX_PROPS);
                return 2;
            }
            props[n_props++] = optarg;
            break;
        case 'T': timeout = strtod(optarg, NULL); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!brokers || !topic || optind < argc || !(timeout > 0)) {
        usage(stderr);
        return 2;
    }

    static int64_t lo[MAX_PARTITIONS], hi[MAX_PARTITIONS], seen[MAX_PARTITIONS];
    char errstr[512];
    int n_parts = 0, rc = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    /* The properties consumer/consumer.c sets, then the caller's. */
    const char *defaults[][2] = {{"bootstrap.servers", brokers},
                                 {"group.id", group},
                                 {"client.id", "rapport-bench-ceiling"},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"auto.offset.reset", "earliest"},
                                 {"enable.partition.eof", "false"}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], errstr, sizeof errstr))
            goto conf_fail;
    for (size_t i = 0; i < n_props; i++) {
        char name[256];
        const char *eq = strchr(props[i], '=');
        size_t n = (size_t)(eq - props[i]);
        if (n == 0 || n >= sizeof name) {
            snprintf(errstr, sizeof errstr, "bad property %s", props[i]);
            goto conf_fail;
        }
        memcpy(name, props[i], n);
        name[n] = '\0';
        if (rd_kafka_conf_set(kc, name, eq + 1, errstr, sizeof errstr))
            goto conf_fail;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof errstr);
    if (!rk)
        goto conf_fail;
    kc = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(rk);

    if (end_offsets(rk, topic, lo, hi, &n_parts, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "ceiling: %s\n", errstr);
        goto out;
    }
    uint64_t expected = 0;
    int parts_left = 0;
    for (int p = 0; p < n_parts; p++) {
        if (lo[p] > 0) {
            fprintf(stderr,
                    "ceiling: partition %d starts at offset %" PRId64
                    ": the broker dropped messages (use more partitions)\n",
                    p, lo[p]);
            goto out;
        }
        expected += (uint64_t)(hi[p] - lo[p]);
        seen[p] = lo[p] - 1;
        if (hi[p] > lo[p])
            parts_left++;
    }

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        fprintf(stderr, "ceiling: subscribe: %s\n", rd_kafka_err2str(err));
        goto out;
    }

    uint64_t events = 0, bytes = 0;
    double t_start = clock_s(), t_first = 0, t_last = 0, cpu_first = 0, cpu_last = 0;
    while (parts_left > 0) {
        if (clock_s() - t_start > timeout) {
            fprintf(stderr, "ceiling: timeout after %.0f s with %" PRIu64 " of %" PRIu64
                    " events\n", timeout, events, expected);
            goto close;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err && m->partition >= 0 && m->partition < n_parts) {
            if (events == 0) {
                t_first = clock_s();
                cpu_first = cpu_s();
            }
            events++;
            bytes += m->len;
            if (m->offset > seen[m->partition]) {
                seen[m->partition] = m->offset;
                if (m->offset == hi[m->partition] - 1)
                    parts_left--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    t_last = clock_s();
    cpu_last = cpu_s();
    double secs = t_last - t_first;
    printf("events=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate=%.0f cpu_s=%.2f\n", events,
           bytes, secs, secs > 0 ? (double)(events - 1) / secs : 0.0, cpu_last - cpu_first);
    fflush(stdout);
    rc = 0;
close:
    rd_kafka_consumer_close(rk);
out:
    rd_kafka_destroy(rk);
    return rc;
conf_fail:
    fprintf(stderr, "ceiling: kafka configuration: %s\n", errstr);
    if (kc)
        rd_kafka_conf_destroy(kc);
    return 2;
}
