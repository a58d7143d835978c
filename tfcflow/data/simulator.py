"""Training data for simulation-based inference: parameters x from a prior, observations y from a
simulator. A flow trained on the pairs ``(x, y)`` (x the target, y the condition) learns the
posterior p(x | y).

The one contract for user functions::

    prior(n: int, rng: numpy.random.Generator) -> x [n, D]
    simulator(x: float32 [n, D], rng: numpy.random.Generator) -> y [n, *obs_shape]

- All randomness comes from ``rng`` (never from global state), so the same seed gives the same
  arrays in any process. The simulator gets a copy of x, so changing it in place is harmless.
- Outputs may be anything numeric that ``numpy.asarray`` accepts; an eager ``tf.Tensor`` is
  converted with ``.numpy()``. Both are stored as float32 (a float64 value too large for float32
  becomes inf and is treated as non-finite).
- TensorFlow functions follow the same contract: they run eagerly and draw with stateless ops
  from a seed taken from ``rng``, e.g. ``tf.random.stateless_normal(shape, seed=rng.integers(0,
  2**31 - 1, size=2))``.
- Each call is checked: a wrong shape, a wrong number of rows or a non-numeric result raises a
  ValueError naming the function; so does NaN/inf (``on_nonfinite="raise"``, the default), with
  the global row number and its parameters x. ``on_nonfinite="drop"`` drops such simulator rows
  and logs how many (a NaN/inf prior draw is always an error).

Random streams: rows are drawn in chunks; chunk i (rows ``[i*c, (i+1)*c)``, ``c = chunk_size``)
uses ``numpy.random.default_rng([seed, i])`` for its prior and then its simulator call. So arrays
depend on ``(seed, chunk_size)`` only -- never on memory or on how many chunks are asked for --
and a larger budget extends a smaller one chunk by chunk. Fresh-simulation batches are chunks of
``batch_size`` rows: batch k depends only on ``(seed, k)``, which is what resuming with
``dataset.skip(k)`` relies on.

Functions are named ``module.qualname`` in messages and in cache keys (``load_callable`` resolves
the dotted paths that configs give as ``data.prior`` / ``data.simulator``).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfcflow._checks import check_positive_int

Prior = Callable[[int, np.random.Generator], Any]
Simulator = Callable[[np.ndarray, np.random.Generator], Any]
Arrays = Tuple[np.ndarray, np.ndarray]

CHUNK_SIZE = 1000  # rows per prior/simulator call in `simulate`; part of a stream's identity
ON_NONFINITE = ("raise", "drop")
MAX_REFILLS = 100  # fresh mode, "drop": re-draws allowed to fill one batch
_log = logging.getLogger(__name__)


def function_name(fn: Callable) -> str:
    """``module.qualname`` of ``fn`` (the type's for callable objects)."""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _check_mode(on_nonfinite: str) -> str:
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
    return on_nonfinite


def _to_array(value, fn: Callable, role: str) -> np.ndarray:
    if hasattr(value, "numpy"):  # an eager tf.Tensor
        value = value.numpy()
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise ValueError(f"{role} {function_name(fn)!r} must return a numeric array, got {type(value).__name__}: "
                         f"{e}") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{role} {function_name(fn)!r} must return a numeric array, got dtype {a.dtype} "
                         f"({type(value).__name__})")
    return a.astype(np.float32)


def _bad_rows(a: np.ndarray) -> np.ndarray:
    """``[n]`` bool: rows of ``a`` holding NaN or inf."""
    return ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)


def _check_rows(shapes: Dict[str, tuple], key: str, fn: Callable, a: np.ndarray, first_row: int) -> None:
    """Every call must give rows of the shape the first call gave."""
    want = shapes.setdefault(key, a.shape[1:])
    if a.shape[1:] != want:
        raise ValueError(f"{function_name(fn)!r} returned rows of shape {list(a.shape[1:])} for rows {first_row}.."
                         f"{first_row + len(a) - 1}, but rows of shape {list(want)} before")


