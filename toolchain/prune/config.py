"""The typed config of ``kdtool prune`` and its budget, both checked before anything runs or is written."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from kdtool.data.features import MAX_LENGTH
from kdtool.distill.config import TASK_NAMES
from kdtool.errors import InputError
from kdtool.fields import setting

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


def _units():
    """The pruning units' registry (kdtool.prune.units), loaded when first needed: the units load torch, and
    ``kdtool prune --help`` reads this module."""
    import kdtool.prune.units as units

    return units


def parse_structures(text) -> tuple[str, ...]:
    units = _units().UNITS
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in units]
    if unknown or not items:
        raise InputError(f"unknown structure {', '.join(unknown) or '(none)'} in --prune; choose from: "
                         f"{', '.join(units)} (comma-separated)")
    return tuple(s for s in units if s in items)


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
    """One ``kdtool prune`` run. ``recovery`` holds the ``kdtool distill`` options (a DistillConfig's fields).
    Each field's default, help and option are declared here (:mod:`kdtool.fields`)."""

    model: str = setting(argument=True)
    output: str = setting(option=("-o", "--output"), type="dir",
                          help="Output Hugging Face model directory (model, tokenizer, report, log).")
    train_file: str = setting(option="--train", type="file",
                              help="Training file: SQuAD JSON (qa) or pairs TSV/JSONL (pair-classification).")
    dev_file: str | None = setting(None, option="--dev", type="file",
                                   help="Dev file of the same kind: scores before and after, and the recovery's best "
                                        "epoch.")
    teacher: str | None = setting(None, type="dir", help="Teacher of scoring and recovery.",
                                  default_help="MODEL_DIR itself, unpruned")
    task: str | None = setting(None, choices=TASK_NAMES, help="qa or pair-classification.",
                               default_help="what MODEL_DIR's head is")
    target_params: str | None = setting(None, help="Budget: parameters, a count (20M, 5000000) or a share (40%).")
    target_flops: str | None = setting(None, help="Budget: a share of MODEL_DIR's FLOPs at --seq-len (50%).")
    target_latency_ms: float | None = setting(None, option="--target-latency", type="milliseconds",
                                              help="Budget: p50 milliseconds at batch 1 and --seq-len, measured here "
                                                   "under --profile.")
    profile: str | None = setting(None, help="Device profile (kdtool profiles) for --target-latency: threads, "
                                             "precision.")
    # FLOPs and latency at this length; default: the profile's longest, else MAX_LENGTH
    seq_len: int | None = setting(None, type="tokens", help="Sequence length of FLOPs and latency.",
                                  default_help=f"the profile's longest, else {MAX_LENGTH}")
    # registered units (kdtool.prune.units); --prune is the command's own option (its help lists the units)
    structures: tuple[str, ...] = setting(factory=lambda: _units().default_structures(), option="--prune",
                                          help="Structures to remove, comma-separated")
    schedule: str = setting("one-shot", choices=SCHEDULES,
                            help="one-shot: score, prune and recover once; iterative: --steps rounds of score, prune, "
                                 "recover.")
    steps: int = setting(1, type=(1, 1000), help="Rounds of an iterative schedule (geometric steps towards the budget).")
    importance_examples: int = setting(256, type="count",
                                       help="Training questions whose windows score importance: |dL/d mask| summed "
                                            "over batches (first-order Taylor: Michel et al. 2019 for heads, "
                                            "gradnas-style for FFN neurons, hidden dimensions and layers), L = hard "
                                            "loss + KL to the teacher.")
    importance_batch_size: int = setting(8, type=(1, 1 << 16), help="Windows per scoring batch.")
    ffn_step: int | None = setting(None, type="count", help="FFN neurons removed per move.",
                                   default_help="width/32, multiple of 8")
    # what a latency budget measures: the exported bundle at the profile's precision
    latency_engine: str = setting("bundle", choices=LATENCY_ENGINES,
                                  help="What --target-latency measures: the exported bundle at the profile's precision, "
                                       "or the PyTorch model.")
    latency_runs: int = setting(10, type="count", help="Timed runs per measured candidate shape.")
    recover: bool = setting(True, option="--recover", off="--no-recover",
                            help="Distil the teacher into the pruned model after each step.")
    # kdtool distill's options (its command's own, taken by kdtool prune), --schedule as --recovery-schedule
    recovery: dict = setting(factory=dict, keys={"schedule": "--recovery-schedule"})
    resume: bool = setting(False, help="Continue the run in the run directory from its newest checkpoint.")
    overwrite: bool = setting(False, help="Replace an existing output directory and start the run over.")
    # stop the recovery of the current step after N optimizer steps (as if killed)
    stop_after: int | None = setting(None, type="count", hidden=True,
                                     help="Stop the recovery after N optimizer steps (as if killed).")

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
