/* 02_fully_connected.c - forward and backward of a small MLP, by hand and by the tape
   (the course's notebook 02_fully_connected, "Deep Learning from the Foundations",
   fast.ai; the docs page is docs/tape.md).

   What it shows
     The course's model: 784 inputs -> 50 hidden (ReLU) -> 1 output, trained (later)
     as a regression on the digit label with mean squared error:
         l1 = x @ w1 + b1      l2 = relu(l1)      out = l2 @ w2 + b2
         loss = mean((out.squeeze(-1) - y)^2)
     1. the forward pass and hand-written gradients on plain float arrays, exactly the
        notebook's mse_grad, relu_grad and lin_grad:
            inp.g = out.g @ w.T     w.g = inp.T @ out.g     b.g = out.g.sum(0)
     2. the same model through dlf's tape autograd (dlf_matmul, dlf_add broadcasting
        the bias over the batch, dlf_relu, dlf_sub, dlf_square, dlf_mean_all), the
        tape it records, and the max |difference| between the two sets of gradients;
     3. what the tape does with memory: the second step allocates nothing, gradients
        accumulate until zeroed, and no-grad mode records no nodes;
     4. dlf_gradcheck (central finite differences) on a small copy: 10 -> 8 -> 1,
        batch 4.
   The data are synthetic, drawn from dlf_rng so no files are needed: 64 "images" of
   784 standard-normal pixels (what normalized MNIST looks like to the model) and
   random digit labels 0..9 as float targets.

   In a debugger:   make debug && gdb build/debug/lessons/02_fully_connected
     break lin_grad             step through the three gradients of a linear layer;
                                `p inp_g[0]`, `p w_g[0]`, `p b_g[0]`
     break relu_grad            `p inp[i]` and `p out_g[i]`: the mask at work
     break dlf_backward_ex      then `p t->n_nodes` and `p t->nodes[i].op` while it walks
                                the tape from the last node to the first
     break dlf__matmul_backward the tape's version of lin_grad's two gemm calls
   Variables to watch in main: `loss_hand`, `loss_tape`, and in compare_grads `diff`.

   Allocation counting: the DLF_MALLOC/DLF_REALLOC/DLF_FREE hooks below route dlf's
   allocations through counters, which is how section 3 proves its claim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count_allocs.h"   /* n_allocs: dlf's allocations, counted */
#define DLF_IMPLEMENTATION
#include "../dlf.h"

#define N_BATCH 64   /* N: images in the batch */
#define N_IN 784     /* I: pixels per image (28 x 28) */
#define N_HID 50     /* H: hidden units */

/* The model's parameters as heap tensors: the tape needs tensors; the hand-written
   code below only touches their ->data arrays. */
typedef struct mlp {
    int n_in, n_hid;
    dlf_tensor *w1;   /* (I, H) */
    dlf_tensor *b1;   /* (H,) */
    dlf_tensor *w2;   /* (H, 1) */
    dlf_tensor *b2;   /* (1,) */
} mlp;

/* The course's init: w1 ~ N(0, 2/I) (Kaiming, for the ReLU), w2 ~ N(0, 1/H), b = 0. */
static void mlp_init(mlp *m, int n_in, int n_hid, dlf_rng *rng)
{
    int w1_shape[2];
    int w2_shape[2];
    int b1_shape[1];
    int b2_shape[1] = {1};
    w1_shape[0] = n_in;
    w1_shape[1] = n_hid;
    w2_shape[0] = n_hid;
    w2_shape[1] = 1;
    b1_shape[0] = n_hid;
    m->n_in = n_in;
    m->n_hid = n_hid;
    m->w1 = dlf_param_new(2, w1_shape);
    m->b1 = dlf_param_new(1, b1_shape);
    m->w2 = dlf_param_new(2, w2_shape);
    m->b2 = dlf_param_new(1, b2_shape);
    m->w1->name = "w1";
    m->b1->name = "b1";
    m->w2->name = "w2";
    m->b2->name = "b2";
    dlf_fill_normal(m->w1, rng, 0.0f, sqrtf(2.0f / (float)n_in));
    dlf_fill_normal(m->w2, rng, 0.0f, sqrtf(1.0f / (float)n_hid));
}

