/*
 * forget.c — `rapport forget`: asks rapport to erase customers (SPEC §1.2)
 * by producing one tombstone per customer to the input topic: a message
 * whose key is the customer_id and whose value is null, partitioned with
 * the producers' partitioner so that it lands in the customer's partition.
 * Prints where each tombstone landed.
 *
 * Every id is read and checked before anything is produced: one bad id
 * and nothing is sent.  The command owns one idempotent producer (acks=all)
 * for its whole run; everything, delivery reports included (served inside
 * rd_kafka_poll() and rd_kafka_flush()), runs on the main thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/escape.h"
#include "common/log.h"
#include "consumer/kafka_log.h"
#include "consumer/utf8.h"
#include "scoring/event.h"

#define DEFAULT_TIMEOUT_MS 30000
#define PURGE_FLUSH_MS 2000
#define MAX_BAD_SHOWN 10
/* An id escaped in full: 4 bytes out per byte in, two quotes, a NUL. */
#define ID_TEXT_SIZE (EVENT_CUSTOMER_ID_MAX * 4 + 8)

/* One customer id to forget and what became of its tombstone. */
typedef struct forget_id {
    char *id;                  /* the bytes as given (owned) */
    size_t len;
    char where[48];            /* "argument 3", "line 7 of standard input" */
    bool reported;             /* a delivery report (or a refusal) came */
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} forget_id_t;

typedef struct forget_list {
    forget_id_t *v;
    size_t n, cap;
} forget_list_t;

static void usage(FILE *out) {
    fputs(
        "usage: rapport forget [-c FILE] [-b BROKERS] [-t TOPIC] [-X key=value]...\n"
        "                      [--timeout-ms N] [--stdin] [--] CUSTOMER_ID... | -\n"
        "\n"
        "Asks rapport to erase customers (right to erasure, docs/SPEC.md §1.2): produces\n"
        "one tombstone per CUSTOMER_ID to the input topic, a message whose key is the\n"
        "customer_id and whose value is null.  When rapport consumes it, it erases, in\n"
        "that partition:\n"
        "  - the customer's score, hash (ci:<customer_id>) and resume state;\n"
        "  - every alert of the customer in the alerts stream, with the customer's\n"
        "    own words (narrative).\n"
        "A later event of the customer starts afresh, as a new customer.\n"
        "\n"
        "It does NOT erase:\n"
        "  - the history aggregates (counters with no customer in them);\n"
        "  - the customer's messages in the Kafka log of TOPIC and in its dead-letter\n"
        "    topic: they stay until retention deletes them.  TOPIC must therefore use\n"
        "    delete retention (cleanup.policy=delete), never compaction: compaction\n"
        "    keeps only each customer's last event, so that a rebuild of the index from\n"
        "    the log would be wrong, and keeps that event, words included, with no\n"
        "    time limit.\n"
        "\n"
        "The partitioner must be the one the event producers use (default\n"
        "murmur2_random, the Java client's).  With another one the tombstone lands in\n"
        "another partition: it erases only that partition's alerts of the customer and\n"
        "is counted as erased_unknown, and the customer's score stays.\n"
        "\n"
        "  -c FILE           configuration file of key = value lines (the one rapport run\n"
        "                    reads); brokers, topic and kafka.* are used, other keys ignored\n"
        "  -b BROKERS        Kafka bootstrap servers (key brokers)\n"
        "  -t TOPIC          the input topic rapport consumes (key topic)\n"
        "  -X key=value      a configuration key, or kafka.<property> for librdkafka\n"
        "                    (security, SASL); e.g. -X kafka.partitioner=consistent_random\n"
        "      --timeout-ms N  how long to wait for the topic's metadata, then for the\n"
        "                    brokers to acknowledge each tombstone, 1..3600000 (default 30000)\n"
        "      --stdin       read customer ids from standard input, one per line (a final\n"
        "                    \"\\r\" is removed), after the CUSTOMER_IDs; a CUSTOMER_ID of\n"
        "                    \"-\" reads them in its place\n"
        "  -h, --help        this text\n"
        "\n"
        "An id is 1 to 256 bytes of valid UTF-8.  Every id is checked before anything\n"
        "is sent: if one is bad, nothing is produced.  Put ids that start with \"-\"\n"
        "after \"--\".  The producer is idempotent with acks=all; defaults: partitioner\n"
        "murmur2_random, allow.auto.create.topics=false.\n"
        "\n"
        "Output: one line per id on stdout, in the order given, once every tombstone\n"
        "is acknowledged or has failed:\n"
        "  cust-000042 partition=3 offset=1234\n"
        "  cust-000043 error=\"Local: Message timed out\"\n"
        "The id is printed as is when it is printable ASCII without spaces, quotes or\n"
        "backslashes; otherwise in double quotes, with \\\", \\\\, \\n and \\xNN escapes.\n"
        "\n"
        "Exit status: 0 every tombstone acknowledged; 1 some failed (producing one\n"
        "again does no harm), or the topic or brokers could not be used; 2 bad\n"
        "arguments or a bad customer id (nothing produced).\n",
        out);
}

