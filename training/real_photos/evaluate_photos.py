"""Evaluation of an image run on real photographs: one temperature chosen on the validation photos,
then the held-out photos scored with it. Resumable: each photo's result is a file.

    # 1. choose the temperature on the validation photos (centre crops; never the held-out ones)
    python training/real_photos/evaluate_photos.py RUN --split validation --crop 384 \\
        --temperatures 0.3 0.5 0.7 0.9
    # 2. score the held-out photos (whole for super-resolution; --crop 512 for the other tasks)
    python training/real_photos/evaluate_photos.py RUN --split test

The photos are ``FOLDER/<split>`` of the run's ``data.folder`` (``tfcflow data prepare-photos
--validation K`` writes ``validation/``). Per photo and temperature, with ``SAMPLES`` (19) draws:

- ``best_of_10``: of the first 10 samples, the one of highest log p(x | c) (no ground truth: the
  deployable choice), PSNR / SSIM against the photo;
- the task's baseline (bicubic upsampling; grey input given the photos' mean chroma; flat fill and
  scikit-image's biharmonic inpainting of the hole), and for inpainting every figure inside the hole;
- ``consistency_db``: how well the samples explain the input (``tfcflow.evaluation.consistency``:
  LR consistency for super-resolution), ``diversity`` (mean per-pixel std), ``coverage_90`` /
  ``coverage_50`` (share of true pixel values inside the 19 samples' central intervals).

The validation step keeps the temperature of highest mean best-of-10 PSNR (the headline figure) in
``RUN/photo_eval/temperature.json`` (the other figures are reported for every temperature: the
trade-off between PSNR and calibration); the test step reads it. Results:
``RUN/photo_eval/<split>/<photo>_T<t>_crop<c>.json`` per photo, ``RUN/photo_eval/<split>.json``
(means), ``RUN/photo_eval/<split>.png`` (labelled crops: input, baseline, truth, best of 10, two
samples, diversity, 90% calibration map); a test step at temperatures given by ``--temperatures``
writes ``test_T<t>_crop<c>.json`` / ``.png`` instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

#: each task's reference predictions (``_baselines``), the first one drawn in the figure
BASELINES = {"super_resolution": ("bicubic",), "colorization": ("grey_mean_colour",),
             "inpainting": ("flat_fill", "biharmonic")}
SAMPLES = 19
BEST_OF = 10
CHUNK = 2  # sample rows per call: a whole photo's activations x 19 would not fit in memory at once
FIGURE_CROP = 160


def _photos(folder: str, split: str):
    from tfcflow.data import image_folder

    path = os.path.join(folder, split)
    if not os.path.isdir(path):
        raise SystemExit(f"evaluate_photos: {path} does not exist (prepare the photos with "
                         f"`tfcflow data prepare-photos SOURCE FOLDER --validation K`)")
    files = image_folder.image_files(path)
    return files, image_folder.load_images(files, 3)


def _pair(image: np.ndarray, cfg: dict, multiple: int, crop, index: int):
    """(target uint8 [H, W, C], condition) of one photo: centre crop to ``crop`` (or whole), to a
    multiple of the model's size multiple; the task's condition (inpainting: a seeded random hole)."""
    import tensorflow as tf

    from tfcflow.data import tasks

    d = cfg["data"]
    h, w = image.shape[:2]
    if crop:
        h, w = min(h, crop), min(w, crop)
    h, w = h // multiple * multiple, w // multiple * multiple
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    target = image[top:top + h, left:left + w]
    cond = tasks.make_condition(d["task"], tf.constant(target), factor=d["factor"],
                                downsample_method=d["downsample"], mask="random",
                                mask_seed=tf.constant([cfg["seed"], index], tf.int32))
    return target, cond.numpy()


def _baselines(task: str, target: np.ndarray, cond: np.ndarray, mean_chroma) -> dict:
    """The task's reference predictions, float [H, W, C] in [0, 1]."""
    import tensorflow as tf

    from tfcflow import metrics

    if task == "super_resolution":
        return {"bicubic": metrics.upsample(cond[None], target.shape[:2])[0]}
    if task == "colorization":  # the grey input with the training photos' mean chroma (YIQ)
        y = cond.astype(np.float32) / 255.0
        yiq = np.concatenate([y, np.broadcast_to(mean_chroma, y.shape[:2] + (2,))], axis=-1)
        return {"grey_mean_colour": np.clip(tf.image.yiq_to_rgb(yiq).numpy(), 0, 1)}
    if task == "inpainting":
        from skimage.restoration import inpaint_biharmonic

        known = cond[..., -1] != 255
        pixels = cond[..., :3].astype(np.float32) / 255.0
        flat = pixels.copy()
        flat[~known] = pixels[known].mean(axis=0)
        return {"flat_fill": flat, "biharmonic": np.clip(inpaint_biharmonic(pixels, ~known, channel_axis=-1), 0, 1)}
    raise SystemExit(f"evaluate_photos: task {task!r} has no photo evaluation")