static void mlp_free(mlp *m)
{
    dlf_tensor_free(m->b2);
    dlf_tensor_free(m->w2);
    dlf_tensor_free(m->b1);
    dlf_tensor_free(m->w1);
}

/* ---- 1. by hand, on float arrays -------------------------------------------------- */

/* Everything the hand-written forward keeps for its backward, and the gradients. */
typedef struct hand_pass {
    float *l1;       /* (N, H) x @ w1 + b1 */
    float *l2;       /* (N, H) relu(l1) */
    float *out;      /* (N, 1) l2 @ w2 + b2 */
    float *out_g;    /* (N, 1) dloss/dout */
    float *l2_g;     /* (N, H) */
    float *l1_g;     /* (N, H) */
    float *x_g;      /* (N, I) */
    float *w1_g;     /* (I, H) */
    float *b1_g;     /* (H,) */
    float *w2_g;     /* (H, 1) */
    float *b2_g;     /* (1,) */
} hand_pass;

static float *zeros(int n)
{
    return (float *)calloc((size_t)n, sizeof(float));
}

static void hand_pass_init(hand_pass *h, int n, int n_in, int n_hid)
{
    h->l1 = zeros(n * n_hid);
    h->l2 = zeros(n * n_hid);
    h->out = zeros(n);
    h->out_g = zeros(n);
    h->l2_g = zeros(n * n_hid);
    h->l1_g = zeros(n * n_hid);
    h->x_g = zeros(n * n_in);
    h->w1_g = zeros(n_in * n_hid);
    h->b1_g = zeros(n_hid);
    h->w2_g = zeros(n_hid);
    h->b2_g = zeros(1);
}

static void hand_pass_free(hand_pass *h)
{
    free(h->l1); free(h->l2); free(h->out); free(h->out_g); free(h->l2_g);
    free(h->l1_g); free(h->x_g); free(h->w1_g); free(h->b1_g); free(h->w2_g); free(h->b2_g);
}

/* out (N, O) = inp (N, I) @ w (I, O) + b (O,), the bias added to every row */
static void lin(const float *inp, const float *w, const float *b, float *out, int n, int n_in, int n_out)
{
    int i, j;
    dlf_gemm(0, 0, n, n_out, n_in, inp, w, out, 0, NULL);
    for (i = 0; i < n; i++) {
        float *out_i = out + (size_t)i * n_out;
        for (j = 0; j < n_out; j++) out_i[j] += b[j];
    }
}

