"""Where training runs: Hugging Face Accelerate (one process, DDP over processes or nodes, mixed
precision) or, without the package, a single-process stand-in with the same few methods; and
evaluation of the in-memory student through the project's predict/metric path.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from kdtool.engine import QAEngine
from kdtool.errors import EnvironmentUnsupported, InputError


def mixed_precision(precision: str) -> str:
    """Accelerate's ``mixed_precision`` for ``--precision``: bf16/fp16 on GPU only, fp32 on CPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if precision in ("bf16", "fp16") and not cuda:
        raise InputError(f"--precision {precision} needs a CUDA GPU; use fp32 (or auto) on CPU")
    return "no" if precision == "fp32" else precision


class SingleProcess:
    """The subset of ``accelerate.Accelerator`` the trainer uses, for one process without the package."""

    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self, mixed: str):
        if mixed != "no":
            raise EnvironmentUnsupported("mixed precision training needs the 'accelerate' package (pip install accelerate)")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.scaler = None

    def prepare(self, *objs):
        return objs[0].to(self.device) if len(objs) == 1 else tuple(o.to(self.device) if hasattr(o, "to") else o for o in objs)

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def autocast(self):
        return contextlib.nullcontext()

    def no_sync(self, model):
        return contextlib.nullcontext()

    def unwrap_model(self, model):
        return model

    def reduce(self, tensor, reduction="mean"):
        return tensor

    def wait_for_everyone(self):
        pass


def make_accelerator(precision: str, *, find_unused_parameters: bool):
    mixed = mixed_precision(precision)
    try:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
    except ImportError:
        return SingleProcess(mixed)
    return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])


class ModelEngine(QAEngine):
    """A QA engine over an in-memory model, so evaluation needs no saved directory."""

    kind = "pytorch"

    def __init__(self, model, tokenizer, *, device, max_length: int | None = None, name: str = "student"):
        self.model, self.tokenizer, self.device, self.name = model, tokenizer, str(device), name
        self.max_length = max_length
        accepted = set(tokenizer.model_input_names) | {"input_ids", "attention_mask"}
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted)

    def run(self, batch):
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device)
                                for k in self.input_names if k in batch})
            return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


def evaluate(model, tokenizer, examples, features_config, *, batch_size: int, lang: str, device) -> dict:
    """SQuAD F1/EM of ``model`` on ``examples`` (the project's predict + metric path)."""
    from kdtool.metrics import squad_evaluate
    from kdtool.predict import PredictConfig, predict

    was_training = model.training
    model.eval()
    try:
        engine = ModelEngine(model, tokenizer, device=device)
        preds = predict(engine, examples, PredictConfig(features=features_config, batch_size=batch_size))
    finally:
        model.train(was_training)
    return squad_evaluate(examples, {k: p.text for k, p in preds.items()}, lang)
