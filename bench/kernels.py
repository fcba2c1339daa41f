"""Benchmark kdtool's fused attention kernels; prints one JSON object.

On a CUDA GPU, at the paper's shapes (batch 32, seq 384, 16 heads; student head dim 32, teacher 64):

- ``attention_prob_mse`` / ``attention_prob_kl`` forward + backward against the explicit PyTorch
  computation (full [B, H, N, N] maps in the input dtype, as HF eager attention + MSELoss / KLDiv
  would do, and the fp32 reference). Targets: >= 3x faster, >= 10x less extra memory.
- ``fused_attention`` (inference) against ``F.scaled_dot_product_attention`` with the same padding
  mask, and without one (SDPA's flash path). Target for head dim 32: <= 1.2x SDPA's time.

Time: CUDA events around ``--reps`` calls after ``--warmup`` calls (the warm-up also runs the
autotuner). Memory: ``torch.cuda.max_memory_allocated`` during one call minus what was allocated
before it (inputs excluded). Without CUDA it says so and runs a correctness check of the Triton
kernels under ``TRITON_INTERPRET=1`` at small shapes instead; it reports no CPU timings.

    python bench/kernels.py [--batch 32 --seq 384 --heads 16 --dtype float16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F


def explicit_maps_loss(kind, qs, ks, qt, kt, key_mask):
    """The loss as plain PyTorch code computes it: full probability maps in the input dtype."""
    bias = torch.zeros(key_mask.shape, dtype=qs.dtype, device=qs.device).masked_fill(key_mask == 0, torch.finfo(qs.dtype).min)
    p_s = torch.softmax(qs @ ks.transpose(-1, -2) * qs.shape[-1] ** -0.5 + bias[:, None, None, :], dim=-1)
    p_t = torch.softmax(qt @ kt.transpose(-1, -2) * qt.shape[-1] ** -0.5 + bias[:, None, None, :], dim=-1)
    rows = (key_mask != 0)[:, None, :, None].to(qs.dtype)
    if kind == "mse":
        per_entry = (p_s.float() - p_t.float()) ** 2
        return (per_entry * rows).sum() / (rows.sum() * qs.shape[1] * qs.shape[2])
    per_row = F.kl_div(torch.log(p_s.float().clamp_min(1e-30)), p_t.float(), reduction="none").sum(-1, keepdim=True)
    return (per_row * rows).sum() / (rows.sum() * qs.shape[1])


def cuda_measure(fn, warmup, reps):
    """(median ms per call, peak extra bytes of one call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return sorted(times)[len(times) // 2], peak


def bench_losses(args, dtype):
    from kdtool.kernels import attention_loss

    gen = torch.Generator(device="cuda").manual_seed(0)
    shape_s = (args.batch, args.heads, args.seq, 32)
    shape_t = (args.batch, args.heads, args.seq, 64)
    qs, ks = (torch.randn(shape_s, device="cuda", dtype=dtype, generator=gen).requires_grad_(True) for _ in range(2))
    qt, kt = (torch.randn(shape_t, device="cuda", dtype=dtype, generator=gen) for _ in range(2))
    key_mask = torch.ones(args.batch, args.seq, dtype=torch.int64, device="cuda")
    results = {}
    for kind in ("mse", "kl"):
        impls = {
            "fused_triton": lambda: attention_loss._attention_prob_loss(kind, qs, ks, qt, kt, key_mask, "triton", None),
            "explicit_torch": lambda: explicit_maps_loss(kind, qs, ks, qt, kt, key_mask),
            "reference_fp32": lambda: attention_loss.attention_prob_loss_reference(kind, qs, ks, qt, kt, key_mask),
        }
        row = {}
        for name, loss_fn in impls.items():
            def step():
                qs.grad = ks.grad = None
                loss_fn().backward()
            ms, peak = cuda_measure(step, args.warmup, args.reps)
            row[name] = {"ms_fwd_bwd": round(ms, 3), "peak_extra_mib": round(peak / 2**20, 1)}
        fused, explicit = row["fused_triton"], row["explicit_torch"]
        row["speedup_vs_explicit"] = round(explicit["ms_fwd_bwd"] / fused["ms_fwd_bwd"], 2)
        row["memory_ratio_vs_explicit"] = round(explicit["peak_extra_mib"] / max(fused["peak_extra_mib"], 1e-3), 1)
        row["meets_targets"] = row["speedup_vs_explicit"] >= 3 and row["memory_ratio_vs_explicit"] >= 10
        results[kind] = row
    return results


def bench_attention(args, dtype):
    from kdtool.kernels import fused_attention

    results = {}
    for head_dim in (32, 64):
        gen = torch.Generator(device="cuda").manual_seed(1)
        q, k, v = (torch.randn(args.batch, args.heads, args.seq, head_dim, device="cuda", dtype=dtype, generator=gen)
                   for _ in range(3))
        key_mask = torch.ones(args.batch, args.seq, dtype=torch.bool, device="cuda")
        sdpa_mask = key_mask[:, None, None, :]
        with torch.inference_mode():
            impls = {
                "fused_triton": lambda: fused_attention(q, k, v, key_mask),
                "sdpa_with_mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask),
                "sdpa_no_mask": lambda: F.scaled_dot_product_attention(q, k, v),
            }
            row = {name: {"ms": round(cuda_measure(fn, args.warmup, args.reps)[0], 4)} for name, fn in impls.items()}
            error = (fused_attention(q, k, v, key_mask).float() - impls["sdpa_with_mask"]().float()).abs().max().item()
        row["ratio_vs_sdpa_with_mask"] = round(row["fused_triton"]["ms"] / row["sdpa_with_mask"]["ms"], 3)
        row["ratio_vs_sdpa_no_mask"] = round(row["fused_triton"]["ms"] / row["sdpa_no_mask"]["ms"], 3)
        row["max_abs_error_vs_sdpa"] = error
        if head_dim == 32:
            row["meets_target"] = row["ratio_vs_sdpa_with_mask"] <= 1.2
        results[f"head_dim_{head_dim}"] = row
    return results


def interpreter_correctness() -> dict:
    """Max errors of the Triton kernels (run by the interpreter) against the references, small shapes."""
    from kdtool.kernels import attention_prob_loss_reference, attention_reference, fused_attention
    from kdtool.kernels import attention_loss

    gen = torch.Generator().manual_seed(0)
    batch, heads, seq = 2, 2, 37
    key_mask = torch.ones(batch, seq, dtype=torch.int64)
    key_mask[1, 21:] = 0
    report = {"shape": {"batch": batch, "heads": heads, "seq": seq, "head_dims": [32, 64], "tiles": 16}}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        qs, ks = ((torch.randn(batch, heads, seq, 32, generator=gen) * 2).to(dtype) for _ in range(2))
        qt, kt = ((torch.randn(batch, heads, seq, 64, generator=gen) * 2).to(dtype) for _ in range(2))
        entry = {}
        for kind in ("mse", "kl"):
            values = {}
            for backend in ("triton", "reference"):
                q, k = qs.clone().requires_grad_(True), ks.clone().requires_grad_(True)
                if backend == "triton":
                    loss = attention_loss._attention_prob_loss(kind, q, k, qt, kt, key_mask, "triton", {"block_m": 16, "block_n": 16})
                else:
                    loss = attention_prob_loss_reference(kind, q, k, qt, kt, key_mask)
                loss.backward()
                values[backend] = (loss.detach(), q.grad.float(), k.grad.float())
            (lt, qt_, kt_), (lr, qr, kr) = values["triton"], values["reference"]
            entry[kind] = {"loss_rel_error": abs((lt - lr) / lr).item(),
                           "dq_rel_error": ((qt_ - qr).abs().max() / qr.abs().max()).item(),
                           "dk_rel_error": ((kt_ - kr).abs().max() / kr.abs().max()).item()}
        with torch.no_grad():
            out = fused_attention(qs, ks, qs, key_mask, backend="triton", tiles={"block_m": 16, "block_n": 16})
            ref = attention_reference(qs, ks, qs, key_mask)
        entry["fused_attention_max_abs_error"] = (out.float() - ref.float()).abs().max().item()
        report[str(dtype).replace("torch.", "")] = entry
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--interpreter-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.interpreter_check:  # the child process, started below with TRITON_INTERPRET=1
        print(json.dumps(interpreter_correctness()))
        return
    if not torch.cuda.is_available():
        child = subprocess.run([sys.executable, __file__, "--interpreter-check"], capture_output=True, text=True,
                               env={**os.environ, "TRITON_INTERPRET": "1"})
        correctness = json.loads(child.stdout) if child.returncode == 0 else {"error": child.stderr[-2000:]}
        print(json.dumps({"cuda": False, "note": "no CUDA GPU: no kernel timings or memory measured; the Triton kernels "
                          "were checked for correctness under TRITON_INTERPRET=1 at small shapes",
                          "interpreter_correctness": correctness}, indent=2))
        return
    dtype = getattr(torch, args.dtype)
    print(json.dumps({
        "cuda": True, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": __import__("triton").__version__, "dtype": args.dtype,
        "shape": {"batch": args.batch, "seq": args.seq, "heads": args.heads, "student_head_dim": 32, "teacher_head_dim": 64},
        "attention_prob_loss_fwd_bwd": bench_losses(args, dtype),
        "fused_attention_inference": bench_attention(args, dtype),
    }, indent=2))


if __name__ == "__main__":
    main()
