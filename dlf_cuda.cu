/* dlf_cuda.cu - dlf's optional GPU translation unit (stage 17 of dlf.h)

   What the matmul ladder of stage 4 does for the CPU, this file does for an NVIDIA GPU:
   a ladder of matrix-product kernels, each adding one idea a student can read, and the
   glue that lets dlf_matmul and dlf_conv2d run on the device once a context is attached
   to a tape (dlf_tape_set_cuda). docs/cuda.md has the pictures.

   Build (the Makefile's `cuda` target does this):
       nvcc -O3 -std=c++17 -c dlf_cuda.cu -o dlf_cuda.o  (plus -gencode for each GPU)
       cc -DDLF_CUDA -DDLF_IMPLEMENTATION ... your_program.c dlf_cuda.o -lcudart -lstdc++
   Without DLF_CUDA nothing here is compiled into dlf.h's implementation.

   Errors: every CUDA runtime call goes through CUDA_CHECK, which on failure leaves
   "dlf_cuda: <call> failed at dlf_cuda.cu:<line>: <CUDA's message>" in dlf_last_error()
   and makes the public function return DLF_ERR_DEVICE. No GPU or no driver is not a
   crash: dlf_cuda_init returns DLF_ERR_DEVICE and dlf keeps running on the CPU.

   Where data moves (the only host <-> device copies):
     * dlf_cuda_matmul / conv: an operand is uploaded unless a resident copy of it is
       current. Heap tensors (parameters, a loader's batch) keep a resident copy, keyed
       by (data pointer, size) and valid while the tensor's `version` is unchanged (every
       in-place write bumps it: an optimizer step, dlf_fill, dlf_tensor_copy, a loader's
       next batch). Arena tensors (activations, gradients) are uploaded each call: the
       ops around them run on the CPU.
     * the result is downloaded into the host array the op gave (its output, or a
       gradient it accumulates into: then the old values go up first).
   Buffers: a context owns a few workspaces that only grow (like the tape's arena), so
   from the second training step on nothing is allocated on the device.

   Determinism: every kernel computes each output as one thread's sum in a fixed order
   (no atomics), so results repeat bit for bit run to run on one GPU. They differ from
   the CPU's by float rounding (a different summation order), which the tests bound. */

#define DLF_CUDA
#include "dlf.h"

#include <cuda_runtime.h>
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
   Errors
   --------------------------------------------------------------------------------- */

static int dlf_cu_fail(const char *what, const char *file, int line, const char *why)
{
    char msg[480];
    const char *base = strrchr(file, '/');
    snprintf(msg, sizeof msg, "dlf_cuda: %s failed at %s:%d: %s", what, base ? base + 1 : file, line, why);
    return dlf_set_error(DLF_ERR_DEVICE, msg);
}

/* CUDA_CHECK(call): 1 when the runtime call succeeded, else 0 with the message set. */
#define CUDA_CHECK(call) dlf_cu_check((call), #call, __FILE__, __LINE__)
static int dlf_cu_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess) return 1;
    dlf_cu_fail(what, file, line, cudaGetErrorString(e));
    return 0;
}
/* CUDA_CHECK_LAUNCH(name): after a kernel launch, where launch errors (a bad configuration,
   no code for this GPU) show up. 1 when the launch went through, else 0 with the message set.
   A function, not a ?: in a macro, so that `!CUDA_CHECK_LAUNCH(k)` means what it says. */
#define CUDA_CHECK_LAUNCH(name) dlf_cu_launched((name), __FILE__, __LINE__)
static int dlf_cu_launched(const char *name, const char *file, int line)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 1;
    dlf_cu_fail(name, file, line, cudaGetErrorString(e));
    return 0;
}

/* ---------------------------------------------------------------------------------
   Index arithmetic, __host__ __device__ so tests/test_cuda.cu checks it on the CPU
   against the obvious loops, on machines without a GPU too.
   --------------------------------------------------------------------------------- */
#define DLF_HD __host__ __device__ __forceinline__

/* Element (i, k) of op(A) (M,K): A stored (M,K) row-major, or (K,M) when ta. */
DLF_HD size_t dlf_cu_at_a(int ta, int M, int K, int i, int k)
{
    return ta ? (size_t)k * M + i : (size_t)i * K + k;
}
/* Element (k, j) of op(B) (K,N): B stored (K,N), or (N,K) when tb. */
DLF_HD size_t dlf_cu_at_b(int tb, int K, int N, int k, int j)
{
    return tb ? (size_t)j * K + k : (size_t)k * N + j;
}

/* The tiled kernels stage a tile of `rows` x `cols` floats with `threads` threads: load
   number s of thread tid copies element e = tid + s*threads, at (e / cols, e % cols).
   Consecutive threads take consecutive columns: the global reads are coalesced. */
DLF_HD void dlf_cu_load_slot(int tid, int s, int threads, int cols, int *r, int *c)
{
    int e = tid + s * threads;
    *r = e / cols;
    *c = e % cols;
}

/* Register blocking: a block computes a BM x BN tile of C with (BM/TM)*(BN/TN) threads,
   each an TM x TN sub-block. Thread tid's sub-block starts at row (tid / (BN/TN))*TM and
   column (tid % (BN/TN))*TN inside the tile; output (a, b) of that sub-block is C's
   element (bm*BM + row + a, bn*BN + col + b). */
DLF_HD void dlf_cu_thread_tile(int tid, int BN, int TM, int TN, int *row, int *col)
{
    *row = (tid / (BN / TN)) * TM;
    *col = (tid % (BN / TN)) * TN;
}

/* im2col: col (C*R*S, N*P*Q), row crs = (c, r, s), column npq = (n, p, q), reads
   x (N,C,H,W) at (n, c, p*stride - pad + r, q*stride - pad + s), or zero padding (-1). */
DLF_HD long long dlf_cu_im2col_src(long long crs, long long npq, int C, int H, int W, int R, int S,
                                   int stride, int pad, int P, int Q)
{
    int c = (int)(crs / (R * S)), r = (int)(crs / S % R), s = (int)(crs % S);
    int n = (int)(npq / ((long long)P * Q)), p = (int)(npq / Q % P), q = (int)(npq % Q);
    int h = p * stride - pad + r, w = q * stride - pad + s;
    (void)C;
    if (h < 0 || h >= H || w < 0 || w >= W) return -1;
    return (((long long)n * C + c) * H + h) * W + w;
}

