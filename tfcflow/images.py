"""Image files: reading and validating (PNG / JPEG, also BMP / GIF), reflection padding to a valid
size and cropping back, PNG writing, side-by-side sheets, and the conditions of the image tasks
built from user images (what `tfcflow sample` feeds a model).

Images are numpy ``uint8 [H, W, C]``. Every problem with one file is an ``ImageError`` (a
``ValueError``) whose message names the file and fits on one line.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
CHANNEL_NAMES = {1: "grayscale", 2: "grayscale + alpha", 3: "RGB", 4: "RGBA"}

#: (top, left, height, width) of the original image inside a padded one
Box = Tuple[int, int, int, int]


class ImageError(ValueError):
    """A problem with one image file (the message names it)."""


def describe_channels(c: int) -> str:
    return f"{c} channel{'s' if c != 1 else ''} ({CHANNEL_NAMES[c]})" if c in CHANNEL_NAMES else f"{c} channels"


# ---- finding and reading files ------------------------------------------------------------------------
def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def list_images(paths: Iterable[str], recursive: bool = False) -> Tuple[List[str], List[str]]:
    """Files to read: each path given as is (whatever its name: a non-image is reported when read),
    each folder's image files (by extension, sorted; sub-folders too with ``recursive``). Returns
    ``(files, problems)``: problems are one-line messages (a path that does not exist, a folder
    without images)."""
    files, problems = [], []
    for path in paths:
        if os.path.isdir(path):
            found = []
            if recursive:
                for d, subdirs, names in os.walk(path):
                    subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
                    found += [os.path.join(d, n) for n in sorted(names) if is_image_name(n) and not n.startswith(".")]
            else:
                found = [os.path.join(path, n) for n in sorted(os.listdir(path))
                         if is_image_name(n) and not n.startswith(".") and os.path.isfile(os.path.join(path, n))]
            if not found:
                problems.append(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def decode(data: bytes, path: str = "image") -> np.ndarray:
    """Encoded bytes -> ``uint8 [H, W, C]`` as stored (C = 1..4; 16-bit PNGs scaled to 8 bits)."""
    import tensorflow as tf

    if not data:
        raise ImageError(f"{path}: empty file, not an image")
    try:
        image = tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, tf.errors.InternalError,
            tf.errors.DataLossError) as e:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", str(getattr(e, "message", "")) or str(e)).strip()
        reason = reason.splitlines()[0].strip().rstrip(".") if reason else type(e).__name__
        raise ImageError(f"{path}: not an image or a broken file (PNG or JPEG expected; the decoder says: "
                         f"{reason[:120]})") from None
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{path}: an empty image (shape {list(image.shape)})")
    return image


def read_image(path: str, drop_opaque_alpha: bool = True) -> np.ndarray:
    """Reads one image file as ``uint8 [H, W, C]``; an alpha channel that is fully opaque (all 255)
    is dropped (RGBA -> RGB, gray + alpha -> gray). Raises ``ImageError`` naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from None
    image = decode(data, path)
    if drop_opaque_alpha and image.shape[-1] in (2, 4) and np.all(image[..., -1] == 255):
        image = image[..., :-1]
    return image


def convert_channels(image: np.ndarray, channels: int, path: str = "image") -> np.ndarray:
    """Explicit conversion to 1 (luminance, ITU-R 601) or 3 (RGB) channels; alpha is dropped."""
    c = image.shape[-1]
    if c in (2, 4):
        image, c = image[..., :-1], c - 1
    if c == channels:
        return image
    if channels == 3 and c == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and c == 3:
        gray = image.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
        return np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None]
    raise ImageError(f"{path}: cannot convert {describe_channels(image.shape[-1])} to {channels} channels")


def check_channels(image: np.ndarray, channels: int, path: str, task: str = "") -> None:
    c = image.shape[-1]
    if c != channels:
        what = f"this {task} model" if task else "this model"
        raise ImageError(f"{path}: has {describe_channels(c)}; {what} takes {describe_channels(channels)} images")


