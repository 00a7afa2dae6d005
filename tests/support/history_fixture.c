/*
 * history_fixture.c — see history_fixture.h.
 */
#include "tests/support/history_fixture.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void history_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "redis: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
}

static uint64_t next(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void history_fill(redisContext *c, uint64_t seed, const char *narrative, history_fixture_t *f) {
    static const char *const expiry[3] = {"churn_risk", "recovered", "needs_human"};
    memset(f, 0, sizeof(*f));
    for (int b = 0; b < HF_BUCKETS; b++) {
        f->s[b] = HF_START + (b < 6 ? b : b + 1) * HF_DAY; /* no hash for day 6 */
        char key[64];
        snprintf(key, sizeof(key), "rapport:history:%lld", (long long)f->s[b]);
        for (int ch = 0; ch < EVENT_CHANNEL_COUNT; ch++)
            for (int h = 0; h < EVENT_HANDLER_COUNT; h++) {
                if (next(&seed) % 3 == 0) continue; /* an absent segment */
                /* Plausible numbers, so that the page's screenshot reads like
                 * a contact centre's: AI resolves less, people take longer. */
                static const int64_t res_pct[4] = {70, 88, 80, 0}, aht_s[4] = {150, 600, 400, 0},
                                     ci10[4] = {580, 680, 640, 600}, sent100[4] = {15, 35, 28, 40};
                int64_t v[RC_COUNT] = {0};
                int64_t n = 20 + (int64_t)(next(&seed) % (h == HANDLER_AI ? 400 : 150));
                int64_t drift = b - HF_BUCKETS / 2;
                v[RC_CONTACTS] = h == HANDLER_NONE ? 0 : n;
                v[RC_RESOLVED] = v[RC_CONTACTS] * (res_pct[h] + drift - (int64_t)(next(&seed) % 8)) / 100;
                v[RC_UNRESOLVED] = v[RC_CONTACTS] - v[RC_RESOLVED];
                v[RC_EVENTS] = v[RC_CONTACTS] + (int64_t)(next(&seed) % 40);
                v[RC_AHT_N] = v[RC_CONTACTS];
                v[RC_AHT_SUM] = v[RC_AHT_N] * aht_s[h] * 1000 * (90 + (int64_t)(next(&seed) % 20)) / 100;
                v[RC_SENT_N] = v[RC_EVENTS] * 2 / 3;
                v[RC_SENT_SUM] = v[RC_SENT_N] * (sent100[h] + drift - (int64_t)(next(&seed) % 30)) * 100;
                v[RC_CI_N] = v[RC_CONTACTS];
                v[RC_CI_SUM] = v[RC_CI_N] * (ci10[h] + 3 * drift - (int64_t)(next(&seed) % 60)) * 1000;
                v[RC_CHURN_RISK] = (int64_t)(next(&seed) % 3);
                v[RC_RECOVERED] = (int64_t)(next(&seed) % 2);
                v[RC_NEEDS_HUMAN] = h == HANDLER_AI ? (int64_t)(next(&seed) % 6) : 0;
                v[RC_FOLLOWUPS] = h == HANDLER_HUMAN || h == HANDLER_HYBRID ? (int64_t)(next(&seed) % 3) : 0;
                v[RC_FOLLOWUP_MS] = v[RC_FOLLOWUPS] * (3600000 + (int64_t)(next(&seed) % 20000000));
                for (int k = 0; k < RC_COUNT; k++) {
                    if (v[k] == 0 && next(&seed) % 2) continue; /* absent: 0 */
                    f->v[b][ch][h][k] = v[k];
                    history_cmd(c, "HSET %s %s:%s:%s %lld", key, event_channel_names[ch],
                                event_handler_names[h], report_counter_names[k], (long long)v[k]);
                }
            }
        for (int t = 0; t < 3; t++) {
            f->expiry[b][t] = (int64_t)(next(&seed) % 7);
            history_cmd(c, "HSET %s EXPIRY:%s %lld", key, expiry[t], (long long)f->expiry[b][t]);
        }
        history_cmd(c, "ZADD rapport:history_index %lld %lld", (long long)f->s[b],
                    (long long)f->s[b]);
    }
    f->org_customers = 0;
    for (int k = 0; k < 10; k++) {
        static const int64_t shape[10] = {6, 10, 25, 60, 120, 260, 420, 380, 210, 90};
        f->org_bins[k] = shape[k] + (int64_t)(next(&seed) % (uint64_t)(shape[k] / 3 + 1));
        f->org_customers += f->org_bins[k];
        f->org_ci_sum += f->org_bins[k] * (10 * k + 5) * 10000;
        history_cmd(c, "HSET rapport:org ci_bin:%d %lld", k, (long long)f->org_bins[k]);
    }
    f->org_at_risk = f->org_bins[0] + f->org_bins[1] + f->org_bins[2] + f->org_bins[3] / 2;
    f->org_route_human = f->org_at_risk + 23;
    history_cmd(c, "HSET rapport:org customers %lld at_risk %lld route_human %lld ci_sum %lld",
                (long long)f->org_customers, (long long)f->org_at_risk,
                (long long)f->org_route_human, (long long)f->org_ci_sum);
    int64_t last = f->s[HF_BUCKETS - 1];
    history_cmd(c, "XADD rapport:alerts * type churn_risk customer_id cust-000007 score 31.2000 "
                   "previous_score 36.0000 trigger event event_id e1 occurred_at %lld partition 0 "
                   "offset 10 reason %s narrative %s",
                (long long)(last + 3600000), "ci fell below 35", "");
    history_cmd(c, "XADD rapport:alerts * type recovered customer_id cust-000008 score 55.0000 "
                   "previous_score 49.0000 trigger event event_id e2 occurred_at %lld partition 1 "
                   "offset 11 reason %s narrative %s",
                (long long)(last + 7200000), "ci back at 50 or more",
                "Thanks, the refund arrived.");
    history_cmd(c, "XADD rapport:alerts * type needs_human customer_id cust-000009 score 18.4000 "
                   "previous_score 24.0000 trigger event event_id e3 occurred_at %lld partition 2 "
                   "offset 12 reason %s narrative %s",
                (long long)(last + 10800000), "3 unresolved AI contacts in a row; sentiment -0.70",
                narrative);
    for (int i = 0; i < 10; i++) {
        history_cmd(c, "ZADD rapport:scores %d.5 cust-%06d", 10 * i + 3, 100 + i);
        history_cmd(c, "HSET rapport:ci:cust-%06d ci %d.5000 at_risk %d streak %d contacts %d "
                       "route %s route_reason %s",
                    100 + i, 10 * i + 3, i < 3, i < 2 ? 3 : 0, 4 + i, i < 4 ? "human" : "ai",
                    i < 3 ? "at_risk" : i < 4 ? "streak" : "");
    }
}

int64_t history_sum(const history_fixture_t *f, int64_t from, int64_t to, int ch, int h, int k) {
    int64_t sum = 0;
    for (int b = 0; b < HF_BUCKETS; b++)
        if (f->s[b] >= from && f->s[b] <= to) sum += f->v[b][ch][h][k];
    return sum;
}
