#!/usr/bin/env bash
# tools/portability.sh [--fast] [TARGET...]: builds dlf's tests for every target this
# machine can reach and runs them (`make portability`). Prints one line per target:
#   portability: <target>: passed (N checks in K programs)
#   portability: <target>: FAILED: <first failure>
#   portability: <target>: skipped: <reason>
# and exits 1 when a target failed (skipped targets do not fail the run).
#
#   --fast    CI's subset: the header compiles warning-free on each target, and only
#             test_core, test_data and test_safetensors run (a few minutes in all)
#   TARGET    run only these (names as printed: gcc, clang-ubsan, gcc-m32, aarch64,
#             s390x, mingw-wine, tcc, fast-math)
#
# Toolchains (Debian 12): gcc-12-multilib (NOT gcc-multilib, which conflicts with the
# cross compilers; the script points -m32 at the amd64 asm headers itself),
# gcc-aarch64-linux-gnu, gcc-s390x-linux-gnu, qemu-user, gcc-mingw-w64-x86-64, wine64, tcc.
# Do not install linux-libc-dev:i386: it removes the native toolchain.
# Logs: $BUILD/portability/<target>/log (BUILD defaults to build).
set -u
cd "$(dirname "$0")/.."
mode=full
only=()
for a in "$@"; do
    case $a in --fast) mode=fast ;; -h|--help) sed -n '2,18p' "$0"; exit 0 ;; *) only+=("$a") ;; esac
done
BUILD=${BUILD:-build}
root=$BUILD/portability
mkdir -p "$root"
if [ "$mode" = fast ]; then
    tests=(tests/test_core.c tests/test_data.c tests/test_safetensors.c)
else
    tests=(tests/test_*.c)
fi
TIMEOUT=${PORTABILITY_TIMEOUT:-1800}   # seconds per test program (s390x test_train is slow)
strict="-std=c99 -Wall -Wextra -pedantic -Werror"
any_failed=0

printf '#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(void){ return dlf_version_string()[0] == 0; }\n' > "$root/impl.c"

