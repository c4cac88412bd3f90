/* bench_conv.c - one conv2d layer, forward and forward+backward, the shape of
   reference conv layer: x (64,32,14,14), w (32,32,3,3), pad 1, stride 1.
   Compare with bench/torch_conv.py in the same session (`make bench` runs both when
   /usr/bin/python3 has torch). Prints the best of 20 runs after 3 warm-up runs. */
#include <stdio.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0, rep, warm = 3, reps = 20;
    dlf_rng rng;
    dlf_tape t;
    dlf_tensor *x = dlf_tensor_new4(64, 32, 14, 14), *w = dlf_param_new(4, (int[]){32, 32, 3, 3});
    dlf_tensor *b = dlf_param_new(1, (int[]){32});
    double best_f = 1e9, best_fb = 1e9;
    if (threads > 0) dlf_set_threads(threads);
    dlf_rng_seed(&rng, 1);
    dlf_fill_normal(x, &rng, 0, 1);
    dlf_init_torch_default(w, b, &rng);
    dlf_tensor_requires_grad(x);
    dlf_tape_init(&t);
    for (rep = 0; rep < warm + reps; rep++) {
        double t0, t1, t2;
        dlf_tensor *y;
        dlf_tape_reset(&t);
        t0 = dlf_seconds();
        y = dlf_conv2d(&t, x, w, b, 1, 1);
        t1 = dlf_seconds();
        dlf_backward(&t, dlf_sum_all(&t, y));
        t2 = dlf_seconds();
        if (rep >= warm) {
            if (t1 - t0 < best_f) best_f = t1 - t0;
            if (t2 - t0 < best_fb) best_fb = t2 - t0;
        }
    }
    printf("dlf conv2d 64x32x14x14 k32 3x3 pad1, %d threads: forward %.2f ms, forward+backward %.2f ms\n",
           dlf_get_threads(), best_f * 1e3, best_fb * 1e3);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x); dlf_tensor_free(w); dlf_tensor_free(b);
    return 0;
}
