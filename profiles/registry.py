"""Target-device profiles: what a bundle is built and measured for, as data.

Each ``profiles/<name>.yaml`` (shipped as package data) describes one target: the precision to
export at, ONNX Runtime execution providers in order of preference, thread count, the batch sizes
and sequence lengths to measure, an optional latency budget, and for NVIDIA targets the TensorRT
optimization profile (min / opt / max input shapes), workspace and builder settings. Adding a
device is adding a YAML file; no code branches on device names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources

import yaml

from kdtool.bundle.arithmetic import ARITHMETIC
from kdtool.bundle.precision import PRECISIONS as PRECISION_TABLE
from kdtool.errors import InputError

PRECISIONS = tuple(PRECISION_TABLE)  # a profile names a row of the one precision table
DEVICES = ("cpu", "cuda")
HW_COMPAT_LEVELS = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class TrtShapes:
    """A TensorRT optimization profile for the ``[batch, seq]`` inputs, plus builder settings."""

    min_shape: tuple[int, int]
    opt_shape: tuple[int, int]
    max_shape: tuple[int, int]
    workspace_mb: int = 2048
    builder_optimization_level: int = 3
    hardware_compatibility_level: str = "none"

    def __post_init__(self):
        for a, b in ((self.min_shape, self.opt_shape), (self.opt_shape, self.max_shape)):
            if any(x > y for x, y in zip(a, b, strict=False)):
                raise ValueError(f"TensorRT shapes must satisfy min <= opt <= max, got {self.min_shape}, "
                                 f"{self.opt_shape}, {self.max_shape}")
        if not 0 <= self.builder_optimization_level <= 5:
            raise ValueError(f"builder_optimization_level must be 0..5, got {self.builder_optimization_level}")
        if self.hardware_compatibility_level not in HW_COMPAT_LEVELS:
            raise ValueError(f"hardware_compatibility_level must be one of {', '.join(HW_COMPAT_LEVELS)}")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    device: str  # "cpu" | "cuda"
    precision: str  # a row of kdtool.bundle.precision (fp32, fp16, int8, ...)
    providers: tuple[str, ...]  # ONNX Runtime execution providers, most preferred first
    threads: int | None  # None: all cores
    batch_sizes: tuple[int, ...]
    seq_lengths: tuple[int, ...]
    latency_budget_ms: float | None = None
    tensorrt: TrtShapes | None = None
    # the target's integer arithmetic (kdtool.bundle.arithmetic): the INT8 form an export for it writes
    int8_arithmetic: str | None = None

    def __post_init__(self):
        if self.int8_arithmetic is not None and self.int8_arithmetic not in ARITHMETIC:
            raise ValueError(f"int8_arithmetic must be one of {', '.join(ARITHMETIC)}, got {self.int8_arithmetic!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.providers:
            raise ValueError("providers must list at least one ONNX Runtime execution provider")
        if not self.batch_sizes or not self.seq_lengths or min(self.batch_sizes) < 1 or min(self.seq_lengths) < 1:
            raise ValueError("batch_sizes and seq_lengths must be non-empty lists of positive integers")

    @property
    def max_seq_length(self) -> int:
        return self.tensorrt.max_shape[1] if self.tensorrt else max(self.seq_lengths)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("providers", "batch_sizes", "seq_lengths"):
            d[k] = list(d[k])
        if d["tensorrt"]:
            for k in ("min_shape", "opt_shape", "max_shape"):
                d["tensorrt"][k] = list(d["tensorrt"][k])
        return d

    @classmethod
    def from_dict(cls, raw: dict, source: str = "profile") -> DeviceProfile:
        try:
            raw = dict(raw)
            trt = raw.pop("tensorrt", None)
            shapes = None
            if trt:
                shapes = TrtShapes(**{**trt, **{k: tuple(trt[k]) for k in ("min_shape", "opt_shape", "max_shape")}})
            for k in ("providers", "batch_sizes", "seq_lengths"):
                raw[k] = tuple(raw.get(k) or ())
            return cls(tensorrt=shapes, **raw)
        except (TypeError, ValueError, KeyError) as err:
            raise InputError(f"device profile {source} is malformed: {str(err).splitlines()[0]}") from None


@cache
def _load_all() -> dict[str, DeviceProfile]:
    profiles = {}
    for entry in sorted(resources.files("kdtool.profiles").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            prof = DeviceProfile.from_dict(yaml.safe_load(entry.read_text(encoding="utf-8")), entry.name)
            profiles[prof.name] = prof
    return profiles


def list_profiles() -> list[DeviceProfile]:
    """Every shipped device profile, sorted by name."""
    return [p for _, p in sorted(_load_all().items())]


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name``; an InputError listing the known names when there is none."""
    profiles = _load_all()
    if name not in profiles:
        raise InputError(f"unknown device profile {name!r}; known profiles: {', '.join(sorted(profiles))} "
                         "(kdtool profiles lists them)")
    return profiles[name]
