"""Accuracy and F1 of several pair-classification engines on one pairs file, with drift against a
reference — the pair task's side of :func:`kdtool.validate.validate`, which routes here by task.

Same contract as the QA result: the first model is the reference; each candidate gets its
accuracy/F1 drop and the share of pairs with the same predicted label (agreement); ``max_f1_drop``
turns the comparison into a gate (:attr:`PairValidationResult.passed`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdtool import __version__
from kdtool.engines import bundle_signature, load_engine
from kdtool.errors import InputError
from kdtool.progress import Progress, say
from kdtool.tasks.pairs import load_pairs, pair_metrics, predict_pairs


@dataclass
class PairScore:
    name: str
    path: str
    kind: str
    accuracy: float
    f1: float
    seconds: float
    metrics: dict
    accuracy_drop: float = 0.0  # reference - this (positive = worse)
    f1_drop: float = 0.0
    agreement: float = 100.0  # % of pairs with the reference's label
    within_budget: bool | None = None


@dataclass
class PairValidationResult:
    config: object
    data_report: dict
    scores: list[PairScore]
    predictions: dict = field(default_factory=dict)  # model path -> id -> PairPrediction
    interrupted: bool = False
    task: str = "pair-classification"

    @property
    def passed(self) -> bool:
        return all(s.within_budget is not False for s in self.scores)

    def to_dict(self) -> dict:
        return {"kdtool_version": __version__, "task": self.task, "config": asdict(self.config), "data": self.data_report,
                "passed": self.passed, "interrupted": self.interrupted, "models": [asdict(s) for s in self.scores]}

    def table(self) -> str:
        head = f"{'model':<28} {'kind':<12} {'acc':>7} {'F1':>7} {'Δacc':>7} {'ΔF1':>7} {'agree%':>7} {'sec':>7}  budget"
        lines = [head, "-" * len(head)]
        for i, s in enumerate(self.scores):
            if i == 0:
                lines.append(f"{s.name[:28]:<28} {s.kind:<12} {s.accuracy:7.2f} {s.f1:7.2f} {'(reference)':>23} "
                             f"{s.seconds:7.1f}")
                continue
            budget = "" if s.within_budget is None else ("ok" if s.within_budget else "EXCEEDED")
            lines.append(f"{s.name[:28]:<28} {s.kind:<12} {s.accuracy:7.2f} {s.f1:7.2f} {-s.accuracy_drop:+7.2f} "
                         f"{-s.f1_drop:+7.2f} {s.agreement:7.1f} {s.seconds:7.1f}  {budget}")
        return "\n".join(lines)


def validate_pairs(config, *, progress: Progress | None = None) -> PairValidationResult:
    """Score every model of ``config`` (a :class:`kdtool.validate.ValidateConfig`) on its pairs file; ``progress``
    as :func:`kdtool.validate.validate` reports it (a line per model, task ``"score NAME"``, unit "win")."""
    if config.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {config.batch_size}")
    ds = load_pairs(config.data, limit=config.limit)
    for path in config.models:
        if not Path(path).exists():
            raise InputError(f"model not found: {path}")
    result = PairValidationResult(config, ds.report, [])
    try:
        for path in config.models:
            engine = load_engine(path, device=config.device, threads=config.threads,
                                 trust_remote_code=config.trust_remote_code,
                                 require_signature=bundle_signature(path, config.require_signature),
                                 self_test=config.self_test, strict=config.strict)
            try:
                say(progress, f"scoring {engine.name} on {len(ds)} pairs")
                t0 = time.perf_counter()
                preds = predict_pairs(engine, ds.examples, max_length=config.features.max_length,
                                      batch_size=config.batch_size, progress=progress, task=f"score {engine.name}")
                seconds = time.perf_counter() - t0
                m = pair_metrics(ds.examples, preds, ds.num_labels)
                result.predictions[path] = preds
                result.scores.append(PairScore(engine.name, str(path), engine.kind, m["accuracy"], m["f1"], seconds, m))
            finally:
                engine.close()
    except KeyboardInterrupt:
        result.interrupted = True
    if result.scores:
        ref = result.scores[0]
        ref_preds = result.predictions[ref.path]
        for s in result.scores[1:]:
            s.accuracy_drop, s.f1_drop = ref.accuracy - s.accuracy, ref.f1 - s.f1
            other = result.predictions[s.path]
            s.agreement = 100.0 * sum(ref_preds[i].label == other[i].label for i in ref_preds) / max(len(ref_preds), 1)
            if config.max_f1_drop is not None:
                s.within_budget = s.f1_drop <= config.max_f1_drop
    return result
