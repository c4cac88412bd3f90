#define DLF_IMPLEMENTATION
#include "harness.h"
int main(void)
{
    dlf_tape t;
    dlf_tensor *a, *b, *c;
    th_init();
    dlf_tape_init(&t);
    a = dlf_tensor_new2(2, 3);
    b = dlf_tensor_new1(3);
    dlf_fill_arange(a, 0, 1);
    dlf_fill(b, 1);
    c = dlf_add(&t, a, b);
    CHECK(c->data[5] == 6.0f, "add");
    dlf_tensor_free(a); dlf_tensor_free(b);
    dlf_tape_destroy(&t);
    TEST_MAIN_END();
}
