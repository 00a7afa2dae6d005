/*
 * latency.c — produce-to-readable latency of `rapport run` at a steady rate.
 *
 * With rapport already consuming TOPIC, this program produces the
 * generator's events (gen/story.h, the messages `rapport gen` sends, with
 * its producer settings: linger.ms=5, acks=all, idempotence,
 * murmur2_random) at --rate per second for --seconds, paced the way
 * `rapport gen --rate` paces, and notes for each message the monotonic
 * time of its rd_kafka_producev() call; its delivery report gives its
 * partition and offset.
 *
 * Meanwhile a second thread polls HGETALL <prefix>_offsets every --poll-us
 * and records when each partition's stored next offset changes.  rapport
 * writes that offset in the same atomic Lua flush as the scores, so an
 * event's score is readable in Redis exactly when its partition's stored
 * offset passes the event's offset.  An event's latency is the first poll
 * that saw it passed, minus its produce time: it includes the producer's
 * linger, the broker, the consumer's fetch, decoding, scoring, the flush
 * interval and the Redis write, and overstates by at most one poll
 * interval plus one HGETALL round trip.
 *
 * Events produced in the first --warmup seconds are left out of the
 * percentiles (rapport's first fetches and the producer's connection).
 * Prints key=value lines: counts, the achieved rate, p50 / p90 / p99 /
 * p99.9 / max in ms.
 *
 * With --metrics HOST:PORT (rapport's metrics_listen), it also reads
 * rapport's rapport_event_wait_seconds histograms at the end of the
 * warm-up and after the drain, and prints where the time of the events in
 * between went inside rapport: until their batch was due (batch), behind
 * an earlier write (queued), and their own write until Redis answered
 * (write), each as mean / p50 / p99 in ms (percentiles interpolated within
 * the histogram's buckets).  What is left of the mean end-to-end latency
 * (kafka_ms) is the producer's linger, the broker, the consumer's fetch
 * wait and the time in librdkafka's queue before rapport polled the event,
 * plus the poller's own delay.
 *
 * Threads: main produces and serves delivery reports; the poller owns its
 * own Redis connection and timeline until it is joined.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gen/story.h"
#include "common/redis_conn.h"

#define MAX_PARTITIONS 4096
#define MAX_PROPS 32

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* One produced message. */
typedef struct sent {
    int64_t t_ns;        /* when rd_kafka_producev() was called */
    int64_t offset;      /* -1 until delivered */
    int32_t partition;
} sent_t;

/* One change of a partition's stored offset, as the poller saw it. */
typedef struct seen {
    int64_t t_ns;
    int64_t offset;
} seen_t;

typedef struct timeline {
    seen_t *v;
    size_t n, cap;
} timeline_t;

typedef struct poller {
    rconn_t *rc;                   /* connected by main, then used by the poller only */
    const char *topic;
    char key[512];
    int n_parts;
    int64_t poll_ns;
    timeline_t *tl;                /* [n_parts]; the poller's until joined */
    pthread_mutex_t lock;
    int64_t latest[MAX_PARTITIONS]; /* under lock: the last stored offset seen, -1 none */
    atomic_int stop;
    atomic_int failed;
    uint64_t polls;
} poller_t;

static void *poller_main(void *arg) {
    poller_t *pl = arg;
    const char *argv[] = {"HGETALL", pl->key};
    size_t tlen = strlen(pl->topic);
    int64_t cur[MAX_PARTITIONS];
    for (int p = 0; p < pl->n_parts; p++)
        cur[p] = -1;
    while (!atomic_load(&pl->stop)) {
        redisReply *r = rconn_command_argv(pl->rc, 2, argv, NULL);
        int64_t t = now_ns();
        pl->polls++;
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            atomic_store(&pl->failed, 1);
            return NULL;
        }
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const char *f = r->element[i]->str;
            if (r->element[i]->len <= tlen || strncmp(f, pl->topic, tlen) != 0 || f[tlen] != ':')
                continue;
            long p = strtol(f + tlen + 1, NULL, 10);
            if (p < 0 || p >= pl->n_parts)
                continue;
            int64_t off = strtoll(r->element[i + 1]->str, NULL, 10);
            if (off == cur[p])
                continue;
            cur[p] = off;
            timeline_t *tl = &pl->tl[p];
            if (tl->n == tl->cap) {
                size_t cap = tl->cap ? tl->cap * 2 : 1024;
                seen_t *v = realloc(tl->v, cap * sizeof *v);
                if (!v) {
                    freeReplyObject(r);
                    atomic_store(&pl->failed, 1);
                    return NULL;
                }
                tl->v = v;
                tl->cap = cap;
            }
            tl->v[tl->n++] = (seen_t){t, off};
        }
        freeReplyObject(r);
        pthread_mutex_lock(&pl->lock);
        memcpy(pl->latest, cur, (size_t)pl->n_parts * sizeof cur[0]);
        pthread_mutex_unlock(&pl->lock);
        sleep_ns(pl->poll_ns);
    }
    return NULL;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    sent_t *s = &((sent_t *)opaque)[(uintptr_t)m->_private];
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->partition = m->partition;
        s->offset = m->offset;
    }
}

