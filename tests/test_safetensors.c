/* test_safetensors.c - stage 15: safetensors round trips, dtype conversion, atomic
   saves, and the corpus of corrupted safetensors and IDX files in tests/corpus/,
   each of which must be rejected with its expected message. Then a few thousand
   seeded random mutations of valid files, which must never crash or over-read
   (run under `make asan` to make that a real check). */
#include <stdlib.h>
#ifdef _WIN32
#include <direct.h>
#include <process.h>
#define TEST_MKDIR(path) _mkdir(path)
#define TEST_RMDIR(path) _rmdir(path)  /* remove() does not remove directories on Windows */
#else
#include <sys/stat.h>
#define TEST_MKDIR(path) mkdir(path, 0755)
#define TEST_RMDIR(path) remove(path)
#endif
#define DLF_IMPLEMENTATION
#include "harness.h"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)n + 1);
    if (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_corpus(void)
{
    FILE *f = fopen("tests/corpus/EXPECT", "r");
    char line[512];
    int n = 0;
    GROUP("corpus");
    CHECK(f != NULL, "tests/corpus/EXPECT is readable (run from the repository root)");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *file, *kind, *expect, path[300];
        int rc;
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = 0;
        file = strtok(line, "\t");
        kind = strtok(NULL, "\t");
        expect = strtok(NULL, "\t");
        if (!file || !kind || !expect) continue;
        snprintf(path, sizeof path, "tests/corpus/%s", file);
        dlf_clear_error();
        if (kind[0] == 's') {
            dlf_safetensors st;
            rc = dlf_safetensors_load(&st, path);
            if (rc == DLF_OK) dlf_safetensors_free(&st);
        } else {
            dlf_idx x;
            rc = dlf_idx_load(path, &x);
            if (rc == DLF_OK) dlf_idx_free(&x);
        }
        if (strcmp(expect, "OK") == 0) {
            CHECK(rc == DLF_OK, "%s must load, got %d: %s", file, rc, dlf_last_error());
        } else {
            CHECK(rc == DLF_ERR_FORMAT, "%s must be rejected as DLF_ERR_FORMAT, got %d", file, rc);
            CHECK(strstr(dlf_last_error(), expect) != NULL, "%s: message \"%s\" lacks \"%s\"", file, dlf_last_error(), expect);
            CHECK(strstr(dlf_last_error(), file) != NULL, "%s: message names the file", file);
        }
        n++;
    }
    fclose(f);
    CHECK(n >= 50, "corpus has %d files", n);
}