/* col2im as a gather: input pixel (n, c, h, w) collects every col entry that read it:
   the (r, s, p, q) with h = p*stride - pad + r, w = q*stride - pad + s. For kernel row r
   that is p = (h + pad - r) / stride when the division is exact and 0 <= p < P (the same
   for columns). Returns the sum of those dcol (C*R*S, N*P*Q) entries: each input pixel is
   one thread's sum, in a fixed order, with no atomics. */
DLF_HD float dlf_cu_col2im_gather(const float *dcol, long long NPQ, int n, int c, int h, int w, int R, int S,
                                  int stride, int pad, int P, int Q)
{
    float sum = 0.0f;
    for (int r = 0; r < R; r++) {
        int ph = h + pad - r;
        if (ph < 0 || ph % stride || ph / stride >= P) continue;
        for (int s = 0; s < S; s++) {
            int qw = w + pad - s;
            if (qw < 0 || qw % stride || qw / stride >= Q) continue;
            sum += dcol[(((long long)c * R + r) * S + s) * NPQ + ((long long)n * P + ph / stride) * Q + qw / stride];
        }
    }
    return sum;
}

#ifndef DLF_CUDA_NO_KERNELS   /* tests/test_cuda.cu's host part may include only the above */

/* ---------------------------------------------------------------------------------
   The matmul ladder: C (M,N) = op(A) op(B)   (+ C when acc)
   Rungs 1-2 read op(A), op(B) through the index functions. From rung 3 on, kernels take
   A (M,K) and B (K,N) row-major; the host transposes an operand stored the other way
   first (dlf_cu_transpose, one pass over it), so the tiles load contiguous rows.
   --------------------------------------------------------------------------------- */

/* Rung 1, naive: one thread per output; threadIdx.x walks down the rows. A warp's 32
   threads then read 32 different rows of A and write 32 different rows of C: every
   memory access of the warp touches 32 separate cache lines (uncoalesced). */
__global__ void dlf_cu_naive(int ta, int tb, int M, int N, int K, const float *A, const float *B,
                             float *C, int acc)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = blockIdx.y * blockDim.y + threadIdx.y;
    if (i < M && j < N) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++) sum += A[dlf_cu_at_a(ta, M, K, i, k)] * B[dlf_cu_at_b(tb, K, N, k, j)];
        C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + sum : sum;
    }
}

/* Rung 2, coalesced: the same work, but threadIdx.x walks along a row of C. A warp now
   reads 32 neighbouring floats of B's row k (one 128-byte transaction), all its threads
   read the same A element (a broadcast), and it writes 32 neighbouring floats of C. */
__global__ void dlf_cu_coalesced(int ta, int tb, int M, int N, int K, const float *A, const float *B,
                                 float *C, int acc)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int i = blockIdx.y * blockDim.y + threadIdx.y;
    if (i < M && j < N) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++) sum += A[dlf_cu_at_a(ta, M, K, i, k)] * B[dlf_cu_at_b(tb, K, N, k, j)];
        C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + sum : sum;
    }
}

/* Rung 3, shared memory: a 32x32 block of threads computes a 32x32 tile of C. Walking
   K in steps of 32, the block copies a 32x32 tile of A and of B into shared memory
   (each thread one element of each, coalesced), waits, and every thread reads its row
   and column from there: each global element is read once per tile instead of 32 times.
   Outside the matrix the tiles hold zeros, so any size works. */
