"""Benchmark kdtool's fused attention kernels; prints one JSON object.

On a CUDA GPU, at the paper's shapes (batch 32, seq 384, 16 heads; student head dim 32, teacher 64):

- ``attention_prob_mse`` / ``attention_prob_kl`` forward + backward against the explicit PyTorch
  computation (full [B, H, N, N] maps in the input dtype, as HF eager attention + MSELoss / KLDiv
  would do, and the fp32 reference). Targets: >= 3x faster, >= 10x less extra memory.
- ``fused_attention`` (inference) against ``F.scaled_dot_product_attention`` with the same padding
  mask, and without one (SDPA's flash path). Target: <= 1.2x SDPA's time (head dim 32 is the student's).

Time: CUDA events around ``--reps`` calls after ``--warmup`` calls (the warm-up also runs the
autotuner). Memory: ``torch.cuda.max_memory_allocated`` during one call minus what was allocated
before it (inputs excluded). The losses run at ``--batch``/``--seq``; ``fused_attention`` at every
``--attention-shapes`` entry (BATCHxSEQ, default batch 1 and 32 at seq 128 and 384), head dims 32 and 64.

Without CUDA it says so and runs a correctness check of the Triton kernels under
``TRITON_INTERPRET=1`` at small shapes instead; it reports no CPU timings. ``--device cpu`` runs the
benchmark code itself on CPU tensors, the kernels interpreted (it re-runs itself with
``TRITON_INTERPRET=1``): a dry run at tiny shapes that checks the code path, not a speed measurement
(its times are the interpreter's, memory is not measured).

    python bench/kernels.py [--batch 32 --seq 384 --heads 16 --dtype float16] [--out kernels.json]
    python bench/kernels.py --device cpu --batch 2 --seq 32 --heads 2 --attention-shapes 1x32 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import emit


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


def measure(fn, warmup, reps, device):
    """(median ms per call, peak extra bytes of one call or None): CUDA events and allocator on a GPU;
    on the CPU (the interpreted dry run) the wall clock and no memory reading."""
    for _ in range(warmup):
        fn()
    if device != "cuda":
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return sorted(times)[len(times) // 2], None
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


def _mib(peak):
    return None if peak is None else round(peak / 2**20, 1)


def _ratio(a, b, digits):
    return None if a is None or b is None else round(a / max(b, 1e-3), digits)


def bench_losses(args, dtype, device):
    from kdtool.kernels import attention_loss

    gen = torch.Generator(device=device).manual_seed(0)
    shape_s = (args.batch, args.heads, args.seq, 32)
    shape_t = (args.batch, args.heads, args.seq, 64)
    qs, ks = (torch.randn(shape_s, device=device, dtype=dtype, generator=gen).requires_grad_(True) for _ in range(2))
    qt, kt = (torch.randn(shape_t, device=device, dtype=dtype, generator=gen) for _ in range(2))
    key_mask = torch.ones(args.batch, args.seq, dtype=torch.int64, device=device)
    tiles = None if device == "cuda" else {"block_m": 16, "block_n": 16}  # the interpreter does not autotune
    results = {}
    for kind in ("mse", "kl"):
        impls = {
            "fused_triton":
                lambda kind=kind: attention_loss._attention_prob_loss(kind, qs, ks, qt, kt, key_mask, "triton", tiles),
            "explicit_torch": lambda kind=kind: explicit_maps_loss(kind, qs, ks, qt, kt, key_mask),
            "reference_fp32": lambda kind=kind: attention_loss.attention_prob_loss_reference(kind, qs, ks, qt, kt, key_mask),
        }
        row = {}
        for name, loss_fn in impls.items():
            def step(loss_fn=loss_fn):
                qs.grad = ks.grad = None
                loss_fn().backward()
            ms, peak = measure(step, args.warmup, args.reps, device)
            row[name] = {"ms_fwd_bwd": round(ms, 3), "peak_extra_mib": _mib(peak)}
        fused, explicit = row["fused_triton"], row["explicit_torch"]
        row["speedup_vs_explicit"] = _ratio(explicit["ms_fwd_bwd"], fused["ms_fwd_bwd"], 2)
        row["memory_ratio_vs_explicit"] = _ratio(explicit["peak_extra_mib"], fused["peak_extra_mib"], 1)
        if device == "cuda":
            row["meets_targets"] = row["speedup_vs_explicit"] >= 3 and row["memory_ratio_vs_explicit"] >= 10
        results[kind] = row
    return results


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"1x128,32x384"`` as ``[(1, 128), (32, 384)]`` (batch x seq)."""
    try:
        shapes = [tuple(int(x) for x in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise argparse.ArgumentTypeError(f"{text!r}: give BATCHxSEQ[,BATCHxSEQ...], e.g. 1x128,32x384")
    return shapes


def bench_attention(args, dtype, device):
    from kdtool.kernels import fused_attention

    tiles = None if device == "cuda" else {"block_m": 16, "block_n": 16}
    results = {}
    for batch, seq in args.attention_shapes:
        for head_dim in (32, 64):
            gen = torch.Generator(device=device).manual_seed(1)
            q, k, v = (torch.randn(batch, args.heads, seq, head_dim, device=device, dtype=dtype, generator=gen)
                       for _ in range(3))
            key_mask = torch.ones(batch, seq, dtype=torch.bool, device=device)
            sdpa_mask = key_mask[:, None, None, :]
            with torch.inference_mode():
                qkv = (q, k, v)  # bound as defaults: each lambda runs inside this iteration only
                impls = {
                    "fused_triton": lambda qkv=qkv, m=key_mask: fused_attention(*qkv, m, backend="triton", tiles=tiles),
                    "sdpa_with_mask": lambda qkv=qkv, m=sdpa_mask: F.scaled_dot_product_attention(*qkv, attn_mask=m),
                    "sdpa_no_mask": lambda qkv=qkv: F.scaled_dot_product_attention(*qkv),
                }
                row = {name: {"ms": round(measure(fn, args.warmup, args.reps, device)[0], 4)} for name, fn in impls.items()}
                error = (impls["fused_triton"]().float() - impls["sdpa_with_mask"]().float()).abs().max().item()
            row["ratio_vs_sdpa_with_mask"] = _ratio(row["fused_triton"]["ms"], row["sdpa_with_mask"]["ms"], 3)
            row["ratio_vs_sdpa_no_mask"] = _ratio(row["fused_triton"]["ms"], row["sdpa_no_mask"]["ms"], 3)
            row["max_abs_error_vs_sdpa"] = error
            if device == "cuda":
                row["meets_target"] = row["ratio_vs_sdpa_with_mask"] <= 1.2
            results[f"batch_{batch}_seq_{seq}_head_dim_{head_dim}"] = row
    return results


def interpreter_correctness() -> dict:
    """Max errors of the Triton kernels (run by the interpreter) against the references, small shapes."""
    from kdtool.kernels import attention_loss, attention_prob_loss_reference, attention_reference, fused_attention

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
                    tiles = {"block_m": 16, "block_n": 16}
                    loss = attention_loss._attention_prob_loss(kind, q, k, qt, kt, key_mask, "triton", tiles)
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
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="default: cuda when visible, else the interpreter correctness check")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--attention-shapes", type=parse_shapes, default=parse_shapes("1x128,1x384,32x128,32x384"),
                        help="fused_attention shapes, BATCHxSEQ[,...]")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    parser.add_argument("--interpreter-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.interpreter_check:  # the child process, started below with TRITON_INTERPRET=1
        print(json.dumps(interpreter_correctness()))
        return
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":  # triton reads it at import
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is visible (torch.cuda.is_available() is False)")
    if args.device is None and not torch.cuda.is_available():
        child = subprocess.run([sys.executable, __file__, "--interpreter-check"], capture_output=True, text=True,
                               env={**os.environ, "TRITON_INTERPRET": "1"})
        correctness = json.loads(child.stdout) if child.returncode == 0 else {"error": child.stderr[-2000:]}
        emit({"cuda": False, "note": "no CUDA GPU: no kernel timings or memory measured; the Triton kernels "
              "were checked for correctness under TRITON_INTERPRET=1 at small shapes",
              "interpreter_correctness": correctness}, args.out)
        return
    device = args.device or "cuda"
    dtype = getattr(torch, args.dtype)
    result = {
        "cuda": device == "cuda", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (Triton interpreter)",
        "torch": torch.__version__, "triton": __import__("triton").__version__, "dtype": args.dtype,
        "shape": {"batch": args.batch, "seq": args.seq, "heads": args.heads, "student_head_dim": 32, "teacher_head_dim": 64,
                  "attention_shapes": [f"{b}x{n}" for b, n in args.attention_shapes]},
        "warmup": args.warmup, "reps": args.reps,
    }
    if device == "cpu":
        result["note"] = ("dry run: the Triton kernels ran under the interpreter on CPU tensors; "
                          "times are the interpreter's, not a speed measurement, and memory is not measured")
    result["attention_prob_loss_fwd_bwd"] = bench_losses(args, dtype, device)
    result["fused_attention_inference"] = bench_attention(args, dtype, device)
    emit(result, args.out)


if __name__ == "__main__":
    main()
