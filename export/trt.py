"""TensorRT: the TRT-ready ONNX graph and, where TensorRT and a CUDA GPU exist, the engine.

TRT-ready ONNX: the plain (unfused) Optimum graph, standard ONNX ops only, with precision
written into the graph: FP16 through Cast nodes (LayerNorm kept FP32), INT8 as symmetric Q/DQ
pairs with calibrated scales. TensorRT 11 networks are strongly typed and take precision from
the graph alone; TensorRT 10 builds a weakly typed network and needs the FP16 / INT8 builder
flags as well. Engines are tied to a GPU and a TensorRT version, so the ONNX ships beside them
and ``kdtool build-engine BUNDLE`` rebuilds on the target.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kdtool.errors import EnvironmentUnsupported, IntegrityError, KdtoolError
from kdtool.profiles import TrtShapes

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
TRT_ONNX_FILE = "model.trt.onnx"
DEFAULT_SHAPES = TrtShapes(min_shape=(1, 16), opt_shape=(1, 384), max_shape=(8, 384))


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
    """Why an engine cannot be built here (None when it can)."""
    if tensorrt_version() is None:
        return "TensorRT is not installed"
    if not cuda_available():
        return "no CUDA GPU is visible"
    return None


def make_trt_onnx(plain_onnx: Path, dst: Path, precision: str, *, calibration=None, method: str = "minmax") -> dict:
    """Write the TRT-ready graph for ``precision``; ``calibration`` batches are needed for INT8."""
    if precision == "fp32":
        shutil.copyfile(plain_onnx, dst)
        return {"precision": "fp32", "form": "plain ONNX"}
    if precision == "fp16":
        from kdtool.export.fp16 import convert_fp16

        info = convert_fp16(plain_onnx, dst)
        return {"precision": "fp16", "form": "FP16 with Cast nodes", **info}
    if precision == "int8-qat":  # already explicit, symmetric Q/DQ with the QAT model's scales (kdtool.export.qat)
        shutil.copyfile(plain_onnx, dst)
        return {"precision": "int8", "form": "symmetric INT8 Q/DQ from quantization-aware training (its own scales)"}
    from kdtool.export.quantize import quantize_int8_static

    info = quantize_int8_static(plain_onnx, dst, calibration, method=method, per_channel=True, symmetric=True,
                                op_types=["MatMul", "Gemm"])
    return {"precision": "int8", "form": "symmetric INT8 Q/DQ (explicit quantization)", **info}


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
    if not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":  # explicit Q/DQ in the graph; the flag lets TRT 10 use INT8 kernels
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_flag(trt.BuilderFlag.FP16)
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
