/* 06b_hooks.c - looking inside the network: activation statistics and the "colorful
   dimension" (notebook 06_cuda_cnn_hooks, "Deep Learning from the Foundations", fast.ai;
   the docs page is docs/pictures.md, the code stage 16 of dlf.h).

   What it shows
     The CNN of lesson 07a (conv 8,16,32,32 stride 2, each followed by GeneralRelu(leak 0.1,
     sub 0.4, maxv 6), global average pool, linear) trained for 200 steps the way the
     notebook trains it to expose a bad start: plain SGD, no momentum, lr along the course's
     combined schedule of two cosines (dlf_sched_combine, 30% up, 70% down), scaled from the
     notebook's 0.2 -> 1.0 -> 0.1 to 0.1 -> 0.6 -> 0.05: at a peak of 1.0 the LSUV start,
     whose logits begin at std 1, diverges within the first epoch here.
     Three starts from the same random draw:
       default   PyTorch's default init (kaiming_uniform with a = sqrt(5)): each layer's
                 output std shrinks layer by layer;
       kaiming   Kaiming normal for the leak 0.1, biases 0 (the course's init_cnn);
       lsuv      LSUV on the default init (lesson 07a): every layer at mean 0, std 1 on one
                 batch before training.
     Telemetry does what the notebook's hooks do: attached to the tape, it records after
     each GeneralRelu (kinds_mask) and at the logits, which the model function marks with
     dlf_telemetry_mark, at every training step: mean, std, a 40-bin histogram over -7..7
     (the notebook's histc(40, -7, 7)) and the fraction of activations with |a| <= 0.5,
     near the GeneralRelu's floor of -0.4 (the notebook's get_min, bins 19..21).
     1. A table per start: each point's mean and std at the first and the last step, and
        its fraction near zero over the last 20 steps; then the test accuracy.
     2. Pictures for each start (docs/img/06b_stats_<start>.svg: mean and std per layer over
        the steps; docs/img/06b_hist_<start>.svg: the histogram of each layer over the steps,
        log(1 + count) as colour), and docs/img/06b_near_zero.svg, the last conv layer's
        fraction near zero for the three starts side by side. With the default init the
        histograms show the collapse: nearly everything at the floor, then activations
        spreading and collapsing again as the lr rises; Kaiming and LSUV start spread out.
   Data: data/mnist (run `make data`); when it is missing the lesson falls back to the
   1000-image subset in tests/data and says so. About 10 s on a quiet 2-core machine.

   In a debugger:   make debug && gdb build/debug/lessons/06b_hooks
     break dlf_telemetry_record   `p *tl`, `p tl->cursor`, `p tl->names[0]@tl->n_points`
     break train_run              `p *tl` after the loop: `p tl->mean[0]@tl->n_points`
   Variables to watch in main: `acc[0]`, `acc[1]`, `acc[2]`. */
#include <stdio.h>
#include <string.h>
#include <math.h>
#define DLF_IMPLEMENTATION
#include "../dlf.h"
#include "lesson.h"

#define N_TRAIN 12800
#define N_STEPS 200

/* the model function: the Sequential, then a mark at the logits */
static dlf_tensor *model(dlf_tape *t, dlf_tensor *x, void *m)
{
    dlf_tensor *logits = dlf_seq_forward(t, (const dlf_seq *)m, x);
    dlf_telemetry_mark(t, "logits", logits);
    return logits;
}

/* N_STEPS steps of plain SGD with the lr from sched, the telemetry recording each. */
static void train_run(dlf_tape *t, dlf_seq *s, dlf_loader *train, const dlf_schedule *sched)
{
    dlf_params pl;
    dlf_optim_cfg oc;
    dlf_optim *opt;
    int step = 0;
    dlf_params_init(&pl);
    dlf_seq_collect(s, &pl);
    memset(&oc, 0, sizeof oc);
    oc.lr = 0.2f;
    opt = dlf_optim_create_groups(DLF_OPTIM_SGD, &pl, &oc, 1);
    train->pos = 0;
    while (step < N_STEPS) {
        dlf_tensor *loss;
        if (dlf_loader_next(train) == 0) continue;   /* the end of an epoch: start the next */
        dlf_tape_reset(t);                           /* also: the next record starts a new step */
        loss = dlf_cross_entropy(t, model(t, train->x, s), train->y);
        dlf_backward(t, loss);
        opt->groups[0].lr = (float)dlf_schedule_at(sched, step, N_STEPS);
        dlf_optim_step(opt);
        dlf_optim_zero_grad(opt);
        step++;
    }
    dlf_optim_free(opt);
    dlf_params_free(&pl);
}

static void table(const dlf_telemetry *tl)
{
    int p, k, last = tl->n_steps - 1, mp = tl->cfg.max_points;
    printf("  %-16s %9s %9s   %9s %9s   %12s\n", "point", "mean@0", "std@0", "mean@end", "std@end",
           "near 0, end");
    for (p = 0; p < tl->n_points; p++) {
        double nz = 0.0;
        for (k = last - 19; k <= last; k++) nz += tl->near_zero[k * mp + p];
        printf("  %-16s %9.4f %9.4f   %9.4f %9.4f   %12.3f\n", tl->names[p], tl->mean[p], tl->std[p],
               tl->mean[last * mp + p], tl->std[last * mp + p], nz / 20.0);
    }
}

