/* 00_tensors.c - tensors and broadcasting, the first half of the course's notebook
   01_matmul ("Deep Learning from the Foundations", fast.ai).

   What it shows
     1. making tensors from values, reading their shape, size and memory layout;
     2. elementwise ops (a + b, a * 2, the Frobenius norm sqrt(sum(m*m)));
     3. a reshape is a view: same floats, new shape;
     4. broadcasting a vector c over the rows (c[None], shape (1,3)) and over the
        columns (c[:,None], shape (3,1)) of a matrix, and the outer product
        c[:,None] * c[None];
     5. NumPy's broadcasting rules on the classic (8,1,6,1) op (7,1,5) example;
     6. reductions along an axis, with and without keepdim;
     7. a shape error, (2,3) + (4,), caught with dlf_set_panic_handler + setjmp and
        its message printed (the default handler would print it and abort).

   Build and run:   make build/lessons/00_tensors && ./build/lessons/00_tensors
   In a debugger:   make debug && gdb build/debug/lessons/00_tensors
     break dlf__broadcast     watch how the two shapes are padded to 4 dims and how a
                              dim of 1 gets stride 0 (`p *bc` after the loop)
     break dlf__binary_row    the innermost loop of every elementwise op; `p sa`, `p sb`
                              are 0 for the stretched operand
     break dlf__reduce        `p outer`, `p n`, `p inner`: how an axis splits the shape
     break dlf__panic         stops at the shape error; `bt` shows the call site here
   Variables to watch: `*m` (data, shape, size), `c_col->shape` and `c_row->shape`,
   `view->data == m->data` (a view shares the floats).

   Every op takes a tape (stage 5 of dlf.h): outputs live in its arena and vanish at
   dlf_tape_reset. None of our inputs requires grad, so nothing is recorded here. */
#include <setjmp.h>
#include <stdio.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

static void section(const char *title)
{
    printf("\n---- %s\n", title);
}

/* Print a tensor under a label, once: "m (3, 3)" on one line, the values below.
   (dlf_tensor_print(t, label) itself writes the label twice, "m(3, 3)" and then
   "m [[...]]"; given "" it writes the shape line and the values only.) */
static void print_tensor(const char *label, const dlf_tensor *t)
{
    printf("%s ", label);
    dlf_tensor_print(t, "");
}

/* Print a tensor's shape and size without its values. */
static void show_shape(const char *label, const dlf_tensor *t)
{
    char s[64];
    printf("%-22s shape %-14s size %d\n", label, dlf_shape_str(t, s, sizeof s), t->size);
}

