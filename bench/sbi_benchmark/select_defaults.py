"""How ``tfcflow.inference.NPE``'s defaults are chosen: held-out NLL on simulations nobody scores.

For each candidate setting and each task, an ``NPE`` is trained (seed 0) on the task's 10,000
cached simulations exactly as the benchmark trains it, then scored by its mean negative log
posterior density ``-log q(theta | x)`` on ``--rows`` of the task's held-out simulations
(``simulate.py --heldout``; another seed, never trained on, not the benchmark's observations).
Over the prior predictive that is the expected KL divergence from the true posterior up to a
constant of the task, so lower is better and differences between settings compare directly (the
same rows for every candidate).

The rule (docs/benchmarks/sbi.md, "How the defaults were chosen"): a candidate replaces the base
setting only if its held-out NLL is lower on at least 4 of the 5 tasks. Results are appended to
``OUT/selection/selection.jsonl`` as each run ends; a rerun skips the (candidate, task) pairs
already there.

    .venv/bin/python bench/sbi_benchmark/select_defaults.py --candidates base,map,fast,silu
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import priors  # noqa: E402

#: the setting the candidates were compared with: one flow (DEFAULT_FLOW), truncation to the
#: prior's support, batch 256 at learning rate 5e-4 (the flow arguments are DEFAULT_FLOW's)
BASE_TRAINING = {"batch_size": 256, "learning_rate": 5e-4}
BASE_NPE = {"ensemble": 1, "dropout": 0.0}
BASE_FLOW = {"coupling": "spline"}
#: name -> (flow overrides, NPE keyword arguments, Training overrides), each on top of the base
CANDIDATES = {
    "base": ({}, {}, {}),
    "map": ({}, {"support": "map"}, {}),
    "fast": ({}, {}, {"batch_size": 1024, "learning_rate": 2e-3}),
    "silu": ({"network": {"activation": "silu"}}, {}, {}),
    "depth4": ({"depth": 4}, {}, {}),
    "residual": ({"network": "residual"}, {}, {}),
    "bins12": ({"coupling": {"kind": "spline", "bins": 12}}, {}, {}),
    "width64": ({"width": 64}, {}, {}),
    "batch64": ({}, {}, {"batch_size": 64}),
    "dropout": ({}, {"dropout": 0.1}, {}),
    # on top of "fast" (the adopted training: the current defaults' single flow); compared with "fast"
    "fast+affine": ({"coupling": "affine"}, {}, {"batch_size": 1024, "learning_rate": 2e-3}),
    "fast+hybrid": ({"coupling": "hybrid"}, {}, {"batch_size": 1024, "learning_rate": 2e-3}),
    # on top of "fast+hybrid" (the current defaults' single flow); compared with it
    "hybrid+dropout0.1": ({"coupling": "hybrid"}, {"dropout": 0.1},
                          {"batch_size": 1024, "learning_rate": 2e-3}),
    "affine+dropout0.1": ({"coupling": "affine"}, {"dropout": 0.1},
                          {"batch_size": 1024, "learning_rate": 2e-3}),
    # variations of the affine candidate, compared with it
    "affine+dropout0.1+silu": ({"coupling": "affine", "network": {"activation": "silu"}}, {"dropout": 0.1},
                               {"batch_size": 1024, "learning_rate": 2e-3}),
    "affine+dropout0.05": ({"coupling": "affine"}, {"dropout": 0.05}, {"batch_size": 1024, "learning_rate": 2e-3}),
    # variations of the affine-silu candidate, compared with it
    "asilu+width256": ({"coupling": "affine", "width": 256, "network": {"activation": "silu"}}, {"dropout": 0.1},
                       {"batch_size": 1024, "learning_rate": 2e-3}),
    "asilu+depth8": ({"coupling": "affine", "depth": 8, "network": {"activation": "silu"}}, {"dropout": 0.1},
                     {"batch_size": 1024, "learning_rate": 2e-3}),
    "asilu+residual": ({"coupling": "affine", "network": {"kind": "residual", "activation": "silu"}},
                       {"dropout": 0.1}, {"batch_size": 1024, "learning_rate": 2e-3}),
    "asilu+dropout0.2": ({"coupling": "affine", "network": {"activation": "silu"}}, {"dropout": 0.2},
                         {"batch_size": 1024, "learning_rate": 2e-3}),
    "asilu+layers3": ({"coupling": "affine", "network": {"activation": "silu", "hidden_layers": 3}},
                      {"dropout": 0.1}, {"batch_size": 1024, "learning_rate": 2e-3}),
    "asilu+batch256": ({"coupling": "affine", "network": {"activation": "silu"}}, {"dropout": 0.1},
                       {"batch_size": 256, "learning_rate": 1e-3}),
    "asilu+batch128": ({"coupling": "affine", "network": {"activation": "silu"}}, {"dropout": 0.1},
                       {"batch_size": 128, "learning_rate": 5e-4}),
}
#: the setting each candidate is compared with in the report (default "base")
REFERENCE = {"fast+affine": "fast", "fast+hybrid": "fast", "hybrid+dropout0.1": "fast+hybrid",
             "affine+dropout0.1": "hybrid+dropout0.1", "affine+dropout0.1+silu": "affine+dropout0.1",
             "affine+dropout0.05": "affine+dropout0.1", "asilu+width256": "affine+dropout0.1+silu",
             "asilu+depth8": "affine+dropout0.1+silu", "asilu+residual": "affine+dropout0.1+silu",
             "asilu+dropout0.2": "affine+dropout0.1+silu", "asilu+layers3": "affine+dropout0.1+silu",
             "asilu+batch256": "affine+dropout0.1+silu", "asilu+batch128": "affine+dropout0.1+silu"}


def run(candidate: str, task: str, out: str, rows: int, seed: int) -> dict:
    import keras
    import numpy as np
    from tfcflow.inference import NPE, Training

    flow, kwargs, training = CANDIDATES[candidate]
    data = np.load(common.cache_file(out, task))
    held = np.load(common.cache_file(out, task).replace(".npz", ".heldout.npz"))
    keras.backend.clear_session()
    npe = NPE(priors.prior(task), flow={**BASE_FLOW, **flow}, training=Training(**{**BASE_TRAINING, **training}),
              seed=seed, **{**BASE_NPE, **kwargs})
    t0 = time.perf_counter()
    history = npe.fit(data["theta"], data["x"], verbose=0)
    train_seconds = time.perf_counter() - t0
    lp = npe.log_prob(held["theta"][:rows], held["x"][:rows])
    # per row, so that mixtures of runs (ensembles of seeds) can be scored afterwards (--report)
    np.save(os.path.join(out, "selection", f"{candidate}__{task}__s{seed}.npy"), lp)
    return {"candidate": candidate, "task": task, "seed": seed, "heldout_nll": float(-np.mean(lp)),
            "heldout_rows": int(rows), "train_seconds": train_seconds, "epochs": len(history.history["loss"]),
            "best_val_loss": float(min(history.history["val_loss"])), "git_revision": common.git_revision()}


def report(out: str) -> str:
    """The selection table: per task, each candidate's held-out NLL (seed 0) and its difference to
    base; how many tasks each candidate improves; and, where seeds 1 and 2 of a candidate have
    per-row log-densities, the equally weighted mixture of the two (an ensemble of 2) against the
    mean of the two single runs."""
    import numpy as np

    path = os.path.join(out, "selection", "selection.jsonl")
    with open(path) as f:
        records = [json.loads(line) for line in f]
    nll = {(r["candidate"], r["task"], r["seed"]): r for r in records}
    tasks = [t for t in common.TASKS if any(k[1] == t for k in nll)]
    cands = [c for c in CANDIDATES if any(k[0] == c and k[2] == 0 for k in nll)]
    lines = ["| candidate | " + " | ".join(tasks) + " | tasks better than its reference | train s (sum) |",
             "|---|" + "---|" * (len(tasks) + 2)]
    for c in cands:
        cells, wins, secs = [], 0, 0.0
        for t in tasks:
            r, b = nll.get((c, t, 0)), nll.get((REFERENCE.get(c, "base"), t, 0))
            if r is None:
                cells.append("-")
                continue
            secs += r["train_seconds"]
            diff = None if b is None else r["heldout_nll"] - b["heldout_nll"]
            wins += diff is not None and diff < 0 and c != "base"
            cells.append(f"{r['heldout_nll']:.3f}" + ("" if c == "base" or diff is None else f" ({diff:+.3f})"))
        label = c if c in ("base",) or c not in REFERENCE else f"{c} (vs {REFERENCE[c]})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wins if c != 'base' else '-'} | {secs:.0f} |")
    mixtures = []
    for c in CANDIDATES:
        cells, wins = [], 0
        for t in tasks:
            files = [os.path.join(out, "selection", f"{c}__{t}__s{s}.npy") for s in (1, 2)]
            if not all(os.path.exists(f) for f in files):
                cells.append("-")
                continue
            lps = np.stack([np.load(f) for f in files])
            single = float(-lps.mean())
            mixed = float(-np.mean(np.logaddexp(lps[0], lps[1]) - np.log(2.0)))
            wins += mixed < single
            cells.append(f"{mixed:.3f} vs {single:.3f} ({mixed - single:+.3f})")
        if any(cell != "-" for cell in cells):
            mixtures.append(f"| {c}: ensemble of seeds 1, 2 vs their mean | " + " | ".join(cells) + f" | {wins} | |")
    if mixtures:
        lines += mixtures
    return "\n".join(lines) + "\n" + choice_reports(out, nll, tasks)


def _mixture_nll(out: str, candidate: str, task: str, seeds=(0, 1)) -> float:
    import numpy as np
    lps = np.stack([np.load(os.path.join(out, "selection", f"{candidate}__{task}__s{s}.npy")) for s in seeds])
    return float(-np.mean(np.logaddexp(lps[0], lps[1]) - np.log(2.0)))


def choice_report(out: str, nll: dict, tasks, candidates: tuple, reference, label: str) -> str:
    """``NPE(candidates=...)`` against a reference, from the single runs: member 0 is trained as
    every candidate (seed 0: the same split and start), the one of lower *validation* NLL
    (``best_val_loss``, the estimator's own criterion) is kept and mixed with seed 1 of the same
    candidate. ``reference``: a candidate (the mixture of its seeds 0 and 1) or a tuple of
    candidates (their choice, made the same way). Both are scored on the held-out rows."""
    refs = reference if isinstance(reference, tuple) else (reference,)
    cells, better, worse, secs, ref_secs = [], 0, 0, 0.0, 0.0
    for t in tasks:
        if not all((c, t, 0) in nll for c in candidates + refs):
            cells.append("-")
            continue
        chosen = min(candidates, key=lambda c: nll[(c, t, 0)]["best_val_loss"])
        ref = min(refs, key=lambda c: nll[(c, t, 0)]["best_val_loss"])
        if (chosen, t, 1) not in nll or (ref, t, 1) not in nll:
            cells.append("-")
            continue
        ref_nll, auto = _mixture_nll(out, ref, t), _mixture_nll(out, chosen, t)
        better += auto < ref_nll - 1e-9
        worse += auto > ref_nll + 1e-9
        ref_secs += sum(nll[(c, t, 0)]["train_seconds"] for c in refs) + nll[(ref, t, 1)]["train_seconds"]
        secs += sum(nll[(c, t, 0)]["train_seconds"] for c in candidates) + nll[(chosen, t, 1)]["train_seconds"]
        cells.append(f"{auto:.3f} vs {ref_nll:.3f} ({auto - ref_nll:+.3f}; {chosen})")
    return (f"\n| {label} | " + " | ".join(cells) + f" | better {better}, worse {worse} | {secs:.0f} vs "
            f"{ref_secs:.0f} |\n")


def choice_reports(out: str, nll: dict, tasks) -> str:
    """The two per-fit choices: the dropout (0 or 0.1, vs 2 plain flows) and the current
    ``DEFAULT_CANDIDATES`` (vs the dropout choice)."""
    plain, drop, affine, silu = "fast+hybrid", "hybrid+dropout0.1", "affine+dropout0.1", "affine+dropout0.1+silu"
    return (choice_report(out, nll, tasks, (plain, drop), plain,
                          "dropout chosen per task among (0, 0.1) on the validation split, 2 flows of the chosen "
                          "rate, vs 2 plain flows")
            + choice_report(out, nll, tasks, (plain, drop, affine), (plain, drop),
                            "flow chosen per task among (hybrid, hybrid + dropout 0.1, affine + dropout 0.1) "
                            "on the validation split, 2 flows of the chosen one, vs the dropout choice")
            + choice_report(out, nll, tasks, (plain, drop, silu), (plain, drop),
                            "flow chosen per task among (hybrid, hybrid + dropout 0.1, affine + dropout 0.1 + "
                            "silu) on the validation split (`DEFAULT_CANDIDATES`), 2 flows of the chosen one, vs "
                            "the dropout choice"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--candidates", default="base", help=f"comma-separated, of {', '.join(CANDIDATES)}")
    p.add_argument("--tasks", default=",".join(common.TASKS))
    p.add_argument("--rows", type=int, default=1000, help="held-out simulations scored per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true", help="print the selection table (report()) and stop")
    a = p.parse_args(argv)
    if a.report:
        text = report(a.out)
        with open(os.path.join(a.out, "selection", "selection.md"), "w") as f:
            f.write(text)
        print(text)
        return
    path = os.path.join(a.out, "selection", "selection.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    done = set()
    if os.path.exists(path):
        with open(path) as f:
            done = {(r["candidate"], r["task"], r["seed"]) for r in map(json.loads, f)}
    for candidate in a.candidates.split(","):
        if candidate not in CANDIDATES:
            raise SystemExit(f"unknown candidate {candidate!r}; one of {', '.join(CANDIDATES)}")
        for task in a.tasks.split(","):
            if (candidate, task, a.seed) in done:
                continue
            record = run(candidate, task, a.out, a.rows, a.seed)
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"select: {candidate} {task}: held-out NLL {record['heldout_nll']:.4f}, "
                  f"{record['train_seconds']:.0f} s, {record['epochs']} epochs", flush=True)


if __name__ == "__main__":
    main()
