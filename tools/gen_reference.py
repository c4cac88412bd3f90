#!/usr/bin/python3
"""gen_reference.py - write the PyTorch reference fixtures in tests/ref/.

Run it with Debian's python3-torch (`make reference`, i.e. `/usr/bin/python3 tools/gen_reference.py`).
The files are committed, so `make test` never needs PyTorch; tests/test_reference.c replays them.

One safetensors file per case, tests/ref/<case>.safetensors, holding
    in.0, in.1, ...   the inputs and parameters, in the fixed order of that op's C adapter
    out               the output PyTorch computed (float32)
    grad.out          a random upstream gradient, the seed of out.backward(grad.out)
    grad.in.0, ...    the gradients autograd gave the inputs that require grad (absent for
                      those that do not: labels, indices, targets)
and __metadata__ (strings only):
    op                the dlf op, e.g. "add", "matmul", "conv2d"
    <args>            the op's scalar arguments, e.g. "axis": "-1", "keepdim": "1", "stride": "2"
    torch             the PyTorch version that wrote it
    atol, rtol        the comparison rule: |dlf - ref| <= atol + rtol*|ref|
Optimizer and whole-model cases ("sgd", "mnist_cnn", "mnist_cnn_train") store their own tensors,
described at their functions. tests/ref/INDEX lists every case, one name a line.
Normalization, dropout, every optimizer kind, clip_grad_norm and the BatchNorm CNN (stages 9-11) go
to tests/ref/norm_optim/ with their own INDEX (@op(name, subdir)); tests/test_ref_norm_optim.c
replays those, so tests/test_reference.c never sees them.

Adding an op costs one function: decorate it with @op("name") and call emit() once per case.
Every case is also run in float64; the generator stops if PyTorch's own float32 result is
not within half the case's tolerance of the float64 one, so a tolerance can never be tighter
than float32 arithmetic allows.

Determinism: each case draws from its own generator seeded from its name, torch runs on one
thread, and the files are written byte for byte the same on every run. Stale fixtures (a
case that is no longer generated) are deleted.
"""

import copy
import math
import re
import os
import sys
import zlib

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "ref")

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# ------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, data buffer, the header
# padded with spaces so the data starts 8-byte aligned. The reader and writer are the small
# pure-torch ones in tools/dlf_safetensors.py (the ones docs/interop.md shows).

sys.path.insert(0, HERE)
import dlf_safetensors  # noqa: E402  (tools/dlf_safetensors.py)


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, float tensor), stored as F32; metadata: dict str -> str. Returns bytes."""
    return dlf_safetensors.save_bytes([(name, t.detach().to(torch.float32)) for name, t in tensors], metadata)


# ------------------------------------------------------------------------------------------
# The registry: op name -> function that emits that op's cases.

OPS = {}
CASES = {}   # case name -> bytes
CASE_DIR = {}  # case name -> its folder under tests/ref ("" or "norm_optim")
CUR_DIR = [""]


def op(name, subdir=""):
    """Register an op's case function; subdir: its cases go to tests/ref/<subdir>/ with their own INDEX."""
    def deco(fn):
        OPS[name] = (fn, subdir)
        return fn
    return deco


