/* 05_anneal.c - schedules: annealing the learning rate and the momentum (notebook 05_anneal,
   "Deep Learning from the Foundations", fast.ai; Smith & Topin 2017, "Super-Convergence";
   Loshchilov & Hutter 2017, "SGDR"; the docs page is docs/schedules.md, the code stage 12
   of dlf.h, the pictures stage 16).

   What it shows
     1. The shapes: constant, linear, cosine and exponential between two values, the
        course's combined schedule (30% cosine up, 70% cosine down; combine_scheds), a
        linear warm-up followed by cosine annealing, SGDR's warm restarts, and one-cycle
        with its momentum mirrored. A schedule is a value `dlf_schedule_at(&s, step,
        total)`, checked step by step against torch.optim.lr_scheduler (tests/test_sched.c).
        Pictures: docs/img/05_schedules.svg (every shape) and docs/img/05_one_cycle.svg
        (OneCycleLR's lr and momentum).
     2. Does the schedule matter? The CNN of lesson 07a (conv 8,16,32,32 stride 2 with
        GeneralRelu, global average pool, linear; Kaiming init) trained three times on the
        same 12800 MNIST training images for the same 2 epochs, the same batches in the
        same order, SGD with momentum:
          constant      lr 0.2, momentum 0.9 throughout;
          warm-up+cos   lr 0.2 after a linear warm-up of 10% of the steps, then cosine to 0;
          one-cycle     lr 0.008 -> 0.2 -> 8e-7 and momentum 0.95 -> 0.85 -> 0.95
                        (OneCycleLR's defaults with cycle_momentum).
        The training loop is written out: every step sets the group's lr (and momentum)
        from the schedules, the work fastai's ParamScheduler callback does. Test accuracy
        on the 10000 test images for each, and the loss curves in docs/img/05_loss.svg.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 15 s on a quiet 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/05_anneal
     break dlf_schedule_at      `p *s`, `p step`, `finish` to see the value
     break train_run            `p *lr`, `p *mom`; in the loop `p opt->groups[0]`
   Variables to watch in main: `acc[0]`, `acc[1]`, `acc[2]`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define N_TRAIN 12800
#define EPOCHS 2
#define PEAK_LR 0.2

/* ----------------------------------------------------------------------- 1. shapes */

static void plot_shapes(void)
{
    enum { N = 8, T = 100 };
    static float y[N][T];
    dlf_schedule s[N], parts[2];
    dlf_series series[N][1];
    const dlf_series *ps[N];
    dlf_plot_cfg cfg[N];
    int ns[N], i, k;
    double fr[2] = {0.3, 0.7};
    static const char *const titles[N] = {
        "constant 0.5", "linear 1 -> 0.1", "cosine 1 -> 0.1", "exponential 1 -> 0.01 (log y)",
        "combined: 30% cos up, 70% cos down", "linear warm-up 10, then cosine", "SGDR: T_0 10, T_mult 2",
        "one-cycle lr (max 1)"};
    s[0] = dlf_sched_const(0.5);
    s[1] = dlf_sched_linear(1.0, 0.1);
    s[2] = dlf_sched_cos(1.0, 0.1);
    s[3] = dlf_sched_exp(1.0, 0.01);
    parts[0] = dlf_sched_cos(0.3, 0.6);    /* the course's sched_cos(0.3, 0.6), sched_cos(0.6, 0.2) */
    parts[1] = dlf_sched_cos(0.6, 0.2);
    s[4] = dlf_sched_combine(fr, parts, 2);
    s[5] = dlf_sched_warmup(10, 0.01, dlf_sched_cos(1.0, 0.0));
    s[6] = dlf_sched_sgdr(1.0, 0.0, 10, 2);
    s[7] = dlf_sched_one_cycle(1.0, 0.3, 25, 1e4, 0);
    memset(cfg, 0, sizeof cfg);
    memset(series, 0, sizeof series);
    printf("1. the value at a few of %d steps\n  %-38s", T, "schedule");
    for (k = 0; k < 5; k++) printf(" %8d", k * 25 - (k == 4));
    printf("\n");
    for (i = 0; i < N; i++) {
        for (k = 0; k < T; k++) y[i][k] = (float)dlf_schedule_at(&s[i], k, T);
        series[i][0].y = y[i];
        series[i][0].n = T;
        ps[i] = series[i];
        ns[i] = 1;
        cfg[i].title = titles[i];
        cfg[i].xlabel = "step";
        cfg[i].logy = i == 3;
        printf("  %-38s", titles[i]);
        for (k = 0; k < 5; k++) printf(" %8.4f", y[i][k * 25 - (k == 4)]);
        printf("\n");
    }
    if (dlf_svg_lines_grid("docs/img/05_schedules.svg", "schedules over 100 steps", cfg, ps, ns, N, 2) != DLF_OK)
        printf("  (picture not written: %s)\n", dlf_last_error());
}

/* ------------------------------------------------------------- 2. train three ways */

/* The model is lesson 07a's CNN with the course's Kaiming init (lesson_build_cnn, lesson.h). */

/* EPOCHS epochs from the loader's first batch; each step's lr and momentum from the
   schedules, its loss into losses[step]. Returns the steps taken. */
