"""Bundles as QA engines: ONNX Runtime (CPU / CUDA / TensorRT providers) or a TensorRT engine.

``load_bundle_engine`` verifies every checksum of the bundle before any graph or engine is
deserialized, then picks the backend: the TensorRT engine when the bundle has one, the device
allows it and TensorRT with a GPU is present (an engine from another TensorRT version is refused);
otherwise ``model.onnx`` on ONNX Runtime with the providers that are both wanted and available.
Pre- and post-processing are the shared ones (:mod:`kdtool.predict`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from kdtool.engine import QAEngine
from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError
from kdtool.export import trt as T
from kdtool.export.verified import VerifiedBundle, check_tokenizer_fits, open_verified_bundle

CPU, CUDA, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def choose_providers(manifest: dict, device: str, requested=None) -> list[str]:
    """Execution providers in order: requested or the profile's, filtered by device and availability."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = list(requested or (manifest.get("device_profile") or {}).get("providers") or [TRT_EP, CUDA, CPU])
    if device == "cpu":
        wanted = [CPU]
    if str(manifest.get("precision", "")).startswith("int8"):
        wanted = [p for p in wanted if p != CUDA]  # ORT's CUDA provider does not run INT8 graphs
    chosen = [p for p in wanted if p in available]
    if device.startswith("cuda") and not any(p in (CUDA, TRT_EP) for p in chosen):
        raise EnvironmentUnsupported(f"device {device} requested but this onnxruntime has no CUDA or TensorRT provider "
                                     f"(available: {', '.join(sorted(available))}); use --device cpu")
    return chosen + ([CPU] if CPU not in chosen else [])


def _verified(path, manifest) -> VerifiedBundle:
    """``manifest`` when it is already a VerifiedBundle; otherwise the bundle at ``path``, read and verified now."""
    return manifest if isinstance(manifest, VerifiedBundle) else open_verified_bundle(path)


class _BundleEngine(QAEngine):
    def _init_common(self, path: Path, manifest):
        import json

        from kdtool.models import load_tokenizer

        self.verified = _verified(path, manifest)
        self.path, self.manifest = Path(path), self.verified.manifest
        self.name = self.path.name
        self.max_length = self.manifest.get("max_seq_length")
        with self.verified.private_copy(self.verified.tokenizer_files()) as copy:  # the verified bytes, not the path
            self.tokenizer = load_tokenizer(copy)
        if "config.json" in self.verified.data:
            try:
                config = json.loads(self.verified.member("config.json"))
            except ValueError:
                raise IntegrityError(f"bundle {self.path}: config.json is not valid JSON; export the bundle again") from None
            check_tokenizer_fits(self.tokenizer, config if isinstance(config, dict) else {}, f"bundle {self.path}")

    def num_parameters(self) -> int | None:
        return self.manifest.get("num_parameters")

    def _release_bytes(self) -> None:
        """Drop the verified file bytes once the backend holds its own copy: a bundle is not kept twice in memory."""
        self.verified = replace(self.verified, data={})

    def describe(self) -> dict:
        d = super().describe()
        d.update(precision=self.manifest.get("precision"), bundle_schema=self.manifest.get("schema_version"),
                 signed_by=self.verified.signed_by)
        return d


