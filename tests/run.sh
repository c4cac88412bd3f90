#!/usr/bin/env bash
# Runs the compile tests and every test program given as arguments, adds up their
# "N passed, M failed" lines and ends with the total. Exit status 1 on any failure.
set -u
CC=${CC:-cc}
BUILD=${BUILD:-build}
passed=0
failed=0
skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Compile tests: the header must build cleanly in every flavour a user may pick.
printf '#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(void){ return dlf_version_string()[0] == 0; }\n' > "$tmp/impl.c"
printf '#define DLF_STATIC\n#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(void){ return dlf_version_string()[0] == 0; }\n' > "$tmp/static.c"
printf '#define DLFDEF static inline\n#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(void){ return dlf_version_string()[0] == 0; }\n' > "$tmp/userdef.c"
printf '#define DLF_NO_STDIO\n#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(void){ return dlf_version_string()[0] == 0; }\n' > "$tmp/nostdio.c"
compile() {  # name, command...
    local name=$1; shift
    if ! command -v "$1" >/dev/null 2>&1; then   # a compiler this machine lacks: skipped, not passed
        skipped=$((skipped + 1))
        echo "SKIP [compile] $name: $1 is not installed"
        return
    fi
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL [compile] $name"; echo "$out" | head -n 10
    fi
}
strict="-std=c99 -Wall -Wextra -pedantic -Werror"
compile "gcc c99 strict"        gcc   $strict -I. -c "$tmp/impl.c" -o "$tmp/a.o"
compile "gcc c99 strict openmp" gcc   $strict -fopenmp -O2 -march=native -I. -c "$tmp/impl.c" -o "$tmp/b.o"
compile "clang c99 strict"      clang $strict -I. -c "$tmp/impl.c" -o "$tmp/c.o"
compile "g++ as C++"            g++ -x c++ -Wall -Wextra -Werror -I. -c "$tmp/impl.c" -o "$tmp/d.o"
compile "DLF_STATIC gcc"        gcc   $strict -I. -c "$tmp/static.c" -o "$tmp/e.o"
compile "DLF_STATIC clang"      clang $strict -I. -c "$tmp/static.c" -o "$tmp/e2.o"
compile "DLFDEF predefined"     gcc   $strict -I. -c "$tmp/userdef.c" -o "$tmp/e3.o"
compile "no OpenMP, no SIMD"    gcc   $strict -DDLF_NO_SIMD -O2 -I. -c "$tmp/impl.c" -o "$tmp/f.o"
compile "dlf.c library object"  gcc   $strict -c dlf.c -o "$tmp/g.o"
compile "DLF_NO_STDIO"          gcc   $strict -I. -c "$tmp/nostdio.c" -o "$tmp/h.o"
compile "DLF_CUDA (the C side)"  gcc   $strict -DDLF_CUDA -I. -c "$tmp/impl.c" -o "$tmp/h2.o"
compile "clang++ as C++"        clang -x c++ -Wall -Wextra -Werror -I. -c "$tmp/impl.c" -o "$tmp/i.o"
compile "gcc c11 strict"        gcc   -std=c11 -Wall -Wextra -pedantic -Werror -I. -c "$tmp/impl.c" -o "$tmp/j.o"
compile "tcc"                   tcc   -Wall -I. -c "$tmp/impl.c" -o "$tmp/k.o"
compile "-ffast-math with DLF_ALLOW_FAST_MATH" gcc $strict -ffast-math -DDLF_ALLOW_FAST_MATH -I. -c "$tmp/impl.c" -o "$tmp/l.o"

# The README's example: its first C block compiles (C99, strict) and prints what its result
# comment says; with the lines of its C++ block in place of the line that makes the parameters
# from compound literals, it compiles with g++ -O2 and prints the same. (Not -Werror there: at -O1
# and above g++ 12 warns about its own immintrin.h, _mm512_reduce_add_ps, in C++ only.)
awk '/^```c$/ { n++; on = (n == 1); next } /^```/ { on = 0 } on' README.md > "$tmp/readme.c"
awk '/^```cpp$/ { on = 1; next } /^```/ { on = 0 } on' README.md > "$tmp/readme_cpp_lines"
awk -v f="$tmp/readme_cpp_lines" '/dlf_param_new\(.*\(int\[\]\)/ { while ((getline l < f) > 0) print "    " l; next } { print }' \
    "$tmp/readme.c" > "$tmp/readme.cpp"
