/*
 * test_forget.c — `rapport forget` (cli/forget.c), run as a child process
 * against librdkafka's mock cluster hosted by the test.
 *
 * The topic is read back with a consumer of its own: every tombstone must
 * have a null value (payload NULL, not an empty one), the customer_id as
 * key, and the partition the producers' partitioner gives that key; the
 * partition and offset printed must be where it was found.  Bad ids, a
 * missing topic and refused deliveries must produce nothing or say what
 * failed, with the documented exit status.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/pipeline.h"
#include "tests/support/env.h"

#define TOPIC "interactions"
#define PARTS 6
#define MAX_MSGS 512

/* Kafka's ApiKey for Produce requests (the Kafka protocol). */
#define API_PRODUCE 0

typedef struct fixture {
    mock_kafka_t mk;
    char dir[64];
    char in[96], out[96], err[96];
    int run;                   /* files of the run_forget() call, numbered */
} fixture_t;

static void fixture_start(fixture_t *f) {
    memset(f, 0, sizeof(*f));
    cr_assert_eq(mock_kafka_start(&f->mk, 1), 0);
    cr_assert_eq(rd_kafka_mock_topic_create(f->mk.mc, TOPIC, PARTS, 1), 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/rapport-forget-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
}

static void fixture_stop(fixture_t *f) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f->dir);
    mock_kafka_stop(&f->mk);
}

/* Runs `rapport forget` with args (NULL-terminated, after "forget"), with
 * stdin_text (may be NULL: empty) on standard input.  Returns the exit
 * status; f->out and f->err name the files that hold stdout and stderr. */
static int run_forget(fixture_t *f, const char *stdin_text, size_t stdin_len,
                      const char *const *args) {
    f->run++;
    snprintf(f->in, sizeof(f->in), "%s/in.%d", f->dir, f->run);
    snprintf(f->out, sizeof(f->out), "%s/out.%d", f->dir, f->run);
    snprintf(f->err, sizeof(f->err), "%s/err.%d", f->dir, f->run);
    FILE *in = fopen(f->in, "w");
    cr_assert_not_null(in);
    if (stdin_text) cr_assert_eq(fwrite(stdin_text, 1, stdin_len, in), stdin_len);
    fclose(in);
    const char *argv[64] = {"forget"};
    int n = 1;
    for (; args[n - 1]; n++) {
        cr_assert_lt(n, 63);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    return proc_run_io(f->in, f->out, f->err, argv, 60000);
}

/* The whole of a file, NUL-terminated (caller frees). */
static void dump(const fixture_t *f) {
    char *o = env_slurp(f->out, NULL), *e = env_slurp(f->err, NULL);
    fprintf(stderr, "--- stdout\n%s--- stderr\n%s---\n", o, e);
    free(o);
    free(e);
}

/* What rapport forget printed for one id. */
typedef struct printed {
    char id[1200];             /* as printed: bare or quoted */
    int32_t partition;
    int64_t offset;
    bool error;
} printed_t;

/* Parses stdout: "<id> partition=P offset=O" or "<id> error=...". */
static size_t read_printed(const fixture_t *f, printed_t *p, size_t max) {
    char *out = env_slurp(f->out, NULL);
    size_t n = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert_lt(n, max);
        printed_t *q = &p[n++];
        memset(q, 0, sizeof(*q));
        char *sep = strstr(line, " partition=");
        char *err = strstr(line, " error=");
        if (err && (!sep || err < sep)) {
            q->error = true;
            sep = err;
        } else {
            cr_assert_not_null(sep, "no partition= in \"%s\"", line);
            cr_assert_eq(sscanf(sep, " partition=%" SCNd32 " offset=%" SCNd64, &q->partition,
                                &q->offset), 2, "\"%s\"", line);
        }
        cr_assert_lt((size_t)(sep - line), sizeof(q->id));
        memcpy(q->id, line, (size_t)(sep - line));
    }
    free(out);
    return n;
}

/* A message read back from the topic. */
typedef struct got {
    char key[300];
    size_t key_len;
    bool has_key;
    bool null_value;
    size_t value_len;
    int32_t partition;
    int64_t offset;
} got_t;

