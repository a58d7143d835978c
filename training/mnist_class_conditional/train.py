"""Class-conditional MNIST with the relaxed-condition method on a latent flow (Xiao et al. 2019, 5.2).

1. An autoencoder maps 28x28 digits to a 20-dim latent u (deterministic encoder, MSE decoder).
2. A RelaxedConditionFlow maps [u, 0] (10 dims of noisy zero padding) to [z, y~] (z: 20 dims,
   y~: the relaxed one-hot label), trained by maximum likelihood only.
3. Reports the test accuracy of argmax infer_condition(u) (paper: 0.984) and writes a grid of
   10 classes x samples decoded from the flow (samples.png), plus results.json.

    python training/mnist_class_conditional/train.py --config training/mnist_class_conditional/config.json \
        --out runs/mnist_class_conditional
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

DEFAULTS = dict(
    data_dir=None, prepare_mnist_from="../../../shared/data/mnist", seed=0, latent_dim=20,
    ae_epochs=8, ae_batch=128, ae_learning_rate=1e-3, ae_train_examples=None,
    flow_blocks=8, flow_hidden=[256, 256], epsilon=0.1, padding_noise=0.05,
    flow_steps=8000, flow_batch=256, flow_learning_rate=1e-3, flow_warmup=200, ema=0.999,
    samples_per_class=10, temperature=0.8,
)


def load_config(path, overrides=()):
    cfg = dict(DEFAULTS)
    if path:
        with open(path) as f:
            user = json.load(f)
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(DEFAULTS)}")
        cfg.update(user)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise ValueError(f"--set {item}: unknown key {key!r}")
        cfg[key] = json.loads(value)
    return cfg


def autoencoder(latent_dim):
    import keras
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    u = keras.layers.Dense(latent_dim, name="latent")(h)
    encoder = keras.Model(inp, u, name="encoder")
    z = keras.Input((latent_dim,))
    h = keras.layers.Dense(7 * 7 * 64, activation="relu")(z)
    h = keras.layers.Reshape((7, 7, 64))(h)
    h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    out = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(h)
    decoder = keras.Model(z, out, name="decoder")
    ae = keras.Model(inp, decoder(encoder(inp)), name="autoencoder")
    return encoder, decoder, ae


def _arrays(data_dir, split, limit=None):
    from tfcflow.data import tasks
    xs, ys = [], []
    for x, y in tasks.task_dataset("mnist", split, "class_conditional", data_dir=data_dir, batch_size=2000,
                                   shuffle=False, take=limit):
        xs.append(x.numpy().astype(np.float32) / 255.0)
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "config.json"))
    p.add_argument("--out", default="runs/mnist_class_conditional")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    from tfcflow import _runtime
    _runtime.start()  # before TensorFlow loads: its C++ log quiet unless asked for; the devices named
    import keras
    import tensorflow as tf
    from tfcflow import optim
    from tfcflow.callbacks import image_grid
    from tfcflow.images import save_png
    from tfcflow.config import resolve_path
    from tfcflow.data.prepare import prepare_mnist
    from tfcflow.models import RelaxedConditionFlow

    t0 = time.time()
    keras.utils.set_random_seed(cfg["seed"])
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = cfg["data_dir"] or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    if not os.path.exists(os.path.join(data_dir, "mnist")):
        prepare_mnist(resolve_path(cfg["prepare_mnist_from"], os.path.join(here, "config.json")), data_dir)
    x_train, y_train = _arrays(data_dir, "train", cfg["ae_train_examples"])
    x_test, y_test = _arrays(data_dir, "test")

    encoder, decoder, ae = autoencoder(cfg["latent_dim"])
    ae.compile(optimizer=keras.optimizers.Adam(cfg["ae_learning_rate"]), loss="mse")
    ae_hist = ae.fit(x_train, x_train, batch_size=cfg["ae_batch"], epochs=cfg["ae_epochs"], verbose=2,
                     validation_data=(x_test, x_test))
    t_ae = time.time() - t0
    u_train = encoder.predict(x_train, batch_size=1000, verbose=0)
    u_test = encoder.predict(x_test, batch_size=1000, verbose=0)
    mean, std = u_train.mean(0), u_train.std(0) + 1e-6  # the flow sees standardized latents
    u_train, u_test = (u_train - mean) / std, (u_test - mean) / std

    flow = RelaxedConditionFlow(cfg["latent_dim"], 10, padding_dim=10, epsilon=cfg["epsilon"],
                                padding_noise=cfg["padding_noise"], depth=cfg["flow_blocks"],
                                width=cfg["flow_hidden"][0], network={"hidden_layers": len(cfg["flow_hidden"])},
                                seed=cfg["seed"])
    schedule = optim.WarmupStepDecay(cfg["flow_learning_rate"], cfg["flow_warmup"], 0.999, 20)
    # skip_nonfinite: a step whose loss or gradient is NaN/inf is not applied (and counted)
    flow.compile(optimizer=optim.make_optimizer(schedule, ema=cfg["ema"]), clipnorm=1.0, seed=cfg["seed"],
                 skip_nonfinite=True)
    ds = (tf.data.Dataset.from_tensor_slices((u_train, y_train)).shuffle(60_000, seed=cfg["seed"])
          .repeat().batch(cfg["flow_batch"], drop_remainder=True))
    spe = min(500, max(1, cfg["flow_steps"] // 4))
    hist = flow.fit(ds, epochs=-(-cfg["flow_steps"] // spe), steps_per_epoch=spe, verbose=2,
                    callbacks=[keras.callbacks.TerminateOnNaN()])
    t_flow = time.time() - t0 - t_ae

    predicted = flow.infer_condition(u_test).numpy().argmax(1)
    labels = y_test.argmax(1)
    accuracy = float((predicted == labels).mean())
    k = cfg["samples_per_class"]
    cond = np.repeat(np.eye(10, dtype=np.float32), k, axis=0)
    latents = flow.sample(cond, temperature=cfg["temperature"], seed=cfg["seed"]).numpy() * std + mean
    images = decoder.predict(latents, verbose=0)
    grid = save_png(image_grid(images, k), os.path.join(args.out, "samples.png"), overwrite=True)
    results = dict(test_accuracy=accuracy, paper_accuracy=0.984,
                   test_nll_latent_plugin=float(-np.mean(flow.log_prob(u_test, np.eye(10, dtype=np.float32)[labels]))),
                   ae_val_mse=float(ae_hist.history["val_loss"][-1]),
                   flow_loss_first_epoch=float(hist.history["loss"][0]),
                   flow_loss_last_epoch=float(hist.history["loss"][-1]),
                   skipped_steps=float(sum(hist.history["skipped_steps"])),
                   ae_seconds=t_ae, flow_seconds=t_flow, total_seconds=time.time() - t0,
                   flow_parameters=int(flow.count_params()), samples=grid)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
