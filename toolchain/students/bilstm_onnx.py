"""ONNX export of the BiLSTM student with the graph interface Optimum gives the transformer students.

Optimum has no exporter for a model type it does not know, so this one calls ``torch.onnx.export``
(the TorchScript exporter: it emits the ONNX ``LSTM`` op, which ONNX Runtime runs and quantizes with
``DynamicQuantizeLSTM``) with the same input names, output names and dynamic axes as Optimum's
``question-answering`` / ``text-classification`` tasks. :data:`kdtool.export.onnx_export.CUSTOM_EXPORTERS`
names this function for the ``kdtool-bilstm`` model type; the export pipeline does the rest
(parity with PyTorch, precision, bundle) exactly as for any other student.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from kdtool.data.features import MODEL_INPUTS

OUTPUTS = {"question-answering": ("start_logits", "end_logits"), "text-classification": ("logits",)}
INPUTS = MODEL_INPUTS[:2]  # a BiLSTM takes no token types


class _Wrapper(torch.nn.Module):
    def __init__(self, model, outputs):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return tuple(getattr(out, name) for name in self.outputs)


def export_bilstm_onnx(model_dir: Path, out_dir: Path, *, task: str, opset: int, **_) -> Path:
    """Write ``out_dir/model.onnx`` for the BiLSTM directory ``model_dir``; return its path."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    import kdtool.students  # noqa: F401 - registers the model type

    auto = AutoModelForQuestionAnswering if task == "question-answering" else AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir).eval()
    outputs = OUTPUTS[task]
    seq_axes = {0: "batch_size", 1: "sequence_length"}
    dynamic = {name: seq_axes for name in INPUTS}
    dynamic.update({name: (seq_axes if task == "question-answering" else {0: "batch_size"}) for name in outputs})
    example = (torch.randint(5, model.config.vocab_size, (2, 16)), torch.ones(2, 16, dtype=torch.long))
    example[1][1, 11:] = 0  # a padded row, so the traced graph is the general one
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Wrapper(model, outputs), example, str(path), dynamo=False, opset_version=opset,
                          input_names=list(INPUTS), output_names=list(outputs), dynamic_axes=dynamic)
    return path
