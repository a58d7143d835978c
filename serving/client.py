"""Client for tfcflow models behind TF Serving: builds REST (columnar "inputs") and gRPC
(tensorflow-serving-api PredictRequest) requests for every exported signature.

    # REST (port 8501), draw 4 super-resolutions of a low-resolution digit saved as .npy:
    python serving/client.py rest --url http://localhost:8501 --model mnist_sr_caflow \
        --signature best_of_n --input condition=lr.npy --input n=10 --input temperature=0.5 --input seed=1
    # gRPC (port 8500):
    python serving/client.py grpc --target localhost:8500 --model mnist_sr_caflow --signature sample \
        --input condition=lr.npy --input temperature=0.5 --input seed=1

Inputs and dtypes follow the signatures (tfcflow/export.py): images uint8, vectors float32,
temperature float32, seed int64, n int32; scalars go in the columnar "inputs" format because TF
Serving's row format ("instances") needs a shared batch dimension on every input.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request

import numpy as np

DTYPES = {"temperature": np.float32, "seed": np.int64, "n": np.int32}


def as_input(name: str, value, image_dtype=np.uint8) -> np.ndarray:
    """Casts one input to the dtype its signature expects (x/condition keep their array dtype)."""
    if name in DTYPES:
        return np.asarray(value, DTYPES[name])
    return np.asarray(value)


def rest_body(signature: str, inputs: dict) -> dict:
    """The JSON body of ``POST /v1/models/<model>[/versions/<v>]:predict``."""
    return {"signature_name": signature, "inputs": {k: as_input(k, v).tolist() for k, v in inputs.items()}}


def rest_predict(url: str, model: str, signature: str, inputs: dict, version=None, timeout=60) -> dict:
    path = f"{url.rstrip('/')}/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    req = urllib.request.Request(path, data=json.dumps(rest_body(signature, inputs)).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        outputs = json.loads(resp.read())["outputs"]
    outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
    return {k: np.asarray(v) for k, v in outputs.items()}


def grpc_request(model: str, signature: str, inputs: dict, version=None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = int(version)
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(as_input(k, v)))
    return req


def grpc_predict(target: str, model: str, signature: str, inputs: dict, version=None, timeout=60) -> dict:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    resp = stub.Predict(grpc_request(model, signature, inputs, version), timeout)
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def _parse_inputs(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = np.load(value) if value.endswith(".npy") else json.loads(value)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("protocol", choices=["rest", "grpc"])
    p.add_argument("--url", default="http://localhost:8501")
    p.add_argument("--target", default="localhost:8500")
    p.add_argument("--model", required=True)
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--version", default=None)
    p.add_argument("--input", action="append", default=[], metavar="KEY=VALUE|FILE.npy")
    p.add_argument("--save", default=None, help="write the outputs to this .npz")
    args = p.parse_args(argv)
    inputs = _parse_inputs(args.input)
    if args.protocol == "rest":
        out = rest_predict(args.url, args.model, args.signature, inputs, args.version)
    else:
        out = grpc_predict(args.target, args.model, args.signature, inputs, args.version)
    if args.save:
        np.savez(args.save, **out)
    print(json.dumps({k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
