/* test_interop.c - dlf -> PyTorch -> dlf, from the committed fixtures in tests/ref/interop/.

   `make reference` ran tools/export_dlf.c (dlf writes dlf_cnn / dlf_mlp.safetensors: weights
   after one SGD+momentum step, momentum buffers, an input batch and dlf's logits), then
   tools/gen_reference.py (PyTorch loads them with load_state_dict(strict=True), writes
   torch_logits_of_dlf_<m>.safetensors, takes step 2 from dlf's momentum buffers and writes
   its own state as torch_<m>_state.safetensors). This program needs no PyTorch. For the CNN
   and the MLP it checks
     (a) the committed dlf_<m>.safetensors is byte for byte what dlf writes today: the same
         functions (this file compiles tools/export_dlf.c in) rebuild and save it again.
         Exact bytes need the micro-kernel that wrote the file (metadata "kernel", normally
         "avx2-fma" from `make reference`'s gcc -march=native build; "+contract" when the
         compiler fuses a*b+c, as clang does); another build (make asan, DLF_NO_SIMD, clang) checks the structure exactly and values within
         tolerance instead, and says so;
     (b) the file's names are exactly the dlf_seq's (strict, both ways), and the logits of a
         fresh dlf model loaded from it equal dlf_logits bit for bit and PyTorch's logits of
         the same weights within tolerance;
     (c) the round trip: dlf resumes from its checkpoint (weights + momentum buffers) and
         takes step 2; its weights, buffers and logits match PyTorch's step 2; and PyTorch's
         saved state loads back into a fresh dlf_seq by name and gives PyTorch's logits.
   The BatchNorm CNN with Adam (dlf_bncnn.safetensors; test_torch_bn) is checked the same way, with
   its buffers and Adam state, in both directions and one step further each (steps 3 and 4).
   Each comparison prints its max difference. Run from the repository root. */
#include <stdlib.h>
#define DLF_IMPLEMENTATION
#include "harness.h"
#define EXPORT_DLF_NO_MAIN
#include "../tools/export_dlf.c"

#define DIR "tests/ref/interop"
#define ATOL 1e-5f   /* as the whole-model fixtures in tests/ref/ */
#define RTOL 1e-4f
#define OTHER_SEED 999 /* fresh models start from other weights: loading must overwrite all */

static const char *SHORT[3] = {"cnn", "mlp", "bncnn"};

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;
    *buf = NULL;
    *len = 0;
    if (!f) return 0;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return 0; }
    *buf = (unsigned char *)malloc((size_t)n + 1);
    if (*buf && fread(*buf, 1, (size_t)n, f) == (size_t)n) *len = (size_t)n;
    fclose(f);
    return *buf != NULL && *len == (size_t)n;
}

/* Prints "interop <m>: <what>: max diff D" and checks |a - ref| <= ATOL + RTOL*|ref|. */
static void compare(const char *m, const char *what, const float *a, const dlf_st_tensor *ref, int n)
{
    char label[128];
    float d = 0.0f;
    int i;
    snprintf(label, sizeof label, "interop %s: %s", m, what);
    if (!ref || ref->size != n) {
        CHECK(0, "%s: reference missing or has %d values, dlf %d", label, ref ? ref->size : -1, n);
        return;
    }
    for (i = 0; i < n; i++) {
        float e = fabsf(a[i] - ref->data[i]);
        if (e > d || e != e) d = e;
    }
    printf("%s: max diff %.3g\n", label, d);
    CHECK_CLOSE(a, ref->data, n, ATOL, RTOL, label);
}

static int is_model_key(const char *k)
{
    static const char *not_model[] = {"optim.", "loader.", "input", "target", "dlf_logits", "torch_logits"};
    size_t i;
    for (i = 0; i < sizeof not_model / sizeof not_model[0]; i++)
        if (strncmp(k, not_model[i], strlen(not_model[i])) == 0) return 0;
    return 1;
}

