#!/usr/bin/python3
"""gen_sched.py - write the schedule fixtures in tests/ref/sched/ from torch.optim.lr_scheduler.

Run it with Debian's python3-torch: /usr/bin/python3 tools/gen_sched.py
The file is committed, so `make test` never needs PyTorch; tests/test_sched.c replays it.

tests/ref/sched/cases.txt holds one series a line:
    <case> <what> <total> <ctor> <arg> ... | <v0> <v1> ... <v(total-1)>
<what> is "lr" or "mom"; <ctor> and its arguments name the dlf constructor that must give
the same values (tests/test_sched.c maps each name to its call); v_i is the value PyTorch's
optimizer holds before its step i (after i scheduler steps), printed with repr(), so the
doubles are exact. Lines starting with # are comments.
"""

import os
import warnings

import torch

warnings.filterwarnings("ignore", message="The epoch parameter")  # SequentialLR steps with an epoch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "ref", "sched", "cases.txt")
lines = []


def run(make_sched, total, base_lr=1.0, momentum=0.9, key="momentum", adam=False):
    """The lr (and momentum) before each of total steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    if adam:
        opt = torch.optim.Adam([p], lr=base_lr)
    else:
        opt = torch.optim.SGD([p], lr=base_lr, momentum=momentum)
    sched = make_sched(opt)
    lrs, moms = [], []
    for i in range(total):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if adam else g["momentum"])
        opt.step()
        if i + 1 < total:
            sched.step()
    return lrs, moms


def emit(case, what, total, ctor, args, values):
    assert len(values) == total
    lines.append("%s %s %d %s %s | %s" % (case, what, total, ctor, " ".join(repr(float(a)) for a in args),
                                         " ".join(repr(float(v)) for v in values)))


def one_cycle_cases():
    OC = torch.optim.lr_scheduler.OneCycleLR
    cases = [(100, 0.3, 0.1, 25.0, 1e4, False), (2346, 0.3, 0.075, 25.0, 1e4, False),
             (50, 0.25, 1.0, 10.0, 100.0, False), (7, 0.5, 0.03, 25.0, 1e4, False),
             (100, 0.3, 0.1, 25.0, 1e4, True), (31, 0.2, 0.5, 25.0, 1e4, True),
             (1, 0.3, 3.0, 25.0, 1e4, False), (2, 0.3, 3.0, 25.0, 1e4, False),
             (3, 0.3, 3.0, 25.0, 1e4, False), (3, 0.25, 3.0, 25.0, 1e4, True),
             (5, 0.3, 3.0, 25.0, 1e4, True)]
    for total, pct, mx, div, fdiv, three in cases:
        name = "one_cycle_%d_%g_%g%s" % (total, pct, mx, "_3ph" if three else "")

        def mk(opt):
            return OC(opt, max_lr=mx, total_steps=total, pct_start=pct, div_factor=div,
                      final_div_factor=fdiv, three_phase=three, cycle_momentum=True,
                      base_momentum=0.85, max_momentum=0.95)
        lrs, moms = run(mk, total)
        emit(name, "lr", total, "one_cycle", [mx, pct, div, fdiv, int(three)], lrs)
        emit(name, "mom", total, "one_cycle_mom", [0.85, 0.95, pct, int(three)], moms)
    # Adam: OneCycleLR cycles beta1 the same way
    total = 40

    def mk_adam(opt):
        return OC(opt, max_lr=0.01, total_steps=total, base_momentum=0.85, max_momentum=0.95)
    lrs, moms = run(mk_adam, total, adam=True)
    emit("one_cycle_adam_40", "lr", total, "one_cycle", [0.01, 0.3, 25.0, 1e4, 0], lrs)
    emit("one_cycle_adam_40", "mom", total, "one_cycle_mom", [0.85, 0.95, 0.3, 0], moms)
    # anneal_strategy "linear"
    total = 60

    def mk_lin(opt):
        return OC(opt, max_lr=0.2, total_steps=total, anneal_strategy="linear")
    lrs, moms = run(mk_lin, total)
    emit("one_cycle_linear_60", "lr", total, "one_cycle_linear", [0.2, 0.3, 25.0, 1e4, 0], lrs)
    emit("one_cycle_linear_60", "mom", total, "one_cycle_mom_linear", [0.85, 0.95, 0.3, 0], moms)


def simple_cases():
    S = torch.optim.lr_scheduler
    for total, base, eta in [(100, 0.1, 0.0), (37, 0.5, 0.01), (1000, 1.0, 1e-4)]:
        lrs, _ = run(lambda o: S.CosineAnnealingLR(o, T_max=total, eta_min=eta), total, base)
        emit("cosine_%d_%g_%g" % (total, base, eta), "lr", total, "cos", [base, eta], lrs)
    for total, base, s, e in [(50, 0.1, 0.1, 1.0), (20, 1.0, 1.0, 0.25), (200, 0.3, 1.0 / 3, 1.0)]:
        lrs, _ = run(lambda o: S.LinearLR(o, start_factor=s, end_factor=e, total_iters=total), total, base)
        emit("linear_%d_%g_%g_%g" % (total, base, s, e), "lr", total, "linear", [base * s, base * e], lrs)
    for total, base, gamma in [(50, 0.1, 0.95), (300, 1.0, 0.99)]:
        lrs, _ = run(lambda o: S.ExponentialLR(o, gamma=gamma), total, base)
        emit("exponential_%d_%g_%g" % (total, base, gamma), "lr", total, "exp",
             [base, base * gamma ** total], lrs)
    for total, base, eta, T0, Tm in [(100, 0.1, 0.0, 10, 1), (150, 0.1, 0.001, 10, 2),
                                     (400, 1.0, 0.05, 7, 3), (25, 0.5, 0.0, 1, 2)]:
        lrs, _ = run(lambda o: S.CosineAnnealingWarmRestarts(o, T_0=T0, T_mult=Tm, eta_min=eta), total, base)
        emit("sgdr_%d_%g_%g_%d_%d" % (total, base, eta, T0, Tm), "lr", total, "sgdr", [base, eta, T0, Tm], lrs)
    # SequentialLR: a linear warm-up, then cosine annealing over the rest of the run
    for total, base, warm, sf, eta in [(100, 0.1, 10, 0.01, 0.0), (500, 1.0, 50, 0.1, 1e-3)]:
        def mk(o):
            w = S.LinearLR(o, start_factor=sf, end_factor=1.0, total_iters=warm)
            c = S.CosineAnnealingLR(o, T_max=total - warm, eta_min=eta)
            return S.SequentialLR(o, schedulers=[w, c], milestones=[warm])
        lrs, _ = run(mk, total, base)
        emit("sequential_warmup_cos_%d_%g_%d" % (total, base, warm), "lr", total, "warmup_cos",
             [warm, sf, base, eta], lrs)


one_cycle_cases()
simple_cases()
with open(OUT, "w") as f:
    f.write("# tests/ref/sched/cases.txt: written by tools/gen_sched.py with torch %s; see there\n"
            % torch.__version__)
    for ln in lines:
        f.write(ln + "\n")
print("%d series -> %s" % (len(lines), os.path.normpath(OUT)))