static void test_roundtrip(void)
{
    dlf_rng rng;
    int s4[4] = {2, 1, 3, 2}, s0[1] = {0}, i;
    dlf_tensor *a = dlf_tensor_new4(2, 3, 4, 5), *b = dlf_tensor_new(0, s4), *c = dlf_tensor_new(1, s0);
    dlf_tensor *d = dlf_tensor_new(4, s4);
    dlf_named_tensor nt[4];
    const char *meta[6] = {"epoch", "3", "quote\"d", "back\\slash", "unicode", "caf\xc3\xa9"};
    dlf_safetensors st;
    unsigned char *bytes;
    size_t len;
    uint64_t hlen = 0;
    int rc;
    GROUP("roundtrip");
    dlf_rng_seed(&rng, 2);
    dlf_fill_normal(a, &rng, 0, 1);
    b->data[0] = -3.5f;
    dlf_fill_normal(d, &rng, 0, 1);
    d->data[0] = INFINITY;
    d->data[1] = -0.0f;
    nt[0].name = "0.weight"; nt[0].t = a;
    nt[1].name = "1.num_batches_tracked"; nt[1].t = b;
    nt[2].name = "empty"; nt[2].t = c;
    nt[3].name = "we\"ird\\name\n"; nt[3].t = d;
    rc = dlf_safetensors_serialize(nt, 4, meta, 3, &bytes, &len);
    CHECK(rc == DLF_OK, "serialize: %s", dlf_last_error());
    for (i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i];
    CHECK((8 + hlen) % 8 == 0, "data starts 8-byte aligned (header %llu)", (unsigned long long)hlen);
    CHECK(bytes[8 + hlen - 1] == ' ' || bytes[8 + hlen - 1] == '}', "header padded with spaces");
    rc = dlf_safetensors_parse(&st, bytes, len, "memory");
    CHECK(rc == DLF_OK, "parse what we wrote: %s", dlf_last_error());
    if (rc == DLF_OK) {
        const dlf_st_tensor *ta = dlf_safetensors_find(&st, "0.weight");
        const dlf_st_tensor *tb = dlf_safetensors_find(&st, "1.num_batches_tracked");
        const dlf_st_tensor *tc = dlf_safetensors_find(&st, "empty");
        const dlf_st_tensor *td = dlf_safetensors_find(&st, "we\"ird\\name\n");
        CHECK(st.n == 4 && ta && tb && tc && td, "all four tensors found by name");
        if (ta && tb && tc && td) {
            CHECK(ta->ndim == 4 && ta->shape[3] == 5 && memcmp(ta->data, a->data, sizeof(float) * a->size) == 0, "4-d tensor bit-exact");
            CHECK(tb->ndim == 0 && tb->size == 1 && tb->data[0] == -3.5f, "0-d scalar");
            CHECK(tc->ndim == 1 && tc->size == 0, "empty tensor");
            CHECK(memcmp(td->data, d->data, sizeof(float) * d->size) == 0, "inf and -0 bit-exact");
            CHECK(strcmp(ta->dtype, "F32") == 0, "dtype F32");
        }
        CHECK(dlf_safetensors_meta(&st, "epoch") && strcmp(dlf_safetensors_meta(&st, "epoch"), "3") == 0, "metadata epoch");
        CHECK(dlf_safetensors_meta(&st, "quote\"d") && strcmp(dlf_safetensors_meta(&st, "quote\"d"), "back\\slash") == 0, "escaped metadata");
        CHECK(dlf_safetensors_meta(&st, "unicode") && strcmp(dlf_safetensors_meta(&st, "unicode"), "caf\xc3\xa9") == 0, "UTF-8 metadata");
        CHECK(dlf_safetensors_meta(&st, "missing") == NULL, "absent key is NULL");
        CHECK(dlf_safetensors_find(&st, "nope") == NULL, "absent tensor is NULL");
        dlf_safetensors_free(&st);
    }
    free(bytes);
    nt[1].name = "0.weight";
    CHECK(dlf_safetensors_serialize(nt, 2, NULL, 0, &bytes, &len) == DLF_ERR_ARG, "duplicate names refused on write");
    CHECK(strstr(dlf_last_error(), "duplicate name") != NULL, "message: %s", dlf_last_error());
    dlf_tensor_free(a); dlf_tensor_free(b); dlf_tensor_free(c); dlf_tensor_free(d);
}

