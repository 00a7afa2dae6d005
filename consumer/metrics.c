/*
 * metrics.c — see metrics.h.  Owns the counters (atomics), the published
 * snapshot (under `lock`) and the three HTTP handlers, which run on the
 * HTTP thread.
 */
#include "consumer/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"

/* Upper bounds (seconds) of the flush histogram's buckets: a flush over
 * loopback takes well under a millisecond, a large one or a slow Redis
 * seconds, and a timeout redis_timeout_ms (5 s by default). */
static const double flush_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define FLUSH_BUCKETS (sizeof(flush_bounds) / sizeof(flush_bounds[0]))

/* Upper bounds (seconds) of the per-event wait histograms: live, an event
 * waits milliseconds to flush_ms in each stage; catching up, seconds. */
static const double wait_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075,
                                     0.1,   0.15,   0.25,  0.5,  1,    2.5,   5,    10,   30};
#define WAIT_BUCKETS (sizeof(wait_bounds) / sizeof(wait_bounds[0]))
static const char *const wait_names[METRICS_WAIT_COUNT] = {"batch", "queued", "write"};

struct metrics {
    char *version;
    int64_t stale_after_ms;

    /* Main thread writes, any thread reads. */
    _Atomic uint64_t scored, late, dead_letter, erased, erased_unknown;
    _Atomic uint64_t dead_by_reason[DLQ_REASON_COUNT];
    _Atomic uint64_t alerts_by_type[ALERT_TYPE_COUNT];
    _Atomic int64_t heartbeat_ms;
    _Atomic bool stopping;

