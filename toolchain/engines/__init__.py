"""kdtool.engines: every engine and its loader, one interface, one registry of kinds.

    load_engine(path, task=None, device="auto", ...) -> QAEngine   (kdtool.engines.registry)

Modules: ``base`` (the :class:`QAEngine` interface, the one input-feed builder of ONNX Runtime and
TensorRT, what bundle engines share), ``pytorch`` (Hugging Face directories and in-memory models),
``ort`` (bundles on ONNX Runtime, ``choose_providers``), ``trt`` (a bundle's TensorRT engine),
``registry`` (which kind opens a path). Engines know model heads (:mod:`kdtool.models.heads`), not
tasks; heavy packages (torch, onnxruntime, tensorrt) are imported only by the engine that runs on them.
"""

from kdtool.engines.base import QAEngine
from kdtool.engines.registry import ENGINE_KINDS, bundle_signature, load_engine

__all__ = ["ENGINE_KINDS", "QAEngine", "bundle_signature", "load_engine"]
