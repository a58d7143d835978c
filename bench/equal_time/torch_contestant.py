"""The PyTorch contestants of the equal-time benchmark: the peers' Glows (built as
../shared/bench/peers/torch_glow_bench.py builds them) on 32x32x1 MNIST, one per process.

  --impl normflows  normflows GlowBlock (ActNorm, LU 1x1 conv, affine coupling with sigmoid(h+2) scale,
                    ConvNet2d 3x3-ReLU-1x1-ReLU-3x3 zero-init last) + Squeeze; at each split an exit
                    AffineCoupling (ConvNet2d 3x3, exp scale) of the leaving half given the kept half.
                    Unconditional only (--part mnist).
  --impl freia      FrEIA GraphINN: IRevNetDownsampling + AllInOneBlock (global affine, fixed soft
                    permutation, clamped affine coupling) + Split; exits N(0, I).
                    --part sr: a ConditionNode per level (the peers' --cond construction) fed by the
                    same condition encoder as tfcflow's ConditionalGlow (ConditionEncoder, ported):
                    bicubic x4 upsampling, conv3x3(16)-ReLU, per level a stride-2 conv3x3(16)-ReLU,
                    plus the upsampled condition squeezed to the level's resolution; trained jointly.

Training: batch 32, torch Adam 1e-3, 2 threads (as the peers), a fresh permutation of the 60,000
training digits every epoch, uniform dequantization noise per step; see protocol.py for the clock
and the measure. This file imports neither TensorFlow nor tfcflow.

    python bench/equal_time/torch_contestant.py --impl freia --part sr --seconds 600 --out r.json
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import protocol as pc  # noqa: E402

LOG2PI = math.log(2 * math.pi)


def build(impl: str, part: str, s: dict):
    """The model: an ``nn.Module`` with ``log_prob(y, c) -> [batch]`` (nats, density of y in
    [-0.5, 0.5)), ``c`` None for the unconditional part, else the 8x8 condition in [-0.5, 0.5]."""
    import torch
    from torch import nn

    L, K, HID, C = s["levels"], s["depth"], s["hidden"], pc.CHANNELS

    def std_normal_logp(z):
        return -0.5 * (z.pow(2) + LOG2PI).flatten(1).sum(1)

    if impl == "normflows":
        if part != "mnist":
            raise ValueError("normflows runs the unconditional part only")
        import normflows as nf

        class NFGlow(nn.Module):
            def __init__(self):
                super().__init__()
                self.sq = nf.flows.Squeeze()
                self.levels, self.exits = nn.ModuleList(), nn.ModuleList()
                c = C
                for lvl in range(L):
                    c *= 4
                    self.levels.append(nn.ModuleList([
                        nf.flows.GlowBlock(c, HID, scale=True, scale_map="sigmoid", split_mode="channel", leaky=0.0,
                                           init_zeros=True, use_lu=True) for _ in range(K)]))
                    if lvl < L - 1:
                        net = nf.nets.ConvNet2d((c // 2, 2 * (c // 2)), (3,), init_zeros=True)
                        self.exits.append(nf.flows.AffineCoupling(net, scale=True, scale_map="exp"))
                        c //= 2

            def log_prob(self, x, c=None):  # normflows' .inverse is the x -> z direction
                ld = torch.zeros(x.shape[0])
                logp = torch.zeros(x.shape[0])
                h = x
                for lvl in range(L):
                    h, _ = self.sq.inverse(h)
                    for blk in self.levels[lvl]:
                        h, l = blk.inverse(h)
                        ld = ld + l
                    if lvl < L - 1:
                        h1, h2 = h.chunk(2, dim=1)
                        (h1, e), l = self.exits[lvl]([h1, h2])
                        ld = ld + l
                        logp = logp + std_normal_logp(e)
                        h = h1
                return logp + std_normal_logp(h) + ld

        return NFGlow(), "normflows " + getattr(nf, "__version__", "?")

    import FrEIA
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    def subnet(cin, cout):
        net = nn.Sequential(nn.Conv2d(cin, HID, 3, padding=1), nn.ReLU(), nn.Conv2d(HID, HID, 1), nn.ReLU(),
                            nn.Conv2d(HID, cout, 3, padding=1))
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
        return net

    cond = part == "sr"
    enc = pc.ENCODER_WIDTH
    nodes = [Ff.InputNode(C, pc.SIZE, pc.SIZE, name="x")]
    conds, outs = [], []
    c, h, w = C, pc.SIZE, pc.SIZE
    for lvl in range(L):
        c, h, w = c * 4, h // 2, w // 2
        nodes.append(Ff.Node(nodes[-1], Fm.IRevNetDownsampling, {}, name=f"down{lvl}"))
        if cond:
            conds.append(Ff.ConditionNode(enc + C * 4 ** (lvl + 1), h, w, name=f"cond{lvl}"))
        for k in range(K):
            nodes.append(Ff.Node(nodes[-1], Fm.AllInOneBlock,
                                 dict(subnet_constructor=subnet, affine_clamping=2.0, permute_soft=True),
                                 conditions=conds[-1] if cond else None, name=f"aio{lvl}_{k}"))
        if lvl < L - 1:
            nodes.append(Ff.Node(nodes[-1], Fm.Split, dict(section_sizes=[c // 2, c - c // 2], dim=0),
                                 name=f"split{lvl}"))
            outs.append(Ff.OutputNode((nodes[-1], 1), name=f"zexit{lvl}"))
            c //= 2
    outs.append(Ff.OutputNode(nodes[-1], name="ztop"))

    class Encoder(nn.Module):
        """tfcflow's ConditionEncoder for an image condition, in PyTorch."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(C, enc, 3, padding=1)
            self.down = nn.ModuleList([nn.Conv2d(enc, enc, 3, stride=2, padding=1) for _ in range(L)])

        def forward(self, lowres):
            image = nn.functional.interpolate(lowres, scale_factor=pc.SR_FACTOR, mode="bicubic", align_corners=False)
            feat = torch.relu(self.stem(image))
            out = []
            for lvl, conv in enumerate(self.down):
                feat = torch.relu(conv(feat))
                out.append(torch.cat([feat, nn.functional.pixel_unshuffle(image, 2 ** (lvl + 1))], 1))
            return out

    class FGlow(nn.Module):
        def __init__(self):
            super().__init__()
            self.inn = Ff.GraphINN(nodes + conds + outs, force_tuple_output=True)
            self.encoder = Encoder() if cond else None

        def log_prob(self, x, c=None):
            zs, ld = self.inn(x, c=self.encoder(c) if cond else [], jac=True)
            return sum(std_normal_logp(z) for z in zs) + ld

    return FGlow(), "FrEIA " + getattr(FrEIA, "__version__", "0.2")


