/*
 * config.c — the configuration table and everything derived from it.
 *
 * Each key is one row: name, type, default, range, where it lands in
 * config_t, and one line of help (as Redis's config.c and librdkafka's
 * rdkafka_conf.c do).  Parsing, validation, --help and docs/CONFIG.md all
 * read this table, so they cannot disagree.
 */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/log.h"

typedef enum { T_STR, T_I64, T_I32, T_F64 } ctype_t;

typedef struct ckey {
    const char *name;
    ctype_t type;
    const char *def;
    double min, max;           /* numbers only */
    size_t off;
    const char *help;
} ckey_t;

#define O(f) offsetof(config_t, f)
#define S(f) offsetof(config_t, score.f)
#define BIG 9.2e18

static const ckey_t keys[] = {
    {"brokers", T_STR, "localhost:9092", 0, 0, O(brokers),
     "Kafka bootstrap servers (kafka.bootstrap.servers); -b"},
    {"group", T_STR, "rapport", 0, 0, O(group), "Kafka consumer group id; -G"},
    {"topic", T_STR, "interactions", 0, 0, O(topic), "input topic; -t"},
    {"dlq_topic", T_STR, "", 0, 0, O(dlq_topic),
     "dead-letter topic; empty means TOPIC.dlq"},
    {"schema_dir", T_STR, "", 0, 0, O(schema_dir),
     "directory of writer schemas, one ID.avsc file per schema id; asked before the registry"},
    {"schema_registry_url", T_STR, "", 0, 0, O(schema_registry_url),
     "Confluent-compatible schema registry (http or https); empty: none"},
    {"schema_registry_user", T_STR, "", 0, 0, O(schema_registry_user),
     "basic-auth user for the registry"},
    {"schema_registry_password", T_STR, "", 0, 0, O(schema_registry_password),
     "basic-auth password for the registry; or env RAPPORT_SCHEMA_REGISTRY_PASSWORD"},
    {"schema_registry_password_file", T_STR, "", 0, 0, O(schema_registry_password_file),
     "file holding schema_registry_password (one trailing newline stripped)"},
    {"schema_registry_ca_file", T_STR, "", 0, 0, O(schema_registry_ca_file),
     "CA certificates (PEM) to verify an https registry; empty: the system's"},
    {"redis_url", T_STR, "redis://127.0.0.1:6379", 0, 0, O(redis_url),
     "redis://[[user]:password@]host[:port][/db], rediss://... (TLS) or "
     "unix:///path.sock; -r; or env RAPPORT_REDIS_URL"},
    {"redis_url_file", T_STR, "", 0, 0, O(redis_url_file),
     "file holding redis_url (one trailing newline stripped), to keep its password "
     "out of the configuration"},
    {"redis_tls_ca_file", T_STR, "", 0, 0, O(redis_tls_ca_file),
     "rediss://: CA certificates (PEM) to verify Redis with; empty: the system's"},
    {"redis_tls_cert_file", T_STR, "", 0, 0, O(redis_tls_cert_file),
     "rediss://: client certificate (PEM), for servers with tls-auth-clients yes"},
    {"redis_tls_key_file", T_STR, "", 0, 0, O(redis_tls_key_file),
     "rediss://: private key (PEM) of redis_tls_cert_file"},
    {"redis_tls_server_name", T_STR, "", 0, 0, O(redis_tls_server_name),
     "rediss://: name sent (SNI) and checked in the certificate; empty: the URL's host"},
    {"prefix", T_STR, "rapport:", 0, 0, O(prefix), "prefix of every Redis key rapport writes"},
    {"bucket_ms", T_I64, "86400000", 1, BIG, S(bucket_ms), "width of one time bucket, ms"},
    {"window_buckets", T_I32, "30", 1, 100000, S(window_buckets), "buckets in the window"},
    {"prior_weight", T_F64, "3", 0, 1e9, S(prior_weight), "k, the weight of the neutral prior"},
    {"w_resolution", T_F64, "0.4", 0, 1e9, S(w_resolution), "weight of resolution in ci"},
    {"w_sentiment", T_F64, "0.3", 0, 1e9, S(w_sentiment), "weight of sentiment in ci"},
    {"w_loyalty", T_F64, "0.3", 0, 1e9, S(w_loyalty), "weight of loyalty in ci"},
    {"streak_penalty", T_F64, "4", 0, 100, S(streak_penalty),
     "points off ci per unresolved AI contact in a row"},
    {"streak_cap", T_I32, "5", 0, 1000000, S(streak_cap), "most streak contacts that count"},
    {"risk_threshold", T_F64, "35", 0, 100, S(risk_threshold), "churn_risk when ci falls below"},
    {"recover_threshold", T_F64, "50", 0, 100, S(recover_threshold),
     "recovered when an at-risk ci reaches at least this"},
    {"needs_human_streak", T_I32, "3", 1, 1000000, S(needs_human_streak),
     "needs_human at this many unresolved AI contacts in a row"},
    {"needs_human_sentiment", T_F64, "-0.6", -1, 1, S(needs_human_sentiment),
     "needs_human when an AI contact's sentiment is at or below"},
    {"needs_human_cooldown_ms", T_I64, "86400000", 0, BIG, S(needs_human_cooldown_ms),
     "at most one needs_human per customer within this time, ms"},
    {"route_streak", T_I32, "2", 1, 1000000, S(route_streak),
     "route to a human at this many unresolved AI contacts in a row"},
    {"route_sentiment", T_F64, "-0.5", -1, 1, S(route_sentiment),
     "route to a human when the latest sentiment in the window is at or below"},
    {"max_future_skew_ms", T_I64, "300000", 0, BIG, O(max_future_skew_ms),
     "occurred_at may exceed the Kafka timestamp by this much, ms"},
    {"max_message_bytes", T_I64, "65536", 5, 104857600, O(max_message_bytes),
     "larger values are dead-lettered as message_too_large"},
    {"flush_ms", T_I64, "50", 1, 60000, O(flush_ms),
     "a score reaches Redis within this long of its event being consumed"},
    {"flush_live_ms", T_I64, "10", 0, 60000, O(flush_live_ms),
     "while rapport keeps up, a batch is written this long after its first event, or twice "
     "as long as the last write took when that is longer (at most flush_ms; 0: flush_ms)"},
    {"flush_backlog_ms", T_I64, "0", 0, 600000, O(flush_backlog_ms),
     "while rapport is behind, a batch grows until it has caught up, or at most this "
     "long; 0: no time limit (flush_backlog_mb bounds it)"},
    {"flush_backlog_mb", T_I64, "256", 1, 65536, O(flush_backlog_mb),
     "a batch is written when writing its changed customers would take this many MiB "
     "(the batch and its Redis requests), or longer than shutdown_timeout_ms"},
    {"flush_max_customers", T_I64, "0", 0, 10000000, O(flush_max_customers),
     "flush early when this many customers changed; 0: only flush_backlog_mb bounds a batch"},
    {"alerts_maxlen", T_I64, "1000000", 1, BIG, O(alerts_maxlen),
     "the alerts stream is trimmed with MAXLEN ~ this"},
    {"redis_timeout_ms", T_I64, "2000", 10, 600000, O(redis_timeout_ms),
     "Redis connect and command timeout, ms; with shutdown_timeout_ms, under 10 s"},
    {"shutdown_timeout_ms", T_I64, "5000", 100, 600000, O(shutdown_timeout_ms),
     "on SIGTERM, give up writing the last batch after this long (plus one "
     "redis_timeout_ms for a write already under way); 10 s after that the "
     "process exits whatever it waits for"},
    {"metrics_listen", T_STR, ":9464", 0, 0, O(metrics_listen),
     "[host]:port for /metrics, /healthz and /readyz, bound at start-up; empty disables"},
    {"log_level", T_STR, "info", 0, 0, O(log_level), "error, warn, info or debug"},
    {"dashboard_auth_file", T_STR, "", 0, 0, O(dashboard_auth_file),
     "rapport dashboard: a file of one user:password line for HTTP basic auth; empty: none"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const ckey_t *key_find(const char *name) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    return NULL;
}

static int set_key(config_t *c, const ckey_t *k, const char *value, char *errstr,
                   size_t errstr_size) {
    char *p = (char *)c + k->off;
    char *end;
    errno = 0;
    switch (k->type) {
    case T_STR:
        free(*(char **)p);
        *(char **)p = xstrdup(value);
        return 0;
    case T_I64:
    case T_I32: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < k->min || (double)v > k->max) {
            snprintf(errstr, errstr_size, "%s: \"%s\" is not an integer in %.0f..%.0f", k->name,
                     value, k->min, k->max);
            return -1;
        }
        if (k->type == T_I64)
            *(int64_t *)p = v;
        else
            *(int32_t *)p = (int32_t)v;
        return 0;
    }
    case T_F64: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v) || v < k->min || v > k->max) {
            snprintf(errstr, errstr_size, "%s: \"%s\" is not a number in %g..%g", k->name, value,
                     k->min, k->max);
            return -1;
        }
        *(double *)p = v;
        return 0;
    }
    }
    return -1;
}