/* strict=True, the dlf way: the file's model keys are exactly the seq's parameter names. */
static void check_names_strict(const char *m, const char *file, const dlf_safetensors *st, const exp_model *x)
{
    int i, j, n_model = 0, all_found = 1;
    for (i = 0; i < st->n; i++) {
        int known = 0;
        if (!is_model_key(st->tensors[i].name)) continue;
        n_model++;
        for (j = 0; j < x->n_params; j++) known |= strcmp(st->tensors[i].name, x->names[j]) == 0;
        CHECK(known, "interop %s: %s holds \"%s\", which the dlf_seq does not have", m, file, st->tensors[i].name);
    }
    for (j = 0; j < x->n_params; j++) all_found &= dlf_safetensors_find(st, x->names[j]) != NULL;
    CHECK(all_found && n_model == x->n_params, "interop %s: %s has %d model tensors, the dlf_seq %d parameters",
          m, file, n_model, x->n_params);
}

/* Built with another micro-kernel than the one that wrote the fixtures (FMA rounds once, the
   portable kernel twice), dlf writes other last bits: then the structure must still be
   identical (names, order, shapes, metadata but "kernel"), the batch bit for bit, and every
   value within tolerance. */
static void compare_files(const char *m, const dlf_safetensors *a, const dlf_safetensors *b)
{
    int i, same = a->n == b->n && a->n_meta == b->n_meta;
    for (i = 0; same && i < a->n_meta; i++)
        same = strcmp(a->meta_keys[i], b->meta_keys[i]) == 0 &&
               (strcmp(a->meta_keys[i], "kernel") == 0 || strcmp(a->meta_values[i], b->meta_values[i]) == 0);
    CHECK(same, "interop %s: the same metadata (\"kernel\" aside) and tensor count", m);
    for (i = 0; same && i < a->n; i++) {
        const dlf_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        int shape_ok = strcmp(x->name, y->name) == 0 && x->ndim == y->ndim && x->size == y->size &&
                       memcmp(x->shape, y->shape, sizeof(int) * (size_t)x->ndim) == 0;
        CHECK(shape_ok, "interop %s: tensor %d is %s in the file, %s now (or another shape)", m, i, y->name, x->name);
        if (!shape_ok) continue;
        if (strcmp(x->name, "input") == 0 || strcmp(x->name, "target") == 0)
            CHECK(memcmp(x->data, y->data, sizeof(float) * (size_t)x->size) == 0, "interop %s: %s bit for bit", m, x->name);
        else if (strcmp(x->name, "1.weight") == 0 || strcmp(x->name, "10.weight") == 0 || strcmp(x->name, "14.weight") == 0 ||
                 strcmp(x->name, "dlf_logits") == 0)
            compare(m, x->name, x->data, y, x->size);   /* a few printed */
        else
            CHECK_CLOSE(x->data, y->data, x->size, ATOL, RTOL, x->name);
    }
}

