"""Evaluation hook of the colorization jobs (scikit-image photo patches; the test split is a photo
never seen in training). Test bits/dim comes from the trainer; this adds the PSNR of the best-of-10
colorization next to the gray input replicated to RGB, and writes `colorization.png`: rows of
[gray input, ground truth, best of 10, 4 samples]."""
import os

import numpy as np

EVAL_IMAGES = {True: 16, False: 200}
N, TEMPERATURE = 10, 0.7


def evaluate(model, config, context):
    from tfcflow import metrics
    from tfcflow.callbacks import image_grid
    from tfcflow.images import save_png

    fast = config["train"]["steps"] < 1000
    x, c = context.first_test_examples(EVAL_IMAGES[fast])
    best, samples = [], []
    for start in range(0, len(x), 25):
        rep = metrics.best_of_n_report(model, x[start:start + 25], c[start:start + 25], N, TEMPERATURE,
                                       seed=config["seed"] + start)
        best.append(rep["best"])
        samples.append(rep["samples"][:, :4])
    best, samples = np.concatenate(best), np.concatenate(samples)
    gray = np.repeat(c.astype(np.float32) / 255.0, 3, axis=-1)
    out = dict(eval_images=len(x), temperature=TEMPERATURE, n=N,
               psnr_best_of_10=float(metrics.psnr(best, x).mean()),
               psnr_gray_baseline=float(metrics.psnr(gray, x).mean()))
    if context.chief:
        k = min(8, len(x))
        rows = [np.stack([gray[i], x[i] / 255.0, best[i], *samples[i]]) for i in range(k)]
        out["figure"] = save_png(image_grid(np.concatenate(rows), 7),
                                 os.path.join(context.out_dir, "colorization.png"), overwrite=True)
    return out
