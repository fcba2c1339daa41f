"""PyTorch -> ONNX through Optimum's exporter, and the logit parity check against PyTorch."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdtool.engines.base import input_feed
from kdtool.engines.ort import session_options
from kdtool.errors import KdtoolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomExporter:
    """A model type Optimum does not know: ``exporter`` ("module:function") writes ``out_dir/model.onnx`` with
    Optimum's input/output names and dynamic axes; ``fuse`` says whether the transformer fusion applies."""

    exporter: str
    fuse: bool = False


# model_type -> exporter; every other model type goes through Optimum's main_export
CUSTOM_EXPORTERS: dict[str, CustomExporter] = {
    "kdtool-bilstm": CustomExporter("kdtool.students.bilstm_onnx:export_bilstm_onnx"),
}


def custom_exporter(model_type: str) -> CustomExporter | None:
    return CUSTOM_EXPORTERS.get(model_type)


def export_onnx(model_dir: Path, out_dir: Path, *, opset: int, trust_remote_code: bool = False,
                task: str = "question-answering", model_type: str = "") -> Path:
    """Export ``model_dir`` with ``optimum.exporters.onnx.main_export`` (``task``: Optimum's task name), or
    with the :data:`CUSTOM_EXPORTERS` entry of its ``model_type``."""
    sink = io.StringIO()
    custom = custom_exporter(model_type)
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if custom is not None:
                module, attr = custom.exporter.split(":")
                getattr(importlib.import_module(module), attr)(Path(model_dir), Path(out_dir), task=task, opset=opset)
            else:
                from optimum.exporters.onnx import main_export

                main_export(str(model_dir), str(out_dir), task=task, opset=opset, do_validation=False,
                            local_files_only=True, trust_remote_code=trust_remote_code, library_name="transformers")
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise KdtoolError(f"ONNX export of {model_dir} failed: {str(err).splitlines()[0][:200]}") from None
    path = Path(out_dir) / "model.onnx"
    if not path.is_file():
        raise KdtoolError(f"ONNX export of {model_dir} wrote no model.onnx; rerun with --debug")
    return path


def ort_session(path: Path, *, threads: int | None = None, providers=("CPUExecutionProvider",)):
    """An ONNX Runtime session on ``path`` with kdtool's session options (exact INT8 on this CPU)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads=threads), providers=list(providers))


QA_OUTPUTS = ("start_logits", "end_logits")


def run_session(session, batch: dict[str, np.ndarray], outputs=QA_OUTPUTS) -> tuple[np.ndarray, ...]:
    feed = input_feed(batch, [inp.name for inp in session.get_inputs()])
    return tuple(o.astype(np.float32) for o in session.run(list(outputs), feed))


def torch_logits(model, batches, outputs=QA_OUTPUTS) -> list[tuple[np.ndarray, ...]]:
    import torch

    accepted = set(model.forward.__code__.co_varnames)
    out = []
    with torch.inference_mode():
        for b in batches:
            o = model(**{k: torch.from_numpy(v) for k, v in b.items() if k in accepted})
            out.append(tuple(getattr(o, name).float().numpy() for name in outputs))
    return out


def parity(reference: list, onnx_path: Path, batches, outputs=QA_OUTPUTS, per_token: bool = True) -> dict:
    """Max |logit difference| over real (unpadded) positions, and how often the argmax agrees.

    ``per_token`` outputs are ``[batch, seq]`` and masked by ``attention_mask``; others are ``[batch, labels]``.
    """
    session = ort_session(onnx_path)
    worst, agree, total = 0.0, 0, 0
    for ref, b in zip(reference, batches, strict=True):  # the reference was computed on these batches
        got = run_session(session, b, outputs)
        mask = b["attention_mask"].astype(bool) if per_token else None
        for r, g in zip(ref, got, strict=True):
            m = mask if per_token else np.ones_like(r, dtype=bool)
            worst = max(worst, float(np.abs(g - r)[m].max()))
            neg = np.where(m, 0, -np.inf)
            agree += int(((g + neg).argmax(1) == (r + neg).argmax(1)).sum())
            total += len(m)
    return {"max_abs_logit_diff": worst, "argmax_agreement": agree / max(total, 1),
            "reference": "pytorch fp32", "n_features": int(sum(len(b["input_ids"]) for b in batches))}
