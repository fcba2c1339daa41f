"""The one-line headline of each check step and the table printed at the end of bench/gpu/check.py.

Reads only the JSON each step wrote (the same dicts that land in OUT/stepN_*.json), so a table can be
redrawn from those files: ``python bench/gpu/summary.py OUT/summary.json``.
"""

from __future__ import annotations

import json
import sys

# TensorRT INT8 on an A100, batch 1, seq 384 (NVIDIA's published BERT numbers): what step 4's rows are read against.
ANCHORS_MS = {"BERT-base INT8 TensorRT, A100": 1.15, "BERT-large INT8 TensorRT, A100": 2.81}


def _setup(r: dict) -> str:
    gpu = r.get("gpu") or "no GPU"
    return (f"{gpu}; torch {str(r.get('torch', '?')).split()[0]} (CUDA {r.get('torch_cuda')}), "
            f"triton {str(r.get('triton', '?')).split()[0]}, transformers {str(r.get('transformers', '?')).split()[0]}; "
            f"driver/smi: {r.get('nvidia_smi') or '-'}")


def _tests(r: dict) -> str:
    return r.get("summary", "")


def _kernels(r: dict) -> str:
    parts = []
    for kind, row in (r.get("attention_prob_loss_fwd_bwd") or {}).items():
        parts.append(f"{kind}: {row['fused_triton']['ms_fwd_bwd']} ms vs explicit {row['explicit_torch']['ms_fwd_bwd']} ms "
                     f"({row['speedup_vs_explicit']}x faster, {row['memory_ratio_vs_explicit'] or '-'}x less memory)")
    ratios = {k: v["ratio_vs_sdpa_with_mask"] for k, v in (r.get("fused_attention_inference") or {}).items()}
    if ratios:
        worst = max(ratios, key=ratios.get)
        parts.append(f"fused_attention/SDPA worst {ratios[worst]} ({worst}), best {min(ratios.values())}")
    return "; ".join(parts)


def _distill(r: dict) -> str:
    seed, kd = r["seed"], r["kdtool"]
    text = f"step seed {seed['step_seconds']:.3f} s, kdtool {kd['step_seconds']:.3f} s"
    if "peak_gpu_allocated_ratio_kdtool_over_seed" in r:
        text += (f"; GPU peak seed {seed['peak_gpu_allocated_mb']:.0f} MiB, kdtool {kd['peak_gpu_allocated_mb']:.0f} MiB "
                 f"(kdtool/seed {r['peak_gpu_allocated_ratio_kdtool_over_seed']:.2f}, target <= 0.5)")
    return text


def _profile(r: dict) -> str:
    """p50 at batch 1 and the longest sequence, per model row, with the anchors beside them."""
    rows = [x for x in r.get("fixed", []) if x["batch_size"] == 1]
    if not rows:
        return ""
    seq = max(x["seq_len"] for x in rows)
    cells = [f"{x['model']} {x['latency_ms']['p50']:.2f}" if x.get("latency_ms") else f"{x['model']} {x['status']}"
             for x in rows if x["seq_len"] == seq]
    anchors = ", ".join(f"{k} {v} ms" for k, v in ANCHORS_MS.items())
    return f"p50 ms at batch 1, seq {seq}: " + "; ".join(cells) + f" (anchors: {anchors})"


HEADLINES = {"setup": _setup, "gpu_tests": _tests, "kernels": _kernels, "distill": _distill, "profile": _profile}


def headline(record: dict) -> str:
    """The step's key numbers in one line ('' when it has none); never raises on a partial result."""
    if record.get("status") != "ok" or not record.get("result"):
        return ""
    try:
        return HEADLINES[record["name"]](record["result"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        return f"(no headline: {type(err).__name__}: {err})"


def format_summary(summary: dict) -> str:
    lines = [f"SUMMARY ({summary['mode']}, {summary['seconds']:.0f} s"
             + (f" of a {summary['budget_seconds']:.0f} s budget)" if summary.get("budget_seconds") else ")")]
    lines.append(f"{'step':<14} {'status':<8} {'seconds':>7}  result")
    for s in summary["steps"]:
        detail = s.get("headline") or s.get("error") or s.get("reason") or ""
        lines.append(f"{s['step']} {s['name']:<12} {s['status']:<8} {s['seconds']:>7.1f}  {detail}")
    if summary["mode"] == "cpu-dry-run":
        lines.append("(CPU dry run: tiny shapes, kernels interpreted; these numbers measure nothing)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_summary(json.loads(open(sys.argv[1], encoding="utf-8").read())))
