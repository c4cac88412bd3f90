/* gdb_fixture.c - a tiny program with known dlf objects for tests/gdb_check.sh, which
   stops it in gdb at dlf_gdb_stop_here() and checks what the pretty-printers in
   tools/dlf_gdb.py print for each local of main. */
#include <stdint.h>
#include <stdio.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

/* gdb_check.sh breaks here; `up` is main, with every object below alive. */
void dlf_gdb_stop_here(void);
void dlf_gdb_stop_here(void)
{
    printf("stopped\n");
}

int main(void)
{
    float a_values[6] = {1, 2, 3, 4, 5, 6};
    float w_values[6] = {1, 2, 3, 4, 5, 6};
    int a_shape[2] = {2, 3};
    int w_shape[2] = {3, 2};
    dlf_tensor *a = dlf_tensor_from(2, a_shape, a_values);   /* (2, 3) [[1,2,3],[4,5,6]] */
    dlf_tensor *w = dlf_tensor_from(2, w_shape, w_values);   /* (3, 2) [[1,2],[3,4],[5,6]] */
    dlf_tensor *big = dlf_tensor_arange(100);                /* (100,): printed with "..." */
    dlf_tensor *null_t = NULL;
    dlf_tensor *bad_t = (dlf_tensor *)(uintptr_t)0x10;       /* a garbage pointer */
    dlf_tensor *y;
    dlf_tensor *loss;
    dlf_tape tape;
    dlf_rng rng;
    dlf_seq seq;
    a->name = "a";
    w->name = "w";
    dlf_tensor_requires_grad(a);
    dlf_tensor_requires_grad(w);
    dlf_tape_init(&tape);
    y = dlf_matmul(&tape, a, w);       /* (2, 2) [[22, 28], [49, 64]] */
    loss = dlf_sum_all(&tape, y);      /* 163 */
    dlf_backward(&tape, loss);         /* a.grad = ones(2,2) @ w^T = [[3,7,11],[3,7,11]] */
    dlf_rng_seed(&rng, 42);
    dlf_seq_init(&seq);
    dlf_seq_add(&seq, dlf_layer_linear(3, 4, 1, &rng));
    dlf_seq_add(&seq, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_gdb_stop_here();
    printf("loss %g, %d nodes, %p %p\n", (double)loss->data[0], tape.n_nodes, (void *)null_t, (void *)bad_t);
    dlf_seq_free(&seq);
    dlf_tape_destroy(&tape);
    dlf_tensor_free(big);
    dlf_tensor_free(w);
    dlf_tensor_free(a);
    return 0;
}