/* Secrets that may come from a file or the environment instead of the
 * configuration, so that they stay off command lines and out of files
 * that are shared (docs/SECURITY.md). */
static const struct secret {
    const char *file_key, *key, *env;
} secrets[] = {
    {"redis_url_file", "redis_url", "RAPPORT_REDIS_URL"},
    {"schema_registry_password_file", "schema_registry_password",
     "RAPPORT_SCHEMA_REGISTRY_PASSWORD"},
};
#define NSECRETS (sizeof(secrets) / sizeof(secrets[0]))
#define SECRET_MAX_BYTES 65536

/* Reads the secret of `key` from path into *out (caller frees): the whole
 * file less one trailing newline.  Errors name the key and the file, never
 * what it holds. */
static int read_secret(const char *key, const char *path, char **out, char *errstr,
                       size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s: %s", key, path, strerror(errno));
        return -1;
    }
    char *buf = xmalloc(SECRET_MAX_BYTES + 1);
    size_t n = fread(buf, 1, SECRET_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    const char *why = bad ? "cannot be read" : n > SECRET_MAX_BYTES ? "is larger than 64 KiB" : NULL;
    if (!why) {
        if (n > 0 && buf[n - 1] == '\n') n--;
        if (n > 0 && buf[n - 1] == '\r') n--;
        buf[n] = '\0';
        if (n == 0)
            why = "is empty";
        else if (strlen(buf) != n || strpbrk(buf, "\r\n"))
            why = "must hold one line (a NUL byte or a newline is inside)";
    }
    if (why) {
        snprintf(errstr, errstr_size, "%s: %s %s", key, path, why);
        explicit_bzero(buf, SECRET_MAX_BYTES + 1);
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

static void set_default(config_t *c, const ckey_t *k) {
    char err[256];
    if (set_key(c, k, k->def, err, sizeof(err)) != 0) abort(); /* a bug in the table */
}

config_t *config_new(void) {
    config_t *c = xcalloc(1, sizeof(*c));
    for (size_t i = 0; i < NKEYS; i++) set_default(c, &keys[i]);
    char err[256];
    for (size_t i = 0; i < NSECRETS; i++) {
        const char *v = getenv(secrets[i].env);
        if (v && *v && set_key(c, key_find(secrets[i].key), v, err, sizeof(err)) != 0) abort();
    }
    return c;
}

void config_score_defaults(config_score_t *s) {
    config_t c = {0};
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].off >= O(score) && keys[i].off < O(score) + sizeof(c.score))
            set_default(&c, &keys[i]); /* numbers only: nothing to free */
    *s = c.score;
}

