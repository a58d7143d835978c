"""Throughput of a trained photo model where a photographer waits, in megapixels per second:
training on its patch stream, sampling and log-prob on crops of the held-out photos; float32
against ``mixed_bfloat16`` (the same weights rebuilt under the mixed policy, as
``bench/mixed_precision_error.py`` does), with bf16's effect on PSNR and bits/dim on the same crops
and seeds, and where the time goes (op types under tf.profiler).

    python bench/photo_throughput.py runs/real_photos_sr [--photos 3] [--crop 512] [--steps 20]
        [--samples 4] [--out docs/benchmarks/photo_throughput.json] [--smoke]

Each precision runs in its own process (Keras' dtype policy is global, and each gets its own
graphs; ``--smoke`` runs both in this one, for CI). Training: ``--steps`` warm steps of the run's
optimizer settings on its own patch stream (the first steps, which trace, are excluded): target
megapixels per second. Sampling / log-prob: one image per call at the chosen crop, traced once,
the median over the crops. bf16 needs hardware
support to pay (``lscpu``: ``amx_bf16`` or ``avx512_bf16``): the CPU flags are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PRECISIONS = ("float32", "mixed_bfloat16")


def _cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def _top_ops(fn, top: int = 8) -> list:
    """[(op type, share of op time)] of one profiled call of ``fn``."""
    import glob
    import tempfile

    import tensorflow as tf

    sys.path.insert(0, HERE)
    from profile_train_step import op_table

    logdir = tempfile.mkdtemp(prefix="tfcflow_photo_profile_")
    tf.profiler.experimental.start(logdir)
    fn()
    tf.profiler.experimental.stop()
    totals, _ = op_table(sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb*"), recursive=True))[-1])
    total = sum(v[0] for v in totals.values()) or 1.0
    return [(k, round(v[0] / total, 3)) for k, v in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]]


def worker(a) -> dict:
    """One precision: the measurements of this process."""
    import tensorflow as tf

    from tfcflow import metrics, optim, trainer
    from tfcflow.data import image_folder

    ref = trainer.load_run(a.run, use_ema=True)
    cfg = trainer.run_config(a.run)
    d, t = cfg["data"], cfg["train"]
    if a.precision != "float32":
        optim.set_precision(a.precision)
        model = type(ref).from_config(ref.get_config())
        for w, v in zip(model.weights, ref.weights):
            w.assign(v.numpy())
    else:
        model = ref
    folder = a.folder or os.path.normpath(os.path.join(ROOT, "training", "real_photos", d["folder"]))
    out = {"precision": a.precision}
    # sampling and log-prob on centre crops of the held-out photos
    test = image_folder.whole_images(folder, d["task"], d.get("factor", 4), split="test",
                                     multiple=2 ** int(cfg["model"]["levels"]), seed=cfg["seed"],
                                     downsample_method=d["downsample"], mask=d.get("mask", "random"))
    crops = []
    for x, c in test.take(a.photos):
        x, c = x.numpy(), c.numpy()
        s = min(a.crop, x.shape[1], x.shape[2])
        f = x.shape[1] // c.shape[1]  # 4 for super-resolution, 1 otherwise
        top, left = (x.shape[1] - s) // 2 // 16 * 16, (x.shape[2] - s) // 2 // 16 * 16
        crops.append((x[:, top:top + s, left:left + s], c[:, top // f:(top + s) // f, left // f:(left + s) // f]))
    sample = tf.function(lambda c, seed: model.sample(c, temperature=a.temperature, seed=seed))
    log_prob = tf.function(lambda x, c: model.log_prob(x, c))
    times_s, times_lp, psnr, bpd = [], [], [], []
    for i, (x, c) in enumerate(crops):
        sample(c, tf.constant([1, i])).numpy()  # trace at this size
        log_prob(x, c).numpy()
        mp = x.shape[1] * x.shape[2] / 1e6
        for j in range(a.samples):
            t0 = time.perf_counter()
            y = sample(c, tf.constant([j + 2, i])).numpy()
            times_s.append((time.perf_counter() - t0) / mp)
            psnr.append(float(metrics.psnr(y, x)[0]))
        t0 = time.perf_counter()
        log_prob(x, c).numpy()  # the traced call, as sample's
        times_lp.append((time.perf_counter() - t0) / mp)
        bpd.append(float(model.bits_per_dim(x, c).numpy()[0]))
    out.update(sample_mp_per_s=1 / statistics.median(times_s), log_prob_mp_per_s=1 / statistics.median(times_lp),
               psnr=psnr, bits_per_dim=bpd, crop=a.crop, photos=len(crops), samples=a.samples)
    x, c = crops[0]
    out["sample_ops"] = _top_ops(lambda: sample(c, tf.constant([0, 0])).numpy())
    # training on the run's patch stream, from the trained weights (the step's cost does not depend on them)
    model.compile(optimizer=optim.make_optimizer(t["learning_rate"], ema=None, precision=a.precision),
                  clipnorm=t.get("clipnorm"))
    ds = image_folder.patch_dataset(folder, d["task"], d["patch_size"], t["batch_size"], 1, d.get("factor", 4),
                                    downsample_method=d["downsample"], mask=d.get("mask", "random"),
                                    flips=d["flips"], min_patch_std=d.get("min_patch_std", 0.0))
    ds = ds.prefetch(2)
    model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=a.steps, verbose=0)
    wall = time.perf_counter() - t0
    out.update(train_mp_per_s=a.steps * t["batch_size"] * d["patch_size"] ** 2 / wall / 1e6,
               train_s_per_step=wall / a.steps, train_steps=a.steps, batch=t["batch_size"], patch=d["patch_size"])
    out["train_ops"] = _top_ops(lambda: model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--photos", type=int, default=3)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--temperature", type=float, default=None, help="default: the run's validated temperature")
    p.add_argument("--folder", default=None, help="the prepared photos (default: the run's data.folder)")
    p.add_argument("--out", default=None)
    p.add_argument("--precision", default=None, help=argparse.SUPPRESS)  # a worker process
    p.add_argument("--smoke", action="store_true", help="one photo, one sample, 2 steps (CI)")
    a = p.parse_args(argv)
    if a.smoke:
        a.photos, a.samples, a.steps = 1, 1, 2
    from tfcflow import _runtime
    _runtime.start(announce=not a.precision)  # TensorFlow's C++ log quiet unless asked for
    if a.temperature is None:
        chosen = os.path.join(a.run, "photo_eval", "temperature.json")
        a.temperature = json.load(open(chosen))["temperature"] if os.path.exists(chosen) else 0.8
    if a.precision:
        print("RESULT " + json.dumps(worker(a)), flush=True)
        return {}
    env = dict(os.environ)
    results = []
    for precision in PRECISIONS:
        if a.smoke:  # CI: both precisions in this process (the policy put back after each), no timing claims
            from tfcflow import optim
            try:
                results.append(worker(argparse.Namespace(**{**vars(a), "precision": precision})))
            finally:
                optim.set_precision("float32")
            continue
        args = [sys.executable, os.path.abspath(__file__), a.run, "--precision", precision, "--photos", str(a.photos),
                "--crop", str(a.crop), "--steps", str(a.steps), "--samples", str(a.samples),
                "--temperature", str(a.temperature)] + (["--folder", a.folder] if a.folder else [])
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            raise SystemExit(f"photo_throughput: the {precision} worker failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT "):]))
    f32, b16 = results
    record = {"run": a.run, "temperature": a.temperature, "cpu_bf16_flags": _cpu_flags(), "results": results,
              "bf16_over_float32": {k: b16[k] / f32[k] for k in ("train_mp_per_s", "sample_mp_per_s",
                                                                  "log_prob_mp_per_s")},
              "bf16_psnr_change_db": statistics.mean(b16["psnr"]) - statistics.mean(f32["psnr"]),
              "bf16_bits_per_dim_change": statistics.mean(b16["bits_per_dim"]) - statistics.mean(f32["bits_per_dim"])}
    print("| precision | train MP/s | sample MP/s | log-prob MP/s | mean PSNR of the samples | bits/dim |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['precision']} | {r['train_mp_per_s']:.3f} | {r['sample_mp_per_s']:.3f} | "
              f"{r['log_prob_mp_per_s']:.3f} | {statistics.mean(r['psnr']):.2f} | "
              f"{statistics.mean(r['bits_per_dim']):.4f} |")
    print(json.dumps({k: v for k, v in record.items() if k != "results"}, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(record, fh, indent=1)
    return record


if __name__ == "__main__":
    main()
