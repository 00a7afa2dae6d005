/*
 * env.h — one test environment: a mock cluster with the input topic and
 * its DLQ, a private redis-server, a temp dir with the writer schemas, and
 * functions to run `rapport run`, produce events and compare Redis with the
 * reference replay.  Uses Criterion assertions: test binaries only.
 */
#ifndef RAPPORT_TEST_ENV_H
#define RAPPORT_TEST_ENV_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/redis_proc.h"
#include "gen/produce.h"
#include "gen/story.h"
#include "tests/support/pipeline.h"

#define ENV_TOPIC "interactions"

typedef struct env {
    mock_kafka_t mk;
    redis_proc_t *redis;
    int partitions;
    char dir[64];
    char schema_dir[128];
    char log[128];
} env_t;

/* redis_args: extra redis-server arguments (NULL-terminated) or NULL. */
void env_start(env_t *e, int partitions, const char *const *redis_args);
void env_stop(env_t *e);
void env_dump_log(const env_t *e);
/* The whole file at path, NUL-terminated (caller frees); its length in
 * *len when len is not NULL.  Fails the test when it cannot be read. */
char *env_slurp(const char *path, size_t *len);

/* Starts `rapport run` against the env; extra: NULL-terminated key=value
 * pairs passed with -X (may be NULL). */
pid_t env_rapport(env_t *e, const char *const *extra);

/* A mix of stories with three writer schemas, late and malformed events. */
gen_conf_t env_mix(uint64_t seed, uint32_t customers);

/* Produces count messages now; when bad_by_reason is given, adds what the
 * generator spoiled per reason (indexed like dlq_reason_names). */
void env_produce(env_t *e, const gen_conf_t *gc, uint64_t count, long *bad_by_reason);

/* Produces in a background thread at rate events/s. */
typedef struct env_producer {
    pthread_t tid;
    gen_t *gen;
    produce_conf_t pc;
    produce_stats_t stats;
    int rc;
    char err[256];
} env_producer_t;
void env_produce_start(env_t *e, env_producer_t *p, const gen_conf_t *gc, uint64_t count,
                       double rate);
void env_produce_join(env_producer_t *p);

/* Waits until Redis holds every partition's end offset, then asserts that
 * Redis equals one uninterrupted run over the topic. */
void env_assert_matches_replay(env_t *e, int timeout_ms);

/* True when a line of rapport's log holds needle. */
bool env_log_has(const env_t *e, const char *needle);

/* GET (or another method) http://host:port/path.  Returns the status,
 * or -1 when nothing answered; *out (caller frees) gets the body. */
long env_http_call(const char *host, int port, const char *method, const char *path,
                   char **out);

#endif
