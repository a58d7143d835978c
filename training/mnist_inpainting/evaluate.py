"""Evaluation hook of the MNIST inpainting jobs (central 14x14 hole).

On the first test images: PSNR of the best-of-10 completion (highest conditional log-likelihood,
temperature 0.5) and of a single sample vs the masked-mean baseline (the hole filled with the mean
training image), each on the whole composite image (known pixels pasted back) and on the hole
alone. Writes `inpainting.png`: rows of [masked input, masked-mean, ground truth, best of 10, 4 samples].
"""
import os

import numpy as np

EVAL_IMAGES = {True: 32, False: 500}
N, TEMPERATURE = 10, 0.5


def _psnr(a, b, mask=None):
    err = (a - b) ** 2
    if mask is not None:
        err = (err * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))
    else:
        err = err.mean((1, 2, 3))
    return 10 * np.log10(1.0 / np.maximum(err, 1e-12))


def evaluate(model, config, context):
    from tfcflow import metrics
    from tfcflow.callbacks import image_grid
    from tfcflow.images import save_png
    from tfcflow.data import tasks

    fast = config["train"]["steps"] < 1000
    n_eval = EVAL_IMAGES[fast]
    x, c = context.first_test_examples(n_eval)
    x = x.astype(np.float32) / 255.0
    mask = (c[..., 1:] == 255).astype(np.float32)
    # the masked-mean baseline: the mean training image inside the hole
    d = config["data"]
    train = tasks.task_dataset(d["dataset"], d["train_split"], d["task"], data_dir=context.data_dir,
                               batch_size=1000, shuffle=False, mask=d["mask"])
    total, count = 0.0, 0
    for t, _ in train:
        total += t.numpy().astype(np.float64).sum(0)
        count += len(t)
    mean_image = (total / count / 255.0).astype(np.float32)
    baseline = x * (1 - mask) + mean_image[None] * mask
    best, first = [], []
    for start in range(0, len(x), 50):
        rep = metrics.best_of_n_report(model, x[start:start + 50], c[start:start + 50], N, TEMPERATURE,
                                       seed=config["seed"] + start)
        best.append(rep["best"])
        first.append(rep["first"])
    paste = lambda s: x * (1 - mask) + s * mask  # noqa: E731 - keep the known pixels
    best, first = paste(np.concatenate(best)), paste(np.concatenate(first))
    out = dict(eval_images=len(x), temperature=TEMPERATURE, n=N,
               psnr_best_of_10=float(_psnr(best, x).mean()), psnr_single=float(_psnr(first, x).mean()),
               psnr_masked_mean=float(_psnr(baseline, x).mean()),
               psnr_hole_best_of_10=float(_psnr(best, x, mask).mean()),
               psnr_hole_single=float(_psnr(first, x, mask).mean()),
               psnr_hole_masked_mean=float(_psnr(baseline, x, mask).mean()))
    out["psnr_gain_over_masked_mean"] = out["psnr_best_of_10"] - out["psnr_masked_mean"]
    if context.chief:
        k = 8
        samples = model.sample(np.repeat(c[:k], 4, axis=0), temperature=TEMPERATURE, seed=config["seed"]).numpy()
        samples = samples.reshape((k, 4) + x.shape[1:])
        rows = [np.stack([x[i] * (1 - mask[i]), baseline[i], x[i], best[i],
                          *[x[i] * (1 - mask[i]) + s * mask[i] for s in samples[i]]]) for i in range(k)]
        out["figure"] = save_png(image_grid(np.concatenate(rows), 8),
                                 os.path.join(context.out_dir, "inpainting.png"), overwrite=True)
    return out
