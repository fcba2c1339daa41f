#!/usr/bin/env python
"""Training-step cost of quantization-aware training against plain distillation, interleaved. Prints JSON.

Two copies of one student take the same prediction-stage step (KL to cached teacher logits + hard loss,
backward, AdamW) on the same real windows: one plain FP32, one fake-quantized by kdtool.models.qat
(INT8 Linear inputs and weights, QK^T/PV inputs). Steps alternate between the two so machine noise
hits both alike; medians reported.

    python bench/qat_step.py --student bench/out/qat_real/student-fp32 --data bench/out/kd_real/train.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from harness import emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True, help="a QA model directory (the FP32 student)")
    ap.add_argument("--data", required=True, help="SQuAD JSON whose windows are trained on")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=192)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from kdtool.data import FeatureConfig, load_squad, tokenize_examples
    from kdtool.losses import prediction_loss
    from kdtool.models import load_qa_model, load_tokenizer
    from kdtool.models.qat import calibration_batches, quantize_model

    tok = load_tokenizer(args.student)
    windows = FeatureConfig(args.seq, args.seq // 3, min(48, args.seq // 4))
    feats = tokenize_examples(load_squad(Path(args.data)).examples[:400], tok, windows)
    batches = []
    for i in range(args.steps + 1):
        idx = list(range(i * args.batch, (i + 1) * args.batch))
        b = feats.batch(idx, length=args.seq)
        batches.append({k: torch.from_numpy(v) for k, v in b.items()})
    inputs = [{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b} for b in batches]
    teacher = load_qa_model(args.student).eval()
    with torch.no_grad():
        targets = [(o.start_logits, o.end_logits) for o in (teacher(**x) for x in inputs)]
    plain = load_qa_model(args.student).train()
    qat = load_qa_model(args.student).eval()
    info = quantize_model(qat, calibration_batches(feats, 64, 32))
    qat.train()
    models = {"plain_distill": plain, "qat_distill": qat}
    optims = {n: torch.optim.AdamW(m.parameters(), lr=1e-5) for n, m in models.items()}
    times = {n: [] for n in models}
    for step in range(args.steps + 1):  # step 0 warms up
        for name, model in models.items():
            b, (ts, te) = batches[step], targets[step]
            t = time.perf_counter()
            out = model(**inputs[step])
            mask = b["attention_mask"].bool()
            loss = prediction_loss((out.start_logits, out.end_logits), (ts, te), mask, kind="kl")
            loss.backward()
            optims[name].step()
            optims[name].zero_grad(set_to_none=True)
            if step:
                times[name].append((time.perf_counter() - t) * 1000)
    med = {n: float(np.median(t)) for n, t in times.items()}
    result = {"benchmark": "qat_step", "student": args.student, "batch": args.batch, "seq": args.seq,
              "steps": args.steps, "threads": args.threads, "interleaved": True, "qat": info,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "loadavg_after": os.getloadavg()},
              "median_ms": {n: round(v, 1) for n, v in med.items()},
              "qat_over_plain": round(med["qat_distill"] / med["plain_distill"], 2)}
    emit(result, args.out)


if __name__ == "__main__":
    main()