#define DLF_CU_T 32
__global__ void dlf_cu_shared(int M, int N, int K, const float *A, const float *B, float *C, int acc)
{
    __shared__ float As[DLF_CU_T][DLF_CU_T];
    __shared__ float Bs[DLF_CU_T][DLF_CU_T + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int i = blockIdx.y * DLF_CU_T + ty, j = blockIdx.x * DLF_CU_T + tx;
    float sum = 0.0f;
    for (int k0 = 0; k0 < K; k0 += DLF_CU_T) {
        As[ty][tx] = (i < M && k0 + tx < K) ? A[(size_t)i * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && j < N) ? B[(size_t)(k0 + ty) * N + j] : 0.0f;
        __syncthreads();
        for (int k = 0; k < DLF_CU_T; k++) sum += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (i < M && j < N) C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + sum : sum;
}

/* Rung 4, 1-D register blocking: a block of 512 threads computes a 64x64 tile, each
   thread 8 outputs of one column. Per step of the K loop a thread loads one B value
   into a register and reuses it for 8 multiply-adds with 8 A values: the ratio of
   arithmetic to shared-memory reads (the arithmetic intensity) rises from 1/2 to 8/9. */
#define DLF_CU_B1_BM 64
#define DLF_CU_B1_BN 64
#define DLF_CU_B1_BK 8
#define DLF_CU_B1_TM 8
__global__ void __launch_bounds__(512) dlf_cu_block1d(int M, int N, int K, const float *A, const float *B,
                                                      float *C, int acc)
{
    __shared__ float As[DLF_CU_B1_BM * DLF_CU_B1_BK];
    __shared__ float Bs[DLF_CU_B1_BK * DLF_CU_B1_BN];
    const int tid = threadIdx.x, threads = blockDim.x;
    const int bm = blockIdx.y * DLF_CU_B1_BM, bn = blockIdx.x * DLF_CU_B1_BN;
    const int col = tid % DLF_CU_B1_BN, row0 = (tid / DLF_CU_B1_BN) * DLF_CU_B1_TM;
    float acc_r[DLF_CU_B1_TM] = {0.0f};
    for (int k0 = 0; k0 < K; k0 += DLF_CU_B1_BK) {
        int r, c;
        dlf_cu_load_slot(tid, 0, threads, DLF_CU_B1_BK, &r, &c);     /* A tile 64 x 8 */
        As[r * DLF_CU_B1_BK + c] = (bm + r < M && k0 + c < K) ? A[(size_t)(bm + r) * K + k0 + c] : 0.0f;
        dlf_cu_load_slot(tid, 0, threads, DLF_CU_B1_BN, &r, &c);     /* B tile 8 x 64 */
        Bs[r * DLF_CU_B1_BN + c] = (k0 + r < K && bn + c < N) ? B[(size_t)(k0 + r) * N + bn + c] : 0.0f;
        __syncthreads();
        for (int k = 0; k < DLF_CU_B1_BK; k++) {
            float b = Bs[k * DLF_CU_B1_BN + col];
            for (int a = 0; a < DLF_CU_B1_TM; a++) acc_r[a] += As[(row0 + a) * DLF_CU_B1_BK + k] * b;
        }
        __syncthreads();
    }
    for (int a = 0; a < DLF_CU_B1_TM; a++) {
        int i = bm + row0 + a, j = bn + col;
        if (i < M && j < N) C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + acc_r[a] : acc_r[a];
    }
}

/* Rung 5, 2-D register blocking: a block of 256 threads computes a 128x128 tile, each
   thread an 8x8 block. Per k a thread loads 8 A values and 8 B values into registers
   and does 64 multiply-adds with them: intensity 64/16 = 4 per shared-memory read, and
   a tile of A or B read from global memory now serves 128 outputs. */
#define DLF_CU_BM 128
#define DLF_CU_BN 128
#define DLF_CU_BK 8
#define DLF_CU_TM 8
#define DLF_CU_TN 8
#define DLF_CU_B2_THREADS ((DLF_CU_BM / DLF_CU_TM) * (DLF_CU_BN / DLF_CU_TN))   /* 256 */
__global__ void __launch_bounds__(DLF_CU_B2_THREADS) dlf_cu_block2d(int M, int N, int K, const float *A,
                                                                    const float *B, float *C, int acc)
{
    __shared__ float As[DLF_CU_BM * DLF_CU_BK];
    __shared__ float Bs[DLF_CU_BK * DLF_CU_BN];
    const int tid = threadIdx.x;
    const int bm = blockIdx.y * DLF_CU_BM, bn = blockIdx.x * DLF_CU_BN;
    int row0, col0;
    float acc_r[DLF_CU_TM][DLF_CU_TN] = {{0.0f}};
    float ra[DLF_CU_TM], rb[DLF_CU_TN];
    dlf_cu_thread_tile(tid, DLF_CU_BN, DLF_CU_TM, DLF_CU_TN, &row0, &col0);
    for (int k0 = 0; k0 < K; k0 += DLF_CU_BK) {
        for (int s = 0; s < DLF_CU_BM * DLF_CU_BK / DLF_CU_B2_THREADS; s++) {   /* 4 loads each */
            int r, c;
            dlf_cu_load_slot(tid, s, DLF_CU_B2_THREADS, DLF_CU_BK, &r, &c);
            As[r * DLF_CU_BK + c] = (bm + r < M && k0 + c < K) ? A[(size_t)(bm + r) * K + k0 + c] : 0.0f;
            dlf_cu_load_slot(tid, s, DLF_CU_B2_THREADS, DLF_CU_BN, &r, &c);
            Bs[r * DLF_CU_BN + c] = (k0 + r < K && bn + c < N) ? B[(size_t)(k0 + r) * N + bn + c] : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < DLF_CU_BK; k++) {
            for (int a = 0; a < DLF_CU_TM; a++) ra[a] = As[(row0 + a) * DLF_CU_BK + k];
            for (int b = 0; b < DLF_CU_TN; b++) rb[b] = Bs[k * DLF_CU_BN + col0 + b];
            for (int a = 0; a < DLF_CU_TM; a++)
                for (int b = 0; b < DLF_CU_TN; b++) acc_r[a][b] += ra[a] * rb[b];
        }
        __syncthreads();
    }
    for (int a = 0; a < DLF_CU_TM; a++)
        for (int b = 0; b < DLF_CU_TN; b++) {
            int i = bm + row0 + a, j = bn + col0 + b;
            if (i < M && j < N) C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + acc_r[a][b] : acc_r[a][b];
        }
}

/* Rung 6, vectorized: rung 5's tiling with 128-bit accesses. Global loads read a float4
   (four neighbours of a row: one instruction instead of four) when K and N are multiples
   of 4, so a float4 is either wholly inside the matrix or wholly outside. The A tile is
   stored transposed in shared memory (As[k][m]), so a thread's 8 A values for one k are
   contiguous and come in as two float4 reads too; so do its 8 B values. C is written as
   float4 when N allows. VEC = false runs the same tiling with scalar loads for sizes
   that are not multiples of 4. */
template <bool VEC>
__global__ void __launch_bounds__(DLF_CU_B2_THREADS) dlf_cu_vec4(int M, int N, int K, const float *A,
                                                                 const float *B, float *C, int acc)
{
    __shared__ __align__(16) float As[DLF_CU_BK * DLF_CU_BM];   /* transposed: As[k * BM + m] */
    __shared__ __align__(16) float Bs[DLF_CU_BK * DLF_CU_BN];
    const int tid = threadIdx.x;
    const int bm = blockIdx.y * DLF_CU_BM, bn = blockIdx.x * DLF_CU_BN;
    int row0, col0;
    float acc_r[DLF_CU_TM][DLF_CU_TN] = {{0.0f}};
    float ra[DLF_CU_TM], rb[DLF_CU_TN];
    dlf_cu_thread_tile(tid, DLF_CU_BN, DLF_CU_TM, DLF_CU_TN, &row0, &col0);
    for (int k0 = 0; k0 < K; k0 += DLF_CU_BK) {
        if (VEC) {
            /* A tile 128 x 8 = 256 float4 (2 per row): one per thread */
            int r = tid / (DLF_CU_BK / 4), c = (tid % (DLF_CU_BK / 4)) * 4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (bm + r < M && k0 + c < K) v = *(const float4 *)&A[(size_t)(bm + r) * K + k0 + c];
            As[(c + 0) * DLF_CU_BM + r] = v.x;
            As[(c + 1) * DLF_CU_BM + r] = v.y;
            As[(c + 2) * DLF_CU_BM + r] = v.z;
            As[(c + 3) * DLF_CU_BM + r] = v.w;
            /* B tile 8 x 128 = 256 float4 (32 per row): one per thread */
            r = tid / (DLF_CU_BN / 4);
            c = (tid % (DLF_CU_BN / 4)) * 4;
            v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (k0 + r < K && bn + c < N) v = *(const float4 *)&B[(size_t)(k0 + r) * N + bn + c];
            *(float4 *)&Bs[r * DLF_CU_BN + c] = v;
        } else {
            for (int s = 0; s < DLF_CU_BM * DLF_CU_BK / DLF_CU_B2_THREADS; s++) {
                int r, c;
                dlf_cu_load_slot(tid, s, DLF_CU_B2_THREADS, DLF_CU_BK, &r, &c);
                As[c * DLF_CU_BM + r] = (bm + r < M && k0 + c < K) ? A[(size_t)(bm + r) * K + k0 + c] : 0.0f;
                dlf_cu_load_slot(tid, s, DLF_CU_B2_THREADS, DLF_CU_BN, &r, &c);
                Bs[r * DLF_CU_BN + c] = (k0 + r < K && bn + c < N) ? B[(size_t)(k0 + r) * N + bn + c] : 0.0f;
            }
        }
        __syncthreads();
        for (int k = 0; k < DLF_CU_BK; k++) {
            float4 a0 = *(const float4 *)&As[k * DLF_CU_BM + row0], a1 = *(const float4 *)&As[k * DLF_CU_BM + row0 + 4];
            float4 b0 = *(const float4 *)&Bs[k * DLF_CU_BN + col0], b1 = *(const float4 *)&Bs[k * DLF_CU_BN + col0 + 4];
            ra[0] = a0.x; ra[1] = a0.y; ra[2] = a0.z; ra[3] = a0.w; ra[4] = a1.x; ra[5] = a1.y; ra[6] = a1.z; ra[7] = a1.w;
            rb[0] = b0.x; rb[1] = b0.y; rb[2] = b0.z; rb[3] = b0.w; rb[4] = b1.x; rb[5] = b1.y; rb[6] = b1.z; rb[7] = b1.w;
            for (int a = 0; a < DLF_CU_TM; a++)
                for (int b = 0; b < DLF_CU_TN; b++) acc_r[a][b] += ra[a] * rb[b];
        }
        __syncthreads();
    }
    for (int a = 0; a < DLF_CU_TM; a++) {
        int i = bm + row0 + a, j = bn + col0;
        if (i >= M) break;
        if (VEC && j + DLF_CU_TN <= N) {   /* N % 4 == 0: two aligned float4 stores */
            float4 *dst = (float4 *)&C[(size_t)i * N + j];
            float4 lo = make_float4(acc_r[a][0], acc_r[a][1], acc_r[a][2], acc_r[a][3]);
            float4 hi = make_float4(acc_r[a][4], acc_r[a][5], acc_r[a][6], acc_r[a][7]);
            if (acc) {
                float4 o0 = dst[0], o1 = dst[1];
                lo.x += o0.x; lo.y += o0.y; lo.z += o0.z; lo.w += o0.w;
                hi.x += o1.x; hi.y += o1.y; hi.z += o1.z; hi.w += o1.w;
            }
            dst[0] = lo;
            dst[1] = hi;
        } else {
            for (int b = 0; b < DLF_CU_TN; b++)
                if (j + b < N) C[(size_t)i * N + j + b] = acc ? C[(size_t)i * N + j + b] + acc_r[a][b] : acc_r[a][b];
        }
    }
}

/* Rung 7, tensor cores: WMMA fragments of 16x16x8 in TF32 (a 10-bit mantissa, like
   FP16's, with FP32's exponent range), summed in FP32. A block of 4 warps computes a
   64x64 tile; each warp a 32x32 quarter as 2x2 fragments. Tiles go through shared
   memory with zero fill, so any size works. Accuracy: each product rounds its inputs to
   TF32 (relative error up to 2^-11 per input), so results differ from FP32 by about
   1e-3 relative for K in the thousands; the tests state the tolerance they use. Needs
   compute capability 8.0 (A100, H100); the host refuses older GPUs. */
#define DLF_CU_TC_BM 64
#define DLF_CU_TC_BN 64
#define DLF_CU_TC_BK 8
__global__ void __launch_bounds__(128) dlf_cu_tf32(int M, int N, int K, const float *A, const float *B,
                                                   float *C, int acc)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    __shared__ __align__(32) float As[DLF_CU_TC_BM][DLF_CU_TC_BK + 4];   /* +4: ldm a multiple of 4 */
    __shared__ __align__(32) float Bs[DLF_CU_TC_BK][DLF_CU_TC_BN + 4];
    __shared__ __align__(32) float Cs[DLF_CU_TC_BM][DLF_CU_TC_BN + 4];
    const int tid = threadIdx.x, warp = tid / 32;
    const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;
    const int bm = blockIdx.y * DLF_CU_TC_BM, bn = blockIdx.x * DLF_CU_TC_BN;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) wmma::fill_fragment(fc[i][j], 0.0f);
    for (int k0 = 0; k0 < K; k0 += DLF_CU_TC_BK) {
        for (int s = 0; s < DLF_CU_TC_BM * DLF_CU_TC_BK / 128; s++) {   /* 4 loads each */
            int r, c;
            dlf_cu_load_slot(tid, s, 128, DLF_CU_TC_BK, &r, &c);
            As[r][c] = (bm + r < M && k0 + c < K) ? A[(size_t)(bm + r) * K + k0 + c] : 0.0f;
            dlf_cu_load_slot(tid, s, 128, DLF_CU_TC_BN, &r, &c);
            Bs[r][c] = (k0 + r < K && bn + c < N) ? B[(size_t)(k0 + r) * N + bn + c] : 0.0f;
        }
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
        for (int i = 0; i < 2; i++) {
            wmma::load_matrix_sync(fa[i], &As[wr + 16 * i][0], DLF_CU_TC_BK + 4);
            for (int e = 0; e < fa[i].num_elements; e++) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
        }
        for (int j = 0; j < 2; j++) {
            wmma::load_matrix_sync(fb[j], &Bs[0][wc + 16 * j], DLF_CU_TC_BN + 4);
            for (int e = 0; e < fb[j].num_elements; e++) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
        }
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) wmma::mma_sync(fc[i][j], fa[i], fb[j], fc[i][j]);
        __syncthreads();
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&Cs[wr + 16 * i][wc + 16 * j], fc[i][j], DLF_CU_TC_BN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int s = 0; s < DLF_CU_TC_BM * DLF_CU_TC_BN / 128; s++) {
        int r, c, i, j;
        dlf_cu_load_slot(tid, s, 128, DLF_CU_TC_BN, &r, &c);
        i = bm + r;
        j = bn + c;
        if (i < M && j < N) C[(size_t)i * N + j] = acc ? C[(size_t)i * N + j] + Cs[r][c] : Cs[r][c];
    }
