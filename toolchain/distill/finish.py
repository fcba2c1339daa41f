"""The end of a training run: the report, and the output directory made from the best checkpoint
(or the last weights when there was no dev set), the tokenizer, the log and the report. The run
directory is removed once the output is in place."""

from __future__ import annotations

import shutil

from kdtool.atomic import atomic_directory, atomic_write_json
from kdtool.distill.prepare import Run, Training
from kdtool.distill.state import TrainState
from kdtool.models import count_parameters


def describe_model(model) -> dict:
    c = model.config
    return {"model_type": c.model_type, "parameters": count_parameters(model), "layers": c.num_hidden_layers,
            "hidden": c.hidden_size, "heads": getattr(c, "num_attention_heads", None),
            "intermediate": getattr(c, "intermediate_size", None)}


def build_report(run: Run, training: Training, state: TrainState) -> dict:
    config, acc = run.config, run.acc
    return {
        "command": "distill" if run.kd else "finetune", "task": run.task.name, "config": config.to_dict(),
        "teacher": {"path": config.model, **describe_model(run.teacher)} if run.kd else None,
        "student": {**run.student_desc, **describe_model(training.core.student)},
        "layer_map": run.layer_map, "head_groups": run.head_groups,
        "data": {"train_examples": len(run.train_examples), "train_windows": len(run.features),
                 "dev_examples": len(run.dev_examples), "steps_per_epoch": run.steps_per_epoch,
                 "global_batch": config.batch_size, "processes": acc.num_processes},
        "precision": getattr(acc, "mixed_precision", "no"), "device": str(acc.device),
        "stages": run.stages, "best": state.best, "evals": state.evals, "qat": run.qat,
        "stage_seconds": {k: round(v, 2) for k, v in state.stage_seconds.items()},
        "total_seconds": round(sum(state.stage_seconds.values()), 2),
    }


def write_output(run: Run, training: Training, report: dict, *, has_best: bool) -> None:
    """Fill the output directory atomically, then remove the run directory (main process only)."""
    work = run.work
    with atomic_directory(run.output, overwrite=run.config.overwrite, kind=report["command"]) as tmp:
        if has_best:
            for f in (work / "best").iterdir():
                if not f.name.startswith("."):
                    shutil.copy2(f, tmp / f.name)
        else:
            training.core.student.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        shutil.copy2(work / "train_log.jsonl", tmp / "train_log.jsonl")
        atomic_write_json(tmp / f"{report['command']}_report.json", report)
    training.log.close()
    shutil.rmtree(work, ignore_errors=True)


def finish_run(run: Run, training: Training, state: TrainState) -> dict:
    report = build_report(run, training, state)
    if run.main:
        write_output(run, training, report, has_best=state.best is not None)
    run.acc.wait_for_everyone()
    return report if run.main else {"worker": run.acc.process_index}
