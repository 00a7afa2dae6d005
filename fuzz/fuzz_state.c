/*
 * fuzz_state.c — libFuzzer harness for window_load_customer()
 * (scoring/window.h): the state blobs a claim reads back from Redis, of
 * version 3 (earlier builds) and 4, whatever their bytes.
 *
 * Input layout:
 *   byte 0       the watermark the window is restored to: 0 none, else
 *                that many days plus 17 ms after a fixed start
 *   rest         the blob, loaded as customer "c"
 *
 * A blob that loads must then behave: its view and its blob again, one
 * more event for it (which may expire it), a batch filled from the window,
 * and a commit; the blob written back must load again.  Default scoring
 * parameters (30 buckets of a day).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scoring/window.h"

#define DAY 86400000LL
#define START (19000 * DAY)

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    score_params_t p;
    score_params_default(&p);
    char err[256];
    window_t *w = window_new(&p, 0, err, sizeof err);
    if (!w) abort();
    int64_t wm = data[0] ? START + (int64_t)data[0] * DAY + 17 : -1;
    if (wm >= 0) window_set_watermark(w, wm);
    strview_t id = {"c", 1};
    if (window_load_customer(w, id, data + 1, size - 1, err, sizeof err) != 0) {
        if (window_customer_count(w) != 0) abort(); /* refused: nothing half-loaded */
        window_free(w);
        return 0;
    }
    window_customer_view_t v;
    if (!window_get(w, id, &v)) abort();
    sink += v.state_len + (size_t)v.events;
    /* the blob written back loads again, to the same blob */
    unsigned char *again = malloc(v.state_len);
    if (!again) abort();
    memcpy(again, v.state, v.state_len);
    size_t again_len = v.state_len;
    window_t *w2 = window_new(&p, 0, err, sizeof err);
    if (!w2) abort();
    window_set_watermark(w2, window_watermark(w));
    if (window_load_customer(w2, id, again, again_len, err, sizeof err) != 0) abort();
    window_customer_view_t v2;
    if (!window_get(w2, id, &v2) || v2.state_len != again_len ||
        memcmp(v2.state, again, again_len) != 0)
        abort();
    window_free(w2);
    free(again);

    event_t e;
    memset(&e, 0, sizeof e);
    e.event_id = (strview_t){"e1", 2};
    e.customer_id = id;
    e.occurred_at = (wm >= 0 ? wm : START) + (int64_t)(size % 40) * DAY;
    e.kind = KIND_CONTACT;
    e.channel = CHANNEL_CHAT;
    e.handled_by = HANDLER_AI;
    e.resolved = TRI_FALSE;
    e.has_sentiment = true;
    e.sentiment = -0.7f;
    window_prefetch(w, id);
    window_add(w, &e, 1);
    batch_t *b = batch_new();
    batch_partition_t *bp = batch_add_partition(b, "t", 0, 1, 0, 2);
    window_fill_batch(w, b, bp);
    sink += batch_item_count(b);
    window_commit(w);
    batch_free(b);
    window_free(w);
    return 0;
}
