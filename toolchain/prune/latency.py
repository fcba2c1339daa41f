"""Measured latency of a candidate shape under a device profile, with kdtool's own export and profiler.

Latency depends on the shape, not the weights, so a candidate is the current model sliced by the
candidate's plan, saved to a temporary directory and measured by :func:`kdtool.profiles.profile_models`
at the profile's threads, batch 1 and one sequence length. ``engine="bundle"`` (the default) first
exports it with :func:`kdtool.export.pipeline.export_model` at the profile's precision (fused, INT8
dynamic on a CPU INT8 profile), so the budget is met by what ships; ``engine="pytorch"`` measures the
Hugging Face model itself (faster to search; what a PyTorch deployment sees).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from kdtool.errors import KdtoolError
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model
from kdtool.profiles.profiler import ProfileConfig, profile_models
from kdtool.prune.slicing import apply_plan


def save_candidate(model, tokenizer, plan, directory: Path) -> Path:
    sliced = apply_plan(copy.deepcopy(model), plan)
    sliced.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def measure_dir(path: Path, *, profile: str | None, seq_len: int, engine: str, runs: int, warmup: int = 2) -> float:
    """p50 latency in ms of the model directory ``path`` (exported first when ``engine="bundle"``)."""

    target = path
    with tempfile.TemporaryDirectory(prefix="kdtool-prune-bundle-") as work:
        if engine == "bundle":
            target = export_model(ExportConfig(model_dir=path, output=Path(work) / "bundle", profile=profile,
                                               precision=None if profile else "int8", max_seq_length=max(32, seq_len)))
        result = profile_models(ProfileConfig(models=[str(target)], profile=profile, seq_lengths=[seq_len],
                                              batch_sizes=[1], runs=runs, warmup=warmup))
    row = result.fixed[0]
    if row["status"] != "ok" or not row["latency_ms"]:
        raise KdtoolError(f"measuring a candidate shape failed: {row.get('error')}")
    return float(row["latency_ms"]["p50"])


def measure_plan(model, tokenizer, plan, **kw) -> float:
    with tempfile.TemporaryDirectory(prefix="kdtool-prune-candidate-") as tmp:
        return measure_dir(save_candidate(model, tokenizer, plan, Path(tmp) / "model"), **kw)
