/* 01b_matmul_cuda.cu - the matmul ladder on a GPU (the companion of 01_matmul.c; the
   docs page is docs/cuda.md).

   What it shows
     Seven ways to compute C = A B on an NVIDIA GPU, each a rung of dlf_cuda.cu:
       naive      one thread per output, a warp walks down a column: uncoalesced
       coalesced  a warp walks along a row: one memory transaction per warp access
       shared     32x32 tiles staged in shared memory: 32x fewer global reads
       block1d    each thread 8 outputs of a column: more arithmetic per shared read
       block2d    each thread an 8x8 block: 64 multiply-adds per 16 shared reads
       vec4       128-bit loads and a transposed A tile
       tf32       tensor cores (TF32 inputs, FP32 sums; compute capability 8.0+)
     For each rung on an N x N product it prints the median time of a few runs (CUDA
     events), GFLOP/s, the speedup over naive and the max |difference| from the CPU's
     naive result on a 1024 x 1024 product (the CPU reference takes a few seconds).
     bench/cuda_bench.cu puts each rung beside cuBLAS.

   Usage:  make cuda && ./build/cuda/01b_matmul_cuda [--n N]     (default N = 2048)
   Without a GPU it says so and exits: the kernels are still readable in dlf_cuda.cu,
   and tests/test_cuda.cu checks their index arithmetic on the CPU.

   In cuda-gdb (on a GPU machine): break dlf_cu_block2d, then `info cuda threads` and
   `p acc_r` in one thread; `cuda block (1,0,0) thread (5,0,0)` switches threads. */
#define DLF_IMPLEMENTATION
#include "../dlf_cuda.cu"
#include <algorithm>
#include <vector>

static double median_ms(dlf_cuda *c, int kernel, int n, const float *A, const float *B, float *C, int *rc)
{
    std::vector<float> t;
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    *rc = dlf_cuda_gemm_device(c, kernel, 0, 0, n, n, n, A, B, C, 0);   /* warm-up */
    cudaDeviceSynchronize();
    for (int r = 0; r < 5 && *rc == DLF_OK; r++) {
        float ms = 0.0f;
        cudaEventRecord(a);
        *rc = dlf_cuda_gemm_device(c, kernel, 0, 0, n, n, n, A, B, C, 0);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (t.empty()) return 0.0;
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main(int argc, char **argv)
{
    int n = 2048, nc = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) n = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--n N]\n", argv[0]); return 2; }
    }
    if (n < 1) n = 2048;
    dlf_cuda *c = NULL;
    if (dlf_cuda_init(&c, 0) != DLF_OK) {
        printf("no GPU here: %s\n", dlf_last_error());
        return 0;
    }
    printf("device: %s\n", dlf_cuda_device_name(c));
    size_t nn = (size_t)n * n, ncc = (size_t)nc * nc;
    std::vector<float> hA(nn), hB(nn), ref(ncc), got(ncc);
    dlf_rng r;
    dlf_rng_seed(&r, 1);
    for (size_t i = 0; i < nn; i++) { hA[i] = dlf_rng_uniform(&r) - 0.5f; hB[i] = dlf_rng_uniform(&r) - 0.5f; }
    /* the reference: the top-left nc x nc product, on the CPU, with the naive rung */
    {
        std::vector<float> a(ncc), b(ncc);
        for (int i = 0; i < nc; i++)
            for (int j = 0; j < nc; j++) { a[(size_t)i * nc + j] = hA[(size_t)i * n + j]; b[(size_t)i * nc + j] = hB[(size_t)i * n + j]; }
        dlf_gemm_naive(0, 0, nc, nc, nc, a.data(), b.data(), ref.data(), 0);
        hA.swap(a);   /* hA, hB hold the nc x nc inputs now; the big ones are refilled below */
        hB.swap(b);
    }
    float *A, *B, *C, *a1, *b1, *c1;
    if (!CUDA_CHECK(cudaMalloc((void **)&A, nn * 4)) || !CUDA_CHECK(cudaMalloc((void **)&B, nn * 4)) ||
        !CUDA_CHECK(cudaMalloc((void **)&C, nn * 4)) || !CUDA_CHECK(cudaMalloc((void **)&a1, ncc * 4)) ||
        !CUDA_CHECK(cudaMalloc((void **)&b1, ncc * 4)) || !CUDA_CHECK(cudaMalloc((void **)&c1, ncc * 4))) {
        printf("%s\n", dlf_last_error());
        return 1;
    }
    cudaMemcpy(a1, hA.data(), ncc * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(b1, hB.data(), ncc * 4, cudaMemcpyHostToDevice);
    cudaMemset(A, 0, nn * 4);   /* timing does not depend on the values */
    cudaMemset(B, 0, nn * 4);
    printf("C = A B, %d x %d (timing) and %d x %d (checked against the CPU's naive rung)\n\n", n, n, nc, nc);
    printf("%-10s %10s %10s %9s %12s\n", "rung", "ms", "GFLOP/s", "speedup", "max |diff|");
    double naive_ms = 0.0, flop = 2.0 * n * (double)n * n;
    for (int k = 0; k < DLF_CUDA_KERNEL_COUNT; k++) {
        int rc;
        if (k == DLF_CUDA_TF32 && dlf_cuda_set_kernel(c, k) != DLF_OK) {
            printf("%-10s (needs compute capability 8.0)\n", dlf_cuda_kernel_name(k));
            continue;
        }
        double ms = median_ms(c, k, n, A, B, C, &rc);
        if (rc != DLF_OK) { printf("%-10s failed: %s\n", dlf_cuda_kernel_name(k), dlf_last_error()); continue; }
        if (k == 0) naive_ms = ms;
        dlf_cuda_gemm_device(c, k, 0, 0, nc, nc, nc, a1, b1, c1, 0);
        cudaMemcpy(got.data(), c1, ncc * 4, cudaMemcpyDeviceToHost);
        printf("%-10s %10.3f %10.0f %8.1fx %12.2e\n", dlf_cuda_kernel_name(k), ms, flop / (ms * 1e6), naive_ms / ms,
               (double)dlf_max_abs_diff_n(got.data(), ref.data(), (int)ncc));
    }
    printf("\n(tf32 rounds each input to 10 mantissa bits: its difference is larger by design.)\n");
    cudaFree(A); cudaFree(B); cudaFree(C); cudaFree(a1); cudaFree(b1); cudaFree(c1);
    dlf_cuda_free(c);
    return 0;
}
