"""Cost of an x4 super-resolution image model as the image grows: time and memory of one
``sample`` (T = 0.8) and one ``log_prob`` at 32 .. 512 px (square, batch 1).

The image models are fully convolutional, so one model (built with ``event_shape [None, None, 3]``,
``condition_shape [None, None, 3]``, factor 4; untrained weights, ActNorm initialized on one small
batch) serves every size, and every layer's work is proportional to the number of pixels: time and
memory should grow as ``pixels^a`` with ``a`` close to 1. Anything clearly above 1 at the large sizes
(a layer over flattened pixels, a quadratic condition encoder, a padded copy) is what this script
exists to catch. Each size runs in its own process (its own peak memory, its own graphs):

- ``sample`` and ``log_prob`` are each a ``tf.function`` traced at that size (what a user's graph
  gets): the first call (trace + graph optimization + run) is reported on its own, then the median
  (and min) of ``--calls`` more calls;
- peak RSS: the peak resident set (VmHWM, reset where the kernel allows, else ``ru_maxrss``) over the
  RSS after building the model -- mostly the traced graphs, a size-independent cost; per-call RSS:
  the peak during the timed calls over the RSS before them (freed memory handed back first), the
  memory one call's tensors need;
- the graphs' GFLOP and elements produced, from their static shapes: the work itself, free of
  timing noise (a quadratic op would show as an exponent near 2 here whatever the machine does);
- page faults and system time per call (memory mapped afresh rather than reused: glibc returns
  large freed buffers to the kernel, which zeroes them again on the next call), and the CPU use of
  other processes during the calls (the machine may be shared; a busy neighbour inflates times).
  Allocator settings that change these (``TF_CPU_ALLOCATOR_USE_BFC``, ``GLIBC_TUNABLES``,
  ``LD_PRELOAD``) are recorded with the results.

The exponent ``a`` is the least-squares slope of log(cost) on log(pixels) over the sizes >= 64 px:
at smaller sizes fixed per-call overhead (op dispatch over the graph's ~12k ops) dominates and
flattens the curve, so the fit over all sizes (also reported) underestimates ``a``.

    python bench/image_size_scaling.py [--config training/mnist_super_resolution/caflow.json]
        [--sizes 32 64 128 256 512] [--calls 5] [--out docs/benchmarks/image_size_scaling.json] [--smoke]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import timing  # noqa: E402

FACTOR = 4
CHANNELS = 3
SIZES = (32, 64, 128, 256, 512)
SMOKE_SIZES = (16, 32)
FIT_MIN_SIZE = 64
INIT_SIZE = 32  # ActNorm statistics from a batch of 4 images of this size (the same in every process)
TINY = dict(levels=1, depth=1, width={"condition": 8, "target": 8, "latent": 4})
CONFIGS = ("training/photo_super_resolution/caflow.json", "training/mnist_super_resolution/caflow.json")
ALLOCATOR_ENV = ("TF_CPU_ALLOCATOR_USE_BFC", "GLIBC_TUNABLES", "LD_PRELOAD")  # recorded: they change the results
DEFAULT_OUT = "docs/benchmarks/image_size_scaling.json"
METRICS = ("sample_s", "log_prob_s", "sample_min_s", "log_prob_min_s", "peak_rss_mb", "call_rss_mb", "sample_gflop",
           "log_prob_gflop", "sample_melements", "log_prob_melements")


def default_config() -> str:
    for path in CONFIGS:
        if os.path.exists(os.path.join(ROOT, path)):
            return path
    return CONFIGS[-1]


def model_spec(config: Optional[str], smoke: bool) -> dict:
    """The ``model`` section the benchmark builds: the config's, or the tiny smoke model."""
    if smoke:
        return dict({"class": "CAFlow"}, **TINY)
    with open(config if os.path.isabs(config) else os.path.join(ROOT, config)) as f:
        model = dict(json.load(f)["model"])
    for key in ("event_shape", "condition_shape", "factor"):  # set here: any size, x4
        model.pop(key, None)
    return model


# ---- one size, in its own process ------------------------------------------------------------------
class _Memory:
    """This process's resident set (Linux /proc): current, peak since the last ``reset`` (VmHWM,
    where the kernel lets a process reset it; else ``ru_maxrss``, the peak since start), and
    ``settle``: free memory handed back to the system (``malloc_trim``), so that the next peak
    counts what a computation allocates rather than what an earlier one left cached."""

    def __init__(self):
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None
        self.resettable = self.reset()

    @staticmethod
    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    @staticmethod
    def reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def peak(self) -> float:
        if self.resettable:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def settle(self) -> float:
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        return self.rss()


