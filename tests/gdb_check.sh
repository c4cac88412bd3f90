#!/usr/bin/env bash
# Checks the gdb pretty-printers in tools/dlf_gdb.py: builds tests/gdb_fixture.c at
# -O0 -g3, stops it in gdb at dlf_gdb_stop_here(), prints its known objects and greps
# the output. One line per check; the last line is "N passed, M failed" (the format
# tests/run.sh adds up). Without gdb (or gdb without Python, or where the process
# cannot be traced) it prints "0 passed, 0 failed" and says why it skipped.
# Run from the repository root: bash tests/gdb_check.sh
set -u
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-cc}
skip() {
    echo "skipped: $1"
    echo "gdb check: 0 passed, 0 failed (1 skipped)"
    exit 0
}
command -v gdb >/dev/null 2>&1 || skip "gdb not found"
gdb -batch -ex 'python print("py-ok")' 2>/dev/null | grep -q py-ok || skip "this gdb has no Python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! $CC -O0 -g3 -std=c99 -Wall -Wextra -pedantic -o "$tmp/gdb_fixture" tests/gdb_fixture.c -lm 2>"$tmp/cc.err"; then
    echo "FAIL [gdb] tests/gdb_fixture.c does not compile:"; head -n 10 "$tmp/cc.err"
    echo "gdb check: 0 passed, 1 failed"
    exit 1
fi

timeout 120 gdb -nx -batch -x tools/gdbinit \
    -ex 'break dlf_gdb_stop_here' -ex run -ex up \
    -ex 'echo @@p*a\n' -ex 'p *a' \
    -ex 'echo @@pa\n' -ex 'p a' \
    -ex 'echo @@big\n' -ex 'p *big' \
    -ex 'echo @@null\n' -ex 'p null_t' \
    -ex 'echo @@bad\n' -ex 'p bad_t' \
    -ex 'echo @@garbage\n' -ex 'p *(dlf_tensor *)a_values' \
    -ex 'echo @@tape\n' -ex 'p tape' \
    -ex 'echo @@node\n' -ex 'p tape.nodes[0]' \
    -ex 'echo @@rng\n' -ex 'p rng' \
    -ex 'echo @@seq\n' -ex 'p seq' \
    -ex 'echo @@loss\n' -ex 'p *loss' \
    -ex 'echo @@dlfprint\n' -ex 'dlf-print a' \
    -ex 'echo @@dlfprint8\n' -ex 'dlf-print big 8' \
    -ex 'echo @@floats\n' -ex 'dlf-print a->data 4' \
    -ex 'echo @@edge1\n' -ex 'set dlf-edgeitems 1' -ex 'p *big' -ex 'set dlf-edgeitems 3' \
    -ex 'echo @@raw\n' -ex 'p/r *a' \
    -ex 'echo @@frame\n' -ex 'break dlf_tensor_free' -ex continue \
    -ex 'echo @@end\n' -ex kill \
    "$tmp/gdb_fixture" >"$tmp/out" 2>&1
out=$(cat "$tmp/out")

if ! grep -q '^Breakpoint 1, dlf_gdb_stop_here' "$tmp/out"; then
    if grep -qiE 'ptrace|Operation not permitted|Could not trace' "$tmp/out"; then
        skip "gdb cannot trace a process here (ptrace not permitted)"
    fi
    echo "FAIL [gdb] the fixture never reached dlf_gdb_stop_here; gdb said:"; tail -n 15 "$tmp/out"
    echo "gdb check: 0 passed, 1 failed"
    exit 1
fi

