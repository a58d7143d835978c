"""SBI benchmark orchestrator: sbibm tasks x contestants -> C2ST, training time, sampling speed.

Runs with any Python (standard library only); every measurement runs in its own subprocess:
simulate.py and the peers and scoring in the peer environment (``--peer-python``: torch, sbi,
sbibm, BayesFlow), tfcflow's contestants in ``--ours-python`` (default: this Python).

1. simulate.py draws each task's simulations once (OUT/cache/<task>.npz): every contestant trains
   on the same 10,000 (theta, x) and is scored on the same 5 observations.
2. For each task, each contestant without a result: train + sample (peers.py / ours.py), then
   score (score.py). A result file is written as each (task, contestant) finishes, so a rerun
   resumes where the last one stopped; ``--redo`` retrains the selected contestants, e.g.
   ``--contestants ours --redo`` reruns tfcflow's only and keeps the peers' results.
3. OUT/summary.md (also printed): per task, mean C2ST over the observations, training wall time,
   posterior samples per second, and the goals (tfcflow's best <= the best peer on every task;
   on average 0.02 lower).

``--timing``: on two_moons and slcp, alternates one of our contestants and one peer (``--rounds``
rounds, the order flipped every round) and writes OUT/timing/timing.md with the ratios (every
run's samples/s is its median of ``--sample-repeats`` clean sampling passes, the same rule for both). Ours runs
with the settings of its table record on that task (``settings_args``: the model and training that
produced the table's C2ST, e.g. a task's dropout or bounds method), so the times are times to
that result; the peers run their defaults, as in the table. ``--smoke``: the plumbing only,
without the peer environment: tfcflow's contestants on two_moons from tfcflow's NumPy simulator,
few simulations, a tiny model, a few epochs, C2ST by tfcflow.diagnostics.c2st against a
rejection-ABC sample (see simulate.py).

    python bench/sbi_benchmark/run.py                                   # everything, resumable
    python bench/sbi_benchmark/run.py --contestants ours --redo         # rerun tfcflow's only
    python bench/sbi_benchmark/run.py --tasks two_moons --contestants sbi_maf,sbi_nsf
    python bench/sbi_benchmark/run.py --timing --rounds 2
    python bench/sbi_benchmark/run.py --smoke --out /tmp/sbi_smoke
"""
from __future__ import annotations

import argparse
import glob
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SMOKE_SIMULATE = ["--num-simulations", "500", "--num-reference", "300", "--abc-draws", "50000"]
SMOKE_OURS = ["--smoke", "--num-samples", "300", "--epochs", "2", "--depth", "2", "--width", "16",
              "--batch-size", "128", "--patience", "1", "--verbose", "0", "--sampling-patience", "0"]
GROUPS = {"all": common.CONTESTANTS, "ours": common.OURS, "npe": common.NPE, "explorations": common.EXPLORATIONS,
          "peers": common.PEERS, "nle": common.MCMC}


#: ours.py options that a table record's ``settings`` hold (the rest follow from the contestant)
SETTING_FLAGS = ("depth", "width", "hidden_layers", "network", "activation", "dropout", "epochs", "batch_size",
                 "lr", "schedule", "weight_decay", "clipnorm", "validation_fraction", "patience", "lr_patience",
                 "mixing", "bounds_method", "spline_bins", "spline_bound", "ensemble", "sample_batch_size",
                 "sample_sub_batches", "rcf_padding_noise", "rcf_epsilon")
#: settings that are ours.py switches (given when true)
SETTING_SWITCHES = ("jit_sampling",)


def settings_args(record: dict) -> list:
    """ours.py options that reproduce a result record's model and training: its ``settings`` (keys
    of ``SETTING_FLAGS`` that it has; older records lack some, and ours.py's defaults then apply,
    as they did for that run), ``--no-bounds`` if it had none, and its seed."""
    settings = record.get("settings", {})
    args = []
    for key in SETTING_FLAGS:
        value = settings.get(key)
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    args += [f"--{key.replace('_', '-')}" for key in SETTING_SWITCHES if settings.get(key)]
    if "bounds" in settings and settings["bounds"] is None:
        args.append("--no-bounds")
    if "seed" in record:
        args += ["--seed", str(record["seed"])]
    return args


