#!/bin/sh
# run.sh — the benchmark of BENCHMARKS.md (`make bench`): how close `rapport run`
# comes to what the machine can do, and where the time goes.
#
# Starts a mock Kafka cluster (`rapport mock-kafka`, its own process) and a
# private redis-server (a free port, a temporary directory, no persistence),
# produces events with `rapport gen`, and measures, in one run:
#   1. the ceiling: bench/ceiling, a do-nothing librdkafka group consumer;
#   2. end to end: `rapport run`, timed by bench/watch from the first offset
#      stored in Redis to the last, with Redis commands and bytes per event
#      (INFO commandstats) and rapport's CPU (/proc/<pid>/stat);
#   3. per stage: bench/micro (decode, score, score with 1M customers, the
#      Redis sink in-process);
#   4. latency at a steady rate: bench/latency (and once at a lower rate);
#   5. memory: rapport's RSS and Redis used_memory with 1M customers;
#   6. CPU-seconds per million events (from 2 and 5).
# Ceiling and end to end alternate, BENCH_REPEAT times each; the table gives
# the median and the range.  The table goes to stdout and to BENCH_OUT.
#
# Knobs (environment): BENCH_REPEAT (3), BENCH_EVENTS (1000000),
# BENCH_CUSTOMERS (100000), BENCH_PARTITIONS (64), BENCH_MEM_EVENTS
# (2000000), BENCH_MEM_CUSTOMERS (1000000), BENCH_MEM_PARTITIONS (128),
# BENCH_LAT_RATE (20000), BENCH_LAT_SECONDS (10), BENCH_LAT_REPEAT (2),
# BENCH_LAT_RATE2 (50000: one more latency run, at another rate),
# BENCH_LAT_CUSTOMERS (1000000: the customers the latency runs' events are
# spread over),
# BENCH_LAT_KAFKA ("fetch.wait.max.ms=10": rapport's consumer properties for
# the latency runs only: the mock broker holds a fetch that finds no data
# for the whole fetch.wait.max.ms, default 500, where a real broker answers
# as soon as data arrives; 10 ms bounds that artefact),
# BENCH_OUT (build/bench/results.md), BENCH_KAFKA ("": more librdkafka
# consumer properties, NAME=VALUE separated by spaces, given to both
# rapport and the ceiling), BENCH_PERF (0; 1: sample rapport and
# redis-server with `perf record -e cpu-clock` during end-to-end run 1 and
# write the top symbols next to BENCH_OUT), RAPPORT_BIN (bin/rapport),
# BENCH_BIN_DIR (build/default/bench).
set -eu

BIN=${RAPPORT_BIN:-bin/rapport}
BB=${BENCH_BIN_DIR:-build/default/bench}
REPEAT=${BENCH_REPEAT:-3}
EVENTS=${BENCH_EVENTS:-1000000}
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
PARTS=${BENCH_PARTITIONS:-64}
MEM_EVENTS=${BENCH_MEM_EVENTS:-2000000}
MEM_CUSTOMERS=${BENCH_MEM_CUSTOMERS:-1000000}
MEM_PARTS=${BENCH_MEM_PARTITIONS:-128}
LAT_RATE=${BENCH_LAT_RATE:-20000}
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}
LAT_REPEAT=${BENCH_LAT_REPEAT:-2}
LAT_RATE2=${BENCH_LAT_RATE2:-50000}
LAT_CUSTOMERS=${BENCH_LAT_CUSTOMERS:-1000000}
LAT_KAFKA=${BENCH_LAT_KAFKA-fetch.wait.max.ms=10}
OUT=${BENCH_OUT:-build/bench/results.md}
KAFKA=${BENCH_KAFKA:-}
PERF=${BENCH_PERF:-0}

for tool in "$BIN" "$BB/ceiling" "$BB/watch" "$BB/latency" "$BB/micro"; do
    [ -x "$tool" ] || { echo "bench: $tool missing: run 'make bench'" >&2; exit 1; }
