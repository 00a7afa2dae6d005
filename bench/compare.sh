#!/bin/sh
# compare.sh — end to end, builds of rapport on the same messages, in one
# run: is a change within noise?
#
#   bench/compare.sh OLD_RAPPORT NEW_RAPPORT [MORE_RAPPORT…]
#
# Starts a mock Kafka cluster and a private redis-server (as bench/run.sh
# does), produces BENCH_EVENTS events over BENCH_CUSTOMERS customers once
# with the first build's generator, then alternates: a do-nothing consumer
# (bench/ceiling, the baseline), then each build's `rapport run`, each into
# an emptied Redis, BENCH_REPEAT times.  Prints, for each build, the median
# and range of events per second, the ratio to the baseline measured in the
# same round, Redis commands per event, and Redis and rapport CPU-seconds
# per million events.  Speeds are only compared within one run: the machine
# may be shared and noisy.
#
# Knobs (environment): BENCH_REPEAT (3), BENCH_EVENTS (1000000),
# BENCH_CUSTOMERS (100000), BENCH_PARTITIONS (64), BENCH_BIN_DIR
# (build/default/bench: ceiling and watch).
set -eu

[ $# -ge 2 ] || { echo "usage: bench/compare.sh OLD_RAPPORT NEW_RAPPORT [MORE_RAPPORT...]" >&2; exit 2; }
OLD=$1 NEW=$2
BB=${BENCH_BIN_DIR:-build/default/bench}
REPEAT=${BENCH_REPEAT:-3}
EVENTS=${BENCH_EVENTS:-1000000}
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
PARTS=${BENCH_PARTITIONS:-64}
for tool in "$@" "$BB/ceiling" "$BB/watch"; do
    [ -x "$tool" ] || { echo "compare: $tool missing (make bench builds $BB)" >&2; exit 1; }
done

. "$(dirname "$0")/lib.sh"
bench_init compare
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -n 1; }
stats() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "-"; exit} m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%g (%g–%g)\n", m, v[1], v[NR]}'; }

mock_start "$NEW" --topic interactions --partitions "$PARTS"
redis_start

log "producing $EVENTS events over $CUSTOMERS customers with $OLD"
"$OLD" gen -b "$BROKERS" -t interactions --count "$EVENTS" --customers "$CUSTOMERS" \
    --schema-dir "$TMP/schemas" > /dev/null 2> "$TMP/gen.log" || die "gen failed: $(cat "$TMP/gen.log")"

# e2e NAME BIN ROUND: one end-to-end run into an emptied Redis.
e2e() {
    rcli FLUSHALL > /dev/null
    rcli CONFIG RESETSTAT > /dev/null
    "$2" run -b "$BROKERS" -t interactions -G "$1-$3" -r "$URL" -X schema_dir="$TMP/schemas" \
        -X metrics_listen= > /dev/null 2> "$TMP/run-$1-$3.log" &
    rpid=$!
    PIDS="$PIDS $rpid"
    "$BB/watch" -b "$BROKERS" -t interactions -r "$URL" -p "$rpid" > "$TMP/$1-$3.txt" \
        2> "$TMP/watch-$1-$3.log" || die "watch failed: $(tail -n 5 "$TMP/run-$1-$3.log")"
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    log "  $1: $(head -n 1 "$TMP/$1-$3.txt")"
}

for r in $(seq 1 "$REPEAT"); do
    log "round $r/$REPEAT"
    "$BB/ceiling" -b "$BROKERS" -t interactions -G "ceiling-$r" > "$TMP/ceiling-$r.txt" \
        2> "$TMP/ceiling-$r.log" || die "ceiling failed: $(cat "$TMP/ceiling-$r.log")"
    c=$(kv "$TMP/ceiling-$r.txt" rate)
    log "  ceiling: $c ev/s"
    n=0
    for bin in "$@"; do
        n=$((n + 1)); who=b$n
        e2e "$who" "$bin" "$r"
        e=$(kv "$TMP/$who-$r.txt" rate)
        echo "$e" >> "$TMP/$who.rate"
        awk -v e="$e" -v c="$c" 'BEGIN { printf "%.3f\n", e / c }' >> "$TMP/$who.ratio"
        kv "$TMP/$who-$r.txt" commands_per_event >> "$TMP/$who.cmd"
        kv "$TMP/$who-$r.txt" redis_cpu_s_per_m >> "$TMP/$who.rcpu"
        kv "$TMP/$who-$r.txt" cpu_s_per_m >> "$TMP/$who.cpu"
    done
done

echo "| build | events/s | ratio to ceiling | Redis commands/event | Redis CPU s/M events | rapport CPU s/M events |"
echo "| --- | --- | --- | --- | --- | --- |"
n=0
for bin in "$@"; do
    n=$((n + 1)); who=b$n
    echo "| $bin | $(stats < "$TMP/$who.rate") | $(stats < "$TMP/$who.ratio") | $(stats < "$TMP/$who.cmd") | $(stats < "$TMP/$who.rcpu") | $(stats < "$TMP/$who.cpu") |"
done
echo
echo "median (min–max) over $REPEAT rounds; $EVENTS events, $CUSTOMERS customers, $PARTS partitions."
