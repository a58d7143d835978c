"""Tutorial: x2 super-resolution of colour photos with a small ``CAFlow``, trained on random patches.

    python docs/tutorials/super_resolution_photos.py --out runs/tutorial_sr

Writes scikit-image's bundled photos into an image folder (offline), trains a tiny CAFlow on random
16x16 patches of the training photos, then super-resolves a held-out photo whole: the model is
fully convolutional, so a model trained on patches samples any size divisible by 2^levels.
``TFCFLOW_TUTORIAL_SMALL=1`` trains fewer steps and crops the held-out photo (the test suite runs
it so, tests/test_tutorials.py); the steps are the same.
"""
import argparse
import os

import keras
import numpy as np

from tfcflow import images, metrics
from tfcflow.data.image_folder import patch_dataset, whole_images
from tfcflow.data.prepare import store_photos
from tfcflow.models import CAFlow

SMALL = os.environ.get("TFCFLOW_TUTORIAL_SMALL") == "1"
STEPS = 20 if SMALL else 600
CROP = 64 if SMALL else None  # small: a 64x64 centre crop of the held-out photo


def main(out: str) -> None:
    # 1. An image folder: train/ and test/ sub-folders of PNG files (here scikit-image's photos;
    #    any folder of your own photos works the same way).
    folder = os.path.join(out, "photos")
    if not os.path.isdir(folder):
        store_photos(folder)

    # 2. Endless seeded batches of (target uint8 [16, 16, 16, 3], condition uint8 [16, 8, 8, 3]):
    #    random crops and flips of the training photos, the condition area-downsampled x2.
    train = patch_dataset(folder, "super_resolution", patch_size=16, batch_size=16, seed=0, factor=2)

    # 3. A small CAFlow: any height and width (None) divisible by 2^levels, condition at half the
    #    size. residual=True models the photo minus the bicubic upsampling of the condition.
    model = CAFlow(event_shape=(None, None, 3), condition_shape=(None, None, 3), factor=2, levels=2,
                   depth={"condition": 1, "target": 2, "latent": 1},
                   width={"condition": 32, "target": 32, "latent": 16}, residual=True)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), clipnorm=1.0, seed=0)
    history = model.fit(train, epochs=1, steps_per_epoch=STEPS, verbose=0)
    print(f"{STEPS} steps, final bits/dim {history.history['bits_per_dim'][-1]:.3f}")

    # 4. A held-out photo, whole (or a crop): best of 4 samples at temperature 0.5, ranked by
    #    the model's own log p(x | c), against bicubic upsampling. Samples are 8-bit values as
    #    floats in [0, 1]; images.to_uint8 rounds them back to bytes.
    target, condition = next(iter(whole_images(folder, "super_resolution", factor=2, multiple=4)))
    target, condition = target.numpy(), condition.numpy()
    if CROP:
        top, left = (target.shape[1] - CROP) // 4 * 2, (target.shape[2] - CROP) // 4 * 2  # even: x2 aligned
        target = target[:, top:top + CROP, left:left + CROP]
        condition = condition[:, top // 2:(top + CROP) // 2, left // 2:(left + CROP) // 2]
    best, log_p = model.best_of_n(condition, n=4, temperature=0.5, seed=1)
    best = images.to_uint8(best)
    assert best.shape == target.shape and np.isfinite(log_p.numpy()).all()
    bicubic = metrics.upsample(condition, target.shape[1:3])
    print(f"{target.shape[2]}x{target.shape[1]} photo: PSNR best of 4 {metrics.psnr(target, best)[0]:.2f} dB, "
          f"bicubic {metrics.psnr(target, bicubic)[0]:.2f} dB")

    # 5. A sheet: the low-resolution input (nearest-neighbour x2), bicubic, the flow's sample, the photo.
    sheet = images.side_by_side([images.upscale_nearest(condition[0], 2), images.to_uint8(bicubic[0]), best[0],
                                 target[0]])
    print("sheet:", images.save_png(sheet, os.path.join(out, "sheet.png"), overwrite=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tutorial_sr", help="folder for the photos and the result sheet")
    main(parser.parse_args().out)