static void ids_add(forget_list_t *l, const char *id, size_t len, const char *where_fmt,
                    size_t where_n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    forget_id_t *f = &l->v[l->n++];
    *f = (forget_id_t){.id = xmalloc(len + 1), .len = len, .partition = -1, .offset = -1};
    memcpy(f->id, id, len);
    f->id[len] = '\0';
    snprintf(f->where, sizeof(f->where), where_fmt, where_n);
}

static void ids_free(forget_list_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].id);
    free(l->v);
}

/* One id per line of f; the newline and a "\r" before it are not part of
 * the id.  Returns 0, or -1 with errstr filled on a read error. */
static int ids_read(forget_list_t *l, FILE *f, char *errstr, size_t errstr_size) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    errno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        ids_add(l, line, len, "line %zu of standard input", lineno);
    }
    int rc = 0;
    if (ferror(f)) {
        snprintf(errstr, errstr_size, "reading standard input: %s", strerror(errno));
        rc = -1;
    }
    free(line);
    return rc;
}

/* An id as it is printed: bare when every byte is printable ASCII other
 * than space, '"' and '\\'; else quoted and escaped (common/escape.h). */
static const char *id_text(const char *id, size_t len, size_t max, char *buf, size_t size) {
    bool bare = len > 0;
    for (size_t i = 0; i < len && bare; i++) {
        unsigned char c = (unsigned char)id[i];
        bare = c > 0x20 && c < 0x7f && c != '"' && c != '\\';
    }
    if (bare && (max == 0 || len <= max)) {
        snprintf(buf, size, "%s", id);
        return buf;
    }
    char esc[ID_TEXT_SIZE];
    snprintf(buf, size, "\"%s\"", escape_bytes(id, len, max, esc, sizeof(esc)));
    return buf;
}

/* SPEC §1.2: a tombstone's key is a valid customer_id, as SPEC §1.1's
 * invalid_field defines it.  Returns 0, or -1 with errstr saying why not. */
static int id_check(const forget_id_t *f, char *errstr, size_t errstr_size) {
    if (f->len == 0) {
        snprintf(errstr, errstr_size, "is empty");
        return -1;
    }
    if (f->len > EVENT_CUSTOMER_ID_MAX) {
        snprintf(errstr, errstr_size, "is %zu bytes long, over %d", f->len,
                 EVENT_CUSTOMER_ID_MAX);
        return -1;
    }
    size_t ok = utf8_valid_prefix(f->id, f->len);
    if (ok < f->len) {
        snprintf(errstr, errstr_size, "is not valid UTF-8 (at byte %zu)", ok);
        return -1;
    }
    return 0;
}

/* Checks every id and names each bad one on stderr (the first
 * MAX_BAD_SHOWN).  Returns the number of bad ids. */
static size_t ids_check(const forget_list_t *l) {
    size_t bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        char why[128], text[ID_TEXT_SIZE];
        if (id_check(&l->v[i], why, sizeof(why)) == 0) continue;
        if (bad++ < MAX_BAD_SHOWN)
            fprintf(stderr, "rapport forget: customer id %s (%s) %s\n",
                    id_text(l->v[i].id, l->v[i].len, 64, text, sizeof(text)), l->v[i].where,
                    why);
    }
    if (bad > MAX_BAD_SHOWN)
        fprintf(stderr, "rapport forget: and %zu more bad customer ids\n", bad - MAX_BAD_SHOWN);
    return bad;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    forget_id_t *f = m->_private;
    f->reported = true;
    f->err = m->err;
    f->partition = m->partition;
    f->offset = m->offset;
}

/* The producer: rapport's defaults for a tombstone, then the kafka.*
 * properties in the order given, then the timeout.  Returns NULL with
 * errstr filled; *partitioner receives the partitioner's name. */
