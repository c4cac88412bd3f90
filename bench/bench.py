#!/usr/bin/env python3
"""bench.py - dlf against its references (OpenBLAS's sgemm, PyTorch), measured in the
same run: every case runs its dlf side and its reference side one after the other, for
several rounds, alternating which goes first, and the medians are compared.

`make bench` builds the programs, fetches MNIST and runs this; docs/benchmarks.md says
how to read the output. One line per case:

    bench <case> dlf=<v><unit> ref=<v><unit> ratio=<dlf/ref> ref_kernel=<name>

ratio is always dlf's median divided by the reference's: for GFLOP/s above 1 means dlf
is faster, for times (ms, s), memory (MB) and the busy-machine case below 1 is better
for dlf.

Environment (all optional):
    BENCH_ROUNDS=N        rounds (default 5; 1 with BENCH_QUICK)
    BENCH_QUICK=1         development only: 1 round, small sizes, short timings, a sixth of
                          MNIST; the numbers are not for RESULTS.md
    BENCH_ONLY=a,b        groups to run: gemm, conv, epoch (with peak RSS), allocs, busy
    BENCH_RESULTS=FILE    where the run is written (default bench/RESULTS.md); "-": nowhere
    BENCH_THREADS=1,2     thread counts of the gemm, conv and epoch cases
    BENCH_SIZES=64,...    square sgemm sizes (default 64,128,256,512,1024,2048)
    BENCH_EPOCHS=N        epochs per training run (default 5 for the MLP, 1 for the CNNs; the
                          value is per epoch)
    BENCH_TORCH_PY=PATH   the python that has torch (default: this one, else /usr/bin/python3;
                          "none": no PyTorch cases)
    BENCH_TORCH_CAPABILITY=avx512|avx2|...  sets ATEN_CPU_CAPABILITY for PyTorch (default:
                          PyTorch's own choice, which the header names)
    BENCH_TORCH_BLAS_THREADS=N  OPENBLAS_NUM_THREADS for PyTorch (default: the case's
                          thread count)
    BENCH_REF_UNSET="..." variables removed from the references' environment only (default
                          OPENBLAS_CORETYPE OPENBLAS_L2_SIZE: they hold OpenBLAS, and
                          PyTorch's Linear layers, to older kernels)
    BENCH_BUILD, BENCH_CC, BENCH_CFLAGS, BENCH_MATMUL  set by the Makefile
"""
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = os.environ
QUICK = ENV.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = int(ENV.get("BENCH_ROUNDS") or (1 if QUICK else 5))
ONLY = [g for g in ENV.get("BENCH_ONLY", "gemm,conv,epoch,allocs,busy").split(",") if g]
RESULTS = ENV.get("BENCH_RESULTS") or os.path.join(ROOT, "bench", "RESULTS.md")
THREADS = [int(t) for t in ENV.get("BENCH_THREADS", "1,2").split(",") if t]
SIZES = ENV.get("BENCH_SIZES") or ("64,128,256" if QUICK else "64,128,256,512,1024,2048")
# Epochs per training run; the value is train_seconds / epochs. The examples print
# train_seconds to 0.01 s, so the MLP (about 0.2 s an epoch) runs its usual 5.
EPOCHS = {"mlp": 1 if QUICK else 5, "cnn": 1, "cnnbn": 1}
if ENV.get("BENCH_EPOCHS"):
    EPOCHS = {k: int(ENV["BENCH_EPOCHS"]) for k in EPOCHS}
BUILD = ENV.get("BENCH_BUILD") or "build"
REF_UNSET = (ENV.get("BENCH_REF_UNSET") or "OPENBLAS_CORETYPE OPENBLAS_L2_SIZE").split()
TORCH_CAPABILITY = ENV.get("BENCH_TORCH_CAPABILITY", "")
TORCH_BLAS_THREADS = ENV.get("BENCH_TORCH_BLAS_THREADS", "")
GEMM_MIN_TIME = "0.03" if QUICK else "0.2"
CONV_MIN_TIME = "0.05" if QUICK else "0.3"
ALLOC_STEPS = "5" if QUICK else "20"
TIMEOUT = 600          # seconds for any one command; a busy machine can stretch an epoch a lot
MARKER = "<!-- bench/bench.py writes each new run below this line, newest first -->"


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def path(*parts):
    return os.path.join(ROOT, *parts)


