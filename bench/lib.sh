# shellcheck shell=sh
# lib.sh — what the benchmark scripts share: a temp dir cleaned up on exit,
# a mock Kafka cluster and a private redis-server, each started in the
# background and waited for.  Sourced by every script under bench/, which
# calls bench_init first.

# bench_init NAME: TMP, a fresh temp dir; PIDS, the background processes
# to stop on exit; log and die, which prefix NAME.  On exit, however it
# comes, every process in PIDS is stopped and waited for and TMP removed.
bench_init() {
    BENCH_NAME=$1
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/rapport-$1.XXXXXX")
    PIDS=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "$*"; exit 1; }

# mock_start BIN ARGS…: `BIN mock-kafka ARGS…`; sets BROKERS.
mock_start() {
    mbin=$1
    shift
    "$mbin" mock-kafka "$@" > "$TMP/mock.out" 2> "$TMP/mock.log" &
    PIDS="$PIDS $!"
    i=0
    while [ ! -s "$TMP/mock.out" ]; do
        i=$((i + 1)); [ $i -le 100 ] || die "mock-kafka did not start: $(cat "$TMP/mock.log")"
        sleep 0.1
    done
    BROKERS=$(head -n 1 "$TMP/mock.out")
}

# redis_start: a redis-server on a free port in $TMP/redis, without
# persistence; sets port, REDIS_PID and URL, and defines rcli.
redis_start() {
    mkdir -p "$TMP/redis"
    port=$(( 20000 + $$ % 20000 ))
    REDIS_PID=""
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" &
        REDIS_PID=$!
        ok=""
        for j in $(seq 1 50); do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then ok=1; break; fi
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$ok" ] && break
        kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""; port=$((port + 1))
    done
    [ -n "$REDIS_PID" ] || die "no redis-server could start"
    PIDS="$PIDS $REDIS_PID"
    URL="redis://127.0.0.1:$port"
}
rcli() { redis-cli -p "$port" "$@"; }