#else
    (void)M; (void)N; (void)K; (void)A; (void)B; (void)C; (void)acc;
    __trap();   /* the host never launches this below compute 8.0 */
#endif
}

/* out (cols, rows) = in (rows, cols)^T through a 32x33 shared tile (the +1 column keeps
   the threads of a warp on different shared-memory banks), coalesced on both sides. */
__global__ void dlf_cu_transpose(int rows, int cols, const float *in, float *out)
{
    __shared__ float tile[32][33];
    int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y * 32 + threadIdx.y;
    if (r < rows && c < cols) tile[threadIdx.y][threadIdx.x] = in[(size_t)r * cols + c];
    __syncthreads();
    c = blockIdx.x * 32 + threadIdx.y;   /* the output's row */
    r = blockIdx.y * 32 + threadIdx.x;   /* the output's column */
    if (c < cols && r < rows) out[(size_t)c * rows + r] = tile[threadIdx.x][threadIdx.y];
}

/* ---------------------------------------------------------------------------------
   Convolution kernels: im2col, the (K, N, PQ) <-> (N, K, PQ) reorders, col2im
   --------------------------------------------------------------------------------- */

__global__ void dlf_cu_im2col(const float *x, int N, int C, int H, int W, int R, int S, int stride, int pad,
                              int P, int Q, float *col)
{
    long long NPQ = (long long)N * P * Q, total = (long long)C * R * S * NPQ;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long src = dlf_cu_im2col_src(e / NPQ, e % NPQ, C, H, W, R, S, stride, pad, P, Q);
        col[e] = src < 0 ? 0.0f : x[src];
    }
}

