#!/bin/sh
# cluster.sh — rapport's write pattern on one redis-server and on a local
# Redis Cluster of 3 masters, the measurement behind docs/SCALING.md
# (`make bench-cluster`).
#
# Starts, in a temporary directory and on free loopback ports, one plain
# redis-server and BENCH_CLUSTER_MASTERS cluster-enabled ones joined with
# `redis-cli --cluster create … --cluster-replicas 0`, waits for
# cluster_state:ok, then runs bench/cluster (bench/cluster.c: fenced flush
# scripts, one per Kafka partition, every key of a partition in one hash
# slot) against each, the same client load, and once more on the cluster
# with every customer key declared in KEYS; alternating which goes first,
# BENCH_CLUSTER_REPEAT times for each flush size.  Prints a table (also
# written to BENCH_CLUSTER_OUT) of customers written per second, Redis CPU
# per customer and what one Redis core does; plus memory per customer,
# how the partitions fell on the masters, and what Redis answers to a
# script that reaches outside its slot or, during a slot migration, writes
# a key it did not declare.
#
# Knobs (environment): BENCH_CLUSTER_CUSTOMERS (100000),
# BENCH_CLUSTER_PARTITIONS (64), BENCH_CLUSTER_PER_FLUSH ("1000 16":
# customers per partition per flush; 1000 is a catch-up batch, 16 the live
# case of 20 000 events/s with flush_ms 50 over 64 partitions),
# BENCH_CLUSTER_PASSES (3: one creating every customer, then updates),
# BENCH_CLUSTER_REPEAT (2), BENCH_CLUSTER_MASTERS (3), BENCH_CLUSTER_OUT
# (build/bench/cluster.md), BENCH_BIN_DIR (build/default/bench).
set -eu

BB=${BENCH_BIN_DIR:-build/default/bench}
CUSTOMERS=${BENCH_CLUSTER_CUSTOMERS:-100000}
PARTS=${BENCH_CLUSTER_PARTITIONS:-64}
PER_FLUSH=${BENCH_CLUSTER_PER_FLUSH:-1000 16}
PASSES=${BENCH_CLUSTER_PASSES:-3}
REPEAT=${BENCH_CLUSTER_REPEAT:-2}
MASTERS=${BENCH_CLUSTER_MASTERS:-3}
OUT=${BENCH_CLUSTER_OUT:-build/bench/cluster.md}

[ -x "$BB/cluster" ] || { echo "bench-cluster: $BB/cluster missing: run 'make bench-cluster'" >&2; exit 1; }
for cmd in redis-server redis-cli awk sort; do
    command -v "$cmd" >/dev/null || { echo "bench-cluster: $cmd missing: run deploy/install-deps.sh" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
bench_init bench-cluster

START=$(date +%s)

# The plain server: lib.sh's, on a free port; sets port.
redis_start
# shellcheck disable=SC2154 # set by redis_start
SINGLE=$port

# cnode_start N: a cluster-enabled redis-server in $TMP/node-N on the first
# free port from next_port on (the cluster bus takes the port + 10000 too);
# appends the port to NODES.
next_port=$(( 21000 + $$ % 20000 ))
NODES=""
cnode_start() {
    dir="$TMP/node-$1"
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        p=$next_port
        next_port=$((next_port + 1))
        [ "$p" = "$SINGLE" ] && continue
        rm -f "$dir/nodes.conf"
        redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
            --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
        pid=$!
        for j in $(seq 1 50); do
            if redis-cli -p "$p" ping 2>/dev/null | grep -q PONG; then
                PIDS="$PIDS $pid"
                NODES="$NODES $p"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        : "attempt $attempt on port $p failed"
    done
    die "cluster node $1 could not start: $(tail -n 3 "$dir/redis.log" 2>/dev/null)"
}

i=1
while [ "$i" -le "$MASTERS" ]; do
    cnode_start "$i"
    i=$((i + 1))
done
ADDRS=""
for p in $NODES; do ADDRS="$ADDRS 127.0.0.1:$p"; done
# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $ADDRS --cluster-replicas 0 --cluster-yes > "$TMP/create.log" 2>&1 \
    || die "redis-cli --cluster create failed: $(tail -n 5 "$TMP/create.log")"
for p in $NODES; do
    j=0
    until redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
        j=$((j + 1)); [ $j -le 100 ] || die "node $p: cluster_state is not ok after 10 s"
        sleep 0.1
    done
done
FIRST=$(echo "$NODES" | awk '{ print $1 }')

# The runs: for each repeat and flush size, the plain server and the
# cluster with the same arguments, which one first alternating.
RES="$TMP/results.txt"
: > "$RES"
facts="--facts"
run_one() { # TARGET PER_FLUSH
    if [ "$1" = single ]; then
        "$BB/cluster" --node "127.0.0.1:$SINGLE" --label "single-$2" --customers "$CUSTOMERS" \
            --partitions "$PARTS" --per-flush "$2" --passes "$PASSES" >> "$RES" \
            || die "bench/cluster on the plain server failed"
    elif [ "$1" = cluster ]; then
        # shellcheck disable=SC2086 # $facts is empty or one flag
        "$BB/cluster" --node "127.0.0.1:$FIRST" --cluster $facts --label "cluster-$2" \
            --customers "$CUSTOMERS" --partitions "$PARTS" --per-flush "$2" \
            --passes "$PASSES" >> "$RES" || die "bench/cluster on the cluster failed"
        facts=""
    else
        "$BB/cluster" --node "127.0.0.1:$FIRST" --cluster --declare-keys --label "declared-$2" \
            --customers "$CUSTOMERS" --partitions "$PARTS" --per-flush "$2" \
            --passes "$PASSES" >> "$RES" || die "bench/cluster on the cluster failed"
    fi
}
r=1
while [ "$r" -le "$REPEAT" ]; do
    for k in $PER_FLUSH; do
        if [ $((r % 2)) -eq 1 ]; then run_one single "$k"; run_one cluster "$k"; run_one declared "$k"
        else run_one declared "$k"; run_one cluster "$k"; run_one single "$k"; fi
    done
    r=$((r + 1))
done
ELAPSED=$(( $(date +%s) - START ))

# stat LABEL KIND FIELD: "median (min–max)" of FIELD over the pass lines.
stat() {
    awk -v l="$1" -v k="$2" -v f="$3" '
        $1 == "pass" { ok = 0; v = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "label" && kv[2] == l) ok++
                if (kv[1] == "kind" && kv[2] == k) ok++
                if (kv[1] == f) v = kv[2]
            }
            if (ok == 2 && v != "") print v }' "$RES" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "n/a"; exit }
              m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              if (NR == 1) print fmt(m)
              else print fmt(m) " (" fmt(v[1]) "–" fmt(v[NR]) ")" }
        function fmt(x) { return x >= 100 ? sprintf("%.0f", x) : sprintf("%.2f", x) }'
}
# med LABEL KIND FIELD: the median alone.
med() { stat "$@" | awk '{ print $1 }'; }