/* out = max(inp, 0) */
static void relu(const float *inp, float *out, int size)
{
    int i;
    for (i = 0; i < size; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* loss = mean_i (out_i - targ_i)^2, accumulated in double */
static float mse(const float *out, const float *targ, int n)
{
    double sum = 0.0;
    int i;
    for (i = 0; i < n; i++) {
        double diff = (double)out[i] - targ[i];
        sum += diff * diff;
    }
    return (float)(sum / n);
}

/* d loss / d out_i = 2 (out_i - targ_i) / N */
static void mse_grad(const float *out, const float *targ, float *out_g, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        float diff = out[i] - targ[i];
        out_g[i] = 2.0f * diff / (float)n;
    }
}

/* inp.g = (inp > 0) * out.g: the gradient passes where the unit was on */
static void relu_grad(const float *inp, const float *out_g, float *inp_g, int size)
{
    int i;
    for (i = 0; i < size; i++) inp_g[i] = inp[i] > 0.0f ? out_g[i] : 0.0f;
}

/* The three gradients of out = inp @ w + b, given out.g (N, O):
     inp.g (N, I) = out.g @ w.T      w.g (I, O) = inp.T @ out.g      b.g (O,) = out.g.sum(0) */
static void lin_grad(const float *inp, const float *out_g, const float *w, float *inp_g,
                     float *w_g, float *b_g, int n, int n_in, int n_out)
{
    int i, j;
    dlf_gemm(0, 1, n, n_in, n_out, out_g, w, inp_g, 0, NULL);   /* tb: w read as w.T */
    dlf_gemm(1, 0, n_in, n_out, n, inp, out_g, w_g, 0, NULL);   /* ta: inp read as inp.T */
    for (j = 0; j < n_out; j++) b_g[j] = 0.0f;
    for (i = 0; i < n; i++) {
        const float *out_g_i = out_g + (size_t)i * n_out;
        for (j = 0; j < n_out; j++) b_g[j] += out_g_i[j];
    }
}

/* The notebook's forward_and_backward: forward, loss, then the grads in reverse. */
static float forward_and_backward(const mlp *m, const float *x, const float *y, int n, hand_pass *h)
{
    int I = m->n_in, H = m->n_hid;
    float loss;
    lin(x, m->w1->data, m->b1->data, h->l1, n, I, H);
    relu(h->l1, h->l2, n * H);
    lin(h->l2, m->w2->data, m->b2->data, h->out, n, H, 1);
    loss = mse(h->out, y, n);
    mse_grad(h->out, y, h->out_g, n);
    lin_grad(h->l2, h->out_g, m->w2->data, h->l2_g, h->w2_g, h->b2_g, n, H, 1);
    relu_grad(h->l1, h->l2_g, h->l1_g, n * H);
    lin_grad(x, h->l1_g, m->w1->data, h->x_g, h->w1_g, h->b1_g, n, I, H);
    return loss;
}

/* ---- 2. through the tape -------------------------------------------------------- */

/* The same model as ops on the tape; returns the 0-dim loss. y is (N,). */
static dlf_tensor *model_loss(dlf_tape *t, dlf_tensor *x, dlf_tensor *y, const mlp *m)
{
    int flat[1] = {-1};
    dlf_tensor *xw1 = dlf_matmul(t, x, m->w1);        /* (N, H) */
    dlf_tensor *l1 = dlf_add(t, xw1, m->b1);          /* (N, H) + (H,): b1 on every row */
    dlf_tensor *l2 = dlf_relu(t, l1);                 /* (N, H) */
    dlf_tensor *l2w2 = dlf_matmul(t, l2, m->w2);      /* (N, 1) */
    dlf_tensor *out = dlf_add(t, l2w2, m->b2);        /* (N, 1) + (1,) */
    dlf_tensor *out_flat = dlf_reshape(t, out, 1, flat);  /* out.squeeze(-1): (N,) */
    dlf_tensor *diff = dlf_sub(t, out_flat, y);       /* (N,) */
    dlf_tensor *sq = dlf_square(t, diff);             /* (N,) */
    dlf_tensor *loss = dlf_mean_all(t, sq);           /* () */
    return loss;
}

static float max_abs(const float *a, int n)
{
    float m = 0.0f;
    int i;
    for (i = 0; i < n; i++)
        if (fabsf(a[i]) > m) m = fabsf(a[i]);
    return m;
}

static void compare_one(const char *what, const float *hand, const float *tape, int n)
{
    float diff = dlf_max_abs_diff_n(hand, tape, n);
    float scale = max_abs(hand, n);
    printf("  %-6s %7d values   max|grad| %.4g   max|hand - tape| %.3g\n", what, n, scale, diff);
}

static void compare_grads(const hand_pass *h, const mlp *m, const dlf_tensor *x)
{
    printf("gradients, hand-written vs tape:\n");
    compare_one("w1.g", h->w1_g, m->w1->grad, m->w1->size);
    compare_one("b1.g", h->b1_g, m->b1->grad, m->b1->size);
    compare_one("w2.g", h->w2_g, m->w2->grad, m->w2->size);
    compare_one("b2.g", h->b2_g, m->b2->grad, m->b2->size);
    compare_one("x.g", h->x_g, x->grad, x->size);
}

/* ---- 3. the tape and memory ------------------------------------------------------ */

static void zero_all_grads(mlp *m, dlf_tensor *x)
{
    dlf_tensor *all[5];
    all[0] = m->w1;
    all[1] = m->b1;
    all[2] = m->w2;
    all[3] = m->b2;
    all[4] = x;
    dlf_zero_grads(all, 5);
}

static void tape_and_memory(dlf_tape *tape, mlp *m, dlf_tensor *x, dlf_tensor *y)
{
    long allocs_before;
    long allocs_step;
    float b2_g_once;
    float b2_g_twice;
    dlf_tensor *loss;
    int prev;
    printf("\n---- 3. the tape and memory\n");
    /* a second training step: same shapes, same order, so the arena has room */
    b2_g_once = m->b2->grad[0];
    allocs_before = n_allocs;
    dlf_tape_reset(tape);
    loss = model_loss(tape, x, y, m);
    dlf_backward(tape, loss);
    allocs_step = n_allocs - allocs_before;
    printf("step 2 (reset, forward, backward): %ld allocations; arena peak %zu bytes\n",
           allocs_step, tape->peak_bytes);
    /* we did not zero the grads, so step 2's were added to step 1's */
    b2_g_twice = m->b2->grad[0];
    printf("no zero_grad in between: b2.g went from %.6f to %.6f (accumulated, x2)\n",
           b2_g_once, b2_g_twice);
    zero_all_grads(m, x);
    printf("after dlf_zero_grads: b2.g = %.6f\n", m->b2->grad[0]);
    /* evaluation: grad off, the ops compute but record nothing */
    dlf_tape_reset(tape);
    prev = dlf_tape_set_grad(tape, 0);
    loss = model_loss(tape, x, y, m);
    printf("no-grad forward: loss %.6f, %d nodes recorded\n", loss->data[0], tape->n_nodes);
    dlf_tape_set_grad(tape, prev);
}

/* ---- 4. gradient check ----------------------------------------------------------- */

/* The graph gradcheck differentiates. inputs: x, w1, b1, w2, b2; user: y. */
static dlf_tensor *small_model(dlf_tape *t, dlf_tensor **inputs, void *user)
{
    mlp m;
    dlf_tensor *x = inputs[0];
    dlf_tensor *y = (dlf_tensor *)user;
    m.n_in = x->shape[1];
    m.n_hid = inputs[1]->shape[1];
    m.w1 = inputs[1];
    m.b1 = inputs[2];
    m.w2 = inputs[3];
    m.b2 = inputs[4];
    return model_loss(t, x, y, &m);
}

static void gradient_check(dlf_rng *rng)
{
    enum { N = 4, I = 10, H = 8 };
    int x_shape[2] = {N, I};
    int y_shape[1] = {N};
    mlp m;
    dlf_tensor *x = dlf_tensor_new(2, x_shape);
    dlf_tensor *y = dlf_tensor_new(1, y_shape);
    dlf_tensor *inputs[5];
    dlf_gradcheck_cfg cfg;
    dlf_gradcheck_report rep;
    int ok;
    printf("\n---- 4. gradient check, %d -> %d -> 1, batch %d\n", I, H, N);
    mlp_init(&m, I, H, rng);
    dlf_fill_uniform(m.b1, rng, -0.5f, 0.5f);   /* non-zero biases, so their grads matter */
    dlf_fill_uniform(m.b2, rng, -0.5f, 0.5f);
    dlf_fill_normal(x, rng, 0.0f, 1.0f);
    dlf_fill_uniform(y, rng, 0.0f, 9.0f);
    inputs[0] = x;
    inputs[1] = m.w1;
    inputs[2] = m.b1;
    inputs[3] = m.w2;
    inputs[4] = m.b2;
    memset(&cfg, 0, sizeof cfg);   /* zeros: the documented defaults */
    cfg.verbose = 1;
    ok = dlf_gradcheck(small_model, inputs, 5, y, &cfg, &rep);
    printf("gradcheck %s: %d elements checked, %d skipped as ReLU kinks, %d failed,\n"
           "  max abs err %.3g, max rel err %.3g (input %d, element %d)\n",
           ok ? "PASSED" : "FAILED", rep.n_checked, rep.n_kinks, rep.n_failed,
           rep.max_abs_err, rep.max_rel_err, rep.worst_input, rep.worst_index);
    printf("  (the test is |numeric - analytic| <= atol + rtol*|numeric|; a big relative\n"
           "  error on a gradient that is almost 0 is float rounding, not a wrong formula)\n");
    mlp_free(&m);
    dlf_tensor_free(y);
    dlf_tensor_free(x);
}

/* ---- main ------------------------------------------------------------------------ */

static void make_data(dlf_tensor *x, dlf_tensor *y, dlf_rng *rng)
{
    int i;
    dlf_fill_normal(x, rng, 0.0f, 1.0f);                      /* normalized "pixels" */
    for (i = 0; i < y->size; i++) y->data[i] = (float)dlf_rng_below(rng, 10);  /* labels */
}

int main(void)
{
    int x_shape[2] = {N_BATCH, N_IN};
    int y_shape[1] = {N_BATCH};
    dlf_rng rng;
    mlp m;
    hand_pass h;
    dlf_tape tape;
    dlf_tensor *x;
    dlf_tensor *y;
    dlf_tensor *loss;
    float loss_hand;
    float loss_tape;
    printf("lesson 02: a fully connected net, forward and backward (dlf %s)\n", dlf_version_string());
    dlf_rng_seed(&rng, 42);
    x = dlf_tensor_new(2, x_shape);
    y = dlf_tensor_new(1, y_shape);
    make_data(x, y, &rng);
    mlp_init(&m, N_IN, N_HID, &rng);
    printf("x %d x %d ~ N(0,1), y = random digits 0..9; model %d -> %d -> 1\n", N_BATCH, N_IN,
           N_IN, N_HID);

    printf("\n---- 1. by hand\n");
    hand_pass_init(&h, N_BATCH, N_IN, N_HID);
    loss_hand = forward_and_backward(&m, x->data, y->data, N_BATCH, &h);
    printf("loss (hand) %.6f\n", loss_hand);
    printf("w2.g[0..2] %.6f %.6f %.6f   b2.g %.6f\n", h.w2_g[0], h.w2_g[1], h.w2_g[2], h.b2_g[0]);

    printf("\n---- 2. through the tape\n");
    dlf_tape_init(&tape);
    dlf_tensor_requires_grad(x);   /* only to compare x.g with the notebook's inp.g */
    loss = model_loss(&tape, x, y, &m);
    dlf_backward(&tape, loss);
    loss_tape = loss->data[0];
    dlf_tape_print(&tape);
    printf("loss (tape) %.6f   |hand - tape| %.3g\n", loss_tape, fabsf(loss_hand - loss_tape));
    printf("w2.g[0..2] %.6f %.6f %.6f   b2.g %.6f\n", m.w2->grad[0], m.w2->grad[1],
           m.w2->grad[2], m.b2->grad[0]);
    compare_grads(&h, &m, x);

    tape_and_memory(&tape, &m, x, y);
    gradient_check(&rng);

    dlf_tape_destroy(&tape);
    hand_pass_free(&h);
    mlp_free(&m);
    dlf_tensor_free(y);
    dlf_tensor_free(x);
    return 0;
}
