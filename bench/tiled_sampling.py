"""Memory and speed of x4 super-resolution sampling of a photo-sized output, by tiles
(tfcflow/tiling.py) against one untiled 512 px sample.

Each case runs in its own process, so its peak resident set (``ru_maxrss``) is its own:

- ``untiled-T``: one ``model.sample`` of a T x T output (T = ``--tile``; condition T/4 x T/4), the
  size a tile has, and ``untiled-512`` (the issue's reference size for seconds per megapixel);
- ``tiled-WxH``: ``sample_tiled`` of a W x H output (default 4000 x 3000, 12 megapixels), tiles of
  ``--tile`` px with ``--overlap`` px shared;
- ``untiled-WxH`` (``--untiled-too``): the whole output at once, for the memory it needs.

The model is the photo super-resolution config's (``--config``), built for any size (``event_shape
[None, None, 3]``, factor 4), untrained (memory and time do not depend on the weights; this is no
quality figure), ActNorm initialized on one small batch. The condition is a smooth random image.
Seconds per megapixel count the calls after a first (tracing) call of the same tile size.

    python bench/tiled_sampling.py [--size 4000 3000] [--tile 1024] [--overlap 32]
        [--out docs/benchmarks/tiled_sampling.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACTOR, CHANNELS = 4, 3


def _case(config: str, width: int, height: int, tile: int, overlap: int, tiled: bool) -> dict:
    """One case in this process: its seconds and peak RSS."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from tfcflow.config import model_class, validate_model
    from tfcflow.tiling import Tiling, plan, sample_tiled

    with open(os.path.join(ROOT, config)) as f:
        spec = validate_model(dict(json.load(f)["model"]))
    keras.utils.set_random_seed(0)
    model = model_class(spec["class"])(event_shape=[None, None, CHANNELS], condition_shape=[None, None, CHANNELS],
                                       factor=FACTOR, **{k: v for k, v in spec.items() if k != "class"})
    rng = np.random.default_rng(0)
    init = 2 ** model.levels * 4
    model.initialize(rng.uniform(size=(4, init, init, CHANNELS)).astype(np.float32),
                     rng.uniform(size=(4, init // FACTOR, init // FACTOR, CHANNELS)).astype(np.float32))
    h, w = height // FACTOR, width // FACTOR
    yy, xx = np.meshgrid(np.linspace(0, 6, h), np.linspace(0, 8, w), indexing="ij")
    condition = (0.5 + 0.4 * np.sin(yy)[..., None] * np.cos(xx)[..., None] * np.ones(CHANNELS)).astype(np.float32)
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tiling = Tiling(tile=tile, overlap=overlap)
    if tiled:
        p = plan(model, (h, w), tiling)
        first = condition[:p.height // FACTOR, :p.width // FACTOR]
        t0 = time.perf_counter()
        model.sample(first[None], temperature=0.8, seed=0)  # the trace, counted apart
        trace = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = sample_tiled(model, condition, tiling, temperature=0.8, seed=0)
        seconds = time.perf_counter() - t0
        tiles = p.count
    else:
        t0 = time.perf_counter()
        model.sample(condition[None], temperature=0.8, seed=0)
        trace = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = np.asarray(model.sample(condition[None], temperature=0.8, seed=1))[0]
        seconds = time.perf_counter() - t0
        tiles = 1
    assert out.shape == (height, width, CHANNELS) and np.isfinite(out).all()
    mp = width * height / 1e6
    return {"case": f"{'tiled' if tiled else 'untiled'}-{width}x{height}", "megapixels": mp, "tiles": tiles,
            "tile": tile if tiled else None, "overlap": overlap if tiled else None,
            "first_call_s": round(trace, 2), "seconds": round(seconds, 2), "s_per_mp": round(seconds / mp, 3),
            "mp_per_s": round(mp / seconds, 3), "rss_after_build_mb": round(rss_built),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="training/photo_super_resolution/caflow.json")
    p.add_argument("--size", type=int, nargs=2, default=(4000, 3000), metavar=("W", "H"))
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--untiled-too", action="store_true", help="also sample the whole output at once")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks", "tiled_sampling.json"))
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: W,H,tiled in this process
    a = p.parse_args(argv)
    if a.case:
        w, h, tiled = a.case.split(",")
        print(json.dumps(_case(a.config, int(w), int(h), a.tile, a.overlap, tiled == "1")))
        return {}
    W, H = a.size
    cases = sorted({(512, 512, 0), (a.tile, a.tile, 0)}) + [(W, H, 1)] + ([(W, H, 0)] if a.untiled_too else [])
    rows = []
    for w, h, tiled in cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{w},{h},{tiled}", "--config", a.config,
               "--tile", str(a.tile), "--overlap", str(a.overlap)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
        if res.returncode != 0:
            rows.append({"case": f"{'tiled' if tiled else 'untiled'}-{w}x{h}", "failed": res.stderr.strip()[-300:]})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    record = {"command": "python bench/tiled_sampling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "config": a.config, "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or
                                              platform.machine()},
              "rows": rows}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1)
    return record


if __name__ == "__main__":
    main()