want=$(grep -oE '/\* w = [^*]*\*/' "$tmp/readme.c" | sed -E 's|/\* (.*) \*/|\1|')
if [ ! -s "$tmp/readme.c" ] || [ -z "$want" ]; then
    failed=$((failed + 1)); echo "FAIL [readme] no C example with a '/* w = ... */' result comment found in README.md"
elif ! gcc $strict -O2 -I. -o "$tmp/readme" "$tmp/readme.c" -lm 2>"$tmp/readme.err"; then
    failed=$((failed + 1)); echo "FAIL [readme] the README's C example does not compile:"; head -n 10 "$tmp/readme.err"
elif [ "$("$tmp/readme")" != "$want" ]; then
    failed=$((failed + 1)); echo "FAIL [readme] the README's C example printed '$("$tmp/readme")', its comment says '$want'"
else
    passed=$((passed + 1))
fi
if ! command -v g++ >/dev/null 2>&1; then
    skipped=$((skipped + 1)); echo "SKIP [readme] the C++ form: g++ is not installed"
elif cmp -s "$tmp/readme.c" "$tmp/readme.cpp"; then
    failed=$((failed + 1)); echo "FAIL [readme] the README's C++ lines found nothing to replace in its C example"
elif ! g++ -x c++ -O2 -Wall -Wextra -I. -o "$tmp/readme_cpp" "$tmp/readme.cpp" 2>"$tmp/readme.err"; then
    failed=$((failed + 1)); echo "FAIL [readme] the README's C++ form does not compile:"; head -n 10 "$tmp/readme.err"
elif [ "$("$tmp/readme_cpp")" != "$want" ]; then
    failed=$((failed + 1)); echo "FAIL [readme] the README's C++ form printed '$("$tmp/readme_cpp")', the comment says '$want'"
else
    passed=$((passed + 1))
fi

# -ffast-math silently breaks NaN checks, so the header refuses it with a message.
if gcc -ffast-math -I. -c "$tmp/impl.c" -o "$tmp/m.o" 2>"$tmp/fm.err"; then
    failed=$((failed + 1)); echo "FAIL [compile] -ffast-math was accepted without DLF_ALLOW_FAST_MATH"
elif grep -q 'dlf: -ffast-math' "$tmp/fm.err"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); echo "FAIL [compile] -ffast-math refused, but not with dlf's message:"; head -n 5 "$tmp/fm.err"
fi

# A build without OpenMP must give the same numbers: run the core tests in it too.
if [ -f tests/test_core.c ]; then
    if gcc -O2 -march=native -std=c99 -o "$tmp/test_core_noomp" tests/test_core.c -lm 2>"$tmp/err"; then
        set -- "$@" "$tmp/test_core_noomp"
    else
        failed=$((failed + 1)); echo "FAIL [compile] test_core without OpenMP"; head "$tmp/err"
    fi
fi

# tcc (no thread-local storage, no OpenMP, no SIMD): the core and data tests in it too.
if command -v tcc >/dev/null 2>&1; then
    for t in core data; do
        if tcc -I. -o "$tmp/test_${t}_tcc" tests/test_$t.c -lm 2>"$tmp/err"; then
            set -- "$@" "$tmp/test_${t}_tcc"
        else
            failed=$((failed + 1)); echo "FAIL [compile] test_$t with tcc"; head "$tmp/err"
        fi
    done
else
    skipped=$((skipped + 1)); echo "SKIP [tcc] test_core, test_data: tcc is not installed"
fi

