/* harness.h - the tiny test harness every tests/test_<stage>.c uses.

   CHECK(cond, fmt, ...)          one assertion; prints the message only on failure
   CHECK_CLOSE(a, b, n, atol, rtol, what)
                                  compares two float arrays with |a-b| <= atol + rtol*|b|
                                  (b is the reference); prints the first few pairs and
                                  the max difference, llm.c check_tensor style
   EXPECT_PANIC(stmt, substr)     runs stmt, which must hit dlf's panic handler with a
                                  message containing substr (caught with longjmp)
   TEST_MAIN_END()                prints "<file>: N passed, M failed" and returns non-zero
                                  on any failure; tests/run.sh adds the files up.

   GRADCHECK(fn, inputs, n, user, what)
                                  dlf_gradcheck as one assertion, reporting the worst element
   TH_COUNT_ALLOCS                define it before including this file (and with
                                  DLF_IMPLEMENTATION) to route dlf's allocations through
                                  counting hooks: th_allocs counts malloc and realloc calls

   th_f(x)                        x rounded to a float, for == against a literal where
                                  FLT_EVAL_METHOD != 0 (x86-32, s390x)
   th_self(argv0)                 the command that runs this test program again (for tests
                                  that start a child): DLF_TEST_EXEC, when set, goes first,
                                  e.g. "qemu-s390x -L /usr/s390x-linux-gnu" for a cross build

   All state lives in this translation unit (each test file is its own program). */
#ifndef DLF_TEST_HARNESS_H
#define DLF_TEST_HARNESS_H
#ifdef TH_COUNT_ALLOCS
#include <stdlib.h>
static long th_allocs;  /* every heap allocation dlf makes goes through these */
static void *th_malloc(size_t n) { th_allocs++; return malloc(n); }
static void *th_realloc(void *p, size_t n) { th_allocs++; return realloc(p, n); }
#define DLF_MALLOC(n) th_malloc(n)
#define DLF_REALLOC(p, n) th_realloc(p, n)
#define DLF_FREE(p) free(p)
#endif
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../dlf.h"

static int th_passed, th_failed;
static const char *th_group = "";
static jmp_buf th_jmp;
static int th_armed;
static char th_msg[512];

#define GROUP(name) (th_group = (name))

#define CHECK(cond, ...) do {                                                  \
        if (cond) { th_passed++; } else {                                      \
            th_failed++;                                                       \
            printf("FAIL [%s] %s:%d: ", th_group, __FILE__, __LINE__);         \
            printf(__VA_ARGS__); printf("\n");                                 \
        } } while (0)

static void th_panic_handler(const char *msg, void *user)
{
    (void)user;
    snprintf(th_msg, sizeof th_msg, "%s", msg);
    if (th_armed) longjmp(th_jmp, 1);
    printf("UNEXPECTED PANIC [%s]: %s\n", th_group, msg);
    th_failed++;
}

/* argv0, with DLF_TEST_EXEC in front when the environment sets it (an emulator). */
static inline const char *th_self(const char *argv0)
{
    static char buf[512];
    const char *pre = getenv("DLF_TEST_EXEC");
    snprintf(buf, sizeof buf, "%s%s%s", pre ? pre : "", pre && *pre ? " " : "", argv0);
    return buf;
}

/* x rounded to a stored float. Where FLT_EVAL_METHOD != 0 (x87: 2, s390x: 1) a float
   literal or expression is evaluated with more precision than the float it is compared
   with, so `lr == 0.1f` can be false; write `lr == th_f(0.1f)`. */
static inline float th_f(float x)
{
    volatile float v = x;
    return v;
}

/* The reference tests' driver: run_case(dir, name) for every line of dir/INDEX that
   contains filter (all lines when filter is NULL); returns how many ran. */
static inline int th_run_index(const char *dir, const char *filter, void (*run_case)(const char *, const char *))
{
    char path[1024], line[256];
    int n = 0;
    FILE *idx;
    snprintf(path, sizeof path, "%s/INDEX", dir);
    idx = fopen(path, "r");
    CHECK(idx != NULL, "cannot open %s (run from the repository root, or set DLF_REF_DIR)", path);
    while (idx && fgets(line, sizeof line, idx)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || (filter && !strstr(line, filter))) continue;
        run_case(dir, line);
        n++;
    }
    if (idx) fclose(idx);
    return n;
}

/* Every test file calls this first: unexpected panics are counted as failures. */
static void th_init(void) { dlf_set_panic_handler(th_panic_handler, NULL); }

#define EXPECT_PANIC(stmt, substr) do {                                        \
        th_msg[0] = 0;                                                         \
        th_armed = 1;                                                          \
        if (setjmp(th_jmp) == 0) { stmt; th_armed = 0;                         \
            CHECK(0, "expected a panic containing \"%s\", got none", substr);  \
        } else { th_armed = 0;                                                 \
            CHECK(strstr(th_msg, substr) != NULL,                              \
                  "panic message \"%s\" lacks \"%s\"", th_msg, substr); }      \
    } while (0)

/* Returns 1 when close; prints a report either way when verbose or failing. */
static inline int th_close(const float *a, const float *b, int n, float atol, float rtol,
                    const char *what, const char *file, int line)
{
    float maxd = 0.0f;
    int i, bad = -1;
    for (i = 0; i < n; i++) {
        float d = a[i] == b[i] ? 0.0f : fabsf(a[i] - b[i]);  /* equal infinities: 0 */
        if (a[i] != a[i] && b[i] != b[i]) continue;           /* NaN where the reference has NaN */
        if (d > maxd || d != d) maxd = d;
        if (!(d <= atol + rtol * fabsf(b[i])) && bad < 0) bad = i;
    }
    if (bad >= 0) {
        th_failed++;
        printf("FAIL [%s] %s:%d: %s: max diff %g (atol %g rtol %g), first bad index %d\n",
               th_group, file, line, what, maxd, atol, rtol, bad);
        for (i = 0; i < n && i < 5; i++) printf("    %d: got %.7g  ref %.7g\n", i, a[i], b[i]);
        return 0;
    }
    th_passed++;
    return 1;
}
#define CHECK_CLOSE(a, b, n, atol, rtol, what) th_close((a), (b), (n), (atol), (rtol), (what), __FILE__, __LINE__)

/* One dlf_gradcheck with default settings as one assertion; the report on failure. */
#define GRADCHECK(fn, inputs, n, user, what) do {                                     \
        dlf_gradcheck_report rep_ = {0, 0, 0, 0, 0, 0, 0};                             \
        int ok_ = dlf_gradcheck((fn), (inputs), (n), (user), NULL, &rep_);             \
        CHECK(ok_, "gradcheck %s: %d of %d failed, max abs err %g (input %d index %d)", \
              (what), rep_.n_failed, rep_.n_checked, rep_.max_abs_err,                 \
              rep_.worst_input, rep_.worst_index);                                     \
    } while (0)

#define TEST_MAIN_END() do {                                                   \
        printf("%s: %d passed, %d failed\n", __FILE__, th_passed, th_failed); \
        return th_failed ? 1 : 0; } while (0)

#endif
