"""Engines for sentence-pair matching models, beside the QA engines and with the same interface.

``run(batch)`` returns ``(logits,)`` — a one-tuple of ``[batch, labels]`` float32 — where QA engines
return ``(start_logits, end_logits)``; everything else (tokenizer, input names, describe, size,
synchronize) is the :class:`~kdtool.engine.QAEngine` contract, so the profiler runs them unchanged.
:data:`kdtool.engine.ENGINE_KINDS` routes a directory whose task is pair-classification here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kdtool.engine import QAEngine, TorchEngine
from kdtool.errors import InputError


def load_task_model(path, task, *, trust_remote_code: bool = False, require_head: bool = True, **kwargs):
    """A model of ``task`` (a :class:`~kdtool.tasks.Task`) from a local directory, with one-line errors.

    ``require_head=False`` accepts a bare encoder (or another head) and gives it a new, random head.
    """
    from kdtool.models import REMOTE_CODE_HINT, _check_model_dir, _needs_remote_code, load_config, load_qa_model

    if task.name == "qa":
        return load_qa_model(path, trust_remote_code=trust_remote_code, require_head=require_head, **kwargs)
    path = _check_model_dir(Path(path))
    config = load_config(path, trust_remote_code=trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    if require_head and archs and not any(a.endswith(task.architecture_suffix) for a in archs):
        raise InputError(f"{path} is a {archs[0]}, not a {task.name} model; fine-tune it first "
                         f"(kdtool finetune --task {task.name}) or give a *{task.architecture_suffix} checkpoint")
    kwargs = {k: v for k, v in kwargs.items() if v is not None and k != "weights_only"}
    try:
        return task.auto_class().from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (ValueError, OSError, RuntimeError) as err:
        if _needs_remote_code(err):
            raise InputError(f"{path} {REMOTE_CODE_HINT}") from None
        raise InputError(f"{path}: the model could not be loaded: {str(err).strip().splitlines()[0][:200]}") from None


class TorchPairEngine(TorchEngine):
    """A Hugging Face ``*ForSequenceClassification`` directory: ``run`` gives ``(logits,)``."""

    def _load_model(self, *, trust_remote_code, attn_implementation):
        from kdtool.tasks import TASKS

        return load_task_model(self.path, TASKS["pair-classification"], trust_remote_code=trust_remote_code,
                               attn_implementation=attn_implementation)

    def _outputs(self, out):
        return (out.logits,)


def load_pair_bundle(path, *, device: str = "auto", threads: int | None = None, providers=None, spinning: bool = False,
                     require_signature=None, **_) -> QAEngine:
    """A verified pair-classification bundle on ONNX Runtime (TensorRT engines serve QA bundles only)."""
    from kdtool.export.runtime import OrtQAEngine
    from kdtool.export.verified import open_verified_bundle

    class OrtPairEngine(OrtQAEngine):
        def run(self, batch):
            feed = {n: np.ascontiguousarray(batch[n] if n in batch else np.zeros_like(batch["input_ids"]), dtype=np.int64)
                    for n in self.input_names}
            return (self.session.run(["logits"], feed)[0].astype(np.float32, copy=False),)

    if device == "tensorrt":
        raise InputError(f"bundle {path}: TensorRT engines are built for question-answering bundles only; "
                         "run this pair-classification bundle with --device cpu or cuda")
    verified = open_verified_bundle(Path(path), public_key=require_signature)
    return OrtPairEngine(path, verified, device=device, threads=threads, providers=providers, spinning=spinning)


def predict_pairs(engine: QAEngine, examples: Sequence, *, max_length: int = 128, batch_size: int = 32,
                  on_batch: Callable[[int], None] | None = None) -> dict:
    """``{id: PairPrediction}`` of ``engine`` on pair examples (length-sorted batches, dynamic padding)."""
    from kdtool.data import length_sorted_batches
    from kdtool.tasks.pairs import PairPrediction, tokenize_pairs

    if engine.max_length:
        max_length = min(max_length, engine.max_length)
    feats = tokenize_pairs(examples, engine.tokenizer, max_length)
    preds = {}
    for idx in length_sorted_batches(feats, batch_size):
        batch = feats.batch(idx)
        (logits,) = engine.run({k: batch[k] for k in engine.input_names if k in batch})
        for row, i in enumerate(idx):
            e = examples[i]
            preds[e.id] = PairPrediction(e.id, int(logits[row].argmax()), tuple(float(x) for x in logits[row]))
        if on_batch:
            on_batch(len(idx))
    return preds
