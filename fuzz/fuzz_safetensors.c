/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (`make fuzz`).
   Any bytes must either parse into tensors whose sizes match their shapes, or be
   refused with an error; AddressSanitizer and UBSan catch everything else. */
#include <stdint.h>
#include <stddef.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dlf_safetensors st;
    int i, d;
    if (dlf_safetensors_parse(&st, data, size, "fuzz") != DLF_OK) return 0;
    for (i = 0; i < st.n; i++) {
        long long p = 1;
        for (d = 0; d < st.tensors[i].ndim; d++) p *= st.tensors[i].shape[d];
        if (p != st.tensors[i].size) __builtin_trap();
    }
    dlf_safetensors_free(&st);
    return 0;
}