def _foreign_cores(b0: float, s0: float, wall: float) -> Optional[float]:
    """Other processes' CPU use (cores) since ``timing._busy_total() == b0``, ``_busy_self() == s0``."""
    if wall < 0.5:  # clock ticks are 10 ms: too short to tell
        return None
    return round(max(0.0, (timing._busy_total() - b0) - (timing._busy_self() - s0)) / wall, 2)


def _phase(fn, args: tuple, calls: int, mem: _Memory, base_mb: float, min_wall: float = 1.0,
           max_calls: int = 200) -> tuple:
    """One ``tf.function`` at one input shape: trace, first run, then at least ``calls`` calls
    (more, up to ``max_calls``, until ``min_wall`` seconds have passed: small sizes get enough calls
    for a stable median). Returns (stats, the traced graph):

    - ``trace_s`` (Python tracing), ``first_run_s`` (graph optimization + the first run), ``first_s``
      (their sum: a user's first call), ``median_s``, ``min_s``;
    - ``peak_rss_mb``: the peak resident set over ``base_mb`` (the RSS after building the model),
      trace included: what the process needs;
    - ``call_rss_mb``: the peak during the calls after the first over the settled RSS before them:
      what one call of the traced graph allocates (activations; not the graph);
    - ``foreign_cores``: other processes' CPU use during the calls (a busy neighbour inflates times);
    - ``page_faults_per_call``, ``system_s_per_call``: memory the calls map afresh (and the kernel's
      time zeroing it) rather than reuse."""
    mem.settle()
    mem.reset()
    t = time.perf_counter()
    graph = fn.get_concrete_function(*args).graph
    trace = time.perf_counter() - t
    t = time.perf_counter()
    fn(*args).numpy()
    first_run = time.perf_counter() - t
    peak_first = mem.peak()
    before = mem.settle()
    mem.reset()
    times = []
    b0, s0, w0 = timing._busy_total(), timing._busy_self(), time.perf_counter()
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    while len(times) < calls or (time.perf_counter() - w0 < min_wall and len(times) < max_calls):
        t = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - t)
    foreign = _foreign_cores(b0, s0, time.perf_counter() - w0)
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    peak_calls = mem.peak()
    return dict(trace_s=trace, first_run_s=first_run, first_s=trace + first_run, median_s=statistics.median(times),
                min_s=min(times), calls=len(times), peak_rss_mb=max(peak_first, peak_calls) - base_mb,
                call_rss_mb=(peak_calls - before) if mem.resettable else None, foreign_cores=foreign,
                page_faults_per_call=(u1.ru_minflt - u0.ru_minflt) / len(times),
                system_s_per_call=(u1.ru_stime - u0.ru_stime) / len(times)), graph