def read_mask(path: str) -> np.ndarray:
    """An inpainting mask file -> ``bool [H, W]``, True = missing (white / > 127 in the first
    channel; an alpha channel is ignored)."""
    image = read_image(path)
    if image.shape[-1] in (2, 4):
        image = image[..., :-1]
    return image[..., 0] > 127


# ---- sizes ----------------------------------------------------------------------------------------------
def next_multiple(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def reflect_pad(image: np.ndarray, multiple: int) -> Tuple[np.ndarray, Box]:
    """Pads ``image`` (``[H, W]`` or ``[H, W, C]``) by reflection to the next height and width that
    are multiples of ``multiple`` (the extra rows split between top and bottom, the columns between
    left and right). Returns ``(padded, box)`` with ``box = (top, left, H, W)`` locating the
    original, for ``crop``."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = image.shape[:2]
    ph, pw = next_multiple(h, multiple) - h, next_multiple(w, multiple) - w
    top, left = ph // 2, pw // 2
    box = (top, left, h, w)
    if not ph and not pw:
        return image, box
    widths = [(top, ph - top), (left, pw - left)] + [(0, 0)] * (image.ndim - 2)
    padded = image
    for axis, (before, after) in enumerate(widths[:2]):
        if before or after:
            one = [(0, 0)] * image.ndim
            one[axis] = (before, after)
            # a single row / column has nothing to mirror: it is repeated
            padded = np.pad(padded, one, mode="reflect" if padded.shape[axis] > 1 else "edge")
    return padded, box


def crop(image: np.ndarray, box: Box, scale: int = 1) -> np.ndarray:
    """The part of ``image`` at ``box`` (from ``reflect_pad``), its coordinates multiplied by
    ``scale`` (e.g. the super-resolution factor, for a result of a padded low-resolution input)."""
    top, left, h, w = (int(v) * scale for v in box)
    return image[top:top + h, left:left + w]


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


# ---- writing ------------------------------------------------------------------------------------------
def to_uint8(image) -> np.ndarray:
    """uint8 as is; floats in [0, 1] -> rounded 8-bit values (clipped)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def save_png(image, path: str, overwrite: bool = False) -> str:
    """Writes ``image`` (uint8, or float in [0, 1]; ``[H, W]`` or ``[H, W, C]``) as PNG, atomically
    (a temporary file renamed). An existing file is kept (``FileExistsError``) unless ``overwrite``."""
    import tensorflow as tf

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (pass --overwrite to replace it)")
    data = to_uint8(image)
    if data.ndim == 2:
        data = data[..., None]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(tf.io.encode_png(data).numpy())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def side_by_side(images: Sequence[np.ndarray], gap: int = 2, background: int = 255) -> np.ndarray:
    """Images (uint8 or [0, 1] floats, any sizes) in one row, top-aligned, ``gap`` pixels apart;
    grayscale ones become RGB when any image is RGB (alpha is dropped)."""
    images = [to_uint8(im) for im in images]
    images = [im[..., None] if im.ndim == 2 else im for im in images]
    images = [im[..., :-1] if im.shape[-1] in (2, 4) else im for im in images]
    c = max(im.shape[-1] for im in images)
    images = [np.repeat(im, c, axis=-1) if im.shape[-1] != c else im for im in images]
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(np.full((h, gap, c), background, np.uint8))
        if im.shape[0] < h:
            im = np.concatenate([im, np.full((h - im.shape[0],) + im.shape[1:], background, np.uint8)])
        parts.append(im)
    return np.concatenate(parts, axis=1)


# ---- the conditions of the image tasks --------------------------------------------------------------------
IMAGE_TASKS = ("super_resolution", "inpainting", "colorization")


@dataclasses.dataclass
class Prepared:
    """A user image made into a model input (``prepare_condition``)."""
    condition: np.ndarray            # uint8 [h, w, c]: what the model is given (padded if asked)
    box: Box                         # the original inside the padded condition
    scale: int                       # result pixels per condition pixel
    preview: np.ndarray              # uint8: the input as a picture at the result's size, for sheets
    known: Optional[np.ndarray] = None   # inpainting: the input image (known pixels)
    missing: Optional[np.ndarray] = None  # inpainting: bool [H, W], True = generated

    def finish(self, sample) -> np.ndarray:
        """The model's output for ``condition`` (one image, [0, 1] floats or uint8) -> the result:
        cropped back to the input's size; for inpainting, the known pixels pasted back."""
        result = crop(to_uint8(sample), self.box, self.scale)
        if self.known is not None:
            result = np.where(self.missing[..., None], result, self.known).astype(np.uint8)
        return result


def size_multiple(task: str, levels: int, factor: int = 1) -> int:
    """Condition sizes must be multiples of this: the result (``factor`` x the condition for
    super-resolution) must divide by ``2**levels``."""
    m = 2 ** int(levels)
    return m // math.gcd(int(factor), m) if task == "super_resolution" else m


def prepare_condition(task: str, image: np.ndarray, *, condition_channels: int, levels: int, factor: int = 1,
                      mask: Optional[np.ndarray] = None, pad: bool = False, path: str = "image") -> Prepared:
    """The model input of one user image.

    - super_resolution: ``image`` is the low-resolution input (``condition_channels`` channels);
      the result is ``factor`` times larger;
    - colorization: ``image`` is grayscale (``condition_channels`` = 1);
    - inpainting: ``image`` (``condition_channels - 1`` channels) and ``mask`` (bool [H, W], True =
      missing; default: the central H/2 x W/2 square, as in training) give ``[masked image, mask]``.

    The result's size must be divisible by ``2**levels``; otherwise ``ImageError`` (offering
    ``--pad``), or with ``pad`` the input is reflection-padded to the next valid size (the result
    is cropped back by ``Prepared.finish``). Sizes are never changed otherwise."""
    if task not in IMAGE_TASKS:
        raise ValueError(f"task {task!r} does not take images as conditions; image tasks: {IMAGE_TASKS}")
    h, w, _ = image.shape
    scale = int(factor) if task == "super_resolution" else 1
    channels = condition_channels - 1 if task == "inpainting" else condition_channels
    check_channels(image, channels, path, task.replace("_", "-"))
    m = size_multiple(task, levels, scale)
    if h % m or w % m:
        if not pad:
            hp, wp = next_multiple(h, m), next_multiple(w, m)
            result = f"a {h * scale}x{w * scale} result" if scale > 1 else "it"
            raise ImageError(f"{path}: {h}x{w} is not a valid size: {result} must be divisible by 2^{levels} = "
                             f"{2 ** levels} (the model's levels); pass --pad to reflection-pad it to {hp}x{wp} "
                             f"and crop the result back")
    if task == "super_resolution":
        padded, box = reflect_pad(image, m) if pad else (image, (0, 0, h, w))
        return Prepared(padded, box, scale, upscale_nearest(image, scale))
    if task == "colorization":
        padded, box = reflect_pad(image, m) if pad else (image, (0, 0, h, w))
        return Prepared(padded, box, 1, image)
    # inpainting
    if mask is None:
        mask = np.zeros((h, w), bool)
        mask[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = True
    if mask.shape != (h, w):
        raise ImageError(f"{path}: the mask is {mask.shape[0]}x{mask.shape[1]} but the image is {h}x{w}")
    missing = mask
    if pad:
        image_p, box = reflect_pad(image, m)
        mask_p, _ = reflect_pad(mask, m)
    else:
        image_p, mask_p, box = image, mask, (0, 0, h, w)
    holes = mask_p[..., None]
    condition = np.concatenate([np.where(holes, 0, image_p), np.where(holes, 255, 0)], axis=-1).astype(np.uint8)
    preview = np.where(missing[..., None], 128, image).astype(np.uint8)  # holes shown mid-gray
    return Prepared(condition, box, 1, preview, known=image, missing=missing)
