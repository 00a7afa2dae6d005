#!/bin/sh
# run.sh — the benchmark of BENCHMARKS.md (`make bench`): how close `rapport run`
# comes to what the machine can do, where the time goes, and how the working
# tree compares with a baseline build measured in the same run.
#
# Starts a mock Kafka cluster (`rapport mock-kafka`, its own process) and a
# private redis-server (a free port, a temporary directory, no persistence),
# produces events with `rapport gen`, and measures each build (the baseline,
# "today", when BENCH_BASE_DIR holds one, and the working tree, "now"):
#   1. the ceiling: bench/ceiling, a do-nothing librdkafka group consumer;
#   2. end to end: `rapport run` catching up on a full topic, timed by
#      bench/watch from the first offset stored in Redis to the last, with
#      Redis commands and bytes per event (INFO commandstats), rapport's and
#      Redis's CPU;
#   3. per stage: the build's bench/micro (decode, score, score with 1M
#      customers), and its Redis sink in-process with Redis's CPU read
#      around it: Redis CPU per customer written;
#   4. memory: rapport's RSS and Redis used_memory as it takes on
#      BENCH_MEM_CUSTOMERS customers (RSS read 2 s after the last write,
#      and its peak, VmHWM, while the catch-up batch was held);
#   5. latency, the live case: the same rapport, now holding those
#      customers, gets events at BENCH_LAT_RATES (each BENCH_LAT_REPEAT
#      times) over the same customers, timed by bench/latency.
# Ceiling and the builds' end-to-end runs alternate, BENCH_REPEAT times
# each; the table gives the median and the range, and each build's ratio
# to the ceiling run just before it.  The table goes to stdout and to
# BENCH_OUT.
#
# Knobs (environment): BENCH_REPEAT (3), BENCH_EVENTS (1000000),
# BENCH_CUSTOMERS (100000), BENCH_PARTITIONS (64), BENCH_MEM_EVENTS
# (2000000), BENCH_MEM_CUSTOMERS (1000000), BENCH_MEM_PARTITIONS (128),
# BENCH_LAT_RATES ("20000 50000"), BENCH_LAT_SECONDS (10),
# BENCH_LAT_REPEAT (2), BENCH_LAT_KAFKA ("fetch.wait.max.ms=10": rapport's
# consumer properties for the memory and latency runs: the mock broker
# holds a fetch that finds no data for the whole fetch.wait.max.ms,
# default 500, where a real broker answers as soon as data arrives; 10 ms
# bounds that artefact), BENCH_OUT (build/bench/results.md), BENCH_KAFKA
# ("": more librdkafka consumer properties, NAME=VALUE separated by spaces,
# given to rapport and the ceiling), BENCH_PERF (0; 1: sample rapport and
# redis-server with `perf record -e cpu-clock` during the working tree's
# end-to-end run 1 and write the top symbols next to BENCH_OUT),
# RAPPORT_BIN (bin/rapport), BENCH_BIN_DIR (build/default/bench),
# BENCH_BASE_DIR (a tree where bench/baseline.sh built the baseline; empty:
# the working tree alone), BENCH_BASELINE (its commit, for the table).
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
LAT_RATES=${BENCH_LAT_RATES:-20000 50000}
LAT_SECONDS=${BENCH_LAT_SECONDS:-10}
LAT_REPEAT=${BENCH_LAT_REPEAT:-2}
LAT_KAFKA=${BENCH_LAT_KAFKA-fetch.wait.max.ms=10}
OUT=${BENCH_OUT:-build/bench/results.md}
KAFKA=${BENCH_KAFKA:-}
PERF=${BENCH_PERF:-0}
BASE_DIR=${BENCH_BASE_DIR:-}
BASELINE=${BENCH_BASELINE:-}

