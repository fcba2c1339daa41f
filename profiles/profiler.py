"""Latency profiler: teacher, student and exported engines side by side on one machine.

Method (what makes the numbers comparable, and what ``profiles/SCHEMA.md`` documents):

- Every model is opened with :func:`kdtool.engines.load_engine` (:mod:`kdtool.profiles.loading`) on the same device and thread
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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdtool.data.features import length_sorted_batches
from kdtool.errors import EnvironmentUnsupported, InputError
from kdtool.profiles.environment import environment
from kdtool.profiles.loading import load_models, parse_torch_variants, random_batch
from kdtool.profiles.timing import error_text, free_cuda_cache, latency_stats, timed_run, uses_cuda_events, warm_up

SCHEMA = "kdtool-profile/1"
# Defaults per device when no profile is given: data, not branches.
AUTO_DEFAULTS = {
    "cpu": {"seq_lengths": (128, 256, 384), "batch_sizes": (1,), "runs": 20, "warmup": 3},
    "cuda": {"seq_lengths": (128, 256, 384), "batch_sizes": (1, 8), "runs": 100, "warmup": 10},
}
Progress = Callable[[int, int, str], None]  # (done, total, what is being measured)


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
        import datetime

        from kdtool import __version__

        return {"schema": SCHEMA, "kdtool_version": __version__,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "interrupted": self.interrupted, "environment": self.environment, "settings": self.settings,
                "reference": self.models[0]["name"] if self.models else None, "models": self.models,
                "fixed": self.fixed, "data": self.data}


# ---------------------------------------------------------------------------------------------
# settings and environment


def resolve_settings(config: ProfileConfig) -> tuple[dict, object]:
    """The effective settings (a JSON-able dict) and the DeviceProfile (or None)."""
    import torch

    if not config.models:
        raise InputError("give at least one model: the reference (usually the teacher)")
    profile = None
    if config.profile:
        from kdtool.profiles.registry import get_profile

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
def set_speedups(rows: list[dict], stats_key: str, budget_ms: float | None = None) -> None:
    """``speedup = reference p50 / p50`` within each shape (rows of one shape share ``shape_key``)."""
    ref = {r["_shape"]: r for r in rows if r["model_index"] == 0}
    for r in rows:
        mine, theirs = r.get(stats_key), (ref.get(r["_shape"]) or {}).get(stats_key)
        r["speedup"] = theirs["p50"] / mine["p50"] if mine and theirs and mine["p50"] > 0 else None
        if stats_key == "latency_ms":
            r["within_budget"] = (mine["p90"] <= budget_ms) if (mine and budget_ms) else None


def _finish(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


# ---------------------------------------------------------------------------------------------
# measuring


class _Measurer:
    """Runs the measurements of one profile, appending rows to ``result`` as shapes complete."""

    def __init__(self, engines: list, result: ProfileResult, on_progress: Progress | None):
        self.engines, self.result, self.on_progress = engines, result, on_progress
        self.s = result.settings
        self.done, self.total = 0, 0

    def tick(self, what: str, n: int = 1) -> None:
        self.done += n
        if self.on_progress and (n or not self.done):
            self.on_progress(self.done, self.total, what)

    def _row(self, i: int, shape: dict, **extra) -> dict:
        return {"model": self.result.models[i]["name"], "model_index": i, **shape, "status": "ok", "error": None, **extra}

    def _round_robin(self, rows: list[dict], work: list[list], what: str) -> None:
        """``work[i]``: model i's batches, timed round-robin across models into ``rows[i]['_times']``."""
        longest = max((len(w) for w in work), default=0)
        for j in range(longest):
            for i, (row, batches) in enumerate(zip(rows, work, strict=True)):
                if j >= len(batches) or row["status"] == "error":
                    continue
                try:
                    row["_times"].append(timed_run(self.engines[i], batches[j], row["_events"]))
                except Exception as err:  # noqa: BLE001 - a model failing at a shape is that row's error
                    row.update(status="error", error=error_text(err))
                    free_cuda_cache(self.engines[i])
                self.tick(what)

    def _warm(self, i: int, row: dict, batch: dict, what: str) -> None:
        engine = self.engines[i]
        row["_events"] = uses_cuda_events(engine)
        try:
            row["memory"] = warm_up(engine, batch, self.s["warmup"])
        except Exception as err:  # noqa: BLE001
            row.update(status="error", error=error_text(err))
            free_cuda_cache(engine)
        self.tick(what, self.s["warmup"])

    def fixed_shape(self, batch_size: int, seq_len: int) -> None:
        what = f"batch {batch_size} x seq {seq_len}"
        rows, work = [], []
        for i, engine in enumerate(self.engines):
            row = self._row(i, {"batch_size": batch_size, "seq_len": seq_len}, runs=0, latency_ms=None, throughput_qps=None,
                            speedup=None, within_budget=None, memory=None, _shape=(batch_size, seq_len), _times=[])
            rows.append(row)
            self.result.fixed.append(row)
            work.append([])
            if engine.max_length and seq_len > engine.max_length:
                row.update(status="error", error=f"sequence length {seq_len} exceeds the model's maximum {engine.max_length}")
                self.tick(what, self.s["warmup"] + self.s["runs"])
                continue
            rng = np.random.default_rng([self.s["seed"], batch_size, seq_len, i])
            batch = random_batch(engine, batch_size, seq_len, rng)
            self._warm(i, row, batch, what)
            work[-1] = [batch] * self.s["runs"] if row["status"] == "ok" else []
            self.tick(what, self.s["runs"] - len(work[-1]))
        try:
            self._round_robin(rows, work, what)
        finally:
            for row in rows:
                self._stats(row, row["batch_size"])

    @staticmethod
    def _stats(row: dict, batch_size: int) -> None:
        times = row.get("_times", [])
        row["runs"] = len(times)
        row["latency_ms"] = latency_stats(times)
        if row["latency_ms"]:
            row["throughput_qps"] = round(batch_size / (row["latency_ms"]["mean"] / 1e3), 3)

    def data_pass(self, batch_size: int, features: list) -> None:
        what = f"real lengths, batch {batch_size}"
        rows, work, rng = [], [], np.random.default_rng([self.s["seed"], batch_size])
        for i, feats in enumerate(features):
            row = self._row(i, {"batch_size": batch_size}, questions=0, windows=0, batches=0, question_latency_ms=None,
                            questions_per_second=None, speedup=None, memory=None, _shape=batch_size, _times=[], _index=[])
            rows.append(row)
            self.result.data["rows"].append(row)
            if feats is None:
                row.update(status="error", error=self.result.data["lengths"][i]["error"])
                work.append([])
                continue
            row.update(questions=len(set(feats.example_index)), windows=len(feats))
            index = list(length_sorted_batches(feats, batch_size))
            order = rng.permutation(len(index))  # shuffled, so drift does not line up with length
            row["_index"] = [index[k] for k in order]
            batches = [feats.batch(idx) for idx in row["_index"]]
            batches = [{k: b[k] for k in self.engines[i].input_names if k in b} for b in batches]
            row["batches"] = len(batches)
            self._warm(i, row, max(batches, key=lambda b: b["input_ids"].size), what)
            work.append(batches if row["status"] == "ok" else [])
            self.tick(what, len(batches) - len(work[-1]))
        try:
            self._round_robin(rows, work, what)
        finally:
            for row, feats in zip(rows, features, strict=False):
                self._question_stats(row, feats)

    @staticmethod
    def _question_stats(row: dict, feats) -> None:
        """Per question: the sum over its windows of (batch latency / windows in that batch)."""
        times = row["_times"]
        if row["status"] == "error" or not times:
            return
        per_question: dict[int, float] = {}
        for t, idx in zip(times, row["_index"], strict=False):  # an interrupted pass timed fewer
            for w in idx:
                q = feats.example_index[w]
                per_question[q] = per_question.get(q, 0.0) + t / len(idx)
        if len(times) < len(row["_index"]):  # interrupted: only questions whose windows all ran
            ran = {w for idx in row["_index"][: len(times)] for w in idx}
            per_question = {q: v for q, v in per_question.items()
                            if all(w in ran for w, e in enumerate(feats.example_index) if e == q)}
        row["question_latency_ms"] = latency_stats(list(per_question.values()))
        row["questions_per_second"] = round(len(per_question) / (sum(times) / 1e3), 3) if per_question else None


