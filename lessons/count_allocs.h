/* count_allocs.h - a counting allocator for the lessons that show "no allocation per
   step": include it before dlf.h (it defines DLF_MALLOC, DLF_REALLOC and DLF_FREE),
   read n_allocs before and after the loop in question. */
#ifndef DLF_COUNT_ALLOCS_H
#define DLF_COUNT_ALLOCS_H
#include <stdlib.h>

static long n_allocs;  /* every DLF_MALLOC and DLF_REALLOC dlf makes */

static void *counting_malloc(size_t n)
{
    n_allocs++;
    return malloc(n);
}

static void *counting_realloc(void *p, size_t n)
{
    n_allocs++;
    return realloc(p, n);
}

#define DLF_MALLOC(sz) counting_malloc(sz)
#define DLF_REALLOC(p, sz) counting_realloc(p, sz)
#define DLF_FREE(p) free(p)
#endif
