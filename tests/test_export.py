"""SavedModel export, verified without trusting our own Python: a fresh process importing only
TensorFlow, `saved_model_cli run` (the TF1 session loader TF Serving uses) and `saved_model_cli scan`."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcflow import export
from tfcflow.data import gaussian_mixture as gm
from tfcflow.models import ConditionalRealNVP, FlowEnsemble, RelaxedConditionFlow
from tests.helpers import tiny_glow

BIN = os.path.dirname(sys.executable)
PROBE = r"""
import json, sys
import numpy as np
import tensorflow as tf                      # the only library: no tfcflow, no keras
m = tf.saved_model.load(sys.argv[1])
inputs = dict(np.load(sys.argv[2]))
out = {}
for name in sorted(m.signatures):
    fn = m.signatures[name]
    keys = fn.structured_input_signature[1].keys()
    res = fn(**{k: tf.constant(inputs[k]) for k in keys})
    for k, v in res.items():
        out[name + "/" + k] = v.numpy()
np.savez(sys.argv[3], **out)
print(json.dumps(sorted(m.signatures)))
"""


def _train_small(model, x, c):
    model.compile(optimizer=keras.optimizers.Adam(3e-3, use_ema=True, ema_momentum=0.9), clipnorm=1.0)
    model.fit(x, c, batch_size=16, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained image model (with a learned residual base: what the served graph computes includes
    g(c)), a trained relaxed-condition model, a trained ensemble of two cINNs and a trained cINN
    truncated to a box that cuts the mixture (bounds_method="reject": the served sampler redraws
    in a loop, the served log_prob divides by the support mass Z(c)), exported."""
    base = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    xi = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
    ci = np.clip(xi.reshape(64, 4, 2, 4, 2, 1).mean((2, 4)), 0, 255).astype(np.uint8)
    keras.utils.set_random_seed(0)
    glow = _train_small(tiny_glow("image", residual={"kind": "learned", "width": 4, "depth": 1}), xi, ci)
    assert np.abs(glow.upsampler(tf.zeros([1, 4, 4, 1]) + 0.2).numpy()).max() > 1e-3  # g was trained
    xv, _, cv = gm.sample(256, seed=0)
    rcf = _train_small(RelaxedConditionFlow(2, 8, depth=2, width=16), xv, cv)
    ensemble = _train_small(FlowEnsemble.of(ConditionalRealNVP, 2, 2, 8, depth=2, width=16), xv, cv)
    box = [[-2.9, 2.9], [-2.9, 2.9]]
    inside = np.all(np.abs(xv) < 2.9, axis=1)
    truncated = _train_small(ConditionalRealNVP(2, 8, depth=2, width=16, bounds=box, bounds_method="reject"),
                             xv[inside], cv[inside])
    xt, ct = xv[inside][:5], cv[inside][:5]
    assert np.all(truncated.support_mass(ct).numpy() < 0.99)  # the box cuts the flow: rejection is exercised
    models = {}
    for name, model, x, c in (("glow", glow, xi[:5], ci[:5]), ("rcf", rcf, xv[:5], cv[:5]),
                              ("ensemble", ensemble, xv[:5], cv[:5]), ("truncated", truncated, xt, ct)):
        path = export.save(model, str(base), model_name=name)
        inputs = dict(x=x, condition=c, temperature=np.float32(0.7), seed=np.int64(11), n=np.int32(4),
                      num_samples=np.int32(3))
        np.savez(str(base / f"{name}_inputs.npz"), **inputs)
        models[name] = (model, path, inputs)
    return base, models


def _probe(path, inputs_npz, out_npz):
    proc = subprocess.run([sys.executable, "-c", PROBE, path, inputs_npz, out_npz], capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), dict(np.load(out_npz))


def test_tf_serving_layout(exported):
    base, models = exported
    for name, (_, path, _) in models.items():
        assert path == str(base / name / "1")
        for f in ("saved_model.pb", "fingerprint.pb", "variables/variables.index"):
            assert os.path.exists(os.path.join(path, f)), f
    with pytest.raises(ValueError, match="already exists"):
        export.save(models["rcf"][0], str(base), version=1, model_name="rcf")