class Rand:
    """The random numbers of one case, seeded from its name (so adding a case changes no other)."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def n(self, *shape):                       # N(0, 1)
        return torch.randn(shape, generator=self.g)

    def u(self, lo, hi, *shape):               # U[lo, hi)
        return lo + (hi - lo) * torch.rand(shape, generator=self.g)

    def away(self, *shape, gap=0.1):           # N(0,1) pushed at least `gap` away from 0 (no kinks)
        x = self.n(*shape)
        return x + gap * torch.sign(x)

    def ints(self, hi, *shape):                # integers 0..hi-1, stored as floats
        return torch.randint(0, hi, shape, generator=self.g).to(torch.float32)


def shp(shape):
    return "x".join(str(d) for d in shape) if len(shape) else "s"


def num(v):
    """A number as it may appear in a case name: -1.5 -> m1p5."""
    return ("%g" % v).replace("-", "m").replace(".", "p")


def _close(a, ref, atol, rtol):
    return bool(((a.double() - ref.double()).abs() <= atol + rtol * ref.double().abs()).all())


def check64(name, checks, atol, rtol):
    """checks: (what, float32 result, float64 result). Stop unless within half the tolerance."""
    for what, a, b in checks:
        if not _close(a, b, atol / 2, rtol / 2):
            d = (a.double() - b.double()).abs().max().item()
            sys.exit("gen_reference: %s %s: float32 vs float64 differ by %g, over half the tolerance "
                     "(atol %g rtol %g); loosen it" % (name, what, d, atol, rtol))


def emit(name, opname, fn, make_inputs, grads=None, meta=None, atol=1e-6, rtol=1e-5):
    """One case: inputs = make_inputs(Rand(name)); out = fn(*inputs); out.backward(grad_out).
    grads[i] says whether input i requires grad (default: all)."""
    assert name not in CASES, "duplicate case " + name
    assert re.fullmatch(r"[A-Za-z0-9_]+", name), "case names are [A-Za-z0-9_]: " + name
    CASE_DIR[name] = CUR_DIR[0]
    r = Rand(name)
    inputs = [x.to(torch.float32) for x in make_inputs(r)]
    if grads is None:
        grads = [True] * len(inputs)
    # float32: the reference we store
    xs = [x.clone().requires_grad_(g) for x, g in zip(inputs, grads)]
    out = fn(*xs)
    grad_out = r.n(*out.shape)
    out.backward(grad_out)
    # float64: the check that the tolerance is honest
    xd = [x.double().requires_grad_(g) for x, g in zip(inputs, grads)]
    outd = fn(*xd)
    outd.backward(grad_out.double())
    checks = [("out", out, outd)] + [("grad.in.%d" % i, xs[i].grad, xd[i].grad)
                                     for i in range(len(xs)) if grads[i]]
    check64(name, checks, atol, rtol)
    tensors = [("in.%d" % i, x) for i, x in enumerate(inputs)]
    tensors += [("out", out), ("grad.out", grad_out)]
    tensors += [("grad.in.%d" % i, xs[i].grad) for i in range(len(xs)) if grads[i]]
    md = {"op": opname}
    for k, v in (meta or {}).items():
        md[k] = fmt(v)
    md.update({"torch": torch.__version__, "atol": repr(atol), "rtol": repr(rtol)})
    CASES[name] = safetensors_bytes(tensors, md)


def emit_raw(name, tensors, meta):
    """A case the C side replays its own way (optimizers, whole models)."""
    assert name not in CASES, "duplicate case " + name
    CASE_DIR[name] = CUR_DIR[0]
    md = {k: fmt(v) for k, v in meta.items()}
    md["torch"] = torch.__version__
    CASES[name] = safetensors_bytes(tensors, md)


def fmt(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    return str(v)


# ------------------------------------------------------------------------------------------
# Stage 3: elementwise ops, broadcasting, reductions

BCAST = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1), (1, 5)), ((2, 3, 4), (3, 1)),
         ((3, 1, 5), (4, 1)), ((2, 1, 3, 1), (5, 1, 4)), ((1,), (7,)), ((3, 4), ()),
         ((), (2, 3)), ((5, 1), (5, 6))]


def binary(opname, fn, denom=False):
    for sa, sb in BCAST:
        emit("%s_%s_%s" % (opname, shp(sa), shp(sb)), opname, fn,
             lambda r: [r.n(*sa), r.away(*sb, gap=0.5) if denom else r.n(*sb)])
    # only one side requires grad: the other gets none and the op must not mind
    emit("%s_2x3_3_nogradb" % opname, opname, fn,
         lambda r: [r.n(2, 3), r.away(3, gap=0.5) if denom else r.n(3)], grads=[True, False])
    emit("%s_3_2x3_nograda" % opname, opname, fn,
         lambda r: [r.n(3), r.away(2, 3, gap=0.5) if denom else r.n(2, 3)], grads=[False, True])


@op("add")
def _add():
    binary("add", lambda a, b: a + b)


@op("sub")
def _sub():
    binary("sub", lambda a, b: a - b)


@op("mul")
def _mul():
    binary("mul", lambda a, b: a * b)


@op("div")
def _div():
    binary("div", lambda a, b: a / b, denom=True)


UNARY_SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 3, 2, 5), (1,), ()]


def unary(opname, fn, make, meta=None, tag="", atol=1e-6, rtol=1e-5):
    for s in UNARY_SHAPES:
        emit("%s%s_%s" % (opname, tag, shp(s)), opname, fn, lambda r: [make(r, s)], meta=meta,
             atol=atol, rtol=rtol)


def pos(r, s):
    return r.u(0.2, 3.0, *s)


@op("add_scalar")
def _add_scalar():
    for s in (2.5, -0.75):
        unary("add_scalar", lambda a: a + s, lambda r, sh: r.n(*sh), {"s": s}, tag="_" + num(s))


@op("mul_scalar")
def _mul_scalar():
    for s in (-1.5, 0.0, 3.0):
        unary("mul_scalar", lambda a: a * s, lambda r, sh: r.n(*sh), {"s": s}, tag="_" + num(s))


@op("pow_scalar")
def _pow_scalar():
    for p in (2.0, 3.0):      # integer powers: any sign
        unary("pow_scalar", lambda a: a ** p, lambda r, sh: r.n(*sh), {"s": p}, tag="_" + num(p))
    for p in (0.5, -1.5, 2.75):  # fractional: positive inputs
        unary("pow_scalar", lambda a: a ** p, pos, {"s": p}, tag="_" + num(p), atol=1e-5)


@op("neg")
def _neg():
    unary("neg", torch.neg, lambda r, s: r.n(*s))


@op("exp")
def _exp():
    unary("exp", torch.exp, lambda r, s: r.n(*s), atol=1e-5)


@op("log")
def _log():
    unary("log", torch.log, pos, atol=1e-5)


@op("sqrt")
def _sqrt():
    unary("sqrt", torch.sqrt, pos)


@op("square")
def _square():
    unary("square", torch.square, lambda r, s: r.n(*s))


@op("abs")
def _abs():
    unary("abs", torch.abs, lambda r, s: r.away(*s))


@op("relu")
def _relu():
    unary("relu", torch.relu, lambda r, s: r.away(*s))


@op("sigmoid")
def _sigmoid():
    unary("sigmoid", torch.sigmoid, lambda r, s: 3 * r.n(*s))


@op("tanh")
def _tanh():
    unary("tanh", torch.tanh, lambda r, s: 2 * r.n(*s))


REDUCE = [((3, 5), 0), ((3, 5), 1), ((3, 5), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -1),
          ((2, 3, 4, 5), 1), ((2, 3, 4, 5), 3), ((3, 1, 4), 1), ((7,), 0), ((1, 6), 1)]


def reduction(opname, fn, extra=None, atol=1e-5, rtol=1e-5):
    for s, axis in REDUCE:
        for keepdim in (0, 1):
            meta = {"axis": axis, "keepdim": keepdim}
            meta.update(extra or {})
            tag = "".join("_%s%s" % (k[0], v) for k, v in (extra or {}).items())
            emit("%s%s_%s_axis%s_keep%d" % (opname, tag, shp(s), num(axis), keepdim), opname,
                 lambda a: fn(a, axis, bool(keepdim)), lambda r: [r.n(*s)], meta=meta,
                 atol=atol, rtol=rtol)


@op("sum")
def _sum():
    reduction("sum", lambda a, ax, k: a.sum(ax, keepdim=k))


@op("mean")
def _mean():
    reduction("mean", lambda a, ax, k: a.mean(ax, keepdim=k))


@op("max")
def _max():
    reduction("max", lambda a, ax, k: a.max(ax, keepdim=k).values)
    # ties (values 0, 1, 2): PyTorch gives the max and its whole gradient to the first maximum
    for s, axis in [((4, 6, 5), 0), ((4, 6, 5), 1), ((4, 6, 5), 2), ((3, 8), -1)]:
        emit("max_ties_%s_axis%s" % (shp(s), num(axis)), "max", lambda a: a.max(axis).values,
             lambda r: [r.ints(3, *s)], meta={"axis": axis, "keepdim": 0})


@op("var")
def _var():
    for c in (0, 1):
        # correction 1 over a length-1 axis divides by 0: PyTorch gives nan/inf, skip those
        for s, axis in REDUCE:
            if c == 1 and s[axis] == 1:
                continue
            for keepdim in (0, 1):
                emit("var_c%d_%s_axis%s_keep%d" % (c, shp(s), num(axis), keepdim), "var",
                     lambda a: a.var(axis, unbiased=bool(c), keepdim=bool(keepdim)),
                     lambda r: [r.n(*s)], meta={"axis": axis, "keepdim": keepdim, "correction": c},
                     atol=1e-5, rtol=1e-5)


@op("sum_all")
def _sum_all():
    for s in [(7,), (3, 5), (2, 3, 4), (2, 3, 4, 5), ()]:
        emit("sum_all_%s" % shp(s), "sum_all", torch.sum, lambda r: [r.n(*s)], atol=1e-5)


@op("mean_all")
def _mean_all():
    for s in [(7,), (3, 5), (2, 3, 4), (2, 3, 4, 5), ()]:
        emit("mean_all_%s" % shp(s), "mean_all", torch.mean, lambda r: [r.n(*s)], atol=1e-5)


@op("reshape")
def _reshape():
    for s, to in [((2, 3, 4), (6, 4)), ((2, 3, 4), (4, -1)), ((24,), (2, 3, 2, 2)), ((3, 4), (12,)),
                  ((2, 3, 4, 5), (-1,)), ((1, 5), (5, 1)), ((6,), (1, 1, 6)), ((1,), ())]:
        emit("reshape_%s_to_%s" % (shp(s), shp(to).replace("-1", "m1")), "reshape",
             lambda a: a.reshape(to), lambda r: [r.n(*s)], meta={"shape": to})


# ------------------------------------------------------------------------------------------
# Tensor ops (stage 3 and 4): shape ops, indexing, clamp, minimum/maximum, where, reductions
# over several axes, min, 0-dim reductions, batched matmul and torch.matmul's rules

@op("permute")
def _permute():
    for s, p in [((2, 3), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (0, 2, 1)), ((2, 3, 4, 5), (3, 1, 0, 2)),
                 ((2, 3, 4, 5), (0, 1, 2, 3)), ((4,), (0,)), ((2, 3, 4), (-1, 0, 1))]:
        emit("permute_%s_p%s" % (shp(s), "".join(num(d) for d in p)), "permute", lambda a: a.permute(*p),
             lambda r: [r.n(*s)], meta={"perm": p})


@op("transpose")
def _transpose():
    for s, d0, d1 in [((3, 5), 0, 1), ((2, 3, 4), 0, 2), ((2, 3, 4, 5), 1, -1), ((2, 3, 4), 1, 1), ((), 0, -1)]:
        emit("transpose_%s_%s_%s" % (shp(s), num(d0), num(d1)), "transpose", lambda a: a.transpose(d0, d1),
             lambda r: [r.n(*s)], meta={"dim0": d0, "dim1": d1})


@op("narrow")
def _narrow():
    for s, d, st, ln in [((5, 3), 0, 1, 3), ((5, 3), 1, 2, 1), ((2, 6, 4), 1, 0, 6), ((2, 6, 4), -1, 1, 2),
                         ((2, 3, 4, 5), 2, 3, 1), ((7,), 0, -3, 2), ((4, 3), 0, 2, 0)]:
        emit("narrow_%s_d%s_s%s_l%d" % (shp(s), num(d), num(st), ln), "narrow", lambda a: a.narrow(d, st, ln),
             lambda r: [r.n(*s)], meta={"dim": d, "start": st, "length": ln})


@op("cat")
def _cat():
    for shapes, d in [([(2, 3), (4, 3)], 0), ([(2, 3), (2, 1), (2, 4)], 1), ([(2, 3, 4)] * 5, 1),
                      ([(1, 2, 3, 2), (1, 2, 1, 2), (1, 2, 2, 2), (1, 2, 3, 2)], -2), ([(3,), (0,), (2,)], 0),
                      ([(2, 2)], 0)]:
        emit("cat_%s_d%s" % ("_".join(shp(s) for s in shapes), num(d)), "cat", lambda *xs: torch.cat(xs, d),
             lambda r: [r.n(*s) for s in shapes], meta={"dim": d})
    # only some inputs require grad: the nodes of the others record nothing
    emit("cat_3x2_5_d0_partgrad", "cat", lambda *xs: torch.cat(xs, 0),
         lambda r: [r.n(3, 2) for _ in range(5)], grads=[False, False, False, True, False], meta={"dim": 0})


@op("stack")
def _stack():
    for s, n, d in [((2, 3), 2, 0), ((2, 3), 3, 1), ((2, 3), 4, -1), ((2, 3, 4), 2, 3), ((4,), 5, 0), ((), 3, 0)]:
        emit("stack_%s_n%d_d%s" % (shp(s), n, num(d)), "stack", lambda *xs: torch.stack(xs, d),
             lambda r: [r.n(*s) for _ in range(n)], meta={"dim": d})


@op("index_select")
def _index_select():
    for s, d, m in [((5, 3), 0, 7), ((5, 3), 1, 2), ((2, 6, 4), 1, 9), ((2, 3, 4, 5), -1, 3), ((6,), 0, 6),
                    ((4, 3), 0, 0)]:
        emit("index_select_%s_d%s_m%d" % (shp(s), num(d), m), "index_select",
             lambda a, i: a.index_select(d, i.long()),
             lambda r: [r.n(*s), r.ints(s[d], m)], grads=[True, False], meta={"dim": d})


@op("gather")
def _gather():
    for s, d, si in [((4, 3), 0, (6, 3)), ((4, 3), 1, (4, 5)), ((3, 4, 5), 1, (2, 7, 3)), ((2, 3, 4, 5), -1, (2, 3, 4, 2)),
                     ((6,), 0, (10,))]:
        emit("gather_%s_d%s_i%s" % (shp(s), num(d), shp(si)), "gather", lambda a, i: a.gather(d, i.long()),
             lambda r: [r.n(*s), r.ints(s[d], *si)], grads=[True, False], meta={"dim": d})


@op("clamp")
def _clamp():
    def make(r, s, lo, hi):   # off the two bounds (kinks)
        x = 2 * r.n(*s)
        for b in (lo, hi):
            if math.isfinite(b):
                x = torch.where((x - b).abs() < 0.05, x + 0.1, x)
        return [x]
    for lo, hi in [(-1.0, 0.5), (-math.inf, 0.0), (0.25, math.inf), (1.0, -1.0)]:
        for s in [(7,), (3, 5), (2, 3, 2, 5)]:
            emit("clamp_%s_%s_%s" % (num(lo).replace("inf", "inf"), num(hi), shp(s)), "clamp",
                 lambda a: a.clamp(lo, hi), lambda r: make(r, s, lo, hi), meta={"lo": lo, "hi": hi})


@op("minimum")
def _minimum():
    binary("minimum", torch.minimum)
    # ties: values 0, 1, 2; PyTorch splits g in halves at a tie
    emit("minimum_ties_4x5_5", "minimum", torch.minimum, lambda r: [r.ints(3, 4, 5), r.ints(3, 5)])


@op("maximum")
def _maximum():
    binary("maximum", torch.maximum)
    emit("maximum_ties_4x5_5", "maximum", torch.maximum, lambda r: [r.ints(3, 4, 5), r.ints(3, 5)])


@op("where")
def _where():
    for sc, sa, sb in [((2, 3), (2, 3), (2, 3)), ((3, 1), (1, 4), (3, 4)), ((4,), (2, 3, 4), ()), ((2, 1, 3, 1), (5, 1, 1), (3, 4))]:
        emit("where_%s_%s_%s" % (shp(sc), shp(sa), shp(sb)), "where", lambda c, a, b: torch.where(c > 0, a, b),
             lambda r: [r.ints(2, *sc), r.n(*sa), r.n(*sb)], grads=[False, True, True])


@op("min")
def _min():
    reduction("min", lambda a, ax, k: a.min(ax, keepdim=k).values)
    for s, axis in [((4, 6, 5), 1), ((3, 8), -1)]:
        emit("min_ties_%s_axis%s" % (shp(s), num(axis)), "min", lambda a: a.min(axis).values,
             lambda r: [r.ints(3, *s)], meta={"axis": axis, "keepdim": 0})


AXES = [((3, 5), (0, 1)), ((3, 5), (-1,)), ((2, 3, 4), (0, 2)), ((2, 3, 4), (2, 0)), ((2, 3, 4, 5), (1, 3)),
        ((2, 3, 4, 5), (0, 1, 2)), ((2, 3, 4, 5), (-1, -4)), ((3, 1, 4), (1,)), ((7,), (0,)), ((2, 3), ())]


@op("sum_axes")
def _sum_axes():
    for s, axes in AXES:
        for keepdim in (0, 1):
            emit("sum_axes_%s_a%s_keep%d" % (shp(s), "".join(num(a) for a in axes) or "none", keepdim), "sum_axes",
                 lambda a: a.sum(list(axes), keepdim=bool(keepdim)), lambda r: [r.n(*s)],
                 meta={"axes": axes, "keepdim": keepdim}, atol=1e-5)


@op("mean_axes")
def _mean_axes():
    for s, axes in AXES:
        for keepdim in (0, 1):
            emit("mean_axes_%s_a%s_keep%d" % (shp(s), "".join(num(a) for a in axes) or "none", keepdim), "mean_axes",
                 lambda a: a.mean(list(axes), keepdim=bool(keepdim)), lambda r: [r.n(*s)],
                 meta={"axes": axes, "keepdim": keepdim}, atol=1e-5)


@op("reduce_0dim")
def _reduce_0dim():
    # a 0-dim tensor reduces over axis 0 or -1 to itself (sum, mean, max, min; var with correction 0 is 0)
    for name, fn in [("sum", lambda a, ax: a.sum(ax)), ("mean", lambda a, ax: a.mean(ax)),
                     ("max", lambda a, ax: a.max(ax).values), ("min", lambda a, ax: a.min(ax).values),
                     ("var", lambda a, ax: a.var(ax, unbiased=False))]:
        for axis in (0, -1):
            for keepdim in (0, 1):
                emit("reduce_0dim_%s_axis%s_keep%d" % (name, num(axis), keepdim), "reduce_0dim",
                     lambda a: fn(a, axis), lambda r: [r.n()], meta={"reduce": name, "axis": axis, "keepdim": keepdim})


@op("bmm")
def _bmm():
    for B, M, K, N in [(1, 1, 1, 1), (3, 2, 4, 5), (4, 7, 13, 5), (2, 33, 65, 17)]:
        emit("bmm_%dx%dx%dx%d" % (B, M, K, N), "bmm", torch.bmm, lambda r: [r.n(B, M, K), r.n(B, K, N)],
             atol=2e-5, rtol=1e-5)


@op("matmul_nd")
def _matmul_nd():
    # torch.matmul's rules: 1-D on either side, batch dims broadcast (up to 4 dims in all)
    for sa, sb in [((4,), (4,)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                   ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                   ((1, 3, 4), (2, 2, 4, 5)), ((4,), (2, 3, 4, 5)), ((2, 3, 2, 4), (4,)), ((1, 2, 3), (3, 2))]:
        emit("matmul_nd_%s_%s" % (shp(sa), shp(sb)), "matmul_nd", torch.matmul, lambda r: [r.n(*sa), r.n(*sb)],
             atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Stage 4: matmul, with every transpose flag: out = op(a) @ op(b), a stored (K,M) when ta

@op("matmul")
def _matmul():
    # the last size crosses dlf's packing blocks (MC 96, KC 256) by one: two flag pairs only, to stay small
    for M, K, N in [(1, 1, 1), (1, 5, 1), (3, 1, 4), (7, 13, 5), (17, 9, 33), (2, 64, 3), (33, 65, 17),
                    (97, 257, 17)]:
        for ta in (0, 1):
            for tb in (0, 1):
                if M == 97 and ta != tb:
                    continue
                sa = (K, M) if ta else (M, K)
                sb = (N, K) if tb else (K, N)
                emit("matmul_%dx%dx%d_t%d%d" % (M, K, N, ta, tb), "matmul",
                     lambda a, b: (a.t() if ta else a) @ (b.t() if tb else b),
                     lambda r: [r.n(*sa), r.n(*sb)], meta={"ta": ta, "tb": tb},
                     atol=2e-5 if K < 100 else 1e-4, rtol=1e-5 if K < 100 else 1e-4)


# ------------------------------------------------------------------------------------------
# Stage 11: SGD, torch.optim.SGD exactly.
# Tensors: param.<i> (initial), then for each step s = 1..3: grad.<s>.<i> (the gradient put in
# p.grad before the step) and param.<s>.<i> (the parameter after it).
# Metadata: lr, momentum, dampening, weight_decay, nesterov, steps, n_params, atol, rtol.

@op("sgd")
def _sgd():
    variants = [("plain", {}), ("mom", {"momentum": 0.9}), ("mom_damp", {"momentum": 0.9, "dampening": 0.1}),
                ("wd", {"weight_decay": 0.01}), ("mom_wd", {"momentum": 0.9, "weight_decay": 0.01}),
                ("nesterov", {"momentum": 0.9, "nesterov": True}),
                ("nesterov_wd", {"momentum": 0.5, "nesterov": True, "weight_decay": 0.1}),
                ("all", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05})]
    for tag, kw in variants:
        name = "sgd_" + tag
        r = Rand(name)
        shapes = [(3, 4), (5,), (2, 1, 3, 3)]
        ps = [torch.nn.Parameter(r.n(*s)) for s in shapes]
        tensors = [("param.%d" % i, p.detach().clone()) for i, p in enumerate(ps)]
        cfg = {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
        cfg.update(kw)
        opt = torch.optim.SGD(ps, **cfg)
        steps = 3
        for s in range(1, steps + 1):
            for i, p in enumerate(ps):
                p.grad = r.n(*p.shape)
                tensors.append(("grad.%d.%d" % (s, i), p.grad.clone()))
            opt.step()
            for i, p in enumerate(ps):
                tensors.append(("param.%d.%d" % (s, i), p.detach().clone()))
        meta = {"op": "sgd", "steps": steps, "n_params": len(ps), "atol": 1e-6, "rtol": 1e-5}
        meta.update(cfg)
        emit_raw(name, tensors, meta)


# Tensor lr (total,): the learning rate torch.optim.lr_scheduler.OneCycleLR gives step i
# (read before the i-th optimizer step). Metadata: max_lr, pct_start, total. dlf does not
# cycle momentum, so cycle_momentum=False.

@op("one_cycle")
def _one_cycle():
    for total, pct, max_lr in [(10, 0.3, 0.1), (100, 0.3, 0.075), (2346, 0.3, 0.075),
                               (50, 0.25, 1.0), (7, 0.5, 0.03), (1000, 0.1, 0.5)]:
        name = "one_cycle_%d_%s_%s" % (total, num(pct), num(max_lr))
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=max_lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                                    pct_start=pct, cycle_momentum=False)
        lrs = []
        for i in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if i + 1 < total:
                sched.step()
        emit_raw(name, [("lr", torch.tensor(lrs, dtype=torch.float32))],
                 {"op": "one_cycle", "max_lr": repr(max_lr), "pct_start": repr(pct), "total": total,
                  "atol": 1e-9, "rtol": 1e-5})


# ------------------------------------------------------------------------------------------
# Stage 6: layers

@op("linear")
def _linear():
    # in.0 x (N, in), in.1 weight (out, in), in.2 bias (out,) when "bias" is 1
    for N, I, O in [(1, 1, 1), (4, 7, 3), (16, 32, 10), (3, 50, 1), (1, 9, 5)]:
        for bias in (1, 0):
            def make(r):
                xs = [r.n(N, I), r.n(O, I) / I ** 0.5]
                return xs + [r.n(O)] if bias else xs
            emit("linear_%dx%d_to_%d%s" % (N, I, O, "" if bias else "_nobias"), "linear",
                 lambda x, w, b=None: F.linear(x, w, b), make, meta={"bias": bias}, atol=1e-5, rtol=1e-5)


CONV = [  # N, C, H, W, K, kh, kw, stride, pad
    (2, 3, 8, 8, 4, 3, 3, 1, 1), (2, 3, 8, 8, 4, 3, 3, 2, 1), (1, 1, 7, 7, 2, 1, 1, 1, 0),
    (1, 2, 9, 7, 3, 5, 5, 1, 2), (2, 2, 11, 10, 3, 5, 5, 2, 2), (1, 3, 6, 9, 2, 3, 3, 1, 0),
    (3, 1, 28, 28, 4, 5, 5, 2, 2), (1, 4, 5, 5, 5, 3, 3, 2, 0), (2, 2, 7, 6, 3, 3, 5, 1, 1),
    (1, 3, 4, 4, 2, 1, 1, 2, 0), (1, 2, 5, 5, 2, 3, 3, 1, 2), (2, 8, 7, 7, 16, 3, 3, 2, 1),
    (1, 2, 4, 4, 3, 1, 1, 1, 2), (1, 2, 7, 8, 2, 2, 2, 3, 1), (1, 1, 3, 3, 1, 3, 3, 1, 0)]


@op("conv2d")
def _conv2d():
    # in.0 x (N,C,H,W), in.1 weight (K,C,kh,kw), in.2 bias (K,) when "bias" is 1
    for i, (N, C, H, W, K, kh, kw, st, pd) in enumerate(CONV):
        for bias in ((1, 0) if i % 3 == 0 else (1,)):
            def make(r):
                xs = [r.n(N, C, H, W), r.n(K, C, kh, kw) / (C * kh * kw) ** 0.5]
                return xs + [r.n(K)] if bias else xs
            emit("conv2d_%dx%dx%dx%d_k%dx%dx%d_s%d_p%d%s" % (N, C, H, W, K, kh, kw, st, pd, "" if bias else "_nobias"),
                 "conv2d", lambda x, w, b=None: F.conv2d(x, w, b, stride=st, padding=pd), make,
                 meta={"stride": st, "pad": pd, "bias": bias}, atol=1e-4, rtol=1e-4)


POOL = [  # N, C, H, W, k, stride, pad
    (1, 1, 4, 4, 2, 2, 0), (2, 3, 7, 7, 3, 2, 1), (1, 2, 6, 5, 2, 1, 0), (2, 1, 9, 9, 3, 3, 0),
    (1, 2, 5, 7, 3, 1, 1), (1, 1, 8, 8, 4, 2, 2), (2, 2, 5, 5, 1, 2, 0)]


@op("maxpool2d")
def _maxpool2d():
    for N, C, H, W, k, st, pd in POOL:
        # random normals: ties have probability 0, so the argmax is unambiguous
        emit("maxpool2d_%dx%dx%dx%d_k%d_s%d_p%d" % (N, C, H, W, k, st, pd), "maxpool2d",
             lambda x: F.max_pool2d(x, k, st, pd), lambda r: [r.n(N, C, H, W)],
             meta={"k": k, "stride": st, "pad": pd})
    # ties: after a relu most of a window is 0, and integer images tie everywhere. PyTorch gives
    # the gradient to the first maximum of the window in row-major order.
    for N, C, H, W, k, st, pd in [(2, 3, 7, 7, 3, 2, 1), (1, 2, 6, 6, 2, 2, 0)]:
        emit("maxpool2d_ties_%dx%dx%dx%d_k%d_s%d_p%d" % (N, C, H, W, k, st, pd), "maxpool2d",
             lambda x: F.max_pool2d(x, k, st, pd), lambda r: [r.ints(3, N, C, H, W)],
             meta={"k": k, "stride": st, "pad": pd})
        emit("maxpool2d_relu_%dx%dx%dx%d_k%d_s%d_p%d" % (N, C, H, W, k, st, pd), "maxpool2d",
             lambda x: F.max_pool2d(x, k, st, pd), lambda r: [torch.relu(r.n(N, C, H, W) - 0.8)],
             meta={"k": k, "stride": st, "pad": pd})


@op("avgpool2d")
def _avgpool2d():
    # PyTorch's default count_include_pad=True: padded zeros count in the divisor k*k
    for N, C, H, W, k, st, pd in POOL:
        emit("avgpool2d_%dx%dx%dx%d_k%d_s%d_p%d" % (N, C, H, W, k, st, pd), "avgpool2d",
             lambda x: F.avg_pool2d(x, k, st, pd), lambda r: [r.n(N, C, H, W)],
             meta={"k": k, "stride": st, "pad": pd})


@op("global_avgpool")
def _global_avgpool():
    # (N,C,H,W) -> (N,C): nn.AdaptiveAvgPool2d(1) then nn.Flatten(), as dlf_global_avgpool does both
    for s in [(2, 3, 4, 4), (1, 1, 1, 1), (3, 5, 7, 2), (1, 32, 2, 2)]:
        emit("global_avgpool_%s" % shp(s), "global_avgpool", lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
             lambda r: [r.n(*s)], atol=1e-5)


@op("flatten")
def _flatten():
    # nn.Flatten(): keep dim 0, flatten the rest
    for s in [(2, 3, 4, 4), (1, 1, 1, 1), (3, 5), (2, 32, 1, 1), (4, 2, 3)]:
        emit("flatten_%s" % shp(s), "flatten", lambda x: torch.flatten(x, 1), lambda r: [r.n(*s)])


@op("leaky_relu")
def _leaky_relu():
    for slope in (0.01, 0.1, 0.0):
        for s in [(7,), (2, 3, 4), (2, 3, 2, 5)]:
            emit("leaky_relu_%s_%s" % (num(slope), shp(s)), "leaky_relu", lambda x: F.leaky_relu(x, slope),
                 lambda r: [r.away(*s)], meta={"slope": slope})


@op("general_relu")
def _general_relu():
    # the course's GeneralRelu(leak, sub, maxv): leaky_relu(x, leak) - sub, then clamp_max(maxv)
    def gr(x, leak, sub, maxv):
        x = F.leaky_relu(x, leak) if leak is not None else F.relu(x)
        if sub is not None:
            x = x - sub
        if maxv is not None:
            x = x.clamp_max(maxv)
        return x
    for leak, sub, maxv in [(0.1, 0.4, 6.0), (0.0, 0.0, None), (0.1, 0.4, 1.0), (None, 0.5, None)]:
        tag = "_l%s_s%s_m%s" % tuple("none" if v is None else num(v) for v in (leak, sub, maxv))
        for s in [(7,), (2, 3, 4, 5)]:
            # keep inputs off the kinks at 0 and at maxv + sub
            def make(r):
                x = 2 * r.away(*s)
                if maxv is not None:
                    knee = maxv + (sub or 0)
                    x = torch.where((x - knee).abs() < 0.05, x + 0.1, x)
                return [x]
            emit("general_relu%s_%s" % (tag, shp(s)), "general_relu",
                 lambda x: gr(x, leak, sub, maxv), make,
                 meta={"leak": 0.0 if leak is None else leak, "sub": 0.0 if sub is None else sub,
                       "maxv": "inf" if maxv is None else maxv})


@op("softmax")
def _softmax():
    for s, axis in [((4, 10), -1), ((4, 10), 0), ((1, 1), -1), ((2, 3, 5), 1), ((3, 7), 1), ((2, 3, 4, 5), -1)]:
        emit("softmax_%s_axis%s" % (shp(s), num(axis)), "softmax", lambda x: F.softmax(x, axis),
             lambda r: [3 * r.n(*s)], meta={"axis": axis})
    # huge logits: exp would overflow without the max subtracted
    emit("softmax_large_4x10_axis1", "softmax", lambda x: F.softmax(x, 1), lambda r: [100 * r.n(4, 10)],
         meta={"axis": 1})


@op("log_softmax")
def _log_softmax():
    for s, axis in [((4, 10), -1), ((4, 10), 0), ((1, 1), -1), ((2, 3, 5), 1), ((3, 7), 1), ((2, 3, 4, 5), -1)]:
        emit("log_softmax_%s_axis%s" % (shp(s), num(axis)), "log_softmax", lambda x: F.log_softmax(x, axis),
             lambda r: [3 * r.n(*s)], meta={"axis": axis}, atol=1e-5)
    emit("log_softmax_large_4x10_axis1", "log_softmax", lambda x: F.log_softmax(x, 1),
         lambda r: [100 * r.n(4, 10)], meta={"axis": 1}, atol=1e-4)


@op("embedding")
def _embedding():
    # in.0 indices (any shape, as floats), in.1 weight (V, D); out = weight[indices]
    for idx_shape, V, D in [((5,), 10, 4), ((2, 3), 7, 3), ((1,), 1, 1), ((4, 6), 5, 8)]:
        # repeated indices make the gradient accumulate
        emit("embedding_%s_%dx%d" % (shp(idx_shape), V, D), "embedding",
             lambda i, w: F.embedding(i.long(), w), lambda r: [r.ints(V, *idx_shape), r.n(V, D)],
             grads=[False, True])


# Losses: mean reduction; in.0 the prediction (requires grad), in.1 the target (no grad).

@op("mse")
def _mse():
    for s in [(4, 3), (7,), (1,), (2, 3, 4)]:
        emit("mse_%s" % shp(s), "mse", F.mse_loss, lambda r: [r.n(*s), r.n(*s)], grads=[True, False], atol=1e-5)


@op("l1")
def _l1():
    for s in [(4, 3), (7,), (1,), (2, 3, 4)]:
        emit("l1_%s" % shp(s), "l1", F.l1_loss, lambda r: [r.n(*s) + 0.05, r.n(*s)], grads=[True, False], atol=1e-5)


@op("nll")
def _nll():
    # in.0 log-probabilities (N, C), in.1 class ids (N,) as floats
    for N, C in [(4, 10), (1, 3), (16, 10), (5, 1)]:
        emit("nll_%dx%d" % (N, C), "nll", lambda x, y: F.nll_loss(x, y.long()),
             lambda r: [F.log_softmax(r.n(N, C), 1), r.ints(C, N)], grads=[True, False], atol=1e-5)


@op("cross_entropy")
def _cross_entropy():
    # in.0 logits (N, C), in.1 class ids (N,) as floats
    for N, C in [(4, 10), (1, 3), (16, 10), (5, 1), (3, 100)]:
        emit("cross_entropy_%dx%d" % (N, C), "cross_entropy", lambda x, y: F.cross_entropy(x, y.long()),
             lambda r: [3 * r.n(N, C), r.ints(C, N)], grads=[True, False], atol=1e-5)
    emit("cross_entropy_large_8x10", "cross_entropy", lambda x, y: F.cross_entropy(x, y.long()),
         lambda r: [100 * r.n(8, 10), r.ints(10, 8)], grads=[True, False], atol=1e-4)


@op("cross_entropy_smooth")
def _cross_entropy_smooth():
    # in.0 logits (N, C), in.1 class ids (N,) as floats; metadata eps. PyTorch's label_smoothing:
    # the target (1 - eps) onehot(y) + eps / C, so eps 0 is the plain cross-entropy.
    for eps in (0.0, 0.1, 0.3):
        for N, C in [(4, 10), (1, 3), (16, 10), (5, 1), (3, 100)]:
            emit("cross_entropy_smooth_e%s_%dx%d" % (num(eps), N, C), "cross_entropy_smooth",
                 lambda x, y: F.cross_entropy(x, y.long(), label_smoothing=eps),
                 lambda r: [3 * r.n(N, C), r.ints(C, N)], grads=[True, False], meta={"eps": eps}, atol=1e-5)
        # |x| up to ~300: the softmax and the eps/C share of every logit must not overflow
        emit("cross_entropy_smooth_e%s_large_8x10" % num(eps), "cross_entropy_smooth",
             lambda x, y: F.cross_entropy(x, y.long(), label_smoothing=eps),
             lambda r: [100 * r.n(8, 10), r.ints(10, 8)], grads=[True, False], meta={"eps": eps}, atol=1e-4)
        # logits around 1e4: x - logsumexp(x) must keep its digits
        emit("cross_entropy_smooth_e%s_offset1e4_6x10" % num(eps), "cross_entropy_smooth",
             lambda x, y: F.cross_entropy(x, y.long(), label_smoothing=eps),
             lambda r: [1e4 + 3 * r.n(6, 10), r.ints(10, 6)], grads=[True, False], meta={"eps": eps},
             atol=2e-6, rtol=1e-5)


@op("cross_entropy_soft")
def _cross_entropy_soft():
    # in.0 logits (N, C), in.1 target probabilities q (N, C); both get gradients
    # (PyTorch's F.cross_entropy with a probability target differentiates the target too).
    for N, C in [(4, 10), (1, 3), (16, 10), (5, 1), (3, 100)]:
        emit("cross_entropy_soft_%dx%d" % (N, C), "cross_entropy_soft", F.cross_entropy,
             lambda r: [3 * r.n(N, C), F.softmax(2 * r.n(N, C), 1)], atol=1e-5)
    # mixup's targets: two one-hots blended by lam in [0.5, 1]
    def mixed(r, N, C):
        lam = r.u(0.5, 1.0, N, 1)
        return lam * F.one_hot(r.ints(C, N).long(), C) + (1 - lam) * F.one_hot(r.ints(C, N).long(), C)
    emit("cross_entropy_soft_mixed_8x10", "cross_entropy_soft", F.cross_entropy,
         lambda r: [3 * r.n(8, 10), mixed(r, 8, 10)], atol=1e-5)
    # rows that do not sum to 1: PyTorch takes q as it is (dL/dx = softmax * sum(q) - q)
    emit("cross_entropy_soft_unnormalized_4x6", "cross_entropy_soft", F.cross_entropy,
         lambda r: [3 * r.n(4, 6), r.u(0, 1, 4, 6)], atol=1e-5)
    emit("cross_entropy_soft_large_8x10", "cross_entropy_soft", F.cross_entropy,
         lambda r: [100 * r.n(8, 10), F.softmax(2 * r.n(8, 10), 1)], atol=1e-4)
    emit("cross_entropy_soft_offset1e4_6x10", "cross_entropy_soft", F.cross_entropy,
         lambda r: [1e4 + 3 * r.n(6, 10), F.softmax(2 * r.n(6, 10), 1)], atol=2e-6, rtol=1e-5)


@op("bce_with_logits")
def _bce_with_logits():
    # in.0 logits, in.1 targets in [0, 1] (soft labels allowed)
    for s in [(4, 3), (7,), (1,), (16, 1)]:
        emit("bce_with_logits_%s" % shp(s), "bce_with_logits", F.binary_cross_entropy_with_logits,
             lambda r: [3 * r.n(*s), r.u(0, 1, *s)], grads=[True, False], atol=1e-5)
    emit("bce_with_logits_hard_8", "bce_with_logits", F.binary_cross_entropy_with_logits,
         lambda r: [4 * r.n(8), r.ints(2, 8)], grads=[True, False], atol=1e-5)
    # |x| up to ~300: log(1 + e^x) must not overflow
    emit("bce_with_logits_large_12", "bce_with_logits", F.binary_cross_entropy_with_logits,
         lambda r: [100 * r.n(12), r.ints(2, 12)], grads=[True, False], atol=1e-4)


# ------------------------------------------------------------------------------------------
# Layers and losses parity: large-logit precision, the general conv2d, pooling windows and
# adaptive pooling, loss reductions, class weights, ignore_index and the plain BCE.

@op("softmax_offset")
def _softmax_offset():
    # logits around 1e3 and 1e4: x - logsumexp(x) must not lose the digits m + log(sum) rounds away
    for off in (1e3, 1e4):
        for opname, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
            emit("%s_offset%s_4x10" % (opname, num(off)), opname, lambda x: fn(x, 1),
                 lambda r: [off + 3 * r.n(4, 10)], meta={"axis": 1}, atol=2e-6, rtol=1e-5)
        emit("cross_entropy_offset%s_6x10" % num(off), "cross_entropy", lambda x, y: F.cross_entropy(x, y.long()),
             lambda r: [off + 3 * r.n(6, 10), r.ints(10, 6)], grads=[True, False], atol=2e-6, rtol=1e-5)


CONV_EX = [  # N, C, H, W, K, kh, kw, (sh, sw), (ph, pw), (dh, dw), groups
    (2, 3, 9, 8, 4, 3, 3, (2, 1), (1, 0), (1, 1), 1),     # stride (2,1), pad (1,0)
    (1, 2, 10, 9, 3, 3, 3, (1, 1), (2, 2), (2, 2), 1),    # dilation 2
    (2, 4, 7, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2),     # groups 2
    (2, 4, 8, 8, 4, 3, 3, (2, 2), (1, 1), (1, 1), 4),     # depthwise
    (1, 3, 7, 6, 2, 3, 1, (1, 1), (1, 0), (1, 1), 1),     # kernel 3x1
    (1, 3, 6, 7, 4, 1, 3, (1, 2), (0, 1), (1, 1), 1),     # kernel 1x3, stride (1,2)
    (2, 6, 9, 11, 6, 3, 5, (2, 3), (1, 2), (2, 1), 3),    # everything at once
    (1, 4, 6, 6, 8, 1, 1, (1, 1), (0, 0), (1, 1), 2),     # 1x1, grouped
    (1, 2, 12, 10, 4, 3, 3, (3, 2), (0, 1), (3, 2), 2),   # grouped, dilation (3,2)
    (2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1),     # the common case through conv2d_ex
    (2, 8, 7, 7, 16, 3, 3, (2, 2), (1, 1), (1, 1), 8),    # depthwise multiplier 2
]


@op("conv2d_ex")
def _conv2d_ex():
    # in.0 x (N,C,H,W), in.1 weight (K,C/groups,kh,kw), in.2 bias (K,) when "bias" is 1
    for i, (N, C, H, W, K, kh, kw, st, pd, dl, gr) in enumerate(CONV_EX):
        for bias in ((1, 0) if i % 3 == 0 else (1,)):
            def make(r):
                xs = [r.n(N, C, H, W), r.n(K, C // gr, kh, kw) / (C // gr * kh * kw) ** 0.5]
                return xs + [r.n(K)] if bias else xs
            emit("conv2d_ex_%dx%dx%dx%d_k%dx%dx%d_s%dx%d_p%dx%d_d%dx%d_g%d%s" % (
                     N, C, H, W, K, kh, kw, st[0], st[1], pd[0], pd[1], dl[0], dl[1], gr, "" if bias else "_nobias"),
                 "conv2d_ex", lambda x, w, b=None: F.conv2d(x, w, b, stride=st, padding=pd, dilation=dl, groups=gr),
                 make, meta={"sh": st[0], "sw": st[1], "ph": pd[0], "pw": pd[1], "dh": dl[0], "dw": dl[1],
                             "groups": gr, "bias": bias}, atol=1e-4, rtol=1e-4)


POOL_EX = [  # N, C, H, W, (kh, kw), (sh, sw), (ph, pw), ceil_mode
    (1, 2, 7, 9, (3, 2), (2, 1), (1, 0), 0), (2, 1, 8, 7, (3, 3), (2, 2), (1, 1), 1),
    (2, 2, 7, 7, (3, 3), (2, 2), (1, 1), 0), (1, 1, 5, 6, (2, 3), (2, 2), (1, 1), 1),
    (1, 2, 6, 6, (3, 3), (3, 3), (0, 0), 1), (1, 1, 10, 9, (4, 2), (3, 2), (2, 1), 1),
    (2, 3, 5, 8, (1, 3), (1, 3), (0, 1), 0)]


@op("pool_ex")
def _pool_ex():
    for N, C, H, W, k, st, pd, cm in POOL_EX:
        tag = "%dx%dx%dx%d_k%dx%d_s%dx%d_p%dx%d_c%d" % (N, C, H, W, k[0], k[1], st[0], st[1], pd[0], pd[1], cm)
        meta = {"kh": k[0], "kw": k[1], "sh": st[0], "sw": st[1], "ph": pd[0], "pw": pd[1], "ceil_mode": cm}
        emit("maxpool2d_ex_" + tag, "maxpool2d_ex", lambda x: F.max_pool2d(x, k, st, pd, ceil_mode=bool(cm)),
             lambda r: [r.n(N, C, H, W)], meta=dict(meta, exclude_pad=0))
        for ex in (0, 1):
            emit("avgpool2d_ex_%s_x%d" % (tag, ex), "avgpool2d_ex",
                 lambda x: F.avg_pool2d(x, k, st, pd, ceil_mode=bool(cm), count_include_pad=not ex),
                 lambda r: [r.n(N, C, H, W)], meta=dict(meta, exclude_pad=ex), atol=1e-5)
    # ties after a relu: the first maximum of the window gets the gradient
    emit("maxpool2d_ex_relu_2x2x7x6_k3x2_s2x2_p1x1_c1", "maxpool2d_ex",
         lambda x: F.max_pool2d(x, (3, 2), (2, 2), (1, 1), ceil_mode=True),
         lambda r: [torch.relu(r.n(2, 2, 7, 6) - 0.8)],
         meta={"kh": 3, "kw": 2, "sh": 2, "sw": 2, "ph": 1, "pw": 1, "ceil_mode": 1, "exclude_pad": 0})


ADAPTIVE = [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (2, 2)), ((1, 1, 4, 6), (4, 6)), ((1, 1, 3, 3), (5, 4)),
            ((2, 2, 10, 7), (1, 1)), ((1, 2, 11, 13), (4, 5))]


@op("adaptive_pool")
def _adaptive_pool():
    for s, (P, Q) in ADAPTIVE:
        emit("adaptive_avgpool2d_%s_to_%dx%d" % (shp(s), P, Q), "adaptive_avgpool2d",
             lambda x: F.adaptive_avg_pool2d(x, (P, Q)), lambda r: [r.n(*s)], meta={"P": P, "Q": Q}, atol=1e-5)
        emit("adaptive_maxpool2d_%s_to_%dx%d" % (shp(s), P, Q), "adaptive_maxpool2d",
             lambda x: F.adaptive_max_pool2d(x, (P, Q)), lambda r: [r.n(*s)], meta={"P": P, "Q": Q})


REDUCTIONS = (("mean", 0), ("sum", 1), ("none", 2))


@op("loss_ex")
def _loss_ex():
    # in.0 prediction, in.1 target; metadata "loss" picks the dlf function, "reduction" 0 mean 1 sum 2 none
    elem = [("mse", F.mse_loss, lambda r, s: [r.n(*s), r.n(*s)]),
            ("l1", F.l1_loss, lambda r, s: [r.n(*s) + 0.05, r.n(*s)]),
            ("bce_with_logits", F.binary_cross_entropy_with_logits, lambda r, s: [3 * r.n(*s), r.u(0, 1, *s)]),
            ("bce", F.binary_cross_entropy, lambda r, s: [torch.sigmoid(2 * r.n(*s)), r.u(0, 1, *s)])]
    for loss, fn, make in elem:
        for red, code in REDUCTIONS:
            for s in [(4, 3), (7,)]:
                emit("loss_ex_%s_%s_%s" % (loss, red, shp(s)), "loss_ex", lambda p, y: fn(p, y, reduction=red),
                     lambda r: make(r, s), grads=[True, True],
                     meta={"loss": loss, "reduction": code}, atol=1e-5)
    # the plain BCE at p = 0 and 1 exactly: log clamped at -100, gradient (p - y) / 1e-12
    emit("loss_ex_bce_edges_mean_6", "loss_ex", lambda p, y: F.binary_cross_entropy(p, y),
         lambda r: [torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30]), torch.tensor([0.3, 0.6, 0.0, 1.0, 1.0, 1.0])],
         grads=[True, False], meta={"loss": "bce", "reduction": 0}, atol=1e-5)
    # NLL and cross-entropy: in.2 the class weights (C,) when "weight" is 1; "use_ignore" with "ignore_index"
    for loss in ("nll", "cross_entropy"):
        for red, code in REDUCTIONS:
            for weight in (0, 1):
                for ign in (None, 2, -100):
                    N, C = 7, 5

                    def make(r):
                        x = 3 * r.n(N, C)
                        if loss == "nll":
                            x = F.log_softmax(x, 1)
                        y = r.ints(C, N)
                        if ign is not None:
                            y[1] = ign
                            y[4] = ign
                        return [x, y] + ([r.u(0.2, 2.0, C)] if weight else [])

                    def fn(x, y, w=None):
                        f = F.nll_loss if loss == "nll" else F.cross_entropy
                        return f(x, y.long(), weight=w, reduction=red,
                                 ignore_index=ign if ign is not None else -100)
                    emit("loss_ex_%s_%s%s%s_%dx%d" % (loss, red, "_w" if weight else "",
                                                      "" if ign is None else "_ign" + num(ign), N, C),
                         "loss_ex", fn, make, grads=[True, False, False] if weight else [True, False],
                         meta={"loss": loss, "reduction": code, "weight": weight, "use_ignore": int(ign is not None),
                               "ignore_index": 0 if ign is None else ign}, atol=1e-5)
    # every target ignored: the weighted mean is 0/0
    emit("loss_ex_cross_entropy_sum_allign_3x4", "loss_ex",
         lambda x, y: F.cross_entropy(x, y.long(), reduction="sum", ignore_index=1),
         lambda r: [r.n(3, 4), torch.ones(3)], grads=[True, False],
         meta={"loss": "cross_entropy", "reduction": 1, "weight": 0, "use_ignore": 1, "ignore_index": 1})


# ------------------------------------------------------------------------------------------
# Whole model: the course's MNIST CNN, names as in its state_dict.

def mnist_cnn():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def mnist_setup(name):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = mnist_cnn()
    r = Rand(name)
    x = r.n(16, 1, 28, 28)
    y = r.ints(10, 16)
    return model, x, y


@op("mnist_cnn")
def _mnist_cnn():
    # x (16,1,28,28), y (16,), the weights by state_dict name, logits (16,10), loss (),
    # grad.<name> for every weight.
    name = "mnist_cnn_fwd_bwd"
    model, x, y = mnist_setup(name)
    weights = [(k, v.detach().clone()) for k, v in model.state_dict().items()]
    logits = model(x)
    loss = F.cross_entropy(logits, y.long())
    loss.backward()
    grads = [("grad." + k, p.grad) for k, p in model.named_parameters()]
    m64 = copy.deepcopy(model).double()
    m64.zero_grad()
    logits64 = m64(x.double())
    loss64 = F.cross_entropy(logits64, y.long())
    loss64.backward()
    check64(name, [("logits", logits, logits64), ("loss", loss, loss64)] +
            [("grad." + k, p.grad, p64.grad) for (k, p), p64 in zip(model.named_parameters(), m64.parameters())],
            1e-5, 1e-4)
    emit_raw(name, [("x", x), ("y", y)] + weights + [("logits", logits), ("loss", loss)] + grads,
             {"op": "mnist_cnn", "atol": 1e-5, "rtol": 1e-4})


@op("mnist_cnn_train")
def _mnist_cnn_train():
    # x, y, the initial weights by name, losses (steps,) the loss before each step, and
    # final.<name> the weights after the last step. Same batch every step.
    for tag, mom in [("sgd", 0.0), ("sgd_mom", 0.9)]:
        name = "mnist_cnn_train_" + tag
        model, x, y = mnist_setup(name)
        weights = [(k, v.detach().clone()) for k, v in model.state_dict().items()]
        steps = 10

        def train(m, dtype):
            opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=mom)
            out = []
            for _ in range(steps):
                opt.zero_grad()
                loss = F.cross_entropy(m(x.to(dtype)), y.long())
                loss.backward()
                opt.step()
                out.append(loss.item())
            return torch.tensor(out, dtype=torch.float64)
        m64 = copy.deepcopy(model).double()
        losses = train(model, torch.float32)
        check64(name, [("losses", losses, train(m64, torch.float64))], 1e-5, 1e-4)
        final = [("final." + k, v.detach().clone()) for k, v in model.state_dict().items()]
        emit_raw(name, [("x", x), ("y", y)] + weights + [("losses", losses)] + final,
                 {"op": "mnist_cnn_train", "lr": 0.1, "momentum": mom, "steps": steps,
                  "atol": 1e-5, "rtol": 1e-4})


# ------------------------------------------------------------------------------------------
# Stages 9, 10, 11 and the BatchNorm CNN: tests/ref/norm_optim/, replayed by
# tests/test_ref_norm_optim.c (their own INDEX, so tests/test_reference.c never sees them).
# Graph-op cases (layernorm, groupnorm, instancenorm, dropout, dropout2d) have emit()'s format.
# The others store their own tensors, described at their functions.

NO = "norm_optim"
NORM_TOL = dict(atol=1e-5, rtol=1e-4)


def module_steps(name, opname, mod, shape, steps, scales=None, extra_meta=None, atol=1e-5, rtol=1e-4):
    """A normalization module through `steps` training steps, then one eval step.
    Tensors: init.<name> every parameter and buffer of mod (PyTorch's names) before step 1; for each
    step s in 1..steps and "eval": x.<s>, grad.out.<s> (the seed of out.backward), out.<s>, grad.x.<s>,
    grad.<param>.<s> (the gradients of that step alone), <buffer>.<s> (after the step).
    Metadata: op, steps, C, momentum, eps, atol, rtol (+ extra_meta)."""
    r = Rand(name)
    m64 = copy.deepcopy(mod).double()
    tensors = [("init." + k, v.detach().clone()) for k, v in
               list(mod.named_parameters()) + list(mod.named_buffers())]
    checks = []
    for s in list(range(1, steps + 1)) + ["eval"]:
        x = r.n(*shape)
        if scales is not None:  # per channel scale and offset, so some channels sit near the clamps
            x = x * scales.view(1, -1, *([1] * (len(shape) - 2))) + 0.1
        g = r.n(*shape)
        outs = []
        for m, dt in ((mod, torch.float32), (m64, torch.float64)):
            m.train(s != "eval")
            m.zero_grad()
            for buf in m.buffers():  # the last training step's graph ends here (RunningBatchNorm's sums)
                buf.detach_()
            xx = x.detach().to(dt).clone().requires_grad_()
            out = m(xx)
            out.backward(g.to(dt))
            outs.append((out, xx.grad, {k: p.grad.clone() for k, p in m.named_parameters()},
                         {k: b.clone() for k, b in m.named_buffers()}))
        (o, gx, gp, bufs), (o64, gx64, gp64, bufs64) = outs
        tensors += [("x.%s" % s, x), ("grad.out.%s" % s, g), ("out.%s" % s, o), ("grad.x.%s" % s, gx)]
        tensors += [("grad.%s.%s" % (k, s), v) for k, v in gp.items()]
        tensors += [("%s.%s" % (k, s), v.to(torch.float32)) for k, v in bufs.items()]
        checks += [("out.%s" % s, o, o64), ("grad.x.%s" % s, gx, gx64)]
        checks += [("grad.%s.%s" % (k, s), gp[k], gp64[k]) for k in gp]
        checks += [("%s.%s" % (k, s), bufs[k].double(), bufs64[k].double()) for k in bufs]
    check64(name, checks, atol, rtol)
    meta = {"op": opname, "steps": steps, "C": shape[1], "atol": atol, "rtol": rtol}
    meta.update(extra_meta or {})
    emit_raw(name, tensors, meta)


@op("batchnorm_steps", NO)
def _batchnorm_steps():
    # BatchNorm1d on (N,C) and (N,C,L), BatchNorm2d on (N,C,H,W); k = 3 training steps, then eval
    nn = torch.nn
    for cls, shape, mom, eps in [(nn.BatchNorm1d, (6, 4), 0.1, 1e-5), (nn.BatchNorm1d, (3, 5, 7), 0.1, 1e-5),
                                 (nn.BatchNorm2d, (4, 3, 5, 6), 0.1, 1e-5), (nn.BatchNorm2d, (2, 6, 3, 3), 0.3, 1e-3),
                                 (nn.BatchNorm1d, (2, 3), 0.1, 1e-5)]:
        name = "batchnorm%s_%s_m%s_e%s" % ("1d" if cls is nn.BatchNorm1d else "2d", shp(shape), num(mom), num(eps))
        r = Rand(name + "_init")
        mod = cls(shape[1], eps=eps, momentum=mom)
        with torch.no_grad():
            mod.weight.copy_(1 + 0.3 * r.n(shape[1]))
            mod.bias.copy_(0.3 * r.n(shape[1]))
        module_steps(name, "batchnorm_steps", mod, shape, 3, extra_meta={"momentum": mom, "eps": eps})


class RunningBatchNorm(torch.nn.Module):
    """The course's RunningBatchNorm (fast.ai course v3, lesson 07_batchnorm), as written there."""

    def __init__(self, nf, mom=0.1, eps=1e-5):
        super().__init__()
        self.mom, self.eps = mom, eps
        self.mults = torch.nn.Parameter(torch.ones(nf, 1, 1))
        self.adds = torch.nn.Parameter(torch.zeros(nf, 1, 1))
        self.register_buffer('sums', torch.zeros(1, nf, 1, 1))
        self.register_buffer('sqrs', torch.zeros(1, nf, 1, 1))
        self.register_buffer('batch', torch.tensor(0.))
        self.register_buffer('count', torch.tensor(0.))
        self.register_buffer('step', torch.tensor(0.))
        self.register_buffer('dbias', torch.tensor(0.))

    def update_stats(self, x):
        bs, nc, *_ = x.shape
        self.sums.detach_()
        self.sqrs.detach_()
        dims = (0, 2, 3)
        s = x.sum(dims, keepdim=True)
        ss = (x * x).sum(dims, keepdim=True)
        c = self.count.new_tensor(x.numel() / nc)
        mom1 = 1 - (1 - self.mom) / math.sqrt(bs - 1)
        self.mom1 = self.dbias.new_tensor(mom1)
        self.sums.lerp_(s, self.mom1)
        self.sqrs.lerp_(ss, self.mom1)
        self.count.lerp_(c, self.mom1)
        self.dbias = self.dbias * (1 - self.mom1) + self.mom1
        self.batch += bs
        self.step += 1

    def forward(self, x):
        if self.training:
            self.update_stats(x)
        sums = self.sums
        sqrs = self.sqrs
        c = self.count
        if self.step < 100:
            sums = sums / self.dbias
            sqrs = sqrs / self.dbias
            c = c / self.dbias
        means = sums / c
        vars = (sqrs / c).sub_(means * means)
        if bool(self.batch < 20):
            vars.clamp_min_(0.01)
        x = (x - means).div_((vars.add_(self.eps)).sqrt())
        return x.mul_(self.mults).add_(self.adds)


@op("running_batchnorm_steps", NO)
def _running_batchnorm_steps():
    # batch size 2 (mom1 = 0.1: the lerp's a + w(b - a) branch; batch < 20 all along, so channel 0,
    # scaled to a variance under 0.01, is clamped) and 8 (mom1 = 0.66: the other branch; the clamp
    # ends at step 3, batch 24). Channel 0's inputs are scaled by 0.05.
    for N, steps in [(2, 5), (8, 4)]:
        C = 3
        name = "running_batchnorm_%dx%dx4x3" % (N, C)
        r = Rand(name + "_init")
        mod = RunningBatchNorm(C)
        with torch.no_grad():
            mod.mults.copy_(1 + 0.3 * r.n(C, 1, 1))
            mod.adds.copy_(0.3 * r.n(C, 1, 1))
        module_steps(name, "running_batchnorm_steps", mod, (N, C, 4, 3), steps,
                     scales=torch.tensor([0.05, 1.0, 2.0]), extra_meta={"momentum": 0.1, "eps": 1e-5})


@op("layernorm", NO)
def _layernorm():
    # in.0 x, in.1 weight, in.2 bias (the normalized shape; absent when affine is 0); metadata d = the
    # product of the normalized shape (dlf's d), eps
    for s, ns, affine in [((4, 10), (10,), 1), ((2, 3, 8), (8,), 1), ((2, 3, 4, 5), (4, 5), 1),
                          ((3, 6, 4), (6, 4), 1), ((5, 7), (7,), 0), ((2, 3, 4), (3, 4), 0)]:
        d = 1
        for v in ns:
            d *= v

        def make(r):
            xs = [1.5 * r.n(*s) + 0.5]
            return xs + [1 + 0.3 * r.n(*ns), 0.3 * r.n(*ns)] if affine else xs
        emit("layernorm_%s_over_%s%s" % (shp(s), shp(ns), "" if affine else "_noaffine"), "layernorm",
             lambda x, w=None, b=None: F.layer_norm(x, ns, w, b, 1e-5), make,
             meta={"d": d, "eps": 1e-5, "affine": affine}, **NORM_TOL)


@op("groupnorm", NO)
def _groupnorm():
    # in.0 x (N,C,...), in.1 weight (C), in.2 bias (C); metadata groups, eps
    for s, G in [((2, 6, 4, 4), 1), ((2, 6, 4, 4), 2), ((2, 6, 4, 4), 3), ((2, 6, 4, 4), 6), ((3, 8, 5), 4),
                 ((2, 4, 3, 2), 2)]:
        emit("groupnorm_%s_g%d" % (shp(s), G), "groupnorm",
             lambda x, w, b: F.group_norm(x, G, w, b, 1e-5),
             lambda r: [1.5 * r.n(*s) + 0.5, 1 + 0.3 * r.n(s[1]), 0.3 * r.n(s[1])],
             meta={"groups": G, "eps": 1e-5}, **NORM_TOL)


@op("instancenorm", NO)
def _instancenorm():
    # InstanceNorm2d(C, affine): in.0 x, in.1 weight, in.2 bias when affine is 1
    for s, affine in [((2, 3, 5, 4), 1), ((2, 3, 5, 4), 0), ((1, 4, 6, 6), 1), ((3, 2, 3, 7), 0)]:
        def make(r):
            xs = [1.5 * r.n(*s) + 0.5]
            return xs + [1 + 0.3 * r.n(s[1]), 0.3 * r.n(s[1])] if affine else xs
        emit("instancenorm_%s%s" % (shp(s), "" if affine else "_noaffine"), "instancenorm",
             lambda x, w=None, b=None: F.instance_norm(x, weight=w, bias=b, eps=1e-5), make,
             meta={"eps": 1e-5, "affine": affine}, **NORM_TOL)


@op("dropout", NO)
def _dropout():
    # PyTorch draws the mask; the fixture gives it to dlf as in.1 keep (1 where out != 0; x is kept
    # away from 0): x's shape for dropout, (N,C) for dropout2d. in.0 x, out, grad.out, grad.in.0;
    # metadata p. dlf_dropout_mask replays it.
    for opname, shapes in [("dropout", [(4, 10), (2, 3, 4, 5), (37,)]), ("dropout2d", [(2, 6, 3, 3), (4, 8, 2, 5)])]:
        for s in shapes:
            for p in (0.2, 0.5):
                name = "%s_%s_p%s" % (opname, shp(s), num(p))
                r = Rand(name)
                torch.manual_seed(zlib.crc32(name.encode()))
                x = r.away(*s, gap=0.1).requires_grad_()
                out = (F.dropout if opname == "dropout" else F.dropout2d)(x, p, training=True)
                g = r.n(*s)
                out.backward(g)
                keep = (out != 0).to(torch.float32)
                if opname == "dropout2d":
                    keep = keep.flatten(2)[:, :, 0]
                emit_raw(name, [("in.0", x.detach()), ("in.1", keep), ("out", out.detach()), ("grad.out", g),
                                ("grad.in.0", x.grad)], {"op": opname, "p": p, "atol": 1e-6, "rtol": 1e-6})


# Optimizers: three parameters (3,4), (5,) and (2,1,3,3) in two groups, parameter 1 alone in
# group 1 with its own lr and weight decay (0 in most cases), 10 steps of fixed gradients.
# Tensors: param.<i> (initial), for each step s = 1..steps grad.<s>.<i> (put in p.grad) and
# param.<s>.<i> (after the step), and state.<key>.<i> (PyTorch's optimizer state, "step" aside, after
# the last step; the C side finds it by dlf_optim_state_name). Metadata: kind (dlf's name), steps,
# n_params, groups ("0,1,0"), n_groups, and per group g.<field> for every dlf_optim_cfg field.

OPT_SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]
OPT_GROUPS = [0, 1, 0]
CFG_FIELDS = ["lr", "weight_decay", "decoupled_wd", "momentum", "dampening", "nesterov", "alpha", "centered",
              "beta1", "beta2", "eps", "lr_decay", "initial_accumulator_value"]


