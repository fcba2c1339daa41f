"""One question-answering engine interface over every kind of model kdtool handles.

An engine takes a padded batch (``input_ids``, ``attention_mask`` and, for models that use
them, ``token_type_ids``, as int64 numpy arrays) and returns start and end logits as float32
numpy arrays. Tokenization and post-processing are shared (:mod:`kdtool.predict`), so every
backend answers through exactly the same code path.

Which backend opens a path is data: :data:`ENGINE_KINDS` lists a detector and a loader per
kind, checked in order. Bundles (a ``manifest.json``) are opened by :mod:`kdtool.export.runtime`;
plain Hugging Face directories by :class:`TorchQAEngine`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.errors import InputError
from kdtool.models import count_parameters, dir_size_bytes, load_qa_model, load_tokenizer, max_positions


class QAEngine:
    """Base class of all engines. Subclasses set the attributes and implement :meth:`run`."""

    name: str = ""
    path: Path
    kind: str = ""  # "pytorch", "onnxruntime", "tensorrt"
    tokenizer = None
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    max_length: int | None = None  # the longest window this engine accepts (None: model limit)
    device: str = "cpu"

    def run(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op for synchronous backends); used by the profiler."""

    def num_parameters(self) -> int | None:
        return None

    def size_bytes(self) -> int:
        return dir_size_bytes(self.path)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "kind": self.kind, "device": self.device,
                "parameters": self.num_parameters(), "size_bytes": self.size_bytes()}

    def close(self) -> None:
        pass


_THREADS = {"engines": 0, "before": None}  # open TorchQAEngine instances that set torch's thread count, and its prior value


class TorchEngine(QAEngine):
    """A Hugging Face model directory run with PyTorch; subclasses say which head and outputs."""

    kind = "pytorch"

    def __init__(self, path, *, device: str = "auto", threads: int | None = None, attn_implementation: str | None = None,
                 trust_remote_code: bool = False, dtype: str | None = None, **_):
        import torch

        self.path = Path(path)
        self.name = self.path.name
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
        self.model = self._load_model(trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
        if dtype:
            self.model = self.model.to(getattr(torch, dtype))
        self.model.eval().to(device)
        accepted = set(self.tokenizer.model_input_names) | {"input_ids", "attention_mask"}
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted)
        self.max_length = max_positions(self.model.config)

    def _load_model(self, *, trust_remote_code: bool, attn_implementation: str | None):
        raise NotImplementedError

    def _outputs(self, out) -> tuple:
        raise NotImplementedError

    def run(self, batch):
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device) for k in self.input_names if k in batch}
            return tuple(t.float().cpu().numpy() for t in self._outputs(self.model(**inputs)))

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

    def _load_model(self, *, trust_remote_code, attn_implementation):
        if attn_implementation == "torch-triton":  # registers the name with transformers (kdtool.kernels)
            importlib.import_module("kdtool.kernels.hf_attention")
        return load_qa_model(self.path, trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)

    def _outputs(self, out):
        return out.start_logits, out.end_logits



@dataclass(frozen=True)
class EngineKind:
    name: str
    detect: Callable[[Path], bool]
    loader: str  # "module:attribute", imported only when used


def _is_task(task: str) -> Callable[[Path], bool]:
    from kdtool.tasks import detect_task

    return lambda p: detect_task(p) == task


ENGINE_KINDS: list[EngineKind] = [
    EngineKind("pair-bundle", lambda p: (p / "manifest.json").is_file() and _is_task("pair-classification")(p),
               "kdtool.tasks.engines:load_pair_bundle"),
    EngineKind("pair-hf-model", _is_task("pair-classification"), "kdtool.tasks.engines:TorchPairEngine"),
    EngineKind("bundle", lambda p: (p / "manifest.json").is_file(), "kdtool.export.runtime:load_bundle_engine"),
    EngineKind("hf-model", lambda p: (p / "config.json").is_file(), "kdtool.engine:TorchQAEngine"),
]


def bundle_signature(path, public_key):
    """``public_key`` where ``path`` is a bundle, else None: commands comparing model directories with
    bundles (validate, profile) require the signature of the bundles among them."""
    return public_key if public_key and (Path(path) / "manifest.json").is_file() else None


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|tensorrt")


def load_engine(path, **options) -> QAEngine:
    """Open ``path`` with the first engine kind whose detector accepts it.

    ``options`` go to the loader (``device``, ``threads``, ``trust_remote_code``, ...).
    """
    p = Path(path)
    device = options.get("device", "auto")
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or tensorrt (bundles)")
    if not p.exists():
        raise InputError(f"model not found: {p}")
    if not p.is_dir():
        raise InputError(f"{p} is a file; give a model directory or a kdtool bundle directory")
    if options.get("require_signature") and not (p / "manifest.json").is_file():
        raise InputError(f"{p} is not a kdtool bundle; --require-signature checks signed bundles only")
    if not options.get("require_signature"):
        options.pop("require_signature", None)
    for kind in ENGINE_KINDS:
        if kind.detect(p):
            module, attr = kind.loader.split(":")
            return getattr(importlib.import_module(module), attr)(p, **options)
    raise InputError(f"{p} is neither a Hugging Face model directory (config.json) nor a kdtool bundle (manifest.json)")