/* a one-tensor file of the given dtype, built by hand */
static size_t make_file(unsigned char *out, const char *dtype, int n, const void *data, int elem)
{
    char h[200];
    int hl, pad;
    uint64_t hlen;
    int i;
    hl = snprintf(h, sizeof h, "{\"x\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[0,%d]}}", dtype, n, n * elem);
    pad = (8 - (8 + hl) % 8) % 8;
    memset(h + hl, ' ', (size_t)pad);
    hlen = (uint64_t)(hl + pad);
    for (i = 0; i < 8; i++) out[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(out + 8, h, (size_t)hlen);
    for (i = 0; i < n; i++) {  /* little-endian whatever the host's order, as the format says */
        const unsigned char *src = (const unsigned char *)data + (size_t)i * (size_t)elem;
        uint64_t v = 0;
        int k;
        if (elem == 8) { uint64_t x; memcpy(&x, src, 8); v = x; }
        else if (elem == 4) { uint32_t x; memcpy(&x, src, 4); v = x; }
        else if (elem == 2) { uint16_t x; memcpy(&x, src, 2); v = x; }
        else v = src[0];
        for (k = 0; k < elem; k++) out[8 + hlen + (size_t)i * (size_t)elem + (size_t)k] = (unsigned char)(v >> (8 * k));
    }
    return 8 + (size_t)hlen + (size_t)(n * elem);
}

static void test_dtypes(void)
{
    unsigned char file[512];
    uint16_t f16[5] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7C00};      /* 1, -2, 0.33325, 2^-24, inf */
    uint16_t bf16[3] = {0x3F80, 0xC0A0, 0x3EAA};                     /* 1, -5, 0.33203125 */
    double f64[3] = {1.5, -1e-3, 12345.678};
    int64_t i64[3] = {0, -7, 1000000};
    int32_t i32[2] = {-3, 42};
    uint8_t u8[3] = {0, 128, 255};
    float want16[5] = {1.0f, -2.0f, 0.33325195f, 5.9604645e-8f, INFINITY};
    float want_bf[3] = {1.0f, -5.0f, 0.33203125f};
    float want64[3] = {1.5f, -1e-3f, 12345.678f};
    float want_i64[3] = {0, -7, 1000000};
    float want_i32[2] = {-3, 42};
    float want_u8[3] = {0, 128, 255};
    dlf_safetensors st;
    size_t n;
    GROUP("dtypes");
#define DT(name, arr, cnt, elem, want)                                                   \
    n = make_file(file, name, cnt, arr, elem);                                           \
    CHECK(dlf_safetensors_parse(&st, file, n, name) == DLF_OK, "%s loads: %s", name, dlf_last_error()); \
    if (st.n == 1) { CHECK_CLOSE(st.tensors[0].data, want, cnt, 0, 1e-7f, name);         \
        CHECK(strcmp(st.tensors[0].dtype, name) == 0, "dtype recorded"); }               \
    dlf_safetensors_free(&st);
    DT("F16", f16, 5, 2, want16)
    DT("BF16", bf16, 3, 2, want_bf)
    DT("F64", f64, 3, 8, want64)
    DT("I64", i64, 3, 8, want_i64)
    DT("I32", i32, 2, 4, want_i32)
    DT("U8", u8, 3, 1, want_u8)
#undef DT
}

static void test_files(void)
{
    dlf_tensor *a = dlf_tensor_new2(2, 2);
    dlf_named_tensor nt[1];
    dlf_safetensors st;
    const char *path = "build/test_ckpt.safetensors";
    char blocker[128];
    int rc;
    GROUP("files");
    nt[0].name = "w";
    nt[0].t = a;
    dlf_fill(a, 1.0f);
    rc = dlf_safetensors_save(path, nt, 1, NULL, 0);
    CHECK(rc == DLF_OK, "save: %s", dlf_last_error());
    rc = dlf_safetensors_load(&st, "build/no/such/file.safetensors");
    CHECK(rc == DLF_ERR_IO && strstr(dlf_last_error(), "build/no/such/file.safetensors"), "missing file: %s", dlf_last_error());
    /* a save that cannot complete leaves the old file as it was: the lock file (POSIX)
       or the first temporary name (Windows, no lock) is taken by a directory */
#ifdef _WIN32
    snprintf(blocker, sizeof blocker, "%s.%lu.0.tmp", path, (unsigned long)_getpid());
#else
    snprintf(blocker, sizeof blocker, "%s.lock", path);
    remove(blocker);
#endif
    TEST_MKDIR(blocker);
    dlf_fill(a, 2.0f);
    rc = dlf_safetensors_save(path, nt, 1, NULL, 0);
    CHECK(rc == DLF_ERR_IO, "failed save reports DLF_ERR_IO (%d): %s", rc, dlf_last_error());
    TEST_RMDIR(blocker);
    rc = dlf_safetensors_load(&st, path);
    CHECK(rc == DLF_OK && st.tensors[0].data[0] == 1.0f, "old checkpoint intact after a failed save");
    if (rc == DLF_OK) dlf_safetensors_free(&st);
    rc = dlf_safetensors_save(path, nt, 1, NULL, 0);
    rc = rc == DLF_OK ? dlf_safetensors_load(&st, path) : rc;
    CHECK(rc == DLF_OK && st.tensors[0].data[0] == 2.0f, "a later save replaces it");
    if (rc == DLF_OK) dlf_safetensors_free(&st);
    remove(path);
#ifndef _WIN32
    remove("build/test_ckpt.safetensors.lock");
#endif
    dlf_tensor_free(a);
}

/* Seeded mutations of valid files: flips, overwrites with special bytes, cuts,
   duplicated spans. Each result must parse or be refused; nothing else. */
