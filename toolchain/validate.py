"""F1/EM of several QA engines on one SQuAD file, with drift against a reference.

The first model is the reference (usually the FP32 student or the teacher); every candidate is
scored on the same examples with the same features and post-processing, and compared to it:
the F1/EM drop, and the share of questions where both give the same answer text. A drift budget
(``max_f1_drop``) turns the comparison into a gate: :attr:`ValidationResult.passed`.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kdtool import __version__
from kdtool.bundle.verified import verify_signed_bundle
from kdtool.data import FeatureConfig, PostprocessConfig, Prediction, load_squad
from kdtool.engines import bundle_signature, load_engine
from kdtool.engines.settings import (
    device_setting,
    require_signature_setting,
    self_test_setting,
    strict_setting,
    threads_setting,
    trust_remote_code_setting,
)
from kdtool.errors import InputError
from kdtool.fields import setting, shared
from kdtool.metrics import get_language, lang_setting, squad_evaluate
from kdtool.predict import PredictConfig, feature_config_for, predict
from kdtool.progress import Progress, say
from kdtool.tasks import resolve_task


@dataclass(frozen=True)
class ValidateConfig:
    models: tuple[str, ...] = setting(argument=True)  # the first is the reference
    data: str = setting(type="path", help="SQuAD v1.1/v2.0 JSON file (qa) or pairs TSV/JSONL file "
                                          "(pair-classification) to score on.")
    lang: str = lang_setting()
    max_f1_drop: float | None = setting(None, type=(-100, 100), help="Exit 1 when a candidate's F1 is lower than the "
                                                                     "reference's by more than this.")
    # score only the first N questions (None: the whole file)
    limit: int | None = setting(None, type="count", help="Score only the first N questions.")
    batch_size: int = shared(PredictConfig, "batch_size")
    # windows: the task's (a pair is one window); the question length is the library's
    features: FeatureConfig = setting(factory=FeatureConfig, recipe_only=("max_query_length",))
    n_best: int = shared(PostprocessConfig, "n_best")
    max_answer_length: int = shared(PostprocessConfig, "max_answer_length")
    null_score_diff_threshold: float = shared(PostprocessConfig, "null_score_diff_threshold")
    device: str = device_setting("auto, cpu or cuda[:N].")
    threads: int | None = threads_setting("CPU threads per model (default: all).")
    trust_remote_code: bool = trust_remote_code_setting("model directories", "their")
    # auto: the reference model's task (kdtool.tasks); qa or pair-classification
    task: str = setting("auto", choices=("auto", "qa", "pair-classification"),
                        help="auto: the reference model's task. pair-classification reports accuracy and F1.")
    require_signature: str | None = require_signature_setting()  # every bundle among the models must be signed by it
    self_test: bool = self_test_setting()  # run each bundle's self-test on this device before scoring it
    # refuse instead of warning: model directories when require_signature is given (they carry no signature), a
    # bundle exported for another INT8 arithmetic class than this device's, or one that carries no self-test
    strict: bool = strict_setting()


# tasks other than QA, scored beside the QA path below: task name -> "module:function"
TASK_VALIDATORS = {"pair-classification": "kdtool.tasks.validate_pairs:validate_pairs"}


@dataclass
class ModelScore:
    name: str
    path: str
    kind: str
    exact_match: float
    f1: float
    seconds: float
    metrics: dict
    f1_drop: float = 0.0  # reference F1 - this F1 (positive = worse)
    em_drop: float = 0.0
    agreement: float = 100.0  # % of questions with the same answer text as the reference
    within_budget: bool | None = None
    self_test: dict | None = None  # a bundle's self-test on this device (kdtool.bundle.selftest.SelfTestResult)


@dataclass
class ValidationResult:
    config: ValidateConfig
    data_report: dict
    scores: list[ModelScore]
    predictions: dict[str, dict[str, Prediction]]  # model path -> id -> prediction
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        return all(s.within_budget is not False for s in self.scores)

    def to_dict(self) -> dict:
        cfg = asdict(self.config)
        return {"kdtool_version": __version__, "config": cfg, "data": self.data_report, "passed": self.passed,
                "interrupted": self.interrupted, "models": [asdict(s) for s in self.scores],
                "signature_unchecked": unsigned_models(self.config)}


def agreement(a: dict[str, Prediction], b: dict[str, Prediction]) -> float:
    ids = a.keys() & b.keys()
    return 100.0 * sum(a[i].text == b[i].text for i in ids) / len(ids) if ids else 0.0


def unsigned_models(config: ValidateConfig) -> list[str]:
    """The models ``require_signature`` cannot check: model directories (only bundles carry a signature)."""
    if not config.require_signature:
        return []
    return [str(p) for p in config.models if Path(p).is_dir() and not bundle_signature(p, config.require_signature)]


def signature_warning(config: ValidateConfig) -> str | None:
    """The one line that says which models ``--require-signature`` did not check, or None."""
    unchecked = unsigned_models(config)
    if not unchecked:
        return None
    return (f"--require-signature checked bundles only; not checked: {', '.join(unchecked)} (model directories "
            "carry no signature; --strict refuses them)")


def validate(config: ValidateConfig, *, progress: Progress | None = None) -> ValidationResult:
    """Score every model of ``config`` and compare the candidates with the reference.

    ``progress`` gets a line as each model starts and the windows scored as task ``"score NAME"``
    (unit "win"). A KeyboardInterrupt returns what was scored so far, with ``interrupted`` set.
    """
    if not config.models:
        raise InputError("validate needs at least one model: the reference")
    unchecked = unsigned_models(config)
    if unchecked and config.strict:
        what = "is a model directory, which carries" if len(unchecked) == 1 else "are model directories, which carry"
        raise InputError(f"--require-signature --strict: {', '.join(unchecked)} {what} no signature; give bundles "
                         "signed with the key (kdtool export --sign-key), or leave out --strict")
    other = TASK_VALIDATORS.get(resolve_task(config.task, config.models[0]).name)
    if other is not None:
        module, attr = other.split(":")
        return getattr(importlib.import_module(module), attr)(config, progress=progress)
    if config.limit is not None and config.limit < 1:
        raise InputError(f"limit must be at least 1 question, got {config.limit}")
    for name in ("batch_size", "n_best", "max_answer_length"):
        if getattr(config, name) < 1:
            raise InputError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(config, name)}")
    get_language(config.lang)
    ds = load_squad(config.data)
    examples = ds.examples[: config.limit] if config.limit else ds.examples
    post = PostprocessConfig(config.n_best, config.max_answer_length, ds.is_v2, config.null_score_diff_threshold)
    result = ValidationResult(config, {**ds.report.to_dict(), "questions_scored": len(examples)}, [], {})
    for path in config.models:  # fail fast on a bad path (or an unsigned bundle) before any model runs
        if not Path(path).exists():
            raise InputError(f"model not found: {path}")
        if bundle_signature(path, config.require_signature):
            verify_signed_bundle(path, config.require_signature)  # the loader checks again on the bytes it loads
    try:
        for path in config.models:
            engine = load_engine(path, device=config.device, threads=config.threads,
                                 trust_remote_code=config.trust_remote_code,
                                 require_signature=bundle_signature(path, config.require_signature),
                                 self_test=config.self_test, strict=config.strict)
            try:
                pcfg = PredictConfig(feature_config_for(engine, config.features), post, config.batch_size)
                say(progress, f"scoring {engine.name} on {len(examples)} questions")
                t0 = time.perf_counter()
                preds = predict(engine, examples, pcfg, progress=progress, task=f"score {engine.name}")
                seconds = time.perf_counter() - t0
                metrics = squad_evaluate(examples, {k: p.text for k, p in preds.items()}, config.lang)
                result.predictions[path] = preds
                checked = getattr(engine, "self_test_result", None)
                result.scores.append(ModelScore(engine.name, str(path), engine.kind, metrics["exact_match"], metrics["f1"],
                                                seconds, metrics, self_test=checked.to_dict() if checked else None))
            finally:
                engine.close()
    except KeyboardInterrupt:
        result.interrupted = True
    _compare(result)
    return result


def _compare(result: ValidationResult) -> None:
    if not result.scores:
        return
    ref = result.scores[0]
    ref_preds = result.predictions[ref.path]
    for s in result.scores[1:]:
        s.f1_drop = ref.f1 - s.f1
        s.em_drop = ref.exact_match - s.exact_match
        s.agreement = agreement(ref_preds, result.predictions[s.path])
        if result.config.max_f1_drop is not None:
            s.within_budget = s.f1_drop <= result.config.max_f1_drop


def format_table(result: ValidationResult) -> str:
    """A plain-text table of the scores (the reference first)."""
    if hasattr(result, "table"):  # another task's result formats itself (kdtool.tasks.validate_pairs)
        return result.table()
    head = f"{'model':<28} {'kind':<12} {'F1':>7} {'EM':>7} {'ΔF1':>7} {'ΔEM':>7} {'agree%':>7} {'sec':>7}  budget"
    lines = [head, "-" * len(head)]
    for i, s in enumerate(result.scores):
        budget = "" if s.within_budget is None else ("ok" if s.within_budget else "EXCEEDED")
        delta = ("reference", "", "") if i == 0 else (f"{-s.f1_drop:+7.2f}", f"{-s.em_drop:+7.2f}", f"{s.agreement:7.1f}")
        if i == 0:
            lines.append(f"{s.name[:28]:<28} {s.kind:<12} {s.f1:7.2f} {s.exact_match:7.2f} {'(reference)':>23} {s.seconds:7.1f}")
        else:
            lines.append(f"{s.name[:28]:<28} {s.kind:<12} {s.f1:7.2f} {s.exact_match:7.2f} {delta[0]} {delta[1]} {delta[2]} "
                         f"{s.seconds:7.1f}  {budget}")
    return "\n".join(lines)


def predictions_json(preds: dict[str, Prediction], examples_order: Sequence[str] | None = None) -> dict[str, str]:
    """The official predictions format: question id -> answer text."""
    ids = examples_order or list(preds)
    return {i: preds[i].text for i in ids if i in preds}
