"""Keras callbacks for flow training: checkpoints, divergence, the plateau reduction, sample grids."""
from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from tfcflow import _compat
from tfcflow.images import save_png


class TrainingDiverged(RuntimeError):
    """Raised after fit when the loss became NaN/inf; names the step and the last good checkpoint."""


def training_checkpoint(model, schedule=None) -> tf.train.Checkpoint:
    """Everything a resume needs: weights, optimizer state (moments, EMA, iteration counter = the
    data position) and the learning-rate schedule's plateau state."""
    # Keras 3 layers kept in lists are invisible to tf.train.Checkpoint's object graph, and the
    # optimizer tracks only trainable variables: without this explicit list a restore would miss the
    # non-trainable state (ActNorm's `initialized`, standardization statistics) and fit would
    # re-initialize ActNorm over the restored weights.
    items = dict(model=model, optimizer=model.optimizer, model_variables=[v.value for v in model.variables])
    if schedule is not None and hasattr(schedule, "plateau_step"):
        items["plateau_step"] = schedule.plateau_step
    return tf.train.Checkpoint(**items)


def restore_training_checkpoint(ckpt: tf.train.Checkpoint, model, path: str, partial: bool = False) -> None:
    """Restores ``path`` into ``ckpt`` (a ``training_checkpoint(model, ...)``); every saved object
    must match unless ``partial``.

    Checkpoints written before ``model_variables`` was listed hold the trainable weights only
    (through the optimizer): they are restored and every ActNorm is marked initialized (a trained
    model's are), so a resumed fit does not re-initialize them over the restored weights."""
    status = ckpt.restore(path)
    if not any(name.startswith("model_variables/") for name, _ in tf.train.list_variables(path)):
        from tfcflow.bijectors.actnorm import ActNormLayer

        status.expect_partial()
        for layer in _compat.all_layers(model):
            if isinstance(layer, ActNormLayer):
                layer.initialized.assign(1)
        warnings.warn(f"{path} predates the full model-variable list: restored its trainable weights and "
                      f"optimizer state; non-trainable state is rebuilt from the config")
    elif partial:
        status.expect_partial()
    else:
        status.assert_existing_objects_matched()


class Checkpointing(keras.callbacks.Callback):
    """Saves a checkpoint every ``every`` steps (and at the end of training), never one taken after
    a non-finite loss or with non-finite weights.

    Atomicity: ``tf.train.CheckpointManager`` writes the data and index files first and only then
    rewrites the small ``checkpoint`` state file (an atomic rename), so the "latest checkpoint" it
    names is always complete; a process killed mid-write leaves the previous one as the latest.
    """

    def __init__(self, manager: tf.train.CheckpointManager, every: int, write: bool = True):
        super().__init__()
        self.manager = manager
        self.every = int(every)
        self.write = write  # False on non-chief workers (they still take part in training)
        self.last_good: Optional[str] = manager.latest_checkpoint
        self.diverged_at: Optional[int] = None

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _weights_finite(self) -> bool:
        return all(bool(np.all(np.isfinite(v.numpy()))) for v in self.model.trainable_variables)

    def _save(self):
        step = self._step()
        if self.write and self.diverged_at is None and self._weights_finite():
            if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
                return
            self.last_good = self.manager.save(checkpoint_number=step)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss).ravel()[0])):
            self.diverged_at = self._step()
            self.model.stop_training = True
            return
        if self.every and self._step() % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.diverged_at is None:
            self._save()


class PlateauReduction(keras.callbacks.Callback):
    """Applies the schedule's single plateau reduction (x plateau_factor) when ``monitor`` has not
    improved by ``min_delta`` for ``patience`` epochs (CAFLOW: once, when the curve levels off)."""

    def __init__(self, schedule, monitor: str = "loss", patience: int = 5, min_delta: float = 1e-3):
        super().__init__()
        self.schedule = schedule
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best = math.inf
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(np.asarray(value).ravel()[0])
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            step = int(self.model.optimizer.iterations.numpy())
            if self.schedule.reduce_on_plateau(step):
                print(f"\nplateau: learning rate x{self.schedule.plateau_factor} from step {step}")


def ema_swapped(model):
    """Context manager: the optimizer's EMA weights are in the model inside the block (no-op
    without EMA). Used to evaluate / sample / export with EMA weights. Reads Keras 3's optimizer
    internals (``_trainable_variables``, ``_model_variables_moving_average``), as Keras's own
    SwapEMAWeights callback does (through ``_compat.ema_pairs``)."""
    import contextlib

    @contextlib.contextmanager
    def swap():
        opt = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        if not getattr(opt, "use_ema", False) or not opt.built:
            yield
            return
        pairs = _compat.ema_pairs(opt)
        raw = [v.numpy() for v, _ in pairs]
        for v, avg in pairs:
            v.assign(avg)
        try:
            yield
        finally:
            for (v, _), value in zip(pairs, raw):
                v.assign(value)

    return swap()


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """``[N, H, W, C]`` in [0, 1] -> one ``[rows*H, columns*W, C]`` image (1-pixel gaps)."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.float32)
    for k in range(n):
        r, q = divmod(k, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = images[k]
    return grid


class SampleGrid(keras.callbacks.Callback):
    """Every ``every`` steps, draws samples (EMA weights) for fixed conditions and writes the grid to
    TensorBoard (``log_dir``) and, if ``png_path``, as a PNG.

    ``make_grid(model) -> [H, W, C] float image in [0, 1]`` builds the picture (task-specific).
    """

    def __init__(self, make_grid: Callable, every: int, log_dir: Optional[str] = None,
                 png_path: Optional[str] = None, write: bool = True):
        super().__init__()
        self.make_grid = make_grid
        self.every = int(every)
        self.png_path = png_path
        self.write = write
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples")) if (log_dir and write) else None

    def _emit(self, step):
        with ema_swapped(self.model):
            grid = np.asarray(self.make_grid(self.model), np.float32)
        if not self.write:
            return
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.image("samples", grid[None], step=step)
            self.writer.flush()
        if self.png_path:
            save_png(grid, self.png_path, overwrite=True)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every and step % self.every == 0:
            self._emit(step)

    def on_train_end(self, logs=None):
        self._emit(int(self.model.optimizer.iterations.numpy()))