static int train_run(dlf_tape *t, dlf_seq *s, dlf_loader *train, const dlf_schedule *lr,
                     const dlf_schedule *mom, float *losses)
{
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    int e, step = 0, total = EPOCHS * train->n_batches;
    dlf_params_init(&pl);
    dlf_seq_collect(s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = (float)PEAK_LR;
    oc.momentum = 0.9f;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &oc, 1);
    train->pos = 0;
    for (e = 0; e < EPOCHS; e++)
        while (dlf_loader_next(train) > 0) {
            dlf_tensor *loss;
            dlf_tape_reset(t);
            loss = dlf_cross_entropy(t, dlf_seq_forward(t, s, train->x), train->y);
            dlf_backward(t, loss);
            opt->groups[0].lr = (float)dlf_schedule_at(lr, step, total);   /* ParamScheduler's job */
            opt->groups[0].momentum = (float)dlf_schedule_at(mom, step, total);
            dlf_optim_step(opt);
            dlf_optim_zero_grad(opt);
            losses[step++] = loss->data[0];
        }
    dlf_optim_free(opt);
    dlf_params_free(&pl);
    return step;
}

int main(void)
{
    dlf_mnist data;
    dlf_dataset sub;
    dlf_loader *train, *test = NULL;
    dlf_loader_cfg lc;
    dlf_tape t;
    dlf_schedule lr[3], mom[3];
    static const char *const names[3] = {"constant", "warm-up+cos", "one-cycle"};
    float *losses[3], *smooth[3], acc[3], test_loss[3];
    dlf_series series[3];
    dlf_plot_cfg cfg;
    int m, steps = 0, i;
    double t0 = dlf_seconds(), took[3];

    plot_shapes();
    if (lesson_load_mnist(&data, "") < 0) return 1;
    sub = dlf_dataset_view(&data.train, 0, data.train.n < N_TRAIN ? data.train.n : N_TRAIN);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 5;
    lc.mean = data.mean;
    lc.std = data.std;
    train = dlf_loader_create(&sub, &lc);
    if (!train || dlf_mnist_loaders(&data, 64, 500, 1, NULL, NULL, &test) != DLF_OK) return 1;

    lr[0] = dlf_sched_const(PEAK_LR);
    mom[0] = dlf_sched_const(0.9);
    lr[1] = dlf_sched_warmup((long)(0.1 * EPOCHS * train->n_batches), 0.01, dlf_sched_cos(PEAK_LR, 0.0));
    mom[1] = dlf_sched_const(0.9);
    lr[2] = dlf_sched_one_cycle(PEAK_LR, 0.3, 25, 1e4, 0);
    mom[2] = dlf_sched_one_cycle_mom(0.85, 0.95, 0.3, 0);
    if (dlf_svg_schedule("docs/img/05_one_cycle.svg", "one-cycle (OneCycleLR with cycle_momentum)", &lr[2], &mom[2],
                         EPOCHS * train->n_batches) != DLF_OK)
        printf("  (picture not written: %s)\n", dlf_last_error());

    printf("\n2. the same CNN, %d training images, %d epochs (%d steps), batch 64, SGD:\n", sub.n, EPOCHS,
           EPOCHS * train->n_batches);
    dlf_tape_init(&t);
    for (m = 0; m < 3; m++) {
        dlf_seq s;
        double ts = dlf_seconds();
        lesson_build_cnn(&s, 1, 1);                      /* the same initial weights each time */
        losses[m] = (float *)malloc(sizeof(float) * (size_t)(EPOCHS * train->n_batches));
        smooth[m] = (float *)malloc(sizeof(float) * (size_t)(EPOCHS * train->n_batches));
        train->epoch = 0;
        steps = train_run(&t, &s, train, &lr[m], &mom[m], losses[m]);
        took[m] = dlf_seconds() - ts;
        acc[m] = dlf_evaluate(&t, lesson_seq_model, &s, test, &test_loss[m]);
        dlf_seq_free(&s);
    }
    printf("  %-12s %10s %10s %10s %8s\n", "schedule", "last loss", "test loss", "test acc", "time");
    for (m = 0; m < 3; m++) {
        double avg = 0.0;
        /* the course's Recorder smooths nothing; an exponential average (beta 0.9, debiased)
           makes the curves readable */
        for (i = 0; i < steps; i++) {
            avg = 0.9 * avg + 0.1 * losses[m][i];
            smooth[m][i] = (float)(avg / (1.0 - pow(0.9, i + 1)));
        }
        printf("  %-12s %10.4f %10.4f %10.4f %7.1fs\n", names[m], smooth[m][steps - 1], test_loss[m], acc[m], took[m]);
        series[m].name = names[m];
        series[m].x = NULL;
        series[m].y = smooth[m];
        series[m].n = steps;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.title = "training loss (smoothed), same epochs";
    cfg.xlabel = "step";
    cfg.ylabel = "cross-entropy";
    cfg.logy = 1;
    if (dlf_svg_lines("docs/img/05_loss.svg", &cfg, series, 3) != DLF_OK)
        printf("  (picture not written: %s)\n", dlf_last_error());
    printf("\n  pictures: docs/img/05_schedules.svg, docs/img/05_one_cycle.svg, docs/img/05_loss.svg\n");
    printf("total %.1fs\n", dlf_seconds() - t0);

    for (m = 0; m < 3; m++) { free(losses[m]); free(smooth[m]); }
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
