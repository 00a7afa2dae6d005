#!/bin/sh
# baseline.sh — builds the rapport the benchmark compares with, once.
#
#   bench/baseline.sh REV
#
# Extracts commit REV of this repository (git archive) into
# build/baseline/REV/ and builds its bin/rapport and its bench/micro there,
# with its own Makefile; a second call finds them built.  bench/run.sh
# then measures that build and the working tree's side by side, in the
# same run (BENCHMARKS.md, "Method").  Prints nothing on success; without
# git or the commit (a tarball), says so and exits 1, and bench/run.sh
# measures the working tree alone.
set -eu

[ $# -eq 1 ] || { echo "usage: bench/baseline.sh REV" >&2; exit 2; }
REV=$1
DIR=build/baseline/$REV
if [ -x "$DIR/bin/rapport" ] && [ -x "$DIR/build/default/bench/micro" ]; then
    exit 0
fi
if ! command -v git >/dev/null || ! git cat-file -e "$REV^{commit}" 2>/dev/null; then
    echo "bench: baseline $REV is not in this checkout: measuring the working tree alone" >&2
    exit 1
fi
echo "bench: building the baseline $REV in $DIR" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
git archive "$REV" | tar -x -C "$DIR"
make -C "$DIR" --no-print-directory -j"$(nproc)" bin/rapport build/default/bench/micro > "$DIR.log" 2>&1 \
    || { echo "bench: the baseline did not build: $DIR.log" >&2; exit 1; }