static rd_kafka_t *producer_new(const config_t *conf, int timeout_ms, char *partitioner,
                                size_t partitioner_size, char *errstr, size_t errstr_size) {
    char timeout[24], err[512], idem[8];
    size_t n;
    snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
    const char *const defaults[][2] = {
        {"bootstrap.servers", conf->brokers},
        {"client.id", "rapport-forget"},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"partitioner", "murmur2_random"},
        {"allow.auto.create.topics", "false"},
    };
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], err, sizeof(err)))
            goto fail;
    for (size_t i = 0; i < conf->kafka_count; i++)
        if (rd_kafka_conf_set(kc, conf->kafka[i].key, conf->kafka[i].value, err, sizeof(err)))
            goto fail;
    if (rd_kafka_conf_set(kc, "message.timeout.ms", timeout, err, sizeof(err))) goto fail;
    /* acknowledged must mean written once, by every in-sync replica:
     * librdkafka itself refuses acks other than all with idempotence. */
    n = sizeof(idem);
    if (rd_kafka_conf_get(kc, "enable.idempotence", idem, &n) != RD_KAFKA_CONF_OK ||
        strcmp(idem, "true") != 0) {
        snprintf(err, sizeof(err), "kafka.enable.idempotence: must stay true");
        goto fail;
    }
    n = partitioner_size;
    if (rd_kafka_conf_get(kc, "partitioner", partitioner, &n) != RD_KAFKA_CONF_OK)
        snprintf(partitioner, partitioner_size, "?");
    kafka_log_install(kc, 1);
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
    if (!rk) goto fail;
    return rk; /* kc is owned by rk now */
fail:
    rd_kafka_conf_destroy(kc);
    snprintf(errstr, errstr_size, "kafka configuration: %s", err);
    return NULL;
}

/* The topic exists and the brokers answer.  Returns 0, or -1 with errstr. */
static int topic_check(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                       size_t errstr_size) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    int rc = 0;
    if (e) {
        snprintf(errstr, errstr_size, "topic %s: no metadata from the brokers: %s", topic,
                 rd_kafka_err2str(e));
        rc = -1;
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? "does not exist"
                                                              : rd_kafka_err2str(e));
        rc = -1;
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* Produces one tombstone per id and waits for every delivery report (or
 * the timeout, after which what is left is purged and counted as failed). */
static void produce_all(rd_kafka_t *rk, const char *topic, forget_list_t *l, int timeout_ms) {
    int64_t deadline = clock_ms() + timeout_ms;
    for (size_t i = 0; i < l->n; i++) {
        forget_id_t *f = &l->v[i];
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(f->id, f->len),
                RD_KAFKA_V_VALUE(NULL, 0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE(f), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && clock_ms() < deadline) {
                rd_kafka_poll(rk, 100);
                continue;
            }
            if (e) {   /* refused: no report will come */
                f->reported = true;
                f->err = e;
            }
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    /* message.timeout.ms is timeout_ms: every report is due by then. */
    if (rd_kafka_flush(rk, timeout_ms + 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, PURGE_FLUSH_MS);
    }
}

/* Prints one line per id, in the order given.  Returns the number of ids
 * whose tombstone was not acknowledged. */
static size_t print_results(const forget_list_t *l) {
    size_t failed = 0;
    for (size_t i = 0; i < l->n; i++) {
        const forget_id_t *f = &l->v[i];
        char text[ID_TEXT_SIZE], q[256];
        id_text(f->id, f->len, 0, text, sizeof(text));
        if (f->reported && f->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            printf("%s partition=%" PRId32 " offset=%" PRId64 "\n", text, f->partition,
                   f->offset);
            continue;
        }
        failed++;
        printf("%s error=%s\n", text,
               log_quote(f->reported ? rd_kafka_err2str(f->err) : "no delivery report", q,
                         sizeof(q)));
    }
    fflush(stdout);
    return failed;
}

static int parse_timeout(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || errno || *end || v < 1 || v > 3600000) return -1;
    *out = (int)v;
    return 0;
}

enum { OPT_STDIN = 256, OPT_TIMEOUT };