def find_torch_python():
    """The interpreter that has torch, or None."""
    if ENV.get("BENCH_TORCH_PY") == "none":
        return None
    cands = [ENV.get("BENCH_TORCH_PY"), sys.executable, "/usr/bin/python3"]
    for py in cands:
        if not py or not os.path.exists(py):
            continue
        try:
            r = subprocess.run([py, "-c", "import torch"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return py
    return None


def ref_env(threads=None, torch=False):
    """The references' environment: REF_UNSET removed, the thread count set."""
    env = {k: v for k, v in ENV.items() if k not in REF_UNSET}
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        if torch and TORCH_BLAS_THREADS:
            env["OPENBLAS_NUM_THREADS"] = TORCH_BLAS_THREADS
    if torch and TORCH_CAPABILITY:
        env["ATEN_CPU_CAPABILITY"] = TORCH_CAPABILITY
    return env


def kill_group(p):
    try:
        os.killpg(p.pid, 9)
    except OSError:
        pass
    p.wait()


def run(cmd, env=None, timeout=TIMEOUT):
    """Run cmd in the repository root; returns (rc, stdout, stderr), rc None on a timeout
    (the command's whole process group is then killed)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        except OSError as e:
            return 127, "", str(e)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            rc = None
        except BaseException:       # Ctrl-C: the command runs in its own session, so stop it here
            kill_group(p)
            raise
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


CASE_RE = re.compile(r"^case=(\S+) value=(\S+) unit=(\S+)(?: kernel=(\S+))?(?: check=(\S+))?")


def parse_cases(text):
    """{case: (value, unit, kernel, check)} from the measuring programs' lines."""
    res = {}
    for line in text.splitlines():
        m = CASE_RE.match(line.strip())
        if m:
            res[m.group(1)] = (float(m.group(2)), m.group(3), m.group(4), m.group(5))
    return res


def parse_info(text):
    info = {}
    for line in text.splitlines():
        if line.startswith("info ") and "=" in line:
            k, v = line[5:].split("=", 1)
            info[k.strip()] = v.strip()
    return info


RSS_RE = re.compile(r"^peak_rss_kb=(\d+)", re.M)
LAST_RE = re.compile(r"epochs=(\d+) train_seconds=([0-9.]+)")


def parse_epoch(text, name):
    """The examples' and torch_mnist.py's last line -> seconds per epoch."""
    for line in reversed(text.splitlines()):
        m = LAST_RE.search(line)
        if m and int(m.group(1)) > 0:
            return {name: (float(m.group(2)) / int(m.group(1)), "s", None, None)}
    return {}


class Job:
    """One command of one side; parse(stdout, stderr) -> {case: (value, unit, kernel, check)}."""

    def __init__(self, label, cmd, env, parse, timeout=TIMEOUT):
        self.label, self.cmd, self.env, self.parse, self.timeout = label, cmd, env, parse, timeout


class Results:
    def __init__(self):
        self.values = {}      # case -> {"dlf": [...], "ref": [...]}
        self.units = {}
        self.ref_kernel = {}
        self.checks = {}      # case -> {"dlf": check, "ref": check}
        self.order = []
        self.notes = []

    def add(self, side, cases, ref_kernel):
        for case, (value, unit, kernel, check) in cases.items():
            if case not in self.values:
                self.values[case] = {"dlf": [], "ref": []}
                self.order.append(case)
            self.values[case][side].append(value)
            self.units[case] = unit
            if side == "ref":
                self.ref_kernel[case] = kernel or ref_kernel or "n/a"   # what the program says ran
            if check:
                self.checks.setdefault(case, {})[side] = float(check)

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)
        log("  note: " + msg)


def run_job(job, side, res, ref_kernel=None):
    """Run one job and record its cases; returns the exit status (None: timed out)."""
    log("  %-4s %s" % (side, job.label))
    rc, out, err = run(job.cmd, job.env, job.timeout)
    if rc is None:
        res.note("%s (%s) ran past %d s and was stopped" % (job.label, side, job.timeout))
        return None
    if rc != 0:
        tail = " | ".join((err.strip() or out.strip()).splitlines()[-3:])
        res.note("%s (%s) failed with status %d: %s" % (job.label, side, rc, tail))
        return rc
    cases = job.parse(out, err)
    if not cases:
        res.note("%s (%s) printed no result" % (job.label, side))
    res.add(side, cases, ref_kernel)
    return rc


# The project's performance targets (issue 9), checked on each run's medians:
# (what, case pattern, "min" or "max" ratio, bound).
TARGETS = [
    ("sgemm N=256..2048, every flag, 1 and 2 threads: dlf/OpenBLAS GFLOP/s >= 0.90",
     r"sgemm-(256|512|1024|2048)-..-t[12]$", "min", 0.90),
    ("conv layer fwd+bwd, 1 and 2 threads: dlf/PyTorch time <= 1.0",
     r"conv-64x32x14x14-k32-3x3p1-fwdbwd-t[12]$", "max", 1.0),
    ("MNIST CNN epoch, 1 and 2 threads: dlf/PyTorch time <= 0.7", r"epoch-cnn-t[12]$", "max", 0.7),
    ("MNIST MLP epoch, 1 and 2 threads: dlf/PyTorch time <= 0.7", r"epoch-mlp-t[12]$", "max", 0.7),
    ("busy machine: default threads / --threads 1 epoch <= 1.5", r"busy-", "max", 1.5),
    ("peak RSS of MNIST training: dlf/PyTorch <= 0.25", r"rss-", "max", 0.25),
]


def target_lines(medians):
    """One line per target: the worst ratio among its cases, met or missed."""
    out = []
    for what, pattern, kind, bound in TARGETS:
        got = [(r, c) for c, r in medians.items() if r is not None and re.match(pattern, c)]
        if not got:
            continue
        worst = min(got) if kind == "min" else max(got)
        ok = worst[0] >= bound if kind == "min" else worst[0] <= bound
        out.append("target %s: %s (worst %.3f, %s, of %d case(s))" % (what, "met" if ok else "MISSED", worst[0],
                                                                 worst[1], len(got)))
    allocs = [(v, c) for c, v in medians.items() if c.startswith("allocs-") and not c.startswith("allocs-first")]
    if allocs:
        worst = max(allocs)
        out.append("target heap allocations per step after the first = 0: %s (worst %g, %s)" % (
            "met" if worst[0] == 0 else "MISSED", worst[0], worst[1]))
    return out


def fmt(v):
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    return "%.4g" % v


def make_quick_mnist():
    """A sixth of MNIST (12000 training images, 2000 test) for BENCH_QUICK."""
    src, dst = path("data", "mnist"), path(BUILD, "bench", "mnist-quick")
    os.makedirs(dst, exist_ok=True)
    for name, n in (("train-images-idx3-ubyte", 12000), ("train-labels-idx1-ubyte", 12000),
                    ("t10k-images-idx3-ubyte", 2000), ("t10k-labels-idx1-ubyte", 2000)):
        with open(os.path.join(src, name), "rb") as f:
            data = f.read()
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
        item = 1
        for d in dims[1:]:
            item *= d
        head = data[:4] + n.to_bytes(4, "big") + data[8:4 + 4 * ndim]
        with open(os.path.join(dst, name), "wb") as f:
            f.write(head + data[4 + 4 * ndim:4 + 4 * ndim + n * item])
    return dst


def cpu_header():
    model, family, cpu_model, flags = "unknown", "?", "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and model == "unknown":
                    model = v
                elif k == "cpu family" and family == "?":
                    family = v
                elif k == "model" and cpu_model == "?":
                    cpu_model = v
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    yes = lambda f: "yes" if f in flags else "no"
    return model, family, cpu_model, n_cpus, "avx2 %s, fma %s, avx512f %s" % (yes("avx2"), yes("fma"), yes("avx512f"))


def compiler_header():
    cc = ENV.get("BENCH_CC") or "cc"
    try:
        ver = subprocess.run([cc, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        ver = "unknown"
    return "%s = %s, flags %s" % (cc, ver, ENV.get("BENCH_CFLAGS") or "(not given)")


def git_header():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--",
                                "dlf.h", "dlf.c", "examples", "bench"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()
        return rev + (" with uncommitted changes" if dirty else "") if rev else "unknown"
    except OSError:
        return "unknown"


def main():
    os.chdir(ROOT)
    # On SIGTERM as on Ctrl-C, unwind: the running command and the busy loop are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    matmul = ENV.get("BENCH_MATMUL") or path(BUILD, "bench", "bench_matmul")
    conv, allocs = path(BUILD, "bench", "bench_conv"), path(BUILD, "bench", "bench_allocs")
    peak_rss = path(BUILD, "bench", "peak_rss")
    mlp, cnn = path(BUILD, "examples", "mnist_mlp"), path(BUILD, "examples", "mnist_cnn")
    missing = [p for p in (matmul, conv, allocs, peak_rss, mlp, cnn) if not os.path.exists(p)]
    if missing:
        log("bench.py: missing %s: run `make bench` (it builds them)" % ", ".join(missing))
        return 1
    if not os.path.exists(path("data", "mnist", "train-images-idx3-ubyte")):
        log("bench.py: no MNIST in data/mnist: bash tools/fetch_data.sh --only mnist data")
        return 1
    torch_py = find_torch_python()
    data = make_quick_mnist() if QUICK else path("data", "mnist")
    res = Results()
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)

    # The header: what ran where.
    model, family, cpu_model, n_cpus, isa = cpu_header()
    rc, out, err = run([matmul, "info"])
    dlf_info = parse_info(out)
    rc, out, err = run([matmul, "info"], env=ref_env())
    blas_core = parse_info(out).get("openblas_core", "n/a")
    blas_config = parse_info(out).get("openblas_config", "")
    has_blas = blas_core != "n/a"
    torch_info = {}
    if torch_py:
        rc, out, err = run([torch_py, path("bench", "torch_conv.py"), "info"], env=ref_env(1, torch=True))
        torch_info = parse_info(out)
    torch_kernel = torch_info.get("torch_capability", "n/a")
    peaks = ", ".join("%s %s" % (k[len("dlf_peak_gflops_"):], v) for k, v in dlf_info.items()
                      if k.startswith("dlf_peak_gflops_"))
    header = [
        "CPU: %s (cpu family %s, model %s), %d CPUs for this run; %s" % (model, family, cpu_model, n_cpus, isa),
        "compiler: %s" % compiler_header(),
        "dlf: kernel %s (DLF_KERNEL %s), %s threads by default; one core's measured FMA peak, GFLOP/s: %s" % (
            dlf_info.get("dlf_kernel", "?"), ENV.get("DLF_KERNEL", "unset"), dlf_info.get("dlf_threads", "?"),
            peaks or "?"),
        "OpenBLAS: %s" % ("kernel %s (%s)" % (blas_core, blas_config) if has_blas
                          else "not installed (apt-get install libopenblas-dev): gemm ref=n/a"),
        "PyTorch: %s" % ("%s, CPU capability %s%s (%s)" % (
            torch_info.get("torch_version", "?"), torch_kernel,
            " (ATEN_CPU_CAPABILITY=%s)" % TORCH_CAPABILITY if TORCH_CAPABILITY else ", its own choice",
            torch_py) if torch_py else "not used (not found, or BENCH_TORCH_PY=none; apt-get install "
                                       "python3-torch): the conv and epoch cases print ref=n/a"),
        "references' environment: %s unset (set here: %s); OPENBLAS_NUM_THREADS = the case's threads%s" % (
            " ".join(REF_UNSET), ", ".join("%s=%s" % (k, ENV[k]) for k in REF_UNSET if k in ENV) or "none",
            " (PyTorch: %s)" % TORCH_BLAS_THREADS if TORCH_BLAS_THREADS else ""),
        "dlf commit: %s" % git_header(),
        "rounds: %d, dlf and reference alternating (each round flips which goes first); medians%s" % (
            ROUNDS, "; QUICK MODE (small sizes, a sixth of MNIST): not for comparison" if QUICK else ""),
    ]
    log("bench.py: " + "\n           ".join(header))

    # The cases, as pairs of jobs: (dlf's job, the reference's job or None, the reference's
    # kernel when its program does not name one).
    pairs = []
    cases_parse = lambda out, err: parse_cases(out)
    if "gemm" in ONLY:
        for t in THREADS:
            args = ["--threads", str(t), "--square", "--sizes", SIZES, "--mnist", "--min-time", GEMM_MIN_TIME]
            dj = Job("gemm %d thread(s)" % t, [matmul, "dlf"] + args, None, cases_parse)
            rj = Job("gemm %d thread(s)" % t, [matmul, "ref"] + args, ref_env(t), cases_parse) if has_blas else None
            pairs.append((dj, rj, blas_core))
    if "conv" in ONLY:
        for t in THREADS:
            args = ["--threads", str(t), "--min-time", CONV_MIN_TIME]
            dj = Job("conv %d thread(s)" % t, [conv] + args, None, cases_parse)
            rj = Job("conv %d thread(s)" % t, [torch_py, path("bench", "torch_conv.py")] + args,
                     ref_env(t, torch=True), cases_parse) if torch_py else None
            pairs.append((dj, rj, torch_kernel))
    if "epoch" in ONLY:
        for name, prog, flags in (("mlp", mlp, []), ("cnn", cnn, []), ("cnnbn", cnn, ["--bn"])):
            for t in THREADS:
                def parse(out, err, name=name, t=t):
                    r = parse_epoch(out, "epoch-%s-t%d" % (name, t))
                    m = RSS_RE.search(err)
                    if r and m:
                        r["rss-%s-t%d" % (name, t)] = (int(m.group(1)) / 1024.0, "MB", None, None)
                    return r
                dj = Job("%s epoch, %d thread(s)" % (name, t),
                         [peak_rss, prog, "--epochs", str(EPOCHS[name]), "--threads", str(t), "--data", data] + flags,
                         None, parse)
                rj = Job("%s epoch, %d thread(s)" % (name, t),
                         [peak_rss, torch_py, path("bench", "torch_mnist.py"), name, str(EPOCHS[name]), str(t),
                          "--data", data],
                         ref_env(t, torch=True), parse) if torch_py else None
                pairs.append((dj, rj, torch_kernel))
    if "allocs" in ONLY:
        pairs.append((Job("allocations per step", [allocs, "--steps", ALLOC_STEPS, "--data", data], None,
                          cases_parse), None, None))
    busy = None
    if "busy" in ONLY:
        def parse_busy(out, err):
            return parse_epoch(out, "busy-cnn-epoch-default-vs-1-thread")
        busy = (Job("cnn epoch, default threads, one busy process", [cnn, "--epochs", str(EPOCHS["cnn"]), "--data", data],
                    None, parse_busy),
                Job("cnn epoch, --threads 1, one busy process",
                    [cnn, "--epochs", str(EPOCHS["cnn"]), "--threads", "1", "--data", data], None, parse_busy),
                "dlf-1-thread")

    dead = set()        # a job that could not start (not built with OpenBLAS, say) is not tried again
    for rnd in range(ROUNDS):
        log("round %d of %d" % (rnd + 1, ROUNDS))
        for i, (dj, rj, kern) in enumerate(pairs):
            sides = [("dlf", dj), ("ref", rj)]
            if rnd % 2:
                sides.reverse()
            for side, job in sides:
                if job is None or (side, i) in dead:
                    continue
                if run_job(job, side, res, kern) in (2, 3, 127):
                    dead.add((side, i))
        if busy:
            spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)
                sides = [("dlf", busy[0]), ("ref", busy[1])]
                if rnd % 2:
                    sides.reverse()
                for side, job in sides:
                    run_job(job, side, res, busy[2])
            finally:
                spin.kill()
                spin.wait()

    # Checks: both sides of a gemm must have computed the same product.
    for case, c in res.checks.items():
        if "dlf" in c and "ref" in c and abs(c["dlf"] - c["ref"]) > 1e-3 * abs(c["ref"]) + 1e-6:
            res.note("%s: dlf's and the reference's results differ (sum |C| %.6g vs %.6g)" % (case, c["dlf"], c["ref"]))

    lines, spread, ratios, dlf_medians = [], [], {}, {}
    for case in res.order:
        d, r = res.values[case]["dlf"], res.values[case]["ref"]
        unit = res.units[case]
        dm = statistics.median(d) if d else None
        rm = statistics.median(r) if r else None
        ratio = "%.3f" % (dm / rm) if dm is not None and rm else "n/a"
        ratios[case] = dm / rm if dm is not None and rm else None
        dlf_medians[case] = dm
        lines.append("bench %s dlf=%s%s ref=%s%s ratio=%s ref_kernel=%s" % (
            case, fmt(dm), unit if dm is not None else "", fmt(rm), unit if rm is not None else "", ratio,
            res.ref_kernel.get(case, "n/a") if r else "n/a"))
        if len(d) > 1 or len(r) > 1:
            spread.append("spread %s dlf=%s ref=%s (min..max over %d rounds, %s)" % (
                case, "%s..%s" % (fmt(min(d)), fmt(max(d))) if d else "n/a",
                "%s..%s" % (fmt(min(r)), fmt(max(r))) if r else "n/a", max(len(d), len(r)), unit))
    targets = target_lines(dict(ratios, **{c: v for c, v in dlf_medians.items() if c.startswith("allocs-")}))
    load_end = os.getloadavg()
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    header.append("load average (1 min) at start %.2f, at end %.2f; the run took %.1f minutes" % (
        load_start[0], load_end[0], minutes))

    print("\n".join("# " + h for h in header))
    print("\n".join(lines))
    if targets:
        print("\n".join(targets))
    if spread:
        print("\n".join(spread))
    for n in res.notes:
        print("note: " + n)
    sys.stdout.flush()
    if RESULTS != "-":
        write_results(started, "%s (family %s, model %s)" % (model, family, cpu_model), n_cpus, header, lines,
                      targets, spread, res.notes)
        log("bench.py: wrote this run at the top of %s" % os.path.relpath(RESULTS, ROOT)
            if os.path.abspath(RESULTS).startswith(ROOT) else "bench.py: wrote this run to %s" % RESULTS)
    return 0


def write_results(started, model_name, n_cpus, header, lines, targets, spread, notes):
    title = "## %s: %s, %d CPUs%s" % (started.strftime("%Y-%m-%d %H:%M UTC"), model_name, n_cpus,
                                       " (quick mode: not for comparison)" if QUICK else "")
    body = [title, ""] + ["- " + h for h in header] + ["", "```", *lines, "```", ""]
    if targets:
        body += ["```", *targets, "```", ""]
    if spread:
        body += ["<details><summary>spread over the rounds</summary>", "", "```", *spread, "```", "", "</details>", ""]
    if notes:
        body += ["Notes:", ""] + ["- " + n for n in notes] + [""]
    section = "\n".join(body) + "\n"
    try:
        with open(RESULTS) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmark results\n\n" + MARKER + "\n"
    if MARKER not in text:          # a file of another shape: the marker goes under its title
        m = re.search(r"^# .*\n", text, re.M)
        at = m.end() if m else 0
        text = text[:at] + "\n" + MARKER + "\n\n" + text[at:].lstrip("\n")
    head, tail = text.split(MARKER, 1)
    text = head + MARKER + "\n\n" + section + tail.lstrip("\n")
    with open(RESULTS, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