# The builds: "today" (the baseline, when there is one) and "now".
BUILDS="now"
[ -z "$BASE_DIR" ] || BUILDS="today now"
bin_of() { if [ "$1" = today ]; then echo "$BASE_DIR/bin/rapport"; else echo "$BIN"; fi; }
micro_of() { if [ "$1" = today ]; then echo "$BASE_DIR/build/default/bench/micro"; else echo "$BB/micro"; fi; }

for b in $BUILDS; do
    for tool in "$(bin_of "$b")" "$(micro_of "$b")"; do
        [ -x "$tool" ] || { echo "bench: $tool missing: run 'make bench'" >&2; exit 1; }
    done
done
for tool in "$BB/ceiling" "$BB/watch" "$BB/latency"; do
    [ -x "$tool" ] || { echo "bench: $tool missing: run 'make bench'" >&2; exit 1; }
done
for cmd in redis-server redis-cli awk sort; do
    command -v "$cmd" >/dev/null || { echo "bench: $cmd missing: run deploy/install-deps.sh" >&2; exit 1; }
done

. "$(dirname "$0")/lib.sh"
bench_init bench
now() { date +%s.%N; }

# kv FILE KEY: the value of KEY=… in FILE (first occurrence).
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -n 1; }
# stats: "median min max" of the numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "- - -"; exit} m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; print m, v[1], v[NR]}'; }
# stop PID: SIGTERM, wait, forget.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}
# redis_cpu: Redis's CPU seconds so far (user + system).
redis_cpu() { rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'; }

kafka_args=""
for kp in $KAFKA; do kafka_args="$kafka_args -X $kp"; done
run_kafka_args=""
for kp in $KAFKA; do run_kafka_args="$run_kafka_args -X kafka.$kp"; done
lat_args=""
for kp in $LAT_KAFKA; do lat_args="$lat_args -X kafka.$kp"; done

# ---------------------------------------------------------------- setup
T0=$(now)
mem_topics=""
for b in $BUILDS; do mem_topics="$mem_topics --topic memory-$b --partitions $MEM_PARTS"; done
log "mock cluster: $PARTS partitions (interactions), $MEM_PARTS (memory and latency, one topic per build)"
# shellcheck disable=SC2086
mock_start "$BIN" --topic interactions --partitions "$PARTS" $mem_topics
redis_start
log "brokers $BROKERS, redis $URL, work dir $TMP, builds: $BUILDS"

log "producing $EVENTS events over $CUSTOMERS customers"
"$BIN" gen -b "$BROKERS" -t interactions --count "$EVENTS" --customers "$CUSTOMERS" \
    --schema-dir "$TMP/schemas" > "$TMP/gen.txt" 2> "$TMP/gen.log" || die "gen failed: $(cat "$TMP/gen.log")"
GEN_LINE=$(cat "$TMP/gen.txt")

# start_rapport BUILD TOPIC GROUP LOG [-X ...]: starts that build's rapport, sets RPID.
start_rapport() {
    rbin=$(bin_of "$1") topic=$2 group=$3 logf=$4
    shift 4
    # shellcheck disable=SC2086
    "$rbin" run -b "$BROKERS" -t "$topic" -G "$group" -r "$URL" -X schema_dir="$TMP/schemas" \
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
    for b in $BUILDS; do
        log "run $r/$REPEAT: rapport run ($b)"
        rcli FLUSHALL > /dev/null
        rcli CONFIG RESETSTAT > /dev/null
        start_rapport "$b" interactions "e2e-$b-$r" "$TMP/run-$b-$r.log"
        PERF_PIDS=""
        if [ "$PERF" = 1 ] && [ "$r" = 1 ] && [ "$b" = now ] && command -v perf >/dev/null; then
            for who in rapport:"$RPID" redis:"$REDIS_PID"; do
                perf record -q -e cpu-clock -F 999 -p "${who#*:}" -o "$TMP/perf-${who%%:*}.data" \
                    > /dev/null 2>&1 &
                PERF_PIDS="$PERF_PIDS $!"
            done
        fi
        "$BB/watch" -b "$BROKERS" -t interactions -r "$URL" -p "$RPID" > "$TMP/e2e-$b-$r.txt" \
            2> "$TMP/watch-$b-$r.log" || die "watch failed: $(cat "$TMP/watch-$b-$r.log"; tail -n 5 "$TMP/run-$b-$r.log")"
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
        log "  $(head -n 1 "$TMP/e2e-$b-$r.txt")"
    done
done

# ------------------------------------------------------------- 3: per stage
# Events per flush in the working tree's end-to-end run 1: EVALSHA calls
# minus one claim per partition; every build's in-process runs flush as
# often.
E2E_PER_FLUSH=$(awk -v e="$(kv "$TMP/e2e-now-1.txt" events)" -v f="$(kv "$TMP/e2e-now-1.txt" evalsha)" \
    -v p="$(kv "$TMP/e2e-now-1.txt" partitions)" 'BEGIN { n = (f > p ? e / (f - p) : 10000); printf "%d", (n < 1000 ? 1000 : n) }')
for b in $BUILDS; do
    log "microbenchmarks ($b): decode, score, score at $MEM_CUSTOMERS customers, sink"
    "$(micro_of "$b")" --schema-dir "$TMP/schemas" --events "$EVENTS" --customers "$CUSTOMERS" \
        --track "$MEM_CUSTOMERS" --repeat "$REPEAT" --flush-every "$E2E_PER_FLUSH" --only decode,score,score1m \
        > "$TMP/micro-$b.txt" 2> "$TMP/micro-$b.log" || die "micro failed: $(tail -n 5 "$TMP/micro-$b.log")"
    rcli FLUSHALL > /dev/null
    c0=$(redis_cpu)
    "$(micro_of "$b")" --schema-dir "$TMP/schemas" --events "$EVENTS" --customers "$CUSTOMERS" \
        --flush-every "$E2E_PER_FLUSH" --only sink --redis "$URL" \
        >> "$TMP/micro-$b.txt" 2>> "$TMP/micro-$b.log" || die "micro failed: $(tail -n 5 "$TMP/micro-$b.log")"
    c1=$(redis_cpu)
    line=$(grep '^sink ' "$TMP/micro-$b.txt")
    # Redis CPU per customer written, in µs.
    echo "$line" | tr ' ' '\n' | awk -F= -v c="$c0" -v d="$c1" '
        $1 == "events" { e = $2 } $1 == "customers_written_per_event" { w = $2 }
        END { printf "sink_redis redis_cpu_us_per_customer=%.2f customers_written=%.0f\n", (d - c) * 1e6 / (e * w), e * w }' \
        >> "$TMP/micro-$b.txt"
    sed 's/^/  /' "$TMP/micro-$b.txt" >&2
done

# ------------------------------------------------- 4, 5: memory, then latency
for b in $BUILDS; do
    log "memory ($b): $MEM_EVENTS events over $MEM_CUSTOMERS customers"
    rcli FLUSHALL > /dev/null
    rcli CONFIG RESETSTAT > /dev/null
    # shellcheck disable=SC2086
    start_rapport "$b" "memory-$b" "mem-$b" "$TMP/run-mem-$b.log" $lat_args
    wait_assigned "$TMP/run-mem-$b.log" "$RPID"
    sleep 1
    RSS0=$(awk '/^VmRSS:/ {print $2}' "/proc/$RPID/status")
    REDIS_MEM0=$(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    "$BIN" gen -b "$BROKERS" -t "memory-$b" --count "$MEM_EVENTS" --customers "$MEM_CUSTOMERS" \
        > "$TMP/gen-mem-$b.txt" 2> "$TMP/gen-mem-$b.log" || die "gen failed: $(cat "$TMP/gen-mem-$b.log")"
    "$BB/watch" -b "$BROKERS" -t "memory-$b" -r "$URL" -p "$RPID" --samples "$TMP/mem-samples-$b.txt" \
        > "$TMP/mem-$b.txt" 2> "$TMP/watch-mem-$b.log" || die "watch failed: $(cat "$TMP/watch-mem-$b.log")"
    # The steady state: 2 s after the last write, once the catch-up
    # batch's memory has been handed back (common/alloc.h); VmHWM keeps
    # the peak while that batch was held.
    sleep 2
    RSS_SETTLED=$(awk '/^VmRSS:/ {print $2}' "/proc/$RPID/status")
    ALERTS_MEM=$(rcli MEMORY USAGE rapport:alerts SAMPLES 0 | tr -d '\r')
    STATE_MEM=0
    for key in $(rcli --scan --pattern 'rapport:_state:*' | tr -d '\r'); do
        STATE_MEM=$((STATE_MEM + $(rcli MEMORY USAGE "$key" SAMPLES 0 | tr -d '\r')))
    done
    # MEMORY USAGE of 1000 customer hashes (key, object and value; not the
    # keyspace's own dict entry), in one pipeline.
    rcli --scan --pattern 'rapport:ci:*' | head -n 1000 | sed 's/^/MEMORY USAGE /' > "$TMP/memcmds.txt"
    {
        echo "rss0_kb=$RSS0 rss_settled_kb=$RSS_SETTLED redis_mem0=$REDIS_MEM0 alerts_mem=${ALERTS_MEM:-0} alerts_len=$(rcli XLEN rapport:alerts | tr -d '\r')"
        echo "state_mem=$STATE_MEM scores_mem=$(rcli MEMORY USAGE rapport:scores SAMPLES 0 | tr -d '\r')"
        echo "ci_mem=$(rcli < "$TMP/memcmds.txt" | awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }')"
    } >> "$TMP/mem-$b.txt"
    log "  $(tr '\n' ' ' < "$TMP/mem-$b.txt" | cut -c1-400)"

    # The live case: the same rapport, holding those customers, two days
    # of simulated time after the memory run's last event.
    days=$(kv "$TMP/gen-mem-$b.txt" simulated_days)
    k=0
    for rate in $LAT_RATES; do
        for r in $(seq 1 "$LAT_REPEAT"); do
            k=$((k + 1))
            start=$(awk -v d="$days" -v k="$k" 'BEGIN { printf "%.0f", 1767225600000 + (int(d) + 2 * k) * 86400000 }')
            "$BB/latency" -b "$BROKERS" -t "memory-$b" -r "$URL" --rate "$rate" --seconds "$LAT_SECONDS" \
                --customers "$MEM_CUSTOMERS" --seed "$((k + 1))" --start-ms "$start" \
                > "$TMP/lat-$b-$rate-$r.txt" 2> "$TMP/lat-$b-$rate-$r.log" \
                || die "latency failed: $(cat "$TMP/lat-$b-$rate-$r.log" "$TMP/lat-$b-$rate-$r.txt")"
            log "  latency ($b, $rate ev/s): $(tr '\n' ' ' < "$TMP/lat-$b-$rate-$r.txt")"
        done
    done
    stop "$RPID"
done

# --------------------------------------------------------------- the table
TOTAL_S=$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
for b in $BUILDS; do
    for r in $(seq 1 "$REPEAT"); do
        c=$(kv "$TMP/ceiling-$r.txt" rate); e=$(kv "$TMP/e2e-$b-$r.txt" rate)
        [ "$b" = now ] && echo "$c" >> "$TMP/s.ceiling"
        [ "$b" = now ] && kv "$TMP/ceiling-$r.txt" cpu_s | awk -v n="$(kv "$TMP/ceiling-$r.txt" events)" '{ printf "%.3f\n", $1 * 1e6 / n }' >> "$TMP/s.ccpu"
        echo "$e" >> "$TMP/s.e2e.$b"
        awk -v c="$c" -v e="$e" 'BEGIN { printf "%.3f\n", e / c }' >> "$TMP/s.ratio.$b"
        kv "$TMP/e2e-$b-$r.txt" cpu_s_per_m >> "$TMP/s.cpu.$b"
        kv "$TMP/e2e-$b-$r.txt" redis_cpu_s_per_m >> "$TMP/s.rcpu.$b"
        kv "$TMP/e2e-$b-$r.txt" commands_per_event >> "$TMP/s.cmd.$b"
        kv "$TMP/e2e-$b-$r.txt" evalsha_per_event >> "$TMP/s.evalsha.$b"
        kv "$TMP/e2e-$b-$r.txt" bytes_per_event >> "$TMP/s.bytes.$b"
    done
    for rate in $LAT_RATES; do
        for r in $(seq 1 "$LAT_REPEAT"); do
            f=$TMP/lat-$b-$rate-$r.txt
            kv "$f" latency_ms_p50 >> "$TMP/s.p50.$b.$rate"
            kv "$f" p99 >> "$TMP/s.p99.$b.$rate"
            kv "$f" max >> "$TMP/s.max.$b.$rate"
            kv "$f" rate >> "$TMP/s.lrate.$b.$rate"
            kv "$f" missing >> "$TMP/s.missing.$b.$rate"
        done
    done
done
# row NAME UNIT: "median unit (min–max, n=N)" of $TMP/s.NAME; "–" when absent.
row() {
    [ -s "$TMP/s.$1" ] || { echo "–"; return; }
    # shellcheck disable=SC2046
    set -- $(stats < "$TMP/s.$1") "$2" "$(wc -l < "$TMP/s.$1")"
    echo "$1$4 ($2–$3, n=$5)"
}
med() { [ -s "$TMP/s.$1" ] && stats < "$TMP/s.$1" | awk '{print $1}'; }
# micro_field BUILD NAME KEY
micro_field() { grep "^$2 " "$TMP/micro-$1.txt" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$3=//p" | head -n 1; }
micro_row() {
    v=$(micro_field "$1" "$2" median)
    [ -n "$v" ] || { echo "–"; return; }
    echo "$v ns ($(micro_field "$1" "$2" ns_per_event_min)–$(micro_field "$1" "$2" max), n=$REPEAT)"
}
# mem_field BUILD KEY, and the per-customer memory figures.
mem_field() { kv "$TMP/mem-$1.txt" "$2"; }
per_customer() { # BUILD WHAT
    f=$TMP/mem-$1.txt
    [ -s "$f" ] || { echo "–"; return; }
    n=$(kv "$f" customers)
    case $2 in
    rss) b=$(kv "$f" rss_settled_kb); [ -n "$b" ] || b=$(kv "$f" rss_kb)
         awk -v a="$(kv "$f" rss0_kb)" -v b="$b" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }' ;;
    peak) awk -v a="$(kv "$f" rss0_kb)" -v b="$(kv "$f" hwm_kb)" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }' ;;
    slope) kv "$f" rss_slope_b_per_customer | awk '{ printf "%.0f", $1 }' ;;
    redis) awk -v a="$(kv "$f" redis_mem0)" -v b="$(kv "$f" redis_used_memory)" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }' ;;
    noalerts) awk -v a="$(kv "$f" redis_mem0)" -v b="$(kv "$f" redis_used_memory)" -v s="$(kv "$f" alerts_mem)" -v n="$n" 'BEGIN { printf "%.0f", (b - a - s) / n }' ;;
    state) awk -v s="$(kv "$f" state_mem)" -v n="$n" 'BEGIN { printf "%.0f", s / n }' ;;
    scores) awk -v s="$(kv "$f" scores_mem)" -v n="$n" 'BEGIN { printf "%.0f", s / n }' ;;
    esac
}
# met VALUE OP TARGET
met() {
    if [ -z "$1" ] || [ "$1" = "–" ]; then echo "–"; return; fi
    awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "yes" : "**no**" }'
}
# line WHAT TODAY NOW TARGET MET
line() { echo "| $1 | $2 | $3 | $4 | $5 |"; }
today() { if [ -n "$BASE_DIR" ]; then "$@"; else echo "–"; fi; }
tb() { [ -n "$BASE_DIR" ] && echo "$1.today" || echo none; }

