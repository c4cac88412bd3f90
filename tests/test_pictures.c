/* test_pictures.c - stage 16: SVG pictures and activation telemetry.

   1. SVG: every picture written here is checked by check_svg: it exists, no path.tmp is
      left behind, `xmllint --noout` accepts it as well-formed XML (SKIP when xmllint is not
      installed, never a pass), and `rsvg-convert` renders it to a non-empty PNG (SKIP when
      librsvg2-bin is not installed). Plus: XML escaping of text, NaN/inf points breaking the
      line, a legend only for more than one series, nice ticks (no 0.30000000000000004),
      decade ticks on log axes, the marker, an error naming the path;
   2. the heat map's embedded PNG, decoded here by a second, independent reader (table CRC-32,
      palette, stored deflate blocks, adler-32) and its colors checked;
   3. telemetry: mean, std, fraction near zero and the 40-bin histogram against a direct
      computation, the Sequential hook (every layer, chosen kinds), marks, eval mode and a
      detached tape record nothing, off changes no output, a full buffer drops and counts,
      a recording step allocates nothing, and under dlf_fit one step is recorded per
      optimizer step (the validation pass, in eval mode, none). */
#include <stdlib.h>
#include <sys/stat.h>
#ifdef _WIN32
#include <direct.h>
#define TEST_MKDIR(path) _mkdir(path)
#else
#define TEST_MKDIR(path) mkdir(path, 0755)
#endif
#define TH_COUNT_ALLOCS
#define DLF_IMPLEMENTATION
#include "harness.h"

#define DIR "build/test_pictures"

static int have_xmllint, have_rsvg;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; if (len) *len = (size_t)n; }
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    const char *p = hay;
    while ((p = strstr(p, needle)) != NULL) { n++; p += strlen(needle); }
    return n;
}

/* Well-formed (xmllint) and renderable (rsvg-convert), or SKIP; returns the file's text. */
static char *check_svg(const char *path)
{
    char cmd[1200], tmp[1100], png[1100];
    struct stat st;
    char *text;
    size_t len = 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(stat(tmp, &st) != 0, "%s: the temporary file is still there", tmp);
    text = slurp(path, &len);
    CHECK(text && len > 100 && !strncmp(text, "<?xml", 5) && strstr(text, "</svg>"), "%s: not an SVG", path);
    if (!text) return NULL;
    if (have_xmllint) {
        snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", path);
        CHECK(system(cmd) == 0, "%s: xmllint says it is not well-formed", path);
    }
    if (have_rsvg) {
        size_t plen = 0;
        char *p;
        snprintf(png, sizeof png, "%s.png", path);
        remove(png);
        snprintf(cmd, sizeof cmd, "rsvg-convert -o '%s' '%s'", png, path);
        CHECK(system(cmd) == 0, "%s: rsvg-convert failed", path);
        p = slurp(png, &plen);
        CHECK(p && plen > 100 && !memcmp(p, "\x89PNG", 4), "%s: rsvg-convert gave no PNG (%zu bytes)", path, plen);
        free(p);
    }
    return text;
}

