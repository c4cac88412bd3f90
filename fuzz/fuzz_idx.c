/* fuzz_idx.c - libFuzzer target for the IDX reader (`make fuzz`). Accepted files
   must hold exactly the bytes their dims promise; everything else is refused. */
#include <stdint.h>
#include <stddef.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dlf_idx x;
    size_t p = 1;
    int d;
    if (dlf_idx_parse(data, size, "fuzz", &x) != DLF_OK) return 0;
    for (d = 0; d < x.ndim; d++) p *= (size_t)x.dims[d];
    if (p != x.size || 4 + 4 * (size_t)x.ndim + p != size) __builtin_trap();
    dlf_idx_free(&x);
    return 0;
}