LAT1=$(echo "$LAT_RATES" | awk '{print $1}')
mkdir -p "$(dirname "$OUT")"
{
echo "## rapport benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
     "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
     "$(uname -sr); librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?');" \
     "$(redis-server --version | sed 's/ sha=.*//')."
echo "Builds: now = commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (modified)');" \
     "today = $(if [ -n "$BASE_DIR" ]; then echo "commit $(echo "$BASELINE" | cut -c1-7), the baseline"; else echo "not measured (no baseline build)"; fi)."
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). Whole run: ${TOTAL_S} s."
echo
echo "Data: $GEN_LINE"
echo
echo "### Targets"
echo
echo "| what | today | now | target | met (now) |"
echo "| --- | --- | --- | --- | --- |"
line "end to end / do-nothing consumer (pairwise)" "$(row "$(tb ratio)" '')" "$(row ratio.now '')" "≥ 0.70" "$(met "$(med ratio.now)" '>=' 0.70)"
RC_T=$(today micro_field today sink_redis redis_cpu_us_per_customer); RC_N=$(micro_field now sink_redis redis_cpu_us_per_customer)
line "Redis CPU per customer written (in-process sink, every $E2E_PER_FLUSH events)" "${RC_T:-–} µs" "${RC_N:-–} µs" "≤ 5 µs" "$(met "$RC_N" '<=' 5)"
for rate in $LAT_RATES; do
    tgt="" m=""
    [ "$rate" = "$LAT1" ] && { tgt="≤ 100 ms"; m=$(met "$(med "p99.now.$rate")" '<=' 100); }
    line "latency p99 at $rate ev/s over $MEM_CUSTOMERS customers" "$(row "$(tb "p99").$rate" ' ms' 2>/dev/null)" "$(row "p99.now.$rate" ' ms')" "$tgt" "$m"