def graph_cost(graph) -> dict:
    """Work of a traced graph from its static shapes, free of timing noise: ``gflop`` (TensorFlow's
    float-op count: convolutions, matmuls, element-wise ops) and ``melements`` (millions of elements
    produced by all ops: element-wise work and memory traffic). Both are exactly linear in the
    pixels for a fully convolutional graph, up to the size-independent part (weights, 1x1-conv LU
    products); a layer over flattened pixels would show as an exponent near 2."""
    import numpy as np
    import tensorflow as tf

    prof = tf.compat.v1.profiler
    opts = prof.ProfileOptionBuilder(prof.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    flops = prof.profile(graph, options=opts).total_float_ops
    elements, unknown = 0, 0
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.is_fully_defined():
                elements += int(np.prod(t.shape.as_list()))
            else:
                unknown += 1
    return dict(gflop=flops / 1e9, melements=elements / 1e6, ops=len(graph.get_operations()),
                outputs_of_unknown_shape=unknown)


def _images(size: int, batch: int, seed: int):
    """8-bit targets ``[batch, size, size, 3]`` and their 4x4-area-averaged conditions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch, size, size, CHANNELS)).astype(np.uint8)
    s = size // FACTOR
    c = x.reshape(batch, s, FACTOR, s, FACTOR, CHANNELS).mean(axis=(2, 4)).round().astype(np.uint8)
    return x, c


def measure_size(spec: dict, size: int, calls: int, temperature: float = 0.8, min_wall: float = 1.0) -> dict:
    """Builds the model, then times and measures ``sample`` and ``log_prob`` at ``size`` x ``size``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from tfcflow.config import model_class, validate_model

    keras.utils.set_random_seed(0)
    spec = validate_model(spec)
    model = model_class(spec["class"])(event_shape=[None, None, CHANNELS], condition_shape=[None, None, CHANNELS],
                                       factor=FACTOR, **{k: v for k, v in spec.items() if k != "class"})
    model.initialize(*_images(max(INIT_SIZE, 2 ** model.levels), 4, seed=0))
    x, c = (tf.constant(a) for a in _images(size, 1, seed=1))
    mem = _Memory()
    base = mem.settle()
    if not mem.resettable:
        base = max(base, mem.peak())  # ru_maxrss cannot be reset: count only what exceeds the peak so far

    sample = tf.function(lambda ci: model.sample(ci, temperature=temperature, seed=0))
    s, sample_graph = _phase(sample, (c,), calls, mem, base, min_wall)
    out = sample(c).numpy()
    if out.shape != (1, size, size, CHANNELS) or not np.all(np.isfinite(out)):
        raise RuntimeError(f"sample at {size} px: shape {out.shape}, finite {np.all(np.isfinite(out))}")
    log_prob = tf.function(model.log_prob)
    lp, log_prob_graph = _phase(log_prob, (x, c), calls, mem, base, min_wall)
    value = float(log_prob(x, c).numpy()[0])
    if not math.isfinite(value):
        raise RuntimeError(f"log_prob at {size} px is {value}")
    s["graph"], lp["graph"] = graph_cost(sample_graph), graph_cost(log_prob_graph)
    return dict(size=size, pixels=size * size, sample=s, log_prob=lp, sample_s=s["median_s"],
                log_prob_s=lp["median_s"], sample_min_s=s["min_s"], log_prob_min_s=lp["min_s"],
                peak_rss_mb=max(s["peak_rss_mb"], lp["peak_rss_mb"]),
                call_rss_mb=None if not mem.resettable else max(s["call_rss_mb"], lp["call_rss_mb"]),
                sample_gflop=s["graph"]["gflop"], log_prob_gflop=lp["graph"]["gflop"],
                sample_melements=s["graph"]["melements"], log_prob_melements=lp["graph"]["melements"],
                rss_after_build_mb=base, peak_resettable=mem.resettable,
                bits_per_dim=-value / (size * size * CHANNELS * math.log(2)),
                parameters=int(sum(np.prod(v.shape) for v in model.trainable_weights)))


def run_size(spec: dict, size: int, calls: int, temperature: float, min_wall: float, timeout: float = 1200) -> dict:
    """``measure_size`` in a fresh process (its own peak memory and traced graphs)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(size), "--spec", json.dumps(spec),
           "--calls", str(calls), "--temperature", repr(temperature), "--min-wall", repr(min_wall)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"size {size} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["process_s"] = time.perf_counter() - t
    return r


# ---- the fit and the report ------------------------------------------------------------------------
def fit_exponent(pixels: Sequence[float], values: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(value) on log(pixels) (None with fewer than 2 usable points)."""
    pts = [(math.log(p), math.log(v)) for p, v in zip(pixels, values) if v is not None and math.isfinite(v) and v > 0]
    if len({p for p, _ in pts}) < 2:
        return None
    mx = sum(p for p, _ in pts) / len(pts)
    my = sum(v for _, v in pts) / len(pts)
    return sum((p - mx) * (v - my) for p, v in pts) / sum((p - mx) ** 2 for p, _ in pts)


def exponents(rows: Sequence[dict], min_size: int) -> dict:
    """``{"large": {metric: a}, "all": {metric: a}}``: fits over sizes >= ``min_size`` and over all."""
    out = {}
    for name, use in (("large", [r for r in rows if r["size"] >= min_size]), ("all", list(rows))):
        out[name] = {m: fit_exponent([r["pixels"] for r in use], [r[m] for r in use]) for m in METRICS}
        out[name]["sizes"] = [r["size"] for r in use]
    return out


def _fmt(a: Optional[float]) -> str:
    return "n/a" if a is None else f"{a:.2f}"


FIT_COLUMNS = (("sample time", "sample_s"), ("log-prob time", "log_prob_s"), ("sample min time", "sample_min_s"),
               ("log-prob min time", "log_prob_min_s"), ("peak RSS", "peak_rss_mb"), ("per-call RSS", "call_rss_mb"),
               ("sample GFLOP", "sample_gflop"), ("log-prob GFLOP", "log_prob_gflop"),
               ("sample graph elements", "sample_melements"), ("log-prob graph elements", "log_prob_melements"))


def table(rows: Sequence[dict], fits: dict) -> str:
    lines = ["| size px | pixels | sample s | log-prob s | sample s/MP | log-prob s/MP | 1st sample s | "
             "1st log-prob s | peak RSS MB | per-call RSS MB | sample GFLOP | log-prob GFLOP | page faults per call "
             "(k) | other procs' cores |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mp = r["pixels"] / 1e6
        foreign = [v for v in (r["sample"]["foreign_cores"], r["log_prob"]["foreign_cores"]) if v is not None]
        call = "n/a" if r["call_rss_mb"] is None else f"{r['call_rss_mb']:.0f}"
        lines.append(f"| {r['size']} | {r['pixels']} | {r['sample_s']:.3f} | {r['log_prob_s']:.3f} | "
                     f"{r['sample_s'] / mp:.2f} | {r['log_prob_s'] / mp:.2f} | {r['sample']['first_s']:.1f} | "
                     f"{r['log_prob']['first_s']:.1f} | {r['peak_rss_mb']:.0f} | {call} | {r['sample_gflop']:.2f} | "
                     f"{r['log_prob_gflop']:.2f} | {r['sample']['page_faults_per_call'] / 1e3:.0f} / "
                     f"{r['log_prob']['page_faults_per_call'] / 1e3:.0f} | {max(foreign) if foreign else 'n/a'} |")
    lines += ["", "Exponent a of cost ∝ pixels^a (least squares on log-log):", "",
              "| fit over sizes | " + " | ".join(name for name, _ in FIT_COLUMNS) + " |",
              "|---" * (len(FIT_COLUMNS) + 1) + "|"]
    for name in ("large", "all"):
        f = fits[name]
        label = ", ".join(str(s) for s in f["sizes"]) or "none"
        label += f" (>= {FIT_MIN_SIZE} px)" if name == "large" else " (all)"
        lines.append(f"| {label} | " + " | ".join(_fmt(f[key]) for _, key in FIT_COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help=f"training config whose model section is built (default: the "
                                                  f"first of {', '.join(CONFIGS)} that exists)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help=f"square sizes in px (default {SIZES})")
    p.add_argument("--calls", type=int, default=None, help="timed calls per measurement after the first "
                                                           "(default 5; smoke 2)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--out", default=None, help=f"JSON results, the markdown table next to it (.md); default "
                                               f"{DEFAULT_OUT} (smoke: none)")
    p.add_argument("--smoke", action="store_true", help=f"tiny model, sizes {SMOKE_SIZES} (CI)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    p.add_argument("--min-wall", type=float, default=1.0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    calls = a.calls or (2 if a.smoke else 5)
    if a.worker is not None:  # one size, in this process: print its JSON line
        r = measure_size(json.loads(a.spec), a.worker, calls, a.temperature, a.min_wall)
        print(json.dumps(r), flush=True)
        return r

    config = None if a.smoke else (a.config or default_config())
    spec = model_spec(config, a.smoke)
    sizes = a.sizes or (SMOKE_SIZES if a.smoke else SIZES)
    levels = spec.get("levels", 3)
    for s in sizes:
        if s % FACTOR or s % 2 ** levels:
            raise SystemExit(f"size {s} must be divisible by the factor {FACTOR} and by 2^levels = {2 ** levels}")
    rows = []
    for s in sizes:
        rows.append(run_size(spec, s, calls, a.temperature, 0.0 if a.smoke else 1.0))
        r = rows[-1]
        print(f"{s} px: sample {r['sample_s']:.3f} s (first {r['sample']['first_s']:.1f} s), log_prob "
              f"{r['log_prob_s']:.3f} s (first {r['log_prob']['first_s']:.1f} s), peak RSS +{r['peak_rss_mb']:.0f} MB",
              flush=True)
    fits = exponents(rows, FIT_MIN_SIZE)
    text = table(rows, fits)
    command = "python bench/image_size_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res = dict(config=config, model=spec, factor=FACTOR, batch=1, temperature=a.temperature, calls=calls,
               fit_min_size=FIT_MIN_SIZE, exponents=fits, rows=rows, table=text, command=command.strip(),
               machine=dict(cpus=os.cpu_count(), processor=platform.processor() or platform.machine()),
               allocator_env={k: v for k, v in os.environ.items() if k in ALLOCATOR_ENV or k.startswith("MALLOC_")})
    print(text)
    out = a.out or (None if a.smoke else DEFAULT_OUT)
    if out:
        out = out if os.path.isabs(out) else os.path.join(ROOT, out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.splitext(out)[0] + ".md", "w") as f:
            f.write(f"# Cost vs image size: x4 super-resolution {spec['class']}\n\n"
                    f"Model: the `model` section of `{config or 'smoke (tiny)'}` built for any size "
                    f"(event_shape [None, None, 3], factor 4), untrained; batch 1, sample at T = {a.temperature}; "
                    f"times are the median of {calls} calls after a first (tracing) call, each size in a fresh "
                    f"process; peak RSS is the increase over the RSS after building the model (mostly the traced "
                    f"graphs), per-call RSS what one call's tensors add; GFLOP from the traced graphs' static "
                    f"shapes. {res['machine']['cpus']} CPU cores"
                    + (f"; allocator settings {res['allocator_env']}" if res["allocator_env"] else "")
                    + f". See the module docstring of bench/image_size_scaling.py.\n\n`{res['command']}`\n\n{text}\n")
    return res


if __name__ == "__main__":
    main()
