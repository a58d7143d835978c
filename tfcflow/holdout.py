"""Fitting a model on arrays with its own held-out split and early stopping.

The way a simulation budget is used in posterior estimation (sbi and BayesFlow do the same): a
seeded share of the rows is held out, the model trains on the rest with a fresh optimizer and
stops when the held-out NLL has not improved for ``patience`` epochs, with its best weights
restored. ``FlowEnsemble.fit_members`` calls it once per member (seed + k), so every member is
trained exactly as a single model would be.
"""
from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from tfcflow import _checks


def holdout_split(n: int, validation_fraction: float, seed: int, bootstrap: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, validation_rows)`` of ``n`` rows: a permutation from ``seed``, the first
    ``round(validation_fraction * n)`` of it held out. With ``bootstrap`` the training rows are
    resampled with replacement (as many as there are), from the same generator."""
    validation_fraction = _checks.check_fraction(validation_fraction, "validation_fraction")
    n_val = int(round(validation_fraction * n))
    if n_val and n - n_val < 1:
        raise ValueError(f"validation_fraction {validation_fraction} leaves no training rows of {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    val, train = order[:n_val], order[n_val:]
    if bootstrap:
        train = rng.choice(train, size=len(train), replace=True)
    return train, val


def fit_with_holdout(model, x, y, *, epochs: int = 200, batch_size: int = 256, validation_fraction: float = 0.1,
                     patience: int = 20, optimizer="adam", seed: int = 0, bootstrap: bool = False,
                     lr_patience: Optional[int] = None, lr_factor: float = 0.5, verbose="auto", **compile_kwargs):
    """Compiles ``model`` with a fresh copy of ``optimizer`` (and ``compile_kwargs``, e.g.
    ``clipnorm``) and fits it on its training rows of ``holdout_split(len(x), ..., seed)``,
    stopping early on the held-out rows' loss. Keras' shuffling is seeded by ``seed``
    (``keras.utils.set_random_seed``), so the result is deterministic given it.

    Args:
      x: ``[n, *event_shape]`` array; y: ``[n, *condition_shape]`` array (the conditions).
      validation_fraction: in [0, 1); 0 trains on all rows for ``epochs`` (no early stopping).
      lr_patience: if given, the learning rate is multiplied by ``lr_factor`` whenever the
        held-out loss has not improved for that many epochs (Keras' ``ReduceLROnPlateau``); the
        smaller steps late in training settle the noisy held-out NLL that early stopping reads.
    Returns: ``(history, validation_rows)``.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of rows, got {len(x)} and {len(y)}")
    train, val = holdout_split(len(x), validation_fraction, seed, bootstrap)
    if lr_patience is not None and not len(val):
        raise ValueError("lr_patience reads the held-out loss: give a validation_fraction > 0")
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=fresh_optimizer(optimizer), **compile_kwargs)
    fit_kwargs = {}
    if len(val):
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
        if lr_patience is not None:
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=lr_factor,
                                                               patience=lr_patience))
        fit_kwargs = dict(validation_data=(x[val], y[val]), callbacks=callbacks)
    history = model.fit(x[train], y[train], batch_size=batch_size, epochs=epochs, verbose=verbose, **fit_kwargs)
    return history, val


def fresh_optimizer(optimizer) -> keras.optimizers.Optimizer:
    """A new optimizer with no state (an optimizer holds its variables' slots): a copy of an
    instance's config, or ``keras.optimizers.get`` of a name."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return type(optimizer).from_config(optimizer.get_config())
    return keras.optimizers.get(optimizer)