/* to_nkpq = 1: y (N,K,PQ) from yk (K, N*PQ); 0: the reverse (dY (N,K,PQ) -> (K, N*PQ)). */
__global__ void dlf_cu_reorder(int N, int K, long long PQ, const float *in, float *out, int to_nkpq)
{
    long long total = (long long)N * K * PQ;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long pq = e % PQ, nk = e / PQ;          /* e indexes the (N,K,PQ) side */
        int k = (int)(nk % K), n = (int)(nk / K);
        long long ke = ((long long)k * N + n) * PQ + pq;
        if (to_nkpq) out[e] = in[ke];
        else out[ke] = in[e];
    }
}

/* dx (N,C,H,W) += the gather of dcol (C*R*S, N*P*Q), one thread per input pixel. */
__global__ void dlf_cu_col2im(const float *dcol, int N, int C, int H, int W, int R, int S, int stride,
                              int pad, int P, int Q, float *dx)
{
    long long total = (long long)N * C * H * W, NPQ = (long long)N * P * Q;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        int w = (int)(e % W), h = (int)(e / W % H), c = (int)(e / ((long long)W * H) % C);
        int n = (int)(e / ((long long)W * H * C));
        dx[e] += dlf_cu_col2im_gather(dcol, NPQ, n, c, h, w, R, S, stride, pad, P, Q);
    }
}

/* ---------------------------------------------------------------------------------
   The context: device, workspaces, resident weights
   --------------------------------------------------------------------------------- */

#define DLF_CU_RESIDENT 64   /* weight copies kept; beyond that the oldest is replaced */
enum { DLF_CU_WS_A, DLF_CU_WS_B, DLF_CU_WS_C, DLF_CU_WS_TA, DLF_CU_WS_TB, DLF_CU_WS_COL, DLF_CU_WS_COUNT };

typedef struct dlf_cu_resident {
    const float *host;       /* the tensor's data pointer */
    size_t n;                /* floats */
    unsigned version;        /* the tensor's version when copied */
    float *dev;              /* the copy */
    unsigned long long used; /* last use (the context's clock) */
} dlf_cu_resident;

struct dlf_cuda {
    int device;
    int cc_major, cc_minor;
    char name[300];
    int kernel;                       /* the rung the ops use */
    float *ws[DLF_CU_WS_COUNT];       /* workspaces that only grow */
    size_t ws_n[DLF_CU_WS_COUNT];
    dlf_cu_resident res[DLF_CU_RESIDENT];
    unsigned long long clock;
};

DLFDEF const char *dlf_cuda_kernel_name(int kernel)
{
    static const char *names[DLF_CUDA_KERNEL_COUNT] = {"naive", "coalesced", "shared", "block1d", "block2d",
                                                       "vec4", "tf32"};
    return kernel >= 0 && kernel < DLF_CUDA_KERNEL_COUNT ? names[kernel] : "?";
}

