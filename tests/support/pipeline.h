/*
 * pipeline.h — test support for whole-pipeline tests: an in-process mock
 * Kafka cluster, `rapport run` as a child process, and the comparison of
 * Redis with a reference replay.
 *
 * The reference replay reads a topic back partition by partition and runs
 * every message through the decoder and a fresh window (events to
 * window_add(), tombstones to window_erase()), as one
 * uninterrupted run would, then renders the Redis state that run must
 * leave as sorted text lines.  redis_render() renders the actual Redis the
 * same way, so a test compares two line lists, and a failure prints the
 * first lines that differ.
 */
#ifndef RAPPORT_TEST_PIPELINE_H
#define RAPPORT_TEST_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "scoring/window.h"

/* A mock cluster hosted by this process. */
typedef struct mock_kafka {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    const char *brokers;
} mock_kafka_t;

int mock_kafka_start(mock_kafka_t *mk, int brokers);
void mock_kafka_stop(mock_kafka_t *mk);

/* High watermark (end offset) of each partition of topic. */
int kafka_end_offsets(const char *brokers, const char *topic, int partitions, int64_t *out);
/* The offsets `group` has committed for topic's partitions 0..partitions-1
 * (-1: none).  Returns 0 or -1. */
int kafka_committed_offsets(const char *brokers, const char *group, const char *topic,
                            int partitions, int64_t *out);

/* Produces one tombstone per id (SPEC §1.2: the id as key, a null value),
 * partitioned with murmur2_random like the event producers (gen/produce.h),
 * so each lands in its customer's partition; waits for delivery.  Returns
 * 0, or -1 with errstr. */
int kafka_produce_tombstones(const char *brokers, const char *topic, const char *const *ids,
                             size_t n, char *errstr, size_t errstr_size);

/* A child process (the binary under test: $RAPPORT_BIN, default bin/rapport)
 * with stdout and stderr appended to logpath. */
pid_t proc_start(const char *logpath, const char *const *args);
/* Sends sig and waits up to timeout_ms.  Returns the exit status, 128+signal
 * when killed by one, or -1 when it did not end in time (then it is killed). */
int proc_stop(pid_t pid, int sig, int timeout_ms);
/* Runs to completion; returns its exit status. */
int proc_run(const char *logpath, const char *const *args, int timeout_ms);
/* The same, with stdin read from in and stdout and stderr appended to out
 * and err (each NULL: inherited from the test). */
int proc_run_io(const char *in, const char *out, const char *err, const char *const *args,
                int timeout_ms);

/* A growable list of lines. */
typedef struct lines {
    char **v;
    size_t n, cap;
} lines_t;

void lines_add(lines_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lines_sort(lines_t *l);
void lines_free(lines_t *l);
/* 0 when equal; else prints up to 10 differences to stderr and returns -1. */
int lines_compare(const lines_t *expected, const lines_t *actual, const char *what);

/* The expected Redis state of one uninterrupted run over the topic. */
int replay_render(const char *brokers, const char *topic, int partitions,
                  const char *schema_dir, const score_params_t *params, const char *prefix,
                  lines_t *out, char *errstr, size_t errstr_size);

/* The expected leaders' view computed by the reference model
 * (tests/support/model.h), not by the scorer: each customer's route, the
 * history summed over partitions, the organisation from scratch.  Fills
 * models[0..partitions) (the caller frees them with model_free()) so that
 * a test can derive more from them. */
typedef struct model model_t;
int model_render(const char *brokers, const char *topic, int partitions, const char *schema_dir,
                 const score_params_t *params, lines_t *out, model_t **models, char *errstr,
                 size_t errstr_size);

/* The actual Redis state under prefix (hashes with their routes, scores,
 * watermarks, alerts, history hashes and index, org). */
int redis_render(int port, const char *prefix, lines_t *out, char *errstr, size_t errstr_size);

/* Waits until Redis holds, for every partition, the offset `end[p]`.
 * Returns 0, or -1 after timeout_ms. */
int redis_wait_offsets(int port, const char *prefix, const char *topic, int partitions,
                       const int64_t *end, int timeout_ms);

/* Reads the whole DLQ topic; counts messages per rapport.error reason into
 * counts (indexed like dlq_reason_names) and checks each has every
 * rapport.* header.  Returns the number of messages, or -1. */
long dlq_read(const char *brokers, const char *topic, int partitions, long *counts,
              char *errstr, size_t errstr_size);

#endif
