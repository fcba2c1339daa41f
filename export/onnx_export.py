"""PyTorch -> ONNX through Optimum's exporter, and the logit parity check against PyTorch."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from kdtool.errors import KdtoolError

log = logging.getLogger(__name__)


def export_onnx(model_dir: Path, out_dir: Path, *, opset: int, trust_remote_code: bool = False) -> Path:
    """Export ``model_dir`` with ``optimum.exporters.onnx.main_export`` (task question-answering)."""
    from optimum.exporters.onnx import main_export

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(str(model_dir), str(out_dir), task="question-answering", opset=opset, do_validation=False,
                        local_files_only=True, trust_remote_code=trust_remote_code, library_name="transformers")
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise KdtoolError(f"ONNX export of {model_dir} failed: {str(err).splitlines()[0][:200]}") from None
    path = Path(out_dir) / "model.onnx"
    if not path.is_file():
        raise KdtoolError(f"ONNX export of {model_dir} wrote no model.onnx; rerun with --debug")
    return path


def ort_session(path: Path, *, threads: int | None = None, providers=("CPUExecutionProvider",)):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def run_session(session, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    feed = {}
    for inp in session.get_inputs():
        feed[inp.name] = batch[inp.name] if inp.name in batch else np.zeros_like(batch["input_ids"])
    start, end = session.run(["start_logits", "end_logits"], feed)
    return start.astype(np.float32), end.astype(np.float32)


def torch_logits(model, batches) -> list[tuple[np.ndarray, np.ndarray]]:
    import torch

    accepted = set(model.forward.__code__.co_varnames)
    out = []
    with torch.inference_mode():
        for b in batches:
            o = model(**{k: torch.from_numpy(v) for k, v in b.items() if k in accepted})
            out.append((o.start_logits.float().numpy(), o.end_logits.float().numpy()))
    return out


def parity(reference: list, onnx_path: Path, batches) -> dict:
    """Max |logit difference| over real (unpadded) positions, and how often the argmax agrees."""
    session = ort_session(onnx_path)
    worst, agree, total = 0.0, 0, 0
    for (rs, re_), b in zip(reference, batches):
        s, e = run_session(session, b)
        mask = b["attention_mask"].astype(bool)
        worst = max(worst, float(np.abs(s - rs)[mask].max()), float(np.abs(e - re_)[mask].max()))
        neg = np.where(mask, 0, -np.inf)
        agree += int(((s + neg).argmax(1) == (rs + neg).argmax(1)).sum() + ((e + neg).argmax(1) == (re_ + neg).argmax(1)).sum())
        total += 2 * len(mask)
    return {"max_abs_logit_diff": worst, "argmax_agreement": agree / max(total, 1),
            "reference": "pytorch fp32", "n_features": int(sum(len(b["input_ids"]) for b in batches))}
