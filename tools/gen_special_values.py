#!/usr/bin/python3
"""gen_special_values.py - PyTorch's answers at NaN, the infinities and signed zeros, as a C table.

Run with Debian's python3-torch: `/usr/bin/python3 tools/gen_special_values.py > tests/special_values.h`.
tests/test_ops.c includes the table and checks dlf against every row: the output and the gradient
(out.backward(ones)) of each elementwise op on the same nine inputs, of the binary ops on nine pairs,
and of the reductions on one 4x3 matrix holding NaN and infinities. NaN equals NaN there, and the
outputs' zeros must carry PyTorch's sign.
"""
import math
import torch
import torch.nn.functional as F

NAN, INF = float("nan"), float("inf")
X = [NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 0.5, -2.0]
A = [NAN, 1.0, NAN, INF, -INF, INF, 0.0, -0.0, 2.0]
B = [1.0, NAN, NAN, INF, INF, -INF, -0.0, 0.0, 2.0]
M = [[1.0, NAN, INF], [2.0, 3.0, -INF], [NAN, 0.0, 1.0], [4.0, 5.0, 6.0]]


def c(v):
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    if v == 0.0:
        return "-0.0f" if math.copysign(1.0, v) < 0 else "0.0f"
    s = "%.9g" % v
    return s + ("f" if "." in s or "e" in s else ".0f")


def arr(vs):
    return "{" + ", ".join(c(float(v)) for v in vs) + "}"


def grads(fn, *xs):
    ts = [torch.tensor(x, dtype=torch.float32, requires_grad=True) for x in xs]
    y = fn(*ts)
    y.backward(torch.ones_like(y))
    return y.detach().flatten().tolist(), [t.grad.flatten().tolist() for t in ts]


def gr(x, leak, sub, maxv):  # the course's GeneralRelu; leak 0 means F.relu there (dlf's leak 0)
    x = F.leaky_relu(x, leak) if leak else F.relu(x)
    return (x - sub).clamp_max(maxv) if maxv is not None else x - sub


UNARY = [("relu", 0, torch.relu), ("abs", 0, torch.abs), ("neg", 0, torch.neg), ("exp", 0, torch.exp),
         ("log", 0, torch.log), ("sqrt", 0, torch.sqrt), ("square", 0, torch.square),
         ("sigmoid", 0, torch.sigmoid), ("tanh", 0, torch.tanh),
         ("add_scalar", 2.5, lambda x: x + 2.5), ("mul_scalar", -1.5, lambda x: x * -1.5),
         ("mul_scalar", 0.0, lambda x: x * 0.0),
         ("leaky_relu", 0.1, lambda x: F.leaky_relu(x, 0.1)), ("leaky_relu", 0.0, lambda x: F.leaky_relu(x, 0.0)),
         ("general_relu", 0.1, lambda x: gr(x, 0.1, 0.4, 6.0)), ("general_relu", 0.0, lambda x: gr(x, 0.0, 0.5, None)),
         ("clamp", -1.0, lambda x: x.clamp(-1.0, 0.5)), ("clamp", 2.0, lambda x: x.clamp(2.0, 1.0))]
UNARY += [("pow_scalar", p, (lambda p: lambda x: x ** p)(p))
          for p in (0.5, -0.5, 2.0, 3.0, -1.0, -2.0, 1.5, -1.5, 0.0, 1.0, 2.75)]

BINARY = [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div),
          ("minimum", torch.minimum), ("maximum", torch.maximum)]

REDUCE = [("sum", lambda t, ax: t.sum(ax)), ("mean", lambda t, ax: t.mean(ax)),
          ("max", lambda t, ax: t.max(ax).values), ("min", lambda t, ax: t.min(ax).values),
          ("var0", lambda t, ax: t.var(ax, unbiased=False)), ("var1", lambda t, ax: t.var(ax, unbiased=True)),
          ("argmax", None), ("argmin", None)]

print("/* special_values.h - written by tools/gen_special_values.py from torch %s; do not edit. */" % torch.__version__)
print("#define SV_N 9")
print("static const float SV_X[SV_N] = %s;" % arr(X))
print("static const float SV_A[SV_N] = %s;" % arr(A))
print("static const float SV_B[SV_N] = %s;" % arr(B))
print("static const float SV_M[12] = %s;  /* a 4x3 matrix */" % arr(sum(M, [])))
print("typedef struct { const char *op; float arg; float y[SV_N]; float g[SV_N]; } sv_unary;")
print("static const sv_unary SV_UNARY[] = {")
for name, arg, fn in UNARY:
    y, (g,) = grads(fn, X)
    print('    {"%s", %s,\n     %s,\n     %s},' % (name, c(arg), arr(y), arr(g)))
print("};")
print("typedef struct { const char *op; float y[SV_N]; float ga[SV_N]; float gb[SV_N]; } sv_binary;")
print("static const sv_binary SV_BINARY[] = {")
for name, fn in BINARY:
    y, (ga, gb) = grads(fn, A, B)
    print('    {"%s",\n     %s,\n     %s,\n     %s},' % (name, arr(y), arr(ga), arr(gb)))
print("};")
print("typedef struct { const char *op; int axis; float y[4]; float g[12]; } sv_reduce;  /* y: 3 (axis 0) or 4 values */")
print("static const sv_reduce SV_REDUCE[] = {")
for name, fn in REDUCE:
    for axis in (0, 1):
        if fn is None:
            t = torch.tensor(M)
            y = (t.argmax(axis) if name == "argmax" else t.argmin(axis)).float().tolist()
            g = [0.0] * 12
        else:
            y, (g,) = grads(lambda t: fn(t, axis), M)
        print('    {"%s", %d, %s,\n     %s},' % (name, axis, arr(y + [0.0] * (4 - len(y))), arr(g)))
print("};")
# several axes at once and the whole matrix
print("static const float SV_SUM_ALL = %s, SV_MEAN_ALL = %s;" % (c(torch.tensor(M).sum().item()), c(torch.tensor(M).mean().item())))
# matmul: NaN and inf flow through products and sums as in the naive loop
ma = [[1.0, NAN], [2.0, 3.0], [INF, 1.0]]
mb = [[1.0, 0.0, 2.0], [INF, 1.0, -1.0]]
y, (ga, gb) = grads(torch.matmul, ma, mb)
print("static const float SV_MM_A[6] = %s, SV_MM_B[6] = %s;" % (arr(sum(ma, [])), arr(sum(mb, []))))
print("static const float SV_MM_Y[9] = %s;" % arr(y))
print("static const float SV_MM_GA[6] = %s, SV_MM_GB[6] = %s;" % (arr(ga), arr(gb)))
