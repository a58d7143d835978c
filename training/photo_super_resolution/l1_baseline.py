"""The learned residual base alone: what an L1-trained SR network of the same kind reaches.

Trains only ``up(c) + g(c)`` (g the ``ResidualUpsampler`` that ``residual="learned"`` uses, the same
width and depth as caflow_learned.json) with the L1 loss on the photo job's patches (the same folder,
patch stream and seed), then reports PSNR of its prediction on the held-out photos, whole, against
bicubic. It separates what the deterministic base contributes from what the flow adds or costs at a
temperature, and shows how the base improves with more steps (``--steps``).

    python training/photo_super_resolution/l1_baseline.py --steps 3250
"""
import argparse
import json
import os
import time

from tfcflow import _runtime

_runtime.start()  # before TensorFlow loads: its C++ log quiet unless asked for; the devices named

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcflow import metrics  # noqa: E402
from tfcflow.data import image_folder  # noqa: E402
from tfcflow.networks import ResidualUpsampler  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", default=os.path.join(HERE, "..", "..", "runs", "data", "bundled_photos"))
    p.add_argument("--steps", type=int, default=3250)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flips", default="both", choices=image_folder.FLIPS, help="image_folder.patch_dataset's flips")
    p.add_argument("--scales", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="patches of the photos downscaled by a random factor in [MIN, MAX] (default: none)")
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every this many steps (0: at the end)")
    a = p.parse_args(argv)
    keras.utils.set_random_seed(a.seed)
    factor = 4
    train = image_folder.patch_dataset(a.folder, "super_resolution", a.patch_size, a.batch_size, a.seed, factor,
                                       flips=a.flips, scales=a.scales)
    g = ResidualUpsampler(3, factor, a.width, a.depth)
    g.build((None, None, None, 3))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(a.lr, a.steps))

    def predict(c):
        c = tf.cast(c, tf.float32) / 255.0 - 0.5
        size = [tf.shape(c)[1] * factor, tf.shape(c)[2] * factor]
        return tf.image.resize(c, size, method="bicubic") + g(c) + 0.5  # in [0, 1] units

    @tf.function
    def step(x, c):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(tf.cast(x, tf.float32) / 255.0 - predict(c)))
        grads = tape.gradient(loss, g.trainable_variables)
        opt.apply_gradients(zip(grads, g.trainable_variables))
        return loss

    def self_ensemble(c, transforms):
        """The mean of T^-1 predict(T c) over flips (and transposes): the same network, averaged."""
        outs = []
        for t in transforms:
            flip_h, flip_w, transpose = t
            ct = c[:, ::-1] if flip_h else c
            ct = ct[:, :, ::-1] if flip_w else ct
            ct = tf.transpose(ct, [0, 2, 1, 3]) if transpose else ct
            out = predict(ct)
            out = tf.transpose(out, [0, 2, 1, 3]) if transpose else out
            out = out[:, :, ::-1] if flip_w else out
            outs.append(out[:, ::-1] if flip_h else out)
        return tf.add_n(outs) / len(outs)

    flips = [(h, w, False) for h in (0, 1) for w in (0, 1)]
    dihedral = flips + [(h, w, True) for h, w, _ in flips]

    def evaluate():
        rows = []
        for x, c in image_folder.whole_images(a.folder, "super_resolution", factor, multiple=8):
            bicubic = metrics.upsample(c.numpy(), x.shape[1:3])
            row = [float(metrics.psnr(bicubic, x.numpy())[0])]
            for pred in (predict(c), self_ensemble(c, flips), self_ensemble(c, dihedral)):
                pred = np.round(np.clip(pred.numpy(), 0, 1) * 255) / 255
                row.append(float(metrics.psnr(pred, x.numpy())[0]))
            rows.append(row)
        return rows

    t0 = time.time()
    curve = []
    for i, (x, c) in enumerate(train.take(a.steps)):
        loss = step(x, c)
        if i % 500 == 0:
            print(f"step {i}: L1 {float(loss):.4f} ({time.time() - t0:.0f} s)", flush=True)
        if a.eval_every and (i + 1) % a.eval_every == 0 and i + 1 < a.steps:
            rows = evaluate()
            curve.append({"steps": i + 1, "gains": [r[1] - r[0] for r in rows],
                          "gain_mean": float(np.mean([r[1] - r[0] for r in rows])),
                          "gain_mean_flips4": float(np.mean([r[2] - r[0] for r in rows])),
                          "gain_mean_dihedral8": float(np.mean([r[3] - r[0] for r in rows]))})
            print(json.dumps(curve[-1]), flush=True)
    train_seconds = time.time() - t0
    rows = evaluate()
    out = {"steps": a.steps, "train_seconds": train_seconds, "psnr_bicubic": [r[0] for r in rows],
           "psnr_l1_base": [r[1] for r in rows], "gain_mean": float(np.mean([r[1] - r[0] for r in rows])),
           "psnr_flips4": [r[2] for r in rows], "gain_mean_flips4": float(np.mean([r[2] - r[0] for r in rows])),
           "psnr_dihedral8": [r[3] for r in rows], "gain_mean_dihedral8": float(np.mean([r[3] - r[0] for r in rows])),
           "curve": curve, "settings": vars(a)}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
