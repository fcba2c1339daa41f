#!/usr/bin/env python
"""One distillation step at the paper's shapes: the seed paper's approach vs kdtool's default. Prints JSON.

Teacher RoBERTa-large (24 layers, 1024 wide, 16 heads, FFN 4096, vocab 50262), student SpanishTinyRoBERTa
(6 x 512, 16 heads, FFN 3072), random weights (no download), sequence 384, batch 8 on CPU (32 on a GPU).
Both variants compute the joint TinyBERT objective (attention + hidden + embedding + prediction) and
take an AdamW step:

  seed    eager attention, ``output_attentions=True`` on both models, MSE on every returned probability map
  kdtool  SDPA attention on both models, attention loss in closed form from recomputed Q/K (no maps)

Each variant runs in its own process, so peak RSS (CPU) / peak allocated memory (GPU) is its own.
The kdtool process also times the prediction stage with the teacher run every step vs with cached
teacher logits, which gives the per-epoch speed-up of the cache.

On a GPU the ratio that matters is ``peak_gpu_allocated_ratio_kdtool_over_seed``
(``torch.cuda.max_memory_allocated`` over the timed steps; target: kdtool <= 0.5x the seed's).
``--tiny`` swaps in 4 x 64 / 2 x 32 models with a 1000-token vocabulary: a dry run of this code
path in seconds on a CPU (bench/gpu/check.sh --cpu-dry-run), not a measurement.

    python bench/distill_step.py [--batch 8] [--seq 384] [--steps 2] [--out distill.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from harness import PAPER, TINY, paper_configs


def run_variant(variant: str, batch: int, seq: int, steps: int, tiny: bool = False) -> dict:
    import torch
    from transformers import AutoModelForQuestionAnswering

    from kdtool.distill import DistillConfig
    from kdtool.distill.mapping import default_layer_map
    from kdtool.distill.objective import Objective, teacher_targets
    from kdtool.losses import hidden_mse, prediction_loss

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    attn = "eager" if variant == "seed" else "sdpa"
    teacher_cfg, student_cfg = paper_configs(tiny)
    teacher = AutoModelForQuestionAnswering.from_config(teacher_cfg, attn_implementation=attn).to(device).eval()
    student = AutoModelForQuestionAnswering.from_config(student_cfg, attn_implementation=attn).to(device).train()
    lmap = default_layer_map(student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers)
    cfg = DistillConfig(model="teacher", train_file="-", output="-", schedule="joint")
    objective = Objective(student, config=cfg, layer_map=lmap, teacher_hidden=teacher_cfg.hidden_size).to(device)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, teacher_cfg.vocab_size, (batch, seq), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(batch, seq, dtype=torch.long)
    shortest = (seq * 200) // 384
    for row in range(batch):  # realistic padding: windows of 200..384 tokens (at seq 384)
        mask[row, shortest + ((seq - shortest) * row) // max(1, batch - 1):] = 0
    ids = ids.masked_fill(mask == 0, 1)
    data = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "start_positions": torch.full((batch,), 5, device=device), "end_positions": torch.full((batch,), 9, device=device)}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def seed_step():
        with torch.no_grad(), amp:
            t = teacher(input_ids=data["input_ids"], attention_mask=data["attention_mask"], output_attentions=True,
                        output_hidden_states=True)
        with amp:
            s = student(input_ids=data["input_ids"], attention_mask=data["attention_mask"], output_attentions=True,
                        output_hidden_states=True)
            att = sum(torch.nn.functional.mse_loss(s.attentions[k - 1], t.attentions[j - 1]) for k, j in lmap.items() if k)
            hid = sum(hidden_mse(objective.project(k, s.hidden_states[k]), t.hidden_states[j], data["attention_mask"])
                      for k, j in lmap.items())
            pred = prediction_loss((s.start_logits, s.end_logits), (t.start_logits, t.end_logits), data["attention_mask"])
            loss = att + hid + pred
        loss.backward()

    def kdtool_step(stage="joint", cached=None):
        with amp:
            targets = cached if cached is not None else teacher_targets(teacher, data, stage, lmap, attention=True)
            loss = objective(data, stage, targets)["loss"]
        loss.backward()

    def timed(fn, n):
        times = []
        for _ in range(n):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    step = seed_step if variant == "seed" else kdtool_step
    timed(step, 1)  # warm-up (allocations, Adam state)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = timed(step, steps)
    out = {"variant": variant, "attention": attn,
           "attention_loss": cfg.attention_loss if variant == "kdtool" else "probs-maps-mse",
           "step_seconds": min(times), "step_seconds_all": times,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cuda:
        out["peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if variant == "kdtool":  # prediction stage: teacher every step vs cached logits
        with torch.no_grad(), amp:  # what the trainer's logits cache hands the prediction stage
            cached = teacher_targets(teacher, data, "prediction", lmap, attention=False)
        cached["outputs"] = tuple(t.float() for t in cached["outputs"])
        live = timed(lambda: kdtool_step("prediction"), steps)
        cache = timed(lambda: kdtool_step("prediction", cached), steps)
        out["prediction_step_seconds"] = {"teacher_every_step": min(live), "cached_logits": min(cache)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 32 on a GPU")
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="tiny models: a dry run of the code path, not a measurement")
    ap.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    ap.add_argument("--variant", choices=["seed", "kdtool"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    batch = args.batch or (32 if cuda else 8)
    if args.variant:
        print(json.dumps(run_variant(args.variant, batch, args.seq, args.steps, args.tiny)))
        return
    results = {}
    for variant in ("seed", "kdtool"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--batch", str(batch), "--seq", str(args.seq),
                               "--steps", str(args.steps), *(["--tiny"] if args.tiny else [])], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the {variant} variant failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    seed, kd = results["seed"], results["kdtool"]
    pred = kd["prediction_step_seconds"]
    shapes = TINY if args.tiny else PAPER
    summary = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "shapes": {"teacher": shapes["teacher"], "student": shapes["student"], "tiny": args.tiny,
                   "batch": batch, "seq": args.seq, "timed_steps": args.steps, "autocast": "bf16" if cuda else "off (fp32)"},
        "seed": seed, "kdtool": kd,
        "step_time_ratio_seed_over_kdtool": seed["step_seconds"] / kd["step_seconds"],
        "peak_rss_ratio_seed_over_kdtool": seed["peak_rss_mb"] / kd["peak_rss_mb"],
        "cached_logits_epoch_speedup": pred["teacher_every_step"] / pred["cached_logits"],
        "cached_logits_speedup_3_epochs_incl_cache_pass":
            3 * pred["teacher_every_step"] / (3 * pred["cached_logits"] + pred["teacher_every_step"] - pred["cached_logits"]),
    }
    if cuda:
        ratio = kd["peak_gpu_allocated_mb"] / seed["peak_gpu_allocated_mb"]
        summary["peak_gpu_allocated_ratio_kdtool_over_seed"] = ratio
        summary["meets_memory_target"] = ratio <= 0.5
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