def _psnr(a: np.ndarray, b: np.ndarray, region=None) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    err = (a - b) ** 2
    mse = err[region].mean() if region is not None else err.mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from tfcflow import metrics

    return float(metrics.ssim(a[None].astype(np.float32), b[None].astype(np.float32))[0])


def photo_report(model, cfg: dict, target: np.ndarray, cond: np.ndarray, temperature: float, seed: int,
                 mean_chroma):
    """The figures of one photo at one temperature, and the arrays of its figure row."""
    from tfcflow import diagnostics
    from tfcflow.evaluation import consistency

    task = cfg["data"]["task"]
    truth = target.astype(np.float64) / 255.0
    samples = model.sample(cond[None], temperature=temperature, seed=seed, num_samples=SAMPLES,
                           batch_size=CHUNK).numpy()[0]
    first = samples[:BEST_OF]
    lp = np.concatenate([model.log_prob(first[i:i + CHUNK], np.repeat(cond[None], len(first[i:i + CHUNK]), 0)).numpy()
                         for i in range(0, len(first), CHUNK)])
    # judged as the images a user gets: 8-bit, like the truth (exact ties count inside an interval)
    samples = np.round(np.clip(samples.astype(np.float64), 0.0, 1.0) * 255.0) / 255.0
    first = samples[:BEST_OF]
    best = first[int(np.argmax(lp))]
    # inpainting is judged inside the hole: elsewhere every prediction is the input
    region = (cond[..., -1] == 255) if task == "inpainting" else None
    out = {"temperature": temperature, "height": int(target.shape[0]), "width": int(target.shape[1]),
           "psnr_best_of_10": _psnr(best, truth, region), "ssim_best_of_10": _ssim(best, truth),
           "psnr_oracle_best_of_10": max(_psnr(s, truth, region) for s in first),
           "psnr_mean_of_10": _psnr(first.mean(0), truth, region)}
    baselines = _baselines(task, target, cond, mean_chroma)
    for name, pred in baselines.items():
        out[f"psnr_{name}"] = _psnr(pred, truth, region)
        out[f"ssim_{name}"] = _ssim(pred, truth)
    out["consistency_db"] = float(np.mean(consistency(task, samples, target, cond, factor=cfg["data"]["factor"],
                                                      downsample_method=cfg["data"]["downsample"])))
    spread = diagnostics.diversity(samples)
    cal = diagnostics.calibration(samples, truth)
    out.update(diversity=spread["mean"], coverage_90=cal[0.9]["coverage"], coverage_50=cal[0.5]["coverage"])
    if region is not None:
        out.update(coverage_90_hole=float(cal[0.9]["map"][region].mean()),
                   coverage_50_hole=float(cal[0.5]["map"][region].mean()))
    row = {"input": cond, "baseline": baselines[BASELINES[task][0]], "truth": truth, "best": best,
           "samples": samples[:2], "diversity": spread["map"], "calibration": cal[0.9]["map"]}
    return out, row


def _mean_chroma(folder: str, cfg: dict):
    """The mean I / Q chroma of the training photos (the colorization baseline's colour)."""
    if cfg["data"]["task"] != "colorization":
        return None
    import tensorflow as tf

    files, images = _photos(folder, "train")
    iq = [tf.image.rgb_to_yiq(im.astype(np.float32) / 255.0).numpy()[..., 1:].reshape(-1, 2).mean(0) for im in images]
    return np.mean(iq, axis=0)


