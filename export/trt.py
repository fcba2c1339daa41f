"""TensorRT: the TRT-ready ONNX graph and, where TensorRT and a CUDA GPU exist, the engine.

TRT-ready ONNX: the plain (unfused) Optimum graph, standard ONNX ops only, with precision
written into the graph: FP16 through Cast nodes (LayerNorm kept FP32), INT8 as symmetric Q/DQ
pairs with calibrated scales. TensorRT 11 networks are strongly typed and take precision from
the graph alone; TensorRT 10 builds a weakly typed network and needs the FP16 / INT8 builder
flags as well. Engines are tied to a GPU and a TensorRT version, so the ONNX ships beside them
and ``kdtool build-engine BUNDLE`` rebuilds on the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.bundle.precision import TRT_BUILDER_FLAGS
from kdtool.data import MAX_LENGTH
from kdtool.engines.trt import build_unavailable_reason, gpu_identity
from kdtool.errors import EnvironmentUnsupported, KdtoolError
from kdtool.profiles import TrtShapes

TIMING_CACHE_FILE = "timing.cache"
TRT_ONNX_FILE = "model.trt.onnx"
DEFAULT_SHAPES = TrtShapes(min_shape=(1, 16), opt_shape=(1, MAX_LENGTH), max_shape=(8, MAX_LENGTH))


@dataclass(frozen=True)
class EngineBuild:
    version: str
    precision: str
    strongly_typed: bool
    shapes: TrtShapes
    hardware_compatibility_level: str
    input_names: tuple[str, ...]
    gpu: dict | None = None


def build_engine(onnx_path: Path, engine_path: Path, cache_path: Path, precision: str,
                 shapes: TrtShapes | None) -> EngineBuild:
    """Build a serialized engine from ``onnx_path`` with the TensorRT Python API; save the timing cache."""
    reason = build_unavailable_reason()
    if reason:
        raise EnvironmentUnsupported(f"cannot build a TensorRT engine: {reason}; run kdtool build-engine on the target device")
    import tensorrt as trt

    shapes = shapes or DEFAULT_SHAPES
    major = int(trt.__version__.split(".")[0])
    strongly_typed = major >= 11  # TRT 11: no precision flags, precision from the graph
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KdtoolError(f"TensorRT could not parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, shapes.workspace_mb << 20)
    config.builder_optimization_level = shapes.builder_optimization_level
    if not strongly_typed:  # INT8: explicit Q/DQ in the graph; the flag lets TRT 10 use INT8 kernels
        for flag in TRT_BUILDER_FLAGS.get(precision, ()):
            config.set_flag(getattr(trt.BuilderFlag, flag))
    level = shapes.hardware_compatibility_level
    if level != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level.upper())
    profile = builder.create_optimization_profile()
    names = tuple(network.get_input(i).name for i in range(network.num_inputs))
    for name in names:
        profile.set_shape(name, shapes.min_shape, shapes.opt_shape, shapes.max_shape)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise KdtoolError(f"TensorRT failed to build an engine from {onnx_path.name}; rerun with --debug for the builder log")
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return EngineBuild(str(trt.__version__), precision, strongly_typed, shapes, level, names, gpu_identity())


def engine_manifest(build: EngineBuild | None, *, reason: str | None = None, trt_precision: str) -> dict:
    """The manifest's ``tensorrt`` section."""
    if build is None:
        return {"built": False, "version": None, "precision": trt_precision, "reason": reason,
                "build_command": "kdtool build-engine BUNDLE (on the target device)"}
    s = build.shapes
    return {"built": True, "version": build.version, "precision": build.precision,
            "strongly_typed": build.strongly_typed, "hardware_compatibility_level": build.hardware_compatibility_level,
            "profile_shapes": {"min": list(s.min_shape), "opt": list(s.opt_shape), "max": list(s.max_shape)},
            "workspace_mb": s.workspace_mb, "builder_optimization_level": s.builder_optimization_level,
            "inputs": list(build.input_names), "gpu": build.gpu}