passed=0
failed=0
# section NAME: the lines gdb printed between "@@NAME" and the next "@@" marker
section() { printf '%s\n' "$out" | awk -v s="@@$1" '$0 == s {on = 1; next} /^@@/ {on = 0} on'; }
check() {  # description, section, fixed string expected in it
    if section "$2" | grep -qF -- "$3"; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: expected '$3' in:"; section "$2" | head -n 8 | sed 's/^/     | /'
    fi
}
check "p *a: header, shape, requires_grad, values" 'p*a' '$1 = dlf_tensor "a" (2, 3) requires_grad [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]'
check "p *a: the gradient as a child"             'p*a' 'grad = [[3.0, 7.0, 11.0], [3.0, 7.0, 11.0]]'
check "p a: a pointer looks through"              'pa'  '-> dlf_tensor "a" (2, 3) requires_grad'
check "p a: data as a child"                      'pa'  'data = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]'
check "p *big: long dims truncated with ..."      'big' 'dlf_tensor (100,) [0.0, 1.0, 2.0, ..., 97.0, 98.0, 99.0]'
check "NULL pointer"                              'null' '= 0x0'
check "garbage pointer: <unreadable>"             'bad' '= 0x10 <unreadable>'
check "garbage struct: <invalid ...>"             'garbage' '<invalid dlf_tensor: ndim='
check "tape summary"                              'tape' 'dlf_tape: 2 nodes, 512 bytes in use (peak 512), grad on'
check "tape children list the nodes"              'tape' '#0 = matmul out (2, 2) <- in0 (2, 3) "a", in1 (3, 2) "w"'
check "tape second node"                          'tape' '#1 = sum out () <- in0 (2, 2)'
check "node"                                      'node' '= matmul out (2, 2) <- in0 (2, 3) "a", in1 (3, 2) "w"'
check "rng state, compact"                        'rng' '= dlf_rng {s = '
check "seq and its layers"                        'seq' '0 = linear weight (4, 3) bias (4,)'
check "0-dim tensor"                              'loss' 'dlf_tensor () requires_grad 163.0'
check "dlf-print: header with flags"              'dlfprint' 'dlf_tensor "a" (2, 3) requires_grad  size 6, heap'
check "dlf-print: rows on their own lines"        'dlfprint' '      [4.0, 5.0, 6.0]]'
check "dlf-print: grad"                           'dlfprint' 'grad [[3.0, 7.0, 11.0],'
check "dlf-print EXPR N: N values per dim"        'dlfprint8' '[0.0, 1.0, 2.0, 3.0, ..., 96.0, 97.0, 98.0, 99.0]'
check "dlf-print on a float pointer"              'floats' ': [1.0, 2.0, 3.0, 4.0]'
check "set dlf-edgeitems 1"                       'edge1' 'dlf_tensor (100,) [0.0, ..., 99.0]'
check "p/r bypasses the printers"                 'raw' 'shape = {2, 3, 1, 1}'
check "frame line: tensor argument short, {...}"  'frame' 'dlf_tensor_free (t=0x'
check "frame line: children elided"               'frame' 'requires_grad = {...})'
# tools/gdbinit from another directory: it finds dlf_gdb.py next to itself
mkdir -p "$tmp/elsewhere"
repo=$PWD
(cd "$tmp/elsewhere" && timeout 120 gdb -nx -batch -x "$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1]))' "$repo/tools/gdbinit" 2>/dev/null || echo "$repo/tools/gdbinit")" \
    -ex 'break dlf_gdb_stop_here' -ex run -ex up -ex 'echo @@elsewhere\n' -ex 'p *a' -ex kill \
    ../gdb_fixture) >"$tmp/out2" 2>&1
out=$(cat "$tmp/out" "$tmp/out2")
check "gdb -x <relative path>/tools/gdbinit from another directory" 'elsewhere' '$1 = dlf_tensor "a" (2, 3) requires_grad'
if grep -q 'Python Exception' "$tmp/out"; then
    failed=$((failed + 1)); echo "FAIL a printer raised:"; grep -A2 'Python Exception' "$tmp/out" | head -n 6
else
    passed=$((passed + 1)); echo "ok   no Python exceptions"
fi
echo "gdb check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