def _draw(prior: Prior, simulator: Simulator, n: int, rng: np.random.Generator, first_row: int,
          shapes: Dict[str, tuple], on_nonfinite: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One checked prior + simulator call of ``n`` rows: ``(x [n, D], y [n, *obs], bad [n] bool)``.

    ``shapes`` holds the per-row shapes seen so far (filled by the first call); ``first_row`` is the
    global number of row 0 (for messages)."""
    x = _to_array(prior(n, rng), prior, "prior")
    if x.ndim != 2 or len(x) != n:
        raise ValueError(f"prior {function_name(prior)!r} must return x of shape [n, D] with n={n} rows, got shape "
                         f"{list(x.shape)}")
    _check_rows(shapes, "x", prior, x, first_row)
    bad = _bad_rows(x)
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"prior {function_name(prior)!r} returned NaN or inf in row {first_row + j}: "
                         f"x = {x[j].tolist()}")
    return (x, *_run(simulator, x, rng, first_row, shapes, on_nonfinite))


def _run(simulator: Simulator, x: np.ndarray, rng: np.random.Generator, first_row: int, shapes: Dict[str, tuple],
         on_nonfinite: str) -> Tuple[np.ndarray, np.ndarray]:
    """One checked simulator call on the parameters ``x [n, D]``: ``(y [n, *obs], bad [n] bool)``."""
    n = len(x)
    y = _to_array(simulator(x.copy(), rng), simulator, "simulator")
    if y.ndim < 1 or len(y) != n:
        raise ValueError(f"simulator {function_name(simulator)!r} must return y of shape [n, *obs_shape] with one row "
                         f"per row of x {list(x.shape)}, got shape {list(y.shape)}")
    _check_rows(shapes, "y", simulator, y, first_row)
    bad = _bad_rows(y)
    if bad.any() and on_nonfinite == "raise":
        j = int(np.argmax(bad))
        raise ValueError(f"simulator {function_name(simulator)!r} returned NaN or inf in row {first_row + j} "
                         f"(x = {x[j].tolist()}; {int(bad.sum())} of this call's {n} rows are bad); pass "
                         f"on_nonfinite='drop' to drop such rows")
    return y, bad


def simulate(prior: Prior, simulator: Simulator, n: int, seed: int, *, chunk_size: int = CHUNK_SIZE,
             on_nonfinite: str = "raise") -> Arrays:
    """``n`` simulations ``(x float32 [n, D], y float32 [n, *obs_shape])``, a function of
    ``(seed, chunk_size)`` (see the module docstring). With ``on_nonfinite="drop"`` rows whose y
    holds NaN/inf are left out (fewer than n rows come back; the count is logged)."""
    n, chunk_size = check_positive_int(n, "n"), check_positive_int(chunk_size, "chunk_size")
    seed, on_nonfinite = _check_seed(seed), _check_mode(on_nonfinite)
    xs, ys, shapes = [], [], {}
    for i, start in enumerate(range(0, n, chunk_size)):
        x, y, bad = _draw(prior, simulator, min(chunk_size, n - start), np.random.default_rng([seed, i]), start,
                          shapes, on_nonfinite)
        xs.append(x[~bad])
        ys.append(y[~bad])
    return _kept_rows(xs, ys, n, simulator)


def _kept_rows(xs: list, ys: list, n: int, simulator: Simulator) -> Arrays:
    """The chunks' kept rows joined; the rows dropped for NaN / inf are logged, all ``n`` an error."""
    dropped = n - sum(len(a) for a in xs)
    if dropped:
        _log.warning("simulator %r returned NaN or inf in %d of %d rows; dropped them", function_name(simulator),
                     dropped, n)
        if dropped == n:
            raise ValueError(f"simulator {function_name(simulator)!r} returned NaN or inf in all {n} rows")
    return np.concatenate(xs), np.concatenate(ys)


def simulate_at(x: np.ndarray, simulator: Simulator, seed, *, chunk_size: int = CHUNK_SIZE,
                on_nonfinite: str = "raise") -> Arrays:
    """The simulations of given parameters ``x [n, D]`` (e.g. drawn from a posterior, in
    sequential rounds): ``(x, y)`` as ``simulate`` returns them (rows of non-finite y left out
    with ``on_nonfinite="drop"``), chunk i's generator seeded by ``[*seed, i]``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"x must be parameters [n, D] with n >= 1, got shape {list(x.shape)}")
    seed = [int(s) for s in np.atleast_1d(seed)]
    chunk_size, on_nonfinite = check_positive_int(chunk_size, "chunk_size"), _check_mode(on_nonfinite)
    xs, ys, shapes = [], [], {}
    for i, start in enumerate(range(0, len(x), chunk_size)):
        part = x[start:start + chunk_size]
        y, bad = _run(simulator, part, np.random.default_rng([*seed, i]), start, shapes, on_nonfinite)
        xs.append(part[~bad])
        ys.append(y[~bad])
    return _kept_rows(xs, ys, len(x), simulator)


def cache_path(cache_dir: str, prior: Prior, simulator: Simulator, n: int, seed: int, *,
               chunk_size: int = CHUNK_SIZE, on_nonfinite: str = "raise") -> str:
    """``cache_dir/simulations-<hash>.npz``, the hash from the function names and the stream's
    settings. The names stand for the code: delete the file after changing what a function does."""
    key = _cache_key(prior, simulator, n, seed, chunk_size, on_nonfinite)
    return os.path.join(cache_dir, f"simulations-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")


def _cache_key(prior, simulator, n, seed, chunk_size, on_nonfinite) -> str:
    return json.dumps(dict(prior=function_name(prior), simulator=function_name(simulator), n=int(n), seed=int(seed),
                           chunk_size=int(chunk_size), on_nonfinite=on_nonfinite), sort_keys=True)


def simulated_arrays(prior: Prior, simulator: Simulator, n: int, seed: int, *, cache_dir: Optional[str] = None,
                     chunk_size: int = CHUNK_SIZE, on_nonfinite: str = "raise") -> Arrays:
    """``simulate(...)``, read from / written to ``cache_path(cache_dir, ...)`` when ``cache_dir``
    is given (so a resumed job does not simulate again). Also what held-out test data is: the
    same functions with a seed of its own."""
    if cache_dir is None:
        return simulate(prior, simulator, n, seed, chunk_size=chunk_size, on_nonfinite=on_nonfinite)
    path = cache_path(cache_dir, prior, simulator, n, seed, chunk_size=chunk_size, on_nonfinite=on_nonfinite)
    key = _cache_key(prior, simulator, n, seed, chunk_size, on_nonfinite)
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                if str(f["key"]) == key:
                    return f["x"], f["y"]
        except Exception as e:  # any unreadable file gets the same advice
            raise ValueError(f"cannot read the simulation cache {path!r} ({type(e).__name__}: {e}); delete it") \
                from None
        raise ValueError(f"the simulation cache {path!r} holds other simulations; delete it")
    x, y = simulate(prior, simulator, n, seed, chunk_size=chunk_size, on_nonfinite=on_nonfinite)
    os.makedirs(cache_dir, exist_ok=True)
    # write a temporary file and rename it: a killed job or a concurrent worker never leaves a half file
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".simulations-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y, key=np.array(key))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return x, y


def simulation_dataset(prior: Prior, simulator: Simulator, *, batch_size: int, seed: int,
                       budget: Optional[int] = None, cache_dir: Optional[str] = None, shuffle: bool = True,
                       chunk_size: int = CHUNK_SIZE, on_nonfinite: str = "raise",
                       first_batch: int = 0) -> tf.data.Dataset:
    """An endless ``tf.data.Dataset`` of ``(x float32 [batch_size, D], y float32 [batch_size,
    *obs_shape])`` batches (static shapes).

    - ``budget=N``: N simulations made once (``simulated_arrays``: cached in ``cache_dir`` if
      given), then epochs of them, each in the order of a permutation drawn from ``(seed, epoch)``
      (or in simulation order with ``shuffle=False``); batches run across epoch boundaries.
    - ``budget=None``: fresh simulations, batch k from ``default_rng([seed, k])`` alone. With
      ``"drop"`` a batch is topped up from ``default_rng([seed, k, j])``, j = 1, 2, ...

    Either way batch k depends only on the arguments and k, so ``dataset.skip(k)`` continues
    exactly where a job that consumed k batches stopped. ``skip`` still makes the k skipped
    batches (in fresh mode: simulates them); ``first_batch=k`` gives the same batches without
    making the skipped ones (fresh mode only).

    The fresh mode runs the user functions in tf.data's threads (``tf.numpy_function``); batch
    ``first_batch`` is simulated here first, so broken functions fail before training starts, and a
    later failure reaches the consumer as ``tf.errors.InvalidArgumentError`` with the ValueError's
    message.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    seed, on_nonfinite = _check_seed(seed), _check_mode(on_nonfinite)
    if isinstance(first_batch, bool) or not isinstance(first_batch, (int, np.integer)) or first_batch < 0:
        raise ValueError(f"first_batch must be an integer >= 0, got {first_batch!r}")
    options = tf.data.Options()
    options.deterministic = True
    if budget is not None:
        if first_batch:
            raise ValueError("first_batch is for fresh simulations (budget=None); use dataset.skip(k) with a budget")
        budget = check_positive_int(budget, "budget")
        x, y = simulated_arrays(prior, simulator, budget, seed, cache_dir=cache_dir, chunk_size=chunk_size,
                                on_nonfinite=on_nonfinite)
        n = len(x)
        if n < batch_size:
            raise ValueError(f"a budget of {n} simulation(s) cannot fill one batch of batch_size={batch_size}")
        xt, yt = tf.constant(x), tf.constant(y)

        def epoch_order(epoch):
            rows = tf.range(n, dtype=tf.int64)
            if not shuffle:
                return rows
            # stateless: the order depends on (seed, epoch) only, not on TF's global seed
            return tf.random.experimental.stateless_shuffle(rows, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))

        ds = (tf.data.Dataset.counter().map(epoch_order).unbatch().batch(batch_size, drop_remainder=True)
              .map(lambda rows: (tf.gather(xt, rows), tf.gather(yt, rows))))
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    shapes: Dict[str, tuple] = {}
    warned = []

    def fresh_batch(k: int) -> Arrays:
        x, y, bad = _draw(prior, simulator, batch_size, np.random.default_rng([seed, k]), k * batch_size, shapes,
                          on_nonfinite)
        if bad.any():
            (_log.debug if warned else _log.warning)(
                "simulator %r returned NaN or inf in %d of batch %d's %d rows; drawing replacements%s",
                function_name(simulator), int(bad.sum()), k, batch_size, "" if warned else
                " (further drops are logged at DEBUG level)")
            warned.append(k)
            xs, ys = [x[~bad]], [y[~bad]]
            for j in range(1, MAX_REFILLS + 1):
                missing = batch_size - sum(len(v) for v in xs)
                if not missing:
                    break
                x, y, bad = _draw(prior, simulator, missing, np.random.default_rng([seed, k, j]), k * batch_size,
                                  shapes, on_nonfinite)
                xs.append(x[~bad])
                ys.append(y[~bad])
            else:
                raise ValueError(f"simulator {function_name(simulator)!r} returned NaN or inf so often that "
                                 f"{MAX_REFILLS} re-draws did not fill batch {k}")
            x, y = np.concatenate(xs), np.concatenate(ys)
        return x, y

    probe = fresh_batch(first_batch)  # checks the functions now and fixes the static shapes

    def numpy_batch(k) -> Arrays:
        k = int(k)
        return probe if k == first_batch else fresh_batch(k)

    def make(k):
        x, y = tf.numpy_function(numpy_batch, [k], (tf.float32, tf.float32), stateful=False)
        x.set_shape(probe[0].shape)
        y.set_shape(probe[1].shape)
        return x, y

    ds = tf.data.Dataset.counter(start=first_batch).map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def load_callable(path: str, base_dir: Optional[str] = None) -> Callable:
    """The function named by ``path``: ``"package.module:function"``, ``"package.module.function"``
    or ``"path/to/file.py:function"`` (a relative file path is taken from ``base_dir``, e.g. the
    config file's folder, else from the working directory). After the colon a dotted attribute
    path (``Class.method``) works too. Errors are ValueErrors that quote ``path``."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"expected a dotted path such as 'package.module:function', got {path!r}")
    target, sep, attr = path.strip().rpartition(":")
    if not sep:
        target, _, attr = path.strip().rpartition(".")
    if not target or not attr:
        raise ValueError(f"{path!r} is not 'package.module:function', 'package.module.function' or "
                         f"'path/to/file.py:function'")
    if target.endswith(".py"):
        module = _load_file(target, base_dir, path)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name and (target == e.name or target.startswith(e.name + ".")):
                raise ValueError(f"cannot load {path!r}: no module named {target!r}") from None
            raise ValueError(f"cannot load {path!r}: importing module {target!r} failed: {e}") from e
        except Exception as e:  # an error in the module's own code
            raise ValueError(f"cannot load {path!r}: importing module {target!r} failed: "
                             f"{type(e).__name__}: {e}") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"cannot load {path!r}: module {target!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"cannot load {path!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return obj


def _load_file(file: str, base_dir: Optional[str], path: str):
    full = os.path.abspath(os.path.join(base_dir or "", os.path.expanduser(file)))
    if not os.path.isfile(full):
        raise ValueError(f"cannot load {path!r}: file {full!r} does not exist")
    # one stable module name per file: its functions keep the same names (cache keys) in every run
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(full))[0])
    name = f"tfcflow_user_{stem}_{hashlib.sha256(full.encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, full)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # an error in the file's own code
        del sys.modules[name]
        raise ValueError(f"cannot load {path!r}: running {full!r} failed: {type(e).__name__}: {e}") from e
    return module