/* (a) the committed file is what dlf writes today */
static void test_bytes(exp_which which)
{
    exp_model m;
    dlf_ckpt c;
    dlf_safetensors old, now;
    char committed[256], fresh[256];
    const char *kernel;
    unsigned char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0, i;
    GROUP("bytes");
    dlf_ckpt_init(&c);
    memset(&old, 0, sizeof old);
    memset(&now, 0, sizeof now);
    CHECK(exp_make(&m, which, EXP_SEED_MODEL, 1) == DLF_OK, "export model built: %s", dlf_last_error());
    CHECK(exp_ckpt(&m, &c) == DLF_OK, "checkpoint assembled: %s", dlf_last_error());
    snprintf(committed, sizeof committed, "%s/%s", DIR, m.file);
    snprintf(fresh, sizeof fresh, "build/test_interop_%s", m.file);
    CHECK(dlf_ckpt_save(&c, fresh) == DLF_OK, "saved %s: %s", fresh, dlf_last_error());
    CHECK(read_all(committed, &a, &la), "read %s (run `make reference` to create it)", committed);
    CHECK(read_all(fresh, &b, &lb), "read %s", fresh);
    CHECK(a && dlf_safetensors_parse(&old, a, la, committed) == DLF_OK, "parse %s: %s", committed, dlf_last_error());
    CHECK(b && dlf_safetensors_parse(&now, b, lb, fresh) == DLF_OK, "parse %s: %s", fresh, dlf_last_error());
    kernel = dlf_safetensors_meta(&old, "kernel");
    if (kernel && strcmp(kernel, exp_kernel()) == 0) {
        for (i = 0; i < la && i < lb && a[i] == b[i]; i++) {}
        CHECK(la == lb && i == la,
              "%s: dlf today writes %zu bytes, the committed file has %zu, first difference at byte %zu "
              "(dlf.h changed what it computes or writes: look, then `make reference`)", committed, lb, la, i);
        printf("interop %s: %s, %zu bytes, identical to what dlf writes now: %s\n", SHORT[which], committed, la,
               la == lb && i == la ? "yes" : "NO");
    } else {
        printf("interop %s: %s was written by the %s kernel, this build runs the %s one: exact bytes are "
               "not comparable, checking structure exactly and values within tolerance\n",
               SHORT[which], committed, kernel ? kernel : "(unknown)", exp_kernel());
        compare_files(SHORT[which], &now, &old);
    }
    dlf_safetensors_free(&old);
    dlf_safetensors_free(&now);
    free(a);
    free(b);
    remove(fresh);
    dlf_ckpt_free(&c);
    exp_free(&m);
}