done
line "score (window_add) at $(micro_field now score1m_customers tracked_at_end) customers" "$(today micro_row today score1m_add)" "$(micro_row now score1m_add)" "≤ 300 ns" "$(met "$(micro_field now score1m_add median)" '<=' 300)"
line "Redis memory per customer, $MEM_CUSTOMERS customers" "$(today per_customer today redis) B" "$(per_customer now redis) B" "≤ 500 B" "$(met "$(per_customer now redis)" '<=' 500)"
line "rapport RSS growth per customer (settled − idle)" "$(today per_customer today rss) B" "$(per_customer now rss) B" "≤ 200 B" "$(met "$(per_customer now rss)" '<=' 200)"
echo
echo "### Detail"
echo
echo "| measure | today | now |"
echo "| --- | --- | --- |"
echo "| ceiling: do-nothing consumer | $(row ceiling ' ev/s') | (same runs) |"
echo "| end to end: rapport run | $(row "$(tb e2e)" ' ev/s') | $(row e2e.now ' ev/s') |"
echo "| Redis commands per event (end to end, scripts' inner calls included) | $(row "$(tb cmd)" '') | $(row cmd.now '') |"
echo "| Redis round trips (EVALSHA) per event | $(row "$(tb evalsha)" '') | $(row evalsha.now '') |"
echo "| bytes sent to Redis per event | $(row "$(tb bytes)" ' B') | $(row bytes.now ' B') |"
echo "| redis-server CPU per million events (end to end) | $(row "$(tb rcpu)" ' s') | $(row rcpu.now ' s') |"
echo "| rapport CPU per million events (end to end) | $(row "$(tb cpu)" ' s') | $(row cpu.now ' s') |"
echo "| ceiling consumer CPU per million events | $(row ccpu ' s') | (same runs) |"
echo "| decode, v1 (as end to end) | $(today micro_row today decode_v1) | $(micro_row now decode_v1) |"
echo "| decode, v1/v2/v3 mix | $(today micro_row today decode_mix) | $(micro_row now decode_mix) |"
echo "| score, $CUSTOMERS customers (window_add) | $(today micro_row today score_add) | $(micro_row now score_add) |"
echo "| score at 1M customers without window_prefetch (the same run, in turns; today: never prefetched) | – | $(micro_row now score1m_add_no_prefetch) |"
echo "| state blob per customer (micro, the blobs a sink holds) | – | $(micro_field now score1m_fill state_bytes_per_customer | awk '{ printf "%.0f", $1 }') B |"
echo "| change list + commit at 1M customers, every $E2E_PER_FLUSH events, per event | $(today micro_row today score1m_commit) | $(micro_row now score1m_commit) |"
echo "| scorer heap per customer (micro, mallinfo2) | $(today micro_field today score1m_fill heap_bytes_per_customer) B | $(micro_field now score1m_fill heap_bytes_per_customer) B |"
echo "| in-process sink: customers written per event | $(today micro_field today sink customers_written_per_event) | $(micro_field now sink customers_written_per_event) |"
echo "| in-process sink: Redis commands per event | $(today micro_field today sink commands_per_event) | $(micro_field now sink commands_per_event) |"
for rate in $LAT_RATES; do
    echo "| latency p50 at $rate ev/s | $(row "$(tb p50).$rate" ' ms' 2>/dev/null) | $(row "p50.now.$rate" ' ms') |"
    echo "| latency max at $rate ev/s | $(row "$(tb max).$rate" ' ms' 2>/dev/null) | $(row "max.now.$rate" ' ms') |"
    echo "| latency runs at $rate ev/s: rate achieved | $(row "$(tb lrate).$rate" ' ev/s' 2>/dev/null) | $(row "lrate.now.$rate" ' ev/s') |"