static void test_lines(void)
{
    float x[50], y1[50], y2[50], y3[50], lx[40], ly[40];
    dlf_series s[3];
    dlf_plot_cfg cfg;
    char *t;
    int i;
    GROUP("svg lines");
    for (i = 0; i < 50; i++) {
        x[i] = (float)i;
        y1[i] = 0.97f * i / 49.0f;
        y2[i] = (float)sin(i * 0.2);
        y3[i] = 0.5f;
    }
    y2[10] = (float)NAN;   /* a NaN and an inf break the line */
    y2[30] = (float)HUGE_VAL;
    memset(s, 0, sizeof s);
    memset(&cfg, 0, sizeof cfg);
    s[0].name = "train <loss> & \"more\""; s[0].x = x; s[0].y = y1; s[0].n = 50;
    cfg.title = "a < b & 'c'";
    cfg.xlabel = "step";
    cfg.ylabel = "loss";
    CHECK(dlf_svg_lines(DIR "/one.svg", &cfg, s, 1) == DLF_OK, "one series: %s", dlf_last_error());
    t = check_svg(DIR "/one.svg");
    if (t) {
        CHECK(strstr(t, "a &lt; b &amp; &apos;c&apos;") && !strstr(t, "a < b"), "title escaped");
        CHECK(!strstr(t, "train &lt;loss&gt;"), "no legend for one series");
        CHECK(count(t, "<polyline") == 1, "one line");
        CHECK(strstr(t, ">0.2<") && strstr(t, ">1<") && !strstr(t, "0.30000000000000004") && !strstr(t, "0.6000000000000001"),
              "nice ticks 0, 0.2, ..., 1");
        free(t);
    }
    s[1].name = "sin"; s[1].y = y2; s[1].n = 50;              /* x NULL: 0, 1, ... */
    s[2].name = "flat"; s[2].x = x; s[2].y = y3; s[2].n = 50;
    cfg.has_mark = 1; cfg.mark_x = 20.0f; cfg.mark_label = "mark <here>";
    CHECK(dlf_svg_lines(DIR "/three.svg", &cfg, s, 3) == DLF_OK, "three series: %s", dlf_last_error());
    t = check_svg(DIR "/three.svg");
    if (t) {
        CHECK(strstr(t, "train &lt;loss&gt; &amp; &quot;more&quot;") && strstr(t, ">sin<") && strstr(t, ">flat<"),
              "legend with every name, escaped");
        CHECK(count(t, "<polyline") == 5, "NaN and inf split the sin line in three: %d lines", count(t, "<polyline"));
        CHECK(strstr(t, "mark &lt;here&gt;") && strstr(t, "stroke-dasharray"), "the marker");
        CHECK(!strstr(t, "nan") && !strstr(t, "inf"), "no nan or inf in the coordinates");
        free(t);
    }
    /* log x: an LR finder's curve from 1e-7 to 10, the suggestion marked */
    for (i = 0; i < 40; i++) {
        lx[i] = (float)pow(10.0, -7.0 + 8.0 * i / 39.0);
        ly[i] = 2.3f - (float)i * 0.03f + (i > 30 ? (float)(i - 30) * 0.5f : 0.0f);
    }
    lx[0] = 0.0f;   /* <= 0 on a log axis: skipped */
    memset(&cfg, 0, sizeof cfg);
    cfg.title = "LR finder"; cfg.xlabel = "learning rate"; cfg.ylabel = "loss";
    cfg.logx = 1; cfg.has_mark = 1; cfg.mark_x = 1e-3f; cfg.mark_label = "suggestion 1e-3";
    s[0].name = "loss"; s[0].x = lx; s[0].y = ly; s[0].n = 40;
    CHECK(dlf_svg_lines(DIR "/lr_find.svg", &cfg, s, 1) == DLF_OK, "log x: %s", dlf_last_error());
    t = check_svg(DIR "/lr_find.svg");
    if (t) {
        CHECK(strstr(t, ">1e-7<") && strstr(t, ">1e-3<") && strstr(t, ">1e1<"), "decade ticks 1e-7 .. 1e1");
        free(t);
    }
    cfg.logx = 0; cfg.logy = 1;
    for (i = 0; i < 40; i++) ly[i] = (float)pow(10.0, -i / 10.0);
    s[0].x = NULL;
    CHECK(dlf_svg_lines(DIR "/logy.svg", &cfg, s, 1) == DLF_OK, "log y");
    free(check_svg(DIR "/logy.svg"));
    /* nothing finite at all still makes a valid picture */
    for (i = 0; i < 5; i++) y3[i] = (float)NAN;
    s[0].y = y3; s[0].n = 5;
    CHECK(dlf_svg_lines(DIR "/empty.svg", NULL, s, 1) == DLF_OK, "all NaN");
    free(check_svg(DIR "/empty.svg"));
    /* errors name the path */
    CHECK(dlf_svg_lines(DIR "/no/such/dir/x.svg", &cfg, s, 1) == DLF_ERR_IO &&
              strstr(dlf_last_error(), DIR "/no/such/dir/x.svg"), "error names the path: %s", dlf_last_error());
}

