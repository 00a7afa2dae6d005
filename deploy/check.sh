#!/usr/bin/env bash
# deploy/check.sh — checks the deployment files as far as a Debian 12 machine
# without a Docker engine or a Kubernetes cluster can:
#
#   1. the scripts parse (and pass shellcheck, when it is installed);
#   2. deploy/deploycheck.py: the Dockerfile, docker-compose.yml and the
#      Kubernetes manifests parse and say what they must (kinds, probes,
#      ports, users, grace periods, volumes, cross-references);
#   3. `kubectl kustomize deploy/k8s` renders, when kubectl is installed;
#   4. `systemd-analyze verify` and `security --offline` on rapport.service,
#      when systemd-analyze is installed;
#   5. deploy/dockerfile-steps.sh: the Dockerfile's build stage run by hand,
#      the runtime stage's packages checked against what the binary links;
#   6. every configuration shipped here (rapport.conf.example, the image's,
#      compose's, the Kubernetes ConfigMap + Secret) is accepted by that
#      binary's `rapport run`;
#   7. the compose stack played without Docker: `rapport mock-kafka` for
#      kafka, a private redis-server, compose's own `gen` command and
#      rapport with compose's rapport.conf; scores must reach Redis, the
#      probes' endpoints must answer (once the binary serves them), and
#      SIGTERM must end rapport with status 0 within the 15 s grace period.
#
# Prints ok/FAIL/skip lines; exits 1 if anything failed.  Starts processes
# only on loopback and stops exactly those.  Needs python3-yaml and
# redis-server (deploy/install-deps.sh).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
cd "$repo" || exit 1
started=$(date +%s)
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