/* 1. Tensors from values: m is the course's 3x3 matrix, a its 3-vector. */
static void creating_tensors(void)
{
    static const float m_values[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const float a_values[3] = {10, 6, -4};
    int m_shape[2] = {3, 3};
    int a_shape[1] = {3};
    dlf_tensor *m = dlf_tensor_from(2, m_shape, m_values);
    dlf_tensor *a = dlf_tensor_from(1, a_shape, a_values);
    int row = 1;
    int col = 2;
    float m_12 = m->data[row * m->shape[1] + col];  /* row-major: (i, j) at i*cols + j */
    section("1. creating tensors");
    print_tensor("m", m);
    print_tensor("a", a);
    show_shape("m", m);
    printf("m[1][2] = m->data[1*3 + 2] = %.1f  (row-major: a row is contiguous)\n", m_12);
    dlf_tensor_free(a);
    dlf_tensor_free(m);
}

/* 2. Elementwise ops, and the Frobenius norm of m. */
static void elementwise(dlf_tape *tape)
{
    static const float a_values[3] = {10, 6, -4};
    static const float b_values[3] = {2, 8, 7};
    static const float m_values[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int v_shape[1] = {3};
    int m_shape[2] = {3, 3};
    dlf_tensor *a = dlf_tensor_from(1, v_shape, a_values);
    dlf_tensor *b = dlf_tensor_from(1, v_shape, b_values);
    dlf_tensor *m = dlf_tensor_from(2, m_shape, m_values);
    dlf_tensor *a_plus_b = dlf_add(tape, a, b);
    dlf_tensor *a_plus_1 = dlf_add_scalar(tape, a, 1.0f);
    dlf_tensor *m_times_2 = dlf_mul_scalar(tape, m, 2.0f);
    dlf_tensor *m_squared = dlf_mul(tape, m, m);
    dlf_tensor *sum_sq = dlf_sum_all(tape, m_squared);
    dlf_tensor *frobenius = dlf_sqrt(tape, sum_sq);
    section("2. elementwise ops");
    print_tensor("a + b", a_plus_b);
    print_tensor("a + 1", a_plus_1);
    print_tensor("m * 2", m_times_2);
    print_tensor("sqrt((m*m).sum())", frobenius);
    printf("(the Frobenius norm of m; the course gets 16.8819)\n");
    dlf_tensor_free(m);
    dlf_tensor_free(b);
    dlf_tensor_free(a);
}

/* 3. A reshape is a view: a new header over the same floats. */
static void views(dlf_tape *tape)
{
    int m_shape[2] = {2, 6};
    int view_shape[3] = {3, 2, -1};  /* -1: inferred, 12 / (3*2) = 2 */
    dlf_tensor *m = dlf_tensor_new(2, m_shape);
    dlf_tensor *view;
    dlf_fill_arange(m, 0.0f, 1.0f);
    view = dlf_reshape(tape, m, 3, view_shape);
    section("3. reshape is a view");
    print_tensor("m", m);
    print_tensor("view", view);
    printf("view->data == m->data: %s\n", view->data == m->data ? "yes, no copy" : "no");
    m->data[0] = 100.0f;
    printf("after m->data[0] = 100: view[0][0][0] = %.1f\n", view->data[0]);
    dlf_tensor_free(m);
}

/* 4. Broadcasting a vector over a matrix: c[None] (1,3) and c[:,None] (3,1). */
static void broadcasting_vectors(dlf_tape *tape)
{
    static const float m_values[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const float c_values[3] = {10, 20, 30};
    int m_shape[2] = {3, 3};
    int c_shape[1] = {3};
    int row_shape[2] = {1, 3};   /* c[None]     = c.unsqueeze(0) */
    int col_shape[2] = {3, 1};   /* c[:, None]  = c.unsqueeze(1) */
    dlf_tensor *m = dlf_tensor_from(2, m_shape, m_values);
    dlf_tensor *c = dlf_tensor_from(1, c_shape, c_values);
    dlf_tensor *c_row = dlf_reshape(tape, c, 2, row_shape);
    dlf_tensor *c_col = dlf_reshape(tape, c, 2, col_shape);
    dlf_tensor *m_plus_c = dlf_add(tape, m, c);
    dlf_tensor *m_plus_row = dlf_add(tape, m, c_row);
    dlf_tensor *m_plus_col = dlf_add(tape, m, c_col);
    dlf_tensor *outer = dlf_mul(tape, c_col, c_row);
    dlf_tensor *ten = dlf_tensor_new(0, NULL);      /* a 0-dim scalar */
    dlf_tensor *m_plus_ten = NULL;
    ten->data[0] = 10.0f;
    m_plus_ten = dlf_add(tape, m, ten);
    section("4. broadcasting a vector over rows and columns");
    print_tensor("c", c);
    show_shape("c[None]   (reshape)", c_row);
    show_shape("c[:,None] (reshape)", c_col);
    print_tensor("m + 10 (a scalar)", m_plus_ten);
    print_tensor("m + c", m_plus_c);
    print_tensor("m + c[None]", m_plus_row);
    print_tensor("m + c[:,None]", m_plus_col);
    print_tensor("c[:,None] * c[None]", outer);
    printf("m + c and m + c[None] agree: c is added to every row.\n");
    printf("m + c[:,None] adds c[i] to row i: c runs down the columns.\n");
    dlf_tensor_free(ten);
    dlf_tensor_free(c);
    dlf_tensor_free(m);
}

/* 5. The rules: line shapes up on the right; each pair of dims must be equal or
   contain a 1, and a 1 stretches. (8,1,6,1) op (7,1,5) -> (8,7,6,5). */
static void broadcasting_rules(dlf_tape *tape)
{
    int a_shape[4] = {8, 1, 6, 1};
    int b_shape[3] = {7, 1, 5};
    dlf_tensor *a = dlf_tensor_new(4, a_shape);
    dlf_tensor *b = dlf_tensor_new(3, b_shape);
    dlf_tensor *sum;
    dlf_fill(a, 1.0f);
    dlf_fill(b, 2.0f);
    sum = dlf_add(tape, a, b);
    section("5. the broadcasting rules");
    printf("  a      8 x 1 x 6 x 1\n");
    printf("  b          7 x 1 x 5\n");
    printf("  a + b  8 x 7 x 6 x 5   (a missing dim counts as 1; a 1 stretches)\n");
    show_shape("a", a);
    show_shape("b", b);
    show_shape("a + b", sum);
    printf("every element of a + b is %.1f\n", sum->data[sum->size - 1]);
    dlf_tensor_free(b);
    dlf_tensor_free(a);
}

/* 6. Reductions: along axis 0 (down the columns) or 1 (along the rows). */
static void reductions(dlf_tape *tape)
{
    static const float m_values[6] = {1, 2, 3, 4, 5, 6};
    int m_shape[2] = {2, 3};
    dlf_tensor *m = dlf_tensor_from(2, m_shape, m_values);
    dlf_tensor *sum0 = dlf_sum(tape, m, 0, 0);
    dlf_tensor *sum1 = dlf_sum(tape, m, 1, 0);
    dlf_tensor *sum1_keep = dlf_sum(tape, m, 1, 1);
    dlf_tensor *mean_last = dlf_mean(tape, m, -1, 1);
    dlf_tensor *centered = dlf_sub(tape, m, mean_last);
    dlf_tensor *max0 = dlf_max(tape, m, 0, 0);
    dlf_tensor *total = dlf_sum_all(tape, m);
    section("6. reductions");
    print_tensor("m", m);
    print_tensor("m.sum(0)", sum0);
    print_tensor("m.sum(1)", sum1);
    print_tensor("m.sum(1, keepdim)", sum1_keep);
    print_tensor("m - m.mean(-1, keepdim)", centered);
    print_tensor("m.max(0)", max0);
    print_tensor("m.sum()", total);
    printf("keepdim leaves the reduced axis as size 1, so the result broadcasts back\n");
    printf("against m: that is how each row was centred above.\n");
    dlf_tensor_free(m);
}

/* 7. A shape error, caught. The panic handler longjmps back to the setjmp below. */
static jmp_buf on_panic;
static char panic_message[512];

static void catch_panic(const char *message, void *user)
{
    (void)user;
    snprintf(panic_message, sizeof panic_message, "%s", message);
    longjmp(on_panic, 1);
}

static void broadcast_error(dlf_tape *tape)
{
    int a_shape[2] = {2, 3};
    int b_shape[1] = {4};
    dlf_tensor *a = dlf_tensor_new(2, a_shape);
    dlf_tensor *b = dlf_tensor_new(1, b_shape);
    section("7. a broadcasting error, caught");
    printf("a (2,3) + b (4,): the last dims are 3 and 4, neither is 1\n");
    dlf_set_panic_handler(catch_panic, NULL);
    if (setjmp(on_panic) == 0) {
        dlf_tensor *sum = dlf_add(tape, a, b);
        printf("no error?! got %p\n", (void *)sum);
    } else {
        printf("caught: %s\n", panic_message);
    }
    dlf_set_panic_handler(NULL, NULL);  /* back to the default: print and abort */
    dlf_tensor_free(b);
    dlf_tensor_free(a);
}

int main(void)
{
    dlf_tape tape;
    dlf_tape_init(&tape);
    printf("lesson 00: tensors and broadcasting (dlf %s)\n", dlf_version_string());
    creating_tensors();
    elementwise(&tape);
    views(&tape);
    broadcasting_vectors(&tape);
    broadcasting_rules(&tape);
    reductions(&tape);
    broadcast_error(&tape);
    printf("\ntape: %d nodes recorded (no input requires grad), %zu arena bytes in use\n",
           tape.n_nodes, tape.used_bytes);
    dlf_tape_destroy(&tape);
    return 0;
}