static void test_grid_and_schedule(void)
{
    float a[20], b[20];
    dlf_series s1[1], s2[2];
    const dlf_series *ps[2];
    int ns[2] = {1, 2}, i;
    dlf_plot_cfg cfg[2];
    dlf_schedule lr = dlf_sched_one_cycle(0.1, 0.3, 25, 1e4, 0), mom = dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0);
    GROUP("svg grid, schedule");
    for (i = 0; i < 20; i++) { a[i] = (float)i; b[i] = (float)(i * i); }
    memset(s1, 0, sizeof s1); memset(s2, 0, sizeof s2); memset(cfg, 0, sizeof cfg);
    s1[0].y = a; s1[0].n = 20;
    s2[0].name = "a"; s2[0].y = a; s2[0].n = 20;
    s2[1].name = "b"; s2[1].y = b; s2[1].n = 20;
    ps[0] = s1; ps[1] = s2;
    cfg[0].title = "left"; cfg[1].title = "right"; cfg[1].logy = 1;
    CHECK(dlf_svg_lines_grid(DIR "/grid.svg", "two panels", cfg, ps, ns, 2, 2) == DLF_OK, "grid");
    free(check_svg(DIR "/grid.svg"));
    CHECK(dlf_svg_schedule(DIR "/sched.svg", "one-cycle", &lr, &mom, 200) == DLF_OK, "schedule plot");
    free(check_svg(DIR "/sched.svg"));
    CHECK(dlf_svg_schedule(DIR "/sched1.svg", NULL, &lr, NULL, 1) == DLF_OK, "one-step schedule, lr only");
    free(check_svg(DIR "/sched1.svg"));
}

/* A second PNG reader, written apart from the writer: table CRC-32, stored blocks only. */
static unsigned long crc_table[256];
static unsigned long crc(const unsigned char *p, size_t n)
{
    unsigned long c = 0xffffffffUL;
    size_t i;
    if (!crc_table[1]) {
        unsigned long k, v;
        int j;
        for (k = 0; k < 256; k++) {
            v = k;
            for (j = 0; j < 8; j++) v = v & 1 ? 0xedb88320UL ^ (v >> 1) : v >> 1;
            crc_table[k] = v;
        }
    }
    for (i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffUL;
}
static unsigned long be32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}
static int b64v(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes the first embedded PNG of svg (8-bit palette) into rgb (w*h*3); returns 1 when every
   check passes. */
static int decode_png(const char *svg, unsigned char *rgb, int w, int h)
{
    const char *p = strstr(svg, "base64,");
    unsigned char *png, *raw, pal[256 * 3];
    size_t n = 0, cap, i, at, rn = 0, n_pal = 0;
    unsigned long s1 = 1, s2 = 0;
    int ok = 1, r;
    if (!p) return 0;
    p += 7;
    cap = strlen(p);
    png = (unsigned char *)malloc(cap);
    raw = (unsigned char *)malloc(cap);
    for (; b64v(p[0]) >= 0 && b64v(p[1]) >= 0; p += 4) {
        unsigned long v = (unsigned long)b64v(p[0]) << 18 | (unsigned long)b64v(p[1]) << 12 |
                          (unsigned long)(p[2] == '=' ? 0 : b64v(p[2])) << 6 | (unsigned long)(p[3] == '=' ? 0 : b64v(p[3]));
        png[n++] = (unsigned char)(v >> 16);
        if (p[2] != '=') png[n++] = (unsigned char)(v >> 8);
        if (p[3] != '=') png[n++] = (unsigned char)v;
        if (p[3] == '=') { p += 4; break; }
    }
    ok = ok && n > 57 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8);
    for (at = 8; ok && at + 12 <= n;) {   /* every chunk's CRC */
        size_t len = be32(png + at);
        ok = at + 12 + len <= n && crc(png + at + 4, len + 4) == be32(png + at + 8 + len);
        if (ok && !memcmp(png + at + 4, "IHDR", 4))
            ok = (int)be32(png + at + 8) == w && (int)be32(png + at + 12) == h && png[at + 16] == 8 && png[at + 17] == 3;
        if (ok && !memcmp(png + at + 4, "PLTE", 4) && len % 3 == 0 && len <= sizeof pal) {
            memcpy(pal, png + at + 8, len);
            n_pal = len / 3;
        }
        if (ok && !memcmp(png + at + 4, "IDAT", 4)) {   /* zlib: header, stored blocks, adler-32 */
            const unsigned char *z = png + at + 8, *zend = z + len - 4;
            int last = 0;
            ok = z[0] == 0x78 && (z[0] * 256 + z[1]) % 31 == 0;
            z += 2;
            while (ok && !last && z + 5 <= zend) {
                size_t bl = z[1] | (size_t)z[2] << 8, nl = z[3] | (size_t)z[4] << 8;
                last = z[0] & 1;
                ok = (z[0] >> 1) == 0 && (bl ^ 0xffff) == nl && z + 5 + bl <= zend;
                if (ok) { memcpy(raw + rn, z + 5, bl); rn += bl; }
                z += 5 + bl;
            }
            for (i = 0; i < rn; i++) { s1 = (s1 + raw[i]) % 65521; s2 = (s2 + s1) % 65521; }
            ok = ok && last && z == zend && be32(zend) == (s2 << 16 | s1);
        }
        at += 12 + len;
    }
    ok = ok && n_pal > 0 && rn == (size_t)h * (1 + (size_t)w);
    for (r = 0; ok && r < h; r++) {
        int c;
        ok = raw[(size_t)r * (1 + w)] == 0;
        for (c = 0; ok && c < w; c++) {
            size_t ix = raw[(size_t)r * (1 + w) + 1 + c];
            ok = ix < n_pal;
            if (ok) memcpy(rgb + ((size_t)r * w + c) * 3, pal + 3 * ix, 3);
        }
    }
    free(png);
    free(raw);
    return ok;
}

