# dlf_gdb.py - gdb pretty-printers for dlf tensors, tapes, nodes, RNGs and layers
#
# Load it (gdb built with Python; written for and tested with gdb 13):
#     (gdb) source tools/dlf_gdb.py
# or start gdb with the course's init file, which sources it and sets a few options:
#     gdb -x tools/gdbinit build/debug/lessons/02_fully_connected
# or load it for every session: add to ~/.gdbinit
#     source /path/to/dlf/tools/dlf_gdb.py
# (Or `echo 'add-auto-load-safe-path /path/to/dlf' >> ~/.gdbinit` and put a .gdbinit
#  with the line `source tools/dlf_gdb.py` in the repository; gdb then loads it when
#  started there.)
#
# What it does, after `make debug`:
#     p *t      dlf_tensor "w1" (2, 3) requires_grad [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] {grad = [[...]]}
#     p t       the same for a dlf_tensor pointer: 0x4052a0 -> dlf_tensor ... {data = ..., grad = ...}
#               (NULL prints 0x0, a bad pointer prints <unreadable>)
#     p *nd     matmul out (5, 3) <- in0 (5, 7) "x", in1 (7, 3) "w1"
#     p tape    dlf_tape: 9 nodes, 102400 bytes in use (peak 102400), grad on {#0 = matmul ..., ...}
#     p rng     dlf_rng {s = 9e3779b9 7f4a7c15 ...} no spare normal
#     p *s      dlf_seq 3 layers {0 = linear weight (50, 784) bias (50,), 1 = relu, ...}
#     dlf-print EXPR [N]   prints a tensor over several lines with up to N values per
#                          dimension (default 20; 0 = every value), and its grad; also
#                          takes a tape, a node, a layer, a seq or a float pointer.
#     set dlf-edgeitems K  values kept at each end of a long dimension by the one-line
#                          printers (default 3, as dlf_tensor_print does)
#     set dlf-pointers off print dlf pointers as plain addresses again
# `p/r *t` prints the raw struct, bypassing the printers; `disable pretty-printer
# global dlf` turns them all off.
#
# Large tensors are never read whole: only the values shown are fetched. Garbage
# (an uninitialized local, a freed tensor) shows up as <unreadable> or <invalid ...>
# instead of an error.

import math
import struct

import gdb
import gdb.printing

# ---- settings -----------------------------------------------------------------------

_settings = {"edgeitems": 3, "pointers": True}


class _EdgeItems(gdb.Parameter):
    """Values the dlf printers keep at each end of a long dimension (default 3)."""

    set_doc = "Set how many values the dlf printers show at each end of a long dimension."
    show_doc = "Show how many values the dlf printers show at each end of a long dimension."

    def __init__(self):
        super().__init__("dlf-edgeitems", gdb.COMMAND_DATA, gdb.PARAM_ZUINTEGER)
        self.value = _settings["edgeitems"]

    def get_set_string(self):
        _settings["edgeitems"] = max(1, int(self.value))
        return ""

    def get_show_string(self, svalue):
        return "dlf printers show %s values at each end of a long dimension" % svalue


class _Pointers(gdb.Parameter):
    """Whether the dlf printers look through dlf_tensor / dlf_tape ... pointers."""

    set_doc = "Set whether dlf pointers print what they point to."
    show_doc = "Show whether dlf pointers print what they point to."

    def __init__(self):
        super().__init__("dlf-pointers", gdb.COMMAND_DATA, gdb.PARAM_BOOLEAN)
        self.value = _settings["pointers"]

    def get_set_string(self):
        _settings["pointers"] = bool(self.value)
        return ""

    def get_show_string(self, svalue):
        return "dlf pointers print what they point to: %s" % svalue


# ---- reading the inferior's memory ------------------------------------------------------

MAX_DIMS = 4
UNREADABLE = "<unreadable>"


class Invalid(Exception):
    """The struct does not look like a dlf object (uninitialized or freed memory)."""


def _read_floats(addr, start, count):
    """count float32 values from addr + 4*start, as Python floats."""
    mem = gdb.selected_inferior().read_memory(addr + 4 * start, 4 * count)
    return struct.unpack("=%df" % count, bytes(mem))


