"""C2ST of one (task, contestant): its posterior samples against the reference, per observation.

``--metric sbibm`` (the peer environment; the published table): ``sbibm.metrics.c2st`` with its
defaults (an MLP classifier, 5-fold cross-validated accuracy, z-scored inputs) between the
contestant's samples and sbibm's reference posterior samples (10,000 each). 0.5 = the classifier
cannot tell them apart; 1.0 = it always can.

``--metric tfcflow`` (smoke mode, no torch): ``tfcflow.diagnostics.c2st(a, b, seed=0)``.

Writes ``OUT/results/<task>__<contestant>.json``: the training record of the samples (times,
settings, versions, command) plus ``c2st`` per observation, ``c2st_mean``, the scoring metric and
its versions, and the repository's git revision.

Resumable per observation: one 10-D C2ST takes ~10 CPU-minutes, so each observation's score is
written to ``OUT/results/<task>__<contestant>.partial.json`` as it finishes, keyed by a digest of
the samples, the metric and its seed; a rerun on the same samples scores only the missing
observations, and the partial file is removed once the result is written.

    /work/peervenv/bin/python bench/sbi_benchmark/score.py --task two_moons --contestant sbi_nsf
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

#: what limits the BLAS / OpenMP threads of a worker process (read when numpy / torch load)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def c2st_sbibm(a, b, seed: int) -> float:
    import sbibm.metrics
    import torch

    return float(sbibm.metrics.c2st(torch.as_tensor(a), torch.as_tensor(b), seed=seed)[0])


def c2st_tfcflow(a, b, seed: int) -> float:
    try:
        from tfcflow.diagnostics import c2st
    except ImportError as e:
        raise SystemExit(f"score.py --metric tfcflow needs tfcflow.diagnostics.c2st ({e})")
    return float(c2st(a, b, seed=seed))


def _score_one(metric, reference, samples, seed: int, k: int) -> tuple:
    return k, metric(reference, samples, seed)


def _score_star(args: tuple) -> tuple:
    return _score_one(*args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True)
    p.add_argument("--contestant", required=True, choices=common.CONTESTANTS)
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--metric", default="sbibm", choices=("sbibm", "tfcflow"))
    p.add_argument("--seed", type=int, default=None, help="classifier seed (default: each metric's own default)")
    p.add_argument("--jobs", type=int, default=1, help="observations scored at once, one process each")
    a = p.parse_args(argv)
    import numpy as np

    cache = np.load(common.cache_file(a.out, a.task))
    prefix = common.samples_prefix(a.out, a.task, a.contestant)
    samples = np.load(prefix + ".npz")["samples"]
    record = common.read_json(prefix + ".json")
    reference, ids = cache["reference"], [int(i) for i in cache["observation_ids"]]
    if samples.shape[0] != reference.shape[0] or samples.shape[2] != reference.shape[2]:
        raise SystemExit(f"score.py: samples {samples.shape} do not match the reference {reference.shape}")
    if a.metric == "sbibm":
        metric, seed, pkgs = c2st_sbibm, 1 if a.seed is None else a.seed, ("sbibm", "torch", "scikit-learn")
    else:
        metric, seed, pkgs = c2st_tfcflow, 0 if a.seed is None else a.seed, ("tfcflow", "scikit-learn")
    partial_path = common.result_file(a.out, a.task, a.contestant)[:-len(".json")] + ".partial.json"
    key = dict(samples_sha256=hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
               metric=a.metric, metric_seed=seed)
    done = {}
    if os.path.exists(partial_path):
        old = common.read_json(partial_path)
        if {k: old.get(k) for k in key} == key:
            done = {int(k): float(v) for k, v in old["c2st"].items()}
            print(f"score: {a.task} {a.contestant}: resuming, {len(done)} of {len(ids)} observations "
                  f"already scored", flush=True)

    def keep(k: int, score: float) -> None:
        done[k] = score
        common.write_json(partial_path, dict(key, c2st={str(i): v for i, v in sorted(done.items())}))

    todo = [(reference[k], samples[k], seed, k) for k in range(len(ids)) if k not in done]
    if a.jobs > 1 and len(todo) > 1:
        # one observation per worker process, each with one BLAS thread: the classifiers' small
        # matrices use a second thread poorly, so 2 processes on 2 cores score ~2x faster
        import multiprocessing

        for var in THREAD_VARS:
            os.environ[var] = "1"
        with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
            for k, score in pool.imap_unordered(_score_star, [(metric, *t) for t in todo]):
                keep(k, score)
    else:
        for t in todo:
            keep(*_score_one(metric, *t))
    scores = [done[k] for k in range(len(ids))]
    if not all(0.0 <= s <= 1.0 for s in scores):
        raise SystemExit(f"score.py: C2ST outside [0, 1]: {scores}")
    meta = json.loads(str(cache["meta"]))
    record.update(c2st=dict(zip(map(str, ids), scores)), c2st_mean=float(np.mean(scores)), metric=a.metric,
                  metric_seed=seed, reference=meta["reference"], simulations=meta["source"],
                  smoke=meta["source"] != "sbibm", scoring_versions=common.versions(*pkgs),
                  scoring_command=common.this_command(), git_revision=common.git_revision())
    common.write_json(common.result_file(a.out, a.task, a.contestant), record)
    os.remove(partial_path)
    print(f"score: {a.task} {a.contestant}: C2ST {record['c2st_mean']:.3f} "
          f"({', '.join(f'{s:.3f}' for s in scores)})", flush=True)
    return record


if __name__ == "__main__":
    main()