void config_free(config_t *c) {
    if (!c) return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == T_STR) free(*(char **)((char *)c + keys[i].off));
    for (size_t i = 0; i < c->kafka_count; i++) {
        free(c->kafka[i].key);
        free(c->kafka[i].value);
    }
    free(c->kafka);
    free(c);
}

int config_set(config_t *c, const char *key, const char *value, char *errstr,
               size_t errstr_size) {
    if (strncmp(key, "kafka.", 6) == 0) {
        const char *prop = key + 6;
        if (!*prop) {
            snprintf(errstr, errstr_size, "%s: a librdkafka property name must follow", key);
            return -1;
        }
        /* librdkafka itself says whether the property and value are good. */
        rd_kafka_conf_t *probe = rd_kafka_conf_new();
        char kerr[256];
        rd_kafka_conf_res_t r = rd_kafka_conf_set(probe, prop, value, kerr, sizeof(kerr));
        rd_kafka_conf_destroy(probe);
        if (r != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", key, kerr);
            return -1;
        }
        for (size_t i = 0; i < c->kafka_count; i++) {
            if (strcmp(c->kafka[i].key, prop) == 0) {
                free(c->kafka[i].value);
                c->kafka[i].value = xstrdup(value);
                return 0;
            }
        }
        c->kafka = xrealloc(c->kafka, (c->kafka_count + 1) * sizeof(*c->kafka));
        c->kafka[c->kafka_count].key = xstrdup(prop);
        c->kafka[c->kafka_count].value = xstrdup(value);
        c->kafka_count++;
        return 0;
    }
    const ckey_t *k = key_find(key);
    if (!k) {
        snprintf(errstr, errstr_size, "%s: unknown key (see rapport run --help)", key);
        return -1;
    }
    for (size_t i = 0; i < NSECRETS; i++) {
        char *secret;
        if (strcmp(key, secrets[i].file_key) != 0 || !*value) continue;
        if (read_secret(key, value, &secret, errstr, errstr_size) != 0) return -1;
        int rc = set_key(c, key_find(secrets[i].key), secret, errstr, errstr_size);
        explicit_bzero(secret, strlen(secret));
        free(secret);
        if (rc != 0) return -1;
    }
    return set_key(c, k, value, errstr, errstr_size);
}