done
echo "| rapport peak RSS per customer while catching up (VmHWM − idle) | $(today per_customer today peak) B | $(per_customer now peak) B |"
echo "| rapport RSS slope per customer (25–90 % of the memory run) | $(today per_customer today slope) B | $(per_customer now slope) B |"
echo "| Redis memory per customer without the alerts stream | $(today per_customer today noalerts) B | $(per_customer now noalerts) B |"
echo "| … of which the resume state (rapport:_state:*) | $(today per_customer today state) B | $(per_customer now state) B |"
echo "| … of which the \`scores\` sorted set | $(today per_customer today scores) B | $(per_customer now scores) B |"
echo "| customer hash (MEMORY USAGE, mean of 1000) | $(today mem_field today ci_mem) B | $(mem_field now ci_mem) B |"
echo "| rapport CPU per million events (memory run) | $(today mem_field today cpu_s_per_m) s | $(mem_field now cpu_s_per_m) s |"
echo
echo "Memory and latency runs: rapport with these kafka.* properties added: ${LAT_KAFKA:-none} (see BENCHMARKS.md)."
for b in $BUILDS; do
    echo "Latency runs ($b): events never seen stored: $(cat "$TMP"/s.missing."$b".* | tr '\n' ' ')."
    echo "Memory run ($b): $(head -n 1 "$TMP/mem-$b.txt")."
    echo "Sink in-process ($b, one partition): $(grep '^sink ' "$TMP/micro-$b.txt" | cut -d' ' -f2-)."
done
echo "Redis commands, end to end run 1 (now): $(kv "$TMP/e2e-now-1.txt" commandstats)."
} > "$OUT"
cat "$OUT"
log "table written to $OUT"
