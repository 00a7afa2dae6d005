/*
 * pipeline.c — see pipeline.h.  Test support only; aborts the test (via
 * returning errors the test asserts on) rather than the process.
 */
#include "tests/support/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "consumer/decode.h"
#include "tests/support/model.h"

/* ------------------------------------------------------------------ */

int mock_kafka_start(mock_kafka_t *mk, int brokers) {
    char err[256];
    memset(mk, 0, sizeof(*mk));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "0", err, sizeof(err));
    mk->host = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!mk->host) return -1;
    mk->mc = rd_kafka_mock_cluster_new(mk->host, brokers);
    if (!mk->mc) return -1;
    mk->brokers = rd_kafka_mock_cluster_bootstraps(mk->mc);
    return 0;
}

void mock_kafka_stop(mock_kafka_t *mk) {
    if (mk->mc) rd_kafka_mock_cluster_destroy(mk->mc);
    if (mk->host) rd_kafka_destroy(mk->host);
    memset(mk, 0, sizeof(*mk));
}

static rd_kafka_t *new_client(rd_kafka_type_t type, const char *brokers) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err));
    if (type == RD_KAFKA_CONSUMER) {
        rd_kafka_conf_set(c, "group.id", "rapport-test-reader", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
    if (!rk) fprintf(stderr, "test kafka client: %s\n", err);
    return rk;
}

int kafka_end_offsets(const char *brokers, const char *topic, int partitions, int64_t *out) {
    rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, brokers);
    if (!rk) return -1;
    int rc = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) rc = -1;
        out[p] = hi;
    }
    rd_kafka_destroy(rk);
    return rc;
}

