/* cuda_bench.cu - the GPU matmul ladder against cuBLAS, conv2d against cuDNN.

   usage: cuda_bench [--quick] [--out FILE]
   For N = 256, 512, 1024, 2048, 4096 (square, row-major, C = A B) each rung of
   dlf_cuda.cu's ladder and cublasSgemm are timed with CUDA events (two warm-up calls,
   then repeats until 0.2 s or 20 calls; the median call), one line per case:
       cuda gemm N=<n> kernel=<name> gflops=<x> cublas_gflops=<y> ratio=<x/y>
   then the course's CNN layers, forward, dlf (im2col + the vec4 gemm) against cuDNN's
   fastest forward algorithm where the build found cuDNN (-DHAVE_CUDNN):
       cuda conv <shape> dlf_ms=<x> cudnn_ms=<y> ratio=<y/x>
   Without a GPU it prints one line saying so and exits 0. --out FILE also writes the
   lines to FILE. */
#define DLF_IMPLEMENTATION
#include <stdarg.h>
#include "../dlf_cuda.cu"
#include <cublas_v2.h>
#ifdef HAVE_CUDNN
#include <cudnn.h>
#endif
#include <algorithm>
#include <vector>

static FILE *out_file;

static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (out_file) {
        va_start(ap, fmt);
        vfprintf(out_file, fmt, ap);
        va_end(ap);
        fflush(out_file);
    }
    fflush(stdout);
}

/* Median milliseconds of fn() over repeats, timed with events. */
template <typename F>
static double time_ms(F fn, int max_reps)
{
    cudaEvent_t a, b;
    std::vector<float> t;
    float total = 0.0f;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    fn();
    fn();
    cudaDeviceSynchronize();
    for (int r = 0; r < max_reps && (r < 3 || total < 200.0f); r++) {
        float ms = 0.0f;
        cudaEventRecord(a);
        fn();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
        total += ms;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

static void fill(float *d, size_t n, unsigned seed)
{
    std::vector<float> h(n);
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) h[i] = dlf_rng_uniform(&r) - 0.5f;
    cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_file = fopen(argv[++i], "w");
        else { fprintf(stderr, "usage: %s [--quick] [--out FILE]\n", argv[0]); return 2; }
    }
    dlf_cuda *c = NULL;
    if (dlf_cuda_init(&c, 0) != DLF_OK) {
        emit("cuda_bench: skipped, no GPU: %s\n", dlf_last_error());
        return 0;
    }
    emit("cuda_bench: device %s\n", dlf_cuda_device_name(c));
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        emit("cuda_bench: cublasCreate failed\n");
        return 1;
    }
    static const int sizes[] = {256, 512, 1024, 2048, 4096};
    for (int si = 0; si < 5; si++) {
        int n = sizes[si];
        if (quick && n > 1024) break;
        size_t nn = (size_t)n * n;
        float *A, *B, *C;
        if (!CUDA_CHECK(cudaMalloc((void **)&A, nn * 4)) || !CUDA_CHECK(cudaMalloc((void **)&B, nn * 4)) ||
            !CUDA_CHECK(cudaMalloc((void **)&C, nn * 4))) {
            emit("cuda_bench: %s\n", dlf_last_error());
            return 1;
        }
        fill(A, nn, 1);
        fill(B, nn, 2);
        const float one = 1.0f, zero = 0.0f;
        /* row-major C = A B is column-major C^T = B^T A^T: cuBLAS gets B first */
        double ms_ref = time_ms([&] { cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, B, n, A, n, &zero, C, n); }, 20);
        double flop = 2.0 * n * (double)n * n;
        double ref = flop / (ms_ref * 1e6);
        for (int k = 0; k < DLF_CUDA_KERNEL_COUNT; k++) {
            if (k == DLF_CUDA_TF32 && dlf_cuda_set_kernel(c, k) != DLF_OK) {
                emit("cuda gemm N=%d kernel=%s skipped: %s\n", n, dlf_cuda_kernel_name(k), dlf_last_error());
                continue;
            }
            int rc = DLF_OK;
            double ms = time_ms([&] { rc |= dlf_cuda_gemm_device(c, k, 0, 0, n, n, n, A, B, C, 0); }, 20);
            if (rc != DLF_OK) {
                emit("cuda gemm N=%d kernel=%s failed: %s\n", n, dlf_cuda_kernel_name(k), dlf_last_error());
                continue;
            }
            double g = flop / (ms * 1e6);
            emit("cuda gemm N=%d kernel=%s gflops=%.0f cublas_gflops=%.0f ratio=%.3f%s\n", n, dlf_cuda_kernel_name(k), g,
                 ref, g / ref, k == DLF_CUDA_TF32 ? " (tf32 inputs vs fp32 cuBLAS)" : "");
        }
        cudaFree(A);
        cudaFree(B);
        cudaFree(C);
    }
    cublasDestroy(h);

    /* conv layers: the course's MNIST CNN at batch 256, plus a wider ResNet-like layer */
    static const int convs[][7] = {   /* N C H W K R stride (pad R/2) */
        {256, 1, 28, 28, 8, 5, 2}, {256, 8, 14, 14, 16, 3, 2}, {256, 16, 7, 7, 32, 3, 2}, {128, 64, 28, 28, 64, 3, 1}};
    for (int ci = 0; ci < 4; ci++) {
        int N = convs[ci][0], C = convs[ci][1], H = convs[ci][2], W = convs[ci][3], K = convs[ci][4], R = convs[ci][5];
        int stride = convs[ci][6], pad = R / 2;
        int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - R) / stride + 1;
        dlf_rng rng;
        dlf_rng_seed(&rng, 4);
        int xs[4] = {N, C, H, W}, ws[4] = {K, C, R, R};
        dlf_tensor *x = dlf_tensor_randn(4, xs, &rng), *w = dlf_tensor_randn(4, ws, &rng);
        std::vector<float> y((size_t)N * K * P * Q);
        int rc = DLF_OK;
        /* host in, host out: what dlf_conv2d on a tape pays (x uploaded, w resident) */
        double ms = time_ms([&] { rc |= dlf_cuda_conv2d_forward(c, x, w, stride, pad, y.data()); }, 10);
        char shape[96];
        snprintf(shape, sizeof shape, "x=%dx%dx%dx%d w=%dx%dx%dx%d s%d", N, C, H, W, K, C, R, R, stride);
        if (rc != DLF_OK) {
            emit("cuda conv %s failed: %s\n", shape, dlf_last_error());
            continue;
        }