def dlf_cfg(kind, g):
    """dlf_optim_cfg fields of a torch param group dict g (torch's defaults filled in by the optimizer)."""
    c = {f: 0 for f in CFG_FIELDS}
    c.update({"alpha": 0.99, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    for k, v in g.items():
        if k == "betas":
            c["beta1"], c["beta2"] = v
        elif k in c:
            c[k] = v
    c["nesterov"] = int(bool(c["nesterov"]))
    c["centered"] = int(bool(c["centered"]))
    return c


def lamb_run(ps, groups, grads_of_step, steps, dtype):
    """The course's lamb_step (lesson 09b), per parameter tensor, with dlf's guard: the trust ratio
    min(r1/r2, 10), and 1 when r1 or r2 is 0 (the course divides 0 by r2 there)."""
    state = [{"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p), "step": 0} for p in ps]
    hist = []
    for s in range(steps):
        for i, p in enumerate(ps):
            g = grads_of_step[s][i].to(dtype)
            c = groups[OPT_GROUPS[i]]
            st = state[i]
            st["step"] += 1
            b1, b2 = c["betas"]
            st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)                   # grad_avg, dampened
            st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)         # sqr_avg, dampened
            debias1 = 1 - b1 ** st["step"]
            debias2 = 1 - b2 ** st["step"]
            r1 = p.pow(2).mean().sqrt().item()
            step = (st["exp_avg"] / debias1) / ((st["exp_avg_sq"] / debias2).sqrt() + c["eps"]) + c["weight_decay"] * p
            r2 = step.pow(2).mean().sqrt().item()
            trust = min(r1 / r2, 10) if r1 > 0 and r2 > 0 else 1.0
            p.add_(step, alpha=-c["lr"] * trust)
        hist.append([p.clone() for p in ps])
    return hist, state


def optim_case(name, kind, torch_cls, g0, g1, steps=10, zero_param=False):
    r = Rand(name)
    init = [r.n(*s) for s in OPT_SHAPES]
    if zero_param:  # a parameter of zeros: LAMB's r1 = 0
        init[1] = torch.zeros(OPT_SHAPES[1])
    grads = [[r.n(*s) for s in OPT_SHAPES] for _ in range(steps)]

    def run(dtype):
        ps = [p.to(dtype).clone() for p in init]
        if torch_cls is None:
            groups = [dict(g0), dict(g1)]
            return lamb_run(ps, groups, grads, steps, dtype) + (groups,)
        ps = [torch.nn.Parameter(p) for p in ps]
        # torch.optim.Adagrad fills "sum" from its constructor's initial_accumulator_value, never from
        # a group's (a group's own value is ignored): pass it there, the same for both groups
        ctor = {}
        if "initial_accumulator_value" in g0:
            assert g0["initial_accumulator_value"] == g1.get("initial_accumulator_value")
            ctor["initial_accumulator_value"] = g0["initial_accumulator_value"]
        opt = torch_cls([{"params": [ps[0], ps[2]], **g0}, {"params": [ps[1]], **g1}], **ctor)
        hist = []
        for s in range(steps):
            for i, p in enumerate(ps):
                p.grad = grads[s][i].to(dtype).clone()
            opt.step()
            hist.append([p.detach().clone() for p in ps])
        state = [opt.state[p] for p in ps]
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        return hist, state, groups
    hist, state, groups = run(torch.float32)
    hist64, state64, _ = run(torch.float64)
    checks = [("param.%d.%d" % (s + 1, i), hist[s][i], hist64[s][i]) for s in range(steps) for i in range(3)]
    check64(name, checks, 1e-6, 1e-5)
    tensors = [("param.%d" % i, p) for i, p in enumerate(init)]
    for s in range(steps):
        tensors += [("grad.%d.%d" % (s + 1, i), grads[s][i]) for i in range(3)]
        tensors += [("param.%d.%d" % (s + 1, i), hist[s][i]) for i in range(3)]
    for i in range(3):
        tensors += [("state.%s.%d" % (k, i), v) for k, v in state[i].items() if k != "step" and v is not None]
    meta = {"op": "optim", "kind": kind, "steps": steps, "n_params": 3, "groups": OPT_GROUPS, "n_groups": 2,
            "atol": 1e-6, "rtol": 1e-5}
    for gi, g in enumerate(groups):
        c = dlf_cfg(kind, g)
        if kind == "adamw" or (kind == "adam" and torch_cls is torch.optim.AdamW):
            c["decoupled_wd"] = 1
        if torch_cls is None:
            c["eps"] = g["eps"]
        for f in CFG_FIELDS:
            meta["g%d.%s" % (gi, f)] = repr(c[f]) if isinstance(c[f], float) else c[f]
    emit_raw(name, tensors, meta)


@op("optim", NO)
def _optim():
    O = torch.optim
    nf = {"foreach": False}
    for tag, kw in [("plain", {}), ("mom_damp", {"momentum": 0.9, "dampening": 0.1}),
                    ("nesterov", {"momentum": 0.9, "nesterov": True})]:
        optim_case("optim_sgd_" + tag, "sgd", O.SGD, dict(lr=0.1, weight_decay=0.01, **kw, **nf),
                   dict(lr=0.03, weight_decay=0.0, **kw, **nf))
    for tag, kw in [("plain", {}), ("mom", {"momentum": 0.9}), ("centered", {"centered": True}),
                    ("centered_mom", {"centered": True, "momentum": 0.5})]:
        optim_case("optim_rmsprop_" + tag, "rmsprop", O.RMSprop,
                   dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01, **kw, **nf),
                   dict(lr=0.003, alpha=0.9, eps=1e-6, weight_decay=0.0, **kw, **nf))
    for tag, kw in [("plain", {}), ("lr_decay", {"lr_decay": 0.01}), ("init_acc", {"initial_accumulator_value": 0.1}),
                    ("both", {"lr_decay": 0.05, "initial_accumulator_value": 0.5})]:
        optim_case("optim_adagrad_" + tag, "adagrad", O.Adagrad, dict(lr=0.1, eps=1e-10, weight_decay=0.01, **kw, **nf),
                   dict(lr=0.02, eps=1e-10, weight_decay=0.0, **kw, **nf))
    optim_case("optim_adam", "adam", O.Adam, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **nf),
               dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.0, **nf))
    optim_case("optim_adamw", "adamw", O.AdamW, dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, **nf),
               dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.0, **nf))
    optim_case("optim_adamw_both_wd", "adamw", O.AdamW, dict(lr=1e-2, weight_decay=0.1, **nf),
               dict(lr=3e-3, weight_decay=0.05, **nf))
    # dlf's Adam with decoupled_wd = 1 is torch's AdamW
    optim_case("optim_adam_decoupled", "adam", O.AdamW, dict(lr=1e-2, weight_decay=0.1, **nf),
               dict(lr=3e-3, weight_decay=0.0, **nf))
    optim_case("optim_lamb", "lamb", None, dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01),
               dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0))
    optim_case("optim_lamb_zero_param", "lamb", None, dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.01),
               dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1), zero_param=True)