def _data_features(ds, engines: list, infos: list[dict], config: ProfileConfig) -> tuple[dict, list]:
    """Tokenize the (sampled) questions of ``ds`` with each model's tokenizer."""
    from kdtool.data import FeatureConfig, tokenize_examples
    from kdtool.predict import feature_config_for

    examples = ds.examples
    if config.data_limit and config.data_limit < len(examples):
        keep = np.linspace(0, len(examples) - 1, config.data_limit).round().astype(int)
        examples = [examples[k] for k in sorted(set(keep.tolist()))]
    block = {"file": str(config.data), "questions_in_file": len(ds.examples), "questions_used": len(examples),
             "selection": "all" if len(examples) == len(ds.examples) else "evenly spaced over the file",
             "lengths": [], "rows": []}
    features = []
    for info, engine in zip(infos, engines, strict=True):
        try:
            fc = feature_config_for(engine, FeatureConfig())
            feats = tokenize_examples(examples, engine.tokenizer, fc)
        except Exception as err:  # noqa: BLE001 - this model's rows say why; the others still run
            block["lengths"].append({"model": info["name"], "model_index": info["index"], "error": error_text(err)})
            features.append(None)
            continue
        lengths = feats.lengths
        block["lengths"].append({
            "model": info["name"], "model_index": info["index"], "max_length": fc.max_length,
            "doc_stride": fc.doc_stride, "windows": len(feats),
            "min": int(lengths.min()), "median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
            "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2), "error": None})
        features.append(feats)
    return block, features


def profile_models(config: ProfileConfig, on_progress: Progress | None = None) -> ProfileResult:
    """Profile ``config.models`` (the first is the reference); see the module docstring for the method."""
    settings, profile = resolve_settings(config)
    dataset = None
    if config.data:  # read before the models load, so a bad file fails fast
        from kdtool.data import load_squad

        dataset = load_squad(config.data)
    engines, infos = load_models(config.models, settings, trust_remote_code=config.trust_remote_code,
                                 torch_variants=config.torch_variants,
                                 require_signature=config.require_signature)
    result = ProfileResult(environment=environment(settings, profile), settings=settings, models=infos)
    try:
        features = []
        if config.data:
            result.data, features = _data_features(dataset, engines, infos, config)
        m = _Measurer(engines, result, on_progress)
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
        result.fixed = _finish(result.fixed)
        if result.data:
            set_speedups(result.data["rows"], "question_latency_ms")
            result.data["rows"] = _finish(result.data["rows"])
    finally:
        for engine in engines:
            engine.close()
    return result
