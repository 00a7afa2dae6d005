#!/bin/sh
# latency.sh — the latency runs of bench/run.sh alone, for builds of rapport
# side by side: produce-to-Redis latency at a steady rate, and where the
# time goes.
#
#   bench/latency.sh RAPPORT [RAPPORT…]
#
# For each round and each build, in turn: a fresh mock Kafka cluster and a
# private redis-server (bench/lib.sh), the build's `rapport run` with
# kafka.fetch.wait.max.ms=10 (see BENCH_LAT_KAFKA in bench/run.sh) and its
# metrics on a free port, then bench/latency at each rate of
# BENCH_LAT_RATES, each run's events spread over BENCH_LAT_CUSTOMERS
# customers.  Everything is fresh for each build, so one build's keys and
# customers never slow the next one down.  Prints one line per run:
# p50 / p99 / max in ms, the breakdown inside rapport (batch, queued, write:
# mean / p50 / p99) and the rest of the mean (kafka), and the CPU rapport
# and redis-server used per event.
#
# Knobs (environment): BENCH_LAT_RATES ("20000 50000"), BENCH_LAT_SECONDS
# (10), BENCH_LAT_CUSTOMERS (1000000), BENCH_LAT_REPEAT (1),
# BENCH_LAT_PARTITIONS (64), BENCH_LAT_KAFKA ("fetch.wait.max.ms=10"),
# BENCH_BIN_DIR (build/default/bench: latency).  Extra rapport settings for
# every build: BENCH_LAT_RUN ("", NAME=VALUE separated by spaces, given as -X).
set -eu

[ $# -ge 1 ] || { echo "usage: bench/latency.sh RAPPORT [RAPPORT...]" >&2; exit 2; }
BB=${BENCH_BIN_DIR:-build/default/bench}
RATES=${BENCH_LAT_RATES:-20000 50000}
SECONDS_=${BENCH_LAT_SECONDS:-10}
CUSTOMERS=${BENCH_LAT_CUSTOMERS:-1000000}
REPEAT=${BENCH_LAT_REPEAT:-1}
PARTS=${BENCH_LAT_PARTITIONS:-64}
LAT_KAFKA=${BENCH_LAT_KAFKA-fetch.wait.max.ms=10}
RUN_ARGS=${BENCH_LAT_RUN:-}
for tool in "$@" "$BB/latency"; do
    [ -x "$tool" ] || { echo "latency: $tool missing (make bench builds $BB)" >&2; exit 1; }
done

. "$(dirname "$0")/lib.sh"
bench_init latency
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

extra=""
for kp in $LAT_KAFKA; do extra="$extra -X kafka.$kp"; done
for kv in $RUN_ARGS; do extra="$extra -X $kv"; done

# one BIN NAME: every rate against a fresh cluster, Redis and rapport.
one() {
    rm -rf "$TMP/redis" "$TMP/mock.out"
    PIDS=""
    mock_start "$1" --topic latency --partitions "$PARTS"
    redis_start
    metrics=127.0.0.1:$((port + 20000))
    # shellcheck disable=SC2086
    "$1" run -b "$BROKERS" -t latency -G lat -r "$URL" -X schema_dir="$TMP/schemas" \
        -X metrics_listen="$metrics" $extra > /dev/null 2> "$TMP/run.log" &
    rpid=$!
    PIDS="$PIDS $rpid"
    i=0
    until grep -q "partitions assigned" "$TMP/run.log"; do
        kill -0 "$rpid" 2>/dev/null || die "rapport exited: $(tail -n 5 "$TMP/run.log")"
        i=$((i + 1)); [ $i -le 300 ] || die "rapport got no partitions in 30 s"
        sleep 0.1
    done
    sleep 1
    k=0
    for rate in $RATES; do
        k=$((k + 1))
        c0=$(ticks "$rpid"); r0=$(ticks "$REDIS_PID")
        # Each run's simulated clock starts 10 days after the previous one's,
        # so that its events are not late.
        "$BB/latency" -b "$BROKERS" -t latency -r "$URL" --rate "$rate" --seconds "$SECONDS_" \
            --customers "$CUSTOMERS" --seed "$((k + 1))" \
            --start-ms "$((1767225600000 + (k - 1) * 10 * 86400000))" --metrics "$metrics" \
            > "$TMP/lat.txt" 2> "$TMP/lat.log" || die "latency failed: $(cat "$TMP/lat.log")"
        produced=$(tr ' ' '\n' < "$TMP/lat.txt" | sed -n 's/^produced=//p')
        hz=$(getconf CLK_TCK)
        cpu=$(awk -v a="$c0" -v b="$(ticks "$rpid")" -v r0="$r0" -v r1="$(ticks "$REDIS_PID")" \
            -v n="$produced" -v hz="$hz" 'BEGIN { printf "rapport_us_per_event=%.1f redis_us_per_event=%.1f", (b - a) / hz * 1e6 / n, (r1 - r0) / hz * 1e6 / n }')
        echo "$2 rate=$rate $(sed -n 's/^latency_ms_//p' "$TMP/lat.txt") $(sed -n 's/^stages_ms //p' "$TMP/lat.txt") $cpu"
    done
    # rapport first, while Kafka and Redis still answer its last writes.
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    PIDS=""
}

# The schemas, once (rapport gen writes them).
mock_start "$1" --topic schemas --partitions 1
"$1" gen -b "$BROKERS" -t schemas --count 1 --schema-dir "$TMP/schemas" > /dev/null 2>&1 ||
    die "gen failed"
for pid in $PIDS; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
PIDS=""

for r in $(seq 1 "$REPEAT"); do
    n=0
    for bin in "$@"; do
        n=$((n + 1))
        log "round $r/$REPEAT: build $n ($bin)"
        one "$bin" "b$n"
    done
done