def _c_string(ptr, limit=64):
    """The C string at ptr (at most limit bytes), None for NULL, '?' when unreadable."""
    addr = int(ptr)
    if addr == 0:
        return None
    inf = gdb.selected_inferior()
    out = b""
    try:
        while len(out) < limit:
            chunk = bytes(inf.read_memory(addr + len(out), 1))
            if chunk == b"\0":
                break
            out += chunk
    except gdb.MemoryError:
        return "?"
    return out.decode("ascii", "replace")


def _enum_name(v, prefix):
    """DLF_OP_MATMUL -> matmul; an out-of-range value -> '?<n>'."""
    s = str(v)
    if s.startswith(prefix):
        return s[len(prefix):].lower()
    return "?%s" % s


# ---- number and array formatting ------------------------------------------------------

def fmt_float(x):
    """NumPy-like: 1.0, -0.5, 0.1235, 1.2346e+05, nan, inf."""
    if x != x:
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    if a != 0.0 and (a >= 1e5 or a < 1e-4):
        return "%.4e" % x
    s = ("%.4f" % x).rstrip("0")
    return s + "0" if s.endswith(".") else s


def _kept(n, edge):
    """Indices of a dimension of length n that are shown; None marks the '...'.
    edge <= 0 keeps all."""
    if edge <= 0 or n <= 2 * edge:
        return list(range(n))
    return list(range(edge)) + [None] + list(range(n - edge, n))


def _edges(shape, edge, budget):
    """Values kept at each end, per dimension: edge everywhere, then, while more than
    budget values would show, the outer dimensions, outermost first, shrink to their
    first and last entries (so a 4-d tensor still fits on a line); the last
    dimension keeps its edge. budget <= 0: no limit."""
    edges = [edge] * len(shape)
    if edge <= 0 or budget <= 0:
        return edges

    def shown(d):
        return shape[d] if shape[d] <= 2 * edges[d] else 2 * edges[d]

    for d in range(len(shape) - 1):  # the last dimension keeps its edge
        total = 1
        for k in range(len(shape)):
            total *= shown(k)
        if total <= budget:
            break
        if shown(d) > 2:
            edges[d] = 1
    return edges


def _layout(shape, edges):
    """Nested lists of flat indices (None for '...'), for a tensor of this shape."""
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]

    def rec(dim, offset):
        out = []
        for i in _kept(shape[dim], edges[dim]):
            if i is None:
                out.append(None)
            elif dim == len(shape) - 1:
                out.append(offset + i)
            else:
                out.append(rec(dim + 1, offset + i * strides[dim]))
        return out

    return rec(0, 0)


def _flat(tree, acc):
    for x in tree:
        if isinstance(x, list):
            _flat(x, acc)
        elif x is not None:
            acc.append(x)
    return acc


def _fetch(addr, indices):
    """{index: value}, reading each contiguous run of indices in one go."""
    vals = {}
    indices = sorted(set(indices))
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        run = _read_floats(addr, indices[i], j - i + 1)
        for k, v in enumerate(run):
            vals[indices[i] + k] = v
        i = j + 1
    return vals


def _render(tree, vals, depth, multiline, ndim, indent):
    parts = []
    for x in tree:
        if x is None:
            parts.append("...")
        elif isinstance(x, list):
            parts.append(_render(x, vals, depth + 1, multiline, ndim, indent))
        else:
            parts.append(fmt_float(vals[x]))
    if multiline and depth < ndim - 1:
        sep = "," + "\n" * (ndim - depth - 1) + " " * (indent + depth + 1)
    else:
        sep = ", "
    return "[" + sep.join(parts) + "]"


def format_values(addr, shape, edge, multiline=False, indent=0):
    """The values at addr, of the given shape, NumPy style: at most 2*edge values per
    dimension; on one line (multiline False) at most (2*edge)^2 values in all.
    Raises gdb.MemoryError."""
    if addr == 0:
        return "NULL"
    if len(shape) == 0:
        return fmt_float(_read_floats(addr, 0, 1)[0])
    if 0 in shape:
        return "[]"
    edges = _edges(shape, edge, 0 if multiline else (2 * edge) ** 2)
    tree = _layout(shape, edges)
    vals = _fetch(addr, _flat(tree, []))
    return _render(tree, vals, 0, multiline, len(shape), indent)


def shape_str(shape):
    if len(shape) == 1:
        return "(%d,)" % shape[0]
    return "(" + ", ".join(str(d) for d in shape) + ")"