static void test_image(void)
{
    float v[3 * 4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static float big[100 * 1000];
    const float *vs[3];
    const char *titles[3] = {"first", "second <2>", "third"};
    unsigned char rgb[3 * 4 * 3];
    char *t;
    int i;
    GROUP("svg image");
    v[5] = (float)NAN;
    CHECK(dlf_svg_image(DIR "/image.svg", "heat & map", "column", "row", v, 3, 4) == DLF_OK, "image: %s", dlf_last_error());
    t = check_svg(DIR "/image.svg");
    if (t) {
        CHECK(decode_png(t, rgb, 4, 3), "the embedded PNG decodes (CRCs, stored blocks, adler-32)");
        /* row 0 at the top: cell (0,0) is the minimum (viridis' dark purple), (2,3) the maximum
           (yellow), the NaN cell (1,1) grey */
        CHECK(rgb[0] == 68 && rgb[1] == 1 && rgb[2] == 84, "min is dark: %d %d %d", rgb[0], rgb[1], rgb[2]);
        CHECK(rgb[33] == 253 && rgb[34] == 231 && rgb[35] == 37, "max is yellow: %d %d %d", rgb[33], rgb[34], rgb[35]);
        CHECK(rgb[15] == 160 && rgb[16] == 160 && rgb[17] == 160, "NaN is grey");
        CHECK(strstr(t, "heat &amp; map") != NULL, "title escaped");
        free(t);
    }
    /* larger than one 65535-byte stored block */
    for (i = 0; i < 100 * 1000; i++) big[i] = (float)((i * 7) % 13);
    CHECK(dlf_svg_image(DIR "/big.svg", NULL, NULL, NULL, big, 100, 1000) == DLF_OK, "big image");
    t = check_svg(DIR "/big.svg");
    if (t) {
        unsigned char *px = (unsigned char *)malloc(100 * 1000 * 3);
        CHECK(decode_png(t, px, 1000, 100), "a PNG of two stored blocks decodes");
        free(px);
        free(t);
    }
    vs[0] = v; vs[1] = v; vs[2] = v;
    CHECK(dlf_svg_image_grid(DIR "/images.svg", "three", titles, "x", "y", vs, 3, 4, 3, 2) == DLF_OK, "image grid");
    t = check_svg(DIR "/images.svg");
    if (t) { CHECK(count(t, "<image") == 3 && strstr(t, "second &lt;2&gt;"), "three images"); free(t); }
    CHECK(dlf_svg_image(DIR "/bad.svg", NULL, NULL, NULL, v, 0, 4) == DLF_ERR_ARG && strstr(dlf_last_error(), "bad.svg"),
          "empty image refused, naming the path");
}

/* ---- telemetry ---------------------------------------------------------------------- */

/* the statistics the hook must give, computed here directly */
static void direct(const float *v, int n, float lo, float hi, int bins, float eps, double *mean, double *std,
                   double *nz, float *hist)
{
    double s = 0, ss = 0;
    int i, z = 0;
    for (i = 0; i < bins; i++) hist[i] = 0;
    for (i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (i = 0; i < n; i++) {
        ss += (v[i] - *mean) * (v[i] - *mean);
        if (fabsf(v[i]) <= eps) z++;
        if (v[i] >= lo && v[i] <= hi) {
            int b = (int)((v[i] - lo) * (float)bins / (hi - lo));   /* torch.histc's CPU kernel, in float */
            hist[b == bins ? bins - 1 : b] += 1;
        }
    }
    *std = sqrt(ss / (n - 1));
    *nz = (double)z / n;
}

static void test_telemetry_values(void)
{
    float vals[9] = {-1.0f, 0.0f, 0.1f, 0.5f, 0.6f, 9.99f, 10.0f, 11.0f, 0.25f};
    int shape[1] = {9}, i;
    dlf_tensor *x = dlf_tensor_from(1, shape, vals);
    dlf_telemetry *tl = dlf_telemetry_create(NULL);
    const float *h;
    double m = 0, sd = 0;
    GROUP("telemetry values");
    CHECK(tl && tl->cfg.bins == 40 && tl->cfg.lo == 0.0f && tl->cfg.hi == 10.0f && tl->cfg.zero_eps == 0.5f &&
          tl->cfg.max_steps == 1000 && tl->cfg.max_points == 16, "the course's defaults");
    dlf_telemetry_record(tl, "by hand", x);
    h = dlf_telemetry_hist(tl, 0, 0);
    for (i = 0; i < 9; i++) m += vals[i];
    m /= 9;
    for (i = 0; i < 9; i++) sd += (vals[i] - m) * (vals[i] - m);
    sd = sqrt(sd / 8);
    CHECK(tl->n_steps == 1 && tl->n_points == 1 && !strcmp(tl->names[0], "by hand"), "one step, one point");
    CHECK(fabs(tl->mean[0] - m) < 1e-6 && fabs(tl->std[0] - sd) < 1e-6, "mean %g std %g (unbiased)", tl->mean[0], tl->std[0]);
    /* bins of width 0.25: 0, 0.1 -> 0; 0.25 -> 1; 0.5, 0.6 -> 2; 9.99 and 10 (== hi) -> 39; -1, 11 outside */
    CHECK(h && h[0] == 2 && h[1] == 1 && h[2] == 2 && h[39] == 2 && h[3] == 0 && h[38] == 0, "histc's bins");
    {
        float tot = 0;
        for (i = 0; i < 40; i++) tot += h[i];
        CHECK(tot == 7, "7 of 9 values inside [0, 10]: %g", tot);
    }
    CHECK(fabsf(tl->near_zero[0] - 4.0f / 9.0f) < 1e-7f, "near zero: |a| <= 0.5 is 4 of 9: %g", tl->near_zero[0]);
    CHECK(dlf_telemetry_hist(tl, 1, 0) == NULL && dlf_telemetry_hist(tl, 0, 1) == NULL, "out of range: NULL");
    dlf_telemetry_clear(tl);
    CHECK(tl->n_steps == 0 && tl->names[0][0] == 0 && tl->mean[0] != tl->mean[0], "clear");
    dlf_telemetry_free(tl);
    dlf_tensor_free(x);
}

static dlf_tensor *marked_model(dlf_tape *t, dlf_seq *s, dlf_tensor *x)
{
    dlf_tensor *h = dlf_seq_forward_n(t, s, x, 2);
    dlf_telemetry_mark(t, "hidden <relu>", h);
    return dlf_linear(t, h, s->layers[2].weight, s->layers[2].bias);
}

static void test_telemetry_seq(void)
{
    dlf_seq s;
    dlf_rng r;
    dlf_tape t, t_off;
    dlf_telemetry *tl;
    dlf_telemetry_cfg cfg;
    dlf_tensor *x, *out, *out_off, *layer_out[3];
    int shape[2] = {32, 8}, step, k, ok_stats = 1, ok_hist = 1, same = 1;
    long a0;
    GROUP("telemetry seq");
    dlf_rng_seed(&r, 7);
    dlf_seq_init(&s);
    dlf_seq_add(&s, dlf_layer_linear(8, 16, 1, &r));
    dlf_seq_add(&s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(&s, dlf_layer_linear(16, 4, 1, &r));
    x = dlf_tensor_randn(2, shape, &r);
    dlf_tape_init(&t);
    dlf_tape_init(&t_off);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_steps = 5;
    cfg.lo = -3.0f; cfg.hi = 3.0f; cfg.bins = 40; cfg.zero_eps = 0.1f;
    tl = dlf_telemetry_create(&cfg);
    dlf_telemetry_attach(&t, tl);
    for (step = 0; step < 4; step++) {
        dlf_tape_reset(&t);
        dlf_tape_reset(&t_off);
        if (step == 2) a0 = th_allocs;
        out = dlf_seq_forward(&t, &s, x);
        if (step == 2) CHECK(th_allocs == a0, "a recording step allocates nothing: %ld", th_allocs - a0);
        out_off = dlf_seq_forward(&t_off, &s, x);  /* no telemetry: the same numbers */
        if (memcmp(out->data, out_off->data, sizeof(float) * (size_t)out->size)) same = 0;
        for (k = 0; k < 3; k++) layer_out[k] = dlf_seq_forward_n(&t_off, &s, x, k + 1);
        for (k = 0; k < 3; k++) {
            double m, sd, nz;
            float hist[40];
            size_t cell = (size_t)step * tl->cfg.max_points + k;
            const float *h = dlf_telemetry_hist(tl, step, k);
            if (!h) { ok_hist = 0; continue; }
            direct(layer_out[k]->data, layer_out[k]->size, -3.0f, 3.0f, 40, 0.1f, &m, &sd, &nz, hist);
            if (!(fabs(tl->mean[cell] - m) <= 1e-6 * (1 + fabs(m)) && fabs(tl->std[cell] - sd) <= 1e-6 * sd &&
                  fabs(tl->near_zero[cell] - nz) < 1e-7))
                { ok_stats = 0; printf("  step %d point %d: mean %.9g/%.9g std %.9g/%.9g nz %.9g/%.9g\n", step, k, tl->mean[cell], m, tl->std[cell], sd, tl->near_zero[cell], nz); }
            if (memcmp(h, hist, sizeof hist)) ok_hist = 0;
        }
        /* a few SGD-like changes so the steps differ */
        for (k = 0; k < s.layers[0].weight->size; k++) s.layers[0].weight->data[k] *= 1.1f;
    }
    CHECK(same, "telemetry changes no output");
    CHECK(tl->n_steps == 4 && tl->n_points == 3, "4 steps of 3 points: %d, %d", tl->n_steps, tl->n_points);
    CHECK(!strcmp(tl->names[0], "0 Linear") && !strcmp(tl->names[1], "1 ReLU") && !strcmp(tl->names[2], "2 Linear"),
          "names: %s, %s, %s", tl->names[0], tl->names[1], tl->names[2]);
    CHECK(ok_stats, "mean, std and fraction near zero match a direct computation");
    CHECK(ok_hist, "histograms match a direct computation");
    CHECK(tl->near_zero[1] > 0.3f, "ReLU: many zeros (%g)", tl->near_zero[1]);
    /* eval mode records nothing */
    dlf_tape_set_training(&t, 0);
    dlf_tape_reset(&t);
    dlf_seq_forward(&t, &s, x);
    dlf_telemetry_mark(&t, "eval", x);
    CHECK(tl->n_steps == 4, "eval mode records nothing");
    dlf_tape_set_training(&t, 1);
    /* full: the 5th step fits, the 6th is dropped and counted */
    dlf_tape_reset(&t);
    dlf_seq_forward(&t, &s, x);
    dlf_tape_reset(&t);
    dlf_seq_forward(&t, &s, x);
    CHECK(tl->n_steps == 5 && tl->dropped == 3, "max_steps 5: %d steps, %ld dropped", tl->n_steps, tl->dropped);
    CHECK(dlf_telemetry_plot_stats(tl, DIR "/tel_stats.svg", "stats") == DLF_OK, "plot stats");
    free(check_svg(DIR "/tel_stats.svg"));
    CHECK(dlf_telemetry_plot_near_zero(tl, DIR "/tel_zero.svg", "near zero") == DLF_OK, "plot near zero");
    free(check_svg(DIR "/tel_zero.svg"));
    CHECK(dlf_telemetry_plot_hist(tl, DIR "/tel_hist.svg", "histograms") == DLF_OK, "plot hist");
    {
        char *tx = check_svg(DIR "/tel_hist.svg");
        CHECK(tx && count(tx, "<image") == 3, "three histogram images");
        free(tx);
    }

    /* only chosen kinds, and marks from a model function */
    dlf_telemetry_free(tl);
    cfg.kinds_mask = 1ul << DLF_LAYER_RELU;
    cfg.max_steps = 3;
    tl = dlf_telemetry_create(&cfg);
    dlf_telemetry_attach(&t, tl);
    dlf_tape_reset(&t);
    out = marked_model(&t, &s, x);
    CHECK(tl->n_points == 2 && !strcmp(tl->names[0], "1 ReLU") && !strcmp(tl->names[1], "hidden <relu>"),
          "kinds_mask and a mark: %d points (%s, %s)", tl->n_points, tl->names[0], tl->names[1]);
    CHECK(tl->mean[0] == tl->mean[1], "the mark saw the same tensor as the hook");
    /* off: detached, nothing records, and the tape is as before */
    dlf_telemetry_attach(&t, NULL);
    dlf_tape_reset(&t);
    out = marked_model(&t, &s, x);
    CHECK(tl->n_steps == 1 && t.telemetry == NULL && out != NULL, "detached: nothing recorded");
    dlf_telemetry_free(tl);
    dlf_tape_destroy(&t);
    dlf_tape_destroy(&t_off);
    dlf_tensor_free(x);
    dlf_seq_free(&s);
}

/* every = 3: steps 0, 3, 6 of 7 are kept, the others skipped without counting as dropped */
static void test_telemetry_every(void)
{
    dlf_telemetry_cfg cfg;
    dlf_telemetry *tl;
    dlf_tape t;
    int shape[1] = {5}, k;
    dlf_tensor *x = dlf_tensor_new(1, shape);
    GROUP("telemetry every");
    memset(&cfg, 0, sizeof cfg);
    cfg.every = 3;
    tl = dlf_telemetry_create(&cfg);
    dlf_tape_init(&t);
    dlf_telemetry_attach(&t, tl);
    for (k = 0; k < 7; k++) {
        dlf_tape_reset(&t);
        dlf_fill(x, (float)k);
        dlf_telemetry_mark(&t, "x", x);
        dlf_telemetry_mark(&t, "2x", x);
    }
    CHECK(tl->n_steps == 3 && tl->seen == 7 && tl->dropped == 0 && tl->n_points == 2,
          "3 rows of 7 steps: %d rows, %ld seen, %ld dropped", tl->n_steps, tl->seen, tl->dropped);
    CHECK(tl->mean[0] == 0.0f && tl->mean[tl->cfg.max_points] == 3.0f && tl->mean[2 * tl->cfg.max_points] == 6.0f &&
          tl->mean[2 * tl->cfg.max_points + 1] == 6.0f, "rows hold steps 0, 3 and 6");
    CHECK(dlf_telemetry_plot_stats(tl, DIR "/tel_every.svg", "every 3") == DLF_OK, "plot");
    free(check_svg(DIR "/tel_every.svg"));
    dlf_telemetry_free(tl);
    dlf_tape_destroy(&t);
    dlf_tensor_free(x);
}

static dlf_tensor *fit_model(dlf_tape *t, dlf_tensor *x, void *m)
{
    return dlf_seq_forward(t, (const dlf_seq *)m, x);
}

/* With dlf_fit: one recorded step per optimizer step; the validation pass (eval mode) adds none. */
static void test_telemetry_fit(void)
{
    dlf_mnist data;
    dlf_mnist_cfg mc;
    dlf_loader *train = NULL, *valid = NULL;
    dlf_seq s;
    dlf_rng r;
    dlf_tape t;
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    dlf_fit_cfg fc;
    dlf_fit_report rep;
    dlf_telemetry *tl;
    GROUP("telemetry with dlf_fit");
    memset(&mc, 0, sizeof mc);
    mc.prefix = "mnist-sub-";
    mc.test_split = "test";
    mc.n_valid = 200;
    if (dlf_mnist_load(&data, "tests/data", &mc) != DLF_OK) {
        CHECK(0, "cannot load the MNIST subset: %s", dlf_last_error());
        return;
    }
    dlf_mnist_loaders(&data, 64, 100, 1, &train, &valid, NULL);
    dlf_rng_seed(&r, 1);
    dlf_seq_init(&s);
    dlf_seq_add(&s, dlf_layer_simple(DLF_LAYER_FLATTEN));
    dlf_seq_add(&s, dlf_layer_linear(784, 32, 1, &r));
    dlf_seq_add(&s, dlf_layer_simple(DLF_LAYER_RELU));
    dlf_seq_add(&s, dlf_layer_linear(32, 10, 1, &r));
    dlf_params_init(&pl);
    dlf_seq_collect(&s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.1f;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &oc, 1);
    memset(&fc, 0, sizeof fc);
    fc.epochs = 2;
    fc.quiet = 1;
    tl = dlf_telemetry_create(NULL);
    dlf_tape_init(&t);
    dlf_telemetry_attach(&t, tl);
    CHECK(dlf_fit(&t, fit_model, &s, dlf_cross_entropy, opt, train, valid, &fc, &rep) == DLF_OK, "fit");
    CHECK(rep.steps > 0 && tl->n_steps == rep.steps && tl->n_points == 4 && tl->dropped == 0,
          "%d optimizer steps, %d recorded steps of %d points", rep.steps, tl->n_steps, tl->n_points);
    CHECK(!strcmp(tl->names[3], "3 Linear"), "last point: %s", tl->names[3]);
    dlf_telemetry_free(tl);
    dlf_tape_destroy(&t);
    dlf_optim_free(opt);
    dlf_params_free(&pl);
    dlf_seq_free(&s);
    dlf_loader_free(train);
    dlf_loader_free(valid);
    dlf_mnist_free(&data);
}

int main(void)
{
    th_init();
    TEST_MKDIR("build");
    TEST_MKDIR(DIR);
#ifdef _WIN32
    have_xmllint = have_rsvg = 0;
#else
    have_xmllint = system("command -v xmllint >/dev/null 2>&1") == 0;
    have_rsvg = system("command -v rsvg-convert >/dev/null 2>&1") == 0;
#endif
    if (!have_xmllint) printf("SKIP [svg] well-formedness: xmllint (Debian libxml2-utils) is not installed\n");
    if (!have_rsvg) printf("SKIP [svg] rendering: rsvg-convert (Debian librsvg2-bin) is not installed\n");
    test_lines();
    test_grid_and_schedule();
    test_image();
    test_telemetry_values();
    test_telemetry_seq();
    test_telemetry_every();
    test_telemetry_fit();
    TEST_MAIN_END();
}
