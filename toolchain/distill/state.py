"""Where a training run is: its schedule (stages, data order, learning-rate factor), the typed
bookkeeping a checkpoint keeps besides weights and RNG states (:class:`TrainState`), and the
per-step log (:class:`RunLog`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdtool.atomic import LineFile
from kdtool.distill.config import DistillConfig, TrainConfig


def epoch_stages(config: TrainConfig) -> list[str]:
    """The stage of every epoch: ``finetune``, or a distillation schedule's ``intermediate``,
    ``prediction`` or ``joint``."""
    if not isinstance(config, DistillConfig):
        return ["finetune"] * config.epochs
    if config.schedule == "two-stage":
        inter, pred = config.stage_epochs
        return ["intermediate"] * inter + ["prediction"] * pred
    return [config.schedule] * config.epochs


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The data order of an epoch: a permutation drawn from (seed, epoch) alone, so a resumed run sees the same."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def linear_schedule(stages: list[str], steps_per_epoch: int, warmup: float):
    """LR factor per optimizer step: linear warm-up then linear decay, restarted at each stage."""
    segments, start = [], 0
    for i, stage in enumerate(stages):
        if i == 0 or stage != stages[i - 1]:
            segments.append([start, 0])
        segments[-1][1] += steps_per_epoch
        start += steps_per_epoch

    def factor(step: int) -> float:
        s0, n = next((s, n) for s, n in segments if step < s + n or (s, n) == tuple(segments[-1]))
        local, warm = step - s0, int(warmup * n)
        if local < warm:
            return (local + 1) / (warm + 1)
        return max(0.0, (n - local) / max(1, n - warm))

    return factor


@dataclass
class TrainState:
    """The bookkeeping of a run. ``epoch`` and ``step`` are where it continues: the epoch it is in and
    the optimizer steps of that epoch already done. A checkpoint stores it as ``position`` and ``book``."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best: dict | None = None  # the dev evaluation of the best epoch so far
    evals: list[dict] = field(default_factory=list)  # one per evaluated epoch
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, evaluation, logits cache

    def add_seconds(self, what: str, seconds: float) -> None:
        self.stage_seconds[what] = self.stage_seconds.get(what, 0.0) + seconds

    def checkpoint_fields(self) -> dict:
        return {"position": {"epoch": self.epoch, "step": self.step, "global_step": self.global_step},
                "book": json.dumps({"best": self.best, "evals": self.evals, "stage_seconds": self.stage_seconds})}

    @classmethod
    def from_checkpoint(cls, state: dict) -> TrainState:
        pos, book = state["position"], json.loads(state["book"])
        return cls(pos["epoch"], pos["step"], pos["global_step"], book["best"], book["evals"], book["stage_seconds"])


class RunLog:
    """``train_log.jsonl``: one line per optimizer step; reopening drops lines past the resumed step."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= keep_until]
        # a new file holding the kept lines replaces the old one, and only this run appends to it
        self.file = LineFile(path, "".join(ln + "\n" for ln in kept).encode("utf-8"), option="train log")

    def write(self, record: dict) -> None:
        self.file.append((json.dumps(record) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.file.close()