static const struct option long_opts[] = {
    {"brokers", required_argument, NULL, 'b'},
    {"topic", required_argument, NULL, 't'},
    {"stdin", no_argument, NULL, OPT_STDIN},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define OPTSTRING ":c:b:t:X:h"

/* First pass: -c, --help and the flags that are not configuration keys.
 * Returns -1 to go on, or the exit status (0 for --help, 2 for a bad
 * argument, with the message printed). */
static int parse_flags(int argc, char **argv, const char **file, bool *use_stdin,
                       int *timeout_ms) {
    optind = 0;   /* glibc: start over, whatever parsed argv before */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, OPTSTRING, long_opts, NULL)) != -1) {
        const char *opt = argv[optind - 1];
        switch (c) {
        case 'c': *file = optarg; break;
        case OPT_STDIN: *use_stdin = true; break;
        case OPT_TIMEOUT:
            if (parse_timeout(optarg, timeout_ms) != 0) {
                fprintf(stderr, "rapport forget: --timeout-ms: expected 1..3600000, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "rapport forget: option %s needs a value\n", opt);
            return 2;
        case '?':
            fprintf(stderr, "rapport forget: unknown option %s (see rapport forget --help)\n",
                    opt);
            return 2;
        default: break;
        }
    }
    return -1;
}

/* Second pass: -b, -t and -X over the file's values, in the order given. */
static int parse_keys(int argc, char **argv, config_t *conf, char *err, size_t err_size) {
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, OPTSTRING, long_opts, NULL)) != -1) {
        int rc = 0;
        if (c == 'b') rc = config_set(conf, "brokers", optarg, err, err_size);
        if (c == 't') rc = config_set(conf, "topic", optarg, err, err_size);
        if (c == 'X') rc = config_set_pair(conf, optarg, err, err_size);
        if (rc != 0) return -1;
    }
    return 0;
}

int cmd_forget(int argc, char **argv) {
    const char *file = NULL;
    bool use_stdin = false;
    int timeout_ms = DEFAULT_TIMEOUT_MS;
    int status = parse_flags(argc, argv, &file, &use_stdin, &timeout_ms);
    if (status >= 0) return status;

    char err[1024];
    forget_list_t ids = {0};
    rd_kafka_t *rk = NULL;
    config_t *conf = config_new();
    if (!conf) return 1;
    status = 2;
    if (file && config_load_file(conf, file, err, sizeof(err)) != 0) goto bad;
    if (parse_keys(argc, argv, conf, err, sizeof(err)) != 0) goto bad;
    log_level_t lvl;
    if (log_level_parse(conf->log_level, &lvl) != 0) {
        snprintf(err, sizeof(err), "log_level: \"%s\" is not error, warn, info or debug",
                 conf->log_level);
        goto bad;
    }
    log_set_level(lvl);
    if (!*conf->brokers || !*conf->topic) {
        snprintf(err, sizeof(err), "%s: must not be empty", *conf->brokers ? "topic" : "brokers");
        goto bad;
    }

    /* optind is past the options: GNU getopt moved the ids there.  "-"
     * reads standard input in its place; --stdin, after the arguments. */
    bool read_stdin = false;
    for (int i = optind; i <= argc; i++) {
        bool here = i < argc ? strcmp(argv[i], "-") == 0 : use_stdin;
        if (i < argc && !here) {
            ids_add(&ids, argv[i], strlen(argv[i]), "argument %zu", (size_t)(i - optind + 1));
            continue;
        }
        if (!here || read_stdin) continue;
        read_stdin = true;
        if (ids_read(&ids, stdin, err, sizeof(err)) != 0) {
            status = 1;
            goto bad;
        }
    }
    if (ids.n == 0) {
        snprintf(err, sizeof(err), "no customer id given (see rapport forget --help)");
        goto bad;
    }
    size_t bad_ids = ids_check(&ids);
    if (bad_ids > 0) {
        snprintf(err, sizeof(err), "%zu bad customer id%s: nothing produced", bad_ids,
                 bad_ids == 1 ? "" : "s");
        goto bad;
    }

    char partitioner[64];
    rk = producer_new(conf, timeout_ms, partitioner, sizeof(partitioner), err, sizeof(err));
    if (!rk) goto bad;
    status = 1;
    if (topic_check(rk, conf->topic, timeout_ms, err, sizeof(err)) != 0) goto bad;
    produce_all(rk, conf->topic, &ids, timeout_ms);
    rd_kafka_destroy(rk);
    rk = NULL;

    size_t failed = print_results(&ids);
    if (failed > 0) {
        snprintf(err, sizeof(err),
                 "%zu of %zu tombstones not acknowledged (the lines with error=); "
                 "producing them again does no harm",
                 failed, ids.n);
        goto bad;
    }
    fprintf(stderr, "rapport forget: %zu tombstone%s acknowledged, topic=%s partitioner=%s\n",
            ids.n, ids.n == 1 ? "" : "s", conf->topic, partitioner);
    status = 0;
    goto out;
bad:
    fprintf(stderr, "rapport forget: %s\n", err);
out:
    if (rk) rd_kafka_destroy(rk);
    ids_free(&ids);
    config_free(conf);
    return status;
}