wanted() {  # target name -> 0 when it should run
    [ ${#only[@]} -eq 0 ] && return 0
    local t; for t in "${only[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}
report() { echo "portability: $1: $2"; }

# run_target NAME CC "CFLAGS" "RUNNER" "SELF" [EXT]
#   CC: the compiler command (may hold flags); CFLAGS: for the tests; RUNNER: a command
#   put before each test program (an emulator), SELF: DLF_TEST_EXEC for tests that start
#   themselves again; EXT: the executable suffix (.exe).
run_target() {
    local name=$1 cc=$2 cflags=$3 runner=$4 self=$5 ext=${6:-}
    local dir=$root/$name log t base exe out line p f first=""
    local passed=0 failed=0 progs=0
    dir=$root/$name; log=$dir/log
    rm -rf "$dir"; mkdir -p "$dir"; : > "$log"
    # 1. the header alone, warning-free
    if ! $cc $strict -I. -c "$root/impl.c" -o "$dir/impl.o" >>"$log" 2>&1; then
        report "$name" "FAILED: the header does not compile warning-free: $(grep -m1 -E 'error|warning' "$log")"
        any_failed=1; return
    fi
    # 2. every test program
    for t in "${tests[@]}"; do
        base=$(basename "$t" .c); exe=$dir/$base$ext
        echo "== build $base" >>"$log"
        if ! $cc $cflags -I. -o "$exe" "$t" -lm >>"$log" 2>&1; then
            failed=$((failed + 1))
            [ -n "$first" ] || first="$base does not build: $(grep -m1 -E 'error' "$log")"
            continue
        fi
        echo "== run $base" >>"$log"
        out=$(DLF_TEST_EXEC="$self" timeout "$TIMEOUT" $runner "$exe" 2>&1)
        printf '%s\n' "$out" >>"$log"
        progs=$((progs + 1))
        line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
        if [ -z "$line" ]; then
            failed=$((failed + 1))
            [ -n "$first" ] || first="$base crashed or printed no summary: $(printf '%s\n' "$out" | grep -m1 -E 'runtime error|FAIL|rror|timeout' || printf '%s\n' "$out" | tail -n 1)"
            continue
        fi
        p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        passed=$((passed + p)); failed=$((failed + f))
        if [ -z "$first" ]; then
            first=$(printf '%s\n' "$out" | grep -m1 -E '^(FAIL|UNEXPECTED)|runtime error' || true)
            [ -n "$first" ] && first="$base: $first"
        fi
    done
    if [ "$failed" -eq 0 ] && [ -z "$first" ]; then
        report "$name" "passed ($passed checks in $progs programs)"
    else
        any_failed=1
        report "$name" "FAILED ($passed passed, $failed failed): ${first:-see $log} [log: $log]"
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }
omp_ok() { printf 'int main(void){return 0;}' | $1 -fopenmp -x c - -o "$root/omp_probe" 2>/dev/null; }  # OpenMP links

# native gcc, as `make test` builds (OpenMP when the compiler has it)
if wanted gcc; then
    if have gcc; then
        omp=; omp_ok gcc && omp=-fopenmp
        run_target gcc gcc "-O2 -march=native -std=c99 -Wall -Wextra $omp" "" ""
    else report gcc "skipped: gcc is not installed"; fi
fi

# clang with UndefinedBehaviorSanitizer plus -fsanitize=integer (unsigned wraparound,
# implicit conversions): any report stops the program
if wanted clang-ubsan; then
    if have clang && printf 'int main(void){return 0;}' | clang -fsanitize=undefined,integer -x c - -o /dev/null 2>/dev/null; then
        UBSAN_OPTIONS=print_stacktrace=1 \
        run_target clang-ubsan clang "-O1 -g -std=c99 -Wall -Wextra -fsanitize=undefined,integer -fno-sanitize-recover=all -fno-omit-frame-pointer" "" ""
    else report clang-ubsan "skipped: clang with -fsanitize=undefined,integer is not installed"; fi
fi

# x86-32: x87 arithmetic (FLT_EVAL_METHOD 2), 32-bit pointers and size_t
if wanted gcc-m32; then
    m32=""
    if [ ! -e /usr/include/asm ] && [ -d /usr/include/x86_64-linux-gnu/asm ]; then
        # gcc-multilib only adds this link; it conflicts with the cross compilers, so make our own
        mkdir -p "$root/m32inc"; ln -sfn /usr/include/x86_64-linux-gnu/asm "$root/m32inc/asm"
        m32="-isystem $root/m32inc"
    fi
    if have gcc && printf '#include <errno.h>\n#include <math.h>\nint main(void){return 0;}' | gcc -m32 $m32 -x c - -o "$root/m32probe" -lm 2>/dev/null; then
        omp=; omp_ok "gcc -m32" && omp=-fopenmp
        run_target gcc-m32 "gcc -m32 $m32" "-O2 -std=c99 -Wall -Wextra $omp" "" ""
    else report gcc-m32 "skipped: gcc -m32 cannot link (apt-get install gcc-12-multilib)"; fi
fi

# cross targets under qemu-user: AArch64 (little-endian, 64-bit) and s390x (big-endian,
# FLT_EVAL_METHOD 1 under gcc 12)
cross() {  # name triplet qemu
    local name=$1 tri=$2 q=$3 omp=
    wanted "$name" || return 0
    if ! have "$tri-gcc"; then report "$name" "skipped: $tri-gcc is not installed (apt-get install gcc-$tri)"; return; fi
    if ! have "$q"; then report "$name" "skipped: $q is not installed (apt-get install qemu-user)"; return; fi
    omp_ok "$tri-gcc" && omp=-fopenmp
    run_target "$name" "$tri-gcc" "-O2 -std=c99 -Wall -Wextra $omp" "$q -L /usr/$tri" "$q -L /usr/$tri"
}
cross aarch64 aarch64-linux-gnu qemu-aarch64
cross s390x s390x-linux-gnu qemu-s390x

# Windows: mingw-w64 and wine (a save must replace an existing file there too)
if wanted mingw-wine; then
    WINE=$(command -v wine64 || ls /usr/lib/wine/wine64 2>/dev/null || true)
    if ! have x86_64-w64-mingw32-gcc; then report mingw-wine "skipped: x86_64-w64-mingw32-gcc is not installed (apt-get install gcc-mingw-w64-x86-64)"
    elif [ -z "$WINE" ]; then report mingw-wine "skipped: wine64 is not installed (apt-get install wine64)"
    else
        omp=; omp_ok "x86_64-w64-mingw32-gcc -static" && omp="-fopenmp -static"   # libgomp linked in
        WINEDEBUG=-all \
        run_target mingw-wine x86_64-w64-mingw32-gcc "-O2 -std=c99 -Wall -Wextra $omp" "$WINE" "" .exe
    fi
fi

# tcc: no thread-local storage, no OpenMP, no SIMD
if wanted tcc; then
    if have tcc; then run_target tcc tcc "-Wall" "" ""
    else report tcc "skipped: tcc is not installed (apt-get install tcc)"; fi
fi

# -ffast-math must be refused with dlf's message, and accepted with DLF_ALLOW_FAST_MATH
if wanted fast-math; then
    if ! have gcc; then report fast-math "skipped: gcc is not installed"
    else
        mkdir -p "$root/fast-math"
        if gcc -ffast-math -I. -c "$root/impl.c" -o "$root/fast-math/a.o" 2>"$root/fast-math/log"; then
            any_failed=1; report fast-math "FAILED: -ffast-math was accepted without DLF_ALLOW_FAST_MATH"
        elif ! grep -q 'dlf: -ffast-math' "$root/fast-math/log"; then
            any_failed=1; report fast-math "FAILED: refused, but not with dlf's message: $(head -n 1 "$root/fast-math/log")"
        elif ! gcc $strict -ffast-math -DDLF_ALLOW_FAST_MATH -I. -c "$root/impl.c" -o "$root/fast-math/b.o" 2>>"$root/fast-math/log"; then
            any_failed=1; report fast-math "FAILED: DLF_ALLOW_FAST_MATH does not compile warning-free"
        else
            report fast-math "passed (refused with dlf's #error; compiles with DLF_ALLOW_FAST_MATH)"
        fi
    fi
fi
exit $any_failed
