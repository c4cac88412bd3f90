/* fuzz_safetensors_struct.c - structure-aware libFuzzer target for the safetensors reader
   (`make fuzz`), beside the byte-level fuzz_safetensors.c.

   Inputs are whole safetensors files, so tests/corpus seeds it and every crash it finds
   is a file the byte-level target and tests/test_safetensors.c can replay. A custom
   mutator (LLVMFuzzerCustomMutator) edits the JSON header as JSON rather than as bytes:
     - generates a new file from scratch: 0-6 tensors of every dtype (and unknown ones)
       with consistent offsets and data, metadata, then at most a few of the edits below;
     - duplicates a member (a tensor, a key inside one, a metadata pair, __metadata__);
     - rewrites a shape (0-6 dims, from 0 and 1 up to 2^31, 2^32, 2^64 and longer) or a
       data_offsets pair (overlapping, reversed, out of range, three numbers, negative,
       fractions, leading zeros);
     - replaces a string with a tricky one: every JSON escape, \u0000, lone and reversed
       surrogates, a valid surrogate pair, raw control and non-UTF-8 bytes, bad escapes;
     - replaces a value with a non-string (number, true, null, object, array) or with a
       deeply nested array or object (up to a few thousand levels);
     - swaps a dtype for any other (F32 ... BOOL, lower case, unknown);
     - adds trailing bytes after the JSON or after the data, truncates, pads;
     - and then fixes the 8-byte header length, or on purpose breaks it.
   A quarter of the mutations are libFuzzer's own byte-level ones, and an eighth of the
   structural ones get a byte-level pass on top.

   The oracle: any input either is refused with an error and a message, or parses into
   tensors whose sizes match their shapes and whose names and metadata keys are unique;
   a parsed file written back with dlf_safetensors_serialize parses again to the same
   names, shapes, values (bit for bit) and metadata. ASan and UBSan catch the rest. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* ---- the oracle ---------------------------------------------------------------- */

/* 1 if z is valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF):
   the format's header is UTF-8 JSON, so every name, key and value must be. */
static int utf8_ok(const char *z)
{
    const unsigned char *p = (const unsigned char *)z;
    while (*p) {
        unsigned c = *p, cp, k, n = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2
                                   : c >= 0xF0 && c <= 0xF4 ? 3 : 9;
        if (n == 9) return 0;
        cp = n ? c & (0x3F >> n) : c;
        for (k = 1; k <= n; k++) { if ((p[k] & 0xC0) != 0x80) return 0; cp = cp << 6 | (p[k] & 0x3F); }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += n + 1;
    }
    return 1;
}

