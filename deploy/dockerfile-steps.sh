#!/usr/bin/env bash
# Runs deploy/Dockerfile's steps by hand on this Debian 12 machine, for
# machines without a Docker engine.  Usage:
#
#   deploy/dockerfile-steps.sh [WORKDIR]
#
# Build stage: checks that its apt packages are installed here, copies the
# build context (the repository, filtered by .dockerignore) to
# WORKDIR/build/src, and runs every other RUN step there verbatim, with the
# stage's absolute directories (/src, /out) moved under WORKDIR/build.
# Runtime stage: checks that its apt packages exist in Debian's index, lays
# out WORKDIR/rootfs as its COPY steps would, checks that ENTRYPOINT and the
# CMD's configuration file are there, and that every shared library the
# binary needs (ldd, mapped to a package with dpkg -S) comes from the runtime
# stage's packages or their dependencies (apt-cache depends --recurse).
# Not run here: apt-get itself, and groupadd/useradd (they would change this
# machine); the base image is not pulled.  Prints ok/FAIL/skip lines; exits 1
# if a check failed.  Without WORKDIR a temporary directory is used and
# removed; with it, WORKDIR/rootfs is left for deploy/check.sh.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
dockerfile="$here/Dockerfile"

if [ $# -ge 1 ]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"
rm -rf "$work/build" "$work/rootfs"
mkdir -p "$work/build" "$work/rootfs"

failed=0
ok()   { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "skip $*"; }

# Packages named by `apt-get install` in a RUN command.
apt_pkgs() {
    printf '%s\n' "$1" | tr ';&' '\n\n' | awk '
        { for (i = 1; i <= NF; i++) if ($i == "apt-get") { inst = 0
              for (j = i + 1; j <= NF; j++) {
                  if ($j == "install") { inst = 1; continue }
                  if (inst && $j !~ /^-/) print $j } } }'
}

# Copies the build context to $1, honouring .dockerignore (no "!" rules).
copy_context() {
    python3 - "$repo" "$1" "$work" <<'EOF'
import os, re, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
pats = []
ign = os.path.join(src, ".dockerignore")
if os.path.exists(ign):
    for line in open(ign):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            sys.exit("dockerfile-steps: '!' rules in .dockerignore are not supported here")
        rx = re.escape(line.strip("/"))
        rx = rx.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        pats.append(re.compile(rx + "$"))
def ignored(rel):
    return any(p.match(rel) for p in pats)
skip = os.path.realpath(sys.argv[3])  # the work directory, if inside the repository
for root, dirs, files in os.walk(src):
    relroot = os.path.relpath(root, src)
    relroot = "" if relroot == "." else relroot + "/"
    dirs[:] = [d for d in dirs if not ignored(relroot + d)
               and os.path.realpath(os.path.join(root, d)) != skip]
    os.makedirs(os.path.join(dst, relroot), exist_ok=True)
    for f in files:
        if not ignored(relroot + f):
            shutil.copy2(os.path.join(root, f), os.path.join(dst, relroot, f), follow_symlinks=False)
EOF
}

command -v python3 >/dev/null || { fail "python3 is missing (run deploy/install-deps.sh)"; exit 1; }
mapfile -t instrs < <(python3 "$here/deploycheck.py" dockerfile "$dockerfile")

build_stage="" runtime_stage="" cwd="$work/build" rt_pkgs=()
declare -a stage_dirs=()
for line in "${instrs[@]}"; do
    IFS=$'\t' read -r stage ins args <<<"$line"
    if [ "$ins" = FROM ]; then
        if [ -z "$build_stage" ]; then build_stage="$stage"; else runtime_stage="$stage"; fi
    fi
    if [ "$ins" = COPY ] && [[ "$args" =~ ^--from=([^ ]+)\ ([^ ]+)\ ([^ ]+)$ ]]; then
        stage_dirs+=("${BASH_REMATCH[2]%/}")
    fi
done
echo "== Dockerfile build stage '$build_stage', run here in $work/build"

for line in "${instrs[@]}"; do
    IFS=$'\t' read -r stage ins args <<<"$line"
    [ "$stage" = "$build_stage" ] || [ -z "$stage" ] || continue
    case "$ins" in
    ARG | ENV)
        name="${args%%=*}"
        value="${args#*=}"
        [ "$name" = "$args" ] && value=""
        # A --build-arg given in the environment wins, as with docker build.
        if [ -z "${!name+x}" ]; then export "$name=$value"; fi
        ;;
    FROM) ;;
    WORKDIR)
        stage_dirs+=("${args%/}")
        cwd="$work/build${args}"
        mkdir -p "$cwd"
        ;;
    COPY)
        if [ "$args" = ". ." ]; then
            copy_context "$cwd"
            ok "COPY . . (the repository without .dockerignore's entries: $(cat "$repo/.dockerignore" | grep -v '^#' | tr '\n' ' '))"
            if [ -e "$cwd/build" ] || [ -e "$cwd/bin" ] || [ -e "$cwd/.git" ]; then
                fail "the build context still holds build/, bin/ or .git"
            fi
        else
            fail "build stage: COPY $args is not emulated by this script"
        fi
        ;;
    RUN)
        if [[ "$args" == *apt-get*install* ]]; then
            missing=""
            for p in $(apt_pkgs "$args"); do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
            done
            if [ -z "$missing" ]; then
                ok "build stage packages installed here: $(apt_pkgs "$args" | tr '\n' ' ')"
            else
                fail "build stage packages missing here:$missing (run deploy/install-deps.sh)"
            fi
            continue
        fi
        cmd="$args"
        for d in "${stage_dirs[@]}"; do
            cmd="${cmd// $d\// $work/build$d/}"
        done
        echo "   RUN (in ${cwd#"$work/"}) $cmd"
        if (cd "$cwd" && sh -ec "$cmd") >"$work/run.log" 2>&1; then
            ok "RUN $args"
        else
            tail -n 30 "$work/run.log"
            fail "RUN $args"
        fi
        ;;
    *) skip "build stage: $ins $args (nothing to run)" ;;
    esac
