"""A quick probe of our cINN settings on sbibm's two_moons: the NLL of fresh simulations.

The benchmark's C2ST scores 5 observations and takes minutes per contestant; the expected NLL
-E[log q(theta | x)] over fresh (theta, x) pairs from the prior and simulator is the amortized
posterior's average KL divergence to the true posterior plus a constant, so the lower the better,
on every observation at once. This trains one cINN (or a FlowEnsemble of K) per ``--variant`` on
the benchmark's cached 10,000 simulations (ours.py's settings and 9,000 / 1,000 split) and prints
its NLL on the test simulations.

The test simulations come from the peer environment (sbibm), with a seed unlike the cache's:

    /work/peervenv/bin/python bench/sbi_benchmark/simulate.py --tasks two_moons --num-simulations 20000 \\
        --seed 12345 --out /tmp/two_moons_test
    .venv/bin/python bench/sbi_benchmark/two_moons_probe.py --test /tmp/two_moons_test/cache/two_moons.npz \\
        --variant spline,256,1,permutation --variant spline,256,1,lu

A variant is ``coupling,batch_size,members,mixing``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(common.REPO, "docs", "benchmarks", "sbi"))
    p.add_argument("--test", required=True, help="an npz with theta [n, 2] and x [n, 2] (fresh simulations)")
    p.add_argument("--variant", action="append", required=True, help="coupling,batch_size,members,mixing")
    p.add_argument("--epochs", type=int, default=200)
    a = p.parse_args(argv)
    import keras
    import numpy as np

    from tfcflow.models import ConditionalRealNVP, FlowEnsemble

    data = np.load(common.cache_file(a.out, "two_moons"))
    theta, x = data["theta"], data["x"]
    test = np.load(a.test)
    tt, tx = test["theta"].astype(np.float32), test["x"].astype(np.float32)
    rows = []
    for variant in a.variant:
        coupling, batch, members, mixing = variant.split(",")
        batch, members = int(batch), int(members)
        kw = dict(event_shape=2, condition_shape=2, depth=6, width=128, coupling=coupling, mixing=mixing,
                  standardize=True, bounds=[[-1.0, 1.0]] * 2)
        t0 = time.perf_counter()
        if members == 1:
            keras.utils.set_random_seed(0)
            order = np.random.default_rng(0).permutation(len(theta))
            val, train = order[:1000], order[1000:]
            model = ConditionalRealNVP(seed=0, **kw)
            model.compile(optimizer=keras.optimizers.Adam(5e-4), clipnorm=5.0)
            history = model.fit(theta[train], x[train], batch_size=batch, epochs=a.epochs, verbose=0,
                                validation_data=(theta[val], x[val]), callbacks=[keras.callbacks.EarlyStopping(
                                    monitor="val_loss", patience=20, restore_best_weights=True)])
            epochs = [len(history.history["loss"])]
        else:
            model = FlowEnsemble.of(ConditionalRealNVP, members, seed=0, **kw)
            histories = model.fit_members(theta, x, epochs=a.epochs, batch_size=batch, patience=20,
                                          optimizer=keras.optimizers.Adam(5e-4), seed=0, verbose=0, clipnorm=5.0)
            epochs = [len(h.history["loss"]) for h in histories]
        seconds = time.perf_counter() - t0
        nll = -float(np.mean(np.concatenate([model.log_prob(tt[i:i + 5000], tx[i:i + 5000]).numpy()
                                             for i in range(0, len(tt), 5000)])))
        rows.append({"variant": variant, "test_nll": nll, "train_seconds": seconds, "epochs": epochs})
        print(f"{variant}: test NLL {nll:.4f}, trained {seconds:.0f} s, epochs {epochs}", flush=True)
    return rows


if __name__ == "__main__":
    main()