@op("clip_grad_norm", NO)
def _clip_grad_norm():
    # grad.<i> before, max_norm, total () the norm clip_grad_norm_ returned, clipped.<i> after
    for tag, max_norm in [("clip", 1.0), ("noclip", 100.0), ("clip_small", 0.05)]:
        name = "clip_grad_norm_" + tag
        r = Rand(name)
        ps = [torch.nn.Parameter(r.n(*s)) for s in OPT_SHAPES]
        for p in ps:
            p.grad = r.n(*p.shape)
        before = [p.grad.clone() for p in ps]
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        emit_raw(name, [("grad.%d" % i, g) for i, g in enumerate(before)] + [("total", total.reshape(()))] +
                 [("clipped.%d" % i, p.grad) for i, p in enumerate(ps)],
                 {"op": "clip_grad_norm", "n_params": 3, "max_norm": max_norm, "atol": 1e-6, "rtol": 1e-5})


def mnist_bn_cnn():
    """The course's MNIST CNN with BatchNorm: conv_layer(ni, nf, ks, stride, bn=True) is a bias-less
    Conv2d, BatchNorm2d(nf), ReLU; then AdaptiveAvgPool2d(1), Flatten, Linear(32, 10)."""
    nn = torch.nn
    layers = []
    for ni, nf, ks in [(1, 8, 5), (8, 16, 3), (16, 32, 3), (32, 32, 3)]:
        layers += [nn.Conv2d(ni, nf, ks, stride=2, padding=ks // 2, bias=False), nn.BatchNorm2d(nf), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


@op("mnist_bn_cnn_train", NO)
def _mnist_bn_cnn_train():
    # x (steps*8,1,28,28), y (steps*8): batch s is items 8s..8s+7; init.<name> the whole state_dict (buffers
    # included, num_batches_tracked as float); losses (steps,) each step's loss before its update;
    # final.<name> the state_dict after the last step; eval_logits (8,10) of x[0] in eval mode after it.
    # AdamW lr 1e-3, weight_decay 1e-2, one group (every parameter decays, as torch.optim.AdamW(model.parameters())).
    name = "mnist_bn_cnn_train_adamw"
    torch.manual_seed(zlib.crc32(name.encode()))
    model = mnist_bn_cnn()
    r = Rand(name)
    steps = 10
    x = r.n(steps, 8, 1, 28, 28)
    y = r.ints(10, steps, 8)
    init = [("init." + k, v.detach().clone().float()) for k, v in model.state_dict().items()]

    def train(m, dtype):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2, foreach=False)
        out = []
        m.train()
        for s in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(m(x[s].to(dtype)), y[s].long())
            loss.backward()
            opt.step()
            out.append(loss.item())
        m.eval()
        with torch.no_grad():
            logits = m(x[0].to(dtype))
        return torch.tensor(out, dtype=torch.float64), logits
    m64 = copy.deepcopy(model).double()
    losses, logits = train(model, torch.float32)
    losses64, logits64 = train(m64, torch.float64)
    sd64 = m64.state_dict()
    check64(name, [("losses", losses, losses64), ("eval_logits", logits, logits64)] +
            [("final." + k, v.double(), sd64[k].double()) for k, v in model.state_dict().items()], 1e-4, 1e-3)
    final = [("final." + k, v.detach().clone().float()) for k, v in model.state_dict().items()]
    emit_raw(name, [("x", x.reshape(steps * 8, 1, 28, 28)), ("y", y.reshape(-1))] + init + [("losses", losses), ("eval_logits", logits)] + final,
             {"op": "mnist_bn_cnn_train", "lr": 1e-3, "weight_decay": 1e-2, "steps": steps,
              "atol": 1e-4, "rtol": 1e-3})


# ------------------------------------------------------------------------------------------
# Interop, dlf -> PyTorch -> dlf. tools/export_dlf.c (built and run first by `make reference`)
# wrote tests/ref/interop/dlf_cnn.safetensors and dlf_mlp.safetensors with dlf's checkpoint
# API: the weights by state_dict name after one SGD step (momentum 0.9),
# optim.momentum_buffer.<name>, input (8,1,28,28), target (8,), dlf_logits (8,10), and
# metadata (model, lr and momentum as %a hex floats, optim.steps, rng.data ...). Here torch
#   1. loads the weights with load_state_dict(strict=True), the non-model keys filtered out
#      (a failure stops the generator), computes the logits on input and checks them against
#      dlf_logits (max diff <= 1e-5, printed);
#   2. puts the momentum buffers into torch.optim.SGD's state_dict and takes step 2 on the
#      same batch, as dlf would continue from its checkpoint;
# and writes, next to the dlf files:
#   torch_logits_of_dlf_<m>.safetensors   torch_logits (8,10): torch's logits of dlf's weights
#   torch_<m>_state.safetensors            torch's state after its step 2, PyTorch's names:
#       the state_dict, optim.momentum_buffer.<name> (from the optimizer's state_dict),
#       input, target, torch_logits (8,10) of those weights; metadata step = optim.steps = 2
# tests/test_interop.c compares dlf against both, with no PyTorch (docs/interop.md).

INTEROP_DIR = os.path.join(OUT_DIR, "interop")
NOT_MODEL_KEYS = ("optim.", "loader.", "input", "target", "dlf_logits", "torch_logits")


def interop_model(name):
    nn = torch.nn
    torch.manual_seed(0)  # the init is overwritten; seeded only so nothing varies
    if name == "mnist_cnn":
        return mnist_cnn()
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))


