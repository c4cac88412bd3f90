/* test_sched.c - stage 12, the schedules, against torch.optim.lr_scheduler.

   1. fixtures: every series of tests/ref/sched/cases.txt (tools/gen_sched.py: OneCycleLR lr and
      momentum with two and three phases, very short runs of 1, 2 and 3 steps, Adam's beta1 and
      the linear anneal strategy; CosineAnnealingLR; CosineAnnealingWarmRestarts with T_mult 1, 2
      and 3; LinearLR; ExponentialLR; SequentialLR of a linear warm-up and cosine annealing)
      replayed step by step through dlf_schedule_at, relative error 1e-6 in double;
   2. dlf_sched_lr, the stage 14 wrapper, on the very short runs the issue names;
   3. combined schedules (fastai's combine_scheds): the phase arithmetic by hand, pos = 1.0 and
      steps past the end, which must not index past the last phase;
   4. shapes, copying, with_shape, and the programmer errors.
   Usage: test_sched [substring]    (DLF_REF_DIR overrides tests/ref/sched) */
#include <stdlib.h>
#define DLF_IMPLEMENTATION
#include "harness.h"

/* The dlf schedule a fixture line names: <ctor> <args>. */
static int build(const char *ctor, const double *a, int na, dlf_schedule *s)
{
    if (!strcmp(ctor, "one_cycle") && na == 5) *s = dlf_sched_one_cycle(a[0], a[1], a[2], a[3], (int)a[4]);
    else if (!strcmp(ctor, "one_cycle_linear") && na == 5)
        *s = dlf_sched_with_shape(dlf_sched_one_cycle(a[0], a[1], a[2], a[3], (int)a[4]), DLF_SHAPE_COS, DLF_SHAPE_LINEAR);
    else if (!strcmp(ctor, "one_cycle_mom") && na == 4) *s = dlf_sched_one_cycle_mom(a[0], a[1], a[2], (int)a[3]);
    else if (!strcmp(ctor, "one_cycle_mom_linear") && na == 4)
        *s = dlf_sched_with_shape(dlf_sched_one_cycle_mom(a[0], a[1], a[2], (int)a[3]), DLF_SHAPE_COS, DLF_SHAPE_LINEAR);
    else if (!strcmp(ctor, "cos") && na == 2) *s = dlf_sched_cos(a[0], a[1]);
    else if (!strcmp(ctor, "linear") && na == 2) *s = dlf_sched_linear(a[0], a[1]);
    else if (!strcmp(ctor, "exp") && na == 2) *s = dlf_sched_exp(a[0], a[1]);
    else if (!strcmp(ctor, "sgdr") && na == 4) *s = dlf_sched_sgdr(a[0], a[1], (long)a[2], (int)a[3]);
    else if (!strcmp(ctor, "warmup_cos") && na == 4) *s = dlf_sched_warmup((long)a[0], a[1], dlf_sched_cos(a[2], a[3]));
    else return 0;
    return 1;
}

static void test_fixtures(const char *filter)
{
    const char *dir = getenv("DLF_REF_DIR") ? getenv("DLF_REF_DIR") : "tests/ref/sched";
    char path[1024], name[128], what[16], ctor[64];
    static char line[1 << 17];
    FILE *f;
    int n_series = 0;
    GROUP("fixtures");
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (run from the repository root, or set DLF_REF_DIR)", path);
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        double args[8], ref, got, scale = 0.0, worst = 0.0;
        long total, i, bad = -1;
        int na = 0, used;
        dlf_schedule s;
        if (line[0] == '#' || line[0] == '\n') continue;
        CHECK(strlen(line) < sizeof line - 1, "line too long in %s", path);
        if (sscanf(p, "%127s %15s %ld %63s%n", name, what, &total, ctor, &used) != 4) {
            CHECK(0, "bad line in %s: %.60s", path, line);
            continue;
        }
        if (filter && !strstr(name, filter)) continue;
        p += used;
        while (na < 8 && (args[na] = strtod(p, &end), end != p)) { p = end; na++; }
        while (*p == ' ') p++;
        CHECK(*p == '|', "%s %s: no '|' after the arguments", name, what);
        if (*p != '|') continue;
        p++;
        if (!build(ctor, args, na, &s)) { CHECK(0, "%s: unknown constructor %s/%d", name, ctor, na); continue; }
        /* |dlf - torch| <= 1e-6 |torch| + 1e-12 * (the series' largest value): relative 1e-6,
           with a floor for values that pass through 0 (eta_min 0) */
        {
            char *q = p;
            for (i = 0; i < total; i++) { ref = strtod(q, &end); q = end; if (fabs(ref) > scale) scale = fabs(ref); }
        }
        for (i = 0; i < total; i++) {
            ref = strtod(p, &end);
            if (end == p) { bad = i; break; }
            p = end;
            got = dlf_schedule_at(&s, i, total);
            if (!(fabs(got - ref) <= 1e-6 * fabs(ref) + 1e-12 * scale)) {
                if (bad < 0) bad = i;
                if (!(fabs(got - ref) <= worst)) worst = fabs(got - ref);
            }
        }
        CHECK(bad < 0, "%s %s (%s, total %ld): step %ld: dlf %.17g torch %.17g (worst diff %g)", name, what,
              ctor, total, bad, bad >= 0 ? dlf_schedule_at(&s, bad, total) : 0.0, bad >= 0 ? ref : 0.0, worst);
        n_series++;
    }
    fclose(f);
    if (!filter) CHECK(n_series >= 40, "only %d series in %s", n_series, path);
    printf("schedules: %d PyTorch series replayed\n", n_series);
}