static void check_roundtrip(const dlf_safetensors *st)
{
    dlf_named_tensor *nt = (dlf_named_tensor *)malloc((size_t)(st->n ? st->n : 1) * sizeof *nt);
    const char **meta = (const char **)malloc((size_t)(2 * st->n_meta + 1) * sizeof *meta);
    unsigned char *bytes;
    size_t len;
    dlf_safetensors back;
    int i, d;
    for (i = 0; i < st->n; i++) {
        dlf_tensor *t = dlf_tensor_new(st->tensors[i].ndim, st->tensors[i].shape);
        if (!t) __builtin_trap();
        if (t->size != st->tensors[i].size) __builtin_trap();
        if (t->size) memcpy(t->data, st->tensors[i].data, (size_t)t->size * sizeof(float));
        nt[i].name = st->tensors[i].name;
        nt[i].t = t;
    }
    for (i = 0; i < st->n_meta; i++) { meta[2 * i] = st->meta_keys[i]; meta[2 * i + 1] = st->meta_values[i]; }
    if (dlf_safetensors_serialize(nt, st->n, meta, st->n_meta, &bytes, &len) != DLF_OK) __builtin_trap();
    if (dlf_safetensors_parse(&back, bytes, len, "roundtrip") != DLF_OK) __builtin_trap();
    if (back.n != st->n || back.n_meta != st->n_meta) __builtin_trap();
    for (i = 0; i < st->n; i++) {
        const dlf_st_tensor *a = &st->tensors[i], *b = &back.tensors[i];
        if (strcmp(a->name, b->name) != 0 || a->ndim != b->ndim || a->size != b->size) __builtin_trap();
        for (d = 0; d < a->ndim; d++) if (a->shape[d] != b->shape[d]) __builtin_trap();
        if (a->size && memcmp(a->data, b->data, (size_t)a->size * sizeof(float)) != 0) __builtin_trap();
    }
    for (i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], back.meta_keys[i]) != 0 || strcmp(st->meta_values[i], back.meta_values[i]) != 0)
            __builtin_trap();
    dlf_safetensors_free(&back);
    DLF_FREE(bytes);
    for (i = 0; i < st->n; i++) dlf_tensor_free((dlf_tensor *)nt[i].t);
    free(nt);
    free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dlf_safetensors st;
    int i, k, d;
    if (dlf_safetensors_parse(&st, data, size, "fuzz") != DLF_OK) {
        if (dlf_last_error()[0] == 0) __builtin_trap();   /* a refusal always says why */
        return 0;
    }
    for (i = 0; i < st.n; i++) {
        long long p = 1;
        if (st.tensors[i].ndim < 0 || st.tensors[i].ndim > DLF_MAX_DIMS) __builtin_trap();
        for (d = 0; d < st.tensors[i].ndim; d++) p *= st.tensors[i].shape[d];
        if (p != st.tensors[i].size) __builtin_trap();
        for (k = 0; k < i; k++) if (strcmp(st.tensors[i].name, st.tensors[k].name) == 0) __builtin_trap();
        if (!utf8_ok(st.tensors[i].name)) __builtin_trap();
    }
    for (i = 0; i < st.n_meta; i++) {
        for (k = 0; k < i; k++) if (strcmp(st.meta_keys[i], st.meta_keys[k]) == 0) __builtin_trap();
        if (!utf8_ok(st.meta_keys[i]) || !utf8_ok(st.meta_values[i])) __builtin_trap();
    }
    check_roundtrip(&st);
    dlf_safetensors_free(&st);
    return 0;
}

/* ---- the mutator --------------------------------------------------------------- */

static uint64_t rs;
static unsigned rnd(unsigned n)
{
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return n ? (unsigned)(rs % n) : 0;
}

/* A growable string; everything stops at cap (the fuzzer's max size). */
typedef struct str { char *p; size_t n, cap; } str;
static void put(str *s, const char *b, size_t n)
{
    if (s->n + n > s->cap) n = s->cap - s->n;
    memcpy(s->p + s->n, b, n);
    s->n += n;
}
static void puts_(str *s, const char *z) { put(s, z, strlen(z)); }

static const char *const dtypes[] = { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL",
                                      "f32", "F8_E4M3", "U64", "", "F32 ", "C64" };
static const int dtype_bytes[] = { 4, 2, 2, 8, 8, 4, 2, 1, 1, 1 };
static const char *const numbers[] = { "0", "1", "2", "3", "7", "8", "255", "256", "65535", "65536", "2147483647",
    "2147483648", "4294967295", "4294967296", "9223372036854775807", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "99999999999999999999999999", "-1", "-0", "01", "00",
    "1.0", "1e3", "1E0", "0.5", "1e", "+1", "0x10", "", " 4", "4 ", "1,2" };
static const char *const strings[] = { "w", "0.weight", "__metadata__", "dtype", "shape", "data_offsets",
    "a\\\"b", "a\\\\b", "a\\/b", "\\b\\f\\n\\r\\t", "\\u0041", "\\u00e9", "\\u20ac", "\\u0000", "a\\u0000b",
    "\\ud800", "\\udc00", "\\udbff\\udfff", "\\ud83d\\ude00", "\\ude00\\ud83d", "\\ud83d\\u0041", "\\ud83d",
    "\\ud83dx", "\\u12", "\\u12g4", "\\x41", "\\", "\\'", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xff\xfe", "\xc0\x80",
    "\xed\xa0\x80", "\xf4\x90\x80\x80", "", " ", "optim.kind", "a\"b" };
static const char *const values[] = { "0", "1.5", "-3", "true", "false", "null", "{}", "[]", "[\"a\"]",
    "{\"a\":\"b\"}", "{\"a\":1}", "\"\"", "\"x\"", "[1,2]", "[[]]", "\"F32\"" };