# ---- dlf_tensor ---------------------------------------------------------------------------

class TensorInfo(object):
    """The fields of a dlf_tensor, checked; raises Invalid or gdb.MemoryError."""

    def __init__(self, val):
        self.ndim = int(val["ndim"])
        if not 0 <= self.ndim <= MAX_DIMS:
            raise Invalid("ndim=%d" % self.ndim)
        self.shape = [int(val["shape"][i]) for i in range(self.ndim)]
        if any(d < 0 for d in self.shape):
            raise Invalid("shape %s" % (self.shape,))
        self.size = int(val["size"])
        prod = 1
        for d in self.shape:
            prod *= d
        if self.size != prod:
            raise Invalid("size %d, shape %s" % (self.size, shape_str(self.shape)))
        self.data = int(val["data"])
        self.grad = int(val["grad"])
        self.requires_grad = int(val["requires_grad"])
        self.flags = int(val["flags"])
        self.name = _c_string(val["name"])

    def header(self):
        s = "dlf_tensor"
        if self.name is not None:
            s += ' "%s"' % self.name
        s += " " + shape_str(self.shape)
        if self.requires_grad:
            s += " requires_grad"
        return s

    def flag_words(self):
        words = [w for bit, w in ((1, "heap"), (2, "view"), (4, "arena")) if self.flags & bit]
        return " ".join(words) if words else "no flags"

    def values(self, which, edge, multiline=False, indent=0):
        addr = self.data if which == "data" else self.grad
        try:
            return format_values(addr, self.shape, edge, multiline, indent)
        except gdb.MemoryError:
            return "<unreadable %s at 0x%x>" % (which, addr)


def tensor_line(val):
    """'"w1" (784, 50)': the short form used inside node and layer lines."""
    try:
        if int(val) == 0:
            return "NULL"
        info = TensorInfo(val.dereference())
    except (gdb.MemoryError, gdb.error):
        return UNREADABLE
    except Invalid:
        return "<invalid>"
    s = shape_str(info.shape)
    if info.name is not None:
        s += ' "%s"' % info.name
    return s


class TensorPrinter(object):
    """dlf_tensor: header and values on one line, the gradient as a child."""

    def __init__(self, val):
        self.val = val
        self.info = None
        self.error = None
        try:
            self.info = TensorInfo(val)
        except (gdb.MemoryError, gdb.error):
            self.error = UNREADABLE
        except Invalid as e:
            self.error = "<invalid dlf_tensor: %s>" % e

    def to_string(self):
        if self.error:
            return self.error
        return self.info.header() + " " + self.info.values("data", _settings["edgeitems"])

    def children(self):
        if self.info and self.info.grad:
            yield "grad", self.info.values("grad", _settings["edgeitems"])


class TensorPointerPrinter(object):
    """dlf_tensor *: address and header; data and grad as children, so that frame
    lines in `bt` and `step` (which elide children) stay short."""

    def __init__(self, val):
        self.addr = int(val)
        self.info = None
        self.error = None
        if self.addr == 0:
            return
        try:
            self.info = TensorInfo(val.dereference())
        except (gdb.MemoryError, gdb.error):
            self.error = UNREADABLE
        except Invalid as e:
            self.error = "<invalid dlf_tensor: %s>" % e

    def to_string(self):
        if self.addr == 0:
            return "0x0"
        if self.error:
            return "0x%x %s" % (self.addr, self.error)
        return "0x%x -> %s" % (self.addr, self.info.header())

    def children(self):
        if self.info is None:
            return
        edge = _settings["edgeitems"]
        yield "data", self.info.values("data", edge)
        if self.info.grad:
            yield "grad", self.info.values("grad", edge)


# ---- dlf_node and dlf_tape -------------------------------------------------------------------