DLFDEF int dlf_cuda_init(dlf_cuda **out, int device)
{
    int count = 0;
    cudaError_t e;
    cudaDeviceProp prop;
    dlf_cuda *c;
    char why[200];
    if (!out) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_init: out is NULL");
    *out = NULL;
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {   /* no driver (cudaErrorInsufficientDriver, ...), or no device */
        snprintf(why, sizeof why, "dlf_cuda_init: no usable GPU: %s (%s); the CPU path still works",
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();   /* clear the sticky error */
        return dlf_set_error(DLF_ERR_DEVICE, why);
    }
    if (count == 0) return dlf_set_error(DLF_ERR_DEVICE, "dlf_cuda_init: the CUDA driver sees no GPU; the CPU path still works");
    if (device < 0 || device >= count) {
        snprintf(why, sizeof why, "dlf_cuda_init: device %d asked for, but there are %d", device, count);
        return dlf_set_error(DLF_ERR_ARG, why);
    }
    if (!CUDA_CHECK(cudaSetDevice(device))) return DLF_ERR_DEVICE;
    if (!CUDA_CHECK(cudaGetDeviceProperties(&prop, device))) return DLF_ERR_DEVICE;
    c = (dlf_cuda *)calloc(1, sizeof *c);
    if (!c) return dlf_set_error(DLF_ERR_NOMEM, "dlf_cuda_init: out of memory for the context");
    c->device = device;
    c->cc_major = prop.major;
    c->cc_minor = prop.minor;
    snprintf(c->name, sizeof c->name, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
    c->kernel = DLF_CUDA_VEC4;
    *out = c;
    return DLF_OK;
}

DLFDEF void dlf_cuda_forget(dlf_cuda *c)
{
    int i;
    if (!c) return;
    for (i = 0; i < DLF_CU_RESIDENT; i++) {
        if (c->res[i].dev) cudaFree(c->res[i].dev);
        memset(&c->res[i], 0, sizeof c->res[i]);
    }
}

DLFDEF void dlf_cuda_free(dlf_cuda *c)
{
    int i;
    if (!c) return;
    dlf_cuda_forget(c);
    for (i = 0; i < DLF_CU_WS_COUNT; i++)
        if (c->ws[i]) cudaFree(c->ws[i]);
    free(c);
}

DLFDEF const char *dlf_cuda_device_name(const dlf_cuda *c) { return c ? c->name : "(none)"; }

DLFDEF int dlf_cuda_set_kernel(dlf_cuda *c, int kernel)
{
    if (!c) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_set_kernel: context is NULL");
    if (kernel < 0 || kernel >= DLF_CUDA_KERNEL_COUNT)
        return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_set_kernel: no such kernel");
    if (kernel == DLF_CUDA_TF32 && c->cc_major < 8)
        return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_set_kernel: tf32 needs compute capability 8.0 or newer");
    c->kernel = kernel;
    return DLF_OK;
}

DLFDEF int dlf_tape_set_cuda(dlf_tape *t, dlf_cuda *c)
{
    if (!t) return dlf_set_error(DLF_ERR_ARG, "dlf_tape_set_cuda: tape is NULL");
    t->cuda = c;
    return DLF_OK;
}

/* Workspace slot `which`, at least n floats; grows, never shrinks. */
static float *dlf_cu_ws(dlf_cuda *c, int which, size_t n)
{
    if (n > c->ws_n[which]) {
        float *p = NULL;
        if (c->ws[which]) cudaFree(c->ws[which]);
        c->ws[which] = NULL;
        c->ws_n[which] = 0;
        if (!CUDA_CHECK(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(float)))) return NULL;
        c->ws[which] = p;
        c->ws_n[which] = n;
    }
    return c->ws[which];
}

/* A device copy of tensor x's data (n floats): the resident one when x is a heap tensor
   whose version has not changed since it was copied, else uploaded (into workspace
   `slot` for arena tensors, into a resident entry for heap ones). */
static const float *dlf_cu_operand(dlf_cuda *c, const dlf_tensor *x, const float *data, size_t n, int slot)
{
    int i, pick = -1;
    float *dst;
    if (x && (x->flags & DLF_TENSOR_HEAP) && data == x->data) {
        for (i = 0; i < DLF_CU_RESIDENT; i++)
            if (c->res[i].host == data && c->res[i].n == n) {
                pick = i;
                break;
            }
        if (pick >= 0 && c->res[pick].version == x->version) {
            c->res[pick].used = ++c->clock;
            return c->res[pick].dev;   /* current: no copy */
        }
        if (pick < 0) {   /* a free entry, or the least recently used one */
            unsigned long long oldest = ~0ull;
            for (i = 0; i < DLF_CU_RESIDENT; i++) {
                if (!c->res[i].dev) { pick = i; break; }
                if (c->res[i].used < oldest) { oldest = c->res[i].used; pick = i; }
            }
            if (c->res[pick].dev) cudaFree(c->res[pick].dev);
            memset(&c->res[pick], 0, sizeof c->res[pick]);
            if (!CUDA_CHECK(cudaMalloc((void **)&c->res[pick].dev, (n ? n : 1) * sizeof(float)))) {
                c->res[pick].dev = NULL;
                return NULL;
            }
            c->res[pick].host = data;
            c->res[pick].n = n;
        }
        if (!CUDA_CHECK(cudaMemcpy(c->res[pick].dev, data, n * sizeof(float), cudaMemcpyHostToDevice))) return NULL;
        c->res[pick].version = x->version;
        c->res[pick].used = ++c->clock;
        return c->res[pick].dev;
    }
    dst = dlf_cu_ws(c, slot, n);
    if (!dst) return NULL;
    if (!CUDA_CHECK(cudaMemcpy(dst, data, n * sizeof(float), cudaMemcpyHostToDevice))) return NULL;
    return dst;
}

static unsigned dlf_cu_blocks(long long n, int threads)
{
    long long b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

/* Device-side product with rung `kernel`; dA, dB, dC on the device. */
DLFDEF int dlf_cuda_gemm_device(dlf_cuda *c, int kernel, int ta, int tb, int M, int N, int K,
                                const float *dA, const float *dB, float *dC, int acc)
{
    if (!c) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: context is NULL");
    if (M < 0 || N < 0 || K < 0) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: negative size");
    if (kernel < 0 || kernel >= DLF_CUDA_KERNEL_COUNT) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: no such kernel");
    if (kernel == DLF_CUDA_TF32 && c->cc_major < 8)
        return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: tf32 needs compute capability 8.0 or newer");
    if (M == 0 || N == 0) return DLF_OK;
    if (K == 0) {   /* an empty sum: C = 0, or C unchanged when accumulating */
        if (!acc && !CUDA_CHECK(cudaMemset(dC, 0, (size_t)M * N * sizeof(float)))) return DLF_ERR_DEVICE;
        return DLF_OK;
    }
    if (kernel == DLF_CUDA_NAIVE || kernel == DLF_CUDA_COALESCED) {
        dim3 threads(32, 32);
        if (kernel == DLF_CUDA_NAIVE) {
            dim3 grid((M + 31) / 32, (N + 31) / 32);
            dlf_cu_naive<<<grid, threads>>>(ta, tb, M, N, K, dA, dB, dC, acc);
        } else {
            dim3 grid((N + 31) / 32, (M + 31) / 32);
            dlf_cu_coalesced<<<grid, threads>>>(ta, tb, M, N, K, dA, dB, dC, acc);
        }
        return CUDA_CHECK_LAUNCH(dlf_cuda_kernel_name(kernel)) ? DLF_OK : DLF_ERR_DEVICE;
    }
    /* the tiled rungs read row-major A (M,K), B (K,N): transpose what is stored the other way */
    if (ta) {
        float *t = dlf_cu_ws(c, DLF_CU_WS_TA, (size_t)M * K);
        if (!t) return DLF_ERR_DEVICE;
        dlf_cu_transpose<<<dim3((M + 31) / 32, (K + 31) / 32), dim3(32, 32)>>>(K, M, dA, t);
        dA = t;
    }
    if (tb) {
        float *t = dlf_cu_ws(c, DLF_CU_WS_TB, (size_t)K * N);
        if (!t) return DLF_ERR_DEVICE;
        dlf_cu_transpose<<<dim3((K + 31) / 32, (N + 31) / 32), dim3(32, 32)>>>(N, K, dB, t);
        dB = t;
    }
    switch (kernel) {
    case DLF_CUDA_SHARED:
        dlf_cu_shared<<<dim3((N + 31) / 32, (M + 31) / 32), dim3(32, 32)>>>(M, N, K, dA, dB, dC, acc);
        break;
    case DLF_CUDA_BLOCK1D:
        dlf_cu_block1d<<<dim3((N + DLF_CU_B1_BN - 1) / DLF_CU_B1_BN, (M + DLF_CU_B1_BM - 1) / DLF_CU_B1_BM),
                         DLF_CU_B1_BM * DLF_CU_B1_BN / DLF_CU_B1_TM>>>(M, N, K, dA, dB, dC, acc);
        break;
    case DLF_CUDA_BLOCK2D:
        dlf_cu_block2d<<<dim3((N + DLF_CU_BN - 1) / DLF_CU_BN, (M + DLF_CU_BM - 1) / DLF_CU_BM),
                         DLF_CU_B2_THREADS>>>(M, N, K, dA, dB, dC, acc);
        break;
    case DLF_CUDA_VEC4: {
        dim3 grid((N + DLF_CU_BN - 1) / DLF_CU_BN, (M + DLF_CU_BM - 1) / DLF_CU_BM);
        int vec = K % 4 == 0 && N % 4 == 0 && ((uintptr_t)dA % 16) == 0 && ((uintptr_t)dB % 16) == 0 &&
                  ((uintptr_t)dC % 16) == 0;
        if (vec) dlf_cu_vec4<true><<<grid, DLF_CU_B2_THREADS>>>(M, N, K, dA, dB, dC, acc);
        else dlf_cu_vec4<false><<<grid, DLF_CU_B2_THREADS>>>(M, N, K, dA, dB, dC, acc);
        break;
    }
    default:   /* DLF_CUDA_TF32 */
        dlf_cu_tf32<<<dim3((N + DLF_CU_TC_BN - 1) / DLF_CU_TC_BN, (M + DLF_CU_TC_BM - 1) / DLF_CU_TC_BM), 128>>>(
            M, N, K, dA, dB, dC, acc);
        break;
    }
    return CUDA_CHECK_LAUNCH(dlf_cuda_kernel_name(kernel)) ? DLF_OK : DLF_ERR_DEVICE;
}

/* Host arrays in and out: A, B up, C down (and up first when accumulating). */
static int dlf_cu_gemm_host(dlf_cuda *c, int kernel, int ta, int tb, int M, int N, int K,
                            const dlf_tensor *a, const float *A, const dlf_tensor *b, const float *B,
                            float *C, int acc)
{
    const float *dA, *dB;
    float *dC;
    size_t nc = (size_t)M * N;
    if (M == 0 || N == 0) return DLF_OK;
    dA = dlf_cu_operand(c, a, A, (size_t)M * K, DLF_CU_WS_A);
    if (!dA) return DLF_ERR_DEVICE;
    dB = dlf_cu_operand(c, b, B, (size_t)K * N, DLF_CU_WS_B);
    if (!dB) return DLF_ERR_DEVICE;
    dC = dlf_cu_ws(c, DLF_CU_WS_C, nc);
    if (!dC) return DLF_ERR_DEVICE;
    if (acc && !CUDA_CHECK(cudaMemcpy(dC, C, nc * sizeof(float), cudaMemcpyHostToDevice))) return DLF_ERR_DEVICE;
    if (dlf_cuda_gemm_device(c, kernel, ta, tb, M, N, K, dA, dB, dC, acc) != DLF_OK) return DLF_ERR_DEVICE;
    if (!CUDA_CHECK(cudaMemcpy(C, dC, nc * sizeof(float), cudaMemcpyDeviceToHost))) return DLF_ERR_DEVICE;
    return DLF_OK;
}

DLFDEF int dlf_cuda_gemm(dlf_cuda *c, int kernel, int ta, int tb, int M, int N, int K,
                         const float *A, const float *B, float *C, int acc)
{
    if (!c) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: context is NULL");
    if (M < 0 || N < 0 || K < 0) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_gemm: negative size");
    return dlf_cu_gemm_host(c, kernel, ta, tb, M, N, K, NULL, A, NULL, B, C, acc);
}

DLFDEF int dlf_cuda_matmul(dlf_cuda *c, int ta, int tb, const dlf_tensor *a, const dlf_tensor *b,
                           float *out, int acc)
{
    int M, K, Kb, N;
    if (!c || !a || !b || !out) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_matmul: an argument is NULL");
    if (a->ndim != 2 || b->ndim != 2) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_matmul: inputs must be 2-D");
    M = ta ? a->shape[1] : a->shape[0];
    K = ta ? a->shape[0] : a->shape[1];
    Kb = tb ? b->shape[1] : b->shape[0];
    N = tb ? b->shape[0] : b->shape[1];
    if (K != Kb) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_matmul: inner dimensions differ");
    return dlf_cu_gemm_host(c, c->kernel, ta, tb, M, N, K, a, a->data, b, b->data, out, acc);
}

/* Shapes of a convolution, checked as dlf_conv2d checks them. */
static int dlf_cu_conv_shape(const char *fn, const dlf_tensor *x, const dlf_tensor *w, int stride, int pad,
                             int *P, int *Q)
{
    char msg[200];
    if (!x || !w) {
        snprintf(msg, sizeof msg, "%s: an input is NULL", fn);
        return dlf_set_error(DLF_ERR_ARG, msg);
    }
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1] || stride < 1 || pad < 0) {
        snprintf(msg, sizeof msg, "%s: x must be (N,C,H,W) and w (K,C,R,S) with equal C, stride >= 1, pad >= 0", fn);
        return dlf_set_error(DLF_ERR_ARG, msg);
    }
    *P = (x->shape[2] + 2 * pad - w->shape[2]) / stride + 1;
    *Q = (x->shape[3] + 2 * pad - w->shape[3]) / stride + 1;
    if (*P < 1 || *Q < 1) {
        snprintf(msg, sizeof msg, "%s: the kernel must fit the padded input", fn);
        return dlf_set_error(DLF_ERR_ARG, msg);
    }
    return DLF_OK;
}