int config_set_pair(config_t *c, const char *pair, char *errstr, size_t errstr_size) {
    char key[256];
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair || (size_t)(eq - pair) >= sizeof(key)) {
        snprintf(errstr, errstr_size, "-X %s: expected key=value", pair);
        return -1;
    }
    memcpy(key, pair, (size_t)(eq - pair));
    key[eq - pair] = '\0';
    return config_set(c, key, eq + 1, errstr, errstr_size);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int config_load_file(config_t *c, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* getline, not a fixed buffer: a longer line (an inline PEM, say) must
     * not be cut in two and its tail read as a line of its own. */
    char *line = NULL, err[512];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, '\0', (size_t)len)) {
            snprintf(errstr, errstr_size, "%s:%d: a NUL byte in the line", path, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%d: expected key = value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t n = strlen(val);
        if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
            val[n - 1] = '\0';
            val++;
        }
        if (config_set(c, key, val, err, sizeof(err)) != 0) {
            snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno, err);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- Rules between keys ----
 *
 * What one key's range cannot say.  config_finish() checks them in this
 * order and docs/CONFIG.md lists them from this same table.  A check
 * returns 0, or -1 with errstr naming the key at fault. */

typedef struct crule {
    const char *keys;   /* the keys involved, for the doc */
    const char *doc;    /* the rule in one line of Markdown */
    int (*check)(const config_t *c, char *errstr, size_t errstr_size);
} crule_t;

static int rule_log_level(const config_t *c, char *errstr, size_t errstr_size) {
    log_level_t lvl;
    if (log_level_parse(c->log_level, &lvl) == 0) return 0;
    snprintf(errstr, errstr_size, "log_level: \"%s\" is not error, warn, info or debug",
             c->log_level);
    return -1;
}

static int rule_required(const config_t *c, char *errstr, size_t errstr_size) {
    const struct {
        const char *name, *value;
    } required[] = {{"brokers", c->brokers}, {"group", c->group}, {"topic", c->topic},
                    {"redis_url", c->redis_url}};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!*required[i].value) {
            snprintf(errstr, errstr_size, "%s: must not be empty", required[i].name);
            return -1;
        }
    }
    return 0;
}

static int rule_schema_source(const config_t *c, char *errstr, size_t errstr_size) {
    if (*c->schema_dir || *c->schema_registry_url) return 0;
    snprintf(errstr, errstr_size, "schema_dir: set schema_dir or schema_registry_url");
    return -1;
}

static int rule_credentials_need_url(const config_t *c, char *errstr, size_t errstr_size) {
    if (!(*c->schema_registry_user || *c->schema_registry_password) || *c->schema_registry_url)
        return 0;
    snprintf(errstr, errstr_size, "%s: set without schema_registry_url",
             *c->schema_registry_user ? "schema_registry_user" : "schema_registry_password");
    return -1;
}

static int rule_password_needs_user(const config_t *c, char *errstr, size_t errstr_size) {
    if (!*c->schema_registry_password || *c->schema_registry_user) return 0;
    snprintf(errstr, errstr_size, "schema_registry_password: set without schema_registry_user");
    return -1;
}