class OrtQAEngine(_BundleEngine):
    """``model.onnx`` of a verified bundle on ONNX Runtime."""

    kind = "onnxruntime"

    def __init__(self, path, manifest: dict, *, device: str = "auto", threads: int | None = None, providers=None,
                 spinning: bool = False):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # errors only: its warnings would break the one-line rule
        self._init_common(path, manifest)
        manifest = self.manifest
        self.providers = choose_providers(manifest, device, providers)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = threads or (manifest.get("device_profile") or {}).get("threads")
        if threads:
            opts.intra_op_num_threads = int(threads)
        # ORT's worker threads busy-wait between ops by default; on a CPU shared with other processes
        # that halves throughput (bench/latency.py), so they sleep unless asked to spin.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            self.session = self._session(manifest["model"], opts)
        except Exception as err:  # ORT raises its own exception types for graphs it cannot load
            raise InputError(f"bundle {self.path}: ONNX Runtime cannot load {manifest['model']} "
                             f"({str(err).splitlines()[0][:160]})") from None
        self.providers = self.session.get_providers()
        self.device = "cuda" if any(p in (CUDA, TRT_EP) for p in self.providers[:1]) else "cpu"
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        if not manifest.get("num_parameters"):  # counted from the verified graph while its bytes are still here
            import onnx

            graph = onnx.load_model_from_string(self.verified.member(manifest["model"]))
            self._parameters = int(sum(np.prod(i.dims) for i in graph.graph.initializer))
        self._release_bytes()

    def _session(self, rel: str, opts):
        """An ORT session on the verified bytes of graph ``rel`` (a private copy when it has external data)."""
        import onnxruntime as ort

        if not self.verified.has_external_data(rel):
            return ort.InferenceSession(self.verified.member(rel), opts, providers=self.providers)
        graph = self.verified.manifest["files"]
        with self.verified.private_copy([r for r in graph if r == rel or not r.endswith(".onnx")]) as copy:
            return ort.InferenceSession(str(copy / rel), opts, providers=self.providers)

    def run(self, batch):
        feed = {n: np.ascontiguousarray(batch[n] if n in batch else np.zeros_like(batch["input_ids"]), dtype=np.int64)
                for n in self.input_names}
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return start.astype(np.float32, copy=False), end.astype(np.float32, copy=False)

    def num_parameters(self) -> int | None:
        return self.manifest.get("num_parameters") or getattr(self, "_parameters", None)

    def describe(self) -> dict:
        return {**super().describe(), "providers": list(self.providers)}


class TrtQAEngine(_BundleEngine):
    """The serialized TensorRT engine of a verified bundle, run with the TensorRT runtime API."""

    kind = "tensorrt"
    device = "cuda"

    def __init__(self, path, manifest: dict, **_):
        import tensorrt as trt
        import torch

        self._init_common(path, manifest)
        manifest = self.manifest
        T.check_engine_version(manifest["tensorrt"].get("version"), str(trt.__version__), self.path)
        T.check_engine_gpu(manifest["tensorrt"].get("gpu"), T.gpu_identity(),
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
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        torch = self._torch
        tensors = {}
        for n in self._inputs:
            arr = batch[n] if n in batch else np.zeros_like(batch["input_ids"])
            tensors[n] = torch.from_numpy(np.ascontiguousarray(arr, dtype=self._dtype[n])).cuda()
            self.context.set_input_shape(n, tuple(arr.shape))
        for n in self._outputs:
            shape = tuple(self.context.get_tensor_shape(n))
            tensors[n] = torch.empty(shape, dtype=torch.from_numpy(np.zeros(0, self._dtype[n])).dtype, device="cuda")
        for n, t in tensors.items():
            self.context.set_tensor_address(n, t.data_ptr())
        with torch.cuda.stream(self._stream):
            self.context.execute_async_v3(self._stream.cuda_stream)
        self._stream.synchronize()
        return (tensors["start_logits"].float().cpu().numpy(), tensors["end_logits"].float().cpu().numpy())

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()


def load_bundle_engine(path, *, device: str = "auto", threads: int | None = None, providers=None,
                       spinning: bool = False, require_signature=None, **_) -> QAEngine:
    """Verify the bundle at ``path`` and open it with the best backend the machine and ``device`` allow.

    ``device``: "auto", "cpu", "cuda" (ORT CUDA/TensorRT providers) or "tensorrt" (the engine, required).
    ``spinning``: let ORT's CPU worker threads busy-wait between ops (faster only on an idle machine).
    ``require_signature``: a public key file; the bundle must be signed by it.
    """
    path = Path(path)
    # checksums (and the signature) first, on bytes read once: nothing else is read from the bundle afterwards
    verified = open_verified_bundle(path, public_key=require_signature)
    manifest = verified.manifest
    has_engine = bool(manifest.get("engine")) and bool((manifest.get("tensorrt") or {}).get("built"))
    if device == "tensorrt":
        if not has_engine:
            raise InputError(f"bundle {path} has no TensorRT engine; build one with kdtool build-engine {path}")
        reason = T.build_unavailable_reason()
        if reason:
            raise EnvironmentUnsupported(f"cannot run the TensorRT engine of {path}: {reason}")
        return TrtQAEngine(path, verified)
    if has_engine and device in ("auto", "cuda") and T.build_unavailable_reason() is None:
        return TrtQAEngine(path, verified)
    return OrtQAEngine(path, verified, device=device, threads=threads, providers=providers, spinning=spinning)