/* ---- rapport's rapport_event_wait_seconds, read over HTTP ---- */

#define STAGES 3
#define MAX_BOUNDS 64
static const char *const stage_names[STAGES] = {"batch", "queued", "write"};

typedef struct stage_hist {
    double le[MAX_BOUNDS];      /* upper bounds; the last one read may be +Inf */
    double cum[MAX_BOUNDS];     /* cumulative counts */
    int n;
    double sum, count;
} stage_hist_t;

/* GET /metrics from host:port into a malloc'd, NUL-terminated buffer. */
static char *http_metrics(const char *hostport) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return NULL;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(*host ? host : "127.0.0.1", colon + 1, &hints, &ai) != 0)
        return NULL;
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: rapport\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && (r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 4096) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
            }
            buf = b;
        }
    }
    close(fd);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Reads the three stages' histograms; 0, or -1 when they are not there. */
static int read_stages(const char *hostport, stage_hist_t h[STAGES]) {
    char *text = http_metrics(hostport);
    if (!text)
        return -1;
    memset(h, 0, STAGES * sizeof *h);
    int found = 0;
    for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        static const char pre[] = "rapport_event_wait_seconds_";
        if (strncmp(line, pre, sizeof pre - 1) != 0)
            continue;
        const char *kind = line + sizeof pre - 1;
        for (int st = 0; st < STAGES; st++) {
            char tag[64];
            snprintf(tag, sizeof tag, "{stage=\"%s\"", stage_names[st]);
            const char *t = strstr(kind, tag);
            if (!t || t - kind > 8)
                continue;
            const char *val = strchr(t, '}');
            if (!val)
                break;
            double v = strtod(val + 1, NULL);
            if (strncmp(kind, "bucket", 6) == 0 && h[st].n < MAX_BOUNDS) {
                const char *le = strstr(t, "le=\"");
                h[st].le[h[st].n] = le && strncmp(le + 4, "+Inf", 4) != 0 ? strtod(le + 4, NULL)
                                                                         : INFINITY;
                h[st].cum[h[st].n++] = v;
            } else if (strncmp(kind, "sum", 3) == 0) {
                h[st].sum = v;
            } else if (strncmp(kind, "count", 5) == 0) {
                h[st].count = v;
                found++;
            }
            break;
        }
    }
    free(text);
    return found == STAGES ? 0 : -1;
}

/* The q-quantile (ms) of the events counted between a and b, linear within
 * a bucket; the last finite bound when it falls in +Inf. */
