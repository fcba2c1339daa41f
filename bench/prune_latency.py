"""Paper-shape latency after pruning: the tinyroberta-es student pruned to FLOP budgets, INT8, against the teacher.

Teacher: RoBERTa-large shape, random weights (bench/latency.py's builder). Student: tinyroberta-es shape
(6 x 512, 16 heads, FFN 3072). ``kdtool prune`` (library call, no recovery: the weights are random, only
the shape matters for speed) prunes the student to each ``--flops`` share at seq 384, with importance
scored on real SQuAD-es windows; every model is exported with ``kdtool.export.export_model`` exactly as
``kdtool export --precision int8`` does. Teacher (PyTorch FP32), dense student INT8 and each pruned
student INT8 then run interleaved (round-robin) in one process at batch 1, seq 384; medians and
speed-ups against the teacher from that one run.

    flock /tmp/kdtool-bench.lock python bench/prune_latency.py --flops 50,35 --out bench/results/prune_latency.json

Prints JSON; never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import SQUAD_ES, emit, make_tokenizer, paper_models, time_engines


def small_squad(src: Path, dst: Path, questions: int) -> Path:
    """The first ``questions`` questions of ``src`` (the importance windows), as a SQuAD file."""
    data, n = [], 0
    for art in json.loads(src.read_text(encoding="utf-8"))["data"]:
        paras = []
        for p in art["paragraphs"]:
            qas = [q for q in p["qas"] if q["answers"] and q["answers"][0]["text"]][: max(0, questions - n)]
            n += len(qas)
            if qas:
                paras.append({"context": p["context"], "qas": qas})
        if paras:
            data.append({"title": art["title"], "paragraphs": paras})
        if n >= questions:
            break
    dst.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--flops", default="50,35", help="FLOP shares (percent) to prune the student to.")
    ap.add_argument("--prune", default="heads,ffn,layers", help="Structures (kdtool prune --prune).")
    ap.add_argument("--data", type=Path, default=SQUAD_ES, help="SQuAD file whose windows score importance.")
    ap.add_argument("--importance-examples", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep models and bundles here (default: a temp dir).")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from kdtool.engines import load_engine
    from kdtool.engines.pytorch import TorchQAEngine
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.prune import PruneConfig, prune

    with tempfile.TemporaryDirectory(prefix="kdtool-bench-prune-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tok = make_tokenizer()
        teacher, student = paper_models(work, tok)
        data = small_squad(args.data, work / "importance.json", args.importance_examples)
        models, reports = {"student_int8_dense": student}, {}
        for share in [s.strip() for s in args.flops.split(",") if s.strip()]:
            out = work / f"pruned-{share}"
            if not (out / "prune_report.json").is_file():
                t = time.perf_counter()
                prune(PruneConfig(model=str(student), output=str(out), train_file=str(data), target_flops=f"{share}%",
                                  seq_len=args.seq, structures=args.prune, importance_examples=args.importance_examples,
                                  recover=False, overwrite=True,
                                  recovery={"max_length": args.seq, "doc_stride": 128}))
                print(f"pruned to {share}% FLOPs in {time.perf_counter() - t:.0f}s", file=sys.stderr)
            rep = json.loads((out / "prune_report.json").read_text())
            reports[share] = {"flops_kept": rep["flops_kept"], "parameters_kept": rep["parameters_kept"],
                              "after": rep["after"], "removed": rep["steps"][0]["removed"]}
            models[f"student_int8_pruned_{share}pct_flops"] = out
        engines = {"teacher_pytorch_fp32": (TorchQAEngine(teacher, device="cpu", threads=args.threads), "HF eager, fp32")}
        for name, path in models.items():
            bundle = work / "bundles" / name
            if not (bundle / "manifest.json").is_file():
                export_model(ExportConfig(path, bundle, precision="int8", max_seq_length=args.seq, parity_samples=4,
                                          overwrite=True))
            manifest = json.loads((bundle / "manifest.json").read_text())
            engines[name] = (load_engine(bundle, device="cpu", threads=args.threads),
                             f"kdtool export --precision int8; fused ops {manifest['fusion']}")
        for engine, _ in engines.values():
            engine._threads = args.threads
        rng = np.random.default_rng(0)
        batch = {"input_ids": rng.integers(5, 50000, (1, args.seq)).astype(np.int64),
                 "attention_mask": np.ones((1, args.seq), dtype=np.int64)}
        load_before = os.getloadavg()
        t0 = time.time()
        times, cpu = time_engines(engines, batch, args.rounds)
        teacher_ms = float(np.median(times["teacher_pytorch_fp32"]))
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
        result = {
            "benchmark": "prune_latency", "batch": 1, "seq": args.seq, "threads": args.threads, "rounds": args.rounds,
            "interleaved": True, "seconds": round(time.time() - t0, 1), "structures": args.prune,
            "machine": {"cpu": next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                                     if ln.startswith("model name")), ""),
                        "avx512_vnni": "avx512_vnni" in cpuinfo, "avx512_bf16": "avx512_bf16" in cpuinfo,
                        "cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "pruned": reports,
            "variants": {name: {"median_ms": round(float(np.median(t)), 2), "p10_ms": round(float(np.percentile(t, 10)), 2),
                                "p90_ms": round(float(np.percentile(t, 90)), 2),
                                "speedup_vs_teacher": round(teacher_ms / float(np.median(t)), 1),
                                "cpu_ms": round(float(np.median(cpu[name])), 2),
                                "parameters": engines[name][0].num_parameters(), "how": engines[name][1]}
                         for name, t in times.items()},
        }
    emit(result, args.out)


if __name__ == "__main__":
    main()
