"""The ``config.pbtxt`` of every model ``kdtool triton`` writes, as data (rendered by :mod:`kdtool.deploy.pbtxt`).

The tensors the clients see are :mod:`kdtool.serve.oip`'s, never spelled here: the Python model and the
ensemble take ``question``/``context`` and give ``answer``/``start``/``end``/``score``, one element per question.

* ``python`` layout: one model on the Python backend, ``max_batch_size > 0`` with ``dims: [1]`` (the
  ``[B, 1]`` form), dynamic batching over requests, kdtool's verified engine inside.
* ``ensemble`` layout: ``NAME`` (platform ``ensemble``) = ``NAME_tokenizer`` (Python) -> ``NAME_encoder``
  (``onnxruntime``, ``tensorrt`` or ``python`` backend) -> ``NAME_decoder`` (Python). A question's context
  becomes a variable number of windows, so the tokenizer, the decoder and the ensemble itself are
  non-batching models (``max_batch_size: 0``, full shapes ``[-1, 1]``: the same ``[B, 1]`` tensors on the
  wire); the encoder is the batching one (``max_batch_size`` windows, dynamic batching across requests).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.deploy.pbtxt import Enum, onnx_tensor, parameters, tensor
from kdtool.serve.oip import INPUTS, OUTPUTS

WINDOW_QUESTION = "window_question"  # INT64 [W]: which question of the request each window belongs to
WINDOW_OFFSETS = "window_offsets"  # INT64 [W, L, 2]: character span of each context token, -1 elsewhere

ENCODER_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": None}


@dataclass(frozen=True)
class Batching:
    """What the device profile (or the command line) says about batching one model."""

    max_batch_size: int  # questions (python layout) or windows (ensemble encoder) one batch may hold
    max_queue_delay_us: int
    instances: int
    gpu: bool  # instance kind of the encoder (the Python models always run on CPU instances)
    pass_windows: int  # python layout: windows per forward pass of kdtool's engine (the profile's batch size)


def _dynamic(batching: Batching) -> dict:
    return {"max_queue_delay_microseconds": batching.max_queue_delay_us}


def _instances(batching: Batching, gpu: bool = False) -> list[dict]:
    return [{"count": batching.instances, "kind": Enum("KIND_GPU" if gpu else "KIND_CPU")}]


def _oip_io(dims: list[int]) -> dict:
    return {"input": [tensor(n, t, dims) for n, t in INPUTS], "output": [tensor(n, t, dims) for n, t in OUTPUTS]}


def python_qa_config(name: str, batching: Batching, params: dict[str, str]) -> dict:
    """The ``python`` layout's one model: text in, text out, batched across requests."""
    return {"name": name, "backend": "python", "max_batch_size": batching.max_batch_size, **_oip_io([1]),
            "dynamic_batching": _dynamic(batching), "instance_group": _instances(batching),
            "parameters": parameters({"kdtool_role": "qa", "batch_size": batching.pass_windows, **params})}


def tokenizer_config(name: str, manifest: dict, params: dict[str, str]) -> dict:
    outputs = [onnx_tensor(i, [-1, -1]) for i in manifest["inputs"]]
    outputs += [tensor(WINDOW_QUESTION, "INT64", [-1]), tensor(WINDOW_OFFSETS, "INT64", [-1, -1, 2])]
    return {"name": name, "backend": "python", "max_batch_size": 0,
            "input": [tensor(n, t, [-1, 1]) for n, t in INPUTS], "output": outputs,
            "instance_group": [{"count": 1, "kind": Enum("KIND_CPU")}],
            "parameters": parameters({"kdtool_role": "tokenizer", **params})}


def encoder_config(name: str, manifest: dict, backend: str, batching: Batching, params: dict[str, str]) -> dict:
    """The windows -> logits model on ``backend``; ``python`` runs the bundle's ONNX graph with ONNX Runtime."""
    config = {"name": name, "backend": backend, "max_batch_size": batching.max_batch_size,
              "input": [onnx_tensor(i, [-1]) for i in manifest["inputs"]],
              "output": [onnx_tensor(o, [-1]) for o in manifest["outputs"]],
              "dynamic_batching": _dynamic(batching),
              "instance_group": _instances(batching, gpu=batching.gpu and backend != "python")}
    if ENCODER_FILES[backend]:
        config["default_model_filename"] = ENCODER_FILES[backend]
    if backend == "python":
        config["parameters"] = parameters({"kdtool_role": "encoder", **params})
    return config


def decoder_config(name: str, manifest: dict, params: dict[str, str]) -> dict:
    inputs = [onnx_tensor(o, [-1, -1]) for o in manifest["outputs"]]
    inputs += [tensor(WINDOW_QUESTION, "INT64", [-1]), tensor(WINDOW_OFFSETS, "INT64", [-1, -1, 2]),
               tensor("context", dict(INPUTS)["context"], [-1, 1])]
    return {"name": name, "backend": "python", "max_batch_size": 0, "input": inputs,
            "output": [tensor(n, t, [-1, 1]) for n, t in OUTPUTS],
            "instance_group": [{"count": 1, "kind": Enum("KIND_CPU")}],
            "parameters": parameters({"kdtool_role": "decoder", **params})}


def _step(model: str, inputs: list[str], outputs: list[str]) -> dict:
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": n, "value": n} for n in inputs],
            "output_map": [{"key": n, "value": n} for n in outputs]}


def ensemble_config(name: str, manifest: dict, parts: dict[str, str]) -> dict:
    """The pipeline ``parts["tokenizer"] -> parts["encoder"] -> parts["decoder"]``; tensors keep their names."""
    enc_in = [i["name"] for i in manifest["inputs"]]
    enc_out = [o["name"] for o in manifest["outputs"]]
    windows = [WINDOW_QUESTION, WINDOW_OFFSETS]
    steps = [_step(parts["tokenizer"], [n for n, _ in INPUTS], enc_in + windows),
             _step(parts["encoder"], enc_in, enc_out),
             _step(parts["decoder"], enc_out + windows + ["context"], [n for n, _ in OUTPUTS])]
    return {"name": name, "platform": "ensemble", "max_batch_size": 0, **_oip_io([-1, 1]),
            "ensemble_scheduling": {"step": steps}}