static void test_mutations(void)
{
    const char *files[3] = {"tests/corpus/good.safetensors", "tests/corpus/good-images-idx3-ubyte", "tests/corpus/good-labels-idx1-ubyte"};
    static const unsigned char special[] = {0, 1, 0x7f, 0x80, 0xff, '"', '\\', '{', '}', '[', ']', ',', ':', '9', '-', ' '};
    dlf_rng rng;
    int fi, it, ok = 0, refused = 0, other = 0;
    GROUP("mutations");
    dlf_rng_seed(&rng, 99);
    for (fi = 0; fi < 3; fi++) {
        size_t len;
        unsigned char *orig = slurp(files[fi], &len), *m;
        CHECK(orig != NULL, "read %s", files[fi]);
        if (!orig) continue;
        m = (unsigned char *)malloc(len * 2 + 16);
        for (it = 0; it < 3000; it++) {
            size_t mlen = len;
            int k, edits = 1 + (int)dlf_rng_below(&rng, 4), rc;
            memcpy(m, orig, len);
            for (k = 0; k < edits; k++) {
                size_t pos = mlen ? dlf_rng_below(&rng, (uint32_t)mlen) : 0;
                switch (dlf_rng_below(&rng, 4)) {
                case 0: if (mlen) m[pos] ^= (unsigned char)(1u << dlf_rng_below(&rng, 8)); break;
                case 1: if (mlen) m[pos] = special[dlf_rng_below(&rng, sizeof special)]; break;
                case 2: mlen = pos; break;
                default: {
                    size_t span = dlf_rng_below(&rng, 8);
                    if (pos + span <= mlen && mlen + span <= len * 2) {
                        memmove(m + pos + span, m + pos, mlen - pos);
                        mlen += span;
                    }
                }
                }
            }
            {   /* an exact-size copy, so ASan sees any read past the end */
                unsigned char *exact = (unsigned char *)malloc(mlen ? mlen : 1);
                memcpy(exact, m, mlen);
                if (fi == 0) {
                    dlf_safetensors st;
                    rc = dlf_safetensors_parse(&st, exact, mlen, "mutant");
                    if (rc == DLF_OK) {
                        int t, good = 1;
                        for (t = 0; t < st.n; t++) {
                            long long p = 1;
                            int d;
                            for (d = 0; d < st.tensors[t].ndim; d++) p *= st.tensors[t].shape[d];
                            good &= p == st.tensors[t].size;
                        }
                        if (!good) other++;
                        dlf_safetensors_free(&st);
                    }
                } else {
                    dlf_idx x;
                    rc = dlf_idx_parse(exact, mlen, "mutant", &x);
                    if (rc == DLF_OK) {
                        size_t p = 1;
                        int d;
                        for (d = 0; d < x.ndim; d++) p *= (size_t)x.dims[d];
                        if (p != x.size || 4 + 4 * (size_t)x.ndim + p != mlen) other++;
                        dlf_idx_free(&x);
                    }
                }
                free(exact);
            }
            if (rc == DLF_OK) ok++;
            else if (rc == DLF_ERR_FORMAT) refused++;
            else other++;
        }
        free(m);
        free(orig);
    }
    CHECK(other == 0, "every mutant either loads consistently or is refused as a format error (%d odd)", other);
    CHECK(refused > 0 && ok > 0, "mutants: %d loaded, %d refused", ok, refused);
    printf("  mutations: %d loaded, %d refused\n", ok, refused);
}

/* A file from a JSON header and n data bytes (zeros): parse it, return the code. */
static int parse_header(const char *json, size_t n_data, dlf_safetensors *st)
{
    unsigned char buf[1024];
    size_t h = strlen(json), i;
    memset(buf, 0, sizeof buf);
    for (i = 0; i < 8; i++) buf[i] = (unsigned char)(((uint64_t)h >> (8 * i)) & 0xFF);
    memcpy(buf + 8, json, h);
    memset(st, 0, sizeof *st);
    return dlf_safetensors_parse(st, buf, 8 + h + n_data, "header");
}

/* Strict parsing: what the reference reader accepts loads, whatever the order of the
   entries; an escaped NUL, which would cut a C string short, is refused. */