/* (b) and (c) */
static void test_torch(exp_which which)
{
    const char *s = SHORT[which];
    exp_model m, t;
    dlf_ckpt dc, tc;
    dlf_safetensors tl;
    char path[256], what[128];
    dlf_tensor *logits;
    int i;
    GROUP("torch");
    dlf_ckpt_init(&dc);
    dlf_ckpt_init(&tc);
    memset(&tl, 0, sizeof tl);
    /* a fresh model from other weights and no step; its batch is overwritten from the file too */
    CHECK(exp_make(&m, which, OTHER_SEED, 0) == DLF_OK, "fresh model: %s", dlf_last_error());
    snprintf(path, sizeof path, "%s/dlf_%s.safetensors", DIR, s);
    if (dlf_ckpt_load(&dc, path) != DLF_OK) {
        CHECK(0, "load %s: %s", path, dlf_last_error());
        goto done;
    }
    check_names_strict(s, path, &dc.file, &m);
    CHECK(dlf_ckpt_get_params(&dc, m.params, m.name_ptrs, m.n_params) == DLF_OK, "params: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&dc, "input", m.input) == DLF_OK, "input: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&dc, "target", m.target) == DLF_OK, "target: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_optim(&dc, m.opt, m.name_ptrs) == DLF_OK && m.opt->steps == 1, "sgd state: %s", dlf_last_error());
    CHECK(strcmp(dlf_ckpt_get_meta(&dc, "model") ? dlf_ckpt_get_meta(&dc, "model") : "", m.name) == 0, "model metadata");

    /* (b) dlf's logits of the loaded weights: bit for bit its own, and PyTorch's */
    logits = exp_logits(&m, m.input);
    {   /* bit for bit when this build runs the kernel that wrote the file */
        const dlf_st_tensor *own = dlf_safetensors_find(&dc.file, "dlf_logits");
        const char *kernel = dlf_ckpt_get_meta(&dc, "kernel");
        if (kernel && strcmp(kernel, exp_kernel()) == 0)
            CHECK(own && own->size == logits->size && memcmp(own->data, logits->data, sizeof(float) * (size_t)own->size) == 0,
                  "interop %s: logits of the reloaded model equal dlf_logits bit for bit", s);
        else
            compare(s, "logits of the reloaded model vs dlf_logits (another kernel wrote them)", logits->data, own, logits->size);
    }
    snprintf(path, sizeof path, "%s/torch_logits_of_dlf_%s.safetensors", DIR, s);
    if (dlf_safetensors_load(&tl, path) == DLF_OK)
        compare(s, "dlf logits vs PyTorch's logits of the dlf-written weights", logits->data,
                dlf_safetensors_find(&tl, "torch_logits"), logits->size);
    else
        CHECK(0, "load %s: %s", path, dlf_last_error());
    dlf_tensor_free(logits);

    /* (c1) dlf continues from its checkpoint: step 2, against PyTorch's step 2 from the same file */
    snprintf(path, sizeof path, "%s/torch_%s_state.safetensors", DIR, s);
    if (dlf_ckpt_load(&tc, path) != DLF_OK) {
        CHECK(0, "load %s: %s", path, dlf_last_error());
        goto done;
    }
    exp_step(&m);
    for (i = 0; i < m.n_params; i++) {
        snprintf(what, sizeof what, "step 2 %s", m.names[i]);
        compare(s, what, m.params[i]->data, dlf_safetensors_find(&tc.file, m.names[i]), m.params[i]->size);
    }
    for (i = 0; i < m.n_params; i++) {
        char key[96];
        snprintf(key, sizeof key, "optim.momentum_buffer.%s", m.names[i]);
        snprintf(what, sizeof what, "step 2 %s", key);
        compare(s, what, m.opt->params[i].state[0], dlf_safetensors_find(&tc.file, key), m.params[i]->size);
    }
    logits = exp_logits(&m, m.input);
    compare(s, "step 2 logits, dlf resumed vs PyTorch resumed", logits->data,
            dlf_safetensors_find(&tc.file, "torch_logits"), logits->size);
    dlf_tensor_free(logits);

    /* (c2) PyTorch's own state_dict (and optimizer state) into a fresh dlf_seq, by name */
    CHECK(exp_make(&t, which, OTHER_SEED, 0) == DLF_OK, "fresh model: %s", dlf_last_error());
    check_names_strict(s, path, &tc.file, &t);
    CHECK(dlf_ckpt_get_params(&tc, t.params, t.name_ptrs, t.n_params) == DLF_OK, "torch params: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&tc, "input", t.input) == DLF_OK, "torch input: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_optim(&tc, t.opt, t.name_ptrs) == DLF_OK && t.opt->steps == 2, "torch sgd state: %s", dlf_last_error());
    for (i = 0; i < t.n_params; i++)
        CHECK(t.opt->params[i].step == 2, "interop %s: PyTorch's momentum buffer for %s loaded", s, t.names[i]);
    logits = exp_logits(&t, t.input);
    compare(s, "dlf logits of PyTorch's saved weights vs PyTorch's", logits->data,
            dlf_safetensors_find(&tc.file, "torch_logits"), logits->size);
    dlf_tensor_free(logits);
    exp_free(&t);
done:
    dlf_safetensors_free(&tl);
    dlf_ckpt_free(&dc);
    dlf_ckpt_free(&tc);
    exp_free(&m);
}

/* The BatchNorm CNN with Adam (tools/export_dlf.c, gen_reference.py's interop_bn):
   (b) dlf's file (state_dict with buffers, Adam state) into a fresh model, strict: eval logits
       equal dlf_logits and PyTorch's eval logits of the same file;
   (c1) dlf resumes and takes Adam step 3: every parameter and buffer, the Adam state and the eval
       logits match PyTorch's step 3 from the same file (torch_bncnn_state);
   (c2) PyTorch's state_dict (num_batches_tracked int64) and Adam state into a fresh model: its eval
       logits match; one more step in dlf matches PyTorch's step 4 (torch_bncnn_step4). */
