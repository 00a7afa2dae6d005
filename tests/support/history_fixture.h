/*
 * history_fixture.h — fills a Redis with known leaders'-view keys in the
 * layout of docs/SPEC.md §9–§10 (history hashes and their index, the org
 * hash, alerts, scores and customer hashes), as rapport's writer would,
 * and keeps what it wrote so a test can compute the sums it expects.
 * Uses Criterion assertions: test binaries only.
 */
#ifndef RAPPORT_HISTORY_FIXTURE_H
#define RAPPORT_HISTORY_FIXTURE_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "report/report.h"
#include "scoring/event.h"

#define HF_BUCKETS 12
#define HF_DAY INT64_C(86400000)
/* The first bucket: 2026-01-01T00:00:00Z; buckets every day except a gap. */
#define HF_START INT64_C(1767225600000)

typedef struct history_fixture {
    int64_t s[HF_BUCKETS];                                         /* bucket starts */
    int64_t v[HF_BUCKETS][EVENT_CHANNEL_COUNT][EVENT_HANDLER_COUNT][RC_COUNT];
    int64_t expiry[HF_BUCKETS][3];
    int64_t org_customers, org_at_risk, org_route_human, org_ci_sum, org_bins[10];
} history_fixture_t;

/* Writes the fixture under prefix "rapport:" (seeded, deterministic): 12
 * buckets (the 7th day missing), random segments and counters, EXPIRY
 * fields, an org hash, three alerts (the newest with `narrative`) and ten
 * scored customers. */
void history_fill(redisContext *c, uint64_t seed, const char *narrative, history_fixture_t *f);

/* The sum the report must show over buckets with from <= s <= to. */
int64_t history_sum(const history_fixture_t *f, int64_t from, int64_t to, int ch, int h, int k);

/* A command that must succeed. */
void history_cmd(redisContext *c, const char *fmt, ...);

#endif