def write_if_changed(path, data):
    old = open(path, "rb").read() if os.path.exists(path) else None
    if old != data:
        with open(path, "wb") as f:
            f.write(data)


@op("interop")
def _interop():
    for short in ("cnn", "mlp"):
        src = os.path.join(INTEROP_DIR, "dlf_%s.safetensors" % short)
        if not os.path.exists(src):
            sys.exit("gen_reference: %s is missing: build and run tools/export_dlf.c first "
                     "(`make reference` does)" % src)
        tensors, meta = dlf_safetensors.load(src)
        model = interop_model(meta["model"])
        state = {k: v for k, v in tensors.items() if not k.startswith(NOT_MODEL_KEYS)}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            sys.exit("gen_reference: interop %s: load_state_dict(strict=True) failed:\n%s" % (src, e))
        x, y = tensors["input"], tensors["target"].long()
        with torch.no_grad():
            logits = model(x)
        d = (logits - tensors["dlf_logits"]).abs().max().item()
        print("gen_reference: interop %s: torch logits of dlf's weights vs dlf_logits: max diff %.3g" % (short, d))
        if not d <= 1e-5:
            sys.exit("gen_reference: interop %s: torch and dlf logits differ by %g (> 1e-5)" % (short, d))
        write_if_changed(os.path.join(INTEROP_DIR, "torch_logits_of_dlf_%s.safetensors" % short),
                         safetensors_bytes([("torch_logits", logits)],
                                           {"source": "dlf_%s.safetensors" % short, "model": meta["model"],
                                            "max_diff_vs_dlf_logits": "%.3g" % d, "torch": torch.__version__}))
        # step 2 in torch, from dlf's momentum buffers
        names = [k for k, _ in model.named_parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=float.fromhex(meta["lr"]),
                              momentum=float.fromhex(meta["momentum"]))
        sd = opt.state_dict()
        missing = [n for n in names if "optim.momentum_buffer." + n not in tensors]
        if missing or meta.get("optim.steps") != "1":
            sys.exit("gen_reference: interop %s: expected one step's momentum buffers, missing %s" % (src, missing))
        sd["state"] = {i: {"momentum_buffer": tensors["optim.momentum_buffer." + n]} for i, n in enumerate(names)}
        opt.load_state_dict(sd)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        with torch.no_grad():
            logits2 = model(x)
        osd = opt.state_dict()["state"]
        out = list(model.state_dict().items())
        out += [("optim.momentum_buffer." + n, osd[i]["momentum_buffer"]) for i, n in enumerate(names)]
        out += [("input", x), ("target", tensors["target"]), ("torch_logits", logits2)]
        md = {"format": "torch state_dict", "model": meta["model"], "source": "dlf_%s.safetensors" % short,
              "step": "2", "optim.steps": "2", "lr": meta["lr"], "momentum": meta["momentum"],
              "torch": torch.__version__}
        write_if_changed(os.path.join(INTEROP_DIR, "torch_%s_state.safetensors" % short), safetensors_bytes(out, md))


