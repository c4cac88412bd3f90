# dlf - deep learning from the foundations. `make help` lists the targets.
CC ?= cc
# Optimized build: the flags every program here is built with by default.
CFLAGS ?= -O3 -march=native -std=c99 -Wall -Wextra -pedantic
LDLIBS = -lm
BUILD ?= build

# OpenMP is used when the compiler has it; without it dlf runs on one thread.
OMP_FOUND := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
OPENMP ?= $(OMP_FOUND)
ifeq ($(OMP_FOUND),)
$(info dlf: $(CC) has no OpenMP; building single-threaded)
endif
# OpenBLAS is optional: only the side-by-side benchmark links it.
BLAS := $(shell printf 'int main(void){return 0;}' | $(CC) -include cblas.h -x c - -lopenblas -o /dev/null 2>/dev/null && echo yes)

LESSONS  := $(sort $(wildcard lessons/*.c))
EXAMPLES := $(sort $(wildcard examples/*.c))
TESTS    := $(sort $(wildcard tests/test_*.c))
LESSON_BINS  := $(patsubst %.c,$(BUILD)/%,$(LESSONS))
EXAMPLE_BINS := $(patsubst %.c,$(BUILD)/%,$(EXAMPLES))
TEST_BINS    := $(patsubst %.c,$(BUILD)/%,$(TESTS))

.PHONY: all help test lessons lessons-build examples demo data debug asan bench fuzz clean reference portability
.SECONDARY:

# Build the library object, every lesson, example and test.
all: $(BUILD)/dlf.o $(LESSON_BINS) $(EXAMPLE_BINS) $(TEST_BINS)

help:
	@grep -B1 -E '^[a-z-]+:' Makefile | grep -E '^#' | sed 's/^# //'

# dlf.c as a normal object file, for people who link a library instead of the header.
$(BUILD)/dlf.o: dlf.c dlf.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -c -o $@ dlf.c

$(BUILD)/%: %.c dlf.h $(wildcard tests/*.h lessons/*.h examples/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -o $@ $< $(LDLIBS)

# Run every test program plus the compile tests; last line "N passed, M failed".
test: $(TEST_BINS)
	@CC="$(CC)" BUILD="$(BUILD)" bash tests/run.sh $(TEST_BINS)

# Build and run every lesson in order; each prints its experiment's numbers.
lessons: $(LESSON_BINS)
	@for l in $(LESSON_BINS); do echo "=== $$l"; ./$$l || exit 1; done

lessons-build: $(LESSON_BINS)

# Build the example programs.
examples: $(EXAMPLE_BINS)

# The main job for a newcomer: fetch MNIST if missing (sha256-verified), train the course's
# CNN for 3 epochs, print its test accuracy and draw a few test digits beside its predictions.
demo: $(BUILD)/examples/mnist_cnn
	bash tools/fetch_data.sh --only mnist data
	./$(BUILD)/examples/mnist_cnn --epochs 3 --show 6

# Fetch MNIST and Fashion-MNIST into data/ and verify their sha256.
data:
	bash tools/fetch_data.sh data

# Regenerate the PyTorch reference fixtures in tests/ref/ (needs Debian's python3-torch), in order:
# dlf writes its checkpoints to tests/ref/interop/ (tools/export_dlf.c), then PyTorch reads them
# and writes every fixture, its answers to dlf's files included (tools/gen_reference.py);
# then the schedulers' values (tools/gen_sched.py, tests/ref/sched/).
reference: $(BUILD)/tools/export_dlf
	@mkdir -p tests/ref/interop
	./$(BUILD)/tools/export_dlf tests/ref/interop
	/usr/bin/python3 tools/gen_reference.py
	/usr/bin/python3 tools/gen_sched.py

# test_interop compiles tools/export_dlf.c in (it rebuilds the same checkpoints byte for byte).
$(BUILD)/tests/test_interop: tools/export_dlf.c

# test_learner runs the example program mnist_mlp (a stopped and resumed run against one run through).
$(BUILD)/tests/test_learner: $(BUILD)/examples/mnist_mlp

# -O0 -g3, no OpenMP: for stepping through lessons and tests in gdb.
debug:
	$(MAKE) BUILD=build/debug CFLAGS="-O0 -g3 -std=c99 -Wall -Wextra -pedantic" OPENMP= all

# The tests under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -std=c99 -Wall -Wextra -pedantic -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# Targets: gcc, clang UBSan+integer, gcc -m32, AArch64 and s390x under qemu-user, mingw-w64
# under wine, tcc, -ffast-math (must be refused); about 10 minutes (tools/portability.sh).
# Run the tests on every target this machine reaches: one line each, passed/FAILED/skipped.
portability:
	@BUILD="$(BUILD)" bash tools/portability.sh

# Side-by-side benchmarks: matmul vs OpenBLAS (needs libopenblas-dev), one conv layer vs
# PyTorch (needs Debian's python3-torch); a benchmark prints ratios, it never fails a build.
# The references run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (the environment may
# hold OpenBLAS, and PyTorch's Linear, to AVX2 kernels): they get the CPU's best kernel.
# Only these reference commands unset them, never the tests.
REF_ENV = env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1
TORCH_PY ?= /usr/bin/python3
bench:
	@mkdir -p $(BUILD)/bench
ifeq ($(BLAS),yes)
	$(CC) $(CFLAGS) $(OPENMP) -o $(BUILD)/bench/bench_matmul bench/bench_matmul.c -lopenblas $(LDLIBS)
	$(REF_ENV) ./$(BUILD)/bench/bench_matmul
else
	@echo "dlf: OpenBLAS not found (apt-get install libopenblas-dev); skipping the matmul comparison"
endif
	$(CC) $(CFLAGS) $(OPENMP) -o $(BUILD)/bench/bench_conv bench/bench_conv.c $(LDLIBS)
	@for th in 1 2; do \
	    ./$(BUILD)/bench/bench_conv $$th; \
	    if $(TORCH_PY) -c 'import torch' 2>/dev/null; then $(REF_ENV) $(TORCH_PY) bench/torch_conv.py $$th; \
	    else echo "(no PyTorch at $(TORCH_PY): apt-get install python3-torch for the comparison)"; fi; \
	done

# libFuzzer + ASan + UBSan on each file loader, FUZZ_SECONDS each (default 60), seeded from tests/corpus.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p $(BUILD)/fuzz/st $(BUILD)/fuzz/idx
	clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_safetensors fuzz/fuzz_safetensors.c -lm
	clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_idx fuzz/fuzz_idx.c -lm
	cp tests/corpus/*.safetensors $(BUILD)/fuzz/st/
	cp tests/corpus/*idx* tests/data/mnist-sub-test-labels-idx1-ubyte $(BUILD)/fuzz/idx/
	@for t in safetensors:st idx:idx; do \
	    name=$${t%%:*}; dir=$${t#*:}; log=$(BUILD)/fuzz/$$name.log; \
	    echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	    ./$(BUILD)/fuzz/fuzz_$$name -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/crash-$$name- $(BUILD)/fuzz/$$dir > $$log 2>&1 \
	        || { tail -n 40 $$log; echo "fuzz: $$name FAILED (see $$log)"; exit 1; }; \
	    grep -E 'stat::number_of_executed_units|Done' $$log | tail -n 2; \
	done

# Remove every build output (data/ stays).
clean:
	rm -rf $(BUILD) build
