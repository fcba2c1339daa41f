"""PyTorch engines: a Hugging Face model directory (:class:`TorchEngine`, any head) and a model already
in memory (:class:`ModelEngine`, what evaluation during training runs)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from kdtool.engines.base import QAEngine, tokenizer_inputs
from kdtool.errors import InputError
from kdtool.models import count_parameters, load_task_model, load_tokenizer, max_positions
from kdtool.models.heads import HEADS, Head

_THREADS = {"engines": 0, "before": None}  # open TorchEngine instances that set torch's thread count, and its prior value


def _run(model, device, input_names, outputs, batch) -> tuple[np.ndarray, ...]:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(device) for k in input_names if k in batch})
        return tuple(getattr(out, name).float().cpu().numpy() for name in outputs)


class TorchEngine(QAEngine):
    """A Hugging Face model directory run with PyTorch; ``head`` says which head it loads and what ``run`` returns."""

    kind = "pytorch"
    head: Head = HEADS["qa"]

    def __init__(self, path, *, head: Head | None = None, device: str = "auto", threads: int | None = None,
                 attn_implementation: str | None = None, trust_remote_code: bool = False, dtype: str | None = None, **_):
        import torch

        self.path = Path(path)
        self.name = self.path.name
        self.head = head or self.head
        if device == "tensorrt":
            raise InputError(f"{self.path} is a Hugging Face model directory; --device tensorrt runs kdtool bundles "
                             "(kdtool export --trt, then kdtool build-engine)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device} requested but no CUDA GPU is visible; use --device cpu")
        self._sets_threads = bool(threads)
        if threads:  # process-wide in PyTorch: the last engine to close restores the caller's setting
            if not _THREADS["engines"]:
                _THREADS["before"] = torch.get_num_threads()
            _THREADS["engines"] += 1
            torch.set_num_threads(threads)
        self.device = device
        self.tokenizer = load_tokenizer(self.path, trust_remote_code=trust_remote_code)
        if attn_implementation == "torch-triton":  # registers the name with transformers (kdtool.kernels)
            importlib.import_module("kdtool.kernels.hf_attention")
        self.model = load_task_model(self.path, self.head, trust_remote_code=trust_remote_code,
                                     attn_implementation=attn_implementation)
        if dtype:
            self.model = self.model.to(getattr(torch, dtype))
        self.model.eval().to(device)
        self.input_names = tokenizer_inputs(self.tokenizer)
        self.max_length = max_positions(self.model.config)

    def run(self, batch):
        return _run(self.model, self.device, self.input_names, self.head.outputs, batch)

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


class TorchQAEngine(TorchEngine):
    """A Hugging Face ``*ForQuestionAnswering`` directory: ``run`` gives (start_logits, end_logits)."""

    head = HEADS["qa"]


class ModelEngine(QAEngine):
    """An engine over an in-memory model, so evaluation needs no saved directory."""

    kind = "pytorch"

    def __init__(self, model, tokenizer, *, device, head: Head = HEADS["qa"], max_length: int | None = None,
                 name: str = "student"):
        self.model, self.tokenizer, self.device, self.name = model, tokenizer, str(device), name
        self.head, self.max_length = head, max_length
        self.input_names = tokenizer_inputs(tokenizer)

    def run(self, batch):
        return _run(self.model, self.device, self.input_names, self.head.outputs, batch)


def open_engine(opening, **options) -> TorchEngine:
    """The registry's loader (:mod:`kdtool.engines.registry`)."""
    return TorchEngine(opening.path, head=opening.head, device=opening.device, **options)