/* Reads every message of TOPIC, all partitions from the start. */
static size_t read_topic(const fixture_t *f, got_t *g, size_t max) {
    int64_t end[PARTS], want = 0;
    cr_assert_eq(kafka_end_offsets(f->mk.brokers, TOPIC, PARTS, end), 0);
    for (int p = 0; p < PARTS; p++) want += end[p];
    if (want == 0) return 0;
    cr_assert_leq(want, (int64_t)max);
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", f->mk.brokers, err, sizeof(err));
    rd_kafka_conf_set(c, "group.id", "test-forget-reader", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(PARTS);
    for (int p = 0; p < PARTS; p++)
        rd_kafka_topic_partition_list_add(tl, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(rk, tl), 0);
    rd_kafka_topic_partition_list_destroy(tl);
    size_t n = 0;
    for (int idle = 0; (int64_t)n < want && idle < 200;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err) {
            got_t *q = &g[n++];
            memset(q, 0, sizeof(*q));
            q->has_key = m->key != NULL;
            cr_assert_lt(m->key_len, sizeof(q->key));
            if (m->key) memcpy(q->key, m->key, m->key_len);
            q->key_len = m->key_len;
            q->null_value = m->payload == NULL;
            q->value_len = m->len;
            q->partition = m->partition;
            q->offset = m->offset;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    cr_assert_eq((int64_t)n, want, "read %zu of %" PRId64 " messages", n, want);
    return n;
}

static int64_t topic_size(const fixture_t *f) {
    int64_t end[PARTS], n = 0;
    cr_assert_eq(kafka_end_offsets(f->mk.brokers, TOPIC, PARTS, end), 0);
    for (int p = 0; p < PARTS; p++) n += end[p];
    return n;
}

typedef int32_t (*partitioner_t)(const rd_kafka_topic_t *, const void *, size_t, int32_t, void *,
                                 void *);

/* A customer id, and how rapport forget prints it. */
typedef struct id_case {
    const char *id;
    const char *printed;
} id_case_t;

/* Checks that every id has exactly one tombstone in the topic, where the
 * partitioner puts its key, at the partition and offset printed for it. */
static void expect_tombstones(const fixture_t *f, const id_case_t *ids, size_t n_ids,
                              partitioner_t part) {
    printed_t *pr = calloc(MAX_MSGS, sizeof(*pr));
    got_t *got = calloc(MAX_MSGS, sizeof(*got));
    size_t n_pr = read_printed(f, pr, MAX_MSGS);
    size_t n_got = read_topic(f, got, MAX_MSGS);
    cr_assert_eq(n_pr, n_ids, "%zu lines printed for %zu ids", n_pr, n_ids);
    cr_assert_eq(n_got, n_ids, "%zu messages in the topic for %zu ids", n_got, n_ids);
    for (size_t i = 0; i < n_ids; i++) {
        const char *id = ids[i].id;
        size_t len = strlen(id);
        /* Printed in the order given. */
        cr_assert_str_eq(pr[i].id, ids[i].printed);
        cr_assert(!pr[i].error, "%s failed", ids[i].printed);
        int32_t want = part(NULL, id, len, PARTS, NULL, NULL);
        size_t hits = 0;
        for (size_t j = 0; j < n_got; j++) {
            if (!got[j].has_key || got[j].key_len != len || memcmp(got[j].key, id, len) != 0)
                continue;
            hits++;
            cr_assert(got[j].null_value, "%s: value is not null (%zu bytes)", ids[i].printed,
                      got[j].value_len);
            cr_assert_eq(got[j].partition, want, "%s: partition %" PRId32 ", want %" PRId32,
                         ids[i].printed, got[j].partition, want);
            cr_assert_eq(got[j].partition, pr[i].partition, "%s: printed partition",
                         ids[i].printed);
            cr_assert_eq(got[j].offset, pr[i].offset, "%s: printed offset", ids[i].printed);
        }
        cr_assert_eq(hits, 1, "%s: %zu tombstones", ids[i].printed, hits);
    }
    free(pr);
    free(got);
}

static char id256[257], id257[258];

static void make_long_ids(void) {
    memset(id256, 'k', 256);
    id256[256] = '\0';
    memset(id257, 'k', 257);
    id257[257] = '\0';
}

/* Ids from the arguments, murmur2_random by default: the partitions that
 * every producer with the Java client's partitioner gives these keys. */
Test(forget, tombstones_land_where_murmur2_random_puts_the_key, .timeout = 120) {
    fixture_t f;
    fixture_start(&f);
    make_long_ids();
    id_case_t ids[] = {
        {"cust-000001", "cust-000001"}, {"cust-000002", "cust-000002"},
        {"cust-000003", "cust-000003"}, {"cust-000042", "cust-000042"},
        {"cust-000043", "cust-000043"}, {"cust-000044", "cust-000044"},
        {"cust-000045", "cust-000045"}, {"cust-000046", "cust-000046"},
        {"jos\xc3\xa9 \"x\"", "\"jos\\xc3\\xa9 \\\"x\\\"\""},
        {"a\\b", "\"a\\\\b\""},
        {"21", "21"}, {"foobar", "foobar"},
        {id256, id256},
    };
    size_t n = sizeof(ids) / sizeof(ids[0]);
    const char *args[32] = {"-b", f.mk.brokers, "-t", TOPIC};
    for (size_t i = 0; i < n; i++) args[4 + i] = ids[i].id;
    int st = run_forget(&f, NULL, 0, args);
    if (st != 0) dump(&f);
    cr_assert_eq(st, 0);
    expect_tombstones(&f, ids, n, rd_kafka_msg_partitioner_murmur2_random);

    /* Independent of librdkafka: Kafka's Java murmur2 of "21" and "foobar"
     * (Kafka's UtilsTest), positive-masked, modulo the partition count. */
    printed_t pr[16];
    read_printed(&f, pr, 16);
    cr_assert_eq(pr[10].partition, (int32_t)((uint32_t)-973932308 & 0x7fffffff) % PARTS);
    cr_assert_eq(pr[11].partition, (int32_t)((uint32_t)-790332482 & 0x7fffffff) % PARTS);
    fixture_stop(&f);
}

/* Bulk: ids from standard input, "-" in the place of the arguments. */
Test(forget, ids_from_standard_input, .timeout = 120) {
    fixture_t f;
    fixture_start(&f);
    enum { N = 300 };
    static char bufs[N][32];
    static id_case_t ids[N + 2];
    char *text = malloc(N * 40);
    size_t len = 0;
    ids[0] = (id_case_t){"first", "first"};
    for (int i = 0; i < N; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "bulk-%06d", i);
        ids[i + 1] = (id_case_t){bufs[i], bufs[i]};
        /* Every other line ends with CRLF, as from a Windows file. */
        len += (size_t)sprintf(text + len, "%s%s\n", bufs[i], i % 2 ? "\r" : "");
    }
    ids[N + 1] = (id_case_t){"last", "last"};
    const char *args[] = {"-b", f.mk.brokers, "-t", TOPIC, "first", "-", "last", NULL};
    int st = run_forget(&f, text, len, args);
    if (st != 0) dump(&f);
    cr_assert_eq(st, 0);
    expect_tombstones(&f, ids, N + 2, rd_kafka_msg_partitioner_murmur2_random);
    free(text);
    fixture_stop(&f);
}

/* -X kafka.partitioner is honoured, and -c reads the file rapport run reads. */
Test(forget, another_partitioner_from_X_and_a_config_file, .timeout = 120) {
    fixture_t f;
    fixture_start(&f);
    id_case_t ids[] = {
        {"cust-000001", "cust-000001"}, {"cust-000002", "cust-000002"},
        {"cust-000003", "cust-000003"}, {"cust-000004", "cust-000004"},
        {"cust-000005", "cust-000005"}, {"cust-000006", "cust-000006"},
    };
    size_t n = sizeof(ids) / sizeof(ids[0]), differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += rd_kafka_msg_partitioner_consistent_random(NULL, ids[i].id, strlen(ids[i].id),
                                                             PARTS, NULL, NULL) !=
                  rd_kafka_msg_partitioner_murmur2_random(NULL, ids[i].id, strlen(ids[i].id),
                                                          PARTS, NULL, NULL);
    cr_assert_gt(differ, 0, "the ids must tell the two partitioners apart");

    char conf[128];
    snprintf(conf, sizeof(conf), "%s/rapport.conf", f.dir);
    FILE *fp = fopen(conf, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "# shared with rapport run\nbrokers = %s\ntopic = %s\ngroup = rapport\n"
                "flush_ms = 20\nkafka.client.id = from-the-file\n",
            f.mk.brokers, TOPIC);
    fclose(fp);
    const char *args[] = {"-c", conf, "-X", "kafka.partitioner=consistent_random",
                          ids[0].id, ids[1].id, ids[2].id, ids[3].id, ids[4].id, ids[5].id,
                          NULL};
    int st = run_forget(&f, NULL, 0, args);
    if (st != 0) dump(&f);
    cr_assert_eq(st, 0);
    expect_tombstones(&f, ids, n, rd_kafka_msg_partitioner_consistent_random);
    char *err = env_slurp(f.err, NULL);
    cr_assert(strstr(err, "partitioner=consistent_random"), "%s", err);
    free(err);
    fixture_stop(&f);
}

/* One bad id among good ones: nothing is produced, exit status 2, and the
 * error names the bad id, escaped, and where it came from. */
Test(forget, a_bad_id_produces_nothing, .timeout = 120) {
    fixture_t f;
    fixture_start(&f);
    make_long_ids();
    static const struct {
        const char *id;        /* NULL: the bad id comes on standard input */
        const char *stdin_text;
        const char *names;     /* in the error */
        const char *why;
    } cases[] = {
        {"", NULL, "\"\" (argument 2)", "is empty"},
        {"a\xff", NULL, "\"a\\xff\" (argument 2)", "not valid UTF-8"},
        {"\xc0\xaf", NULL, "\"\\xc0\\xaf\"", "not valid UTF-8"},          /* overlong '/' */
        {"\xed\xa0\x80", NULL, "\"\\xed\\xa0\\x80\"", "not valid UTF-8"}, /* a surrogate */
        {"ab\xe2\x82", NULL, "\"ab\\xe2\\x82\"", "not valid UTF-8"},       /* cut short */
        {id257, NULL, "\"kkkkkkkk", "257 bytes"},
        {NULL, "ok-1\n\nok-2\n", "\"\" (line 2 of standard input)", "is empty"},
        {NULL, "ok-1\nbad\xfe\n", "(line 2 of standard input)", "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"-b", f.mk.brokers, "-t", TOPIC, "good-1",
                              cases[i].id ? cases[i].id : "-", "good-2", NULL};
        const char *in = cases[i].stdin_text;
        int st = run_forget(&f, in, in ? strlen(in) : 0, args);
        if (st != 2) dump(&f);
        cr_assert_eq(st, 2, "case %zu: exit %d", i, st);
        char *err = env_slurp(f.err, NULL);
        cr_assert(strstr(err, cases[i].names), "case %zu: %s", i, err);
        cr_assert(strstr(err, cases[i].why), "case %zu: %s", i, err);
        cr_assert(strstr(err, "nothing produced"), "case %zu: %s", i, err);
        free(err);
        size_t n;
        free(env_slurp(f.out, &n));
        cr_assert_eq(n, 0, "case %zu: printed something", i);
        cr_assert_eq(topic_size(&f), 0, "case %zu: something was produced", i);
    }
    fixture_stop(&f);
}

/* Usage errors: exit status 2, nothing produced; --help: exit 0. */
Test(forget, usage, .timeout = 60) {
    fixture_t f;
    fixture_start(&f);
    const char *no_ids[] = {"-b", f.mk.brokers, "-t", TOPIC, NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, no_ids), 2);
    const char *bad_key[] = {"-b", f.mk.brokers, "-X", "no_such_key=1", "c1", NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, bad_key), 2);
    const char *bad_prop[] = {"-b", f.mk.brokers, "-X", "kafka.partitioner=nope", "c1", NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, bad_prop), 2);
    const char *no_idem[] = {"-b", f.mk.brokers, "-X", "kafka.enable.idempotence=false", "c1",
                             NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, no_idem), 2);
    const char *bad_timeout[] = {"-b", f.mk.brokers, "--timeout-ms", "0", "c1", NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, bad_timeout), 2);
    cr_assert_eq(topic_size(&f), 0);

    const char *help[] = {"--help", NULL};
    cr_assert_eq(run_forget(&f, NULL, 0, help), 0);
    char *out = env_slurp(f.out, NULL);
    const char *must[] = {"tombstone", "murmur2_random", "erased_unknown", "compaction",
                          "history", "dead-letter", "partition=3 offset=1234", "alerts"};
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        cr_assert(strstr(out, must[i]), "--help does not mention %s", must[i]);
    free(out);
    fixture_stop(&f);
}

