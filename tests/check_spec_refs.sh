#!/bin/sh
# check_spec_refs.sh — every citation of the product contract resolves.
#
# Code and docs cite docs/SPEC.md as "SPEC §2.1", "SPEC.md §6",
# "docs/SPEC.md §1.1", a range "SPEC §2–4" (both ends are checked) or a
# list "SPEC §3 and §4".  This script finds every such citation in *.c,
# *.h, docs/*.md, README.md and BENCHMARKS.md and checks that docs/SPEC.md
# has a heading with that number ("## 2. Time…", "### 2.1 Order…").  It
# prints FILE:LINE of each dangling citation and exits 1 if there is any.
# A citation split over two lines ("(SPEC" at the end of one, "§6)" at the
# start of the next) is read as one.
#
# Run by `make check-docs`; needs only sh, git (or find) and awk.
set -eu

cd "$(dirname "$0")/.."
spec=docs/SPEC.md
if [ ! -f "$spec" ]; then
    echo "check_spec_refs: $spec is missing" >&2
    exit 1
fi

# Tracked and new (not ignored) files; find when this is not a git checkout.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files --cached --others --exclude-standard -- \
        '*.c' '*.h' 'docs/*.md' README.md BENCHMARKS.md | sort -u)
else
    files=$(find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' \) -print \
        | sed 's#^\./##'; ls docs/*.md README.md BENCHMARKS.md 2>/dev/null)
fi
# Only files that exist (a tracked file may have been deleted in the tree).
# docs/SPEC.md itself is read twice: first for its headings, last for its
# own cross-references, where a bare "§4" means its own section 4 (but
# "DESIGN.md §3" is another document's).
set --
for f in $files; do [ -f "$f" ] && [ "$f" != "$spec" ] && set -- "$@" "$f"; done

# shellcheck disable=SC2016
awk -v spec="$spec" '
FNR == 1 { carry = 0; if (FILENAME == spec) pass++ }
FILENAME == spec && pass == 2 {
    s = $0
    while (match(s, /§[ \t]*[0-9]+(\.[0-9]+)*/)) {
        pre = substr(s, 1, RSTART - 1)
        c = substr(s, RSTART, RLENGTH)
        s = substr(s, RSTART + RLENGTH)
        sub(/^§[ \t]*/, "", c)
        # "DESIGN.md §3" is a section of another document.
        if (pre ~ /[A-Za-z]\.md[ \t]*$/ && pre !~ /SPEC\.md[ \t]*$/) continue
        check(c)
    }
    next
}
FILENAME == spec {
    # A heading "## 9.", "### 9.1 History", "#### 2.1 …" defines a section.
    if (match($0, /^#+[ \t]+[0-9]+(\.[0-9]+)*\.?([ \t]|$)/)) {
        n = substr($0, RSTART, RLENGTH)
        sub(/^#+[ \t]+/, "", n)
        sub(/\.?[ \t]*$/, "", n)
        have[n] = 1
        sections++
    }
    next
}
function check(num) {
    cited++
    if (!(num in have)) {
        printf "%s:%d: SPEC §%s: no such section in %s\n", FILENAME, FNR, num, spec
        bad++
    }
}
{
    s = $0
    if (carry && match(s, /^[ \t]*(\*|#|\/\/)?[ \t]*§/)) {
        sub(/^[ \t]*(\*|#|\/\/)?[ \t]*/, "", s)
        s = "SPEC " s
    }
    carry = (s ~ /SPEC(\.md)?[ \t(]*$/)
    while (match(s, /SPEC(\.md)?[ \t]*§[ \t]*[0-9]+(\.[0-9]+)*/)) {
        c = substr(s, RSTART, RLENGTH)
        s = substr(s, RSTART + RLENGTH)
        sub(/^.*§[ \t]*/, "", c)
        check(c)
        # A range: §2–4, §2-4.
        if (match(s, /^(–|-)[0-9]+(\.[0-9]+)*/)) {
            c = substr(s, RSTART, RLENGTH)
            s = substr(s, RSTART + RLENGTH)
            sub(/^(–|-)/, "", c)
            check(c)
        }
        # A list: §3 and §4, §3, §4, §3 or §4.
        while (match(s, /^(,|,? and|,? or)[ \t]*§[ \t]*[0-9]+(\.[0-9]+)*/)) {
            c = substr(s, RSTART, RLENGTH)
            s = substr(s, RSTART + RLENGTH)
            sub(/^.*§[ \t]*/, "", c)
            check(c)
        }
    }
}
END {
    if (sections == 0) {
        printf "check_spec_refs: %s has no numbered headings\n", spec
        exit 1
    }
    if (bad) {
        printf "check_spec_refs: %d of %d citations of %s do not resolve\n", bad, cited, spec
        exit 1
    }
    printf "check_spec_refs: %d citations of %s, all resolve\n", cited, spec
}
' "$spec" "$@" "$spec"