static double stage_quantile(const stage_hist_t *a, const stage_hist_t *b, double q) {
    double total = b->count - a->count, want = q * total, prev_le = 0, prev_cum = 0;
    if (total <= 0)
        return 0;
    for (int i = 0; i < b->n; i++) {
        double cum = b->cum[i] - (i < a->n ? a->cum[i] : 0);
        if (cum >= want) {
            if (isinf(b->le[i]))
                return prev_le * 1000;
            double in = cum - prev_cum;
            return 1000 * (prev_le + (in > 0 ? (want - prev_cum) / in : 0) * (b->le[i] - prev_le));
        }
        prev_le = b->le[i];
        prev_cum = cum;
    }
    return prev_le * 1000;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_sent(const void *a, const void *b) {
    const sent_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

static double pct(const double *v, size_t n, double q) {
    size_t i = (size_t)ceil(q * (double)n);
    return n ? v[i ? i - 1 : 0] : 0;
}

static int topic_partitions(rd_kafka_t *rk, const char *topic) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

static void usage(FILE *f) {
    fputs("usage: latency -b BROKERS -t TOPIC -r REDIS_URL [--rate N] [--seconds S]\n"
          "               [--warmup S] [--customers N] [--seed N] [--prefix P]\n"
          "               [--poll-us N] [--start-ms N] [--drain S] [--metrics HOST:PORT]\n"
          "               [-X NAME=VALUE]...\n"
          "\n"
          "Produces at a steady rate to a topic that rapport consumes and prints the\n"
          "produce-to-readable-in-Redis latency.  Defaults: --rate 50000 --seconds 10\n"
          "--warmup 2 --customers 100000 --seed 2 --prefix rapport: --poll-us 1000\n"
          "--drain 300 (how long to wait for rapport to store the last offsets);\n"
          "--start-ms is the generator's simulated start (as for rapport gen): give a\n"
          "later one to each run against the same rapport, or its events are late.\n"
          "--metrics: rapport's metrics_listen, to print where the time went inside it.\n",
          f);
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"rate", required_argument, NULL, 'R'},    {"seconds", required_argument, NULL, 'S'},
        {"warmup", required_argument, NULL, 'W'},  {"customers", required_argument, NULL, 'C'},
        {"seed", required_argument, NULL, 'D'},    {"prefix", required_argument, NULL, 'P'},
        {"poll-us", required_argument, NULL, 'U'}, {"start-ms", required_argument, NULL, 'A'},
        {"drain", required_argument, NULL, 'N'},  {"metrics", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *brokers = NULL, *url = NULL, *prefix = "rapport:", *metrics = NULL;
    static stage_hist_t stages0[STAGES], stages1[STAGES];
    bool have_stages0 = false;
    const char *props[MAX_PROPS];
    size_t n_props = 0;
    double rate = 50000, seconds = 10, warmup = 2, drain = 300;
    long poll_us = 1000;
    static poller_t pl;
    gen_conf_t gc;
    gen_conf_default(&gc);
    gc.customers = 100000;
    gc.seed = 2;
    int c;
    while ((c = getopt_long(argc, argv, "b:t:r:X:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 't': pl.topic = optarg; break;
        case 'r': url = optarg; break;
        case 'X':
            if (n_props == MAX_PROPS || !strchr(optarg, '=')) {
                usage(stderr);
                return 2;
            }
            props[n_props++] = optarg;
            break;
        case 'R': rate = strtod(optarg, NULL); break;
        case 'S': seconds = strtod(optarg, NULL); break;
        case 'W': warmup = strtod(optarg, NULL); break;
        case 'C': gc.customers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'D': gc.seed = strtoull(optarg, NULL, 10); break;
        case 'P': prefix = optarg; break;
        case 'U': poll_us = strtol(optarg, NULL, 10); break;
        case 'A': gc.start_ms = strtoll(optarg, NULL, 10); break;
        case 'N': drain = strtod(optarg, NULL); break;
        case 'M': metrics = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!brokers || !pl.topic || !url || optind < argc || !(rate > 0) || !(seconds > 0) ||
        !(drain > 0) ||
        warmup < 0 || warmup >= seconds || poll_us < 1) {
        usage(stderr);
        return 2;
    }

    char errstr[512];
    int rc = 1;
    size_t cap = (size_t)(rate * seconds) + 1, n = 0;
    sent_t *sent = calloc(cap, sizeof *sent);
    double *lat = calloc(cap, sizeof *lat);
    gen_t *g = gen_new(&gc, errstr, sizeof errstr);
    rd_kafka_t *rk = NULL;
    bool poller_running = false;
    pthread_t poller_thread;
    if (!sent || !lat || !g) {
        fprintf(stderr, "latency: %s\n", g ? "out of memory" : errstr);
        goto out;
    }

    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    const char *defaults[][2] = {{"bootstrap.servers", brokers}, {"linger.ms", "5"},
                                 {"acks", "all"}, {"enable.idempotence", "true"},
                                 {"partitioner", "murmur2_random"}};
    bool conf_ok = true;
    for (size_t i = 0; conf_ok && i < sizeof defaults / sizeof defaults[0]; i++)
        conf_ok = rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], errstr,
                                    sizeof errstr) == RD_KAFKA_CONF_OK;
    for (size_t i = 0; conf_ok && i < n_props; i++) {
        char name[256];
        size_t len = (size_t)(strchr(props[i], '=') - props[i]);
        if (len == 0 || len >= sizeof name) {
            snprintf(errstr, sizeof errstr, "bad property %s", props[i]);
            conf_ok = false;
            break;
        }
        memcpy(name, props[i], len);
        name[len] = '\0';
        conf_ok = rd_kafka_conf_set(kc, name, props[i] + len + 1, errstr, sizeof errstr) ==
                  RD_KAFKA_CONF_OK;
    }
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_opaque(kc, sent);
    if (conf_ok)
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "latency: kafka: %s\n", errstr);
        goto out;
    }
    pl.n_parts = topic_partitions(rk, pl.topic);
    if (pl.n_parts < 1 || pl.n_parts > MAX_PARTITIONS) {
        fprintf(stderr, "latency: topic %s has no usable metadata\n", pl.topic);
        goto out;
    }

    rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, errstr, sizeof errstr);
    pl.rc = ep ? rconn_connect(ep, 5000, NULL, errstr, sizeof errstr) : NULL;
    rconn_endpoint_free(ep);
    if (!pl.rc) {
        fprintf(stderr, "latency: %s\n", errstr);
        goto out;
    }
    snprintf(pl.key, sizeof pl.key, "%s_offsets", prefix);
    pl.poll_ns = poll_us * 1000;
    pl.tl = calloc((size_t)pl.n_parts, sizeof *pl.tl);
    pthread_mutex_init(&pl.lock, NULL);
    if (!pl.tl || pthread_create(&poller_thread, NULL, poller_main, &pl) != 0) {
        fprintf(stderr, "latency: cannot start the poller\n");
        goto out;
    }
    poller_running = true;

    /* Produce, paced like gen/produce.c: message k is due at t0 + k / rate. */
    int64_t t0 = now_ns(), warm_ns = (int64_t)(warmup * 1e9);
    size_t first_timed = 0;
    gen_msg_t msg;
    bool pending = false;
    while (n < cap - 1) {
        int64_t due = t0 + (int64_t)((double)n / rate * 1e9), t = now_ns();
        if (due > t) {
            rd_kafka_poll(rk, 0);
            sleep_ns(due - t < 1000000 ? due - t : 1000000);
            continue;
        }
        if (!pending && gen_next(g, &msg) != 0) {
            fprintf(stderr, "latency: generator failed\n");
            goto out;
        }
        sent[n] = (sent_t){now_ns(), -1, -1};
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(pl.topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(msg.key, msg.key_len), RD_KAFKA_V_VALUE((void *)msg.value, msg.value_len),
            RD_KAFKA_V_TIMESTAMP(msg.timestamp_ms), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)n),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            pending = true;
            rd_kafka_poll(rk, 1);
            continue;
        }
        pending = false;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "latency: produce: %s\n", rd_kafka_err2str(e));
            goto out;
        }
        if (sent[n].t_ns - t0 < warm_ns)
            first_timed = n + 1;
        else if (metrics && !have_stages0 && n == first_timed) {
            /* The warm-up is over: what rapport counts from here is timed.
             * A rapport without the histograms gets no breakdown. */
            have_stages0 = read_stages(metrics, stages0) == 0;
            if (!have_stages0)
                fprintf(stderr, "latency: no rapport_event_wait_seconds at %s\n", metrics);
            metrics = have_stages0 ? metrics : NULL;
        }
        n++;
        rd_kafka_poll(rk, 0);
    }
    double produce_s = (double)(now_ns() - t0) / 1e9;
    rd_kafka_flush(rk, 10000);

    /* Wait (up to --drain seconds) until rapport has stored every delivered
     * offset: when it is slower than the rate, that is its backlog. */
    static int64_t need[MAX_PARTITIONS];
    size_t delivered = 0;
    for (size_t i = 0; i < n; i++)
        if (sent[i].offset >= 0) {
            delivered++;
            if (sent[i].offset + 1 > need[sent[i].partition])
                need[sent[i].partition] = sent[i].offset + 1;
        }
    int64_t wait_until = now_ns() + (int64_t)(drain * 1e9);
    for (;;) {
        int behind = 0;
        pthread_mutex_lock(&pl.lock);
        for (int p = 0; p < pl.n_parts; p++)
            behind += need[p] > 0 && pl.latest[p] < need[p];
        pthread_mutex_unlock(&pl.lock);
        if (!behind || atomic_load(&pl.failed) || now_ns() > wait_until)
            break;
        sleep_ns(10000000);
    }
    atomic_store(&pl.stop, 1);
    pthread_join(poller_thread, NULL);
    poller_running = false;
    if (atomic_load(&pl.failed)) {
        fprintf(stderr, "latency: the Redis poller failed\n");
        goto out;
    }

    /* Match: per partition, offsets ascending against the timeline. */
    for (size_t i = 0; i < n; i++)
        if (i < first_timed)
            sent[i].partition = -2; /* warm-up: sorts first, skipped */
    qsort(sent, n, sizeof *sent, cmp_sent);
    size_t matched = 0, missing = 0, k = 0;
    int32_t cur_p = -3;
    for (size_t i = 0; i < n; i++) {
        const sent_t *s = &sent[i];
        if (s->partition < 0 || s->offset < 0) {
            missing += s->partition == -1;
            continue;
        }
        if (s->partition != cur_p) {
            cur_p = s->partition;
            k = 0;
        }
        const timeline_t *tl = &pl.tl[s->partition];
        while (k < tl->n && tl->v[k].offset <= s->offset)
            k++;
        if (k == tl->n) {
            missing++;
            continue;
        }
        lat[matched++] = (double)(tl->v[k].t_ns - s->t_ns) / 1e6;
    }
    qsort(lat, matched, sizeof *lat, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < matched; i++)
        sum += lat[i];
    printf("produced=%zu delivered=%zu timed=%zu matched=%zu missing=%zu rate=%.0f polls=%" PRIu64
           "\n", n, delivered, n - first_timed, matched, missing, (double)n / produce_s, pl.polls);
    printf("latency_ms_p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f mean=%.1f\n",
           pct(lat, matched, 0.50), pct(lat, matched, 0.90), pct(lat, matched, 0.99),
           pct(lat, matched, 0.999), matched ? lat[matched - 1] : 0.0,
           matched ? sum / (double)matched : 0.0);
    if (have_stages0 && read_stages(metrics, stages1) != 0) {
        fprintf(stderr, "latency: no rapport_event_wait_seconds at %s\n", metrics);
        have_stages0 = false;
    }
    if (have_stages0) {
        double inside = 0;
        printf("stages_ms");
        for (int st = 0; st < STAGES; st++) {
            double cnt = stages1[st].count - stages0[st].count;
            double mean = cnt > 0 ? 1000 * (stages1[st].sum - stages0[st].sum) / cnt : 0;
            inside += mean;
            printf(" %s_mean=%.1f %s_p50=%.1f %s_p99=%.1f", stage_names[st], mean, stage_names[st],
                   stage_quantile(&stages0[st], &stages1[st], 0.5), stage_names[st],
                   stage_quantile(&stages0[st], &stages1[st], 0.99));
        }
        printf(" kafka_mean=%.1f events=%.0f\n", matched ? sum / (double)matched - inside : 0.0,
               stages1[2].count - stages0[2].count);
    }
    fflush(stdout);
    rc = matched > 0 ? 0 : 1; /* missing events are reported, not fatal */
out:
    if (poller_running) {
        atomic_store(&pl.stop, 1);
        pthread_join(poller_thread, NULL);
    }
    if (rk)
        rd_kafka_destroy(rk);
    rconn_free(pl.rc);
    if (pl.tl)
        for (int p = 0; p < pl.n_parts; p++)
            free(pl.tl[p].v);
    free(pl.tl);
    gen_free(g);
    free(lat);
    free(sent);
    return rc;
}
