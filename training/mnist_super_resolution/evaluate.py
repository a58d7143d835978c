"""Evaluation hook of the MNIST x4 super-resolution jobs (called by `tfcflow train`).

On the first `EVAL_IMAGES` test images: PSNR / SSIM of the best-of-10 sample (highest conditional
log-likelihood, temperature 0.5) vs a single sample vs bicubic upsampling, and how often the
ground truth scores a higher conditional log-likelihood than all 10 samples. Writes
`super_resolution.png`: rows of [low-res, bicubic, ground truth, best of 10, 4 samples].
"""
import os

import numpy as np

EVAL_IMAGES = {True: 32, False: 500}  # fast runs / full runs
N, TEMPERATURE = 10, 0.5


def evaluate(model, config, context):
    from tfcflow import metrics
    from tfcflow.callbacks import image_grid
    from tfcflow.images import save_png

    fast = config["train"]["steps"] < 1000
    x, c = context.first_test_examples(EVAL_IMAGES[fast])
    rep = {}
    for start in range(0, len(x), 50):  # bounded memory: 50 conditions x 10 samples at a time
        part = metrics.best_of_n_report(model, x[start:start + 50], c[start:start + 50], N, TEMPERATURE,
                                        seed=config["seed"] + start)
        for k, v in part.items():
            rep.setdefault(k, []).append(v)
    rep = {k: np.concatenate(v) for k, v in rep.items()}
    bicubic = metrics.upsample(c, x.shape[1:3])
    out = dict(eval_images=len(x), temperature=TEMPERATURE, n=N,
               psnr_best_of_10=float(rep["psnr_best"].mean()), psnr_single=float(rep["psnr_first"].mean()),
               psnr_bicubic=float(metrics.psnr(bicubic, x).mean()),
               ssim_best_of_10=float(rep["ssim_best"].mean()), ssim_single=float(rep["ssim_first"].mean()),
               ssim_bicubic=float(metrics.ssim(bicubic, x).mean()),
               target_beats_all_10=float(rep["target_beats_all"].mean()))
    out["psnr_gain_over_bicubic"] = out["psnr_best_of_10"] - out["psnr_bicubic"]
    if context.chief:
        k = 8
        lr = metrics.upsample(c[:k], x.shape[1:3], method="nearest")
        rows = [np.stack([lr[i], bicubic[i], x[i] / 255.0, rep["best"][i], *rep["samples"][i, :4]]) for i in range(k)]
        out["figure"] = save_png(image_grid(np.concatenate(rows), 8),
                                 os.path.join(context.out_dir, "super_resolution.png"), overwrite=True)
    return out
