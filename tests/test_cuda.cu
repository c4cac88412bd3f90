/* test_cuda.cu - dlf_cuda.cu against the CPU.

   Two parts:
   * on every machine (no GPU needed): the index arithmetic the kernels use, written as
     __host__ __device__ functions, against the obvious loops (tile coverage, loads,
     im2col, col2im); and the fallback: where dlf_cuda_init fails, it fails with
     DLF_ERR_DEVICE and a message, and a training step gives the CPU's numbers bit for bit;
   * on a GPU: every rung of the matmul ladder against dlf_gemm_naive on awkward sizes
     and every transpose flag; conv2d forward and both gradients against the CPU; one
     CNN training step on the device against the same step on the CPU. Without a GPU each
     of these prints "SKIP ... (reason)" and counts as skipped, never as passed.

   Built by `make cuda` (nvcc), run by `make test` when nvcc is present. */
#define DLF_IMPLEMENTATION
#include "../dlf_cuda.cu"
#include "harness.h"

static int skipped;

/* C++ has no compound literals: shape lists come from this small holder instead. */
struct shp {
    int d[4];
    shp(int a, int b = 1, int c = 1, int e = 1) { d[0] = a; d[1] = b; d[2] = c; d[3] = e; }
    operator const int *() const { return d; }
};
static char skip_reason[512];

#define SKIP(what) do { skipped++; printf("SKIP [cuda] %s: %s\n", (what), skip_reason); } while (0)

/* ---- host part: index arithmetic ---- */

static void test_operand_index(void)
{
    GROUP("index: op(A), op(B)");
    int bad = 0;
    for (int M = 1; M <= 5; M++)
        for (int K = 1; K <= 5; K++)
            for (int i = 0; i < M; i++)
                for (int k = 0; k < K; k++) {
                    /* A (M,K) row-major; its transpose stored (K,M) holds A[i][k] at [k][i] */
                    if (dlf_cu_at_a(0, M, K, i, k) != (size_t)(i * K + k)) bad++;
                    if (dlf_cu_at_a(1, M, K, i, k) != (size_t)(k * M + i)) bad++;
                    if (dlf_cu_at_b(0, M, K, i, k) != (size_t)(i * K + k)) bad++;  /* B (K=M rows, N=K cols) */
                    if (dlf_cu_at_b(1, M, K, i, k) != (size_t)(k * M + i)) bad++;
                }
    CHECK(bad == 0, "%d operand indices wrong", bad);
}

/* Every element of a rows x cols tile is loaded exactly once per tile by `threads`
   threads making rows*cols/threads loads each. */
static void test_load_slots(void)
{
    static const int cfg[][3] = {{64, 8, 512}, {8, 64, 512}, {128, 8, 256}, {8, 128, 256}, {64, 8, 128}, {8, 64, 128}};
    GROUP("index: tile loads");
    for (unsigned t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        int rows = cfg[t][0], cols = cfg[t][1], threads = cfg[t][2], loads = rows * cols / threads;
        int *hit = (int *)calloc((size_t)rows * cols, sizeof(int)), bad = 0;
        for (int tid = 0; tid < threads; tid++)
            for (int s = 0; s < loads; s++) {
                int r, c;
                dlf_cu_load_slot(tid, s, threads, cols, &r, &c);
                if (r < 0 || r >= rows || c < 0 || c >= cols) bad++;
                else hit[r * cols + c]++;
            }
        for (int e = 0; e < rows * cols; e++) bad += hit[e] != 1;
        CHECK(bad == 0 && rows * cols % threads == 0, "tile %dx%d with %d threads: %d slots wrong", rows, cols, threads, bad);
        free(hit);
    }
}

/* The 2-D register blocking covers C exactly once for awkward sizes: simulate the grid
   on the CPU with the kernel's own mapping and its bounds test. */