static int rule_schema_dir_exists(const config_t *c, char *errstr, size_t errstr_size) {
    struct stat st;
    if (!*c->schema_dir || *c->schema_registry_url ||
        (stat(c->schema_dir, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    snprintf(errstr, errstr_size, "schema_dir: %s is not a directory", c->schema_dir);
    return -1;
}

static int rule_prior_weight(const config_t *c, char *errstr, size_t errstr_size) {
    if (c->score.prior_weight > 0) return 0;
    snprintf(errstr, errstr_size,
             "prior_weight: must be greater than 0 (a customer without signals would "
             "divide 0 by 0)");
    return -1;
}

static int rule_recover_above_risk(const config_t *c, char *errstr, size_t errstr_size) {
    if (c->score.recover_threshold >= c->score.risk_threshold) return 0;
    snprintf(errstr, errstr_size,
             "recover_threshold: %g is below risk_threshold %g (alerts would flap)",
             c->score.recover_threshold, c->score.risk_threshold);
    return -1;
}

static int rule_weights(const config_t *c, char *errstr, size_t errstr_size) {
    if (c->score.w_resolution + c->score.w_sentiment + c->score.w_loyalty > 0) return 0;
    snprintf(errstr, errstr_size, "w_resolution: the three weights must not all be 0");
    return -1;
}

static int rule_dlq_topic(const config_t *c, char *errstr, size_t errstr_size) {
    if (strcmp(c->topic, c->dlq_topic) != 0) return 0;
    snprintf(errstr, errstr_size, "dlq_topic: must differ from topic");
    return -1;
}

static int rule_tls_needs_rediss(const config_t *c, char *errstr, size_t errstr_size) {
    const char *tls_keys[] = {c->redis_tls_ca_file, c->redis_tls_cert_file,
                              c->redis_tls_key_file, c->redis_tls_server_name};
    for (size_t i = 0; i < sizeof(tls_keys) / sizeof(tls_keys[0]); i++) {
        if (*tls_keys[i] && strncmp(c->redis_url, "rediss://", 9) != 0) {
            snprintf(errstr, errstr_size,
                     "redis_tls_*: set, but redis_url is not rediss:// (TLS settings would "
                     "be unused)");
            return -1;
        }
    }
    return 0;
}

static int rule_tls_cert_and_key(const config_t *c, char *errstr, size_t errstr_size) {
    if (!*c->redis_tls_cert_file == !*c->redis_tls_key_file) return 0;
    snprintf(errstr, errstr_size, "%s: set without %s",
             *c->redis_tls_cert_file ? "redis_tls_cert_file" : "redis_tls_key_file",
             *c->redis_tls_cert_file ? "redis_tls_key_file" : "redis_tls_cert_file");
    return -1;
}

static int rule_registry_ca_https(const config_t *c, char *errstr, size_t errstr_size) {
    if (!*c->schema_registry_ca_file || strncasecmp(c->schema_registry_url, "https://", 8) == 0)
        return 0;
    snprintf(errstr, errstr_size,
             "schema_registry_ca_file: set, but schema_registry_url is not https://");
    return -1;
}

static const crule_t rules[] = {
    {"`log_level`", "one of `error`, `warn`, `info`, `debug`", rule_log_level},
    {"`brokers`, `group`, `topic`, `redis_url`", "must not be empty", rule_required},
    {"`schema_dir`, `schema_registry_url`", "at least one must be set", rule_schema_source},
    {"`schema_registry_user`, `schema_registry_password`",
     "need `schema_registry_url`", rule_credentials_need_url},
    {"`schema_registry_password`", "needs `schema_registry_user`", rule_password_needs_user},
    {"`schema_dir`", "must be an existing directory, unless `schema_registry_url` is set",
     rule_schema_dir_exists},
    {"`prior_weight`", "must be greater than 0 (a customer without signals would divide 0 by 0)",
     rule_prior_weight},
    {"`recover_threshold`, `risk_threshold`",
     "`recover_threshold` must be at least `risk_threshold` (alerts would flap)",
     rule_recover_above_risk},
    {"`w_resolution`, `w_sentiment`, `w_loyalty`", "must not all be 0", rule_weights},
    {"`dlq_topic`, `topic`", "must differ", rule_dlq_topic},
    {"`redis_tls_*`, `redis_url`", "need a `rediss://` `redis_url`", rule_tls_needs_rediss},
    {"`redis_tls_cert_file`, `redis_tls_key_file`", "go together", rule_tls_cert_and_key},
    {"`schema_registry_ca_file`", "needs an `https://` `schema_registry_url`",
     rule_registry_ca_https},
};

#define NRULES (sizeof(rules) / sizeof(rules[0]))

int config_finish(config_t *c, char *errstr, size_t errstr_size) {
    if (!*c->dlq_topic) {
        size_t n = strlen(c->topic) + sizeof(".dlq");
        char *t = xmalloc(n);
        snprintf(t, n, "%s.dlq", c->topic);
        free(c->dlq_topic);
        c->dlq_topic = t;
    }
    for (size_t i = 0; i < NRULES; i++)
        if (rules[i].check(c, errstr, errstr_size) != 0) return -1;
    return 0;
}

const char *config_dlq_topic(const config_t *c) { return c->dlq_topic; }

static void range_text(const ckey_t *k, char *buf, size_t size) {
    if (k->type == T_STR)
        snprintf(buf, size, "string");
    else if (k->max >= BIG)
        snprintf(buf, size, "%s >= %g", k->type == T_F64 ? "number" : "integer", k->min);
    else
        snprintf(buf, size, "%s %g..%g", k->type == T_F64 ? "number" : "integer", k->min, k->max);
}

void config_print_help(FILE *out) {
    char range[64];
    fprintf(out, "Configuration keys (file: key = value; flag: -X key=value):\n");
    for (size_t i = 0; i < NKEYS; i++) {
        range_text(&keys[i], range, sizeof(range));
        fprintf(out, "  %-26s %s (default \"%s\"; %s)\n", keys[i].name, keys[i].help, keys[i].def,
                 range);
    }
    fprintf(out, "  %-26s any librdkafka property, passed through (security, SASL, tuning)\n",
            "kafka.<property>");
}

void config_print_markdown(FILE *out) {
    char range[64];
    fprintf(out,
            "# Configuration\n\n"
            "Generated from the table in `common/config.c` by `make docs`; `make test` fails\n"
            "when this file is stale.\n\n"
            "`rapport run -c FILE` reads `key = value` lines (`#` starts a comment; a value may\n"
            "be double-quoted). Flags override the file: `-b` brokers, `-t` topic, `-G` group,\n"
            "`-r` redis_url, and `-X key=value` for any key. An unknown key or a bad value stops\n"
            "start-up with exit status 2 and a message that names the key.\n\n"
            "| key | default | range | meaning |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; i < NKEYS; i++) {
        range_text(&keys[i], range, sizeof(range));
        fprintf(out, "| `%s` | `%s` | %s | %s |\n", keys[i].name, keys[i].def, range,
                keys[i].help);
    }
    fprintf(out,
            "| `kafka.<property>` | | | any librdkafka property, set on both the consumer and "
            "the dead-letter producer (e.g. `kafka.security.protocol=SASL_SSL`); checked by "
            "librdkafka at start-up |\n\n"
            "## Rules between keys\n\n"
            "Checked in this order once every key is set; the first one broken stops start-up\n"
            "with exit status 2 and a message that names the key.\n\n"
            "| keys | rule |\n| --- | --- |\n");
    for (size_t i = 0; i < NRULES; i++) fprintf(out, "| %s | %s |\n", rules[i].keys, rules[i].doc);
    fprintf(out, "\n"
            "Secrets: `redis_url` (which may hold a password) and\n"
            "`schema_registry_password` can also come from the environment\n"
            "(`RAPPORT_REDIS_URL`, `RAPPORT_SCHEMA_REGISTRY_PASSWORD`) or from a file\n"
            "(`redis_url_file`, `schema_registry_password_file`: the file's content less one\n"
            "trailing newline; the file must exist). Precedence: a flag (`-r`, `-X`) over\n"
            "the configuration file over the environment over the default; a `*_file` key\n"
            "sets its secret where it appears, so the last of `redis_url` and\n"
            "`redis_url_file` given wins. rapport never prints a password: URLs in logs and\n"
            "messages show it as `***` (see docs/SECURITY.md).\n");
}
