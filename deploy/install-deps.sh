#!/bin/sh
# Installs what rapport needs to build, test and run, from Debian's packages.
# Safe to run again; uses sudo when not root.  Every make target (make,
# make test, make demo, make bench, ...) calls it first when pkg-config
# cannot find a library or redis-server is missing.
set -eu

PKGS="build-essential pkg-config librdkafka-dev libavro-dev libhiredis-dev \
libcriterion-dev libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev \
redis-server redis-tools valgrind python3-yaml libssl-dev openssl chromium \
clang libclang-rt-dev llvm"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-deps: not root and no sudo; install as root: $PKGS" >&2
        exit 1
    fi
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
# The packaged redis-server service is not needed: tests and the demo start
# their own on a free port.