# Windows, when a mingw-w64 cross compiler and wine are installed (Debian:
# gcc-mingw-w64-x86-64, wine64): the header compiles without warnings, and the
# core and file tests run (a save must replace an existing file there too).
WINE=$(command -v wine64 || ls /usr/lib/wine/wine64 2>/dev/null || true)
if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && [ -n "$WINE" ]; then
    compile "mingw-w64 c99 strict" x86_64-w64-mingw32-gcc $strict -I. -c "$tmp/impl.c" -o "$tmp/w.o"
    for t in core safetensors; do
        if x86_64-w64-mingw32-gcc -O2 -std=c99 -I. -o "$tmp/test_${t}.exe" tests/test_$t.c -lm 2>"$tmp/err"; then
            printf '#!/bin/sh\nWINEDEBUG=-all exec "%s" "%s"\n' "$WINE" "$tmp/test_${t}.exe" > "$tmp/test_${t}_wine"
            chmod +x "$tmp/test_${t}_wine"
            set -- "$@" "$tmp/test_${t}_wine"
        else
            failed=$((failed + 1)); echo "FAIL [compile] test_$t with mingw-w64"; head "$tmp/err"
        fi
    done
else
    skipped=$((skipped + 1)); echo "SKIP [windows] mingw-w64 or wine64 is not installed"
fi

# Every micro-kernel this CPU runs, not only the one dlf picks: the PyTorch fixtures again
# under each other kernel (test_core and test_layers loop over the kernels themselves).
printf '#define DLF_IMPLEMENTATION\n#include "dlf.h"\nint main(int c, char **v){ (void)c; return !dlf_kernel_available(v[1]); }\n' > "$tmp/kprobe.c"
if $CC -O1 -I. -o "$tmp/kprobe" "$tmp/kprobe.c" -lm 2>/dev/null; then
    best=portable
    for k in avx2-fma avx512; do "$tmp/kprobe" $k && best=$k; done
    for k in portable avx2-fma avx512; do
        [ "$k" = "$best" ] && continue
        if ! "$tmp/kprobe" $k; then
            skipped=$((skipped + 1)); echo "SKIP [kernel $k] not compiled in or not supported by this CPU"
            continue
        fi
        for t in test_reference test_ref_norm_optim; do
            [ -x "$BUILD/tests/$t" ] || continue
            case $BUILD in /*) exe=$BUILD/tests/$t ;; *) exe=$PWD/$BUILD/tests/$t ;; esac
            printf '#!/bin/sh\necho "kernel %s"\nDLF_KERNEL=%s exec "%s"\n' "$k" "$k" "$exe" > "$tmp/${t}_$k"
            chmod +x "$tmp/${t}_$k"
            set -- "$@" "$tmp/${t}_$k"
        done
    done
fi

# The CUDA tests (tests/test_cuda.cu) come as an argument when nvcc is installed; they count
# their GPU checks as skipped on a machine without a GPU.
if [ -z "${NVCC_FOUND:-}" ]; then
    skipped=$((skipped + 1)); echo "SKIP [cuda] tests/test_cuda.cu: nvcc is not installed"
fi

# The gdb pretty-printers (tools/dlf_gdb.py): checked in a real gdb session, or skipped.
set -- "$@" tests/gdb_check.sh

# docs/api.md lists every public function and type of dlf.h, and nothing that is gone.
set -- "$@" tools/check_api.sh

# The examples' last-line contract and error messages, and the lessons compiling cleanly.
set -- "$@" tests/examples_check.sh

for t in "$@"; do
    case $t in /*) exe=$t ;; *) exe=./$t ;; esac
    out=$("$exe" 2>&1 || true)
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))
        echo "FAIL [$t] crashed or printed no summary:"; printf '%s\n' "$out" | tail -n 15
        continue
    fi
    printf '%s\n' "$out" | grep -E '^(FAIL|UNEXPECTED|SKIP|  )' | head -n 40
    p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    echo "  $line"
    case $line in *skipped*) skipped=$((skipped + $(echo "$line" | sed -E 's/.* ([0-9]+) skipped.*/\1/'))) ;; esac
    passed=$((passed + p))
    failed=$((failed + f))
done
# skipped checks (each printed a SKIP line with its reason) are neither passed nor failed
[ "$skipped" -gt 0 ] && echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
