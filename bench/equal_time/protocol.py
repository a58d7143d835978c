"""The protocol every contestant of the equal-time benchmark follows (framework-free: numpy only,
imported by the TensorFlow and the PyTorch contestants alike).

Data: real MNIST from the four IDX files, the 60,000 training and 10,000 test digits, zero-padded
from 28x28 to 32x32 (2 pixels of value 0 on every side; Glow's own MNIST loader pads the same way)
so that L = 3 squeezes fit. Bits/dim count all 32 x 32 = 1,024 dims of the padded image.
Super-resolution: the condition is the padded image's 4x4 block means rounded to 8 bits, 8x8x1.

Measure: the dequantization bound of the discrete log-likelihood, in bits per dim,

    bits/dim = -(log p(x + u) - D log 256) / (D log 2),   u ~ U[0, 1)^D with a fixed seed,

where p is the flow's density of y = (x + u) / 256 - 0.5 (the -D log 256 is the change of variables
from y back to the 8-bit scale): the figure flow papers report for 8-bit images.

Schedule: one warm-up training step (tracing / first-call cost, timed but excluded), then training
until ``seconds`` of wall time are spent, the clock paused while the test curve is taken (a
2,000-digit subset after the warm-up step and at 20/40/60/80% of the budget); then all test digits.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import platform
import struct
import sys
import time
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SIZE, CHANNELS, PAD = 32, 1, 2            # 28x28 MNIST padded by 2 zero pixels per side
LEVELS, DEPTH, HIDDEN = 3, 8, 64           # the peers' architecture (../shared/bench/peers/common.py)
BATCH, LR = 32, 1e-3                       # the peers' training batch and Adam learning rate
SR_FACTOR = 4                              # super-resolution: 8x8 condition -> 32x32 target
ENCODER_WIDTH = 16                         # condition encoder channels (bench/glow_bench.py's cond_image)
EVAL_BATCH = 100
CURVE_DIGITS = 2000                        # test digits of each checkpoint on the curve
CHECKPOINTS = (0.2, 0.4, 0.6, 0.8)         # fractions of the budget with a curve point
SMOKE = dict(levels=2, depth=1, hidden=8, test_digits=200, curve_digits=100)
GLOW_MNIST_BPD = 1.05                      # Glow (Kingma & Dhariwal 2018), Table 2
PARTS = ("mnist", "sr")


def mnist_dir() -> str:
    """The folder of the four MNIST IDX .gz files: $EQUAL_TIME_MNIST, else shared/data/mnist beside
    the repository, else /work/shared/data/mnist."""
    for d in (os.environ.get("EQUAL_TIME_MNIST"), os.path.join(ROOT, "..", "shared", "data", "mnist"),
              "/work/shared/data/mnist"):
        if d and os.path.exists(os.path.join(d, "t10k-images-idx3-ubyte.gz")):
            return os.path.abspath(d)
    raise FileNotFoundError("MNIST IDX files not found: set EQUAL_TIME_MNIST to their folder")


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip'ed or not) as a numpy array of its declared shape (uint8 data only)."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(folder: Optional[str] = None) -> tuple:
    """(train [60000, 32, 32, 1], test [10000, 32, 32, 1]) uint8, zero-padded NHWC."""
    folder = folder or mnist_dir()

    def images(name):
        x = read_idx(os.path.join(folder, name))
        return np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))[..., None]

    return images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")


def low_resolution(x: np.ndarray, factor: int = SR_FACTOR) -> np.ndarray:
    """uint8 [n, H, W, C] -> its ``factor`` x ``factor`` block means rounded to uint8 [n, H/f, W/f, C]."""
    n, h, w, c = x.shape
    blocks = x.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def bits_per_dim(log_prob_y: np.ndarray, dims: int) -> np.ndarray:
    """Bits/dim of 8-bit images from log p(y) (nats) of y = (x + u) / 256 - 0.5: adds -D log 256."""
    return -(np.asarray(log_prob_y, np.float64) - dims * math.log(256.0)) / (dims * math.log(2.0))


def checkpoint_times(seconds: float) -> list:
    """Training-clock times of the curve points after the warm-up point."""
    return [f * seconds for f in CHECKPOINTS]


def eval_seed(batch_index: int) -> int:
    """The dequantization-noise seed of test batch ``batch_index`` (batches of EVAL_BATCH in test order,
    so the curve's subset sees the same noise as the final figure's first digits)."""
    return 1000 + batch_index


def _busy_total() -> float:
    v = [int(t) for t in open("/proc/stat").readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def _busy_self() -> float:
    f = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def foreign_cores(dt: float = 1.0) -> float:
    """The mean number of cores other processes used over ``dt`` seconds (this one sleeps)."""
    t0, s0 = _busy_total(), _busy_self()
    time.sleep(dt)
    return max(0.0, (_busy_total() - t0) - (_busy_self() - s0)) / dt


def wait_idle(max_wait: float, threshold: float = 0.1) -> dict:
    """Waits up to ``max_wait`` seconds for other processes to use < ``threshold`` cores."""
    t = time.time()
    while True:
        f = foreign_cores(1.0)
        if f < threshold or time.time() - t >= max_wait:
            return dict(waited_s=round(time.time() - t, 1), foreign_cores_at_start=round(f, 3))
        time.sleep(4)


class TrainClock:
    """Wall time of the training segments only (paused while evaluating), and the CPU time other
    processes used meanwhile (the machine is shared: a contestant that ran beside another job had
    less than the machine)."""

    def __init__(self):
        self.elapsed_before = 0.0
        self.foreign_cpu_s = 0.0
        self._t = None

    def start(self) -> None:
        self._t, self._b, self._s = time.perf_counter(), _busy_total(), _busy_self()

    def pause(self) -> None:
        if self._t is not None:
            self.elapsed_before += time.perf_counter() - self._t
            self.foreign_cpu_s += max(0.0, (_busy_total() - self._b) - (_busy_self() - self._s))
            self._t = None

    @property
    def running(self) -> bool:
        return self._t is not None

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t if self._t is not None else 0.0)


class Curve:
    """When to take the next test-curve point, and the points taken."""

    def __init__(self, seconds: float):
        self.pending = checkpoint_times(seconds)
        self.points = []

    def due(self, elapsed: float) -> bool:
        return bool(self.pending) and elapsed >= self.pending[0]

    def add(self, elapsed: float, steps: int, bpd: float, eval_s: float) -> None:
        while self.pending and elapsed >= self.pending[0]:
            self.pending.pop(0)
        self.points.append(dict(train_s=round(elapsed, 2), steps=steps, test_bpd_subset=float(bpd),
                                eval_s=round(eval_s, 2)))
        print(f"  t={elapsed:7.1f}s step {steps:6d}: test bits/dim (subset) {bpd:.4f}", flush=True)


def base_result(part: str, contestant: str, seconds: float, smoke: bool, test_digits: int) -> dict:
    return dict(part=part, contestant=contestant, seconds_budget=seconds, smoke=smoke, test_digits=test_digits,
                python=platform.python_version(), numpy=np.__version__, command=" ".join([sys.executable] + sys.argv),
                cpu_count=os.cpu_count(), started=time.strftime("%Y-%m-%d %H:%M:%S"))


def finish(res: dict, clock: TrainClock, steps: int, timed_steps: int, curve: Curve, final: np.ndarray,
           curve_digits: int) -> dict:
    """Fills the training and test figures into ``res``; ``final`` is the per-digit bits/dim of the
    test digits in order (its first ``curve_digits`` give the curve's last point)."""
    train_s = clock.elapsed
    res.update(steps=steps, timed_steps=timed_steps, train_s=round(train_s, 2),
               images_per_s=round(timed_steps * BATCH / train_s, 2) if train_s > 0 else None,
               foreign_cpu_s=round(clock.foreign_cpu_s, 1),
               foreign_cores=round(clock.foreign_cpu_s / train_s, 3) if train_s > 0 else None,
               test_bpd=float(np.mean(final)), test_bpd_sem=float(np.std(final) / math.sqrt(len(final))),
               test_bpd_finite=bool(np.all(np.isfinite(final))))
    curve.points.append(dict(train_s=round(train_s, 2), steps=steps,
                             test_bpd_subset=float(np.mean(final[:curve_digits])), eval_s=None))
    res["curve"] = curve.points
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return res


def dump(res: dict, path: Optional[str]) -> dict:
    text = json.dumps(res, indent=1)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    print(json.dumps({k: v for k, v in res.items() if k != "curve"}))
    return res


def add_common_args(p) -> None:
    p.add_argument("--part", default="mnist", choices=PARTS)
    p.add_argument("--seconds", type=float, default=600.0, help="training wall time after the warm-up step")
    p.add_argument("--test-digits", type=int, default=None, help="test digits of the final figure (default all)")
    p.add_argument("--smoke", action="store_true", help="a tiny model and test subset (CI)")
    p.add_argument("--out", default=None)


def sizes(a) -> dict:
    """The architecture and test sizes a run uses (the smoke run's are tiny)."""
    if a.smoke:
        s = dict(SMOKE)
    else:
        s = dict(levels=LEVELS, depth=DEPTH, hidden=HIDDEN, test_digits=10000, curve_digits=CURVE_DIGITS)
    if a.test_digits is not None:
        s["test_digits"] = a.test_digits
    s["curve_digits"] = min(s["curve_digits"], s["test_digits"])
    return s


INIT_DIGITS = 256                          # training digits of the data-dependent (ActNorm) initialization


def init_indices(n_train: int) -> np.ndarray:
    """The training digits every contestant initializes on (the same for all)."""
    return np.random.default_rng(1).permutation(n_train)[:INIT_DIGITS]
