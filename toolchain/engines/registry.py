"""Which engine opens a path: ONE registry of kinds, checked in order.

:func:`load_engine` checks the path, verifies a bundle's checksums (and signature) before any graph
or engine is deserialized, reads the model head (given as ``task``, else detected from the files,
else question answering) and asks each :data:`ENGINE_KINDS` entry whether it opens what it sees.
Adding a backend is one module with a ``wanted(opening)`` test and an ``open_engine(opening, **options)``
loader, and one entry here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdtool.bundle.selftest import SelfTestResult
from kdtool.bundle.verified import VerifiedBundle, open_verified_bundle
from kdtool.engines.base import QAEngine
from kdtool.engines.device import arithmetic_note, check_on_device, log
from kdtool.errors import InputError
from kdtool.models.heads import HEADS, Head, detect_head


@dataclass(frozen=True)
class Opening:
    """What the registry knows about a path before choosing a kind."""

    path: Path
    head: Head
    device: str
    bundle: VerifiedBundle | None  # a bundle's verified manifest and bytes; None for a model directory


def _is_bundle(opening: Opening) -> bool:
    return opening.bundle is not None


def _is_model_dir(opening: Opening) -> bool:
    return (opening.path / "config.json").is_file()


@dataclass(frozen=True)
class EngineKind:
    name: str  # the engine's ``kind``
    wanted: Callable[[Opening], bool] | str  # a test, or "module:attribute" of one (imported only when used)
    loader: str  # "module:attribute" of ``open_engine(opening, **options)``, imported only when used

    def accepts(self, opening: Opening) -> bool:
        return (_attribute(self.wanted) if isinstance(self.wanted, str) else self.wanted)(opening)

    def open(self, opening: Opening, **options) -> QAEngine:
        return _attribute(self.loader)(opening, **options)


def _attribute(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


ENGINE_KINDS: list[EngineKind] = [
    EngineKind("tensorrt", "kdtool.engines.trt:wanted", "kdtool.engines.trt:open_engine"),
    EngineKind("onnxruntime", _is_bundle, "kdtool.engines.ort:open_engine"),
    EngineKind("pytorch", _is_model_dir, "kdtool.engines.pytorch:open_engine"),
]


def bundle_signature(path, public_key):
    """``public_key`` where ``path`` is a bundle, else None: commands comparing model directories with
    bundles (validate, profile) require the signature of the bundles among them."""
    return public_key if public_key and (Path(path) / "manifest.json").is_file() else None


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|tensorrt")


def load_engine(path, *, task: str | None = None, device: str = "auto", require_signature=None, self_test: bool = False,
                strict: bool = False, **options) -> QAEngine:
    """Open ``path`` with the first engine kind that accepts it.

    ``task``: the head to open (a :data:`~kdtool.models.heads.HEADS` name); None reads it from the files.
    ``device``: "auto", "cpu", "cuda[:N]" or "tensorrt" (a bundle's engine, required).
    ``require_signature``: a public key file; the bundle must be signed by it.
    ``self_test``: run a bundle's self-test on the opened engine (:mod:`kdtool.engines.device`); a failure raises.
    ``strict``: refuse a bundle exported for another INT8 arithmetic class, or one without a self-test.
    ``options`` go to the loader (``threads``, ``trust_remote_code``, ``providers``, ``spinning``, ...).
    """
    p = Path(path)
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or tensorrt (bundles)")
    if not p.exists():
        raise InputError(f"model not found: {p}")
    if not p.is_dir():
        raise InputError(f"{p} is a file; give a model directory or a kdtool bundle directory")
    is_bundle = (p / "manifest.json").is_file()
    if require_signature and not is_bundle:
        raise InputError(f"{p} is not a kdtool bundle; --require-signature checks signed bundles only")
    if not is_bundle and not (p / "config.json").is_file():
        raise InputError(f"{p} is neither a Hugging Face model directory (config.json) nor a kdtool bundle (manifest.json)")
    if task is not None and task not in HEADS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(HEADS)}")
    head = HEADS[task or detect_head(p) or "qa"]
    # checksums (and the signature) first, on bytes read once: nothing else is read from the bundle afterwards
    bundle = open_verified_bundle(p, public_key=require_signature) if is_bundle else None
    opening = Opening(p, head, str(device), bundle)
    for kind in ENGINE_KINDS:
        if kind.accepts(opening):
            engine = kind.open(opening, **options)
            if self_test or strict:
                check_on_device(engine, self_test=self_test, strict=strict)
            return engine
    raise InputError(f"{p}: no engine opens it on device {device}")


def run_bundle_self_test(bundle, *, device: str = "auto", threads: int | None = None,
                         require_signature=None) -> SelfTestResult:
    """``kdtool verify BUNDLE --run``: open ``bundle`` with the engine ``answer`` would use and run its self-test.

    Raises when the bundle carries none; a failing result is returned (the caller decides the exit code).
    """
    engine = load_engine(bundle, device=device, threads=threads, require_signature=require_signature)
    note = arithmetic_note(engine)
    if note:
        log.warning(note)
    result = engine.self_test()
    if result is None:
        raise InputError(f"bundle {bundle} carries no self-test for {engine.graph_member or 'its engine'} (exported by an "
                         "older kdtool); export it again")
    return result