def effective_params(model) -> int:
    """Trainable parameters, counting an LU 1x1 convolution's used triangles only (C^2 each; normflows
    stores full L and U matrices), as the peers' benchmark counts them."""
    total = sum(q.numel() for q in model.parameters() if q.requires_grad)
    try:
        import normflows as nf
    except ImportError:
        return total
    for mod in model.modules():
        if isinstance(mod, nf.flows.Invertible1x1Conv) and getattr(mod, "use_lu", False):
            c = mod.num_channels
            total -= 2 * c * c - c * (c - 1)
    return total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="freia", choices=("normflows", "freia"))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the peers' benchmark: 2)")
    pc.add_common_args(p)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    s = pc.sizes(a)
    t0 = time.perf_counter()
    train, test = pc.load_mnist()
    test = test[:s["test_digits"]]
    sr = a.part == "sr"

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    x_train, x_test = nchw(train), nchw(test)
    c_train = nchw(pc.low_resolution(train)) if sr else None
    c_test = nchw(pc.low_resolution(test)) if sr else None
    load_s = time.perf_counter() - t0

    def cond(c, idx):
        return None if c is None else c[idx].float() / 255.0 - 0.5

    t0 = time.perf_counter()
    model, impl_ver = build(a.impl, a.part, s)
    init = torch.from_numpy(pc.init_indices(len(train)))
    with torch.no_grad():  # data-dependent initialization (normflows' ActNorm) on the shared init digits
        model.log_prob(x_train[init].float() / 256.0 - 0.5 + torch.rand(len(init), *x_train.shape[1:]) / 256.0,
                       cond(c_train, init))
    opt = torch.optim.Adam(model.parameters(), lr=pc.LR)
    build_s = time.perf_counter() - t0
    dims = pc.SIZE * pc.SIZE * pc.CHANNELS

    def step(idx) -> float:
        x = (x_train[idx].float() + torch.rand(len(idx), *x_train.shape[1:])) / 256.0 - 0.5
        loss = -model.log_prob(x, cond(c_train, idx)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def test_bpd(n: int) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i, lo in enumerate(range(0, n, pc.EVAL_BATCH)):
                idx = torch.arange(lo, min(n, lo + pc.EVAL_BATCH))
                g = torch.Generator().manual_seed(pc.eval_seed(i))
                u = torch.rand(len(idx), *x_test.shape[1:], generator=g)
                out.append(model.log_prob((x_test[idx].float() + u) / 256.0 - 0.5, cond(c_test, idx)).numpy())
        return pc.bits_per_dim(np.concatenate(out), dims)

    name = a.impl
    res = pc.base_result(a.part, name, a.seconds, a.smoke, s["test_digits"])
    res.update(framework="torch " + torch.__version__, impl=impl_ver, threads=torch.get_num_threads(),
               interop_threads=torch.get_num_interop_threads(), architecture=s,
               params=sum(q.numel() for q in model.parameters() if q.requires_grad),
               params_effective=effective_params(model), load_s=round(load_s, 2),
               build_s=round(build_s, 2), optimizer="torch.optim.Adam(lr=1e-3)")
    rng = np.random.default_rng(0)
    order, pos = rng.permutation(len(train)), 0

    def next_batch():
        nonlocal order, pos
        if pos + pc.BATCH > len(order):
            order, pos = rng.permutation(len(train)), 0
        pos += pc.BATCH
        return torch.from_numpy(order[pos - pc.BATCH:pos])

    t = time.perf_counter()
    loss = step(next_batch())
    res["warmup_s"] = round(time.perf_counter() - t, 3)
    steps, timed, clock, curve = 1, 0, pc.TrainClock(), pc.Curve(a.seconds)
    t = time.perf_counter()
    curve.add(0.0, steps, float(np.mean(test_bpd(s["curve_digits"]))), time.perf_counter() - t)
    clock.start()
    diverged = False
    while clock.elapsed < a.seconds:
        loss = step(next_batch())
        steps, timed = steps + 1, timed + 1
        if not math.isfinite(loss):
            diverged = True
            break
        if curve.due(clock.elapsed) and clock.elapsed < a.seconds:  # the last point is the final figure's
            clock.pause()
            t = time.perf_counter()
            curve.add(clock.elapsed, steps, float(np.mean(test_bpd(s["curve_digits"]))), time.perf_counter() - t)
            clock.start()
    clock.pause()
    res.update(diverged=diverged, last_train_bpd=loss / (dims * math.log(2.0)) + 8.0)
    t = time.perf_counter()
    final = test_bpd(s["test_digits"])
    res["final_eval_s"] = round(time.perf_counter() - t, 2)
    pc.finish(res, clock, steps, timed, curve, final, s["curve_digits"])
    return pc.dump(res, a.out)


if __name__ == "__main__":
    main()
