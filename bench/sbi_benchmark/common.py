"""Names, paths and small helpers shared by the SBI benchmark scripts.

Standard library only (numpy is imported inside the functions that need it), so that run.py can
import this module from any Python, and the workers from either virtual environment.

Layout of an output folder ``OUT``:

    OUT/cache/<task>.npz                     simulations, observations, reference samples (simulate.py)
    OUT/samples/<task>__<contestant>.npz     posterior samples [observations, samples, D] (peers.py, ours.py)
    OUT/samples/<task>__<contestant>.json    training/sampling times, settings, versions, command
    OUT/results/<task>__<contestant>.json    the above + C2ST per observation and its mean (score.py)
    OUT/summary.md                           the table (run.py)
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

TASKS = ("two_moons", "slcp", "gaussian_linear", "bernoulli_glm", "gaussian_mixture")
#: ``tfcflow.inference.NPE`` with its defaults, one contestant per seed (the headline row is their mean)
NPE_SEEDS = (0, 1, 2)
NPE = tuple("tfcflow_npe" if s == 0 else f"tfcflow_npe_seed{s}" for s in NPE_SEEDS)
#: the explorations: flow models with per-task settings (chosen on the scored observations)
EXPLORATIONS = ("tfcflow_cinn_affine", "tfcflow_cinn_spline", "tfcflow_rcf", "tfcflow_cinn_ensemble",
                "tfcflow_cinn_spline_ensemble")
#: likelihood estimation, in its own table (run.py): ``tfcflow.inference.NLE`` with its defaults
#: (seed 0) and sbi's NLE; both sample by MCMC
NLE = ("tfcflow_nle",)
NLE_PEERS = ("sbi_nle",)
MCMC = NLE + NLE_PEERS
OURS = NPE + EXPLORATIONS + NLE
PEERS = ("sbi_maf", "sbi_nsf", "bayesflow_coupling") + NLE_PEERS
CONTESTANTS = OURS + PEERS

NUM_OBSERVATIONS = 5
NUM_SIMULATIONS = 10_000
NUM_POSTERIOR_SAMPLES = 10_000

#: environment variable through which run.py hands its own command line to the workers
RUN_COMMAND_ENV = "SBI_BENCH_RUN_COMMAND"


def npe_seed(contestant: str) -> int:
    """The seed of an NPE contestant (``tfcflow_npe``: 0, ``tfcflow_npe_seed<k>``: k)."""
    return 0 if contestant == "tfcflow_npe" else int(contestant.removeprefix("tfcflow_npe_seed"))


def cache_file(out: str, task: str) -> str:
    return os.path.join(out, "cache", f"{task}.npz")


def samples_prefix(out: str, task: str, contestant: str) -> str:
    """``OUT/samples/<task>__<contestant>``; the workers add ``.npz`` and ``.json``."""
    return os.path.join(out, "samples", f"{task}__{contestant}")


def result_file(out: str, task: str, contestant: str) -> str:
    return os.path.join(out, "results", f"{task}__{contestant}.json")


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as JSON atomically (a half-written file never looks like a finished result)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def save_npz(path: str, **arrays) -> None:
    """``np.savez`` atomically."""
    import numpy as np

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def versions(*packages: str) -> dict:
    """Installed versions of ``packages`` (None where absent) and the Python version."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_revision() -> str:
    """The repository's HEAD commit, with ``+dirty`` when tfcflow/ has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "tfcflow"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def add_sampling_args(parser) -> None:
    """The sampling-timing options of ours.py and peers.py (``timed_sampling``'s arguments)."""
    parser.add_argument("--sample-repeats", type=int, default=1,
                        help="timed sampling passes over the observations (common.timed_sampling)")
    parser.add_argument("--sampling-patience", type=float, default=60.0,
                        help="seconds of retrying sampling passes slowed by other work (0: none)")


def timed_sampling(sample_all, repeats: int, patience: float = 60.0):
    """``(samples, timing fields of a worker's record)``: ``sample_all()`` returns every
    observation's samples ``[K, N, D]``; after the caller's warm-up call, one untimed call gives
    the samples kept, then ``repeats`` >= 1 timed calls give the rate: samples/s of the median
    clean call, by bench/timing.py's rule (wait for the machine to go quiet, a call during which
    other processes or the host took CPU time is dirty and retried; with no clean call, the dirty
    ones). ``patience``: seconds of retries, and of waiting before each call (0: ``repeats``
    calls, no waiting). ``repeats=0`` (MCMC contestants): the call that gives the samples is the
    one timed, once, the machine's quiet unchecked. Ours and the peers are timed by this one rule."""
    if repeats == 0:  # MCMC contestants: the one call that gives the samples is timed (reruns cost minutes)
        t0 = time.perf_counter()
        samples = sample_all()
        seconds = time.perf_counter() - t0
        items = samples.shape[0] * samples.shape[1]
        return samples, {"samples_per_second": items / seconds, "sample_seconds": seconds, "sampling_runs": 1,
                         "sampling_clean_runs": None, "sampling_dirty_runs": None}
    if repeats < 1:
        raise SystemExit(f"--sample-repeats must be >= 0, got {repeats}")
    sys.path.insert(0, os.path.dirname(HERE))
    try:
        import timing
    finally:
        sys.path.pop(0)
    samples = sample_all()
    items = samples.shape[0] * samples.shape[1]
    t = timing.timed(sample_all, items, calls=1, runs=repeats, budget=patience, max_wait=min(patience, 20.0))
    return samples, {"samples_per_second": t["median"], "sample_seconds": items / t["median"],
                     "sampling_runs": t["runs"], "sampling_clean_runs": t["clean"], "sampling_dirty_runs": t["dirty"]}


def this_command() -> str:
    """The command line of the running script, as a shell would take it."""
    return shlex.join([sys.executable, *sys.argv])


def provenance() -> dict:
    """What every worker records: its own command line and the run.py invocation that started it."""
    return {"command": this_command(), "run_command": os.environ.get(RUN_COMMAND_ENV)}
