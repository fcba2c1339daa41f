"""Latency of the paper-shape teacher and student through every kdtool export path, in one run.

Teacher: RoBERTa-large shape (24 x 1024, 16 heads, FFN 4096, vocab 50262), random weights.
Student: 6 x 512, 16 heads, FFN 3072, vocab 50262, random weights. Batch 1, sequence 384.
Variants run interleaved (round-robin) so machine noise hits all of them alike (the spinning-threads
ablation runs alone afterwards: spinning threads would slow the next variant); medians reported,
speed-ups against the teacher. The INT8 bundles are made by kdtool.export.export_model exactly as
`kdtool export` makes them; ablations show what matters for INT8 speed on this CPU.

    python bench/latency.py --threads 2 --rounds 15 --out bench/results/latency.json

Prints JSON. Never asserts timings (the machine is shared; read the ratios, not the absolutes).
With --threads 1 every variant runs in the calling thread, so ``cpu_ms`` (process CPU time) is
the cost of a query with other processes' load taken out: the most stable ratio on a shared box.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import SQUAD_ES, emit, make_tokenizer, paper_models, time_engines


class RawOrt:
    """A bare ONNX Runtime session over one .onnx file: for the ablation that kdtool does not export."""

    kind = "onnxruntime"

    def __init__(self, path: Path, threads: int, int8_activations: bool = False):
        import onnxruntime as ort

        from kdtool.engines.ort import session_options  # as kdtool's engine, exact INT8 included

        opts = session_options(threads=threads, int8_activations=int8_activations)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.path = path

    def run(self, batch):
        return self.session.run(None, {n: batch[n] for n in self.names})

    def num_parameters(self) -> int:
        import onnx

        return int(sum(np.prod(i.dims) for i in onnx.load(str(self.path)).graph.initializer))


def qoperator_model(fp32_bundle: Path, dst: Path, seq: int) -> Path:
    """ORT's other static INT8 form (QLinearMatMul, QOperator) of the fused FP32 bundle's graph.

    kdtool exports static INT8 as QDQ only; this answers whether the operator form would be
    faster. Calibrated on random token windows: it is timed, never scored.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    shaped = dst.with_name("shaped.onnx")
    model = SymbolicShapeInference.infer_shapes(onnx.load(str(fp32_bundle / "model.onnx")), auto_merge=True)
    onnx.save(model, str(shaped))
    names = {i.name for i in model.graph.input}
    rng = np.random.default_rng(0)
    windows = iter([{"input_ids": rng.integers(5, 50000, (1, seq)).astype(np.int64),
                     "attention_mask": np.ones((1, seq), dtype=np.int64)} for _ in range(8)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            window = next(windows, None)
            return None if window is None else {k: v for k, v in window.items() if k in names}

    quantize_static(str(shaped), str(dst), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    shaped.unlink()
    return dst


def variants(work: Path, student: Path, teacher: Path, calib: Path | None, threads: int) -> dict:
    """name -> (engine, how it was made)."""
    from kdtool.engines import load_engine
    from kdtool.engines.pytorch import TorchQAEngine
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model

    def bundle(name, **options):
        if (work / name / "manifest.json").is_file():  # --workdir reuse: the bundle is verified on load
            return work / name
        t = time.perf_counter()
        path = export_model(ExportConfig(student, work / name, max_seq_length=384, calibration_data=calib,
                                         calibration_samples=32, parity_samples=4, **options))
        print(f"exported {name} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        return path

    made = {
        "student_onnx_fp32_fused": (bundle("fp32", precision="fp32"), threads, "kdtool export --precision fp32"),
        "student_int8_dynamic": (bundle("int8-pc", precision="int8"), threads,
                                 "kdtool export --precision int8 (fused graph: QAttention + int8 MatMuls, per-channel)"),
        "ablation_int8_dynamic_unfused": (bundle("int8-nofuse-pc", precision="int8", fuse=False), threads,
                                          "kdtool export --precision int8 --no-fuse (plain ORT dynamic INT8)"),
        "ablation_int8_dynamic_per_tensor": (bundle("int8-pt", precision="int8", per_channel=False), threads,
                                             "kdtool export --precision int8 --per-tensor"),
        "student_int8_fast_gelu": (bundle("int8-fast-gelu-pc", precision="int8", fast_gelu=True), threads,
                                   "kdtool export --precision int8 --fast-gelu (QAttention + FastGelu)"),
    }
    if calib:
        made["student_int8_static"] = (bundle("int8-static", precision="int8-static"), threads,
                                       "kdtool export --precision int8-static --calibration-data squad-es (QDQ)")
    if threads > 1:
        made["ablation_int8_dynamic_1_thread"] = (made["student_int8_dynamic"][0], 1, "as student_int8_dynamic, 1 thread")
    made["ablation_int8_dynamic_spinning"] = (made["student_int8_dynamic"][0], threads,
                                              "as student_int8_dynamic, ORT worker threads spinning (ORT default)")
    out = {"teacher_pytorch_fp32": (TorchQAEngine(teacher, device="cpu", threads=threads), "HF eager, fp32"),
           "student_pytorch_fp32": (TorchQAEngine(student, device="cpu", threads=threads), "HF eager, fp32")}
    for name, (path, n, how) in made.items():
        out[name] = (load_engine(path, device="cpu", threads=n, spinning="spinning" in name), how)
    out["ablation_int8_static_qoperator"] = (
        RawOrt(qoperator_model(made["student_onnx_fp32_fused"][0], work / "int8-static-qoperator" / "model.onnx", 384),
               threads),
        "ORT quantize_static, QOperator form (QLinearMatMul), of the fused FP32 bundle; random-token calibration")
    return out


def qat_variants(work: Path, student: Path, teacher: Path, calib: Path | None, threads: int) -> dict:
    """``--set qat``: the QAT-INT8 graph (int8 attention core) against dynamic INT8 and the teacher.

    The student is fake-quantized (kdtool.models.qat) and max-calibrated on real windows (random-token
    windows without --calibration-data); QAT's training changes the scales' values, not the graph or its
    speed. ``student_int8_qat`` runs as kdtool's engine does (ORT rewrites the s8 activations to u8 on
    x86, exactly); ``ablation_int8_qat_s8`` keeps s8 x s8 (``session.qdqisint8allowed=1``).
    """
    import torch

    from kdtool.engines import load_engine
    from kdtool.engines.pytorch import TorchQAEngine
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.export.samples import sample_windows
    from kdtool.models import load_qa_model, load_tokenizer
    from kdtool.models.qat import quantize_model

    def bundle(name, model, **options):
        if not (work / name / "manifest.json").is_file():
            t = time.perf_counter()
            export_model(ExportConfig(model, work / name, max_seq_length=384, calibration_data=calib,
                                      calibration_samples=32, parity_samples=4, **options))
            print(f"exported {name} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        return work / name

    quantized = work / "student-qat-calibrated"
    if not (quantized / "modelopt_state.pth").is_file():
        tokenizer = load_tokenizer(student)
        windows = sample_windows(tokenizer, calib, 32, 384, batch_size=8)
        model = load_qa_model(student).eval()
        quantize_model(model, [{k: torch.from_numpy(v) for k, v in b.items() if k != "token_type_ids"} for b in windows])
        model.save_pretrained(quantized)
        tokenizer.save_pretrained(quantized)
    dynamic = bundle("int8-pc", student, precision="int8")
    qat = bundle("int8-qat", quantized, precision="int8-qat")
    return {"teacher_pytorch_fp32": (TorchQAEngine(teacher, device="cpu", threads=threads), "HF eager, fp32"),
            "student_int8_dynamic": (load_engine(dynamic, device="cpu", threads=threads),
                                     "kdtool export --precision int8 (fused graph: QAttention + int8 MatMuls, per-channel)"),
            "student_int8_qat": (load_engine(qat, device="cpu", threads=threads),
                                 "kdtool export --precision int8-qat (QDQ, int8 Linear inputs and QK^T/PV; ORT u8 x s8)"),
            "ablation_int8_qat_s8": (RawOrt(qat / "model.onnx", threads, int8_activations=True),
                                     "the int8-qat graph with s8 x s8 activations (session.qdqisint8allowed=1)")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--calibration-data", type=Path, default=SQUAD_ES if SQUAD_ES.is_file() else None)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep models and bundles here (default: a temp dir).")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    ap.add_argument("--set", dest="variant_set", choices=("export", "qat"), default="export",
                    help="export: every export path and ablation; qat: the QAT-INT8 graph vs dynamic INT8 and the teacher")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="kdtool-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tok = make_tokenizer()
        teacher, student = paper_models(work, tok)
        make = qat_variants if args.variant_set == "qat" else variants
        engines = make(work / "bundles", student, teacher, args.calibration_data, args.threads)
        for engine, _ in engines.values():
            engine._threads = args.threads
        rng = np.random.default_rng(0)
        batch = {"input_ids": rng.integers(5, 50000, (1, args.seq)).astype(np.int64),
                 "attention_mask": np.ones((1, args.seq), dtype=np.int64)}
        batch["input_ids"][0, 0], batch["input_ids"][0, -1] = tok.cls_token_id, tok.sep_token_id
        t0 = time.time()
        times, cpu = time_engines(engines, batch, args.rounds)
        teacher_ms = float(np.median(times["teacher_pytorch_fp32"]))
        teacher_cpu = float(np.median(cpu["teacher_pytorch_fp32"]))
        result = {
            "benchmark": "latency", "set": args.variant_set, "batch": 1, "seq": args.seq, "threads": args.threads,
            "rounds": args.rounds,
            "interleaved": True, "seconds": round(time.time() - t0, 1),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "loadavg_after": os.getloadavg()},
            "variants": {name: {"median_ms": round(float(np.median(t)), 1), "p10_ms": round(float(np.percentile(t, 10)), 1),
                                "p90_ms": round(float(np.percentile(t, 90)), 1),
                                "speedup_vs_teacher": round(teacher_ms / float(np.median(t)), 1),
                                # CPU time of this process: what a query costs when descheduling is
                                # excluded; the fair ratio on a shared machine when threads == 1
                                "cpu_ms": round(float(np.median(cpu[name])), 1),
                                "cpu_speedup_vs_teacher": round(teacher_cpu / float(np.median(cpu[name])), 1),
                                "parameters": engines[name][0].num_parameters(), "how": engines[name][1]}
                         for name, t in times.items()},
        }
    emit(result, args.out)


if __name__ == "__main__":
    main()