def test_fresh_process_loads_and_serves_every_signature(exported, tmp_path):
    base, models = exported
    for name, (model, path, inputs) in models.items():
        npz = str(base / f"{name}_inputs.npz")
        sigs, a = _probe(path, npz, str(tmp_path / f"{name}_a.npz"))
        # a second process: the image model's uint8 outputs match in-memory only to 1 level, so its
        # determinism across processes is checked exactly; the others match in-memory to 1e-5 anyway
        b = _probe(path, npz, str(tmp_path / f"{name}_b.npz"))[1] if name == "glow" else a
        expected = {"serving_default", "sample", "log_prob", "best_of_n", "sample_many"}
        expected |= {"infer_condition"} if name == "rcf" else set()
        assert set(sigs) == expected
        # log_prob equals the in-memory (EMA) model's
        np.testing.assert_allclose(a["log_prob/log_prob"], model.log_prob(inputs["x"], inputs["condition"]).numpy(),
                                   rtol=1e-5)
        d = float(np.prod(model.event_shape)) * np.log(2)
        np.testing.assert_allclose(a["log_prob/bits_per_dim"], -a["log_prob/log_prob"] / d, rtol=1e-6)
        # same seed, same samples, in two different processes -- and the same as in memory
        for key in ("sample/samples", "serving_default/samples", "best_of_n/samples", "best_of_n/log_prob"):
            np.testing.assert_array_equal(a[key], b[key])
        in_memory = model.sample(inputs["condition"], temperature=0.7, seed=11).numpy()
        if name == "glow":
            assert a["sample/samples"].dtype == np.uint8
            in_memory = np.round(in_memory * 255).astype(np.uint8)
        np.testing.assert_allclose(a["sample/samples"], in_memory, atol=1 if name == "glow" else 1e-5)
        # num_samples draws per condition row: the library's model.sample(..., num_samples=3)
        np.testing.assert_array_equal(a["sample_many/samples"], b["sample_many/samples"])
        many = model.sample(inputs["condition"], temperature=0.7, seed=11, num_samples=3).numpy()
        assert a["sample_many/samples"].shape == many.shape == (5, 3) + tuple(model.event_shape)
        if name == "glow":
            many = np.round(many * 255).astype(np.uint8)
        np.testing.assert_allclose(a["sample_many/samples"], many, atol=1 if name == "glow" else 1e-5)
        if name == "truncated":  # every served draw lies inside the box
            assert np.all(np.abs(a["sample_many/samples"]) < 2.9) and np.all(np.abs(a["sample/samples"]) < 2.9)
        if name == "rcf":
            np.testing.assert_allclose(a["infer_condition/condition"], model.infer_condition(inputs["x"]).numpy(),
                                       atol=1e-5)
            np.testing.assert_allclose(a["infer_condition/class_probabilities"].sum(1), 1.0, rtol=1e-5)
            assert (a["infer_condition/label"] == a["infer_condition/condition"].argmax(1)).all()


def test_saved_model_cli_run_every_signature(exported, tmp_path):
    """The TF1 session loader path: saved_model_cli run with .npy inputs."""
    base, models = exported
    for name, (model, path, inputs) in models.items():
        files = {}
        for k, v in inputs.items():
            files[k] = str(tmp_path / f"{name}_{k}.npy")
            np.save(files[k], v)
        # the TF1 session loader (one process per call, ~10 s each): a density and a sampling graph of
        # the image model, the graph each vector model's own code adds (every signature of every model
        # runs in a fresh process above)
        sigs = {"glow": ["log_prob", "sample_many"], "rcf": ["infer_condition"], "ensemble": ["sample_many"],
                "truncated": ["sample_many"]}[name]
        keys = dict(log_prob=["x", "condition"], sample=["condition", "temperature", "seed"],
                    best_of_n=["condition", "n", "temperature", "seed"], infer_condition=["x"],
                    sample_many=["condition", "num_samples", "temperature", "seed"])
        for sig in sigs:
            out = tmp_path / f"{name}_{sig}"
            arg = ";".join(f"{k}={files[k]}" for k in keys[sig])
            proc = subprocess.run([os.path.join(BIN, "saved_model_cli"), "run", "--dir", path, "--tag_set", "serve",
                                   "--signature_def", sig, "--inputs", arg, "--outdir", str(out)],
                                  capture_output=True, text=True, timeout=180,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            assert proc.returncode == 0, (sig, proc.stderr[-3000:])
            if sig == "log_prob":
                lp = np.load(out / "log_prob.npy")
                np.testing.assert_allclose(lp, model.log_prob(inputs["x"], inputs["condition"]).numpy(), rtol=1e-5)
            else:
                assert len(os.listdir(out)) >= 1


def test_no_python_ops_in_the_graph(exported):
    base, models = exported
    denylist = "EagerPyFunc,PyFunc,PyFuncStateless,PrintV2"  # Python callbacks TF Serving cannot run; prints
    for name, (_, path, _) in models.items():
        proc = subprocess.run([os.path.join(BIN, "saved_model_cli"), "scan", "--dir", path, "--tag_set", "serve",
                               "--op_denylist", denylist], capture_output=True, text=True, timeout=180,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "does not contain" in proc.stdout and "PyFunc" in proc.stdout, proc.stdout


def test_bad_requests_get_readable_errors(exported):
    base, models = exported
    loaded = tf.saved_model.load(models["glow"][1])
    x, c = models["glow"][2]["x"], models["glow"][2]["condition"]
    s = loaded.signatures
    args = dict(condition=tf.constant(c), temperature=tf.constant(0.5), seed=tf.constant(1, tf.int64))
    cases = [
        (lambda: s["log_prob"](x=tf.constant(x[:3]), condition=tf.constant(c)),
         "x and condition must have the same batch size"),
        (lambda: s["sample"](**{**args, "temperature": tf.constant(-1.0)}), "temperature must be >= 0"),
        (lambda: s["best_of_n"](n=tf.constant(0), **args), "n must be >= 1"),
        (lambda: s["best_of_n"](n=tf.constant(65), **args), "n must be <= 64"),
        (lambda: s["sample_many"](num_samples=tf.constant(0), **args), r"num_samples must be in \[1, 100000\]"),
        (lambda: s["sample_many"](num_samples=tf.constant(100_001), **args), r"num_samples must be in \[1, 100000\]"),
    ]
    for fn, pattern in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            fn()
    rcf = tf.saved_model.load(models["rcf"][1]).signatures
    bad = models["rcf"][2]["x"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="x contains NaN or inf"):
        rcf["log_prob"](x=tf.constant(bad), condition=tf.constant(models["rcf"][2]["condition"]))
    # any size is accepted, but x must be the condition's size x factor (2 here)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="x height and width must be the condition height and width x factor 2"):
        s["log_prob"](x=tf.constant(np.zeros((5, 16, 16, 1), np.uint8)), condition=tf.constant(c))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"divisible by 2\^levels = 4"):
        s["log_prob"](x=tf.constant(np.zeros((5, 12, 10, 1), np.uint8)), condition=tf.constant(np.zeros((5, 6, 5, 1),
                                                                                                          np.uint8)))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):  # wrong channels: the input spec
        s["log_prob"](x=tf.constant(np.zeros((5, 8, 8, 3), np.uint8)), condition=tf.constant(c))


