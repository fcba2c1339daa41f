"""What an export produces, as one frozen dataclass the CLI fills and the pipeline reads; each field's default,
help and option are declared here (:mod:`kdtool.fields`) and ``kdtool export`` is generated from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.bundle.precision import PRECISIONS as PRECISION_TABLE
from kdtool.data.features import MAX_LENGTH
from kdtool.engines.settings import trust_remote_code_setting
from kdtool.errors import InputError
from kdtool.fields import setting

PRECISIONS = tuple(PRECISION_TABLE)  # --precision choices: the rows of the precision table
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class ExportConfig:
    model_dir: Path = setting(argument=True)
    output: Path = setting(option=("-o", "--output"), type="path", help="Bundle directory to write.")
    precision: str | None = setting(None, choices=PRECISIONS, help="Graph precision.",
                                    default_help="the profile's, else fp32")
    calibration_data: Path | None = setting(  # SQuAD JSON; real features for INT8 static / TRT INT8 and parity
        None, type="path", help="SQuAD JSON whose windows calibrate INT8 static / TensorRT INT8 and feed the parity check.")
    calibration_method: str = setting("minmax", choices=CALIBRATION_METHODS,
                                      help="How activation ranges are chosen from the calibration windows.")
    calibration_samples: int = setting(128, type="count", help="Windows fed to the calibrator.")
    fuse: bool = setting(True, off="--no-fuse", help="Skip ORT transformer fusion (Attention, SkipLayerNorm, BiasGelu).")
    opset: int = setting(18, type=(11, 23), help="ONNX opset.")
    max_seq_length: int | None = setting(  # None: the profile's longest sequence, else MAX_LENGTH (fit_window)
        None, type="tokens", help="Longest window the bundle answers with.",
        default_help=f"the profile's, else {MAX_LENGTH}, or the model's positions when it accepts fewer")
    profile: str | None = setting(None, help="Device profile name (kdtool profiles lists them).")
    trt: bool = setting(False, help="Also write a TensorRT-ready ONNX and build the engine where possible.")
    # per-channel INT8 weight scales: on the real-data student (bench/int8_accuracy.py) per-tensor INT8 lost
    # 1.34 F1 and per-channel 0.59, at no measurable cost in CPU latency (bench/latency.py)
    per_channel: bool = setting(True, option="--per-channel", off="--per-tensor",
                                help="INT8 weight scales per output channel (more accurate, as fast on CPU) or one per "
                                     "tensor.")
    # 7-bit INT8 weights: on x86 without VNNI (AVX2, AVX-512 without VNNI) ORT multiplies u8 activations by
    # s8 weights with vpmaddubsw, whose int16 pair sums overflow (255 * 127 * 2 > 32767) and saturate;
    # with weights in [-64, 64] they cannot. VNNI (dpbusd) accumulates in int32 and has no such overflow.
    reduce_range: bool = setting(False, help="7-bit INT8 weights, for x86 CPUs without VNNI (AVX2): avoids their "
                                             "saturating u8 x s8 products.")
    fast_gelu: bool = setting(False, help="Fuse GELU as ORT FastGelu (tanh approximation): a few percent faster on "
                                          "CPU, logits change slightly.")
    parity_samples: int = setting(16, recipe_only=True)  # feature windows for the PyTorch-vs-ONNX logit check
    # the FP32 graph must match PyTorch this closely, or the export fails
    parity_tolerance: float = setting(1e-3, recipe_only=True)
    # int8-qat: the QDQ graph against the fake-quantized PyTorch model. Both compute the same INT8 grid (the
    # exported scales are amax/127 exactly), but float noise upstream (ORT's and PyTorch's MatMul/LayerNorm
    # differ by ~5e-6 with the quantizers off) moves values across rounding boundaries, and a per-tensor
    # activation level is large (0.056 for an amax of 7). Measured: 1e-7 on tiny random models; on the 2-layer
    # MiniLM student of real Spanish data 0.26 calibrated and 0.67 after QAT, with identical argmax, against
    # a quantization error (fake-quant vs FP32) of 0.9. The gate catches a broken export, not that noise.
    qat_parity_tolerance: float = setting(1.0, recipe_only=True)
    overwrite: bool = setting(False, help="Replace an existing bundle directory (only one kdtool wrote).")
    trust_remote_code: bool = trust_remote_code_setting("MODEL_DIR")

    def __post_init__(self):
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "output", Path(self.output))
        if self.calibration_data is not None:
            object.__setattr__(self, "calibration_data", Path(self.calibration_data))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration method {self.calibration_method!r}; "
                             f"choose one of {', '.join(CALIBRATION_METHODS)}")
        if self.calibration_samples < 1:
            raise InputError("--calibration-samples must be at least 1")
        if self.parity_samples < 1:
            raise InputError("parity_samples (export config) must be at least 1")
        if not 11 <= self.opset <= 23:
            raise InputError(f"opset {self.opset} is outside what the exporter supports (11..23)")
        if self.max_seq_length is not None and self.max_seq_length < 32:
            raise InputError(f"--max-seq-length must be at least 32, got {self.max_seq_length}")
        if self.fast_gelu and not self.fuse:
            raise InputError("--fast-gelu rewrites the fused graph; drop --no-fuse or --fast-gelu")
        if self.output.resolve() == self.model_dir.resolve():
            raise InputError("the bundle directory must differ from the model directory; choose another -o")