#ifdef HAVE_CUDNN
        {
            cudnnHandle_t dn;
            cudnnTensorDescriptor_t xd, yd;
            cudnnFilterDescriptor_t wd;
            cudnnConvolutionDescriptor_t cd;
            float *dx, *dw, *dy, *ws_ = NULL;
            size_t wsb = 0;
            int found = 0;
            cudnnConvolutionFwdAlgoPerf_t perf[8];
            cudnnCreate(&dn);
            cudnnCreateTensorDescriptor(&xd);
            cudnnCreateTensorDescriptor(&yd);
            cudnnCreateFilterDescriptor(&wd);
            cudnnCreateConvolutionDescriptor(&cd);
            cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W);
            cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, K, P, Q);
            cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, K, C, R, R);
            cudnnSetConvolution2dDescriptor(cd, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
            cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);   /* fp32, as dlf's vec4 */
            cudaMalloc((void **)&dx, (size_t)x->size * 4);
            cudaMalloc((void **)&dw, (size_t)w->size * 4);
            cudaMalloc((void **)&dy, y.size() * 4);
            cudaMemcpy(dx, x->data, (size_t)x->size * 4, cudaMemcpyHostToDevice);
            cudaMemcpy(dw, w->data, (size_t)w->size * 4, cudaMemcpyHostToDevice);
            cudnnGetConvolutionForwardAlgorithm_v7(dn, xd, wd, cd, yd, 8, &found, perf);
            cudnnGetConvolutionForwardWorkspaceSize(dn, xd, wd, cd, yd, perf[0].algo, &wsb);
            if (wsb) cudaMalloc((void **)&ws_, wsb);
            const float one = 1.0f, zero = 0.0f;
            /* the same host-in, host-out work as dlf's call: x up, y down */
            double ms_ref = time_ms([&] {
                cudaMemcpy(dx, x->data, (size_t)x->size * 4, cudaMemcpyHostToDevice);
                cudnnConvolutionForward(dn, &one, xd, dx, wd, dw, cd, perf[0].algo, ws_, wsb, &zero, yd, dy);
                cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost);
            }, 10);
            emit("cuda conv %s dlf_ms=%.3f cudnn_ms=%.3f ratio=%.3f\n", shape, ms, ms_ref, ms_ref / ms);
            cudaFree(dx); cudaFree(dw); cudaFree(dy);
            if (ws_) cudaFree(ws_);
            cudnnDestroyTensorDescriptor(xd);
            cudnnDestroyTensorDescriptor(yd);
            cudnnDestroyFilterDescriptor(wd);
            cudnnDestroyConvolutionDescriptor(cd);
            cudnnDestroy(dn);
        }
#else
        emit("cuda conv %s dlf_ms=%.3f cudnn_ms=n/a (built without cuDNN)\n", shape, ms);
#endif
        dlf_tensor_free(x);
        dlf_tensor_free(w);
    }
    dlf_cuda_free(c);
    if (out_file) fclose(out_file);
    return 0;
}
