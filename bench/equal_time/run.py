"""Quality at equal compute (issue 16): which Glow reaches the lowest test bits/dim on real MNIST
when every contestant trains for the same wall time on this machine?

Part ``mnist``: unconditional Glow -- tfcflow vs normflows vs FrEIA. Part ``sr``: x4
super-resolution (8x8 -> 32x32) -- tfcflow's ConditionalGlow vs FrEIA's conditional INN. Every
contestant has the same architecture (protocol.py, the contestant files), batch, learning rate and
data, and trains for ``--seconds`` of wall time in its own process, one after another (each gets the
CPU alone), then reports the dequantization bound in bits/dim on the MNIST test digits.

    python bench/equal_time/run.py --out docs/benchmarks/equal_time --seconds 600 \\
        --tpy /work/peervenv/bin/python [--part mnist|sr|all] [--only tfcflow,freia] [--smoke]

Resumable: a contestant whose result JSON exists for the same budget, test digits and smoke flag is
not run again. Writes ``{part}_{contestant}.json``, ``logs/`` and ``summary.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import protocol as pc  # noqa: E402

# (part, contestant, runtime): "tf" runs under this python, "torch" under --tpy
CONTESTANTS = (("mnist", "tfcflow", "tf"), ("mnist", "normflows", "torch"), ("mnist", "freia", "torch"),
               ("sr", "tfcflow", "tf"), ("sr", "freia", "torch"))
BUSY_LIMIT = 0.25  # cores other processes may use during a training run before the comparison is flagged
TITLES = {"mnist": "MNIST, unconditional Glow (32x32x1)",
          "sr": "MNIST x4 super-resolution, conditional Glow (8x8x1 condition -> 32x32x1)"}


def command(part: str, name: str, runtime: str, a, out: str) -> list:
    if runtime == "tf":
        cmd = [sys.executable, os.path.join(HERE, "tf_contestant.py"), "--execution", a.tf_execution]
    else:
        cmd = [a.tpy, os.path.join(HERE, "torch_contestant.py"), "--impl", name, "--threads", str(a.torch_threads)]
    cmd += ["--part", part, "--seconds", str(a.seconds), "--out", out]
    if a.smoke:
        cmd.append("--smoke")
    if a.test_digits is not None:
        cmd += ["--test-digits", str(a.test_digits)]
    return cmd


def reusable(path: str, a, quiet: bool = False) -> Optional[dict]:
    """The result at ``path`` if it was measured with this invocation's settings."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        res = json.load(f)
    want_digits = a.test_digits if a.test_digits is not None else (pc.SMOKE["test_digits"] if a.smoke else 10000)
    same_run = (res.get("threads") == a.torch_threads if "torch" in res.get("framework", "")
                else res.get("execution") == a.tf_execution)
    if (res.get("seconds_budget") == a.seconds and res.get("smoke") == a.smoke
            and res.get("test_digits") == want_digits and "test_bpd" in res and same_run):
        return res
    if not quiet:
        print(f"{path}: measured with other settings; running again", flush=True)
    return None


def log_linear_eta(curve: list, target: float) -> Optional[float]:
    """Training seconds at which a straight line in log(time) through the curve's last three points
    (train_s > 0) reaches ``target``; None if the curve is not falling. Flow training curves flatten
    with time, so this is an optimistic (early) estimate."""
    pts = [(math.log(p["train_s"]), p["test_bpd_subset"]) for p in curve if p["train_s"] > 0][-3:]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else 0.0
    if slope >= 0 or not math.isfinite(slope):
        return None
    return math.exp(min(mx + (target - my) / slope, 700.0))


def _duration(s: float) -> str:
    if s > 3.6e6:
        return "over 1,000 h"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