# The BatchNorm CNN, with Adam, both ways. export_dlf wrote dlf_bncnn.safetensors: the whole
# state_dict after two Adam steps (buffers included, num_batches_tracked as a float), the Adam
# state as optim.exp_avg.<name>, optim.exp_avg_sq.<name>, optim.step.<name> (metadata optim.kind
# "adam", optim.steps), input, target and dlf_logits (eval mode). Here torch
#   1. loads the state_dict with strict=True (num_batches_tracked made int64, as torch keeps it),
#      checks its eval-mode logits against dlf_logits and writes torch_logits_of_dlf_bncnn;
#   2. turns dlf's Adam state into torch.optim.Adam's state_dict, takes step 3 in training mode on
#      the same batch and writes torch_bncnn_state.safetensors: the state_dict as torch keeps it
#      (num_batches_tracked I64), optim.exp_avg/exp_avg_sq/step.<name> from the optimizer's
#      state_dict, input, target, torch_logits (eval mode); metadata optim.kind, optim.steps 3, lr;
#   3. takes step 4 from its own state and writes torch_bncnn_step4.safetensors the same way,
#      for dlf to reach from torch_bncnn_state.


def adam_state_out(model, opt):
    names = [k for k, _ in model.named_parameters()]
    st = opt.state_dict()["state"]
    out = []
    for i, n in enumerate(names):
        out += [("optim.exp_avg." + n, st[i]["exp_avg"]), ("optim.exp_avg_sq." + n, st[i]["exp_avg_sq"]),
                ("optim.step." + n, torch.as_tensor(st[i]["step"], dtype=torch.float32).reshape(()))]
    return out