static void test_thread_tiles(void)
{
    static const int sizes[] = {1, 7, 33, 129, 1000};
    GROUP("index: thread tiles cover C once");
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
            int M = sizes[a], N = sizes[b], bad = 0;
            int *hit = (int *)calloc((size_t)M * N, sizeof(int));
            for (int bm = 0; bm < (M + DLF_CU_BM - 1) / DLF_CU_BM; bm++)
                for (int bn = 0; bn < (N + DLF_CU_BN - 1) / DLF_CU_BN; bn++)
                    for (int tid = 0; tid < DLF_CU_B2_THREADS; tid++) {
                        int row0, col0;
                        dlf_cu_thread_tile(tid, DLF_CU_BN, DLF_CU_TM, DLF_CU_TN, &row0, &col0);
                        for (int i = 0; i < DLF_CU_TM; i++)
                            for (int j = 0; j < DLF_CU_TN; j++) {
                                int gi = bm * DLF_CU_BM + row0 + i, gj = bn * DLF_CU_BN + col0 + j;
                                if (gi < M && gj < N) hit[(size_t)gi * N + gj]++;
                            }
                    }
            for (int e = 0; e < M * N; e++) bad += hit[e] != 1;
            CHECK(bad == 0, "C (%d,%d): %d elements not written exactly once", M, N, bad);
            free(hit);
        }
}

/* im2col's source index against dlf_im2col (the CPU's), and the col2im gather against a
   scatter-add of the same col, for stride/pad combinations. */
static void test_conv_index(void)
{
    static const int cfg[][8] = {   /* N C H W R S stride pad */
        {2, 3, 7, 5, 3, 3, 1, 1}, {1, 2, 8, 8, 5, 5, 2, 2}, {2, 1, 9, 6, 3, 2, 2, 0},
        {1, 4, 4, 4, 1, 1, 1, 0}, {3, 2, 5, 7, 3, 3, 3, 1}, {1, 1, 6, 6, 4, 4, 2, 1}};
    dlf_rng r;
    dlf_rng_seed(&r, 7);
    GROUP("index: im2col and col2im");
    for (unsigned t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        int N = cfg[t][0], C = cfg[t][1], H = cfg[t][2], W = cfg[t][3], R = cfg[t][4], S = cfg[t][5];
        int stride = cfg[t][6], pad = cfg[t][7];
        int P = (H + 2 * pad - R) / stride + 1, Q = (W + 2 * pad - S) / stride + 1;
        long long CRS = (long long)C * R * S, NPQ = (long long)N * P * Q;
        size_t nx = (size_t)N * C * H * W;
        float *x = (float *)malloc(nx * sizeof(float)), *col = (float *)malloc((size_t)(CRS * NPQ) * sizeof(float));
        float *dcol = (float *)malloc((size_t)(CRS * NPQ) * sizeof(float));
        float *dx_ref = (float *)calloc(nx, sizeof(float)), *dx = (float *)calloc(nx, sizeof(float));
        int bad = 0;
        for (size_t e = 0; e < nx; e++) x[e] = dlf_rng_normal(&r);
        dlf_im2col(x, N, C, H, W, R, S, stride, pad, col);
        for (long long e = 0; e < CRS * NPQ; e++) {
            long long src = dlf_cu_im2col_src(e / NPQ, e % NPQ, C, H, W, R, S, stride, pad, P, Q);
            float v = src < 0 ? 0.0f : x[src];
            bad += v != col[e];
            dcol[e] = dlf_rng_normal(&r);
        }
        CHECK(bad == 0, "im2col case %u: %d entries differ from dlf_im2col", t, bad);
        /* scatter: every col entry adds into the pixel it read */
        for (long long e = 0; e < CRS * NPQ; e++) {
            long long src = dlf_cu_im2col_src(e / NPQ, e % NPQ, C, H, W, R, S, stride, pad, P, Q);
            if (src >= 0) dx_ref[src] += dcol[e];
        }
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++) {
                        float sum = dlf_cu_col2im_gather(dcol, NPQ, n, c, h, w, R, S, stride, pad, P, Q);
                        dx[(((size_t)n * C + c) * H + h) * W + w] = sum;
                    }
        CHECK_CLOSE(dx, dx_ref, (int)nx, 1e-5f, 1e-5f, "col2im gather vs scatter");
        free(x); free(col); free(dcol); free(dx_ref); free(dx);
    }
}

/* ---- a small CNN step, on whatever the tape runs on ---- */

typedef struct cnn { dlf_tensor *w1, *b1, *w2, *fc; } cnn;

