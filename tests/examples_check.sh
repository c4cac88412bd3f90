#!/usr/bin/env bash
# examples_check.sh - what a user of examples/ and lessons/ sees first (make test runs it):
#   - every example runs one epoch on the MNIST subset in tests/data (--subset) and its last
#     line keeps the contract `test_accuracy=0.XXXX epochs=N train_seconds=S`;
#   - pointed at a missing data directory, each says so and exits non-zero;
#   - every lesson compiles as strict C99 with warnings as errors.
# The examples come from $BUILD/examples (the Makefile builds them before the tests).
# Ends with "N passed, M failed" like the test programs.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL [examples] $*"; }
contract='^test_accuracy=[01]\.[0-9]{4} epochs=[0-9]+ train_seconds=[0-9]+\.[0-9]{2}$'

for run in "mnist_mlp --subset --epochs 1" "mnist_cnn --subset --epochs 1" "mnist_cnn --subset --epochs 1 --bn" \
           "fashion_cnn --subset --epochs 1" "fashion_resnet --subset --epochs 1 --limit 256 --tta"; do
    set -- $run
    exe=$BUILD/examples/$1
    shift
    if [ ! -x "$exe" ]; then bad "$exe is not built"; continue; fi
    out=$("$exe" "$@" 2>&1); rc=$?
    last=$(printf '%s\n' "$out" | tail -n 1)
    if [ $rc -eq 0 ] && [[ $last =~ $contract ]]; then ok; else
        bad "$run: exit $rc, last line '$last'"; printf '%s\n' "$out" | tail -n 5
    fi
done

for run in "mnist_cnn --data" "fashion_resnet --data" "tabular --data"; do
    set -- $run
    exe=$BUILD/examples/$1
    [ -x "$exe" ] || { bad "$exe is not built"; continue; }
    out=$("$exe" "$2" no-such-dir/data.csv 2>&1); rc=$?
    if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'no-such-dir'; then ok; else
        bad "$run no-such-dir: exit $rc, and the message does not name the path:"; printf '%s\n' "$out" | tail -n 3
    fi
done

for l in lessons/*.c; do
    if err=$($CC -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only -I. "$l" 2>&1); then ok; else
        bad "$l does not compile warning-free:"; printf '%s\n' "$err" | head -n 5
    fi
done
echo "tests/examples_check.sh: $passed passed, $failed failed"
