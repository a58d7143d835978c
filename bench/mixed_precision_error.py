"""How far log-prob moves under mixed precision: a trained run's model rebuilt under
mixed_float16 / mixed_bfloat16 with the same weights, bits/dim on test images vs float32.

    python bench/mixed_precision_error.py runs/mnist_sr_caflow [--examples 256]
"""
import argparse
import json

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--examples", type=int, default=256)
    a = p.parse_args(argv)
    from tfcflow import optim, trainer

    ref = trainer.load_run(a.run, use_ema=False)
    x, c = trainer.saved_run_context(a.run, a.examples).first_test_examples(a.examples)
    b32 = ref.bits_per_dim(x, c).numpy()
    out = {"run": a.run, "examples": len(x), "float32_mean_bits_per_dim": float(b32.mean())}
    for policy in ("mixed_float16", "mixed_bfloat16"):
        optim.set_precision(policy)
        try:
            m = type(ref).from_config(ref.get_config())
            for w, v in zip(m.weights, ref.weights):
                w.assign(v.numpy())
            d = np.abs(m.bits_per_dim(x, c).numpy() - b32)
        finally:
            optim.set_precision("float32")
        out[policy] = dict(mean_abs_diff_bits_per_dim=float(d.mean()), max_abs_diff_bits_per_dim=float(d.max()))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