done

echo "== Dockerfile runtime stage '$runtime_stage', laid out in $work/rootfs"
entry="" cmdfile=""
for line in "${instrs[@]}"; do
    IFS=$'\t' read -r stage ins args <<<"$line"
    [ "$stage" = "$runtime_stage" ] || continue
    case "$ins" in
    RUN)
        if [[ "$args" == *apt-get*install* ]]; then
            mapfile -t rt_pkgs < <(apt_pkgs "$args")
        fi
        skip "RUN not executed here (apt-get, groupadd, useradd would change this machine): ${args:0:60}..."
        ;;
    COPY)
        if [[ "$args" =~ ^--from=([^ ]+)\ ([^ ]+)\ ([^ ]+)$ ]]; then
            from="$work/build${BASH_REMATCH[2]}"
            to="$work/rootfs${BASH_REMATCH[3]}"
            if [ -d "$from" ]; then
                mkdir -p "$to" && cp -a "$from/." "$to/"
                ok "COPY $args ($(cd "$from" && find . -type f | sed 's#^\.##' | tr '\n' ' '))"
            else
                fail "COPY $args: the build stage made no ${BASH_REMATCH[2]}"
            fi
        else
            read -r -a parts <<<"$args"
            dest="${parts[-1]}"
            for s in "${parts[@]:0:${#parts[@]}-1}"; do
                install -D -m 0644 "$repo/$s" "$work/rootfs$dest$( [[ $dest == */ ]] && basename "$s")"
            done
            ok "COPY $args"
        fi
        ;;
    # Exec form, as deploycheck.py requires: ["rapport"], [..., "-c", "FILE"].
    ENTRYPOINT) entry="$(sed -E 's/^\[ *"([^"]*)".*/\1/' <<<"$args")" ;;
    CMD) cmdfile="$(sed -nE 's/.*"-c", *"([^"]*)".*/\1/p' <<<"$args")" ;;
    esac
done

bin=""
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    if [ -x "$work/rootfs$d/$entry" ]; then bin="$work/rootfs$d/$entry"; break; fi
done
if [ -n "$bin" ]; then ok "ENTRYPOINT $entry is ${bin#"$work/rootfs"} in the image"; else fail "ENTRYPOINT $entry is not on the image's PATH"; fi
if [ -n "$cmdfile" ] && [ -f "$work/rootfs$cmdfile" ]; then ok "CMD's configuration $cmdfile is in the image"; else fail "CMD's configuration '$cmdfile' is not in the image"; fi
if [ -d "$work/rootfs/etc/rapport/schemas" ] && ls "$work/rootfs/etc/rapport/schemas"/*.avsc >/dev/null 2>&1; then
    ok "writer schemas in /etc/rapport/schemas: $(cd "$work/rootfs/etc/rapport/schemas" && echo *.avsc)"
else
    fail "no writer schema in /etc/rapport/schemas"
fi
[ -n "$bin" ] || { echo "dockerfile-steps: $failed failed"; exit 1; }

# Runtime packages: known to Debian's index (or installed here).
have_lists=0
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 && have_lists=1
policy="$(apt-cache policy "${rt_pkgs[@]}" 2>/dev/null | awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} /Candidate:/ {print p, $2}')"
for p in "${rt_pkgs[@]}"; do
    cand="$(awk -v p="$p" '$1 == p {print $2}' <<<"$policy")"
    inst="$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"
    if [ -n "$cand" ] && [ "$cand" != "(none)" ]; then
        ok "runtime package $p exists in bookworm ($cand)"
    elif [ -n "$inst" ]; then
        ok "runtime package $p installed here ($inst)"
    elif [ $have_lists -eq 0 ]; then
        skip "runtime package $p: no apt lists here to look it up (apt-get update)"
    else
        fail "runtime package $p is not in this machine's Debian index"
    fi
done

# Every library the binary loads must come from the runtime packages or the
# packages they depend on (what apt-get install would bring into the image).
closure="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${rt_pkgs[@]}" 2>/dev/null \
    | grep -v '^ ' | tr -d '<>' | sed 's/:.*//' | sort -u)"
libs_ok=0 libs_bad=0 used=""
mapfile -t libs < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $1 ~ /^\// {print $1, $1}')
# One dpkg -S for every spelling of every path (usrmerge: /lib is /usr/lib).
cands=()
for l in "${libs[@]}"; do
    path="${l#* }"
    cands+=("$path" "$(readlink -f "$path")" "${path#/usr}" "/usr$path")
done
owners="$(dpkg -S "${cands[@]}" 2>/dev/null | grep -v '^diversion' || true)"
for l in "${libs[@]}"; do
    soname="${l%% *}" path="${l#* }" pkg=""
    for cand in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr$path"; do
        pkg="$(awk -v f="$cand" '{ p = $0; sub(/^[^ ]+ /, "", p) } p == f { sub(/:.*/, "", $1); print $1; exit }' <<<"$owners")"
        [ -n "$pkg" ] && break
    done
    if [ -z "$pkg" ]; then
        fail "$soname ($path) belongs to no Debian package"
        libs_bad=$((libs_bad + 1))
    elif grep -qx "$pkg" <<<"$closure"; then
        libs_ok=$((libs_ok + 1))
        used="$used $soname<-$pkg"
    else
        fail "$soname comes from $pkg, which the runtime stage does not install"
        libs_bad=$((libs_bad + 1))
    fi
done
if ldd "$bin" | grep -q 'not found'; then fail "ldd: $(ldd "$bin" | grep 'not found' | tr '\n' ' ')"; fi
[ $libs_bad -eq 0 ] && ok "ldd: all $libs_ok libraries come from the runtime stage's packages:$used"
for p in "${rt_pkgs[@]}"; do
    case "$p:$used" in lib*:*"<-$p"* | [!l]* | l[!i]*) ;; *) echo "     note: $p is installed but the binary links none of its libraries today" ;; esac
done
if "$bin" --version >/dev/null 2>&1; then ok "$("$bin" --version | head -n 1) runs"; else fail "the built binary does not run"; fi

echo "dockerfile-steps: $failed failed"
[ $failed -eq 0 ]
