#!/usr/bin/env python
"""F1/EM of every INT8 export of a real-data student against its FP32 self, on real Spanish data. Prints JSON.

The student is bench/kd_real.py's distilled MiniLM student (trained on the SQuAD-es v1.1 pool's train split);
the questions are that benchmark's dev split (articles the student never saw). Each variant is made with
``kdtool export`` exactly as a user would, and all are scored in one ``kdtool validate`` run with the FP32
PyTorch student as the reference and the Spanish (MLQA) answer rules:

    python bench/int8_accuracy.py                      # after python bench/kd_real.py

Variants: ONNX FP32 (fused); INT8 dynamic with per-channel weights (the default; fused: QAttention), with
FastGelu, unfused, with 7-bit weights (--reduce-range); INT8 dynamic per-tensor, fused and unfused;
INT8 static QDQ (per-channel weights, minmax, percentile or entropy calibration on 128 train windows); with
--qat-student, the symmetric QDQ graph of quantization-aware training (kdtool.models.qat: INT8 Linear inputs
and QK^T/PV) untrained (max calibration only) and after `kdtool finetune STUDENT --qat`. The figure
that matters is each variant's F1 drop against the FP32 student (the export issue's budget: 1 point).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import sh

VARIANTS = {
    "onnx-fp32": ["--precision", "fp32"],
    "int8": ["--precision", "int8"],  # per-channel weights (the default)
    "int8-fast-gelu": ["--precision", "int8", "--fast-gelu"],
    "int8-nofuse": ["--precision", "int8", "--no-fuse"],
    "int8-reduce-range": ["--precision", "int8", "--reduce-range"],  # 7-bit weights, for CPUs without VNNI
    "int8-per-tensor": ["--precision", "int8", "--per-tensor"],
    "int8-per-tensor-nofuse": ["--precision", "int8", "--per-tensor", "--no-fuse"],
    "int8-static": ["--precision", "int8-static", "--calibration-method", "minmax", "--calibration-samples", "128"],
    "int8-static-percentile": ["--precision", "int8-static", "--calibration-method", "percentile",
                               "--calibration-samples", "128"],
    "int8-static-entropy": ["--precision", "int8-static", "--calibration-method", "entropy",
                            "--calibration-samples", "128"],
}
# made from a fake-quantized copy of the student (kdtool.models.qat), exported with --precision int8-qat:
# the same symmetric QDQ graph (INT8 Linear inputs and QK^T/PV) with max-calibrated scales and no training
# (int8-qat-untrained: static PTQ in TensorRT's form), and after `kdtool finetune STUDENT --qat` (int8-qat)
QAT_VARIANTS = {"int8-qat-untrained": ["--precision", "int8-qat"], "int8-qat": ["--precision", "int8-qat"]}


def calibrated_copy(student: Path, train: Path, out: Path, windows: int, max_length: int, doc_stride: int) -> Path:
    """The student fake-quantized and max-calibrated on its first ``windows`` training windows, untrained."""
    from kdtool.data import FeatureConfig, load_squad, tokenize_examples
    from kdtool.models import load_qa_model, load_tokenizer
    from kdtool.models.qat import calibration_batches, quantize_model

    if (out / "modelopt_state.pth").is_file():
        return out
    tokenizer = load_tokenizer(student)
    feats = tokenize_examples(load_squad(train).examples, tokenizer, FeatureConfig(max_length, doc_stride, 48))
    model = load_qa_model(student).eval()
    quantize_model(model, calibration_batches(feats, windows, 32))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="bench/out/kd_real/student-kd")
    ap.add_argument("--data", default="bench/out/kd_real", help="directory with train.json and dev.json")
    ap.add_argument("--out", default="bench/out/int8_accuracy")
    ap.add_argument("--results", default="bench/results/int8_accuracy.json")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N dev questions (default: all)")
    ap.add_argument("--max-length", type=int, default=256, help="the student's training window")
    ap.add_argument("--doc-stride", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--qat-student", default=None,
                    help="the student after `kdtool finetune STUDENT --qat` (adds int8-qat and int8-qat-untrained)")
    ap.add_argument("--only", default=None, help="comma-separated variant names to run (default: all)")
    args = ap.parse_args()

    student, data, out = Path(args.student), Path(args.data), Path(args.out)
    if not (student / "config.json").exists():
        sys.exit(f"no student at {student}: run python bench/kd_real.py first (or pass --student DIR)")
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    variants = dict(VARIANTS)
    sources = {name: student for name in VARIANTS}
    if args.qat_student:
        variants.update(QAT_VARIANTS)
        sources["int8-qat"] = Path(args.qat_student)
        sources["int8-qat-untrained"] = calibrated_copy(student, data / "train.json", out / "qat-untrained-model", 128,
                                                        args.max_length, args.doc_stride)
    if args.only:
        variants = {n: variants[n] for n in args.only.split(",")}
    for name, flags in variants.items():
        bundle = out / name
        if not bundle.exists():
            seconds[name] = sh(["kdtool", "export", str(sources[name]), "-o", str(bundle), "--max-seq-length",
                                str(args.max_length), "--calibration-data", str(data / "train.json")] + flags)
    scores = out / "validate.json"
    limit = ["--limit", str(args.limit)] if args.limit else []
    seconds["validate"] = sh(["kdtool", "validate", str(student)] + [str(out / n) for n in variants] + [
        "--data", str(data / "dev.json"), "--lang", "es", "--max-length", str(args.max_length), "--doc-stride",
        str(args.doc_stride), "--threads", str(args.threads), "--json", str(scores)] + limit)
    validated = json.loads(scores.read_text())
    rows = {}
    for i, m in enumerate(validated["models"]):
        name = "pytorch-fp32" if i == 0 else list(variants)[i - 1]
        manifest = {} if i == 0 else json.loads((out / name / "manifest.json").read_text())
        rows[name] = {k: round(m[k], 2) for k in ("f1", "exact_match", "f1_drop", "em_drop", "agreement")}
        rows[name]["how"] = "reference" if i == 0 else " ".join(["kdtool export", str(sources[name])] + variants[name])
        if manifest:
            rows[name]["max_abs_logit_diff_vs_pytorch"] = manifest["parity"]["bundle"].get("max_abs_logit_diff")
            rows[name]["model_bytes"] = manifest["files"][manifest["model"]]["bytes"]
    import os
    import platform

    result = {"student": str(student), "qat_student": args.qat_student, "dev": str(data / "dev.json"),
              "data": validated["data"], "machine": {"cpu": platform.processor() or platform.machine(),
                                                     "loadavg_after": os.getloadavg()},
              "max_length": args.max_length, "doc_stride": args.doc_stride, "variants": rows,
              "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    text = json.dumps(result, indent=2)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
