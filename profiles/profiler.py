"""Latency profiler: teacher, student and exported engines side by side on one machine.

Method (what makes the numbers comparable, and what ``profiles/SCHEMA.md`` documents):

- Every model is opened with :func:`kdtool.engines.load_engine` on the same device and thread
  count; the first one is the *reference* and every row's speed-up is ``reference p50 / p50`` at
  the same shape, measured in the same run.
- ``torch_variants`` (``fp16:sdpa``, ``bf16:torch-triton``, ...) open each Hugging Face directory once
  per precision and attention implementation; every opening is a model of its own (``name[fp16,sdpa]``),
  measured in the same round-robin, so precisions and attention kernels compare within one run.
- Fixed shapes: per ``(batch, seq)`` each model gets ``warmup`` untimed runs (one model after the
  other, which is also where its peak memory is read), then the timed runs go round-robin across
  models (run i of A, run i of B, ...), so drift of the machine (turbo, thermals, neighbours)
  hits all of them alike. Inputs are random non-special token ids with a full attention mask.
- Clock: PyTorch engines on CUDA are timed with CUDA events; everything else with
  ``perf_counter`` between two ``engine.synchronize()`` calls. Latency includes the host/device
  copies of inputs and logits, as a caller of ``engine.run`` sees it.
- Real lengths (``data``): the questions of a SQuAD file, tokenized by each model's own tokenizer
  into windows, run with dynamic padding in length-sorted batches; a question's latency is the sum
  over its windows of (batch latency / windows in the batch).
- A shape a model cannot run (longer than its ``max_length``, an exception, out of memory) is an
  ``error`` in that row; the other rows still run. Ctrl-C during measuring returns what was
  measured so far with ``interrupted = True``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import torch

from kdtool import __version__
from kdtool.data import load_squad
from kdtool.errors import EnvironmentUnsupported, InputError
from kdtool.profiles.config import AUTO_DEFAULTS, ProfileConfig
from kdtool.profiles.environment import environment
from kdtool.profiles.lengths import data_features
from kdtool.profiles.loading import load_models, parse_torch_variants
from kdtool.profiles.measure import Measurer, finish_rows, set_speedups
from kdtool.profiles.registry import get_profile
from kdtool.progress import Progress

SCHEMA = "kdtool-profile/1"


@dataclass
class ProfileResult:
    environment: dict
    settings: dict
    models: list[dict] = field(default_factory=list)
    fixed: list[dict] = field(default_factory=list)
    data: dict | None = None
    interrupted: bool = False

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "kdtool_version": __version__,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "interrupted": self.interrupted, "environment": self.environment, "settings": self.settings,
                "reference": self.models[0]["name"] if self.models else None, "models": self.models,
                "fixed": self.fixed, "data": self.data}


# ---------------------------------------------------------------------------------------------
# settings and environment


def resolve_settings(config: ProfileConfig) -> tuple[dict, object]:
    """The effective settings (a JSON-able dict) and the DeviceProfile (or None)."""
    if not config.models:
        raise InputError("give at least one model: the reference (usually the teacher)")
    profile = None
    if config.profile:
        profile = get_profile(config.profile)
    device = config.device or (profile.device if profile else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        what = f"profile {profile.name!r} targets" if profile else "device"
        raise EnvironmentUnsupported(f"{what} {device}, but no CUDA GPU is visible on this machine; "
                                     "run it on the target, or pick a CPU profile or --device cpu")
    auto = AUTO_DEFAULTS["cuda" if device.startswith("cuda") else "cpu"]
    s = {
        "device": device,
        "profile": profile.name if profile else f"auto: {device}",
        "seq_lengths": list(config.seq_lengths or (profile.seq_lengths if profile else auto["seq_lengths"])),
        "batch_sizes": list(config.batch_sizes or (profile.batch_sizes if profile else auto["batch_sizes"])),
        "runs": config.runs if config.runs is not None else auto["runs"],
        "warmup": config.warmup if config.warmup is not None else auto["warmup"],
        "threads": config.threads or (profile.threads if profile else None),
        "data": str(config.data) if config.data else None,
        "data_limit": config.data_limit,
        "seed": config.seed,
        "latency_budget_ms": profile.latency_budget_ms if profile else None,
        "torch_variants": [f"{d}:{a}" for d, a in parse_torch_variants(config.torch_variants)] or None,
    }
    for key in ("seq_lengths", "batch_sizes"):
        if not s[key] or min(s[key]) < 1:
            raise InputError(f"{key.replace('_', ' ')} must be positive integers, got {s[key]}")
    if s["runs"] < 1 or s["warmup"] < 1:
        raise InputError(f"runs and warmup must be at least 1 (peak memory is read during warm-up), "
                         f"got runs={s['runs']}, warmup={s['warmup']}")
    if config.data_limit is not None and config.data_limit < 1:
        raise InputError(f"data limit must be at least 1 question, got {config.data_limit}")
    return s, profile


# ---------------------------------------------------------------------------------------------
# loading and inputs

def profile_models(config: ProfileConfig, *, progress: Progress | None = None) -> ProfileResult:
    """Profile ``config.models`` (the first is the reference); see the module docstring for the method.

    ``progress`` counts task ``"profile"`` in unit ``"run"`` and gets a line per shape (:class:`Measurer`)."""
    settings, profile = resolve_settings(config)
    dataset = None
    if config.data:  # read before the models load, so a bad file fails fast
        dataset = load_squad(config.data)
    engines, infos = load_models(config.models, settings, trust_remote_code=config.trust_remote_code,
                                 torch_variants=config.torch_variants,
                                 require_signature=config.require_signature)
    result = ProfileResult(environment=environment(settings, profile), settings=settings, models=infos)
    try:
        features = []
        if config.data:
            result.data, features = data_features(dataset, engines, infos, config)
        m = Measurer(engines, result, progress)
        shapes = [(b, s) for b in settings["batch_sizes"] for s in settings["seq_lengths"]]
        m.total = len(shapes) * len(engines) * (settings["warmup"] + settings["runs"])
        for b in settings["batch_sizes"] if features else ():
            m.total += sum(settings["warmup"] + -(-len(f) // b) for f in features if f is not None)
        try:
            m.tick("starting", 0)
            for b, s in shapes:
                m.fixed_shape(b, s)
            for b in settings["batch_sizes"] if features else ():
                m.data_pass(b, features)
        except KeyboardInterrupt:
            result.interrupted = True
            for row in result.fixed + (result.data["rows"] if result.data else []):
                if row["status"] == "ok" and (row.get("runs", 0) < settings["runs"] if "runs" in row
                                              else len(row["_times"]) < row["batches"]):
                    row["status"] = "interrupted"
        set_speedups(result.fixed, "latency_ms", settings["latency_budget_ms"])
        result.fixed = finish_rows(result.fixed)
        if result.data:
            set_speedups(result.data["rows"], "question_latency_ms")
            result.data["rows"] = finish_rows(result.data["rows"])
    finally:
        for engine in engines:
            engine.close()
    return result
