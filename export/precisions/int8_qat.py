"""``int8-qat``: the fake-quantized model of quantization-aware training, exported as it was trained (kdtool.export.qat).

Its plain graph is already the INT8 Q/DQ graph (symmetric, the model's own scales), so it is neither fused
(ORT's fusions do not match QDQ graphs) nor requantized, it is checked against the fake-quantized PyTorch
model, and it is its own TensorRT-ready graph.
"""

from __future__ import annotations

import shutil

from kdtool.errors import InputError
from kdtool.export.onnx_io import copy_onnx
from kdtool.export.precisions.base import PrecisionExport
from kdtool.export.qat import export_qat_onnx, ort_integer_kernels, qdq_summary


class Int8Qat(PrecisionExport):
    exporter_name = "QAT QDQ"
    reference_name = "pytorch fake-quantized (QAT)"

    def check(self, config):
        from kdtool.models.qat import is_qat_dir  # defers torch to the QAT export

        if not is_qat_dir(config.model_dir):
            raise InputError(f"--precision int8-qat exports a quantization-aware-trained model, and {config.model_dir} "
                             "has no modelopt_state.pth; train it with kdtool distill/finetune --qat, or use "
                             "--precision int8")
        if config.reduce_range:
            raise InputError("--reduce-range requantizes weights; an int8-qat graph keeps the scales it was trained with: "
                             "drop it")
        if config.fast_gelu:
            raise InputError("--fast-gelu rewrites the fused FP32 graph; an int8-qat graph is not fused: drop --fast-gelu")
        super().check(config)

    def fuse(self, config, custom):
        return False

    def plain_graph(self, model, config, work, checks, task):
        return export_qat_onnx(model, work / "plain" / "model.onnx", checks[0], opset=config.opset, outputs=task.outputs)

    def plain_tolerance(self, config):
        return config.qat_parity_tolerance

    def bundle_graph(self, graph, final, config, calibration, *, fused):
        copy_onnx(graph, final)
        return {"mode": "qat", "format": "QDQ", "weights": "int8 per-channel, symmetric", "activations":
                "int8 per-tensor, symmetric (ORT on x86 runs them as u8, exactly)",
                "scales": "the --qat model's (max-calibrated, fixed while its weights trained)",
                **qdq_summary(final), "ort_cpu": ort_integer_kernels(final)}

    def trt_graph(self, plain, dst, config, calibration):
        shutil.copyfile(plain, dst)  # already explicit, symmetric Q/DQ with the QAT model's scales
        return {"precision": self.row.trt_precision,
                "form": "symmetric INT8 Q/DQ from quantization-aware training (its own scales)"}
