"""``model.onnx`` of a verified bundle on ONNX Runtime (CPU, CUDA or TensorRT execution providers)."""

from __future__ import annotations

import numpy as np

from kdtool.bundle.arithmetic import ort_exactness_config
from kdtool.bundle.precision import CPU, CUDA, TRT_EP, manifest_precision
from kdtool.engines.base import BundleEngine, input_feed
from kdtool.errors import EnvironmentUnsupported, InputError
from kdtool.models.heads import HEADS


def choose_providers(manifest: dict, device: str, requested=None) -> list[str]:
    """Execution providers in order: requested or the profile's, filtered by device, by what the bundle's
    precision can run on (:mod:`kdtool.bundle.precision`) and by availability."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = list(requested or (manifest.get("device_profile") or {}).get("providers") or [TRT_EP, CUDA, CPU])
    if device == "cpu":
        wanted = [CPU]
    precision = manifest_precision(manifest)
    if precision is not None:
        wanted = [p for p in wanted if p in precision.providers]
    chosen = [p for p in wanted if p in available]
    if device.startswith("cuda") and not any(p in (CUDA, TRT_EP) for p in chosen):
        raise EnvironmentUnsupported(f"device {device} requested but this onnxruntime has no CUDA or TensorRT provider "
                                     f"(available: {', '.join(sorted(available))}); use --device cpu")
    return chosen + ([CPU] if CPU not in chosen else [])


INT8_ALLOWED_KEY = "session.qdqisint8allowed"  # ORT session option: "1" keeps s8 activations on x86


def session_options(*, threads: int | None = None, spinning: bool = False, int8_activations: bool = False):
    """THE ONNX Runtime session options of kdtool: every session it opens (engines, export parity, QAT checks).

    Errors-only logging, full graph optimization, ``threads`` intra-op threads, worker threads that sleep
    between ops unless ``spinning`` (busy-waiting halves throughput on a CPU shared with other processes:
    bench/latency.py), and exact INT8 products on this CPU (:func:`kdtool.bundle.arithmetic.ort_exactness_config`);
    ``int8_activations`` keeps s8 activations (``session.qdqisint8allowed``) instead of ORT's u8 rewrite.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if int8_activations:
        opts.add_session_config_entry(INT8_ALLOWED_KEY, "1")
    for key, value in ort_exactness_config(int8_activations=int8_activations).items():
        opts.add_session_config_entry(key, value)
    return opts


class OrtEngine(BundleEngine):
    """``model.onnx`` of a verified bundle on ONNX Runtime; ``run`` gives the head's ``outputs``."""

    kind = "onnxruntime"

    def __init__(self, path, bundle, *, outputs: tuple[str, ...] = HEADS["qa"].outputs, device: str = "auto",
                 threads: int | None = None, providers=None, spinning: bool = False):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # errors only: its warnings would break the one-line rule
        self._init_common(path, bundle)
        manifest = self.manifest
        self.outputs = list(outputs)
        self.providers = choose_providers(manifest, device, providers)
        opts = session_options(threads=threads or (manifest.get("device_profile") or {}).get("threads"),
                               spinning=spinning)
        try:
            self.session = self._session(manifest["model"], opts)
        except Exception as err:  # ORT raises its own exception types for graphs it cannot load
            raise InputError(f"bundle {self.path}: ONNX Runtime cannot load {manifest['model']} "
                             f"({str(err).splitlines()[0][:160]})") from None
        self.providers = self.session.get_providers()
        self.graph_member = manifest["model"]
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
        results = self.session.run(self.outputs, input_feed(batch, self.input_names))
        return tuple(r.astype(np.float32, copy=False) for r in results)

    def num_parameters(self) -> int | None:
        return self.manifest.get("num_parameters") or getattr(self, "_parameters", None)

    def describe(self) -> dict:
        return {**super().describe(), "providers": list(self.providers)}


def open_engine(opening, *, threads: int | None = None, providers=None, spinning: bool = False, **_) -> OrtEngine:
    """The registry's loader (:mod:`kdtool.engines.registry`)."""
    return OrtEngine(opening.path, opening.bundle, outputs=opening.head.outputs, device=opening.device, threads=threads,
                     providers=providers, spinning=spinning)