/* Forward: col = im2col(x) (C*R*S, N*P*Q); Yk (K, N*P*Q) = W (K, C*R*S) @ col; y = the
   reorder of Yk to (N, K, P, Q). Same product as the CPU's im2col reference. */
DLFDEF int dlf_cuda_conv2d_forward(dlf_cuda *c, const dlf_tensor *x, const dlf_tensor *w, int stride, int pad,
                                   float *y)
{
    int P, Q, N, C, H, W, K, R, S, err;
    long long CRS, NPQ;
    const float *dx, *dw;
    float *col, *yk, *dy;
    if (!c || !y) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_conv2d_forward: an argument is NULL");
    if ((err = dlf_cu_conv_shape("dlf_cuda_conv2d_forward", x, w, stride, pad, &P, &Q)) != DLF_OK) return err;
    N = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    K = w->shape[0]; R = w->shape[2]; S = w->shape[3];
    CRS = (long long)C * R * S;
    NPQ = (long long)N * P * Q;
    dx = dlf_cu_operand(c, x, x->data, (size_t)x->size, DLF_CU_WS_A);
    if (!dx) return DLF_ERR_DEVICE;
    dw = dlf_cu_operand(c, w, w->data, (size_t)w->size, DLF_CU_WS_B);
    if (!dw) return DLF_ERR_DEVICE;
    col = dlf_cu_ws(c, DLF_CU_WS_COL, (size_t)(CRS * NPQ));
    yk = dlf_cu_ws(c, DLF_CU_WS_C, (size_t)(K * NPQ) * 2);   /* Yk, then y after it */
    if (!col || !yk) return DLF_ERR_DEVICE;
    dy = yk + (size_t)K * NPQ;
    dlf_cu_im2col<<<dlf_cu_blocks(CRS * NPQ, 256), 256>>>(dx, N, C, H, W, R, S, stride, pad, P, Q, col);
    if (!CUDA_CHECK_LAUNCH("im2col")) return DLF_ERR_DEVICE;
    if (dlf_cuda_gemm_device(c, c->kernel, 0, 0, K, (int)NPQ, (int)CRS, dw, col, yk, 0) != DLF_OK) return DLF_ERR_DEVICE;
    dlf_cu_reorder<<<dlf_cu_blocks(K * NPQ, 256), 256>>>(N, K, (long long)P * Q, yk, dy, 1);
    if (!CUDA_CHECK_LAUNCH("reorder")) return DLF_ERR_DEVICE;
    if (!CUDA_CHECK(cudaMemcpy(y, dy, (size_t)(K * NPQ) * sizeof(float), cudaMemcpyDeviceToHost))) return DLF_ERR_DEVICE;
    return DLF_OK;
}

