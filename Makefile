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
# CUDA (optional, docs/cuda.md): nvcc from PATH or the toolkit's usual place. Its builds go to
# build/cuda whatever BUILD is (the sanitizer build reuses them).
NVCC ?= $(shell command -v nvcc 2>/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_BUILD := build/cuda
CUDA_GENCODE ?= -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 \
                -gencode arch=compute_86,code=sm_86 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
NVFLAGS ?= -O3 -std=c++17 $(CUDA_GENCODE) -Xcompiler -Wall,-Wextra$(if $(OPENMP),$(comma)$(OPENMP))
comma := ,
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -lcudart -lstdc++ -lm
CUDA_TEST := $(if $(NVCC),$(CUDA_BUILD)/test_cuda)
# cuDNN for bench/cuda_bench.cu's conv reference, where present: inside the toolkit, or in
# CUDNN_HOME (include/cudnn.h and lib/libcudnn.so*, as Python's nvidia-cudnn package lays it out).
CUDNN_HOME ?= $(CUDA_HOME)
CUDNN_LIB = $(firstword $(wildcard $(CUDNN_HOME)/lib64/libcudnn.so $(CUDNN_HOME)/lib/libcudnn.so $(CUDNN_HOME)/lib/libcudnn.so.[0-9]))
CUDNN_FLAGS = $(if $(and $(wildcard $(CUDNN_HOME)/include/cudnn.h),$(CUDNN_LIB)),\
                -DHAVE_CUDNN -I$(CUDNN_HOME)/include -Xlinker $(CUDNN_LIB) -Xlinker -rpath=$(dir $(CUDNN_LIB)))
CUDA_BINS := $(CUDA_BUILD)/dlf_cuda.o $(CUDA_BUILD)/test_cuda $(CUDA_BUILD)/cuda_bench \
             $(CUDA_BUILD)/01b_matmul_cuda $(CUDA_BUILD)/mnist_cnn
LESSON_BINS  := $(patsubst %.c,$(BUILD)/%,$(LESSONS))
EXAMPLE_BINS := $(patsubst %.c,$(BUILD)/%,$(EXAMPLES))
TEST_BINS    := $(patsubst %.c,$(BUILD)/%,$(TESTS))

.PHONY: all help cuda test lessons lessons-build examples demo data debug asan bench fuzz clean reference portability
.SECONDARY:

# Build the library object, every lesson, example and test.
all: $(BUILD)/dlf.o $(LESSON_BINS) $(EXAMPLE_BINS) $(TEST_BINS)

# Each target's description is the last line of the comment right above it (a variable
# assignment may sit between).
# List the targets, one line each.
help:
	@echo "make TARGET, where TARGET is one of:"
	@awk '/^#/ { d = substr($$0, 3); next } /^[A-Z_]+ *[?:+]?=/ { next } \
	      /^[a-z][a-z-]*:/ && !/^[^:]*:=/ { if (d != "") printf "  %-13s %s\n", substr($$0, 1, index($$0, ":") - 1), d } \
	      { d = "" }' $(firstword $(MAKEFILE_LIST))

# dlf.c as a normal object file, for people who link a library instead of the header.
$(BUILD)/dlf.o: dlf.c dlf.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -c -o $@ dlf.c

$(BUILD)/%: %.c dlf.h $(wildcard tests/*.h lessons/*.h examples/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -o $@ $< $(LDLIBS)

# Run every test program plus the compile tests; last line "N passed, M failed".
# With nvcc installed, the CUDA tests run too (their GPU part skipped where there is no GPU).
test: $(TEST_BINS) $(EXAMPLE_BINS) $(CUDA_TEST)
	@CC="$(CC)" BUILD="$(BUILD)" NVCC_FOUND="$(NVCC)" bash tests/run.sh $(TEST_BINS) $(CUDA_TEST)

# Build and run every lesson in order; each prints its experiment's numbers.
lessons: $(LESSON_BINS)
	@for l in $(LESSON_BINS); do echo "=== $$l"; ./$$l || exit 1; done

# Build every lesson without running it.
lessons-build: $(LESSON_BINS)

# Build the example programs.
examples: $(EXAMPLE_BINS)

# The main job for a newcomer: fetch MNIST if missing (sha256-verified), train the course's
# CNN for 3 epochs, print its test accuracy and draw a few test digits beside its predictions.
# Fetch MNIST, train the course's CNN for 3 epochs and show some test digits with their predictions.
demo: $(BUILD)/examples/mnist_cnn
	bash tools/fetch_data.sh --only mnist data
	./$(BUILD)/examples/mnist_cnn --epochs 3 --show 6

# Fetch MNIST, Fashion-MNIST and the breast-cancer table (data/tabular/) into data/ and verify their sha256.
data:
	bash tools/fetch_data.sh data

# Regenerate the PyTorch reference fixtures in tests/ref/ (needs Debian's python3-torch; dlf's files
# are written with the AVX2 kernel, so any AVX2 machine can compare their bytes), in order:
# dlf writes its checkpoints to tests/ref/interop/ (tools/export_dlf.c), then PyTorch reads them
# and writes every fixture, its answers to dlf's files included (tools/gen_reference.py);
# then the schedulers' values (tools/gen_sched.py, tests/ref/sched/).
# Regenerate the PyTorch reference fixtures in tests/ref/ (needs Debian's python3-torch).
reference: $(BUILD)/tools/export_dlf
	@mkdir -p tests/ref/interop
	DLF_KERNEL=avx2-fma ./$(BUILD)/tools/export_dlf tests/ref/interop
	/usr/bin/python3 tools/gen_reference.py
	/usr/bin/python3 tools/gen_sched.py

# test_interop compiles tools/export_dlf.c in (it rebuilds the same checkpoints byte for byte).
$(BUILD)/tests/test_interop: tools/export_dlf.c

# test_learner runs the example program mnist_mlp (a stopped and resumed run against one run through).
$(BUILD)/tests/test_learner: $(BUILD)/examples/mnist_mlp

# -O0 -g3, no OpenMP: for stepping through lessons and tests in gdb.
debug:
	$(MAKE) BUILD=build/debug CFLAGS="-O0 -g3 -std=c99 -Wall -Wextra -pedantic" OPENMP= all

# Build the GPU side with nvcc (sm_75, sm_80, sm_86, sm_90 and PTX): dlf_cuda.o, the CUDA tests,
# the kernel benchmark, lesson 01b and mnist_cnn with --device cuda, all in build/cuda.
cuda:
ifeq ($(NVCC),)
	@echo "make cuda: nvcc not found (install the CUDA toolkit); the CPU library and everything else build without it"
else
	@$(MAKE) --no-print-directory $(CUDA_BINS)
endif

$(CUDA_BUILD)/dlf_cuda.o: dlf_cuda.cu dlf.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ dlf_cuda.cu

$(CUDA_BUILD)/test_cuda: tests/test_cuda.cu dlf_cuda.cu dlf.h tests/harness.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ tests/test_cuda.cu -lm

$(CUDA_BUILD)/cuda_bench: bench/cuda_bench.cu dlf_cuda.cu dlf.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ bench/cuda_bench.cu -lcublas $(CUDNN_FLAGS) -lm

$(CUDA_BUILD)/01b_matmul_cuda: lessons/01b_matmul_cuda.cu dlf_cuda.cu dlf.h lessons/lesson.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ lessons/01b_matmul_cuda.cu -lm

# The example as a C program with -DDLF_CUDA, linked with dlf_cuda.o: --device cuda.
$(CUDA_BUILD)/mnist_cnn: examples/mnist_cnn.c examples/example.h dlf.h $(CUDA_BUILD)/dlf_cuda.o
	$(CC) $(CFLAGS) $(OPENMP) -DDLF_CUDA -o $@ examples/mnist_cnn.c $(CUDA_BUILD)/dlf_cuda.o $(CUDA_LIBS)

# The tests under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -std=c99 -Wall -Wextra -pedantic -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# Targets: gcc, clang UBSan+integer, gcc -m32, AArch64 and s390x under qemu-user, mingw-w64
# under wine, tcc, -ffast-math (must be refused); about 10 minutes (tools/portability.sh).
# Run the tests on every target this machine reaches: one line each, passed/FAILED/skipped.
portability:
	@BUILD="$(BUILD)" bash tools/portability.sh

REF_UNSET = OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
TORCH_PY ?= /usr/bin/python3
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BENCH_MATMUL := $(BUILD)/bench/bench_matmul$(if $(filter yes,$(BLAS)),,_noblas)
BENCH_BINS := $(BENCH_MATMUL) $(BUILD)/bench/bench_conv $(BUILD)/bench/bench_allocs $(BUILD)/bench/peak_rss \
              $(BUILD)/examples/mnist_mlp $(BUILD)/examples/mnist_cnn
.PHONY: bench-deps

# Same-run benchmarks against OpenBLAS and PyTorch (docs/benchmarks.md): sgemm, the MNIST
# models' gemm shapes, conv layers, one epoch of each MNIST example, peak RSS, heap
# allocations per step and a busy machine. dlf and the reference alternate over BENCH_ROUNDS
# rounds (5) and the medians are compared, one line per case,
#   bench <case> dlf=<v><unit> ref=<v><unit> ratio=<dlf/ref> ref_kernel=<name>
# and the run goes at the top of bench/RESULTS.md (BENCH_RESULTS=FILE: elsewhere). A benchmark
# prints ratios, it never fails a build. The references run with OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset (an environment may hold OpenBLAS, and PyTorch's Linear layers, to
# older kernels), so they get the CPU's best kernels; only the reference commands lose them,
# never dlf, the tests or CI. Missing OpenBLAS or PyTorch: ref=n/a and the apt-get line.
# Benchmark dlf against OpenBLAS and PyTorch in one run (BENCH_QUICK=1: a short development run).
bench: $(BENCH_BINS)
	bash tools/fetch_data.sh --only mnist data
ifneq ($(BLAS),yes)
	@echo "bench: no OpenBLAS, so the gemm cases print ref=n/a; install it with"
	@echo "         $(SUDO) apt-get install libopenblas-dev     (or: make bench-deps)"
endif
	@if $(TORCH_PY) -c 'import torch' 2>/dev/null; then py=$(TORCH_PY); else py=python3; \
	    echo "bench: no PyTorch at $(TORCH_PY), so the conv and epoch cases print ref=n/a; install it with"; \
	    echo "         $(SUDO) apt-get install python3-torch     (or: make bench-deps)"; fi; \
	BENCH_BUILD="$(BUILD)" BENCH_MATMUL="$(BENCH_MATMUL)" BENCH_CC="$(CC)" BENCH_CFLAGS="$(CFLAGS) $(OPENMP)" \
	BENCH_REF_UNSET="$(REF_UNSET)" BENCH_TORCH_PY="$(TORCH_PY)" $$py bench/bench.py

# Install what `make bench` compares against (Debian/Ubuntu): OpenBLAS and PyTorch.
bench-deps:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y libopenblas-dev python3-torch

$(BUILD)/bench/bench_matmul: bench/bench_matmul.c dlf.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -DBENCH_BLAS -o $@ $< -lopenblas $(LDLIBS)

$(BUILD)/bench/bench_matmul_noblas: bench/bench_matmul.c dlf.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(OPENMP) -o $@ $< $(LDLIBS)

$(BUILD)/bench/peak_rss: bench/peak_rss.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $<

# libFuzzer + ASan + UBSan on each file loader, FUZZ_SECONDS each (default 60), seeded from tests/corpus:
# the byte-level safetensors and IDX targets, and the structure-aware safetensors one (its own
# mutator edits the JSON header as JSON: fuzz/fuzz_safetensors_struct.c), and the CSV reader.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = safetensors:st idx:idx safetensors_struct:sts csv:csv
fuzz:
	@mkdir -p $(BUILD)/fuzz/st $(BUILD)/fuzz/idx $(BUILD)/fuzz/sts $(BUILD)/fuzz/csv
	@for t in $(FUZZ_TARGETS); do name=$${t%%:*}; \
	    echo "clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_$$name fuzz/fuzz_$$name.c -lm"; \
	    clang -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_$$name fuzz/fuzz_$$name.c -lm || exit 1; \
	done
	cp tests/corpus/*.safetensors $(BUILD)/fuzz/st/
	cp tests/corpus/*.safetensors $(BUILD)/fuzz/sts/
	cp tests/corpus/*idx* tests/data/mnist-sub-test-labels-idx1-ubyte $(BUILD)/fuzz/idx/
	cp tests/corpus/csv-seed-* $(BUILD)/fuzz/csv/
	@for t in $(FUZZ_TARGETS); do \
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