static void test_sched_lr(void)
{
    float a, b, c;
    GROUP("dlf_sched_lr");
    /* OneCycleLR(max_lr 3, total 2): the warm-up ends at 0.3 * 2 - 1 = -0.4, so step 0 is
       already 0.4 / 1.4 of the way down: 3e-4 ... the 2.4352 */
    a = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 3.0f, 0.3f, 0, 2);
    b = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 3.0f, 0.3f, 1, 2);
    c = dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 3.0f, 0.3f, 0, 1);
    CHECK(fabs(a - 2.435236961849289) < 1e-6, "total 2 step 0: %.7g, PyTorch 2.4352370", a);
    CHECK(fabs(b - 1.2e-5) < 1e-11, "total 2 step 1: %.7g, PyTorch 1.2e-5", b);
    CHECK(fabs(c - 1.2e-5) < 1e-11, "total 1 step 0: %.7g, PyTorch 1.2e-5", c);
    CHECK(dlf_sched_lr(DLF_SCHED_CONSTANT, 0.1f, 0.3f, 5, 1) == th_f(0.1f), "constant");
    /* the peak at step pct * total - 1 */
    CHECK(fabsf(dlf_sched_lr(DLF_SCHED_ONE_CYCLE, 0.1f, 0.3f, 29, 100) - 0.1f) < 1e-8f, "peak at step 29 of 100");
}

static void test_combined(void)
{
    dlf_schedule parts[2], s, t;
    double fr[2] = {0.3, 0.7}, v;
    long ms[1] = {4};
    int i;
    GROUP("combined");
    parts[0] = dlf_sched_cos(0.3, 0.6);
    parts[1] = dlf_sched_cos(0.6, 0.2);
    s = dlf_sched_combine(fr, parts, 2);   /* the course's combine_scheds([0.3, 0.7], ...) */
    CHECK(s.n == 2 && s.kind == DLF_SCHEDULE_FRAC, "two phases");
    CHECK(fabs(dlf_schedule_at(&s, 0, 100) - 0.3) < 1e-15, "start 0.3");
    /* pos 0.15 = half of phase 0: 0.6 + (0.3 - 0.6)(1 + cos(pi/2))/2 = 0.45 */
    CHECK(fabs(dlf_schedule_at(&s, 15, 100) - 0.45) < 1e-12, "mid phase 0: %g", dlf_schedule_at(&s, 15, 100));
    CHECK(fabs(dlf_schedule_at(&s, 30, 100) - 0.6) < 1e-15, "phase 1 owns its start (pos 0.3): 0.6");
    v = dlf_schedule_at(&s, 65, 100);   /* pos 0.65: half of phase 1: 0.4 */
    CHECK(fabs(v - 0.4) < 1e-12, "mid phase 1: %g", v);
    /* pos = 1.0 and beyond: the last phase's end, no index past it */
    CHECK(fabs(dlf_schedule_at(&s, 100, 100) - 0.2) < 1e-15, "pos 1.0: %g", dlf_schedule_at(&s, 100, 100));
    CHECK(fabs(dlf_schedule_at(&s, 1000, 100) - 0.2) < 1e-15, "past the end");
    CHECK(fabs(dlf_schedule_at(&s, -5, 100) - 0.3) < 1e-15, "before the start");
    /* fractions that add up to a little less than 1 (0.1 * 3) still end in the last phase */
    {
        dlf_schedule p3[3];
        double f3[3] = {0.1, 0.1, 0.1};
        p3[0] = dlf_sched_const(1); p3[1] = dlf_sched_const(2); p3[2] = dlf_sched_linear(3, 4);
        t = dlf_sched_combine(f3, p3, 3);
        CHECK(dlf_schedule_at(&t, 10, 10) == 4.0 && dlf_schedule_at(&t, 0, 10) == 1.0 &&
              dlf_schedule_at(&t, 1, 10) == 2.0, "short fractions");
    }
    /* a copy is independent: a plain value */
    t = s;
    t.ph[0].start = 99.0;
    CHECK(dlf_schedule_at(&s, 0, 100) == 0.3 && dlf_schedule_at(&t, 0, 100) == 99.0, "copies are values");
    /* sequential by steps: const 1 for 4 steps, then linear 2 -> 0 over the rest */
    parts[0] = dlf_sched_const(1.0);
    parts[1] = dlf_sched_linear(2.0, 0.0);
    s = dlf_sched_sequential(parts, ms, 2);
    CHECK(dlf_schedule_at(&s, 3, 10) == 1.0 && dlf_schedule_at(&s, 4, 10) == 2.0 &&
          fabs(dlf_schedule_at(&s, 7, 10) - 1.0) < 1e-15 && dlf_schedule_at(&s, 10, 10) == 0.0, "sequential");
    /* warm-up then cosine: value 0.1 at step 0 (factor 0.1 of 1), 1 at the milestone */
    s = dlf_sched_warmup(5, 0.1, dlf_sched_cos(1.0, 0.0));
    CHECK(fabs(dlf_schedule_at(&s, 0, 20) - 0.1) < 1e-15 && dlf_schedule_at(&s, 5, 20) == 1.0, "warm-up");
    for (i = 1; i < 5; i++)
        CHECK(dlf_schedule_at(&s, i, 20) > dlf_schedule_at(&s, i - 1, 20), "warm-up rises at %d", i);
}