static void put_number(str *s) { puts_(s, numbers[rnd(sizeof numbers / sizeof *numbers)]); }
static void put_string(str *s)
{
    puts_(s, "\"");
    puts_(s, strings[rnd(sizeof strings / sizeof *strings)]);
    puts_(s, "\"");
}
static void put_nested(str *s)
{
    unsigned depth = 1 + rnd(3) * rnd(1500), i;
    int obj = rnd(2);
    for (i = 0; i < depth; i++) puts_(s, obj ? "{\"a\":" : "[");
    puts_(s, rnd(2) ? "1" : "\"x\"");
    for (i = 0; i < depth; i++) puts_(s, obj ? "}" : "]");
}
static void put_value(str *s)
{
    switch (rnd(4)) {
    case 0: put_nested(s); break;
    case 1: put_number(s); break;
    case 2: put_string(s); break;
    default: puts_(s, values[rnd(sizeof values / sizeof *values)]);
    }
}
static void put_ws(str *s) { if (!rnd(8)) puts_(s, rnd(2) ? " " : "\n\t\r "); }

/* A new file: tensors of valid dtypes with consistent offsets and data from the fuzzer,
   metadata, then (often) one deliberate fault. */
static size_t generate(uint8_t *out, size_t max)
{
    char hdr[4096];
    str h;
    unsigned nt = rnd(7), nm = rnd(4), i, d;
    uint64_t off = 0, sizes[8];
    size_t hl, total, k;
    int fault = rnd(3) ? (int)rnd(12) : -1;
    h.p = hdr; h.n = 0; h.cap = sizeof hdr;
    puts_(&h, "{");
    if (nm) {
        puts_(&h, "\"__metadata__\":{");
        for (i = 0; i < nm; i++) {
            if (i) puts_(&h, ",");
            put_ws(&h);
            if (rnd(2)) { char k2[16]; snprintf(k2, sizeof k2, "\"k%u\"", rnd(3)); puts_(&h, k2); } else put_string(&h);
            puts_(&h, ":");
            if (fault == 0 && !rnd(2)) put_value(&h); else put_string(&h);
        }
        puts_(&h, "}");
        if (fault == 1) puts_(&h, ",\"__metadata__\":{}");
    }
    for (i = 0; i < nt; i++) {
        unsigned dt = rnd(fault == 2 ? 16 : 10), nd = rnd(fault == 3 ? 7 : 5);
        uint64_t elems = 1, bytes;
        char num[64];
        if (nm || i) puts_(&h, ",");
        put_ws(&h);
        if (fault == 4 && i && !rnd(2)) puts_(&h, "\"t0\"");
        else if (rnd(4)) { snprintf(num, sizeof num, "\"t%u\"", i); puts_(&h, num); }
        else put_string(&h);
        puts_(&h, ":{");
        put_ws(&h);
        puts_(&h, "\"dtype\":\"");
        puts_(&h, dtypes[dt]);
        puts_(&h, "\",\"shape\":[");
        for (d = 0; d < nd; d++) {
            unsigned v = rnd(4) ? rnd(4) : rnd(40);
            if (fault == 5 && !rnd(3)) { if (d) puts_(&h, ","); put_number(&h); continue; }
            snprintf(num, sizeof num, d ? ",%u" : "%u", v);
            puts_(&h, num);
            elems *= v;
        }
        bytes = elems * (uint64_t)(dt < 10 ? dtype_bytes[dt] : 4);
        if (fault == 6 && !rnd(2)) bytes += rnd(3) ? 1 : (uint64_t)-1 - off;
        sizes[i] = bytes;
        puts_(&h, "],\"data_offsets\":[");
        if (fault == 7 && !rnd(2)) {            /* overlapping, reversed or out of range */
            uint64_t b = rnd(2) ? off - (off ? rnd((unsigned)off + 1) : 0) : off + rnd(64), e = b + bytes;
            if (!rnd(4)) { uint64_t t = b; b = e; e = t; }
            snprintf(num, sizeof num, "%llu,%llu", (unsigned long long)b, (unsigned long long)e);
            puts_(&h, num);
        } else if (fault == 8 && !rnd(2)) {
            put_number(&h); puts_(&h, ","); put_number(&h);
            if (rnd(2)) { puts_(&h, ","); put_number(&h); }
        } else {
            snprintf(num, sizeof num, "%llu,%llu", (unsigned long long)off, (unsigned long long)(off + bytes));
            puts_(&h, num);
        }
        puts_(&h, "]");
        if (fault == 9 && !rnd(2)) { puts_(&h, rnd(2) ? ",\"dtype\":\"F32\"" : ",\"extra\":"); if (h.p[h.n - 1] == ':') put_value(&h); }
        puts_(&h, "}");
        off += bytes;
    }
    puts_(&h, "}");
    if (fault == 10) { if (rnd(2)) put_value(&h); else puts_(&h, rnd(2) ? "x" : "}"); }
    while (rnd(2) ? (8 + h.n) % 8 : 0) puts_(&h, " ");
    hl = h.n;
    if (fault == 11) hl = rnd(2) ? hl + rnd(16) - 8 : (size_t)rnd(2) << (rnd(2) ? 27 : 63);
    if (8 + h.n > max) return 0;
    for (k = 0; k < 8; k++) out[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(out + 8, h.p, h.n);
    total = 8 + h.n;
    if (!rnd(8)) off += 1 + rnd(4);                        /* trailing data bytes */
    if (off > max - total) off = max - total;              /* never past the buffer */
    for (k = 0; k < off; k++) out[total + k] = (uint8_t)rnd(256);
    (void)sizes;
    return total + (size_t)off;
}

/* Span of the JSON value starting at or after position i of the header text (skipping
   strings, matching brackets); returns its end, or i when there is none. */
static size_t value_end_(const char *t, size_t n, size_t i);
static size_t value_end(const char *t, size_t n, size_t i)
{
    size_t e = value_end_(t, n, i);
    return e > n ? n : e;
}
static size_t value_end_(const char *t, size_t n, size_t i)
{
    int depth = 0;
    while (i < n && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r')) i++;
    for (; i < n; i++) {
        char c = t[i];
        if (c == '"') { for (i++; i < n && t[i] != '"'; i++) if (t[i] == '\\') i++; if (!depth) return i + 1; continue; }
        if (c == '[' || c == '{') depth++;
        else if (c == ']' || c == '}') { if (!depth) return i; if (!--depth) return i + 1; }
        else if (!depth && (c == ',')) return i;
    }
    return n;
}

/* A random position of character c in t (n bytes), or n when absent. */
static size_t find_any(const char *t, size_t n, char c)
{
    size_t i, start = n ? rnd((unsigned)n) : 0;
    for (i = 0; i < n; i++) if (t[(start + i) % n] == c) return (start + i) % n;
    return n;
}

/* One structural edit of the header text t (n bytes) into o. */
static void edit(const char *t, size_t n, str *o)
{
    size_t i, e;
    switch (rnd(8)) {
    case 0:   /* duplicate the member whose key starts at a random quote: "k":v -> "k":v,"k":v */
        i = find_any(t, n, '"');
        if (i == n) break;
        e = value_end(t, n, i);               /* the key, then its value */
        if (e < n && t[e] == ':') e = value_end(t, n, e + 1);
        put(o, t, e); puts_(o, ","); put(o, t + i, e - i); put(o, t + e, n - e);
        return;
    case 1: { /* rewrite a shape or a data_offsets array */
        const char *key = rnd(2) ? "\"shape\"" : "\"data_offsets\"";
        const char *at = NULL;
        size_t j;
        for (j = 0; j + strlen(key) <= n; j++) if (!memcmp(t + j, key, strlen(key)) && (!at || rnd(2))) at = t + j;
        if (!at) break;
        i = (size_t)(at - t) + strlen(key);
        while (i < n && t[i] != '[') i++;
        if (i >= n) break;
        e = value_end(t, n, i);
        put(o, t, i);
        puts_(o, "[");
        {
            unsigned k, nd = rnd(7);
            for (k = 0; k < nd; k++) { if (k) puts_(o, ","); put_ws(o); put_number(o); }
        }
        puts_(o, "]");
        put(o, t + e, n - e);
        return;
    }
    case 2:   /* replace a string */
        i = find_any(t, n, '"');
        if (i == n) break;
        e = value_end(t, n, i);
        put(o, t, i); put_string(o); put(o, t + e, n - e);
        return;
    case 3:   /* replace the value after a ':' */
        i = find_any(t, n, ':');
        if (i == n) break;
        e = value_end(t, n, i + 1);
        put(o, t, i + 1); put_value(o); put(o, t + e, n - e);
        return;
    case 4: { /* swap a dtype */
        const char *at = NULL;
        size_t j;
        for (j = 0; j + 9 <= n; j++) if (!memcmp(t + j, "\"dtype\":\"", 9) && (!at || rnd(2))) at = t + j;
        if (!at) break;
        i = (size_t)(at - t) + 8;
        e = value_end(t, n, i);
        put(o, t, i); puts_(o, "\""); puts_(o, dtypes[rnd(16)]); puts_(o, "\""); put(o, t + e, n - e);
        return;
    }
    case 5:   /* a number anywhere */
        for (i = rnd((unsigned)n + 1); i < n && (t[i] < '0' || t[i] > '9'); i++) {}
        if (i >= n) break;
        for (e = i; e < n && t[e] >= '0' && t[e] <= '9'; e++) {}
        put(o, t, i); put_number(o); put(o, t + e, n - e);
        return;
    case 6:   /* trailing bytes after the JSON object, or a cut */
        if (rnd(2)) { put(o, t, n); if (rnd(2)) put_value(o); else puts_(o, rnd(2) ? "," : "\x00"); }
        else put(o, t, rnd((unsigned)n + 1));
        return;
    default:  /* a deeply nested value in place of a tensor or metadata object */
        i = find_any(t, n, ':');
        if (i == n) break;
        e = value_end(t, n, i + 1);
        put(o, t, i + 1); put_nested(o); put(o, t + e, n - e);
        return;
    }
    put(o, t, n);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    static char hbuf[1 << 16], obuf[1 << 16];
    static uint8_t dbuf[1 << 16];
    uint64_t hlen = 0;
    size_t hn, dn, k, total;
    str o;
    int r, edits;
    rs = seed * 0x9E3779B97F4A7C15ull + 1;
    if (max_size > sizeof dbuf) max_size = sizeof dbuf;
    if (size == 0 || !rnd(6)) {
        total = generate(data, max_size);
        return total ? total : LLVMFuzzerMutate(data, size, max_size);
    }
    if (rnd(4) == 0) return LLVMFuzzerMutate(data, size, max_size);
    /* split into header text and data */
    for (k = 0; k < 8 && k < size; k++) hlen |= (uint64_t)data[k] << (8 * k);
    if (size >= 8 && hlen <= size - 8) { hn = (size_t)hlen; memcpy(hbuf, data + 8, hn); dn = size - 8 - hn; memcpy(dbuf, data + 8 + hn, dn); }
    else { hn = size < 8 ? size : size - 8; memcpy(hbuf, size < 8 ? data : data + 8, hn); dn = 0; }
    edits = 1 + (int)rnd(3);
    for (r = 0; r < edits; r++) {
        o.p = obuf; o.n = 0; o.cap = max_size > 8 ? max_size - 8 : 0;
        edit(hbuf, hn, &o);
        memcpy(hbuf, obuf, o.n);
        hn = o.n;
    }
    if (!rnd(4)) { dn = rnd(2) ? dn + rnd(9) : rnd((unsigned)dn + 1); for (k = 0; k < dn; k++) if (!rnd(8)) dbuf[k] = (uint8_t)rnd(256); }
    if (8 + hn > max_size) return LLVMFuzzerMutate(data, size, max_size);
    if (dn > max_size - 8 - hn) dn = max_size - 8 - hn;
    hlen = hn;
    if (!rnd(16)) hlen += rnd(2) ? rnd(8) : (uint64_t)-(int64_t)rnd(8);
    for (k = 0; k < 8; k++) data[k] = (uint8_t)(hlen >> (8 * k));
    memcpy(data + 8, hbuf, hn);
    memcpy(data + 8 + hn, dbuf, dn);
    total = 8 + hn + dn;
    if (!rnd(8)) total = LLVMFuzzerMutate(data, total, max_size);
    return total;
}