@op("interop_bn")
def _interop_bn():
    src = os.path.join(INTEROP_DIR, "dlf_bncnn.safetensors")
    if not os.path.exists(src):
        sys.exit("gen_reference: %s is missing: `make reference` builds and runs tools/export_dlf first" % src)
    tensors, meta = dlf_safetensors.load(src)
    torch.manual_seed(0)
    model = mnist_bn_cnn()
    state = {k: v for k, v in tensors.items() if not k.startswith(NOT_MODEL_KEYS)}
    state = {k: (v.long() if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        sys.exit("gen_reference: interop %s: load_state_dict(strict=True) failed:\n%s" % (src, e))
    assert model.state_dict()["1.num_batches_tracked"].dtype == torch.int64
    x, y = tensors["input"], tensors["target"].long()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    d = (logits - tensors["dlf_logits"]).abs().max().item()
    print("gen_reference: interop bncnn: torch eval logits of dlf's state vs dlf_logits: max diff %.3g" % d)
    if not d <= 1e-5:
        sys.exit("gen_reference: interop bncnn: torch and dlf logits differ by %g (> 1e-5)" % d)
    write_if_changed(os.path.join(INTEROP_DIR, "torch_logits_of_dlf_bncnn.safetensors"),
                     safetensors_bytes([("torch_logits", logits)],
                                       {"source": "dlf_bncnn.safetensors", "model": meta["model"],
                                        "max_diff_vs_dlf_logits": "%.3g" % d, "torch": torch.__version__}))
    if meta.get("optim.kind") != "adam":
        sys.exit("gen_reference: interop bncnn: optim.kind is %r, not adam" % meta.get("optim.kind"))
    names = [k for k, _ in model.named_parameters()]
    lr = float.fromhex(meta["lr"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    sd = opt.state_dict()
    sd["state"] = {i: {"step": tensors["optim.step." + n].reshape(()).clone(),
                       "exp_avg": tensors["optim.exp_avg." + n], "exp_avg_sq": tensors["optim.exp_avg_sq." + n]}
                   for i, n in enumerate(names)}
    opt.load_state_dict(sd)
    steps = int(meta["optim.steps"])
    for tag in ("state", "step4"):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        steps += 1
        model.eval()
        with torch.no_grad():
            logits = model(x)
        out = list(model.state_dict().items()) + adam_state_out(model, opt)
        out += [("input", x), ("target", tensors["target"]), ("torch_logits", logits)]
        md = {"format": "torch state_dict", "model": meta["model"], "source": "dlf_bncnn.safetensors",
              "optim.kind": "adam", "optim.steps": str(steps), "step": str(steps), "lr": meta["lr"],
              "torch": torch.__version__}
        write_if_changed(os.path.join(INTEROP_DIR, "torch_bncnn_%s.safetensors" % tag),
                         dlf_safetensors.save_bytes(out, md))


# ------------------------------------------------------------------------------------------
# The tape: several backward calls on one tape (tests/test_misuse.c replays these; they go to
# tests/ref/tape/ with their own INDEX, so tests/test_reference.c never sees them).


@op("two_losses", "tape")
def _two_losses():
    """A 2-layer MLP whose hidden layer feeds two heads, so two losses share the first layer:
        h = relu(x w1^T + b1),  loss1 = mse(h w2^T + b2, y),  loss2 = cross_entropy(h w3^T, target)
    loss1.backward(retain_graph=True), then loss2.backward(): the parameter gradients hold the sum
    of both. Stores the inputs x, y, target, the parameters w1, b1, w2, b2, w3, the losses loss1,
    loss2, grad1.<param> after the first backward and grad.<param> after both; atol, rtol."""
    name = "two_losses"
    r = Rand(name)
    x, y, target = r.n(4, 3), r.n(4, 2), r.ints(3, 4)
    params = [("w1", r.n(5, 3) * 0.5), ("b1", r.n(5) * 0.1), ("w2", r.n(2, 5) * 0.5),
              ("b2", r.n(2) * 0.1), ("w3", r.n(3, 5) * 0.5)]
    atol, rtol = 1e-6, 1e-5

    def run(dtype):
        w1, b1, w2, b2, w3 = ps = [p.to(dtype).clone().requires_grad_(True) for _, p in params]
        h = torch.relu(F.linear(x.to(dtype), w1, b1))
        loss1 = F.mse_loss(F.linear(h, w2, b2), y.to(dtype))
        loss2 = F.cross_entropy(F.linear(h, w3), target.long())
        loss1.backward(retain_graph=True)
        g1 = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in ps]  # w3: none yet
        loss2.backward()
        return loss1, loss2, g1, [p.grad for p in ps]

    l1, l2, g1, g = run(torch.float32)
    l1d, l2d, g1d, gd = run(torch.float64)
    checks = [("loss1", l1, l1d), ("loss2", l2, l2d)]
    checks += [("grad1." + n, a, b) for (n, _), a, b in zip(params, g1, g1d)]
    checks += [("grad." + n, a, b) for (n, _), a, b in zip(params, g, gd)]
    check64(name, checks, atol, rtol)
    tensors = [("x", x), ("y", y), ("target", target)] + params + [("loss1", l1), ("loss2", l2)]
    tensors += [("grad1." + n, a) for (n, _), a in zip(params, g1)]
    tensors += [("grad." + n, a) for (n, _), a in zip(params, g)]
    emit_raw(name, tensors, {"op": "two_losses", "atol": repr(atol), "rtol": repr(rtol)})


# ------------------------------------------------------------------------------------------

def main():
    only = sys.argv[1:]
    for name, (fn, subdir) in OPS.items():
        if not only or name in only:
            CUR_DIR[0] = subdir
            fn()
    for subdir in sorted({sd for _, sd in OPS.values()}):
        out_dir = os.path.join(OUT_DIR, subdir) if subdir else OUT_DIR
        mine = {n for n in CASES if CASE_DIR[n] == subdir}
        os.makedirs(out_dir, exist_ok=True)
        if not only:
            for f in sorted(os.listdir(out_dir)):
                if f.endswith(".safetensors") and f[:-len(".safetensors")] not in mine:
                    os.remove(os.path.join(out_dir, f))
        for name in sorted(mine):
            write_if_changed(os.path.join(out_dir, name + ".safetensors"), CASES[name])
        names = sorted(mine | ({f[:-12] for f in os.listdir(out_dir) if f.endswith(".safetensors")}
                               if only else set()))
        with open(os.path.join(out_dir, "INDEX"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        total = sum(os.path.getsize(os.path.join(out_dir, n + ".safetensors")) for n in names)
        print("gen_reference: %s: %d cases (%d written now), %d bytes, torch %s" % (
            os.path.relpath(out_dir, os.path.join(HERE, "..")), len(names), len(mine), total, torch.__version__))


if __name__ == "__main__":
    main()