done
for cmd in redis-server redis-cli awk sort; do
    command -v "$cmd" >/dev/null || { echo "bench: $cmd missing: run deploy/install-deps.sh" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rapport-bench.XXXXXX")
PIDS=""
cleanup() {
    for pid in $PIDS; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $PIDS; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
. "$(dirname "$0")/lib.sh"
now() { date +%s.%N; }

# kv FILE KEY: the value of KEY=… in FILE (first occurrence).
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -n 1; }
# stats: "median min max" of the numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "- - -"; exit} m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; print m, v[1], v[NR]}'; }
# spread "median min max" N: "min–max, n=N"
fmt_range() { echo "$2–$3, n=$4"; }
# stop PID: SIGTERM, wait, forget.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

kafka_args=""
for kp in $KAFKA; do kafka_args="$kafka_args -X $kp"; done
run_kafka_args=""
for kp in $KAFKA; do run_kafka_args="$run_kafka_args -X kafka.$kp"; done

# ---------------------------------------------------------------- setup
T0=$(now)
log "mock cluster: $PARTS partitions (interactions, latency), $MEM_PARTS (memory)"
mock_start "$BIN" --topic interactions --partitions "$PARTS" --topic latency --partitions "$PARTS" \
    --topic memory --partitions "$MEM_PARTS"
redis_start
log "brokers $BROKERS, redis $URL, work dir $TMP"

log "producing $EVENTS events over $CUSTOMERS customers"
"$BIN" gen -b "$BROKERS" -t interactions --count "$EVENTS" --customers "$CUSTOMERS" \
    --schema-dir "$TMP/schemas" > "$TMP/gen.txt" 2> "$TMP/gen.log" || die "gen failed: $(cat "$TMP/gen.log")"
GEN_LINE=$(cat "$TMP/gen.txt")

# start_rapport TOPIC GROUP LOG [-X ...]: starts rapport, sets RPID.
start_rapport() {
    topic=$1 group=$2 logf=$3
    shift 3
    # shellcheck disable=SC2086
    "$BIN" run -b "$BROKERS" -t "$topic" -G "$group" -r "$URL" -X schema_dir="$TMP/schemas" \
        -X metrics_listen= $run_kafka_args "$@" > /dev/null 2> "$logf" &
    RPID=$!
    PIDS="$PIDS $RPID"
}
# wait_assigned LOG PID: until rapport logs its assignment (20 s at most).
wait_assigned() {
    i=0
    until grep -q "partitions assigned" "$1"; do
        kill -0 "$2" 2>/dev/null || die "rapport exited: $(tail -n 5 "$1")"
        i=$((i + 1)); [ $i -le 200 ] || die "rapport got no partitions in 20 s"
        sleep 0.1
    done
}

# ------------------------------------------------- 1, 2: ceiling, end to end
for r in $(seq 1 "$REPEAT"); do
    log "run $r/$REPEAT: ceiling"
    # shellcheck disable=SC2086
    "$BB/ceiling" -b "$BROKERS" -t interactions -G "ceiling-$r" $kafka_args \
        > "$TMP/ceiling-$r.txt" 2> "$TMP/ceiling-$r.log" || die "ceiling failed: $(cat "$TMP/ceiling-$r.log")"
    log "  $(cat "$TMP/ceiling-$r.txt")"
    log "run $r/$REPEAT: rapport run"
    rcli FLUSHALL > /dev/null
    rcli CONFIG RESETSTAT > /dev/null
    start_rapport interactions "e2e-$r" "$TMP/run-$r.log"
    PERF_PIDS=""
    if [ "$PERF" = 1 ] && [ "$r" = 1 ] && command -v perf >/dev/null; then
        for who in rapport:"$RPID" redis:"$REDIS_PID"; do
            perf record -q -e cpu-clock -F 999 -p "${who#*:}" -o "$TMP/perf-${who%%:*}.data" \
                > /dev/null 2>&1 &
            PERF_PIDS="$PERF_PIDS $!"
        done
    fi
    "$BB/watch" -b "$BROKERS" -t interactions -r "$URL" -p "$RPID" > "$TMP/e2e-$r.txt" \
        2> "$TMP/watch-$r.log" || die "watch failed: $(cat "$TMP/watch-$r.log"; tail -n 5 "$TMP/run-$r.log")"
    for pid in $PERF_PIDS; do kill -INT "$pid"; wait "$pid" || true; done
    for who in rapport redis; do
        [ -f "$TMP/perf-$who.data" ] || continue
        mkdir -p "$(dirname "$OUT")"
        perf report -i "$TMP/perf-$who.data" --stdio --no-children --sort dso,sym 2>/dev/null \
            | grep -E '^ +[0-9]' | head -n 30 > "$(dirname "$OUT")/perf-$who.txt" || true
        log "  perf profile of $who: $(dirname "$OUT")/perf-$who.txt"
        rm -f "$TMP/perf-$who.data"
    done
    stop "$RPID"
    log "  $(head -n 1 "$TMP/e2e-$r.txt")"
done

# ------------------------------------------------------------- 3: per stage
log "microbenchmarks (decode, score, score at $MEM_CUSTOMERS customers, sink)"
rcli FLUSHALL > /dev/null
# Events per flush in end-to-end run 1: EVALSHA calls minus one claim per
# partition; the in-process score and sink runs flush as often.
E2E_PER_FLUSH=$(awk -v e="$(kv "$TMP/e2e-1.txt" events)" -v f="$(kv "$TMP/e2e-1.txt" evalsha)" \
    -v p="$(kv "$TMP/e2e-1.txt" partitions)" 'BEGIN { n = (f > p ? e / (f - p) : 10000); printf "%d", (n < 1000 ? 1000 : n) }')
"$BB/micro" --schema-dir "$TMP/schemas" --events "$EVENTS" --customers "$CUSTOMERS" \
    --track "$MEM_CUSTOMERS" --repeat "$REPEAT" --flush-every "$E2E_PER_FLUSH" --redis "$URL" \
    > "$TMP/micro.txt" 2> "$TMP/micro.log" || die "micro failed: $(tail -n 5 "$TMP/micro.log")"
sed 's/^/  /' "$TMP/micro.txt" >&2

# ------------------------------------------------------------ 4: latency
log "latency: $LAT_RATE events/s over $LAT_CUSTOMERS customers for $LAT_SECONDS s, $LAT_REPEAT times, then $LAT_RATE2 events/s once; one rapport"
rcli FLUSHALL > /dev/null
lat_args=""
for kp in $LAT_KAFKA; do lat_args="$lat_args -X kafka.$kp"; done
# shellcheck disable=SC2086
# Its metrics are read by bench/latency for the breakdown of the time.
LAT_METRICS=127.0.0.1:$((port + 20000))
start_rapport latency lat "$TMP/run-lat.log" $lat_args -X metrics_listen="$LAT_METRICS"
wait_assigned "$TMP/run-lat.log" "$RPID"
sleep 1
LAT_CPU0=$(awk '{print $14 + $15}' "/proc/$RPID/stat"); LAT_T0=$(now)
# lat_run NAME RATE K: the K-th run against this rapport.  Each run's
# simulated clock starts 10 days after the previous one's, so that its
# events are not late.
lat_run() {
    start=$(( 1767225600000 + ($3 - 1) * 10 * 86400000 ))
    "$BB/latency" -b "$BROKERS" -t latency -r "$URL" --rate "$2" --seconds "$LAT_SECONDS" \
        --customers "$LAT_CUSTOMERS" --seed "$(($3 + 1))" --start-ms "$start" --metrics "$LAT_METRICS" \
        > "$TMP/$1.txt" 2> "$TMP/$1.log" || die "latency failed: $(cat "$TMP/$1.log" "$TMP/$1.txt")"
    log "  $(tr '\n' ' ' < "$TMP/$1.txt")"
}
for r in $(seq 1 "$LAT_REPEAT"); do
    lat_run "lat-$r" "$LAT_RATE" "$r"
done
LAT_CORE=$(awk -v c0="$LAT_CPU0" -v t0="$LAT_T0" -v t1="$(now)" -v hz="$(getconf CLK_TCK)" \
    '{ printf "%.0f", 100 * ($14 + $15 - c0) / hz / (t1 - t0) }' "/proc/$RPID/stat")
lat_run lat-rate2 "$LAT_RATE2" "$((LAT_REPEAT + 1))"
stop "$RPID"

# -------------------------------------------------------------- 5: memory
log "memory: $MEM_EVENTS events over $MEM_CUSTOMERS customers"
rcli FLUSHALL > /dev/null
rcli CONFIG RESETSTAT > /dev/null
start_rapport memory mem "$TMP/run-mem.log"
wait_assigned "$TMP/run-mem.log" "$RPID"
sleep 1
RSS0=$(awk '/^VmRSS:/ {print $2}' "/proc/$RPID/status")
REDIS_MEM0=$(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
"$BIN" gen -b "$BROKERS" -t memory --count "$MEM_EVENTS" --customers "$MEM_CUSTOMERS" \
    > "$TMP/gen-mem.txt" 2> "$TMP/gen-mem.log" || die "gen failed: $(cat "$TMP/gen-mem.log")"
"$BB/watch" -b "$BROKERS" -t memory -r "$URL" -p "$RPID" --samples "$TMP/mem-samples.txt" \
    > "$TMP/mem.txt" 2> "$TMP/watch-mem.log" || die "watch failed: $(cat "$TMP/watch-mem.log")"
ALERTS_MEM=$(rcli MEMORY USAGE rapport:alerts SAMPLES 0 | tr -d '\r')
ALERTS_LEN=$(rcli XLEN rapport:alerts | tr -d '\r')
STATE_MEM=0
for key in $(rcli --scan --pattern 'rapport:_state:*' | tr -d '\r'); do
    STATE_MEM=$((STATE_MEM + $(rcli MEMORY USAGE "$key" SAMPLES 0 | tr -d '\r')))
done
SCORES_MEM=$(rcli MEMORY USAGE rapport:scores SAMPLES 0 | tr -d '\r')
# MEMORY USAGE of 1000 customer hashes (key, object and value; not the
# keyspace's own dict entry), in one pipeline.
rcli --scan --pattern 'rapport:ci:*' | head -n 1000 | sed 's/^/MEMORY USAGE /' > "$TMP/memcmds.txt"
CI_MEM=$(rcli < "$TMP/memcmds.txt" | awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }')
stop "$RPID"
log "  $(tr '\n' ' ' < "$TMP/mem.txt" | cut -c1-400)"

# --------------------------------------------------------------- the table
TOTAL_S=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
for r in $(seq 1 "$REPEAT"); do
    c=$(kv "$TMP/ceiling-$r.txt" rate); e=$(kv "$TMP/e2e-$r.txt" rate)
    echo "$c" >> "$TMP/s.ceiling"; echo "$e" >> "$TMP/s.e2e"
    awk -v c="$c" -v e="$e" 'BEGIN { printf "%.3f\n", e / c }' >> "$TMP/s.ratio"
    kv "$TMP/e2e-$r.txt" cpu_s_per_m >> "$TMP/s.cpu"
    kv "$TMP/e2e-$r.txt" redis_cpu_s_per_m >> "$TMP/s.rcpu"
    kv "$TMP/e2e-$r.txt" commands_per_event >> "$TMP/s.cmd"
    kv "$TMP/e2e-$r.txt" evalsha_per_event >> "$TMP/s.evalsha"
    kv "$TMP/e2e-$r.txt" bytes_per_event >> "$TMP/s.bytes"
    kv "$TMP/ceiling-$r.txt" cpu_s | awk -v n="$(kv "$TMP/ceiling-$r.txt" events)" '{ printf "%.3f\n", $1 * 1e6 / n }' >> "$TMP/s.ccpu"
done
for r in $(seq 1 "$LAT_REPEAT"); do
    kv "$TMP/lat-$r.txt" latency_ms_p50 >> "$TMP/s.p50"
    kv "$TMP/lat-$r.txt" p99 >> "$TMP/s.p99"
    kv "$TMP/lat-$r.txt" max >> "$TMP/s.max"
    kv "$TMP/lat-$r.txt" rate >> "$TMP/s.lrate"
done
# micro_field NAME KEY
micro_field() { grep "^$1 " "$TMP/micro.txt" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
micro_row() { echo "$(micro_field "$1" median) ns ($(micro_field "$1" ns_per_event_min)–$(micro_field "$1" max), n=$REPEAT)"; }
# row VALUE-FILE UNIT: "median unit (min–max, n=N)"
row() { set -- $(stats < "$TMP/s.$1") "$2" "$(wc -l < "$TMP/s.$1")"; echo "$1$4 ($2–$3, n=$5)"; }
med() { stats < "$TMP/s.$1" | awk '{print $1}'; }
# met VALUE OP TARGET
met() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "yes" : "**no**" }'; }

MEM_CUST=$(kv "$TMP/mem.txt" customers)
RSS1=$(kv "$TMP/mem.txt" rss_kb)
RSS_PER=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$MEM_CUST" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
RSS_SLOPE=$(kv "$TMP/mem.txt" rss_slope_b_per_customer | awk '{ printf "%.0f", $1 }')
REDIS_MEM1=$(kv "$TMP/mem.txt" redis_used_memory)
REDIS_PER=$(awk -v a="$REDIS_MEM0" -v b="$REDIS_MEM1" -v n="$MEM_CUST" 'BEGIN { printf "%.0f", (b - a) / n }')
REDIS_PER_NOALERTS=$(awk -v a="$REDIS_MEM0" -v b="$REDIS_MEM1" -v s="$ALERTS_MEM" -v n="$MEM_CUST" 'BEGIN { printf "%.0f", (b - a - s) / n }')
STATE_PER=$(awk -v s="$STATE_MEM" -v n="$MEM_CUST" 'BEGIN { printf "%.0f", s / n }')
HEAP_PER=$(micro_field score1m_fill heap_bytes_per_customer | awk '{ printf "%.0f", $1 }')
SINK_LINE=$(grep '^sink ' "$TMP/micro.txt" || true)

mkdir -p "$(dirname "$OUT")"
{
echo "## rapport benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
     "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
     "$(uname -sr); librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?');" \
     "$(redis-server --version | sed 's/ sha=.*//');" \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (modified)')."
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). Whole run: ${TOTAL_S} s."
echo
echo "Data: $GEN_LINE"
echo
echo "| # | measure | result: median (min–max, n) | target | met |"
echo "| --- | --- | --- | --- | --- |"
echo "| 1 | ceiling: do-nothing consumer | $(row ceiling ' ev/s') | | |"
echo "| 2 | end to end: rapport run | $(row e2e ' ev/s') | | |"
echo "| 2 | end to end / ceiling (pairwise) | $(row ratio '') | ≥ 0.70 | $(met "$(med ratio)" '>=' 0.70) |"
echo "| 3 | decode, v1 (as end to end) | $(micro_row decode_v1)/event | ≤ 60 ns | $(met "$(micro_field decode_v1 median)" '<=' 60) |"
echo "| 3 | decode, v1/v2/v3 mix | $(micro_row decode_mix)/event | | |"
echo "| 3 | score, $CUSTOMERS customers (window_add) | $(micro_row score_add)/event | | |"
echo "| 3 | score, $(micro_field score1m_customers tracked_at_end) customers tracked (window_add) | $(micro_row score1m_add)/event | ≤ 100 ns | $(met "$(micro_field score1m_add median)" '<=' 100) |"
echo "| 3 | change list + commit, $(micro_field score1m_customers tracked_at_end) customers, every $E2E_PER_FLUSH events | $(micro_row score1m_commit)/event | | |"
echo "| 3 | Redis commands per event (end to end, scripts' inner calls included) | $(row cmd '') | ≤ 0.2 | $(met "$(med cmd)" '<=' 0.2) |"
echo "| 3 | Redis round trips (EVALSHA) per event | $(row evalsha '') | | |"
echo "| 3 | bytes sent to Redis per event | $(row bytes ' B') | | |"
echo "| 4 | latency p50 at $LAT_RATE ev/s | $(row p50 ' ms') | | |"
echo "| 4 | latency p99 at $LAT_RATE ev/s | $(row p99 ' ms') | ≤ 100 ms | $(met "$(med p99)" '<=' 100) |"
echo "| 4 | latency max at $LAT_RATE ev/s | $(row max ' ms') | | |"
echo "| 4 | latency p50 / p99 / max at $LAT_RATE2 ev/s | $(kv "$TMP/lat-rate2.txt" latency_ms_p50) / $(kv "$TMP/lat-rate2.txt" p99) / $(kv "$TMP/lat-rate2.txt" max) ms (n=1) | | |"
echo "| 5 | rapport RSS growth per customer, $MEM_CUST customers (end − idle) | $RSS_PER B | ≤ 160 B | $(met "$RSS_PER" '<=' 160) |"
echo "| 5 | rapport RSS slope per customer (25–90 % of the run) | $RSS_SLOPE B | | |"
echo "| 5 | scorer heap per customer (micro, mallinfo2) | $HEAP_PER B | | |"
echo "| 5 | Redis used_memory per customer, $MEM_CUST customers | $REDIS_PER B | ≤ 400 B | $(met "$REDIS_PER" '<=' 400) |"
echo "| 5 | … without the alerts stream ($ALERTS_LEN alerts) | $REDIS_PER_NOALERTS B | | |"
echo "| 5 | … of which the resume state (rapport:_state:*) | $STATE_PER B | | |"
echo "| 5 | … of which the \`scores\` sorted set | $(awk -v s="$SCORES_MEM" -v n="$MEM_CUST" 'BEGIN { printf "%.0f", s / n }') B | | |"
echo "| 5 | … of which the customer hash (MEMORY USAGE, mean of 1000) | $CI_MEM B | | |"
echo "| 6 | rapport CPU per million events (end to end) | $(row cpu ' s') | | |"
echo "| 6 | rapport CPU per million events (memory run) | $(kv "$TMP/mem.txt" cpu_s_per_m) s | | |"
echo "| 6 | redis-server CPU per million events (end to end) | $(row rcpu ' s') | | |"
echo "| 6 | ceiling consumer CPU per million events | $(row ccpu ' s') | | |"
echo
echo "Latency runs: rapport with these kafka.* properties added: ${LAT_KAFKA:-none} (see BENCHMARKS.md)."
echo "Latency runs over $LAT_CUSTOMERS customers; where the time went inside rapport (ms; kafka: the rest of the mean: linger, broker, fetch, librdkafka's queue): at $LAT_RATE ev/s (run 1) $(sed -n 's/^stages_ms //p' "$TMP/lat-1.txt"); at $LAT_RATE2 ev/s $(sed -n 's/^stages_ms //p' "$TMP/lat-rate2.txt")."
echo "Latency runs at $LAT_RATE ev/s: achieved $(row lrate ' ev/s'), events never seen stored: $(cat "$TMP"/lat-[0-9]*.txt | tr ' ' '\n' | sed -n 's/^missing=//p' | tr '\n' ' '); rapport used ${LAT_CORE} % of one core over them, its catch-up included."
echo "Memory run: $(head -n 1 "$TMP/mem.txt")."
echo "Sink in-process (one partition, flush every $E2E_PER_FLUSH events): ${SINK_LINE#sink }."
echo "Redis commands, end to end run 1: $(kv "$TMP/e2e-1.txt" commandstats)."
} > "$OUT"
cat "$OUT"
log "table written to $OUT"
