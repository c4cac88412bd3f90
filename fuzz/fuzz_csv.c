/* fuzz_csv.c - libFuzzer target for the CSV reader (`make fuzz`). The first byte picks
   the settings (header mode, label column, regression, a skipped line), the rest is
   the table; the seeds are tests/corpus/csv-seed-*. An accepted table must be
   consistent: n rows of `channels` finite features, labels of the kind asked for. */
#include <stdint.h>
#include <stddef.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dlf_csv_cfg cfg;
    dlf_dataset d;
    int i;
    if (size < 1) return 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.header = (int)(data[0] & 3) - 1;          /* -1, 0, 1 (2: detect again) */
    if (cfg.header > 1) cfg.header = 0;
    cfg.label_col = (data[0] >> 2 & 1) ? -1 : 0;
    cfg.regression = data[0] >> 3 & 1;
    cfg.skip_lines = data[0] >> 4 & 1;
    if (dlf_csv_parse((const char *)data + 1, size - 1, "fuzz", &cfg, &d) != DLF_OK) return 0;
    if (d.n < 1 || d.channels < 1 || !d.table || !d.features) __builtin_trap();
    if (cfg.regression ? (!d.targets || d.n_targets != 1 || d.ids) : (!d.ids || d.targets || d.n_classes < 1))
        __builtin_trap();
    for (i = 0; i < d.n * d.channels; i++)
        if (!(fabsf(d.features[i]) <= 3.4028235e38f)) __builtin_trap();   /* finite */
    for (i = 0; !cfg.regression && i < d.n; i++)
        if (d.ids[i] < 0 || d.ids[i] >= d.n_classes) __builtin_trap();
    dlf_dataset_free(&d);
    return 0;
}
