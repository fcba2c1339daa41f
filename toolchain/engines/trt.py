"""The serialized TensorRT engine of a verified bundle, run with the TensorRT runtime API; and the
checks that decide whether an engine can run (or be built) here at all.

Engines are tied to a GPU and a TensorRT version: one built by another version, or for another
compute capability than its hardware compatibility level allows, is refused with the command that
rebuilds it (``kdtool build-engine BUNDLE``, :mod:`kdtool.export.trt`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtool.engines.base import BundleEngine, input_feed
from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError

ENGINE_FILE = "model.engine"


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when the package is not importable."""
    try:
        import tensorrt as trt
    except Exception:
        return None
    return str(trt.__version__)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def build_unavailable_reason() -> str | None:
    """Why an engine cannot be built (or run) here (None when it can)."""
    if tensorrt_version() is None:
        return "TensorRT is not installed"
    if not cuda_available():
        return "no CUDA GPU is visible"
    return None


def check_engine_version(built_with: str | None, installed: str | None, bundle: Path) -> None:
    """Refuse an engine built by another TensorRT version (engines are not portable across versions)."""
    if built_with and installed and built_with != installed:
        raise IntegrityError(f"bundle {bundle}: {ENGINE_FILE} was built by TensorRT {built_with} but this machine has "
                             f"TensorRT {installed}; rebuild it here with: kdtool build-engine {bundle}")


def gpu_identity() -> dict | None:
    """The visible GPU an engine is built for or run on: name and compute capability (None without one)."""
    if not cuda_available():
        return None
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def check_engine_gpu(built_on: dict | None, running_on: dict | None, level: str, bundle: Path) -> None:
    """Refuse an engine built for another GPU than this one, as its hardware compatibility level rules.

    ``none`` and ``same_compute_capability`` engines run only on the compute capability they were built
    for; ``ampere_plus`` engines on any compute capability 8.0 or later.
    """
    if not built_on or not running_on:
        return  # an engine from before GPUs were recorded: TensorRT itself is the last check
    built, here = built_on.get("compute_capability"), running_on.get("compute_capability")
    if level == "ampere_plus":
        ok = here is not None and float(here) >= 8.0
    else:
        ok = built == here
    if not ok:
        raise IntegrityError(f"bundle {bundle}: {ENGINE_FILE} was built for {built_on.get('name')} (compute capability "
                             f"{built}, hardware compatibility {level}) but this GPU is {running_on.get('name')} "
                             f"(compute capability {here}); rebuild it here with: kdtool build-engine {bundle}")


class TrtEngine(BundleEngine):
    """The serialized TensorRT engine of a verified bundle (question answering: ``(start_logits, end_logits)``)."""

    kind = "tensorrt"
    device = "cuda"
    outputs = ("start_logits", "end_logits")

    def __init__(self, path, bundle, **_):
        import tensorrt as trt
        import torch

        self._init_common(path, bundle)
        manifest = self.manifest
        self.graph_member, self.providers = manifest.get("trt_onnx") or "", ("TensorRT",)
        check_engine_version(manifest["tensorrt"].get("version"), str(trt.__version__), self.path)
        check_engine_gpu(manifest["tensorrt"].get("gpu"), gpu_identity(),
                         manifest["tensorrt"].get("hardware_compatibility_level") or "none", self.path)
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(self.verified.member(manifest["engine"]))
        if self.engine is None:
            raise InputError(f"bundle {self.path}: TensorRT could not deserialize {manifest['engine']}; "
                             f"rebuild it with kdtool build-engine {self.path}")
        self._release_bytes()
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtype = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in names}
        self.input_names = tuple(self._inputs)
        self._stream = torch.cuda.Stream()
        shapes = (manifest["tensorrt"].get("profile_shapes") or {}).get("max")
        self.max_batch = int(shapes[0]) if shapes else None
        if shapes:  # windows longer than the optimization profile allows cannot run
            self.max_length = min(self.max_length or shapes[1], int(shapes[1]))

    def run(self, batch):
        n = len(batch["input_ids"])
        if self.max_batch and n > self.max_batch:  # the engine's profile caps the batch: run in slices
            parts = [self.run({k: v[i:i + self.max_batch] for k, v in batch.items()}) for i in range(0, n, self.max_batch)]
            return tuple(np.concatenate([p[j] for p in parts]) for j in range(len(self.outputs)))
        torch = self._torch
        feed = input_feed(batch, self._inputs, self._dtype)
        tensors = {}
        for name, arr in feed.items():
            tensors[name] = torch.from_numpy(arr).cuda()
            self.context.set_input_shape(name, tuple(arr.shape))
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            tensors[name] = torch.empty(shape, dtype=torch.from_numpy(np.zeros(0, self._dtype[name])).dtype, device="cuda")
        for name, t in tensors.items():
            self.context.set_tensor_address(name, t.data_ptr())
        with torch.cuda.stream(self._stream):
            self.context.execute_async_v3(self._stream.cuda_stream)
        self._stream.synchronize()
        return tuple(tensors[name].float().cpu().numpy() for name in self.outputs)

    def gpu_name(self) -> str:
        return (gpu_identity() or {}).get("name") or "CUDA GPU"

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()


def wanted(opening) -> bool:
    """Whether the registry opens ``opening`` with the TensorRT engine: a bundle with a built engine, asked for
    (``--device tensorrt``: an error when it cannot run) or allowed (auto, cuda) where TensorRT and a GPU exist."""
    if opening.bundle is None:
        return False
    manifest = opening.bundle.manifest
    has_engine = bool(manifest.get("engine")) and bool((manifest.get("tensorrt") or {}).get("built"))
    qa = opening.head.outputs == TrtEngine.outputs
    if opening.device == "tensorrt":
        if not qa:
            raise InputError(f"bundle {opening.path}: TensorRT engines are built for question-answering bundles only; "
                             f"run this {opening.head.name} bundle with --device cpu or cuda")
        if not has_engine:
            raise InputError(f"bundle {opening.path} has no TensorRT engine; build one with kdtool build-engine {opening.path}")
        reason = build_unavailable_reason()
        if reason:
            raise EnvironmentUnsupported(f"cannot run the TensorRT engine of {opening.path}: {reason}")
        return True
    return qa and has_engine and opening.device in ("auto", "cuda") and build_unavailable_reason() is None


def open_engine(opening, **_) -> TrtEngine:
    """The registry's loader (:mod:`kdtool.engines.registry`)."""
    return TrtEngine(opening.path, opening.bundle)
