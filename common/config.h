/*
 * config.h — rapport's configuration: one table of keys (name, type,
 * default, range, help) that drives file parsing, -X overrides, validation,
 * `rapport run --help` and docs/CONFIG.md.
 *
 * A config_t is built once by main and then only read; it is passed down,
 * never global.
 */
#ifndef RAPPORT_CONFIG_H
#define RAPPORT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "scoring/window.h"

typedef struct config_kv {
    char *key;   /* without the "kafka." prefix */
    char *value;
} config_kv_t;

typedef struct config {
    char *brokers;
    char *group;
    char *topic;
    char *dlq_topic;            /* "" means <topic>.dlq; config_dlq_topic() resolves it */
    char *schema_dir;
    char *schema_registry_url;
    char *schema_registry_user;
    char *schema_registry_password;
    char *redis_url;
    char *prefix;
    char *metrics_listen;
    char *log_level;
    score_params_t score;
    int64_t max_future_skew_ms;
    int64_t max_message_bytes;
    int64_t flush_ms;
    int64_t flush_backlog_ms;
    int64_t flush_max_customers;
    int64_t alerts_maxlen;
    int64_t redis_timeout_ms;
    int64_t shutdown_timeout_ms;
    config_kv_t *kafka;         /* kafka.* pass-through, in the order given */
    size_t kafka_count;
    char dlq_buf[512];
} config_t;

/* Fills every key with its default. */
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

/* Cross-key checks after everything is set.  Returns 0 or -1 with errstr. */
int config_validate(const config_t *c, char *errstr, size_t errstr_size);

const char *config_dlq_topic(config_t *c);

/* The table as help text (for --help) or as Markdown (docs/CONFIG.md). */
void config_print_help(FILE *out);
void config_print_markdown(FILE *out);

#endif