static void cnn_make(cnn *m, uint64_t seed)
{
    dlf_rng r;
    dlf_rng_seed(&r, seed);
    m->w1 = dlf_param_new(4, shp(8, 1, 5, 5));
    m->b1 = dlf_param_new(1, shp(8));
    m->w2 = dlf_param_new(4, shp(16, 8, 3, 3));
    m->fc = dlf_param_new(2, shp(16 * 7 * 7, 10));
    dlf_fill_normal(m->w1, &r, 0.0f, 0.2f);
    dlf_fill_normal(m->b1, &r, 0.0f, 0.1f);
    dlf_fill_normal(m->w2, &r, 0.0f, 0.1f);
    dlf_fill_normal(m->fc, &r, 0.0f, 0.05f);
}

static void cnn_free(cnn *m)
{
    dlf_tensor_free(m->w1); dlf_tensor_free(m->b1); dlf_tensor_free(m->w2); dlf_tensor_free(m->fc);
}

/* Two SGD steps on a fixed batch of 16 28x28 images; returns the second loss. */
static float cnn_steps(dlf_tape *t, cnn *m, const dlf_tensor *x, const dlf_tensor *y)
{
    dlf_tensor *params[4] = {m->w1, m->b1, m->w2, m->fc};
    dlf_optim_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.lr = 0.05f;
    cfg.momentum = 0.9f;
    dlf_optim *o = dlf_optim_create(DLF_OPTIM_SGD, params, 4, &cfg);
    float loss_v = 0.0f;
    for (int step = 0; step < 2; step++) {
        dlf_tape_reset(t);
        dlf_optim_zero_grad(o);
        dlf_tensor *h = dlf_relu(t, dlf_conv2d(t, (dlf_tensor *)x, m->w1, m->b1, 2, 2));   /* (16,8,14,14) */
        h = dlf_relu(t, dlf_conv2d(t, h, m->w2, NULL, 2, 1));                           /* (16,16,7,7) */
        h = dlf_reshape(t, h, 2, shp(16, 16 * 7 * 7));
        dlf_tensor *logits = dlf_matmul(t, h, m->fc);
        dlf_tensor *loss = dlf_cross_entropy(t, logits, (dlf_tensor *)y);
        if (!loss) return NAN;   /* a device failure: the caller's comparison fails */
        loss_v = loss->data[0];
        dlf_backward(t, loss);
        dlf_optim_step(o);
    }
    dlf_optim_free(o);
    return loss_v;
}

static void batch_make(dlf_tensor **x, dlf_tensor **y)
{
    dlf_rng r;
    dlf_rng_seed(&r, 3);
    *x = dlf_tensor_randn(4, shp(16, 1, 28, 28), &r);
    *y = dlf_tensor_new1(16);
    for (int i = 0; i < 16; i++) (*y)->data[i] = (float)(i % 10);
}