    /* Main thread writes, any thread reads, both under lock. */
    pthread_mutex_t lock;
    uint64_t flush_counts[FLUSH_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    uint64_t flush_count;
    double flush_sum;
    uint64_t wait_counts[METRICS_WAIT_COUNT][WAIT_BUCKETS + 1]; /* as flush_counts */
    uint64_t wait_count[METRICS_WAIT_COUNT];
    double wait_sum[METRICS_WAIT_COUNT];
    bool redis_up;
    char redis_err[256];
    metrics_partition_t *parts;
    size_t nparts, parts_cap;
    uint64_t customers;
};

metrics_t *metrics_new(const char *version, int64_t stale_after_ms) {
    metrics_t *m = xcalloc(1, sizeof(*m));
    m->version = xstrdup(version);
    m->stale_after_ms = stale_after_ms;
    atomic_store(&m->heartbeat_ms, clock_ms());
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_free(metrics_t *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->lock);
    free(m->parts);
    free(m->version);
    free(m);
}

/* ---- Main thread ------------------------------------------------------ */

void metrics_event(metrics_t *m, bool late) {
    atomic_fetch_add_explicit(late ? &m->late : &m->scored, 1, memory_order_relaxed);
}

void metrics_erasure(metrics_t *m, bool held) {
    atomic_fetch_add_explicit(held ? &m->erased : &m->erased_unknown, 1, memory_order_relaxed);
}

void metrics_dead_letter(metrics_t *m, dlq_reason_t reason) {
    atomic_fetch_add_explicit(&m->dead_letter, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->dead_by_reason[reason], 1, memory_order_relaxed);
}

void metrics_alert(metrics_t *m, alert_type_t type) {
    atomic_fetch_add_explicit(&m->alerts_by_type[type], 1, memory_order_relaxed);
}

void metrics_flush_observe(metrics_t *m, double seconds) {
    size_t b = 0;
    while (b < FLUSH_BUCKETS && seconds > flush_bounds[b]) b++;
    pthread_mutex_lock(&m->lock);
    m->flush_counts[b]++;
    m->flush_count++;
    m->flush_sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

void metrics_wait_observe(metrics_t *m, metrics_wait_t stage, double seconds, uint64_t events) {
    size_t b = 0;
    while (b < WAIT_BUCKETS && seconds > wait_bounds[b]) b++;
    pthread_mutex_lock(&m->lock);
    m->wait_counts[stage][b] += events;
    m->wait_count[stage] += events;
    m->wait_sum[stage] += seconds * (double)events;
    pthread_mutex_unlock(&m->lock);
}

void metrics_redis(metrics_t *m, bool up, const char *err) {
    pthread_mutex_lock(&m->lock);
    m->redis_up = up;
    snprintf(m->redis_err, sizeof(m->redis_err), "%s", up || !err ? "" : err);
    pthread_mutex_unlock(&m->lock);
}

void metrics_partitions(metrics_t *m, const metrics_partition_t *parts, size_t n,
                        uint64_t customers) {
    pthread_mutex_lock(&m->lock);
    if (n > m->parts_cap) {
        m->parts = xrealloc(m->parts, n * sizeof(*m->parts));
        m->parts_cap = n;
    }
    if (n) memcpy(m->parts, parts, n * sizeof(*parts));
    m->nparts = n;
    m->customers = customers;
    pthread_mutex_unlock(&m->lock);
}

void metrics_heartbeat(metrics_t *m, int64_t now_ms) {
    atomic_store_explicit(&m->heartbeat_ms, now_ms, memory_order_relaxed);
}

void metrics_stopping(metrics_t *m) { atomic_store(&m->stopping, true); }

/* ---- Readers ---------------------------------------------------------- */

static uint64_t load(_Atomic uint64_t *v) {
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(metrics_t *m, char **text, size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return -1;

    family(f, "rapport_events_total", "counter",
           "Valid events applied (scored), valid events dropped as late, messages "
           "dead-lettered, and tombstones applied to a partition that held the customer "
           "(erased) or did not (erased_unknown).");
    fprintf(f, "rapport_events_total{result=\"scored\"} %" PRIu64 "\n", load(&m->scored));
    fprintf(f, "rapport_events_total{result=\"late\"} %" PRIu64 "\n", load(&m->late));
    fprintf(f, "rapport_events_total{result=\"dead_letter\"} %" PRIu64 "\n",
            load(&m->dead_letter));
    fprintf(f, "rapport_events_total{result=\"erased\"} %" PRIu64 "\n", load(&m->erased));
    fprintf(f, "rapport_events_total{result=\"erased_unknown\"} %" PRIu64 "\n",
            load(&m->erased_unknown));

    family(f, "rapport_dead_letters_total", "counter",
           "Messages sent to the dead-letter topic, by reason code.");
    for (int r = DLQ_NONE + 1; r < DLQ_REASON_COUNT; r++)
        fprintf(f, "rapport_dead_letters_total{reason=\"%s\"} %" PRIu64 "\n",
                dlq_reason_names[r], load(&m->dead_by_reason[r]));

    family(f, "rapport_alerts_total", "counter", "Alerts written to Redis, by type.");
    for (int t = 0; t < ALERT_TYPE_COUNT; t++)
        fprintf(f, "rapport_alerts_total{type=\"%s\"} %" PRIu64 "\n", alert_type_names[t],
                load(&m->alerts_by_type[t]));

    /* One copy of the snapshot, so that the histogram's buckets, sum and
     * count agree with each other. */
    pthread_mutex_lock(&m->lock);
    uint64_t counts[FLUSH_BUCKETS + 1];
    memcpy(counts, m->flush_counts, sizeof(counts));
    uint64_t fcount = m->flush_count;
    double fsum = m->flush_sum;
    uint64_t wcounts[METRICS_WAIT_COUNT][WAIT_BUCKETS + 1], wcount[METRICS_WAIT_COUNT];
    double wsum[METRICS_WAIT_COUNT];
    memcpy(wcounts, m->wait_counts, sizeof(wcounts));
    memcpy(wcount, m->wait_count, sizeof(wcount));
    memcpy(wsum, m->wait_sum, sizeof(wsum));
    bool up = m->redis_up;
    family(f, "rapport_customers_tracked", "gauge",
           "Customers in the windows of the assigned partitions.");
    fprintf(f, "rapport_customers_tracked %" PRIu64 "\n", m->customers);
    family(f, "rapport_watermark_ms", "gauge",
           "Event-time watermark of each assigned partition: the largest occurred_at "
           "consumed (ms since the epoch).");
    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].watermark_ms >= 0)
            fprintf(f, "rapport_watermark_ms{partition=\"%" PRId32 "\"} %" PRId64 "\n",
                    m->parts[i].partition, m->parts[i].watermark_ms);
    family(f, "rapport_consumer_lag", "gauge",
           "Messages of each assigned partition not yet processed, up to its high "
           "watermark.");
    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].lag >= 0)
            fprintf(f, "rapport_consumer_lag{partition=\"%" PRId32 "\"} %" PRId64 "\n",
                    m->parts[i].partition, m->parts[i].lag);
    pthread_mutex_unlock(&m->lock);

    family(f, "rapport_redis_flush_seconds", "histogram",
           "Duration of each Redis flush round trip, acknowledged or not.");
    uint64_t cum = 0;
    for (size_t b = 0; b < FLUSH_BUCKETS; b++) {
        cum += counts[b];
        fprintf(f, "rapport_redis_flush_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", flush_bounds[b],
                cum);
    }
    fprintf(f, "rapport_redis_flush_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", fcount);
    fprintf(f, "rapport_redis_flush_seconds_sum %.6f\n", fsum);
    fprintf(f, "rapport_redis_flush_seconds_count %" PRIu64 "\n", fcount);

    family(f, "rapport_event_wait_seconds", "histogram",
           "Time each event spent in rapport, by stage: from its poll until its batch was "
           "due (batch), then until the write of that batch began, behind an earlier one "
           "(queued), then until Redis answered it (write).");
    for (int st = 0; st < METRICS_WAIT_COUNT; st++) {
        cum = 0;
        for (size_t b = 0; b < WAIT_BUCKETS; b++) {
            cum += wcounts[st][b];
            fprintf(f, "rapport_event_wait_seconds_bucket{stage=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                    wait_names[st], wait_bounds[b], cum);
        }
        fprintf(f, "rapport_event_wait_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                wait_names[st], wcount[st]);
        fprintf(f, "rapport_event_wait_seconds_sum{stage=\"%s\"} %.6f\n", wait_names[st],
                wsum[st]);
        fprintf(f, "rapport_event_wait_seconds_count{stage=\"%s\"} %" PRIu64 "\n",
                wait_names[st], wcount[st]);
    }

    family(f, "rapport_redis_up", "gauge", "1 when the last Redis round trip succeeded, else 0.");
    fprintf(f, "rapport_redis_up %d\n", up ? 1 : 0);

    family(f, "rapport_build_info", "gauge", "Always 1; the version is in the label.");
    fprintf(f, "rapport_build_info{version=\"%s\"} 1\n", m->version);

    if (ferror(f)) {
        fclose(f);
        free(buf);
        return -1;
    }
    if (fclose(f) != 0) {
        free(buf);
        return -1;
    }
    *text = buf;
    *len = size;
    return 0;
}

int metrics_check_live(metrics_t *m, int64_t now_ms, char *why, size_t why_size) {
    int64_t age = now_ms - atomic_load_explicit(&m->heartbeat_ms, memory_order_relaxed);
    if (age <= m->stale_after_ms) return 0;
    snprintf(why, why_size, "main loop stalled: no heartbeat for %" PRId64 " ms (limit %" PRId64
             " ms)", age, m->stale_after_ms);
    return -1;
}

int metrics_check_ready(metrics_t *m, int64_t now_ms, char *why, size_t why_size) {
    if (metrics_check_live(m, now_ms, why, why_size) != 0) return -1;
    if (atomic_load(&m->stopping)) {
        snprintf(why, why_size, "stopping");
        return -1;
    }
    pthread_mutex_lock(&m->lock);
    int rc = -1;
    if (m->nparts == 0)
        snprintf(why, why_size, "no partitions assigned");
    else if (!m->redis_up)
        snprintf(why, why_size, "redis unreachable: %s", m->redis_err[0] ? m->redis_err : "?");
    else
        rc = 0;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- HTTP handlers (HTTP thread) -------------------------------------- */

static int text_body(int status, const char *msg, char **body, size_t *len) {
    size_t n = strlen(msg);
    char *b = xmalloc(n + 1);
    memcpy(b, msg, n);
    b[n] = '\n';
    *body = b;
    *len = n + 1;
    return status;
}

static int on_metrics(void *opaque, char **body, size_t *len, const char **content_type) {
    if (metrics_render(opaque, body, len) != 0) return 500;
    *content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 200;
}

static int on_healthz(void *opaque, char **body, size_t *len, const char **content_type) {
    (void)content_type;
    char why[200];
    if (metrics_check_live(opaque, clock_ms(), why, sizeof(why)) != 0)
        return text_body(503, why, body, len);
    return text_body(200, "ok", body, len);
}

static int on_readyz(void *opaque, char **body, size_t *len, const char **content_type) {
    (void)content_type;
    char why[400];
    if (metrics_check_ready(opaque, clock_ms(), why, sizeof(why)) != 0)
        return text_body(503, why, body, len);
    return text_body(200, "ready", body, len);
}

static const http_route_t metrics_routes[] = {
    {"/metrics", on_metrics, NULL},
    {"/healthz", on_healthz, NULL},
    {"/readyz", on_readyz, NULL},
};

http_server_t *metrics_serve(metrics_t *m, const char *listen, char *errstr, size_t errstr_size) {
    return http_server_start(listen, metrics_routes, sizeof(metrics_routes) / sizeof(metrics_routes[0]),
                             m, errstr, errstr_size);
}
