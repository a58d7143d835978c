"""Evaluation hook of the photo x4 super-resolution jobs (called by `tfcflow train` / `tfcflow evaluate`).

Every held-out photo is evaluated whole (centre-cropped to a multiple of 2^levels): test bits/dim,
and for each temperature in `TEMPERATURES`, `N` samples of which we report PSNR / SSIM of

- `best_of_10`: the sample of highest conditional log-likelihood (what `best_of_n` returns, no
  ground truth needed: the deployable choice);
- `oracle_best_of_10`: the sample closest to the ground truth (the best-of-N figure of the
  papers' tables, an upper bound of what a selection could reach);
- `single`: the first sample alone; `mean_of_10`: the pixel mean of the samples,

against bicubic upsampling of the low-resolution input. Means are over photos (each photo counts
once, whatever its size). Writes `photo_super_resolution.png`: per photo a 128 x 128 crop of
[low-res (nearest), bicubic, ground truth, best of 10 at T=0.5, a sample at T=0.8].
"""
import os
import time

import numpy as np

N = 10
TEMPERATURES = (0.5, 0.8)
CHUNK = 2  # samples per call: a whole photo x 10 samples would not fit in memory at once


def _photo_report(model, x, c, seed):
    from tfcflow import metrics

    out = {"bits_per_dim": float(model.bits_per_dim(x, c).numpy()[0])}
    bicubic = metrics.upsample(c, x.shape[1:3])
    out["psnr_bicubic"] = float(metrics.psnr(bicubic, x)[0])
    out["ssim_bicubic"] = float(metrics.ssim(bicubic, x)[0])
    draws = {}
    for t in TEMPERATURES:
        samples = model.sample(c, temperature=t, seed=seed, num_samples=N, batch_size=CHUNK).numpy()[0]
        lp = np.concatenate([model.log_prob(samples[i:i + CHUNK], np.repeat(c, len(samples[i:i + CHUNK]), 0)).numpy()
                             for i in range(0, N, CHUNK)])
        target = np.repeat(x, N, 0)
        psnr, ssim = metrics.psnr(samples, target), metrics.ssim(samples, target)
        best, oracle = int(np.argmax(lp)), int(np.argmax(psnr))
        mean = samples.astype(np.float32).mean(0, keepdims=True)
        key = f"T{t}"
        out.update({f"psnr_best_of_10_{key}": float(psnr[best]), f"ssim_best_of_10_{key}": float(ssim[best]),
                    f"psnr_oracle_best_of_10_{key}": float(psnr[oracle]),
                    f"ssim_oracle_best_of_10_{key}": float(ssim[oracle]),
                    f"psnr_single_{key}": float(psnr[0]), f"ssim_single_{key}": float(ssim[0]),
                    f"psnr_mean_of_10_{key}": float(metrics.psnr(mean, x)[0]),
                    f"ssim_mean_of_10_{key}": float(metrics.ssim(mean, x)[0])})
        draws[t] = (samples[best], samples[0])
    return out, bicubic[0], draws


def evaluate(model, config, context):
    from tfcflow.callbacks import image_grid
    from tfcflow.images import save_png
    from tfcflow import metrics

    t0 = time.time()
    photos, rows = [], []
    for index, (x, c) in enumerate(context.test_ds):
        x, c = x.numpy(), c.numpy()
        rep, bicubic, draws = _photo_report(model, x, c, config["seed"] + index)
        rep.update(index=index, height=int(x.shape[1]), width=int(x.shape[2]))
        photos.append(rep)
        h, w = x.shape[1:3]
        s = min(128, h, w)
        top, left = (h - s) // 2, (w - s) // 2
        crop = lambda im: im[top:top + s, left:left + s]  # noqa: E731
        lr = metrics.upsample(c, (h, w), method="nearest")[0]
        # the samples are on [0, 1] already; the ground truth is uint8
        rows += [crop(lr), crop(bicubic), crop(x[0] / 255.0), crop(draws[0.5][0]), crop(draws[0.8][1])]
    keys = [k for k in photos[0] if k not in ("index", "height", "width")]
    out = {f"photo_{k}": float(np.mean([p[k] for p in photos])) for k in keys}
    for t in TEMPERATURES:
        out[f"photo_psnr_gain_best_of_10_T{t}"] = out[f"photo_psnr_best_of_10_T{t}"] - out["photo_psnr_bicubic"]
        out[f"photo_psnr_gain_oracle_best_of_10_T{t}"] = (out[f"photo_psnr_oracle_best_of_10_T{t}"]
                                                          - out["photo_psnr_bicubic"])
    out["photos"] = photos
    out["photo_eval_seconds"] = time.time() - t0
    if context.chief and rows:
        out["photo_figure"] = save_png(image_grid(np.stack(rows).astype(np.float32), 5),
                                       os.path.join(context.out_dir, "photo_super_resolution.png"), overwrite=True)
    return out