int main(void)
{
    static const char *const names[3] = {"default", "kaiming", "lsuv"};
    dlf_mnist data;
    dlf_dataset sub;
    dlf_loader *train, *test = NULL, *fixed;
    dlf_loader_cfg lc;
    dlf_telemetry_cfg tc;
    dlf_telemetry *tl;
    dlf_tape t;
    dlf_schedule parts[2], sched;
    double fr[2] = {0.3, 0.7}, t0 = dlf_seconds();
    float acc[3], test_loss[3], near0[3][N_STEPS];
    dlf_series series[3];
    dlf_plot_cfg cfg;
    char path[128], title[128];
    int m, k;

    if (lesson_load_mnist(&data, "") < 0) return 1;
    sub = dlf_dataset_view(&data.train, 0, data.train.n < N_TRAIN ? data.train.n : N_TRAIN);
    memset(&lc, 0, sizeof lc);
    lc.batch_size = 64;
    lc.shuffle = 1;
    lc.seed = 3;
    lc.mean = data.mean;
    lc.std = data.std;
    train = dlf_loader_create(&sub, &lc);
    lc.batch_size = 512;
    lc.shuffle = 0;
    fixed = dlf_loader_create(&sub, &lc);
    if (!train || !fixed || dlf_mnist_loaders(&data, 64, 500, 1, NULL, NULL, &test) != DLF_OK) return 1;
    dlf_loader_next(fixed);

    parts[0] = dlf_sched_cos(0.1, 0.6);   /* the notebook's shape, 0.2 -> 1.0 -> 0.1, scaled to a peak of 0.6 */
    parts[1] = dlf_sched_cos(0.6, 0.05);
    sched = dlf_sched_combine(fr, parts, 2);

    memset(&tc, 0, sizeof tc);
    tc.max_steps = N_STEPS;
    tc.max_points = 8;
    tc.bins = 40;
    tc.lo = -7.0f;
    tc.hi = 7.0f;
    tc.zero_eps = 0.5f;
    tc.kinds_mask = 1ul << DLF_LAYER_GENERAL_RELU;
    tl = dlf_telemetry_create(&tc);
    if (!tl) return 1;
    dlf_tape_init(&t);
    dlf_telemetry_attach(&t, tl);
    printf("%d steps of SGD (lr 0.1 -> 0.6 -> 0.05, no momentum) on %d images, batch 64, three starts\n",
           N_STEPS, sub.n);
    for (m = 0; m < 3; m++) {
        dlf_seq s;
        lesson_build_cnn(&s, 1, m == 1);
        if (m == 2) {
            dlf_lsuv_cfg lcfg;
            memset(&lcfg, 0, sizeof lcfg);
            dlf_telemetry_attach(&t, NULL);      /* LSUV's own forward passes are not training steps */
            dlf_seq_lsuv(&s, fixed->x, &lcfg);
            dlf_telemetry_attach(&t, tl);
        }
        dlf_telemetry_clear(tl);
        train->epoch = 0;
        train_run(&t, &s, train, &sched);
        dlf_telemetry_attach(&t, NULL);          /* evaluation runs in eval mode anyway */
        acc[m] = dlf_evaluate(&t, model, &s, test, &test_loss[m]);
        dlf_telemetry_attach(&t, tl);
        printf("\n%s init: test accuracy %.4f (loss %.4f), %d steps recorded at %d points\n", names[m], acc[m],
               test_loss[m], tl->n_steps, tl->n_points);
        table(tl);
        for (k = 0; k < N_STEPS; k++) near0[m][k] = tl->near_zero[k * tl->cfg.max_points + 3];
        snprintf(path, sizeof path, "docs/img/06b_stats_%s.svg", names[m]);
        snprintf(title, sizeof title, "activations after each GeneralRelu and the logits, %s init", names[m]);
        if (dlf_telemetry_plot_stats(tl, path, title) != DLF_OK) printf("  (picture not written: %s)\n", dlf_last_error());
        snprintf(path, sizeof path, "docs/img/06b_hist_%s.svg", names[m]);
        snprintf(title, sizeof title, "histograms over the steps, %s init (colour: log(1 + count))", names[m]);
        if (dlf_telemetry_plot_hist(tl, path, title) != DLF_OK) printf("  (picture not written: %s)\n", dlf_last_error());
        dlf_seq_free(&s);
    }
    for (m = 0; m < 3; m++) {
        series[m].name = names[m];
        series[m].x = NULL;
        series[m].y = near0[m];
        series[m].n = N_STEPS;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.title = "last conv layer: fraction of activations near zero";
    cfg.xlabel = "step";
    cfg.ylabel = "fraction with |a| <= 0.5";
    if (dlf_svg_lines("docs/img/06b_near_zero.svg", &cfg, series, 3) != DLF_OK)
        printf("  (picture not written: %s)\n", dlf_last_error());
    printf("\n  pictures: docs/img/06b_stats_*.svg, docs/img/06b_hist_*.svg, docs/img/06b_near_zero.svg\n");
    printf("total %.1fs\n", dlf_seconds() - t0);

    dlf_telemetry_free(tl);
    dlf_tape_destroy(&t);
    dlf_loader_free(train);
    dlf_loader_free(fixed);
    dlf_loader_free(test);
    dlf_mnist_free(&data);
    return 0;
}