def _figure_crops(row: dict) -> dict:
    """The centre ``FIGURE_CROP`` square of every panel of a photo's figure row (kept per photo, so
    that a resumed evaluation can draw the figure without sampling again)."""
    from tfcflow import metrics

    h, w = row["truth"].shape[:2]
    s = min(FIGURE_CROP, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    cond = row["input"]
    if cond.shape[:2] != (h, w):  # super-resolution: the low-resolution input shown at the output's size
        shown = metrics.upsample(cond[None], (h, w), method="nearest")[0]
    elif cond.shape[-1] == 1:  # colorization: the grey input
        shown = np.repeat(cond.astype(np.float32) / 255.0, 3, axis=-1)
    else:  # inpainting: the known pixels, the hole black
        shown = cond[..., :3].astype(np.float32) / 255.0 * (cond[..., 3:] != 255)
    panels = {"input": shown, "baseline": row["baseline"], "truth": row["truth"], "best": row["best"],
              "sample_1": row["samples"][0], "sample_2": row["samples"][1], "diversity": row.get("diversity"),
              "calibration": row.get("calibration")}
    return {k: np.asarray(v[top:top + s, left:left + s], np.float32) for k, v in panels.items() if v is not None}


def _figure(rows, names, task: str, path: str, temperature: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["input", {"super_resolution": "bicubic", "colorization": "grey + mean colour",
                        "inpainting": "flat fill"}[task], "ground truth", "best of 10",
              f"sample (T={temperature})", f"sample (T={temperature})", "diversity (std)", "inside 90% interval"]
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(1.9 * len(titles), 1.9 * len(rows) + 0.4),
                             squeeze=False)
    for r, (row, name) in enumerate(zip(rows, names)):
        panels = [row.get(k) for k in ("input", "baseline", "truth", "best", "sample_1", "sample_2", "diversity",
                                       "calibration")]
        for ax, title, panel in zip(axes[r], titles, panels):
            ax.axis("off")
            if panel is None:
                continue
            if panel.ndim == 2:  # maps: diversity on its own scale, calibration in [0, 1]
                ax.imshow(panel, cmap="magma" if "diversity" in title else "gray",
                          vmin=0, vmax=max(float(panel.max()), 1e-6) if "diversity" in title else 1)
            else:
                ax.imshow(np.clip(panel, 0, 1))
            if r == 0:
                ax.set_title(title, fontsize=8)
        axes[r][0].text(-0.05, 0.5, name[:22], transform=axes[r][0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarize(results, temperatures, task: str) -> dict:
    """``{str(T): means over the photos}`` of the per-photo reports, with each baseline's gain
    (``gain_over_<baseline>_db``) and the count of photos whose best of 10 beats it."""
    summary = {}
    for t in temperatures:
        at_t = [r for r in results if r["temperature"] == t]
        keys = [k for k in at_t[0] if isinstance(at_t[0][k], float) and k not in ("temperature", "seconds")]
        summary[str(t)] = {k: float(np.mean([r[k] for r in at_t])) for k in keys}
        summary[str(t)]["photos"] = len(at_t)
        for base in BASELINES[task]:
            summary[str(t)][f"gain_over_{base}_db"] = (summary[str(t)]["psnr_best_of_10"]
                                                       - summary[str(t)][f"psnr_{base}"])
            summary[str(t)][f"photos_above_{base}"] = sum(r["psnr_best_of_10"] > r[f"psnr_{base}"] for r in at_t)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--split", choices=("validation", "test"), required=True)
    p.add_argument("--temperatures", type=float, nargs="+", default=None,
                   help="validation: the grid; test: default the validated temperature")
    p.add_argument("--crop", type=int, default=0, help="centre crop size in pixels (0: whole photos)")
    p.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    p.add_argument("--folder", default=None, help="the prepared photo folder (default: the run's data.folder, "
                                                   "relative to this script's folder like the job configs')")
    p.add_argument("--figure-out", default=None, help="the figure's path (default RUN/photo_eval/<record>.png)")
    p.add_argument("--figure-rows", type=int, nargs="*", default=None, metavar="I",
                   help="the photos (indices in file order) in the figure (default: all)")
    p.add_argument("--no-ema", action="store_true")
    args = p.parse_args(argv)
    from tfcflow import _runtime
    _runtime.start()  # before TensorFlow loads: its C++ log quiet unless asked for; the devices named

    from tfcflow.trainer import load_run, run_config

    try:
        cfg = run_config(args.run)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"evaluate_photos: {e}") from None
    out_dir = os.path.join(args.run, "photo_eval")
    os.makedirs(os.path.join(out_dir, args.split), exist_ok=True)
    # the record's name: <split> for the validated temperature, else it says which temperatures and crop
    label = args.split if args.split == "validation" or not args.temperatures else (
        f"test_T{'_'.join(str(t) for t in args.temperatures)}_crop{args.crop}")
    if args.split == "test" and not args.temperatures:
        chosen = os.path.join(out_dir, "temperature.json")
        if not os.path.exists(chosen):
            raise SystemExit(f"evaluate_photos: no {chosen}: run --split validation first, or pass --temperatures T")
        with open(chosen) as f:
            args.temperatures = [json.load(f)["temperature"]]
    temperatures = args.temperatures or [0.3, 0.5, 0.7, 0.9]
    folder = args.folder or os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          cfg["data"]["folder"]))
    files, images = _photos(folder, args.split)
    if args.limit:
        files, images = files[:args.limit], images[:args.limit]
    model = load_run(args.run, use_ema=not args.no_ema)
    multiple = 2 ** int(cfg["model"]["levels"])
    if cfg["data"]["task"] == "super_resolution":
        multiple *= int(cfg["data"]["factor"])
    mean_chroma = _mean_chroma(folder, cfg)
    results, rows, names = [], [], []
    for index, (f, image) in enumerate(zip(files, images)):
        name = os.path.splitext(os.path.basename(f))[0]
        target, cond = _pair(image, cfg, multiple, args.crop, index)
        for t in temperatures:
            weights = "_raw" if args.no_ema else ""  # the raw weights' results are kept apart from the EMA's
            cache = os.path.join(out_dir, args.split, f"{name}_T{t}_crop{args.crop}{weights}.json")
            crops = cache[:-len(".json")] + ".npz"
            if os.path.exists(cache):
                with open(cache) as fh:
                    results.append(json.load(fh))
                if args.split == "test":
                    rows.append(dict(np.load(crops)))
                    names.append(name)
                continue
            t0 = time.time()
            rep, row = photo_report(model, cfg, target, cond, t, cfg["seed"] + index, mean_chroma)
            rep.update(photo=name, seconds=time.time() - t0)
            results.append(rep)
            if args.split == "test":
                rows.append(_figure_crops(row))
                names.append(name)
                np.savez_compressed(crops + ".tmp.npz", **rows[-1])
                os.replace(crops + ".tmp.npz", crops)
            tmp = cache + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(rep, fh, indent=1)
            os.replace(tmp, cache)
            print(f"{name} T={t}: best of 10 {rep['psnr_best_of_10']:.2f} dB, "
                  + ", ".join(f"{k[5:]} {v:.2f}" for k, v in rep.items() if k.startswith("psnr_") and "best" not in k)
                  + f" ({rep['seconds']:.0f} s)", flush=True)
    summary = summarize(results, temperatures, cfg["data"]["task"])
    record = {"run": os.path.abspath(args.run), "split": args.split, "crop": args.crop, "photos": len(files),
              "by_temperature": summary}
    if args.split == "validation":
        best_t = max(temperatures, key=lambda t: summary[str(t)]["psnr_best_of_10"])
        record["chosen_temperature"] = best_t
        with open(os.path.join(out_dir, "temperature.json"), "w") as fh:
            json.dump({"temperature": best_t, "rule": "highest mean best-of-10 PSNR on the validation photos",
                       "crop": args.crop, "grid": temperatures}, fh, indent=1)
    elif rows:
        keep = args.figure_rows if args.figure_rows else range(len(rows))
        record["figure"] = _figure([rows[i] for i in keep], [names[i] for i in keep], cfg["data"]["task"],
                                   args.figure_out or os.path.join(out_dir, f"{label}.png"), temperatures[-1])
    with open(os.path.join(out_dir, f"{label}.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    print(json.dumps(record["by_temperature"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