int kafka_committed_offsets(const char *brokers, const char *group, const char *topic,
                            int partitions, int64_t *out) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err));
    rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err));
    rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(l, topic, p);
    int rc = rd_kafka_committed(rk, l, 10000) ? -1 : 0;
    for (int p = 0; p < partitions && rc == 0; p++) {
        out[p] = l->elems[p].err ? -1 : l->elems[p].offset;
        if (out[p] < 0) out[p] = -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

int kafka_produce_tombstones(const char *brokers, const char *topic, const char *const *ids,
                             size_t n, char *errstr, size_t errstr_size) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "partitioner", "murmur2_random", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err))) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, errstr_size, "tombstone producer: %s", err);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk) {
        snprintf(errstr, errstr_size, "tombstone producer: %s", err);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(ids[i], strlen(ids[i])), RD_KAFKA_V_VALUE(NULL, 0), RD_KAFKA_V_END);
        if (e) {
            snprintf(errstr, errstr_size, "tombstone for %s: %s", ids[i], rd_kafka_err2str(e));
            rc = -1;
        }
    }
    if (rc == 0 && rd_kafka_flush(rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "tombstones not delivered within 10 s");
        rc = -1;
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* ------------------------------------------------------------------ */

/* Opens path as fd target (stdin when in, else appended to). */
static void redirect(const char *path, int target, bool in) {
    if (!path) return;
    int fd = in ? open(path, O_RDONLY) : open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    dup2(fd, target);
    close(fd);
}

/* Forks and execs $RAPPORT_BIN args… with stdin, stdout and stderr from
 * and to the given files (NULL: inherited). */
static pid_t spawn(const char *in, const char *out, const char *err, const char *const *args) {
    const char *bin = getenv("RAPPORT_BIN");
    if (!bin || !*bin) bin = "bin/rapport";
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* A failed assertion ends the test without its cleanup: the child must
     * not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    redirect(in, 0, true);
    redirect(out, 1, false);
    redirect(err, 2, false);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    execv(bin, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

pid_t proc_start(const char *logpath, const char *const *args) {
    return spawn(NULL, logpath, logpath, args);
}

int proc_stop(pid_t pid, int sig, int timeout_ms) {
    if (sig) kill(pid, sig);
    int64_t end = clock_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (clock_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        clock_sleep_ms(20);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int proc_run(const char *logpath, const char *const *args, int timeout_ms) {
    pid_t pid = proc_start(logpath, args);
    if (pid < 0) return -1;
    return proc_stop(pid, 0, timeout_ms);
}

int proc_run_io(const char *in, const char *out, const char *err, const char *const *args,
                int timeout_ms) {
    pid_t pid = spawn(in, out, err, args);
    if (pid < 0) return -1;
    return proc_stop(pid, 0, timeout_ms);
}

/* ------------------------------------------------------------------ */

void lines_add(lines_t *l, const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof(char *));
        if (!l->v) abort();
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&l->v[l->n], fmt, ap) < 0) abort();
    va_end(ap);
    l->n++;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void lines_sort(lines_t *l) { qsort(l->v, l->n, sizeof(char *), cmp_str); }

void lines_free(lines_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int lines_compare(const lines_t *e, const lines_t *a, const char *what) {
    size_t i = 0, j = 0;
    int shown = 0;
    while ((i < e->n || j < a->n) && shown < 10) {
        int c = i >= e->n ? 1 : j >= a->n ? -1 : strcmp(e->v[i], a->v[j]);
        if (c == 0) {
            i++;
            j++;
            continue;
        }
        if (c < 0)
            fprintf(stderr, "%s: expected, missing: %s\n", what, e->v[i++]);
        else
            fprintf(stderr, "%s: unexpected:       %s\n", what, a->v[j++]);
        shown++;
    }
    if (shown) fprintf(stderr, "%s: %zu expected lines, %zu actual\n", what, e->n, a->n);
    return shown ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Rendering.  Both sides print the same line shapes. */

#define HASH_FIELDS "ci resolution sentiment loyalty ai_share aht_ms streak contacts resolved " \
                    "events at_risk updated_at last_event_id route route_reason"
#define ALERT_FIELDS "type customer_id score previous_score trigger event_id occurred_at " \
                     "partition offset reason narrative"

/* SPEC §10.1: the route every customer hash carries. */
static void render_route(lines_t *out, strview_t cid, bool human, const char *reason) {
    lines_add(out, "route %.*s route=%s route_reason=%s", (int)cid.len, cid.ptr,
              human ? "human" : "ai", reason);
}

typedef struct render_ctx {
    lines_t *out;
    const char *prefix;
} render_ctx_t;

static void render_upsert(void *op, const window_customer_view_t *v) {
    render_ctx_t *r = op;
    lines_add(r->out,
              "hash %.*s ci=%.4f resolution=%.4f sentiment=%.4f loyalty=%.4f ai_share=%.4f "
              "aht_ms=%.4f streak=%" PRId64 " contacts=%" PRId64 " resolved=%" PRId64
              " events=%" PRId64 " at_risk=%d updated_at=%" PRId64 " last_event_id=%.*s",
              (int)v->customer_id.len, v->customer_id.ptr, v->ci, v->resolution, v->sentiment,
              v->loyalty, v->ai_share, v->aht_ms, v->streak, v->contacts, v->resolved, v->events,
              v->at_risk, v->updated_at, (int)v->last_event_id.len, v->last_event_id.ptr);
    lines_add(r->out, "score %.*s %.4f", (int)v->customer_id.len, v->customer_id.ptr, v->ci);
    render_route(r->out, v->customer_id, v->route_human, v->route_reason);
}

static void render_alert(lines_t *out, int partition, long n, const char *const vals[11]) {
    lines_add(out,
              "alert p=%d n=%05ld type=%s customer_id=%s score=%s previous_score=%s trigger=%s "
              "event_id=%s occurred_at=%s partition=%s offset=%s reason=%s narrative=%s",
              partition, n, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6],
              vals[7], vals[8], vals[9], vals[10]);
}

/* Counter totals by (bucket start, field) summed over partitions: the
 * expected `<prefix>history:<S>` hashes (SPEC §9.1). */
typedef struct hist_sum {
    int64_t bucket_start;
    char field[WINDOW_HIST_FIELD_MAX];
    int64_t total;
} hist_sum_t;

typedef struct hist_acc {
    hist_sum_t *v;
    size_t n, cap;
} hist_acc_t;

static void hist_acc_add(hist_acc_t *h, int64_t bucket_start, const char *field, int64_t delta) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->v = realloc(h->v, h->cap * sizeof(*h->v));
        if (!h->v) abort();
    }
    hist_sum_t *x = &h->v[h->n++];
    x->bucket_start = bucket_start;
    snprintf(x->field, sizeof(x->field), "%s", field);
    x->total = delta;
}

static int cmp_hist(const void *a, const void *b) {
    const hist_sum_t *x = a, *y = b;
    if (x->bucket_start != y->bucket_start) return x->bucket_start < y->bucket_start ? -1 : 1;
    return strcmp(x->field, y->field);
}

/* Sums the entries of equal (S, field) and renders the history hashes and
 * the index.  Absent means 0 (SPEC §9.1), so a 0 total is not rendered:
 * whether a writer left a "0" behind depends on how it chunked its work. */
static void hist_acc_render(hist_acc_t *h, lines_t *out) {
    qsort(h->v, h->n, sizeof(*h->v), cmp_hist);
    int64_t last_s = 0;
    bool any = false;
    for (size_t i = 0; i < h->n;) {
        size_t j = i;
        int64_t total = 0;
        for (; j < h->n && !cmp_hist(&h->v[i], &h->v[j]); j++) total += h->v[j].total;
        if (total) lines_add(out, "history %" PRId64 " %s %" PRId64, h->v[i].bucket_start,
                             h->v[i].field, total);
        if (!any || h->v[i].bucket_start != last_s)
            lines_add(out, "history_index %" PRId64 " %" PRId64, h->v[i].bucket_start,
                      h->v[i].bucket_start);
        any = true;
        last_s = h->v[i].bucket_start;
        i = j;
    }
    free(h->v);
    memset(h, 0, sizeof(*h));
}

/* The organisation (SPEC §9.2); a 0 counter is not rendered (it may stay
 * present as "0"). */
static void org_render(const int64_t org[WINDOW_ORG_FIELDS], lines_t *out) {
    for (int k = 0; k < WINDOW_ORG_FIELDS; k++)
        if (org[k]) lines_add(out, "org %s %" PRId64, window_org_field_names[k], org[k]);
}

/* tombstone: e is a tombstone (SPEC §1.2), only its customer_id is set. */
typedef void (*topic_event_cb)(void *opaque, int32_t partition, const event_t *e,
                               int64_t offset, bool tombstone);

/* Reads the topic from the beginning to its end offsets and calls cb for
 * every message that decodes to a valid event or is a tombstone, in
 * partition order. */
static int topic_read(const char *brokers, const char *topic, int partitions,
                      const char *schema_dir, topic_event_cb cb, void *opaque, char *errstr,
                      size_t errstr_size) {
    int64_t end[256];
    if (partitions > 256 || kafka_end_offsets(brokers, topic, partitions, end)) {
        snprintf(errstr, errstr_size, "cannot read end offsets");
        return -1;
    }
    decoder_conf_t dc = {.schema_dir = schema_dir,
                         .max_message_bytes = 65536,
                         .max_future_skew_ms = 300000};
    decoder_t *dec = decoder_new(&dc, errstr, errstr_size);
    if (!dec) return -1;

    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, brokers);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    int remaining = 0;
    int64_t next[256];
    for (int p = 0; p < partitions; p++) {
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        next[p] = 0;
        if (end[p] > 0) remaining++;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t deadline = clock_ms() + 60000;
    int rc = 0;
    while (remaining > 0) {
        if (clock_ms() > deadline) {
            snprintf(errstr, errstr_size, "replay: timed out reading %s", topic);
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (!m->err && m->partition < partitions && m->offset >= next[m->partition]) {
            int p = m->partition;
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            kafka_msg_view_t v = {m->key, m->key_len, m->payload, m->len,
                                  tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts};
            event_t e;
            dlq_reason_t reason;
            char detail[256];
            decode_result_t res = decoder_decode(dec, &v, &e, &reason, detail, sizeof(detail));
            if (res == DECODE_OK || res == DECODE_TOMBSTONE)
                cb(opaque, p, &e, m->offset, res == DECODE_TOMBSTONE);
            next[p] = m->offset + 1;
            if (next[p] >= end[p]) remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    decoder_free(dec);
    return rc;
}

static void window_event(void *opaque, int32_t partition, const event_t *e, int64_t offset,
                         bool tombstone) {
    window_t **w = opaque;
    if (tombstone)
        window_erase(w[partition], e->customer_id, offset);
    else
        window_add(w[partition], e, offset);
}

int replay_render(const char *brokers, const char *topic, int partitions,
                  const char *schema_dir, const score_params_t *params, const char *prefix,
                  lines_t *out, char *errstr, size_t errstr_size) {
    window_t *w[256];
    if (partitions > 256) {
        snprintf(errstr, errstr_size, "too many partitions");
        return -1;
    }
    for (int p = 0; p < partitions; p++) w[p] = window_new(params, p, errstr, errstr_size);
    int rc = topic_read(brokers, topic, partitions, schema_dir, window_event, w, errstr,
                        errstr_size);

    render_ctx_t ctx = {out, prefix};
    hist_acc_t hist = {0};
    int64_t org[WINDOW_ORG_FIELDS] = {0};
    for (int p = 0; p < partitions; p++) {
        window_foreach_change(w[p], render_upsert, NULL, &ctx);
        if (window_watermark(w[p]) >= 0)
            lines_add(out, "watermark %s:%d %" PRId64, topic, p, window_watermark(w[p]));
        size_t na;
        const alert_t *a = window_alerts(w[p], &na);
        for (size_t i = 0; i < na; i++) {
            char score[32], prev[32], at[32], part[16], off[32], cid[300], eid[200], narr[400];
            snprintf(score, sizeof(score), "%.4f", a[i].score);
            if (a[i].has_previous)
                snprintf(prev, sizeof(prev), "%.4f", a[i].previous_score);
            else
                prev[0] = '\0';
            snprintf(at, sizeof(at), "%" PRId64, a[i].occurred_at);
            snprintf(part, sizeof(part), "%" PRId32, a[i].partition);
            snprintf(off, sizeof(off), "%" PRId64, a[i].offset);
            snprintf(cid, sizeof(cid), "%.*s", (int)a[i].customer_id.len, a[i].customer_id.ptr);
            snprintf(eid, sizeof(eid), "%.*s", (int)a[i].event_id.len, a[i].event_id.ptr);
            snprintf(narr, sizeof(narr), "%.*s", (int)a[i].narrative.len, a[i].narrative.ptr);
            const char *vals[11] = {alert_type_names[a[i].type], cid, score, prev,
                                    alert_trigger_names[a[i].trigger], eid, at, part, off,
                                    a[i].reason, narr};
            render_alert(out, p, (long)i, vals);
        }
        /* Never committed: the deltas are the totals of the whole run. */
        size_t nh;
        const window_hist_delta_t *h = window_history_deltas(w[p], &nh);
        for (size_t i = 0; i < nh; i++) hist_acc_add(&hist, h[i].bucket_start, h[i].field, h[i].delta);
        int64_t d[WINDOW_ORG_FIELDS];
        window_org_deltas(w[p], d);
        for (int k = 0; k < WINDOW_ORG_FIELDS; k++) org[k] += d[k];
        window_free(w[p]);
    }
    hist_acc_render(&hist, out);
    org_render(org, out);
    lines_sort(out);
    return rc;
}

static void model_event(void *opaque, int32_t partition, const event_t *e, int64_t offset,
                        bool tombstone) {
    model_t **m = opaque;
    if (tombstone)
        model_erase(m[partition], e->customer_id, offset);
    else
        model_add(m[partition], e, offset);
}

int model_render(const char *brokers, const char *topic, int partitions, const char *schema_dir,
                 const score_params_t *params, lines_t *out, model_t **models, char *errstr,
                 size_t errstr_size) {
    if (partitions > 256) {
        snprintf(errstr, errstr_size, "too many partitions");
        return -1;
    }
    for (int p = 0; p < partitions; p++) models[p] = model_new(params, p);
    int rc = topic_read(brokers, topic, partitions, schema_dir, model_event, models, errstr,
                        errstr_size);
    hist_acc_t hist = {0};
    int64_t org[WINDOW_ORG_FIELDS] = {0};
    for (int p = 0; p < partitions; p++) {
        size_t nc;
        const model_customer_t *c = model_customers(models[p], &nc);
        for (size_t i = 0; i < nc; i++)
            render_route(out, c[i].customer_id, c[i].route_human, c[i].route_reason);
        size_t nh;
        const model_hist_t *h = model_history(models[p], &nh);
        for (size_t i = 0; i < nh; i++) hist_acc_add(&hist, h[i].bucket_start, h[i].field, h[i].total);
        int64_t o[WINDOW_ORG_FIELDS];
        model_org(models[p], o);
        for (int k = 0; k < WINDOW_ORG_FIELDS; k++) org[k] += o[k];
    }
    hist_acc_render(&hist, out);
    org_render(org, out);
    lines_sort(out);
    return rc;
}

/* One hash of integer counters as "<what> [<label>] <field> <value>"
 * lines; a "0" is not rendered (absent means 0, SPEC §9). */
static void render_counters(redisContext *rc, const char *key, const char *what,
                            const char *label, lines_t *out) {
    redisReply *r = redisCommand(rc, "HGETALL %s", key);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *v = r->element[i + 1]->str;
        if (!strcmp(v, "0")) continue;
        if (label)
            lines_add(out, "%s %s %s %s", what, label, r->element[i]->str, v);
        else
            lines_add(out, "%s %s %s", what, r->element[i]->str, v);
    }
    freeReplyObject(r);
}

int redis_render(int port, const char *prefix, lines_t *out, char *errstr, size_t errstr_size) {
    redisContext *rc = redisConnect("127.0.0.1", port);
    if (!rc || rc->err) {
        snprintf(errstr, errstr_size, "redis connect: %s", rc ? rc->errstr : "oom");
        if (rc) redisFree(rc);
        return -1;
    }
    int result = 0;
    /* Hashes. */
    char cursor[64] = "0";
    do {
        redisReply *r = redisCommand(rc, "SCAN %s MATCH %sci:* COUNT 1000", cursor, prefix);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            snprintf(errstr, errstr_size, "SCAN failed");
            freeReplyObject(r);
            result = -1;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;
            redisReply *h = redisCommand(rc, "HMGET %s " HASH_FIELDS, key);
            redisReply *len = redisCommand(rc, "HLEN %s", key);
            char line[2048];
            int o = snprintf(line, sizeof(line), "hash %s", key + strlen(prefix) + 3);
            const char *names[] = {"ci", "resolution", "sentiment", "loyalty", "ai_share",
                                   "aht_ms", "streak", "contacts", "resolved", "events",
                                   "at_risk", "updated_at", "last_event_id"};
            bool ok = h && h->type == REDIS_REPLY_ARRAY && h->elements == 15;
            for (size_t k = 0; k < 13 && ok; k++)
                o += snprintf(line + o, sizeof(line) - (size_t)o, " %s=%s", names[k],
                              h->element[k]->str ? h->element[k]->str : "(nil)");
            if (len && len->integer != 15)
                snprintf(line + o, sizeof(line) - (size_t)o, " HLEN=%lld", len->integer);
            lines_add(out, "%s", line);
            if (ok)
                lines_add(out, "route %s route=%s route_reason=%s", key + strlen(prefix) + 3,
                          h->element[13]->str ? h->element[13]->str : "(nil)",
                          h->element[14]->str ? h->element[14]->str : "(nil)");
            freeReplyObject(h);
            freeReplyObject(len);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    redisReply *z = redisCommand(rc, "ZRANGE %sscores 0 -1 WITHSCORES", prefix);
    for (size_t i = 0; z && z->type == REDIS_REPLY_ARRAY && i + 1 < z->elements; i += 2)
        lines_add(out, "score %s %.4f", z->element[i]->str, strtod(z->element[i + 1]->str, NULL));
    freeReplyObject(z);

    redisReply *wm = redisCommand(rc, "HGETALL %swatermarks", prefix);
    for (size_t i = 0; wm && wm->type == REDIS_REPLY_ARRAY && i + 1 < wm->elements; i += 2)
        lines_add(out, "watermark %s %s", wm->element[i]->str, wm->element[i + 1]->str);
    freeReplyObject(wm);

    /* History hashes (every one, indexed or not), the index, the org. */
    snprintf(cursor, sizeof(cursor), "0");
    do {
        redisReply *r = redisCommand(rc, "SCAN %s MATCH %shistory:* COUNT 1000", cursor, prefix);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            snprintf(errstr, errstr_size, "SCAN failed");
            freeReplyObject(r);
            result = -1;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;
            render_counters(rc, key, "history", key + strlen(prefix) + strlen("history:"), out);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisReply *hi = redisCommand(rc, "ZRANGE %shistory_index 0 -1 WITHSCORES", prefix);
    for (size_t i = 0; hi && hi->type == REDIS_REPLY_ARRAY && i + 1 < hi->elements; i += 2)
        lines_add(out, "history_index %s %.0f", hi->element[i]->str,
                  strtod(hi->element[i + 1]->str, NULL));
    freeReplyObject(hi);
    char org_key[256];
    snprintf(org_key, sizeof(org_key), "%sorg", prefix);
    render_counters(rc, org_key, "org", NULL, out);

    /* Alerts in stream order, numbered per partition. */
    long counts[256] = {0};
    char last[64] = "-";
    for (;;) {
        redisReply *x = redisCommand(rc, "XRANGE %salerts %s + COUNT 1000", prefix, last);
        if (!x || x->type != REDIS_REPLY_ARRAY || x->elements == 0) {
            freeReplyObject(x);
            break;
        }
        for (size_t i = 0; i < x->elements; i++) {
            redisReply *e = x->element[i], *kv = e->element[1];
            const char *names[11] = {"type", "customer_id", "score", "previous_score",
                                     "trigger", "event_id", "occurred_at", "partition",
                                     "offset", "reason", "narrative"};
            const char *vals[11];
            bool order_ok = kv->elements == 22;
            for (size_t k = 0; k < 11; k++) {
                vals[k] = "(missing)";
                if (order_ok && strcmp(kv->element[2 * k]->str, names[k]) != 0) order_ok = false;
                for (size_t j = 0; j + 1 < kv->elements; j += 2)
                    if (!strcmp(kv->element[j]->str, names[k])) vals[k] = kv->element[j + 1]->str;
            }
            int p = atoi(vals[7]);
            if (p < 0 || p > 255) p = 255;
            render_alert(out, p, counts[p]++, vals);
            if (!order_ok) lines_add(out, "alert %s has fields out of SPEC order", e->element[0]->str);
            snprintf(last, sizeof(last), "(%s", e->element[0]->str);
        }
        freeReplyObject(x);
    }
    redisFree(rc);
    lines_sort(out);
    return result;
}

int redis_wait_offsets(int port, const char *prefix, const char *topic, int partitions,
                       const int64_t *end, int timeout_ms) {
    int64_t deadline = clock_ms() + timeout_ms;
    while (clock_ms() < deadline) {
        redisContext *rc = redisConnect("127.0.0.1", port);
        int done = 0;
        for (int p = 0; rc && !rc->err && p < partitions; p++) {
            redisReply *r = redisCommand(rc, "HGET %s_offsets %s:%d", prefix, topic, p);
            if (end[p] == 0 || (r && r->type == REDIS_REPLY_STRING && atoll(r->str) == end[p]))
                done++;
            freeReplyObject(r);
        }
        if (rc) redisFree(rc);
        if (done == partitions) return 0;
        clock_sleep_ms(100);
    }
    return -1;
}

long dlq_read(const char *brokers, const char *topic, int partitions, long *counts,
              char *errstr, size_t errstr_size) {
    int64_t end[64];
    if (partitions > 64 || kafka_end_offsets(brokers, topic, partitions, end)) {
        snprintf(errstr, errstr_size, "cannot read DLQ end offsets");
        return -1;
    }
    rd_kafka_t *rk = new_client(RD_KAFKA_CONSUMER, brokers);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    int remaining = 0;
    for (int p = 0; p < partitions; p++) {
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        if (end[p] > 0) remaining++;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    long n = 0;
    int64_t deadline = clock_ms() + 30000;
    while (remaining > 0 && clock_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (!m->err) {
            rd_kafka_headers_t *h = NULL;
            const void *val;
            size_t sz;
            const char *need[] = {"rapport.error", "rapport.error.detail", "rapport.source.topic",
                                  "rapport.source.partition", "rapport.source.offset"};
            bool ok = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR;
            for (size_t k = 0; ok && k < 5; k++)
                ok = rd_kafka_header_get_last(h, need[k], &val, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR;
            if (!ok) {
                snprintf(errstr, errstr_size, "DLQ message at offset %" PRId64 " lacks headers",
                         m->offset);
                n = -1;
            } else if (n >= 0) {
                rd_kafka_header_get_last(h, "rapport.error", &val, &sz);
                for (int r = 0; r < DLQ_REASON_COUNT; r++)
                    if (strlen(dlq_reason_names[r]) == sz && !memcmp(dlq_reason_names[r], val, sz))
                        counts[r]++;
                n++;
            }
            if (m->offset + 1 >= end[m->partition]) remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (remaining > 0 && n >= 0) {
        snprintf(errstr, errstr_size, "timed out reading the DLQ");
        return -1;
    }
    return n;
}