def contestant_list(spec: str) -> list:
    out = []
    for name in spec.split(","):
        for c in GROUPS.get(name, (name,)):
            if c not in common.CONTESTANTS:
                raise SystemExit(f"unknown contestant {c!r}; one of {', '.join(common.CONTESTANTS)} or "
                                 f"{', '.join(GROUPS)}")
            if c not in out:
                out.append(c)
    return out


class Runner:
    """Starts the workers as subprocesses, with the right Python and arguments."""

    def __init__(self, a):
        self.a = a
        self.env = dict(os.environ, **{common.RUN_COMMAND_ENV: common.this_command()})
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [common.REPO, os.environ.get("PYTHONPATH")]))
        self.failures = []

    def call(self, python: str, script: str, *args: str) -> bool:
        cmd = [python, os.path.join(common.HERE, script), "--out", self.a.out, *args]
        print(f"\n$ {shlex.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=self.env, cwd=common.REPO).returncode
        print(f"[{script}: exit {rc} after {time.perf_counter() - t0:.0f} s]", flush=True)
        if rc:
            self.failures.append(f"{shlex.join(cmd)} (exit {rc})")
        return rc == 0

    def simulate(self, tasks) -> bool:
        if self.a.smoke:
            return self.call(self.a.ours_python, "simulate.py", "--smoke", *SMOKE_SIMULATE)
        return self.call(self.a.peer_python, "simulate.py", "--tasks", ",".join(tasks))

    def train(self, task: str, contestant: str, dest=None, table_settings: bool = False) -> bool:
        """Trains and samples one contestant. ``table_settings``: ours with the settings of its
        table record on this task (``settings_args``), if there is one; ``--ours-args`` come last."""
        extra = (["--dest", dest] if dest else []) + ["--sample-repeats", str(self.a.sample_repeats)]
        if contestant in common.OURS:
            ours_args = (SMOKE_OURS if self.a.smoke else []) + shlex.split(self.a.ours_args)
            record = common.result_file(self.a.out, task, contestant)
            if table_settings and not self.a.smoke and os.path.exists(record):
                ours_args = settings_args(common.read_json(record)) + ours_args
            return self.call(self.a.ours_python, "ours.py", "--task", task, "--contestant", contestant, *extra,
                             *ours_args)
        return self.call(self.a.peer_python, "peers.py", "--task", task, "--contestant", contestant, *extra)

    def score(self, task: str, contestant: str) -> bool:
        if self.a.smoke:
            return self.call(self.a.ours_python, "score.py", "--task", task, "--contestant", contestant,
                             "--metric", "tfcflow")
        return self.call(self.a.peer_python, "score.py", "--task", task, "--contestant", contestant,
                         "--jobs", str(self.a.score_jobs))


def run_table(runner: Runner, tasks, contestants) -> None:
    a = runner.a
    if not runner.simulate(tasks):
        return
    for task in tasks:
        for c in contestants:
            result = common.result_file(a.out, task, c)
            if os.path.exists(result) and not a.redo:
                print(f"skip {task} {c}: {result} exists (--redo to rerun)", flush=True)
                continue
            samples = common.samples_prefix(a.out, task, c)
            have_samples = os.path.exists(samples + ".npz") and os.path.exists(samples + ".json")
            if (a.redo or not have_samples) and not runner.train(task, c):
                continue
            runner.score(task, c)


# ---- the summary ------------------------------------------------------------------------------
def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


PEER_LABELS = {"sbi_maf": "sbi NPE, MAF (defaults)", "sbi_nsf": "sbi NPE, NSF (defaults)",
               "bayesflow_coupling": "BayesFlow coupling flow (defaults)"}
NPE_LABEL = "tfcflow NPE (defaults)"
NLE_LABELS = {"tfcflow_nle": "tfcflow NLE (defaults)", "sbi_nle": "sbi NLE, MAF (slice_np_vectorized, 100 chains)"}
#: the likelihood-estimation goals (C2ST at most), besides "<= sbi NLE" on every task
NLE_GOALS = {"slcp": 0.80, "bernoulli_glm": 0.56}


def nle_section(results: dict, tasks) -> list:
    """The likelihood-estimation table (one round): C2ST, training seconds and samples/s of
    tfcflow's NLE and sbi's, and the goals; [] without results."""
    tasks = [t for t in tasks if any((t, c) in results for c in NLE_LABELS)]
    if not tasks:
        return []
    head, rule = "| estimator | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)
    lines = ["## Likelihood estimation (NLE): one round, every estimator with its defaults", "",
             "Posterior draws by MCMC (tfcflow: TFP's NUTS from prior draws, 64 chains for 10,000 draws; sbi: "
             "`slice_np_vectorized`, 100 chains); one run each (seed 0). Samples/s: the one pass that gave "
             "the samples, from receiving each observation (compilation and the chains' warm-up included).", ""]
    for title, key, spec in (("C2ST", "c2st_mean", ".3f"), ("Training seconds", "train_seconds", ".0f"),
                             ("Posterior samples per second", "samples_per_second", ".0f")):
        lines += [f"### {title} (NLE)", "", head, rule]
        for c, label in NLE_LABELS.items():
            lines.append(f"| {label} | " + " | ".join(_fmt(results[(t, c)][key] if (t, c) in results else None, spec)
                                                     for t in tasks) + " |")
        lines.append("")
    lines += ["### Goals (NLE)", "", "| task | tfcflow NLE | sbi NLE | <= sbi NLE | goal | met |",
              "|---|---|---|---|---|---|"]
    for t in tasks:
        ours, peer = results.get((t, "tfcflow_nle")), results.get((t, "sbi_nle"))
        o, p = ours and ours["c2st_mean"], peer and peer["c2st_mean"]
        vs = "-" if o is None or p is None else ("yes" if o <= p else "NO")
        goal = NLE_GOALS.get(t)
        met = "-" if goal is None or o is None else ("yes" if o <= goal else "NO")
        goal_text = "-" if goal is None else f"<= {goal:.2f}"
        lines.append(f"| {t} | {_fmt(o, '.3f')} | {_fmt(p, '.3f')} | {vs} | {goal_text} | {met} |")
    return lines + [""]


def headline(results: dict, tasks) -> dict:
    """``{row label: {task: {"c2st", "c2st_seeds", "train_seconds", "samples_per_second"}}}``: one row
    per estimator with its defaults; tfcflow's NPE is the mean over its seeds (common.NPE)."""
    rows = {}
    for task in tasks:
        seeds = [results[(task, c)] for c in common.NPE if (task, c) in results]
        if seeds:
            rows.setdefault(NPE_LABEL, {})[task] = {
                "c2st": statistics.fmean(r["c2st_mean"] for r in seeds),
                "c2st_seeds": [r["c2st_mean"] for r in seeds],
                "train_seconds": statistics.fmean(r["train_seconds"] for r in seeds),
                "samples_per_second": statistics.fmean(r["samples_per_second"] for r in seeds)}
        for c, label in PEER_LABELS.items():
            r = results.get((task, c))
            if r is not None:
                rows.setdefault(label, {})[task] = {"c2st": r["c2st_mean"], "c2st_seeds": [r["c2st_mean"]],
                                                    "train_seconds": r["train_seconds"],
                                                    "samples_per_second": r["samples_per_second"]}
    return rows


def summary(out: str) -> str:
    """The markdown tables of every result in OUT/results (whoever produced it): the headline (one
    row per estimator with its defaults), its goals, then every run per task (explorations)."""
    results = {}
    for path in glob.glob(os.path.join(out, "results", "*__*.json")):
        if path.endswith(".partial.json"):  # score.py's observations done so far, not a result
            continue
        r = common.read_json(path)
        results[(r["task"], r["contestant"])] = r
    tasks = [t for t in common.TASKS if any(k[0] == t for k in results)]
    sims = sorted({r["num_simulations"] for r in results.values()})
    lines = ["# SBI benchmark: sbibm tasks", "", f"Simulations per task: {', '.join(map(str, sims)) or '-'}; "
             f"observations 1-5 of each task scored.", ""]
    if any(r.get("smoke") for r in results.values()):
        lines += ["**SMOKE RUN: plumbing check only.** Few simulations, tiny models, a rejection-ABC 'reference' "
                  "and tfcflow's own C2ST: these numbers say nothing about accuracy.", ""]
    lines += ["C2ST: accuracy of a classifier telling the contestant's posterior samples from the reference "
              "samples (0.5 = indistinguishable), mean over the observations; train: wall-clock seconds; "
              "samples/s: posterior samples per second (after a warm-up call).", ""]
    rows = headline(results, tasks)
    if rows:
        head = "| estimator | " + " | ".join(tasks) + " | mean |"
        rule = "|---|" + "---|" * (len(tasks) + 1)
        lines += ["## Headline: every estimator with its defaults, one configuration for every task", "",
                  f"{NPE_LABEL}: the mean over seeds {', '.join(map(str, common.NPE_SEEDS))} (each seed's C2ST in "
                  "the per-task tables below); the peers: one run each (seed 0).", "", "### C2ST", "", head, rule]
        for label, per in rows.items():
            vals = [per[t]["c2st"] if t in per else None for t in tasks]
            known = [v for v in vals if v is not None]
            # tfcflow's cells name their seeds' count (the mean is over those scored)
            seeds = [f" ({len(per[t]['c2st_seeds'])} seed{'s' * (len(per[t]['c2st_seeds']) > 1)})"
                     if label == NPE_LABEL and t in per else ""
                     for t in tasks]
            lines.append(f"| {label} | " + " | ".join(_fmt(v, ".3f") + n for v, n in zip(vals, seeds))
                         + f" | {_fmt(statistics.fmean(known) if len(known) == len(tasks) else None, '.3f')} |")
        lines += ["", "### Training seconds", "", head.replace("| mean |", "| sum |"), rule]
        for label, per in rows.items():
            vals = [per[t]["train_seconds"] if t in per else None for t in tasks]
            lines.append(f"| {label} | " + " | ".join(_fmt(v, ".0f") for v in vals)
                         + f" | {_fmt(sum(vals) if None not in vals else None, '.0f')} |")
        lines += ["", "### Posterior samples per second", "", "| estimator | " + " | ".join(tasks) + " |",
                  "|---|" + "---|" * len(tasks)]
        for label, per in rows.items():
            lines.append(f"| {label} | " + " | ".join(_fmt(per[t]["samples_per_second"] if t in per else None, ".0f")
                                                     for t in tasks) + " |")
        lines += ["", "### Goals", "", "| task | tfcflow NPE | best peer | best peer - NPE | NPE <= peer |",
                  "|---|---|---|---|---|"]
        gaps = []
        for task in tasks:
            ours = rows.get(NPE_LABEL, {}).get(task)
            peers = [(per[task]["c2st"], label) for label, per in rows.items() if label != NPE_LABEL and task in per]
            peer = min(peers) if peers else None
            gap = None if ours is None or peer is None else peer[0] - ours["c2st"]
            if gap is not None:
                gaps.append(gap)
            lines.append(f"| {task} | {_fmt(ours and ours['c2st'], '.3f')} | {_fmt(peer and peer[0], '.3f')} "
                         f"{peer[1] if peer else ''} | {_fmt(gap, '+.3f')} | "
                         f"{'-' if gap is None else ('yes' if gap >= 0 else 'NO')} |")
        if gaps:
            mean = statistics.fmean(gaps)
            lines += ["", f"Mean (best peer - NPE) over {len(gaps)} task(s): {mean:+.3f} (goal: >= +0.020, "
                          f"{'met' if mean >= 0.02 else 'not met'}; every task >= 0: "
                          f"{'met' if min(gaps) >= 0 else 'not met'})."]
        lines.append("")
    lines += nle_section(results, tasks)
    lines += ["## Every run, per task (the explorations: flow models with per-task settings, chosen on the "
              "scored observations; not defaults)", ""]
    for task in tasks:
        lines += [f"### {task}", "", "| contestant | C2ST mean | C2ST per observation | train s | epochs | samples/s "
                  "| forward nRMSE (R^2) |", "|---|---|---|---|---|---|---|"]
        for c in common.CONTESTANTS:
            r = results.get((task, c))
            if r is None:
                continue
            per = " ".join(f"{v:.3f}" for _, v in sorted(r["c2st"].items(), key=lambda kv: int(kv[0])))
            lines.append(f"| {c} | {r['c2st_mean']:.3f} | {per} | {r['train_seconds']:.0f} | {r.get('epochs', '-')} "
                         f"| {r['samples_per_second']:.0f} | "
                         + (f"{r['forward_nrmse']:.3f} ({r['forward_r2']:.3f})" if "forward_nrmse" in r else "-")
                         + " |")
        lines.append("")
    lines += ["## Provenance", ""]
    for key in sorted(results):
        r = results[key]
        v = ", ".join(f"{k} {x}" for k, x in sorted(r["versions"].items()) if x)
        lines.append(f"- {key[0]} / {key[1]}: `{r['command']}`; {v}; C2ST by {r['metric']} "
                     f"({r['reference']}); repository {r['git_revision']}")
    return "\n".join(lines) + "\n"


# ---- timing -------------------------------------------------------------------------------------
def run_timing(runner: Runner, tasks, ours: str, peer: str, rounds: int) -> None:
    a = runner.a
    if not runner.simulate(tasks):
        return
    report = {"ours": ours, "peer": peer, "rounds": rounds, "tasks": {}}
    for task in tasks:
        records = {ours: [], peer: []}
        for r in range(rounds):
            for c in ((ours, peer) if r % 2 == 0 else (peer, ours)):
                dest = os.path.join(a.out, "timing", f"{task}__{c}__r{r}")
                if runner.train(task, c, dest=dest, table_settings=True):
                    records[c].append(common.read_json(dest + ".json"))
        if not (records[ours] and records[peer]):
            continue
        med = lambda c, f: statistics.median(f(r) for r in records[c])  # noqa: E731
        per_epoch = lambda r: r["train_seconds"] / max(1, r["epochs"])  # noqa: E731
        report["tasks"][task] = {
            "train_seconds": {c: med(c, lambda r: r["train_seconds"]) for c in records},
            "seconds_per_epoch": {c: med(c, per_epoch) for c in records},
            "samples_per_second": {c: med(c, lambda r: r["samples_per_second"]) for c in records},
            "epochs": {c: [r["epochs"] for r in records[c]] for c in records}}
        t = report["tasks"][task]
        t["ratios"] = {"train_time_peer_over_ours": t["train_seconds"][peer] / t["train_seconds"][ours],
                       "epoch_time_peer_over_ours": t["seconds_per_epoch"][peer] / t["seconds_per_epoch"][ours],
                       "sampling_speed_ours_over_peer": t["samples_per_second"][ours] / t["samples_per_second"][peer]}
    command = common.this_command()
    for t in report["tasks"].values():
        t["command"] = command
    # a run of some tasks keeps the other tasks' results of an earlier run of the same pair
    path = os.path.join(a.out, "timing", "timing.json")
    earlier = common.read_json(path) if os.path.exists(path) else {}
    if (earlier.get("ours"), earlier.get("peer"), earlier.get("rounds")) == (ours, peer, rounds):
        for task, t in earlier.get("tasks", {}).items():
            if task not in report["tasks"]:
                report["tasks"][task] = {"command": earlier.get("command"), **t}
    report["command"] = command
    common.write_json(path, report)
    lines = [f"# Timing: {ours} vs {peer}, {rounds} alternating round(s), medians", "",
             "| task | train s (ours / peer) | s per epoch (ours / peer) | samples/s (ours / peer) | "
             "train time peer/ours | epoch time peer/ours | sampling ours/peer |", "|---|---|---|---|---|---|---|"]
    for task, t in report["tasks"].items():
        pair = lambda k, spec: f"{t[k][ours]:{spec}} / {t[k][peer]:{spec}}"  # noqa: E731
        q = t["ratios"]
        lines.append(f"| {task} | {pair('train_seconds', '.0f')} | {pair('seconds_per_epoch', '.2f')} | "
                     f"{pair('samples_per_second', '.0f')} | {q['train_time_peer_over_ours']:.2f} | "
                     f"{q['epoch_time_peer_over_ours']:.2f} | {q['sampling_speed_ours_over_peer']:.2f} |")
    lines += ["", "Commands:", ""] + [f"- {task}: `{t['command']}`" for task, t in report["tasks"].items()]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "timing", "timing.md"), "w") as f:
        f.write(text)
    print("\n" + text, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--tasks", default=",".join(common.TASKS))
    p.add_argument("--contestants", default=None, help="comma-separated names or all/ours/peers "
                                                       "(default: all; --smoke: ours)")
    p.add_argument("--out", default=None, help="default docs/benchmarks/sbi (--smoke: a temporary folder)")
    p.add_argument("--peer-python", default="/work/peervenv/bin/python")
    p.add_argument("--ours-python", default=sys.executable)
    p.add_argument("--ours-args", default="", help="extra options for ours.py, e.g. '--epochs 100 --width 64'")
    p.add_argument("--redo", action="store_true", help="retrain and rescore the selected contestants")
    p.add_argument("--score-jobs", type=int, default=2, help="observations scored at once (score.py --jobs)")
    p.add_argument("--smoke", action="store_true", help="plumbing check without the peer environment")
    p.add_argument("--timing", action="store_true", help="alternating timing of --timing-ours vs --timing-peer")
    p.add_argument("--timing-tasks", default="two_moons,slcp")
    p.add_argument("--timing-ours", default="tfcflow_npe", choices=common.OURS)
    p.add_argument("--timing-peer", default="sbi_maf", choices=common.PEERS)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--sample-repeats", type=int, default=5,
                   help="timed sampling passes over the observations per training run, ours and the peers'; "
                        "samples/s is the median clean pass's (common.timed_sampling; table and timing runs alike)")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = (os.path.join(tempfile.gettempdir(), "tfcflow_sbi_smoke") if a.smoke
                 else os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    a.out = os.path.abspath(a.out)
    runner = Runner(a)
    if a.timing:
        run_timing(runner, a.timing_tasks.split(","), a.timing_ours, a.timing_peer, a.rounds)
    else:
        tasks = ["two_moons"] if a.smoke else a.tasks.split(",")
        unknown = [t for t in tasks if t not in common.TASKS]
        if unknown:
            raise SystemExit(f"unknown task(s) {unknown}; one of {', '.join(common.TASKS)}")
        contestants = contestant_list(a.contestants or ("ours" if a.smoke else "all"))
        if a.smoke and set(contestants) - set(common.OURS):
            raise SystemExit("--smoke runs tfcflow's contestants only (no peer environment)")
        run_table(runner, tasks, contestants)
        text = summary(a.out)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "summary.md"), "w") as f:
            f.write(text)
        print("\n" + text + f"\n-> {os.path.join(a.out, 'summary.md')}", flush=True)
        if a.smoke:
            print("SMOKE: plumbing only (tiny models, rejection-ABC reference, tfcflow's C2ST); "
                  "not a benchmark result.")
    for f in runner.failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
