#!/bin/sh
# profile.sh — where rapport's own CPU goes, counted in instructions.
#
# Runs bench/micro (decode and score, on the generator's events) under
# valgrind's callgrind, which counts instructions exactly and repeatably
# on a noisy machine (hardware counters are not available in this VM, so
# `perf stat -e instructions` does not work; perf's cpu-clock sampling does,
# see BENCHMARKS.md).  Prints the instructions per event of the functions
# that matter, inclusive, and leaves the full profile for
# callgrind_annotate / kcachegrind.
#
#   bench/profile.sh [EVENTS]      default 300000 events over 100000 customers
#
# Environment: BENCH_BIN_DIR (build/default/bench), PROFILE_OUT
# (build/bench/callgrind.out).  Build first: make build/default/bench/micro
set -eu

BB=${BENCH_BIN_DIR:-build/default/bench}
N=${1:-300000}
OUT=${PROFILE_OUT:-build/bench/callgrind.out}
command -v valgrind >/dev/null || { echo "profile: valgrind missing: deploy/install-deps.sh" >&2; exit 1; }
[ -x "$BB/micro" ] || { echo "profile: $BB/micro missing: make $BB/micro" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rapport-profile.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$(dirname "$OUT")"

echo "profile: callgrind on micro, $N events (this takes a minute or two)" >&2
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    "$BB/micro" --schema-dir "$TMP/schemas" --only decode,score --repeat 1 --events "$N" \
    > "$TMP/micro.txt" 2> "$TMP/valgrind.log" || { cat "$TMP/valgrind.log" >&2; exit 1; }

# Calls of decoder_decode: (1 warm-up + 1 pass) x N, plus the same for the
# v1/v2/v3 mix (N/4); calls of window_add: N.
DECODES=$(awk -v n="$N" 'BEGIN { q = int(n / 4); if (q < 1) q = 1; print 2 * n + 2 * q }')
echo "inclusive instructions, $N events over 100000 customers:"
callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null | awk -v dec="$DECODES" -v n="$N" '
    /^ *[0-9,]+ / && /(consumer|scoring)\/[a-z_]+\.c:/ {
        ir = $1; gsub(",", "", ir); ir += 0
        fn = $0; sub(/^.*\.c:/, "", fn); sub(/ .*$/, "", fn)
        if (seen[fn]++ || ir < n * 5) next
        if ($0 ~ /consumer\//) printf "  %-26s %8.0f per decode\n", fn, ir / dec
        else printf "  %-26s %8.0f per event\n", fn, ir / n
    }' | head -n 30
echo "profile: full profile in $OUT (callgrind_annotate --inclusive=yes $OUT)" >&2
