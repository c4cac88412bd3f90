#!/usr/bin/env bash
# Checks that docs/api.md documents dlf.h's public interface, both ways:
#   - every function declared with DLFDEF in dlf.h has an entry in docs/api.md (a table row
#     whose first cell starts with `dlf_name`, or a "- `dlf_name`" list item);
#   - every public type (typedef ... dlf_name;) and struct dlf_name has an entry too;
#   - every entry, and every dlf_ name the descriptions mention, is a function or type that
#     dlf.h still declares; no name has two entries.
# One line per problem, then "api doc: N passed, M failed" (the format tests/run.sh adds up);
# exit status 1 when anything is missing or stale.
# Usage: bash tools/check_api.sh [dlf.h [docs/api.md]]   (from anywhere; paths default to the repository's)
set -u
export LC_ALL=C   # one collation for sort and comm
root=$(cd "$(dirname "$0")/.." && pwd)
header=${1:-$root/dlf.h}
doc=${2:-$root/docs/api.md}
for f in "$header" "$doc"; do
    if [ ! -f "$f" ]; then
        echo "FAIL [api] $f does not exist"
        echo "api doc: 0 passed, 1 failed"
        exit 1
    fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The declarations part of dlf.h: everything before the implementation's first stage.
awk '/^\/\/ >>stage0_config \(implementation\)/ { exit } { print }' "$header" > "$tmp/decl"

# Public functions: "DLFDEF <type> <name>(" with the name on the same line.
grep -E '^DLFDEF\b' "$tmp/decl" | sed -E 's/\(.*//' | grep -oE '\bdlf_[A-Za-z0-9_]+$' | sort -u > "$tmp/functions"
# Public types: typedef'd names (struct, enum and function-pointer typedefs) and named structs.
{
    grep -oE '\}[[:space:]]*dlf_[A-Za-z0-9_]+;' "$tmp/decl" | grep -oE 'dlf_[A-Za-z0-9_]+'
    grep -oE '^typedef[^;]*[[:space:]*]dlf_[A-Za-z0-9_]+;' "$tmp/decl" | grep -oE 'dlf_[A-Za-z0-9_]+;$' | tr -d ';'
    grep -oE '^typedef[^;(]*\(\*dlf_[A-Za-z0-9_]+\)' "$tmp/decl" | grep -oE 'dlf_[A-Za-z0-9_]+'
    grep -oE '^struct dlf_[A-Za-z0-9_]+[[:space:]]*\{' "$tmp/decl" | grep -oE 'dlf_[A-Za-z0-9_]+'
} | grep -v '^dlf__' | sort -u > "$tmp/types"
if [ ! -s "$tmp/functions" ]; then
    echo "FAIL [api] found no DLFDEF function in $header"
    echo "api doc: 0 passed, 1 failed"
    exit 1
fi

# The doc's entries: the first backticked name of a table row ("| `dlf_x` |" or
# "| `dlf_x(...)` |") or of a list item ("- `dlf_x`").
grep -E '^(\|[[:space:]]*|[-*][[:space:]]+)`(struct[[:space:]]+)?dlf_[A-Za-z0-9_]+' "$doc" \
    | sed -E 's/^(\|[[:space:]]*|[-*][[:space:]]+)`(struct[[:space:]]+)?//' \
    | grep -oE '^dlf_[A-Za-z0-9_]+' | sort > "$tmp/entries_all"
sort -u "$tmp/entries_all" > "$tmp/entries"

passed=0
failed=0
report() {  # file of names, message
    local n
    n=$(wc -l < "$1" | tr -d ' ')
    if [ "$n" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL [api] $2 ($n):"
        sed 's/^/  /' "$1" | head -n 40
    fi
}
comm -23 "$tmp/functions" "$tmp/entries" > "$tmp/missing_f"
report "$tmp/missing_f" "functions declared in dlf.h without an entry in docs/api.md"
comm -23 "$tmp/types" "$tmp/entries" > "$tmp/missing_t"
report "$tmp/missing_t" "types declared in dlf.h without an entry in docs/api.md"
sort -u "$tmp/functions" "$tmp/types" > "$tmp/known"
comm -13 "$tmp/known" "$tmp/entries" > "$tmp/stale"
report "$tmp/stale" "entries in docs/api.md that dlf.h does not declare (renamed or removed?)"
# Names in the descriptions too ("as `dlf_svg_lines`"): each must still be declared.
grep -oE '\bdlf_[A-Za-z0-9_]+' "$doc" | grep -v -e '^dlf__' -e '_$' | sort -u | comm -23 - "$tmp/known" > "$tmp/stale_text"
report "$tmp/stale_text" "names mentioned in docs/api.md that dlf.h does not declare"
uniq -d "$tmp/entries_all" > "$tmp/dups"
report "$tmp/dups" "names with more than one entry in docs/api.md"
echo "api doc: $(wc -l < "$tmp/functions" | tr -d ' ') functions and $(wc -l < "$tmp/types" | tr -d ' ') types checked"
echo "api doc: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