def test_image_signatures_take_any_size_in_a_fresh_process(exported, tmp_path):
    """Trained at 8x8, served at 16x24 (condition 8x12) by a process that imports only TensorFlow."""
    base, models = exported
    model, path, inputs = models["glow"]
    spec = tf.saved_model.load(path).signatures["log_prob"].structured_input_signature[1]
    assert spec["x"].shape.as_list() == [None, None, None, 1]
    assert spec["condition"].shape.as_list() == [None, None, None, 1]
    rng = np.random.default_rng(3)
    big = dict(inputs, x=rng.integers(0, 256, (5, 16, 24, 1)).astype(np.uint8),
               condition=rng.integers(0, 256, (5, 8, 12, 1)).astype(np.uint8))
    npz = str(tmp_path / "big_inputs.npz")
    np.savez(npz, **big)
    _, a = _probe(path, npz, str(tmp_path / "big.npz"))
    lp = model.log_prob(big["x"], big["condition"]).numpy()
    np.testing.assert_allclose(a["log_prob/log_prob"], lp, rtol=1e-5)
    np.testing.assert_allclose(a["log_prob/bits_per_dim"], -lp / (16 * 24 * np.log(2)), rtol=1e-5)
    in_memory = np.round(model.sample(big["condition"], temperature=0.7, seed=11).numpy() * 255).astype(np.uint8)
    assert a["sample/samples"].shape == (5, 16, 24, 1) and a["sample/samples"].dtype == np.uint8
    np.testing.assert_allclose(a["sample/samples"], in_memory, atol=1)
    assert a["best_of_n/samples"].shape == (5, 16, 24, 1)
    assert a["sample_many/samples"].shape == (5, 3, 16, 24, 1)