/* Where init fails: a clean code and message, and the CPU's numbers unchanged. */
static void test_fallback(int have_gpu)
{
    GROUP("fallback");
    if (have_gpu) {
        skipped++;
        printf("SKIP [cuda] fallback without a GPU: this machine has one\n");
        return;
    }
    dlf_cuda *c = (dlf_cuda *)&c;   /* must be set to NULL */
    int rc = dlf_cuda_init(&c, 0);
    CHECK(rc == DLF_ERR_DEVICE && c == NULL, "dlf_cuda_init without a GPU: rc %d", rc);
    CHECK(strstr(dlf_last_error(), "dlf_cuda_init") != NULL && strstr(dlf_last_error(), "GPU") != NULL,
          "message: %s", dlf_last_error());
    /* a training step with the context refused equals one that never asked */
    dlf_tensor *x, *y;
    batch_make(&x, &y);
    cnn a, b;
    cnn_make(&a, 11);
    cnn_make(&b, 11);
    dlf_tape ta, tb;
    dlf_tape_init(&ta);
    dlf_tape_init(&tb);
    float la = cnn_steps(&ta, &a, x, y);
    CHECK(dlf_tape_set_cuda(&tb, c) == DLF_OK && tb.cuda == NULL, "attaching the NULL context");
    float lb = cnn_steps(&tb, &b, x, y);
    CHECK(la == lb && memcmp(a.fc->data, b.fc->data, (size_t)a.fc->size * sizeof(float)) == 0 &&
              memcmp(a.w1->data, b.w1->data, (size_t)a.w1->size * sizeof(float)) == 0,
          "CPU results changed after a failed init (%g vs %g)", la, lb);
    CHECK(dlf_cuda_gemm(NULL, 0, 0, 0, 1, 1, 1, x->data, x->data, y->data, 0) == DLF_ERR_ARG,
          "a NULL context is refused");
    dlf_tape_destroy(&ta);
    dlf_tape_destroy(&tb);
    cnn_free(&a);
    cnn_free(&b);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

/* ---- GPU part ---- */

static void test_gemm_ladder(dlf_cuda *c)
{
    static const int sizes[] = {1, 7, 33, 129, 1000};
    dlf_rng r;
    dlf_rng_seed(&r, 5);
    GROUP("gpu: matmul ladder");
    for (int kern = 0; kern < DLF_CUDA_KERNEL_COUNT; kern++) {
        if (kern == DLF_CUDA_TF32 && dlf_cuda_set_kernel(c, kern) != DLF_OK) {
            snprintf(skip_reason, sizeof skip_reason, "%.200s: %.200s", dlf_cuda_device_name(c), dlf_last_error());
            SKIP("tf32 kernel");
            continue;
        }
        /* TF32 rounds inputs to 10 mantissa bits: a looser, stated tolerance */
        float atol = kern == DLF_CUDA_TF32 ? 2e-2f : 1e-3f, rtol = kern == DLF_CUDA_TF32 ? 1e-2f : 1e-4f;
        int fails = 0, cases = 0;
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
                for (int k = 0; k < 5; k++) {
                    int M = sizes[a], N = sizes[b], K = sizes[k];
                    if ((long long)M * N * K > 200000000LL) continue;
                    for (int flags = 0; flags < 4; flags++) {
                        int ta = flags & 1, tb = flags >> 1, acc = (a + b + k + flags) % 2;
                        float *A = (float *)malloc((size_t)M * K * sizeof(float));
                        float *B = (float *)malloc((size_t)K * N * sizeof(float));
                        float *C = (float *)malloc((size_t)M * N * sizeof(float));
                        float *R = (float *)malloc((size_t)M * N * sizeof(float));
                        for (int e = 0; e < M * K; e++) A[e] = dlf_rng_normal(&r);
                        for (int e = 0; e < K * N; e++) B[e] = dlf_rng_normal(&r);
                        for (int e = 0; e < M * N; e++) C[e] = R[e] = dlf_rng_normal(&r);
                        dlf_gemm_naive(ta, tb, M, N, K, A, B, R, acc);
                        int rc = dlf_cuda_gemm(c, kern, ta, tb, M, N, K, A, B, C, acc);
                        /* scale the tolerance with sqrt(K): sums of K products of N(0,1) */
                        float s = sqrtf((float)K);
                        int ok = rc == DLF_OK;
                        for (int e = 0; ok && e < M * N; e++)
                            if (!(fabsf(C[e] - R[e]) <= atol * s + rtol * fabsf(R[e]))) ok = 0;
                        if (!ok && fails++ < 3)
                            printf("FAIL [gpu] %s M=%d N=%d K=%d ta=%d tb=%d acc=%d rc=%d %s\n", dlf_cuda_kernel_name(kern),
                                   M, N, K, ta, tb, acc, rc, rc ? dlf_last_error() : "");
                        cases++;
                        free(A); free(B); free(C); free(R);
                    }
                }
        CHECK(fails == 0, "%s: %d of %d cases outside atol %g*sqrt(K) + rtol %g", dlf_cuda_kernel_name(kern), fails, cases,
              atol, rtol);
    }
    dlf_cuda_set_kernel(c, DLF_CUDA_VEC4);
}

static void test_conv(dlf_cuda *c)
{
    static const int cfg[][8] = {   /* N C H W K R stride pad */
        {2, 3, 7, 5, 4, 3, 1, 1}, {3, 1, 28, 28, 8, 5, 2, 2}, {2, 8, 14, 14, 16, 3, 2, 1},
        {1, 5, 9, 6, 7, 1, 1, 0}, {2, 2, 5, 7, 3, 3, 3, 1}, {1, 33, 7, 7, 129, 3, 1, 1}};
    dlf_rng r;
    dlf_rng_seed(&r, 9);
    GROUP("gpu: conv2d forward and backward");
    for (unsigned t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        int N = cfg[t][0], C = cfg[t][1], H = cfg[t][2], W = cfg[t][3], K = cfg[t][4], R = cfg[t][5];
        int stride = cfg[t][6], pad = cfg[t][7];
        dlf_tensor *x = dlf_tensor_randn(4, shp(N, C, H, W), &r);
        dlf_tensor *w = dlf_tensor_randn(4, shp(K, C, R, R), &r);
        dlf_tape tp;
        dlf_tape_init(&tp);
        x->requires_grad = w->requires_grad = 1;
        dlf_tensor_requires_grad(x);
        dlf_tensor_requires_grad(w);
        dlf_tensor *y = dlf_conv2d_naive(&tp, x, w, NULL, stride, pad);
        float *dy = (float *)malloc((size_t)y->size * sizeof(float));
        for (int e = 0; e < y->size; e++) dy[e] = dlf_rng_normal(&r);
        dlf_backward_seed(&tp, y, dy);
        float *yg = (float *)malloc((size_t)y->size * sizeof(float));
        float *dxg = (float *)calloc((size_t)x->size, sizeof(float)), *dwg = (float *)calloc((size_t)w->size, sizeof(float));
        int rc = dlf_cuda_conv2d_forward(c, x, w, stride, pad, yg);
        CHECK(rc == DLF_OK, "conv forward case %u: %s", t, dlf_last_error());
        if (rc == DLF_OK) CHECK_CLOSE(yg, y->data, y->size, 1e-3f, 1e-4f, "conv forward");
        rc = dlf_cuda_conv2d_backward(c, x, w, dy, stride, pad, dxg, dwg);
        CHECK(rc == DLF_OK, "conv backward case %u: %s", t, dlf_last_error());
        if (rc == DLF_OK) {
            CHECK_CLOSE(dxg, x->grad, x->size, 1e-3f, 1e-4f, "conv dx");
            CHECK_CLOSE(dwg, w->grad, w->size, 1e-2f, 1e-4f, "conv dw");
        }
        free(dy); free(yg); free(dxg); free(dwg);
        dlf_tape_destroy(&tp);
        dlf_tensor_free(x);
        dlf_tensor_free(w);
    }
}

/* The same two training steps on the CPU and on the GPU: losses and weights agree to
   float rounding (different summation orders). */
static void test_training_step(dlf_cuda *c)
{
    GROUP("gpu: CNN training step vs CPU");
    dlf_tensor *x, *y;
    batch_make(&x, &y);
    cnn a, b;
    cnn_make(&a, 21);
    cnn_make(&b, 21);
    dlf_tape ta, tb;
    dlf_tape_init(&ta);
    dlf_tape_init(&tb);
    dlf_tape_set_cuda(&tb, c);
    float la = cnn_steps(&ta, &a, x, y);
    float lb = cnn_steps(&tb, &b, x, y);
    CHECK(fabsf(la - lb) <= 1e-4f + 1e-4f * fabsf(la), "loss CPU %g GPU %g", la, lb);
    CHECK_CLOSE(b.w1->data, a.w1->data, a.w1->size, 1e-4f, 1e-3f, "conv1 weights after 2 steps");
    CHECK_CLOSE(b.w2->data, a.w2->data, a.w2->size, 1e-4f, 1e-3f, "conv2 weights after 2 steps");
    CHECK_CLOSE(b.fc->data, a.fc->data, a.fc->size, 1e-4f, 1e-3f, "linear weights after 2 steps");
    dlf_tape_destroy(&ta);
    dlf_tape_destroy(&tb);
    cnn_free(&a);
    cnn_free(&b);
    dlf_tensor_free(x);
    dlf_tensor_free(y);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* each line out at once, also into a pipe before a crash */
    th_init();
    test_operand_index();
    test_load_slots();
    test_thread_tiles();
    test_conv_index();

    dlf_cuda *c = NULL;
    int rc = dlf_cuda_init(&c, 0);
    snprintf(skip_reason, sizeof skip_reason, "no GPU (%.400s)", dlf_last_error());
    test_fallback(rc == DLF_OK);
    if (rc == DLF_OK) {
        printf("device: %s\n", dlf_cuda_device_name(c));
        test_gemm_ladder(c);
        test_conv(c);
        test_training_step(c);
        dlf_cuda_free(c);
    } else {
        SKIP("matmul ladder (7 kernels x 500 shapes x transposes)");
        SKIP("conv2d forward and backward");
        SKIP("CNN training step vs CPU");
    }
    printf("%s: %d passed, %d failed, %d skipped\n", __FILE__, th_passed, th_failed, skipped);
    return th_failed != 0;
}