def summary(results: dict, a) -> str:
    """The markdown report of the results present."""
    arch = pc.SMOKE if a.smoke else dict(levels=pc.LEVELS, depth=pc.DEPTH, hidden=pc.HIDDEN)
    lines = ["# Quality at equal compute (issue 16)", "",
             f"Each contestant trained for {a.seconds:g} s of wall time (clock started after one warm-up step, "
             "paused for the test curve), alone on the machine, one after another; then the dequantization bound "
             "of its test log-likelihood, in bits/dim over the 32x32 = 1,024 dims of each zero-padded digit "
             "(2 pixels of 0 around each 28x28 MNIST digit, the same for every contestant), uniform noise with a "
             f"fixed seed. Same architecture (L = {arch['levels']}, K = {arch['depth']}, hidden {arch['hidden']}), "
             "batch 32, Adam 1e-3, 60,000 training digits. Curve: the mean over the first "
             f"{pc.SMOKE['curve_digits'] if a.smoke else pc.CURVE_DIGITS:,} test digits after the warm-up step "
             "and at 20/40/60/80/100% of the budget." + (" **Smoke run: tiny model, tiny test set.**" if a.smoke
                                                         else ""), ""]
    for part in pc.PARTS:
        rows = [(name, results[(part, name)]) for p, name, _ in CONTESTANTS if p == part and (part, name) in results]
        if not rows:
            continue
        lines += [f"## {TITLES[part]}", "",
                  "| contestant | implementation | params (effective) | steps | img/s | warm-up s "
                  "| other processes (cores) | test bits/dim | digits | curve (subset bits/dim) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows:
            if "test_bpd" not in r:
                lines.append(f"| {name} | {r.get('error', 'not run')} | | | | | | | | |")
                continue
            curve = " / ".join(f"{p['test_bpd_subset']:.3f}" for p in r["curve"])
            params = r.get("params_effective", r["params"])
            lines.append(f"| {name} | {r['impl']} ({r['framework']}) | {params:,} | {r['steps']:,} | "
                         f"{r['images_per_s']:.1f} | {r['warmup_s']:.1f} | {r['foreign_cores']:.2f} | "
                         f"**{r['test_bpd']:.4f}** +- {r['test_bpd_sem']:.4f} | {r['test_digits']:,} | {curve} |")
        ours = results.get((part, "tfcflow"), {}).get("test_bpd")
        peers = [(r["test_bpd"], n) for n, r in rows if n != "tfcflow" and "test_bpd" in r]
        missing = [n for p, n, _ in CONTESTANTS if p == part and n != "tfcflow" and
                   "test_bpd" not in results.get((part, n), {})]
        lines.append("")
        if ours is None or not peers:
            lines.append("Goal (tfcflow lower test bits/dim than every peer at equal time): not decided "
                         "(contestants missing)")
        else:
            best, who = min(peers)
            verdict = "met" if math.isfinite(ours) and ours < best else "missed"
            busy = max(r.get("foreign_cores") or 0.0 for _, r in rows if "test_bpd" in r)
            lines.append(f"tfcflow lower test bits/dim than every peer at equal time: **{verdict}** "
                         f"(tfcflow {ours:.4f} vs best peer {who} {best:.4f}, difference {ours - best:+.4f})"
                         + (f"; not run: {', '.join(missing)}" if missing else "")
                         + (f". **Not a fair comparison: other processes used up to {busy:.2f} cores during a "
                            f"contestant's training** (PyTorch's 2 OpenMP threads slow down far more than "
                            f"TensorFlow's pools on a shared machine); rerun on an idle machine"
                            if busy > BUSY_LIMIT else ""))
        if part == "mnist":
            lines += ["", f"Distance from Glow's published MNIST {pc.GLOW_MNIST_BPD} bits/dim (a far larger model "
                      "trained far longer; Glow's code pads MNIST to 32x32 the same way but also tiles it to 3 "
                      "channels, so the figures are only indicative):", ""]
            for name, r in rows:
                if "test_bpd" not in r:
                    continue
                eta = log_linear_eta(r["curve"], pc.GLOW_MNIST_BPD)
                est = (f"{_duration(eta)} of training by a straight line in log time through the last three "
                       "curve points (optimistic: curves flatten)" if eta else "no estimate (the curve is not falling)")
                if eta and eta > 10 * r["train_s"]:
                    est += "; more than 10x the measured time, so a guess rather than an estimate"
                lines.append(f"- {name}: {r['test_bpd'] - pc.GLOW_MNIST_BPD:+.3f} bits/dim; to reach "
                             f"{pc.GLOW_MNIST_BPD}: {est}")
        lines.append("")
    settings = sorted({f"{n}: " + (f"{r['execution']} execution ({r['sub_batches']} sub-batches, fused steps "
                                   f"{r['fused_steps']}, threads intra-op {r['threads']['intra']} / inter-op "
                                   f"{r['threads']['inter']}), {r['optimizer']}" if n == "tfcflow" else
                                   f"{r['threads']} threads, {r['optimizer']}")
                       for (_, n), r in results.items() if "test_bpd" in r})
    lines += ["Settings: " + "; ".join(settings) + ".", ""]
    lines += ["Raw results: `{part}_{contestant}.json` (steps, timings, curve, versions, command); logs: `logs/`.",
              "`other processes (cores)`: the mean CPU other processes used during the contestant's training "
              "(0 = the machine was its own).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--tpy", default=None, help="the PyTorch python (torch, normflows, FrEIA); without it the "
                                                 "PyTorch contestants are not run")
    p.add_argument("--part", default="all", choices=pc.PARTS + ("all",))
    p.add_argument("--only", default=None, help="comma-separated contestants to run (default all)")
    p.add_argument("--test-digits", type=int, default=None)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--tf-execution", default="benchmark", choices=("benchmark", "default"))
    p.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (the peers' setting: 2)")
    p.add_argument("--max-wait", type=float, default=None,
                   help="seconds to wait before each contestant for other processes to go idle (default 120; smoke 0)")
    a = p.parse_args(argv)
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    only = set(a.only.split(",")) if a.only else None
    results = {}
    t_all = time.time()
    for part, name, runtime in CONTESTANTS:
        path = os.path.join(a.out, f"{part}_{name}.json")
        if a.part not in ("all", part) or (only is not None and name not in only):
            res = reusable(path, a, quiet=True)  # not run now; in the summary if measured alike before
            if res is not None:
                results[(part, name)] = res
            continue
        res = reusable(path, a)
        if res is None:
            if runtime == "torch" and not a.tpy:
                results[(part, name)] = dict(error="not run (no --tpy)")
                continue
            log = os.path.join(a.out, "logs", f"{part}_{name}.log")
            cmd = command(part, name, runtime, a, path)
            idle = pc.wait_idle(a.max_wait if a.max_wait is not None else (0.0 if a.smoke else 120.0))
            print(f"[{time.strftime('%H:%M:%S')}] {part}/{name}: {' '.join(cmd)}", flush=True)
            t = time.time()
            if os.path.exists(path):
                os.remove(path)  # measured with other settings
            with open(log, "w") as f:
                try:
                    rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                        timeout=300 + 3 * a.seconds if a.smoke else 2400 + 2 * a.seconds).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
            if rc != 0 or not os.path.exists(path):
                with open(log) as f:
                    tail = f.read()[-2000:]
                print(tail, flush=True)
                results[(part, name)] = dict(error=f"failed (exit {rc}, see logs/{part}_{name}.log)")
                continue
            with open(path) as f:
                res = json.load(f)
            res["idle_wait"] = idle
            with open(path, "w") as f:
                json.dump(res, f, indent=1)
            print(f"  done in {time.time() - t:.0f} s: {res['steps']} steps, test bits/dim {res['test_bpd']:.4f}",
                  flush=True)
        results[(part, name)] = res
    text = summary(results, a)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"total {time.time() - t_all:.0f} s", flush=True)
    return {f"{part}_{name}": r for (part, name), r in results.items()}


if __name__ == "__main__":
    main()