/* A topic the brokers do not know: exit 1 before anything is produced. */
Test(forget, a_missing_topic_fails_before_producing, .timeout = 60) {
    fixture_t f;
    fixture_start(&f);
    rd_kafka_mock_topic_set_error(f.mk.mc, TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    const char *args[] = {"-b", f.mk.brokers, "-t", TOPIC, "--timeout-ms", "3000", "c1", NULL};
    int st = run_forget(&f, NULL, 0, args);
    if (st != 1) dump(&f);
    cr_assert_eq(st, 1);
    char *err = env_slurp(f.err, NULL);
    cr_assert(strstr(err, "does not exist"), "%s", err);
    free(err);
    rd_kafka_mock_topic_set_error(f.mk.mc, TOPIC, RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(topic_size(&f), 0);
    fixture_stop(&f);
}

/* Brokers that never acknowledge: every id gets an error line, exit 1,
 * within the timeout. */
Test(forget, unacknowledged_tombstones_are_named, .timeout = 60) {
    fixture_t f;
    fixture_start(&f);
    rd_kafka_resp_err_t errs[64];
    for (int i = 0; i < 64; i++) errs[i] = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    rd_kafka_mock_push_request_errors_array(f.mk.mc, API_PRODUCE, 64, errs);
    const char *args[] = {"-b", f.mk.brokers, "-t", TOPIC, "--timeout-ms", "1500",
                          "c1", "c2", NULL};
    int st = run_forget(&f, NULL, 0, args);
    if (st != 1) dump(&f);
    cr_assert_eq(st, 1);
    printed_t pr[4];
    cr_assert_eq(read_printed(&f, pr, 4), 2);
    cr_assert(pr[0].error && pr[1].error);
    cr_assert_str_eq(pr[0].id, "c1");
    cr_assert_str_eq(pr[1].id, "c2");
    char *err = env_slurp(f.err, NULL);
    cr_assert(strstr(err, "2 of 2 tombstones not acknowledged"), "%s", err);
    free(err);
    fixture_stop(&f);
}