static void compare_state(const char *what, exp_model *m, const dlf_safetensors *ref)
{
    char key[160];
    int i, k;
    for (i = 0; i < m->n_params; i++) {
        snprintf(key, sizeof key, "%s %s", what, m->names[i]);
        compare("bncnn", key, m->params[i]->data, dlf_safetensors_find(ref, m->names[i]), m->params[i]->size);
    }
    for (i = 0; i < m->opt->n_params; i++) {
        const dlf_optim_param *q = &m->opt->params[i];
        const dlf_st_tensor *st;
        for (k = 0; k < 2; k++) {
            char nm[128];
            snprintf(nm, sizeof nm, "optim.%s.%s", dlf_optim_state_name(m->opt->kind, k), q->name);
            snprintf(key, sizeof key, "%s %s", what, nm);
            compare("bncnn", key, q->state[k], dlf_safetensors_find(ref, nm), q->p->size);
        }
        snprintf(key, sizeof key, "optim.step.%s", q->name);
        st = dlf_safetensors_find(ref, key);
        CHECK(st && st->size == 1 && (int)st->data[0] == q->step, "interop bncnn: %s %s: dlf %d, PyTorch %g", what,
              key, q->step, st ? st->data[0] : -1.0);
    }
}

static void test_torch_bn(void)
{
    exp_model m, t;
    dlf_ckpt dc, tc, t4;
    dlf_safetensors tl;
    char path[256];
    dlf_tensor *logits;
    const char *kernel;
    GROUP("torch bn");
    dlf_ckpt_init(&dc);
    dlf_ckpt_init(&tc);
    dlf_ckpt_init(&t4);
    memset(&tl, 0, sizeof tl);
    memset(&t, 0, sizeof t);
    CHECK(exp_make(&m, EXP_BNCNN, OTHER_SEED, 0) == DLF_OK, "fresh model: %s", dlf_last_error());
    snprintf(path, sizeof path, "%s/dlf_bncnn.safetensors", DIR);
    if (dlf_ckpt_load(&dc, path) != DLF_OK) {
        CHECK(0, "load %s: %s", path, dlf_last_error());
        goto done;
    }
    check_names_strict("bncnn", path, &dc.file, &m);
    CHECK(dlf_ckpt_get_param_list(&dc, &m.pl) == DLF_OK, "state_dict: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&dc, "input", m.input) == DLF_OK, "input: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&dc, "target", m.target) == DLF_OK, "target: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_optim(&dc, m.opt, NULL) == DLF_OK && m.opt->steps == EXP_BN_STEPS, "adam state: %s", dlf_last_error());
    CHECK(m.opt->n_params > 0 && m.opt->params[0].step == EXP_BN_STEPS, "interop bncnn: Adam steps per parameter loaded");
    /* (b) */
    logits = exp_logits(&m, m.input);
    kernel = dlf_ckpt_get_meta(&dc, "kernel");
    if (kernel && strcmp(kernel, exp_kernel()) == 0) {
        const dlf_st_tensor *own = dlf_safetensors_find(&dc.file, "dlf_logits");
        CHECK(own && own->size == logits->size && memcmp(own->data, logits->data, sizeof(float) * (size_t)own->size) == 0,
              "interop bncnn: eval logits of the reloaded model equal dlf_logits bit for bit");
    } else {
        compare("bncnn", "eval logits of the reloaded model vs dlf_logits (another kernel wrote them)", logits->data,
                dlf_safetensors_find(&dc.file, "dlf_logits"), logits->size);
    }
    snprintf(path, sizeof path, "%s/torch_logits_of_dlf_bncnn.safetensors", DIR);
    if (dlf_safetensors_load(&tl, path) == DLF_OK)
        compare("bncnn", "dlf eval logits vs PyTorch's eval logits of the dlf-written state", logits->data,
                dlf_safetensors_find(&tl, "torch_logits"), logits->size);
    else
        CHECK(0, "load %s: %s", path, dlf_last_error());
    dlf_tensor_free(logits);
    /* (c1) */
    snprintf(path, sizeof path, "%s/torch_bncnn_state.safetensors", DIR);
    if (dlf_ckpt_load(&tc, path) != DLF_OK) {
        CHECK(0, "load %s: %s", path, dlf_last_error());
        goto done;
    }
    exp_step(&m);
    compare_state("step 3", &m, &tc.file);
    logits = exp_logits(&m, m.input);
    compare("bncnn", "step 3 eval logits, dlf resumed vs PyTorch resumed", logits->data,
            dlf_safetensors_find(&tc.file, "torch_logits"), logits->size);
    dlf_tensor_free(logits);
    /* (c2) */
    {
        const dlf_st_tensor *nbt = dlf_safetensors_find(&tc.file, "1.num_batches_tracked");
        CHECK(nbt && strcmp(nbt->dtype, "I64") == 0 && nbt->data[0] == EXP_BN_STEPS + 1,
              "interop bncnn: PyTorch wrote num_batches_tracked as I64 = 3 (dtype %s)", nbt ? nbt->dtype : "none");
    }
    CHECK(exp_make(&t, EXP_BNCNN, OTHER_SEED, 0) == DLF_OK, "fresh model: %s", dlf_last_error());
    check_names_strict("bncnn", path, &tc.file, &t);
    CHECK(dlf_ckpt_get_param_list(&tc, &t.pl) == DLF_OK, "torch state_dict: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&tc, "input", t.input) == DLF_OK, "torch input: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_tensor(&tc, "target", t.target) == DLF_OK, "torch target: %s", dlf_last_error());
    CHECK(dlf_ckpt_get_optim(&tc, t.opt, NULL) == DLF_OK && t.opt->steps == EXP_BN_STEPS + 1, "torch adam state: %s",
          dlf_last_error());
    logits = exp_logits(&t, t.input);
    compare("bncnn", "dlf eval logits of PyTorch's saved state vs PyTorch's", logits->data,
            dlf_safetensors_find(&tc.file, "torch_logits"), logits->size);
    dlf_tensor_free(logits);
    snprintf(path, sizeof path, "%s/torch_bncnn_step4.safetensors", DIR);
    if (dlf_ckpt_load(&t4, path) != DLF_OK) {
        CHECK(0, "load %s: %s", path, dlf_last_error());
        goto done;
    }
    exp_step(&t);
    compare_state("step 4 from PyTorch's state", &t, &t4.file);
    logits = exp_logits(&t, t.input);
    compare("bncnn", "step 4 eval logits, dlf from PyTorch's state vs PyTorch", logits->data,
            dlf_safetensors_find(&t4.file, "torch_logits"), logits->size);
    dlf_tensor_free(logits);
done:
    if (t.opt) exp_free(&t);
    dlf_safetensors_free(&tl);
    dlf_ckpt_free(&dc);
    dlf_ckpt_free(&tc);
    dlf_ckpt_free(&t4);
    exp_free(&m);
}

