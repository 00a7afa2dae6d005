/*
 * config.h — rapport's configuration: one table of keys (name, type,
 * default, range, help) that drives file parsing, -X overrides, validation,
 * `rapport run --help` and docs/CONFIG.md.
 *
 * A config_t is built once by main (config_new, config_load_file,
 * config_set, then config_finish) and then only read; it is passed down,
 * never global.  common/ depends on nothing above it, so the scoring keys
 * are defined here, as config_score_t, and scoring/params.h names that
 * struct score_params_t: a new scoring key is one row of the table in
 * config.c and one field below.
 */
#ifndef RAPPORT_CONFIG_H
#define RAPPORT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config_kv {
    char *key;   /* without the "kafka." prefix */
    char *value;
} config_kv_t;

/* The scoring parameters of docs/SPEC.md §2–4, which scoring/params.h
 * calls score_params_t.  A new scoring key: one field here, one row in the
 * table of config.c. */
typedef struct config_score {
    int64_t bucket_ms;
    int32_t window_buckets;
    double prior_weight;
    double w_resolution, w_sentiment, w_loyalty;
    double streak_penalty;
    int32_t streak_cap;
    double risk_threshold;
    double recover_threshold;
    int32_t needs_human_streak;
    double needs_human_sentiment;
    int64_t needs_human_cooldown_ms;
    int32_t route_streak;         /* SPEC §10.1 rule 3 */
    double route_sentiment;       /* SPEC §10.1 rule 4 */
} config_score_t;

typedef struct config {
    char *brokers;
    char *group;
    char *topic;
    char *dlq_topic;            /* "" means <topic>.dlq until config_finish() */
    char *schema_dir;
    char *schema_registry_url;
    char *schema_registry_user;
    char *schema_registry_password;
    char *schema_registry_password_file; /* read into schema_registry_password when set */
    char *schema_registry_ca_file;
    char *redis_url;
    char *redis_url_file;       /* read into redis_url when set */
    char *redis_tls_ca_file;
    char *redis_tls_cert_file;
    char *redis_tls_key_file;
    char *redis_tls_server_name;
    char *prefix;
    char *metrics_listen;
    char *log_level;
    char *dashboard_auth_file;  /* `rapport dashboard` only */
    config_score_t score;
    int64_t max_future_skew_ms;
    int64_t max_message_bytes;
    int64_t flush_ms;
    int64_t flush_live_ms;
    int64_t flush_backlog_ms;
    int64_t flush_backlog_mb;
    int64_t flush_max_customers;
    int64_t alerts_maxlen;
    int64_t redis_timeout_ms;
    int64_t shutdown_timeout_ms;
    config_kv_t *kafka;         /* kafka.* pass-through, in the order given */
    size_t kafka_count;
} config_t;

/* Fills every key with its default (never NULL), then redis_url and
 * schema_registry_password from the environment (RAPPORT_REDIS_URL,
 * RAPPORT_SCHEMA_REGISTRY_PASSWORD) when set there.  Keys set later (file,
 * flags) override them: flag > file > environment > default.  A *_file key
 * (redis_url_file, schema_registry_password_file) reads its secret from a
 * file when it is set, and counts as setting the secret at that moment. */
config_t *config_new(void);
void config_free(config_t *c);

/* Sets one key from its text ("flush_ms", "100").  kafka.<prop> keys are
 * collected for librdkafka.  Returns 0, or -1 with errstr naming the key. */
int config_set(config_t *c, const char *key, const char *value, char *errstr, size_t errstr_size);

/* Sets one key from a "key=value" argument (the -X flag of the commands
 * that read the configuration).  Returns 0, or -1 with errstr naming the
 * argument or the key. */
int config_set_pair(config_t *c, const char *pair, char *errstr, size_t errstr_size);

/* Reads `key = value` lines (# comments, blank lines, optional double
 * quotes around the value).  Returns 0, or -1 with errstr naming the file,
 * line and key. */
int config_load_file(config_t *c, const char *path, char *errstr, size_t errstr_size);

/* After everything is set: fills in derived values (an empty dlq_topic
 * becomes <topic>.dlq) and checks the cross-key rules.  Returns 0, or -1
 * with errstr naming the first key at fault. */
int config_finish(config_t *c, char *errstr, size_t errstr_size);

/* The dead-letter topic (after config_finish()). */
const char *config_dlq_topic(const config_t *c);

/* The table's defaults of the scoring keys. */
void config_score_defaults(config_score_t *s);

/* The table as help text (for --help) or as Markdown (docs/CONFIG.md). */
void config_print_help(FILE *out);
void config_print_markdown(FILE *out);

#endif