/* Backward, with G = dL/dY reordered to Gk (K, N*P*Q):
     dW (K, CRS) += Gk @ col^T          (col rebuilt from x: cheaper than keeping it)
     dcol (CRS, NPQ) = W^T @ Gk,  dx += col2im(dcol)                                     */
DLFDEF int dlf_cuda_conv2d_backward(dlf_cuda *c, const dlf_tensor *x, const dlf_tensor *w, const float *dy,
                                    int stride, int pad, float *dx, float *dw)
{
    int P, Q, N, C, H, W, K, R, S, err;
    long long CRS, NPQ;
    const float *xd, *wd;
    float *col, *buf, *gk, *out;
    if (!c || !dy) return dlf_set_error(DLF_ERR_ARG, "dlf_cuda_conv2d_backward: an argument is NULL");
    if ((err = dlf_cu_conv_shape("dlf_cuda_conv2d_backward", x, w, stride, pad, &P, &Q)) != DLF_OK) return err;
    N = x->shape[0]; C = x->shape[1]; H = x->shape[2]; W = x->shape[3];
    K = w->shape[0]; R = w->shape[2]; S = w->shape[3];
    CRS = (long long)C * R * S;
    NPQ = (long long)N * P * Q;
    xd = dlf_cu_operand(c, x, x->data, (size_t)x->size, DLF_CU_WS_A);
    if (!xd) return DLF_ERR_DEVICE;
    wd = dlf_cu_operand(c, w, w->data, (size_t)w->size, DLF_CU_WS_B);
    if (!wd) return DLF_ERR_DEVICE;
    /* C workspace: dY as given (K*NPQ), Gk (K*NPQ), then dW or dx (the larger) */
    buf = dlf_cu_ws(c, DLF_CU_WS_C, (size_t)(2 * K * NPQ) + (size_t)(CRS * K > (long long)x->size ? CRS * K : x->size));
    col = dlf_cu_ws(c, DLF_CU_WS_COL, (size_t)(CRS * NPQ));
    if (!buf || !col) return DLF_ERR_DEVICE;
    gk = buf + (size_t)K * NPQ;
    out = gk + (size_t)K * NPQ;
    if (!CUDA_CHECK(cudaMemcpy(buf, dy, (size_t)(K * NPQ) * sizeof(float), cudaMemcpyHostToDevice))) return DLF_ERR_DEVICE;
    dlf_cu_reorder<<<dlf_cu_blocks(K * NPQ, 256), 256>>>(N, K, (long long)P * Q, buf, gk, 0);
    if (!CUDA_CHECK_LAUNCH("reorder")) return DLF_ERR_DEVICE;
    if (dw) {
        dlf_cu_im2col<<<dlf_cu_blocks(CRS * NPQ, 256), 256>>>(xd, N, C, H, W, R, S, stride, pad, P, Q, col);
        if (!CUDA_CHECK_LAUNCH("im2col")) return DLF_ERR_DEVICE;
        if (!CUDA_CHECK(cudaMemcpy(out, dw, (size_t)(K * CRS) * sizeof(float), cudaMemcpyHostToDevice)))
            return DLF_ERR_DEVICE;
        if (dlf_cuda_gemm_device(c, c->kernel, 0, 1, K, (int)CRS, (int)NPQ, gk, col, out, 1) != DLF_OK)
            return DLF_ERR_DEVICE;
        if (!CUDA_CHECK(cudaMemcpy(dw, out, (size_t)(K * CRS) * sizeof(float), cudaMemcpyDeviceToHost)))
            return DLF_ERR_DEVICE;
    }
    if (dx) {
        if (dlf_cuda_gemm_device(c, c->kernel, 1, 0, (int)CRS, (int)NPQ, K, wd, gk, col, 0) != DLF_OK)
            return DLF_ERR_DEVICE;
        if (!CUDA_CHECK(cudaMemcpy(out, dx, (size_t)x->size * sizeof(float), cudaMemcpyHostToDevice)))
            return DLF_ERR_DEVICE;
        dlf_cu_col2im<<<dlf_cu_blocks(x->size, 256), 256>>>(col, N, C, H, W, R, S, stride, pad, P, Q, out);
        if (!CUDA_CHECK_LAUNCH("col2im")) return DLF_ERR_DEVICE;
        if (!CUDA_CHECK(cudaMemcpy(dx, out, (size_t)x->size * sizeof(float), cudaMemcpyDeviceToHost)))
            return DLF_ERR_DEVICE;
    }
    return DLF_OK;
}

#endif /* DLF_CUDA_NO_KERNELS */