/* The fixtures record the micro-kernel that wrote them ("avx2-fma" normally, see the
   Makefile's reference target). dlf picks its kernel at run time, so run that one when this
   CPU has it: then the exact-bytes comparisons run on any machine with it. */
static void use_fixture_kernel(void)
{
    dlf_safetensors f;
    char k[32];
    const char *meta;
    memset(&f, 0, sizeof f);
    if (dlf_safetensors_load(&f, "tests/ref/interop/dlf_mlp.safetensors") != DLF_OK) return;
    meta = dlf_safetensors_meta(&f, "kernel");
    if (meta) {
        snprintf(k, sizeof k, "%s", meta);
        if (strchr(k, '+')) *strchr(k, '+') = 0;          /* "+contract": a compiler property */
        if (dlf_kernel_available(k)) dlf_set_kernel(k);
        printf("interop: the fixtures were written by the %s kernel; running %s\n", meta, dlf_kernel_name());
    }
    dlf_safetensors_free(&f);
}

int main(void)
{
    th_init();
    use_fixture_kernel();
    test_bytes(EXP_CNN);
    test_bytes(EXP_MLP);
    test_torch(EXP_CNN);
    test_torch(EXP_MLP);
    test_bytes(EXP_BNCNN);
    test_torch_bn();
    TEST_MAIN_END();
}
