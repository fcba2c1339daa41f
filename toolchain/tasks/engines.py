"""Engines for sentence-pair matching models, beside the QA engines and with the same interface.

``run(batch)`` returns ``(logits,)`` — a one-tuple of ``[batch, labels]`` float32 — where QA engines
return ``(start_logits, end_logits)``; everything else (tokenizer, input names, describe, size,
synchronize) is the :class:`~kdtool.engine.QAEngine` contract, so the profiler runs them unchanged.
:data:`kdtool.engine.ENGINE_KINDS` routes a directory whose task is pair-classification here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kdtool.engine import _THREADS, QAEngine
from kdtool.errors import InputError
from kdtool.models import count_parameters, load_tokenizer


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


class TorchPairEngine(QAEngine):
    """A Hugging Face ``*ForSequenceClassification`` directory run with PyTorch."""

    kind = "pytorch"

    def __init__(self, path, *, device: str = "auto", threads: int | None = None, trust_remote_code: bool = False,
                 dtype: str | None = None, **_):
        import torch

        from kdtool.tasks import TASKS

        self.path = Path(path)
        self.name = self.path.name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "tensorrt" or (device.startswith("cuda") and not torch.cuda.is_available()):
            raise InputError(f"device {device} is not available for {self.path}; use --device cpu")
        self._sets_threads = bool(threads)
        if threads:  # process-wide in PyTorch: shared with TorchQAEngine, the last engine to close restores it
            if not _THREADS["engines"]:
                _THREADS["before"] = torch.get_num_threads()
            _THREADS["engines"] += 1
            torch.set_num_threads(threads)
        self.device = device
        self.tokenizer = load_tokenizer(self.path, trust_remote_code=trust_remote_code)
        self.model = load_task_model(self.path, TASKS["pair-classification"], trust_remote_code=trust_remote_code)
        if dtype:
            self.model = self.model.to(getattr(torch, dtype))
        self.model.eval().to(device)
        accepted = set(self.tokenizer.model_input_names) | {"input_ids", "attention_mask"}
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted)
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)
        if self.max_length and getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            self.max_length -= self.model.config.pad_token_id + 1

    def run(self, batch):
        import torch

        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device)
                                for k in self.input_names if k in batch})
            return (out.logits.float().cpu().numpy(),)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def close(self) -> None:
        if self._sets_threads:
            import torch

            self._sets_threads = False
            _THREADS["engines"] -= 1
            if not _THREADS["engines"]:
                torch.set_num_threads(_THREADS["before"])


def load_pair_bundle(path, *, device: str = "auto", threads: int | None = None, providers=None, spinning: bool = False,
                     **_) -> QAEngine:
    """A verified pair-classification bundle on ONNX Runtime (TensorRT engines serve QA bundles only)."""
    from kdtool.export import bundle as B
    from kdtool.export.runtime import OrtQAEngine

    class OrtPairEngine(OrtQAEngine):
        def run(self, batch):
            feed = {n: np.ascontiguousarray(batch[n] if n in batch else np.zeros_like(batch["input_ids"]), dtype=np.int64)
                    for n in self.input_names}
            return (self.session.run(["logits"], feed)[0].astype(np.float32, copy=False),)

    if device == "tensorrt":
        raise InputError(f"bundle {path}: TensorRT engines are built for question-answering bundles only; "
                         "run this pair-classification bundle with --device cpu or cuda")
    manifest = B.verify_bundle(Path(path))
    return OrtPairEngine(path, manifest, device=device, threads=threads, providers=providers, spinning=spinning)


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