def node_line(val):
    """'matmul out (5, 3) <- in0 (5, 7) "x", in1 (7, 3) "w1"' plus the op's arguments."""
    try:
        opv = val["op"]
        op = _enum_name(opv, "DLF_OP_")
        if op == "bce_logits":
            op = "bce_with_logits"  # dlf_op_name's spelling
        s = "%s out %s" % (op, tensor_line(val["out"]))
        ins = []
        for j in range(int(val["in"].type.sizeof // val["in"][0].type.sizeof)):
            if int(val["in"][j]) != 0:
                ins.append("in%d %s" % (j, tensor_line(val["in"][j])))
        if ins:
            s += " <- " + ", ".join(ins)
        iarg = [int(val["iarg"][i]) for i in range(4)]
        farg = [float(val["farg"][i]) for i in range(2)]
        extra = ""
        if op == "matmul" and (iarg[0] or iarg[1]):
            extra = "ta %d tb %d" % (iarg[0], iarg[1])
        elif op in ("add_scalar", "mul_scalar", "pow_scalar"):
            extra = "s %s" % fmt_float(farg[0])
        elif op == "leaky_relu":
            extra = "slope %s" % fmt_float(farg[0])
        elif op == "general_relu":
            extra = "leak %s maxv %s" % (fmt_float(farg[0]), fmt_float(farg[1]))
        elif op == "conv2d":
            extra = "stride %d pad %d" % (iarg[0], iarg[1])
        elif op in ("maxpool2d", "avgpool2d"):
            extra = "k %d stride %d pad %d" % (iarg[0], iarg[1], iarg[2])
        if extra:
            s += "  [" + extra + "]"
        return s
    except (gdb.MemoryError, gdb.error):
        return UNREADABLE


class NodePrinter(object):
    def __init__(self, val):
        self.val = val

    def to_string(self):
        return node_line(self.val)


class NodePointerPrinter(object):
    def __init__(self, val):
        self.val = val

    def to_string(self):
        if int(self.val) == 0:
            return "0x0"
        return "0x%x -> %s" % (int(self.val), node_line(self.val.dereference()))


MAX_NODES = 1 << 24


def tape_info(val):
    """(summary line, nodes pointer, n_nodes); raises Invalid or gdb.MemoryError."""
    n = int(val["n_nodes"])
    cap = int(val["cap_nodes"])
    if not (0 <= n <= cap <= MAX_NODES):
        raise Invalid("n_nodes %d, cap_nodes %d" % (n, cap))
    s = "dlf_tape: %d nodes, %d bytes in use (peak %d), grad %s" % (
        n, int(val["used_bytes"]), int(val["peak_bytes"]), "on" if int(val["grad_enabled"]) else "off")
    return s, val["nodes"], n


class TapePrinter(object):
    """dlf_tape: the dlf_tape_print summary; the nodes as children #0, #1, ..."""

    def __init__(self, val, addr=None):
        self.addr = addr
        self.n = 0
        self.nodes = None
        try:
            self.summary, self.nodes, self.n = tape_info(val)
        except (gdb.MemoryError, gdb.error):
            self.summary = UNREADABLE
        except Invalid as e:
            self.summary = "<invalid dlf_tape: %s>" % e
        if self.n and int(self.nodes) == 0:
            self.summary += " <nodes NULL>"
            self.n = 0

    def to_string(self):
        if self.addr is not None:
            return "0x%x -> %s" % (self.addr, self.summary)
        return self.summary

    def children(self):
        for i in range(self.n):
            yield "#%d" % i, node_line(self.nodes[i])


def tape_pointer_printer(val):
    if int(val) == 0:
        return _Null()
    return TapePrinter(val.dereference(), int(val))


class _Null(object):
    def to_string(self):
        return "0x0"


# ---- dlf_rng ------------------------------------------------------------------------------

def rng_line(val):
    try:
        s = " ".join("%08x" % (int(val["s"][i]) & 0xffffffff) for i in range(4))
        spare = "spare normal %s" % fmt_float(float(val["spare"])) if int(val["has_spare"]) else "no spare normal"
        return "dlf_rng {s = %s} %s" % (s, spare)
    except (gdb.MemoryError, gdb.error):
        return UNREADABLE


class RngPrinter(object):
    def __init__(self, val):
        self.val = val

    def to_string(self):
        return rng_line(self.val)


class RngPointerPrinter(object):
    def __init__(self, val):
        self.val = val

    def to_string(self):
        if int(self.val) == 0:
            return "0x0"
        return "0x%x -> %s" % (int(self.val), rng_line(self.val.dereference()))


# ---- dlf_layer and dlf_seq -------------------------------------------------------------------

MAX_LAYERS = 1 << 16


def layer_line(val):
    try:
        kind = _enum_name(val["kind"], "DLF_LAYER_")
        s = kind
        if int(val["weight"]) != 0:
            s += " weight " + tensor_line(val["weight"])
        if int(val["bias"]) != 0:
            s += " bias " + tensor_line(val["bias"])
        if kind in ("conv2d", "maxpool2d", "avgpool2d"):
            s += " k %d stride %d pad %d" % (int(val["k"]), int(val["stride"]), int(val["pad"]))
        if kind in ("leaky_relu", "general_relu"):
            s += " leak %s" % fmt_float(float(val["leak"]))
        if kind == "general_relu":
            s += " sub %s maxv %s" % (fmt_float(float(val["sub"])), fmt_float(float(val["maxv"])))
        if int(val["body"]) != 0:
            s += " x + body(x), body: %s" % seq_summary(val["body"].dereference())[0]
        return s
    except (gdb.MemoryError, gdb.error):
        return UNREADABLE


def seq_summary(val):
    """('3 layers', layers pointer, n); raises gdb.MemoryError."""
    n = int(val["n"])
    cap = int(val["cap"])
    if not (0 <= n <= cap <= MAX_LAYERS):
        return "<invalid: n %d, cap %d>" % (n, cap), None, 0
    return "%d layer%s" % (n, "" if n == 1 else "s"), val["layers"], n


class LayerPrinter(object):
    def __init__(self, val, addr=None):
        self.val = val
        self.addr = addr

    def to_string(self):
        s = layer_line(self.val)
        return s if self.addr is None else "0x%x -> %s" % (self.addr, s)


class SeqPrinter(object):
    """dlf_seq: the number of layers; the layers as children 0, 1, ..."""

    def __init__(self, val, addr=None):
        self.addr = addr
        self.n = 0
        try:
            self.summary, self.layers, self.n = seq_summary(val)
        except (gdb.MemoryError, gdb.error):
            self.summary = UNREADABLE
        if self.n and int(self.layers) == 0:
            self.n = 0

    def to_string(self):
        s = "dlf_seq " + self.summary
        return s if self.addr is None else "0x%x -> %s" % (self.addr, s)

    def children(self):
        for i in range(self.n):
            yield str(i), layer_line(self.layers[i])


# ---- lookup and registration ---------------------------------------------------------------

def _tag(t):
    t = t.strip_typedefs().unqualified()
    if t.code == gdb.TYPE_CODE_STRUCT:
        return t.tag
    return None


def _pointer_printer(printer_cls):
    def make(val):
        if int(val) == 0:
            return _Null()
        return printer_cls(val)
    return make


_STRUCT_PRINTERS = {
    "dlf_tensor": TensorPrinter,
    "dlf_node": NodePrinter,
    "dlf_tape": TapePrinter,
    "dlf_rng": RngPrinter,
    "dlf_layer": LayerPrinter,
    "dlf_seq": SeqPrinter,
}

_POINTER_PRINTERS = {
    "dlf_tensor": TensorPointerPrinter,
    "dlf_node": _pointer_printer(NodePointerPrinter),
    "dlf_tape": tape_pointer_printer,
    "dlf_rng": _pointer_printer(RngPointerPrinter),
    "dlf_layer": lambda v: _Null() if int(v) == 0 else LayerPrinter(v.dereference(), int(v)),
    "dlf_seq": lambda v: _Null() if int(v) == 0 else SeqPrinter(v.dereference(), int(v)),
}


class DlfPrettyPrinter(gdb.printing.PrettyPrinter):
    """Pretty-printers for dlf.h's structs and pointers to them."""

    def __init__(self):
        subs = [gdb.printing.SubPrettyPrinter(n) for n in sorted(_STRUCT_PRINTERS)]
        subs += [gdb.printing.SubPrettyPrinter(n + " *") for n in sorted(_POINTER_PRINTERS)]
        super().__init__("dlf", subs)
        self._enabled = {s.name: s for s in subs}

    def __call__(self, val):
        t = val.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_PTR:
            if not _settings["pointers"]:
                return None
            tag = _tag(t.target())
            key = (tag or "") + " *"
            table = _POINTER_PRINTERS
        else:
            tag = _tag(t)
            key = tag
            table = _STRUCT_PRINTERS
        if tag not in table or not self._enabled[key].enabled:
            return None
        return table[tag](val)


gdb.printing.register_pretty_printer(None, DlfPrettyPrinter(), replace=True)


# ---- dlf-print ------------------------------------------------------------------------

class DlfPrint(gdb.Command):
    """Print a dlf object in full: dlf-print EXPR [N]

EXPR is a dlf_tensor or a pointer to one: prints its name, shape, size, flags and
addresses, then its values over several lines, NumPy style, with up to N values per
dimension (default 20; 0 prints every value), then its gradient the same way.
EXPR may also be a dlf_tape (every node, like dlf_tape_print), a dlf_node (the node,
then its output and inputs), a dlf_layer, a dlf_seq, or a float pointer (N floats,
default 16).
Examples:  dlf-print *m->w1      dlf-print x 6      dlf-print tape      dlf-print h->l1 8"""

    def __init__(self):
        super().__init__("dlf-print", gdb.COMMAND_DATA, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        expr, n = self._parse(arg)
        val = gdb.parse_and_eval(expr)
        t = val.type.strip_typedefs()
        if t.code == gdb.TYPE_CODE_PTR:
            target = t.target().strip_typedefs().unqualified()
            if target.code == gdb.TYPE_CODE_FLT:
                self._floats(val, 16 if n is None else n)
                return
            if _tag(target) is None:
                raise gdb.GdbError("dlf-print: %s is not a dlf object or a float pointer" % expr)
            if int(val) == 0:
                gdb.write("%s = NULL\n" % expr)
                return
            val = val.dereference()
        tag = _tag(val.type)
        edge = 10 if n is None else n
        try:
            if tag == "dlf_tensor":
                self._tensor(expr, val, edge)
            elif tag == "dlf_tape":
                self._tape(val)
            elif tag == "dlf_node":
                self._node(val, edge)
            elif tag == "dlf_layer":
                gdb.write(layer_line(val) + "\n")
            elif tag == "dlf_seq":
                p = SeqPrinter(val)
                gdb.write(p.to_string() + "\n")
                for name, line in p.children():
                    gdb.write("  (%s): %s\n" % (name, line))
            elif tag == "dlf_rng":
                gdb.write(rng_line(val) + "\n")
            else:
                raise gdb.GdbError("dlf-print: %s is a %s, not a dlf object" % (expr, val.type))
        except gdb.MemoryError:
            gdb.write("%s: %s\n" % (expr, UNREADABLE))

    @staticmethod
    def _parse(arg):
        words = arg.split()
        if not words:
            raise gdb.GdbError("usage: dlf-print EXPR [N]")
        if len(words) > 1:
            try:
                n = int(words[-1])
                if n >= 0:
                    return arg.rsplit(None, 1)[0], n
            except ValueError:
                pass
        return arg.strip(), None

    @staticmethod
    def _edge(n):
        return 0 if n == 0 else (n + 1) // 2

    def _tensor(self, expr, val, n):
        try:
            info = TensorInfo(val)
        except Invalid as e:
            gdb.write("%s: <invalid dlf_tensor: %s>\n" % (expr, e))
            return
        gdb.write("%s  size %d, %s, data 0x%x, grad 0x%x\n" % (
            info.header(), info.size, info.flag_words(), info.data, info.grad))
        edge = self._edge(n)
        gdb.write("data " + info.values("data", edge, True, 5) + "\n")
        if info.grad:
            gdb.write("grad " + info.values("grad", edge, True, 5) + "\n")

    def _tape(self, val):
        p = TapePrinter(val)
        gdb.write(p.to_string() + "\n")
        for name, line in p.children():
            gdb.write("  %-4s %s\n" % (name, line))

    def _node(self, val, n):
        gdb.write(node_line(val) + "\n")
        for label, ptr in (("out", val["out"]), ("in0", val["in"][0]), ("in1", val["in"][1]),
                           ("aux", val["aux"])):
            if int(ptr) == 0:
                continue
            gdb.write("-- %s: " % label)
            self._tensor(label, ptr.dereference(), n)

    def _floats(self, val, n):
        n = n or 16
        try:
            vals = _read_floats(int(val), 0, n)
        except gdb.MemoryError:
            gdb.write("0x%x: %s\n" % (int(val), UNREADABLE))
            return
        gdb.write("0x%x: [%s]\n" % (int(val), ", ".join(fmt_float(v) for v in vals)))


_EdgeItems()
_Pointers()
DlfPrint()
