"""The typed config of ``kdtool prune`` and its budget, both checked before anything runs or is written."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.prune.units import UNITS, default_structures

SCHEDULES = ("one-shot", "iterative")
LATENCY_ENGINES = ("bundle", "pytorch")
RESUMABLE = {"resume", "overwrite", "stop_after"}
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}


@dataclass(frozen=True)
class Budget:
    """``kind`` params | flops | latency; ``value`` a fraction of the model (``relative``) or an absolute count / ms."""

    kind: str
    value: float
    relative: bool
    text: str

    def limit(self, full: float) -> float:
        return self.value * full if self.relative else self.value

    def describe(self) -> str:
        unit = {"params": "parameters", "flops": "FLOPs", "latency": "ms"}[self.kind]
        return f"{self.text} {unit}" if self.kind != "latency" else f"{self.value:g} ms"


def parse_budget(target_params: str | None, target_flops: str | None, target_latency_ms: float | None) -> Budget:
    given = [(k, v) for k, v in (("params", target_params), ("flops", target_flops), ("latency", target_latency_ms))
             if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one budget: --target-params N|X%, --target-flops X% or --target-latency MS "
                         f"(got {len(given)})")
    kind, raw = given[0]
    if kind == "latency":
        if not raw > 0:
            raise InputError(f"--target-latency must be a positive number of milliseconds, got {raw}")
        return Budget("latency", float(raw), False, f"{raw:g}ms")
    text = str(raw).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|[kKmMbBgG]?)", text)
    if not m:
        raise InputError(f"--target-{kind} {text!r} is not a number, a count like 20M or a percentage like 50%")
    number, suffix = float(m.group(1)), m.group(2)
    relative = suffix == "%" or kind == "flops"  # FLOPs are always a share of the model's
    if kind == "flops" and suffix not in ("%", ""):
        raise InputError(f"--target-flops is a percentage of the model's FLOPs, like 50%; got {text!r}")
    if number <= 0:
        raise InputError(f"--target-{kind} must be above 0, got {text!r}")
    if relative:
        if number >= 100:
            raise InputError(f"--target-{kind} {text} keeps {'more than ' if number > 100 else ''}the whole model; "
                             "give a share below 100%")
        return Budget(kind, number / 100, True, f"{number:g}%")
    return Budget(kind, number * _SUFFIX[suffix.lower()], False, text)


def parse_structures(text) -> tuple[str, ...]:
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in UNITS]
    if unknown or not items:
        raise InputError(f"unknown structure {', '.join(unknown) or '(none)'} in --prune; choose from: "
                         f"{', '.join(UNITS)} (comma-separated)")
    return tuple(s for s in UNITS if s in items)


def _refuse_qat(config) -> None:
    """Pruning removes heads and neurons that a quantization-aware model's quantizers belong to, and the pruned
    model's quantizer state no longer loads: QAT models and ``--qat`` recovery are refused before any work."""
    if config.recovery.get("qat"):
        raise InputError("kdtool prune does not recover with --qat: prune and recover in fp32, then train the pruned "
                         "model with kdtool distill --qat")
    if (Path(config.model) / "modelopt_state.pth").is_file():  # kdtool.models.qat's state file
        raise InputError(f"{config.model} is a quantization-aware (--qat) model, which kdtool prune cannot prune; "
                         "prune the fp32 student, then train the pruned model with kdtool distill --qat")


@dataclass(frozen=True)
class PruneConfig:
    """One ``kdtool prune`` run. ``recovery`` holds the ``kdtool distill`` options (a DistillConfig's fields)."""

    model: str
    output: str
    train_file: str
    dev_file: str | None = None
    teacher: str | None = None  # default: the unpruned model itself
    task: str | None = None  # default: what the model directory says
    target_params: str | None = None
    target_flops: str | None = None
    target_latency_ms: float | None = None
    profile: str | None = None
    seq_len: int | None = None  # FLOPs and latency at this length; default: the profile's longest, else 384
    structures: tuple[str, ...] = field(default_factory=default_structures)  # registered units (kdtool.prune.units)
    schedule: str = "one-shot"
    steps: int = 1
    importance_examples: int = 256
    importance_batch_size: int = 8
    ffn_step: int | None = None
    latency_engine: str = "bundle"  # what a latency budget measures: the exported bundle at the profile's precision
    latency_runs: int = 10
    recover: bool = True
    recovery: dict = field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None  # stop the recovery of the current step after N optimizer steps (as if killed)

    def __post_init__(self):
        object.__setattr__(self, "structures", parse_structures(self.structures))
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown --schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.steps < 1 or (self.schedule == "one-shot" and self.steps != 1):
            raise InputError(f"--steps {self.steps}: one-shot is 1 step; use --schedule iterative for more")
        if self.latency_engine not in LATENCY_ENGINES:
            raise InputError(f"unknown latency engine {self.latency_engine!r}; choose one of: {', '.join(LATENCY_ENGINES)}")
        for name in ("importance_examples", "importance_batch_size", "latency_runs"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.seq_len is not None and self.seq_len < 8:
            raise InputError(f"--seq-len must be at least 8 tokens, got {self.seq_len}")
        _refuse_qat(self)
        budget = self.budget  # checks it
        if budget.kind == "latency" and not self.profile:
            raise InputError("--target-latency is measured under a device profile: add --profile NAME (kdtool profiles)")

    @property
    def budget(self) -> Budget:
        return parse_budget(self.target_params, self.target_flops, self.target_latency_ms)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        keep = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE}
        keep["recovery"] = {k: v for k, v in self.recovery.items() if k != "save_every"}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