static void test_shapes(void)
{
    dlf_schedule s;
    dlf_schedule parts[5];
    double fr[5] = {0.2, 0.2, 0.2, 0.2, 0.2};
    int i;
    GROUP("shapes");
    s = dlf_sched_const(0.5);
    CHECK(dlf_schedule_at(&s, 0, 10) == 0.5 && dlf_schedule_at(&s, 9, 10) == 0.5, "const");
    s = dlf_sched_linear(1.0, 3.0);
    CHECK(dlf_schedule_at(&s, 5, 10) == 2.0, "linear half way");
    s = dlf_sched_exp(1.0, 100.0);
    CHECK(fabs(dlf_schedule_at(&s, 5, 10) - 10.0) < 1e-12, "exp half way: geometric mean");
    s = dlf_sched_cos(1.0, 0.0);
    CHECK(fabs(dlf_schedule_at(&s, 5, 10) - 0.5) < 1e-15, "cos half way");
    /* one-cycle's momentum mirrors its lr: lowest at the lr's peak */
    s = dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0);
    CHECK(dlf_schedule_at(&s, 0, 100) == 0.95 && fabs(dlf_schedule_at(&s, 29, 100) - 0.85) < 1e-15 &&
          fabs(dlf_schedule_at(&s, 99, 100) - 0.95) < 1e-15, "one-cycle momentum 0.95 -> 0.85 -> 0.95");
    /* SGDR restarts: T_0 3, T_mult 2: cycles of 3, 6, 12 */
    s = dlf_sched_sgdr(1.0, 0.0, 3, 2);
    CHECK(dlf_schedule_at(&s, 0, 100) == 1.0 && dlf_schedule_at(&s, 3, 100) == 1.0 &&
          dlf_schedule_at(&s, 9, 100) == 1.0 && dlf_schedule_at(&s, 21, 100) == 1.0, "restarts at 0, 3, 9, 21");
    for (i = 0; i < 5; i++) parts[i] = dlf_sched_const(i);
    EXPECT_PANIC(dlf_sched_combine(fr, parts, 5), "parts");
    EXPECT_PANIC(dlf_sched_sgdr(1.0, 0.0, 0, 1), "T_0");
    EXPECT_PANIC(dlf_sched_exp(0.0, 1.0), "must be > 0");
    EXPECT_PANIC(dlf_sched_one_cycle(1.0, 0.6, 25, 1e4, 1), "pct_start");
    parts[0] = dlf_sched_one_cycle(1.0, 0.3, 25, 1e4, 0);
    EXPECT_PANIC(dlf_sched_combine(fr, parts, 1), "single shape");
}

int main(int argc, char **argv)
{
    th_init();
    test_fixtures(argc > 1 ? argv[1] : NULL);
    if (argc > 1) TEST_MAIN_END();
    test_sched_lr();
    test_combined();
    test_shapes();
    TEST_MAIN_END();
}