mkdir -p "$(dirname "$OUT")"
{
    echo "## Redis Cluster: rapport's write pattern, 1 node against $MASTERS masters"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
         "$(nproc) cores, load $(awk '{ print $1, $2, $3 }' /proc/loadavg), $ELAPSED s;" \
         "$CUSTOMERS customers over $PARTS partitions, $PASSES passes (the first creates every" \
         "customer), $REPEAT repeats; median (min–max) over the repeats (and update passes)."
    echo
    echo "| Redis | customers per partition per flush | pass | customers/s | Redis CPU µs per customer | script time µs per customer¹ | Redis cores busy² | customers/s per Redis core³ | customers/s with a core per master⁴ |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for k in $PER_FLUSH; do
        for kind in new update; do
            for t in single cluster declared; do
                l="$t-$k"
                us=$(med "$l" "$kind" redis_cpu_us_per_customer)
                percore=$(awk -v u="$us" 'BEGIN { if (u + 0 > 0) printf "%.0f", 1e6 / u; else print "n/a" }')
                case $t in
                    single) name="1 node" ;;
                    cluster) name="$MASTERS masters" ;;
                    *) name="$MASTERS masters, customer keys in KEYS" ;;
                esac
                echo "| $name | $k | $kind | $(stat "$l" "$kind" customers_per_s) |" \
                     "$(stat "$l" "$kind" redis_cpu_us_per_customer) |" \
                     "$(stat "$l" "$kind" script_us_per_customer) |" \
                     "$(stat "$l" "$kind" redis_cores_busy) | $percore |" \
                     "$(stat "$l" "$kind" customers_per_s_core_per_node) |"
            done
        done
    done
    echo
    echo "¹ INFO commandstats, evalsha usec: wall time inside the scripts, so above the CPU when the servers wait for a core."
    echo "² Redis CPU (all nodes) over wall time: how many cores the servers got."
    echo "³ 10⁶ / the median Redis CPU µs per customer: what one fully busy Redis core writes."
    echo "⁴ Customers over the busiest node's CPU seconds: the rate if each server had a core of its own (computed from measured CPU, not measured as a rate; the busiest master, holding the most partitions, bounds it)."
    echo
    for k in $PER_FLUSH; do
        for kind in new update; do
            a=$(med "single-$k" "$kind" customers_per_s)
            b=$(med "cluster-$k" "$kind" customers_per_s)
            c=$(med "single-$k" "$kind" redis_cpu_us_per_customer)
            d=$(med "cluster-$k" "$kind" redis_cpu_us_per_customer)
            awk -v k="$k" -v kind="$kind" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v m="$MASTERS" 'BEGIN {
                if (a + 0 > 0 && c + 0 > 0)
                    printf "- %d per partition per flush, %s: %d masters write %.2f× the customers/s of one node, at %.2f× its Redis CPU per customer.\n", k, kind, m, b / a, d / c }'
        done
    done
    echo
    echo "Memory per customer after the first pass (used_memory growth, summed over the nodes; the alerts stream included):"
    echo
    awk '$1 == "memory" { for (i = 2; i <= NF; i++) { split($i, kv, "="); x[kv[1]] = kv[2] }
                          print x["label"], x["bytes_per_customer"] }' "$RES" | sort | awk '
        { v[$1] = v[$1] (v[$1] == "" ? "" : ", ") $2 }
        END { for (l in v) printf "- %s: %s B\n", l, v[l] }' | sort
    echo
    echo "Partitions per master ($PARTS tags {interactions:<p>} over the slots redis-cli --cluster create gave each):"
    echo
    awk '$1 == "node" && $2 ~ /^label=cluster/ && $3 ~ /^addr=/ && !seen[$3]++ {
        sub("addr=", "", $3); sub("partitions=", "", $4); printf "- %s: %s partitions\n", $3, $4 }' "$RES"
    echo
    echo "What Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') answers to a \`#!lua\` script called with KEYS[1] in one slot that also writes a key of another slot, and, while that slot migrates to another master (CLUSTER SETSLOT MIGRATING/IMPORTING), to one that writes a key it did not declare, against one that declares it:"
    echo
    grep '^fact ' "$RES" | sed 's/^fact /- /'
} | tee "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$RES" "${OUT%.md}.txt"
