"""Latency profiler: teacher, student and exported engines side by side on one machine.

Method (what makes the numbers comparable, and what ``profiles/SCHEMA.md`` documents):

- Every model is opened with :func:`kdtool.engine.load_engine` on the same device and thread
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

import contextlib
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdtool import __version__
from kdtool.data import load_squad
from kdtool.engine import bundle_signature, load_engine
from kdtool.errors import EnvironmentUnsupported, InputError
from kdtool.profiles.environment import environment
from kdtool.profiles.lengths import data_features
from kdtool.profiles.measure import Measurer, finish_rows, set_speedups
from kdtool.profiles.registry import get_profile
from kdtool.profiles.timing import rss, uses_cuda_events
from kdtool.progress import Progress

SCHEMA = "kdtool-profile/1"
# Defaults per device when no profile is given: data, not branches.
AUTO_DEFAULTS = {
    "cpu": {"seq_lengths": (128, 256, 384), "batch_sizes": (1,), "runs": 20, "warmup": 3},
    "cuda": {"seq_lengths": (128, 256, 384), "batch_sizes": (1, 8), "runs": 100, "warmup": 10},
}


@dataclass
class ProfileConfig:
    """What to profile; ``None`` fields come from the device profile, else from :data:`AUTO_DEFAULTS`."""

    models: list  # paths: HF model dirs or bundle dirs; the first is the reference
    profile: str | None = None  # a device profile name (kdtool profiles lists them)
    seq_lengths: list[int] | None = None
    batch_sizes: list[int] | None = None
    data: str | Path | None = None  # a SQuAD file: also measure over its real tokenized lengths
    data_limit: int | None = 200  # questions of ``data`` used (an evenly spread, seeded sample); None: all
    runs: int | None = None  # timed runs per model and shape
    warmup: int | None = None  # untimed runs per model and shape (at least 1: peak memory is read there)
    threads: int | None = None
    device: str | None = None  # "cpu" | "cuda"; default: the profile's, else CUDA when visible
    seed: int = 0
    trust_remote_code: bool = False  # let model directories run their own code (auto_map)
    # "DTYPE:ATTN" pairs (``fp16:sdpa``, ``bf16:torch-triton``): each Hugging Face directory is opened
    # once per pair and measured as its own row; None: once, as saved, with transformers' default attention
    torch_variants: list[str] | None = None
    require_signature: str | None = None  # a public key: every bundle among the models must be signed by it


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

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "torch-triton")


def parse_torch_variants(variants: list[str] | None) -> list[tuple[str, str]]:
    """``["fp16:sdpa", ...]`` as ``[("fp16", "sdpa"), ...]``; an InputError naming the bad one otherwise."""
    parsed = []
    for text in variants or ():
        dtype, _, attn = str(text).partition(":")
        if dtype not in TORCH_DTYPES or attn not in ATTENTION_IMPLEMENTATIONS:
            raise InputError(f"torch variant {text!r} is not DTYPE:ATTENTION with DTYPE one of {', '.join(TORCH_DTYPES)} "
                             f"and ATTENTION one of {', '.join(ATTENTION_IMPLEMENTATIONS)} (e.g. fp16:sdpa)")
        if (dtype, attn) in parsed:
            raise InputError(f"torch variant {text!r} is given twice")
        parsed.append((dtype, attn))
    return parsed


def _openings(path, variants: list[tuple[str, str]]) -> list[tuple[str, dict]]:
    """(name suffix, engine options) per opening of ``path``: one per variant for a Hugging Face
    directory, a single plain one for a bundle (its precision and runtime are fixed at export)."""
    if not variants or (Path(path) / "manifest.json").is_file():
        return [("", {})]
    return [(f"[{dtype},{attn}]", {"dtype": TORCH_DTYPES[dtype], "attn_implementation": attn}) for dtype, attn in variants]


def load_models(paths: list, settings: dict, *, trust_remote_code: bool = False,
                torch_variants: list[str] | None = None,
                require_signature: str | None = None) -> tuple[list, list[dict]]:
    """Open every model (all paths are checked first, so a typo fails before a slow load); with
    ``torch_variants``, each Hugging Face directory once per variant, in the order given."""
    variants = parse_torch_variants(torch_variants)
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"model not found: {p}")
    import transformers

    # import the libraries every engine needs (tokenizers at least) before the first RSS reading,
    # so the first model's load delta is its own memory, not the imports'
    transformers.AutoTokenizer, transformers.AutoModelForQuestionAnswering  # noqa: B018 - lazy imports
    if any((Path(p) / "manifest.json").is_file() for p in paths):
        with contextlib.suppress(ImportError):
            import onnxruntime  # noqa: F401 - bundles run on it
    engines, infos, seen = [], [], {}
    for p, (suffix, options) in ((path, o) for path in paths for o in _openings(path, variants)):
        i = len(engines)
        before, t0 = rss(), time.perf_counter()
        engine = load_engine(p, device=settings["device"], threads=settings["threads"],
                             trust_remote_code=trust_remote_code, **options,
                             require_signature=bundle_signature(p, require_signature))
        load_s = time.perf_counter() - t0
        info = engine.describe()
        name = (info["name"] or Path(p).name) + suffix
        seen[name] = seen.get(name, 0) + 1
        model = getattr(engine, "model", None)
        if model is not None:  # what transformers actually loaded, not what was asked for
            info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        info.update(index=i, name=name if seen[name] == 1 else f"{name}#{seen[name]}", is_reference=i == 0,
                    max_length=engine.max_length, input_names=list(engine.input_names),
                    timer="cuda-events" if uses_cuda_events(engine) else "wall-clock",
                    load_seconds=round(load_s, 3), load_rss_delta_bytes=max(0, rss() - before))
        if info.get("precision") is None and model is not None:
            info["precision"] = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(
                str(engine.model.dtype).rsplit(".", 1)[-1], str(engine.model.dtype))
        engines.append(engine)
        infos.append(info)
    return engines, infos


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
        m.tick("starting", 0)
        try:
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
