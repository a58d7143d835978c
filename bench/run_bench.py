"""Runs tfcflow's Glow benchmark variants and the peer benchmarks (../shared/bench/peers) in one
invocation, one process each, then prints one table: img/s, ratios ours / best peer, and the
fraction of the float32 matmul peak measured in the same run.

    python bench/run_bench.py --out docs/benchmarks \
        --tpy /path/to/torch-venv/bin/python          # peers' PyTorch python (optional)
    python bench/run_bench.py --smoke                 # tiny sizes, no peer scripts, no waiting

The TFP peer runs with this interpreter (tensorflow-probability + tf-keras are tfcflow deps).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
METRICS = ("train_ips", "logprob_ips", "sample_ips")
PEERS = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "peers"))

# (row suffix, variant, flags). Our rows run as tfcflow recommends on a CPU: 2 parallel chains (the
# model's Execution.sub_batches, with 1 intra-op and 2 inter-op threads; tfcflow/execution.py). "_1chain"
# repeats the unconditional model as one chain at TensorFlow's default threads (2 intra-op, 2
# inter-op; the TFP peer's setting); "_xla" is that one chain under XLA (XLA's CPU runtime gained
# nothing from chains: run 8); "_bf16" runs the coupling networks in mixed_bfloat16 (not the peers'
# precision: reported beside). The mirrored row has its 2 replicas instead of chains.
CHAINS = ["--chains", "2"]
OURS = [("", "uncond", CHAINS), ("_1chain", "uncond", []), ("_xla", "uncond", ["--xla"]),
        ("_bf16", "uncond", ["--precision", "mixed_bfloat16", *CHAINS]),
        ("", "cond_label", CHAINS), ("", "cond_label_injector", CHAINS),
        ("", "cond_image", CHAINS), ("", "mirrored", [])]
PEER_RUNS = [("tfp_function", "tfp", ["tfp_glow_bench.py", "--mode", "function", "--inter", "2"]),
             ("tfp_xla", "tfp", ["tfp_glow_bench.py", "--mode", "xla", "--inter", "2"]),
             ("torch_normflows", "torch", ["torch_glow_bench.py", "--impl", "normflows"]),
             ("torch_freia", "torch", ["torch_glow_bench.py", "--impl", "freia"]),
             ("torch_freia_cond", "torch", ["torch_glow_bench.py", "--impl", "freia", "--cond"])]


def _run(cmd, env, timeout):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_gflops(env) -> float:
    code = ("import time, tensorflow as tf; tf.config.threading.set_intra_op_parallelism_threads(2);"
            "tf.config.threading.set_inter_op_parallelism_threads(1);"
            "a = tf.random.uniform((2048, 2048)); b = tf.random.uniform((2048, 2048));"
            "f = tf.function(lambda: tf.matmul(a, b)); f().numpy(); best = 0\n"
            "for _ in range(7):\n"
            "  t = time.perf_counter(); [f().numpy() for _ in range(5)]\n"
            "  best = max(best, 5 * 2 * 2048**3 / (time.perf_counter() - t) / 1e9)\n"
            "print(best)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    return float(proc.stdout.strip().splitlines()[-1])


def table(results: dict, peak: float) -> str:
    def get(r, key):
        return r[key]["median"]

    peers = {k: v for k, v in results.items() if not k.startswith("tfcflow") and k != "head_to_head"}
    best_peer = {m: max((get(r, m) for r in peers.values()), default=None) for m in METRICS}
    lines = ["| run | params (effective) | train img/s b32 | x best peer | logprob img/s b64 | x best peer | "
             "sample img/s b64 | x best peer | train % of peak | peak RSS MB train | round-trip err | 1st step s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "head_to_head":
            continue
        macs = r.get("macs_per_image", 49_385_472)
        frac = get(r, "train_ips") * 3 * 2 * macs / 1e9 / peak
        ratio = lambda m: f"{get(r, m) / best_peer[m]:.2f}" if best_peer[m] else "-"  # noqa: E731
        lines.append(f"| {name} | {r.get('params_effective', r.get('params'))} | "
                     f"{get(r, 'train_ips'):.1f} | {ratio('train_ips')} | "
                     f"{get(r, 'logprob_ips'):.0f} | {ratio('logprob_ips')} | "
                     f"{get(r, 'sample_ips'):.0f} | {ratio('sample_ips')} | "
                     f"{100 * frac:.1f}% | {r['peak_rss_after_train_mb']:.0f} | {r['inv_err_max']:.1e} | "
                     f"{r.get('train_first_step_s', 0):.1f} |")
    h = results.get("head_to_head")
    if h:
        f = lambda k: "{median:.2f}x ({min:.2f}-{max:.2f})".format(**h[k])  # noqa: E731
        lines += ["", f"One process, alternating timed blocks ({h['rounds']} rounds of {h['calls']} calls, "
                  "bench/head_to_head.py; our model as ONE chain, both at TensorFlow's default threads), "
                  "ours / TFP, median (min-max) of the per-round ratios: "
                  f"log-prob vs TFP+XLA {f('logprob_vs_tfp_xla')}, vs TFP tf.function "
                  f"{f('logprob_vs_tfp_function')}; sampling vs TFP tf.function {f('sample_vs_tfp_function')}; "
                  f"our {h['networks']} networks alone (log-prob's dense work) vs TFP+XLA's log-prob "
                  f"{f('networks_only_vs_tfp_xla')}, our log-prob / our networks alone {f('logprob_vs_networks_only')}"]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="folder for the JSON results and table.md")
    p.add_argument("--tpy", default=None, help="python with torch, normflows, FrEIA (runs the PyTorch peers)")
    p.add_argument("--no-tfp", action="store_true", help="skip the TFP peer")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated subset of our variants")
    a = p.parse_args(argv)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if a.smoke:
        env["BENCH_MAX_WAIT"] = "0"
    results = {}
    for suffix, variant, flags in OURS:
        if a.only and variant not in a.only.split(","):
            continue
        name = "tfcflow_" + variant + suffix
        cmd = [sys.executable, os.path.join(HERE, "glow_bench.py"), "--variant", variant, *flags]
        cmd += ["--smoke"] if a.smoke else []
        results[name] = _run(cmd, env, 3600)
        print(name, json.dumps({k: results[name][k]["median"] for k in METRICS}), flush=True)
    if not a.no_tfp:
        cmd = [sys.executable, os.path.join(HERE, "head_to_head.py")] + (["--smoke"] if a.smoke else [])
        results["head_to_head"] = _run(cmd, env, 3600)
        print("head_to_head", json.dumps(results["head_to_head"]["logprob_vs_tfp_xla"]), flush=True)
    if not a.smoke:
        for name, kind, args in PEER_RUNS:
            python = sys.executable if kind == "tfp" else a.tpy
            if python is None or (kind == "tfp" and a.no_tfp) or not os.path.isdir(PEERS):
                continue
            out = os.path.join(a.out or "/tmp", f"peer_{name}.json")
            results[name] = _run([python, os.path.join(PEERS, args[0]), *args[1:], "--out", out], env, 3600)
            print(name, json.dumps({k: results[name][k]["median"] for k in METRICS}), flush=True)
    peak = peak_gflops(env) if not a.smoke else 185.0
    text = f"float32 matmul peak (TF, 2048^2, best of 7): {peak:.1f} GFLOP/s\n\n" + table(results, peak)
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(dict(peak_gflops=peak, results=results), f, indent=1)
        with open(os.path.join(a.out, "table.md"), "w") as f:
            f.write(text + "\n")
    return dict(peak=peak, results=results, table=text)


if __name__ == "__main__":
    main()