failed=0 skipped=0
ok()   { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "skip $*"; skipped=$((skipped + 1)); }
# Sends SIGTERM to $1 and waits up to $2 s; sets stop_rc to its exit status,
# or to "timeout" after a SIGKILL.  (Not in a $(...): wait needs the child.)
stop_pid() {
    local pid="$1" limit="$2"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((limit * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; stop_rc=$?; return; fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    stop_rc=timeout
}
section() { echo; echo "== $* (at $(( $(date +%s) - started )) s)"; }
# Adds the ok/FAIL/skip lines of a sub-check's output to the counts.
tally() {
    local out="$1"
    echo "$out"
    failed=$((failed + $(grep -c '^FAIL' <<<"$out")))
    skipped=$((skipped + $(grep -c '^skip' <<<"$out")))
}

section "1. scripts"
for f in deploy/*.sh; do
    shell="sh"
    head -n 1 "$f" | grep -q bash && shell="bash"
    if "$shell" -n "$f"; then ok "$shell -n $f"; else fail "$shell -n $f"; fi
done
if python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' deploy/deploycheck.py; then
    ok "python3 parses deploy/deploycheck.py"
else
    fail "deploy/deploycheck.py does not parse"
fi
if command -v shellcheck >/dev/null; then
    if shellcheck -S warning deploy/*.sh; then ok "shellcheck -S warning deploy/*.sh"; else fail "shellcheck deploy/*.sh"; fi
else
    skip "shellcheck not installed"
fi

section "2. Dockerfile, docker-compose.yml, Kubernetes manifests (static)"
if python3 -c 'import yaml' 2>/dev/null; then
    tally "$(python3 deploy/deploycheck.py static deploy 2>&1)"
else
    fail "python3-yaml is not installed: run deploy/install-deps.sh"
fi

section "3. kustomize"
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
    if out="$(kubectl kustomize deploy/k8s 2>&1)"; then
        kinds="$(grep -E '^kind: ' <<<"$out" | sed 's/kind: //' | sort | tr '\n' ' ')"
        if [ "$kinds" = "ConfigMap Deployment PodDisruptionBudget Service " ]; then
            ok "kubectl kustomize deploy/k8s renders: $kinds"
        else
            fail "kubectl kustomize deploy/k8s renders '$kinds'"
        fi
    else
        fail "kubectl kustomize deploy/k8s: $out"
    fi
else
    skip "kubectl not installed (kustomize rendering not checked)"
fi
skip "no API server: manifests not validated by kubectl apply --dry-run=server, nothing applied"

section "4. systemd unit"
if command -v systemd-analyze >/dev/null; then
    # verify needs ExecStart's binary to exist: point it at this repo's build.
    mkdir -p "$work/unit"
    sed "s#^ExecStart=/usr/local/bin/rapport#ExecStart=$repo/bin/rapport#" deploy/rapport.service >"$work/unit/rapport.service"
    [ -x bin/rapport ] || sed -i "s#^ExecStart=$repo/bin/rapport#ExecStart=/bin/true#" "$work/unit/rapport.service"
    if out="$(systemd-analyze verify "$work/unit/rapport.service" 2>&1)" && [ -z "$out" ]; then
        ok "systemd-analyze verify deploy/rapport.service"
    else
        fail "systemd-analyze verify deploy/rapport.service: $out"
    fi
    exposure="$(systemd-analyze security --offline=true "$work/unit/rapport.service" 2>/dev/null \
        | sed -n 's/.*Overall exposure level for rapport.service: \([0-9.]*\).*/\1/p')"
    if [ -z "$exposure" ]; then
        skip "systemd-analyze security --offline not supported here"
    elif awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }'; then
        ok "systemd-analyze security: exposure $exposure (at most 2.0 required)"
    else
        fail "systemd-analyze security: exposure $exposure, above 2.0"
    fi
else
    skip "systemd-analyze not installed (unit not verified)"
fi

section "5. Dockerfile steps, run by hand"
skip "no Docker engine: the image is not built, the base image not pulled, apt-get and useradd not run"
tally "$(deploy/dockerfile-steps.sh "$work/dfs" 2>&1)"
bin="$work/dfs/rootfs/usr/local/bin/rapport"
if [ ! -x "$bin" ]; then
    fail "no binary from the build stage: sections 6 and 7 cannot run"
    echo; echo "deploy/check.sh: $failed failed, $skipped skipped, $(( $(date +%s) - started )) s"
    exit 1
fi

section "6. configurations accepted by rapport run"
mkdir -p "$work/conf" "$work/schemas"
cp schemas/1.avsc "$work/schemas/"
if python3 deploy/deploycheck.py extract deploy "$work/conf" 2>/dev/null; then :; else fail "extracting the k8s configuration"; fi
# rapport run checks the file, the flags and librdkafka's properties before it
# connects (exit status 2 on any error), then keeps retrying unreachable
# brokers and Redis until SIGTERM.  The network settings are pointed at
# closed loopback ports and schema_dir at a local copy.
conf_check() {
    local name="$1" file="$2" pid rc
    "$bin" run -c "$file" -b 127.0.0.1:9 -r redis://127.0.0.1:9 -X schema_dir="$work/schemas" \
        -X metrics_listen= >"$work/conf.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 50); do
        grep -q 'msg="rapport starting"' "$work/conf.log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$pid" 15
    rc="$stop_rc"
    if [ "$rc" = 0 ] && grep -q 'msg="rapport starting"' "$work/conf.log"; then
        ok "$name is accepted (started, stopped on SIGTERM with status 0)"
    else
        fail "$name: status $rc: $(grep -v 'msg="librdkafka"' "$work/conf.log" | head -n 3)"
    fi
}
conf_check "deploy/rapport.conf.example" deploy/rapport.conf.example
conf_check "the image's /etc/rapport/rapport.conf" "$work/dfs/rootfs/etc/rapport/rapport.conf"
conf_check "deploy/compose/rapport.conf" deploy/compose/rapport.conf
[ -f "$work/conf/k8s.conf" ] && conf_check "k8s ConfigMap rapport.conf + Secret secret.conf (SASL_SSL)" "$work/conf/k8s.conf"
printf 'no_such_key = 1\n' >"$work/conf/bad.conf"
if timeout -k 5 5 "$bin" run -c "$work/conf/bad.conf" >/dev/null 2>&1; [ $? -eq 2 ]; then
    ok "a bad key is refused with status 2 (so the checks above can fail)"
else
    fail "a bad key was not refused with status 2"
fi

section "7. the compose stack without Docker (mock Kafka, private Redis)"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    fail "redis-server/redis-cli not installed: run deploy/install-deps.sh"
elif [ ! -f "$work/conf/gen.args" ]; then
    fail "no gen command from docker-compose.yml"
else
    topic="$(sed -n 's/^topic *= *//p' deploy/compose/rapport.conf)"
    sdir="$(sed -n 's/^schema_dir *= *//p' deploy/compose/rapport.conf)"
    # kafka + kafka-init: the same topics, 6 partitions each.
    "$bin" mock-kafka --topic "$topic" --partitions 6 --topic "$topic.dlq" --partitions 6 \
        >"$work/mock.out" 2>"$work/mock.err" &
    pids+=($!)
    boot=""
    for _ in $(seq 50); do boot="$(head -n 1 "$work/mock.out" 2>/dev/null)"; [ -n "$boot" ] && break; sleep 0.1; done
    rport="$(free_port)"
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    if [ -z "$boot" ] || ! redis-cli -p "$rport" ping >/dev/null 2>&1; then
        fail "mock Kafka or redis-server did not start: $(cat "$work/mock.err" "$work/redis.log" | tail -n 5)"
    else
        ok "kafka: rapport mock-kafka at $boot, topics $topic and $topic.dlq; redis: redis-server on 127.0.0.1:$rport"
        # gen: compose's command, with kafka:9092 and the volume replaced.
        mapfile -t gargs <"$work/conf/gen.args"
        brokers="$(sed -n 's/^brokers *= *//p' deploy/compose/rapport.conf)"
        for i in "${!gargs[@]}"; do
            [ "${gargs[$i]}" = "$brokers" ] && gargs[i]="$boot"
            [ "${gargs[$i]}" = "$sdir" ] && gargs[i]="$work/gen-schemas"
        done
        "$bin" "${gargs[@]}" >"$work/gen.log" 2>&1 &
        gen_pid=$!
        pids+=("$gen_pid")
        mport="$(free_port)"
        "$bin" run -c deploy/compose/rapport.conf -b "$boot" -r "redis://127.0.0.1:$rport/0" \
            -X schema_dir="$work/gen-schemas" -X metrics_listen="127.0.0.1:$mport" >"$work/rapport.log" 2>&1 &
        rap_pid=$!
        pids+=("$rap_pid")
        n=0
        for _ in $(seq 300); do
            n="$(redis-cli -p "$rport" ZCARD rapport:scores 2>/dev/null || echo 0)"
            [ "${n:-0}" -gt 0 ] 2>/dev/null && break
            kill -0 "$rap_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ "${n:-0}" -gt 0 ] 2>/dev/null; then
            ok "gen (${gargs[*]:0:9} ...) wrote schemas $(cd "$work/gen-schemas" 2>/dev/null && echo *.avsc); rapport scored $n customers into Redis"
        else
            fail "no score reached Redis within 30 s: $(tail -n 5 "$work/rapport.log")"
        fi
        if grep -aq '/readyz' "$bin"; then
            http() { python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status); sys.stdout.write(r.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode("utf-8", "replace"))
except Exception as e:
    print(0); print(e)
EOF
            }
            for path in /healthz /readyz; do
                code=0
                for _ in $(seq 40); do
                    code="$(http "http://127.0.0.1:$mport$path")"
                    code="${code%%$'\n'*}"
                    [ "$code" = 200 ] && break
                    sleep 0.5
                done
                if [ "$code" = 200 ]; then ok "GET $path answers 200 (the probes' endpoint)"; else fail "GET $path answers $code"; fi
            done
            metrics="$(http "http://127.0.0.1:$mport/metrics")"
            if grep -q '^rapport_build_info' <<<"$metrics" && grep -q '^rapport_events_total' <<<"$metrics"; then
                ok "GET /metrics serves rapport_build_info and rapport_events_total"
            else
                fail "GET /metrics: $(head -n 3 <<<"$metrics")"
            fi
            scored="$(sed -n 's/^rapport_events_total{result="scored"} \([0-9]*\).*/\1/p' <<<"$metrics")"
            dl="$(sed -n 's/^rapport_events_total{result="dead_letter"} \([0-9]*\).*/\1/p' <<<"$metrics")"
            if [ "${scored:-0}" -gt 0 ] && [ "$dl" = 0 ]; then
                ok "$scored events scored, 0 dead letters: every writer schema gen used was in the shared directory"
            else
                fail "events scored '${scored}', dead letters '${dl}': $(grep '^rapport_dead_letters_total' <<<"$metrics" | grep -v ' 0$' | head -n 3)"
            fi
        else
            skip "this build of rapport does not serve /healthz and /readyz yet: probe endpoints not checked"
        fi
        stop_pid "$gen_pid" 15
        t0=$(date +%s.%N)
        stop_pid "$rap_pid" 15
        rc="$stop_rc"
        secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
        if [ "$rc" = 0 ]; then
            ok "SIGTERM: rapport exited 0 after $secs s (grace: 15 s compose and systemd, 30 s Kubernetes)"
        elif [ "$rc" = timeout ]; then
            fail "SIGTERM: rapport still running after 15 s (killed)"
        else
            fail "SIGTERM: rapport exited $rc: $(tail -n 3 "$work/rapport.log")"
        fi
    fi
fi
skip "not run: docker build, docker compose up, kubectl apply (no Docker engine, no cluster)"

echo
echo "deploy/check.sh: $failed failed, $skipped skipped, $(( $(date +%s) - started )) s"
[ $failed -eq 0 ]
