/* lesson.h - what the MNIST lessons share: loading MNIST from data/mnist, or, when
   `make data` has not been run, the small subset committed in tests/data (1000 train
   images, 200 of them held out for validation, and 500 test images), so that every
   lesson runs anywhere. Include it after dlf.h. */
#ifndef DLF_LESSON_H
#define DLF_LESSON_H
#include <stdio.h>
#include <string.h>

/* 1: full MNIST loaded, 0: the subset, -1: neither (the message is printed). Every
   line printed starts with indent. */
static int lesson_load_mnist(dlf_mnist *data, const char *indent)
{
    dlf_mnist_cfg mc;
    if (dlf_mnist_load(data, "data/mnist", NULL) == DLF_OK) {
        printf("%sdata: data/mnist (full MNIST)\n", indent);
        return 1;
    }
    printf("%sdata/mnist not found (%s)\n%sdata: tests/data subset (1000 train, 500 test); "
           "run `make data` for the full set\n", indent, dlf_last_error(), indent);
    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    mc.n_valid = 200;
    if (dlf_mnist_load(data, "tests/data", &mc) != DLF_OK) {
        printf("%scannot load the subset either: %s\n", indent, dlf_last_error());
        return -1;
    }
    return 0;
}
#endif