def test_a_class_conditional_image_model_serves_any_size_from_a_fresh_process(tmp_path):
    """The *_at_size signatures of a label-conditioned model: the library's sample(size=...) at two
    sizes, from a process that imports only TensorFlow; bad sizes fail in the graph."""
    model = tiny_glow("label")
    rng = np.random.default_rng(0)
    x, c = rng.integers(0, 256, (16, 8, 8, 1)).astype(np.uint8), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    model.initialize(x, c)
    path = export.save(model, str(tmp_path / "export"), model_name="label")
    signatures = tf.saved_model.load(path).signatures
    assert {"sample", "sample_at_size", "best_of_n_at_size", "sample_many_at_size"} <= set(signatures)
    for h, w in ((8, 8), (16, 24)):
        inputs = dict(condition=c[:3], size=np.array([h, w], np.int32), temperature=np.float32(0.7),
                      seed=np.int64(5), n=np.int32(3), num_samples=np.int32(2), x=x[:3])
        np.savez(str(tmp_path / "in.npz"), **inputs)
        _, a = _probe(path, str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
        in_memory = model.sample(c[:3], temperature=0.7, seed=5, size=(h, w)).numpy()
        np.testing.assert_allclose(a["sample_at_size/samples"], np.round(in_memory * 255), atol=1)
        best, lp = model.best_of_n(c[:3], 3, temperature=0.7, seed=5, size=(h, w))
        np.testing.assert_allclose(a["best_of_n_at_size/log_prob"], lp.numpy(), rtol=1e-4)
        assert a["sample_many_at_size/samples"].shape == (3, 2, h, w, 1)
    # the default-size signature is still there and still 8x8
    assert a["sample/samples"].shape == (3, 8, 8, 1)
    for size, pattern in (([6, 8], r"divisible by 2\^levels = 4"), ([0, 8], "must be positive"),
                          ([2048, 1024], "at most max_pixels")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            signatures["sample_at_size"](condition=tf.constant(c[:1]), size=tf.constant(size, tf.int32),
                                         temperature=tf.constant(0.5), seed=tf.constant(1, tf.int64))


def test_max_pixels_is_enforced_in_the_graph(exported):
    base, models = exported
    s = tf.saved_model.load(models["glow"][1]).signatures
    assert export.MAX_PIXELS == 1024 * 1024
    x = tf.zeros((1, 1024, 1028, 1), tf.uint8)  # divisible by 4, one row of 1028 too many
    c = tf.zeros((1, 512, 514, 1), tf.uint8)
    pattern = r"at most max_pixels = 1048576 pixels \(height x width\) per image"
    with pytest.raises(tf.errors.InvalidArgumentError, match="x may have " + pattern):
        s["log_prob"](x=x, condition=c)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        s["sample"](condition=c, temperature=tf.constant(0.5), seed=tf.constant(1, tf.int64))


def test_client_requests_match_the_signatures(exported):
    """The REST body and the gRPC request decode to exactly the tensors each signature takes."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving"))
    import client

    base, models = exported
    model, path, inputs = models["glow"]
    loaded = tf.saved_model.load(path).signatures
    args = {k: inputs[k] for k in ("condition", "n", "temperature", "seed")}
    body = json.loads(json.dumps(client.rest_body("best_of_n", args)))
    sig = loaded[body["signature_name"]]
    spec = sig.structured_input_signature[1]
    rest_out = sig(**{k: tf.constant(v, spec[k].dtype) for k, v in body["inputs"].items()})
    req = client.grpc_request("glow", "best_of_n", args)
    assert req.model_spec.signature_name == "best_of_n" and set(req.inputs) == set(spec)
    grpc_out = sig(**{k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()})
    for k in rest_out:
        np.testing.assert_array_equal(rest_out[k].numpy(), grpc_out[k].numpy())


def test_export_command_from_a_training_run(tmp_path):
    from tfcflow import cli, trainer

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = tmp_path / "run"
    trainer.train(os.path.join(root, "training", "gaussian_mixture", "rcf_fast.json"), str(run),
                  ["train.steps=20", "train.steps_per_epoch=10", "train.ema=0.9"])
    assert cli.main(["export", str(run), "--base", str(tmp_path / "models"), "--name", "gm"]) == 0
    loaded = tf.saved_model.load(str(tmp_path / "models" / "gm" / "1"))
    restored = trainer.load_run(str(run))
    x, _, c = gm.sample(4, seed=3)
    np.testing.assert_allclose(loaded.signatures["log_prob"](x=tf.constant(x), condition=tf.constant(c))["log_prob"],
                               restored.log_prob(x, c).numpy(), rtol=1e-5)
    # the same run exported as 2 parallel sub-batches serves the same densities and seeded samples
    assert cli.main(["export", str(run), "--base", str(tmp_path / "models"), "--name", "gm",
                     "--sub-batches", "2"]) == 0
    chained = tf.saved_model.load(str(tmp_path / "models" / "gm" / "2"))
    for name, args in (("log_prob", dict(x=x, condition=c)),
                       ("sample", dict(condition=c, temperature=np.float32(0.8), seed=np.int64(5)))):
        one = loaded.signatures[name](**{k: tf.constant(v) for k, v in args.items()})
        two = chained.signatures[name](**{k: tf.constant(v) for k, v in args.items()})
        for key in one:
            np.testing.assert_allclose(two[key].numpy(), one[key].numpy(), rtol=1e-5, atol=1e-6)
    assert cli.main(["export", str(run), "--base", str(tmp_path / "models"), "--sub-batches", "0"]) == 2
    assert cli.main(["export", str(tmp_path / "nope"), "--base", str(tmp_path / "models")]) == 2