static void test_strict(void)
{
    dlf_safetensors st;
    int rc;
    GROUP("strict parsing");
    rc = parse_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 4, &st);
    CHECK(rc == DLF_OK && st.n == 2, "a zero-size tensor after a non-empty one at the same offset loads: %s", dlf_last_error());
    if (rc == DLF_OK) dlf_safetensors_free(&st);
    rc = parse_header("{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_OK && st.n == 2, "and before it: %s", dlf_last_error());
    if (rc == DLF_OK) dlf_safetensors_free(&st);
    rc = parse_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "overlap"), "two tensors on the same bytes: %s", dlf_last_error());
    rc = parse_header("{\"w\":{\"dtype\":\"F32\\u0000junk\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "NUL"), "\\u0000 in a dtype refused: %s", dlf_last_error());
    rc = parse_header("{\"0.weight\\u0000evil\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "NUL"), "\\u0000 in a name refused: %s", dlf_last_error());
    rc = parse_header("{\"__metadata__\":{\"k\":\"v\\u0000\"},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "NUL"), "\\u0000 in metadata refused: %s", dlf_last_error());
    rc = parse_header("{\"caf\\u00e9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_OK && st.n == 1 && strcmp(st.tensors[0].name, "caf\xc3\xa9") == 0, "other escapes still decode: %s", dlf_last_error());
    if (rc == DLF_OK) dlf_safetensors_free(&st);
    /* UTF-16 surrogate pairs (what Python's json.dumps writes for characters past U+FFFF)
       decode to one 4-byte UTF-8 character; a raw UTF-8 name is kept as it is and written
       back the same; lone surrogates and bytes that are not UTF-8 are refused (found by
       fuzz/fuzz_safetensors_struct.c: an overlong "\xc0\x80", a hidden NUL, was accepted) */
    rc = parse_header("{\"__metadata__\":{\"k\":\"\\ud83d\\ude00!\"},\"w\\uD83D\\uDE00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_OK && strcmp(st.tensors[0].name, "w\xf0\x9f\x98\x80") == 0 &&
          strcmp(dlf_safetensors_meta(&st, "k"), "\xf0\x9f\x98\x80!") == 0, "a surrogate pair decodes to U+1F600: %s", dlf_last_error());
    if (rc == DLF_OK) {
        dlf_named_tensor nt[1];
        const char *meta[2];
        unsigned char *bytes;
        size_t len;
        dlf_safetensors back;
        dlf_tensor *t = dlf_tensor_new1(1);
        nt[0].name = st.tensors[0].name;
        nt[0].t = t;
        meta[0] = "k"; meta[1] = st.meta_values[0];
        rc = dlf_safetensors_serialize(nt, 1, meta, 1, &bytes, &len);
        rc = rc == DLF_OK ? dlf_safetensors_parse(&back, bytes, len, "back") : rc;
        CHECK(rc == DLF_OK && strcmp(back.tensors[0].name, st.tensors[0].name) == 0 &&
              strcmp(back.meta_values[0], st.meta_values[0]) == 0, "and writes back as the same UTF-8: %s", dlf_last_error());
        if (rc == DLF_OK) { dlf_safetensors_free(&back); DLF_FREE(bytes); }
        dlf_tensor_free(t);
        dlf_safetensors_free(&st);
    }
    rc = parse_header("{\"w\\ud83d\\u0041\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "surrogate"), "a high surrogate before a non-surrogate: %s", dlf_last_error());
    rc = parse_header("{\"w\\ud83d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "surrogate"), "a high surrogate at the end: %s", dlf_last_error());
    rc = parse_header("{\"w\\ude00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "lone low surrogate"), "a lone low surrogate: %s", dlf_last_error());
    rc = parse_header("{\"\xc0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_ERR_FORMAT && strstr(dlf_last_error(), "not valid UTF-8") && strstr(dlf_last_error(), "byte 10"),
          "an overlong NUL in a name: %s", dlf_last_error());
    rc = parse_header("{\"caf\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st);
    CHECK(rc == DLF_OK && strcmp(st.tensors[0].name, "caf\xc3\xa9") == 0, "raw UTF-8 loads: %s", dlf_last_error());
    if (rc == DLF_OK) dlf_safetensors_free(&st);
}

int main(void)
{
    th_init();
    test_corpus();
    test_roundtrip();
    test_strict();
    test_dtypes();
    test_files();
    test_mutations();
    TEST_MAIN_END();
}
