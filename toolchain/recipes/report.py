"""The run report: ``report.json`` (machine-readable) and ``report.md`` (for people), and the short
summary printed at the end of ``kdtool demo`` and ``kdtool run``.

Everything here is read from what the stages wrote (their records in ``stages/``, ``validate.json``,
``profile.json``) and from the model directories themselves (sizes), so the report of a resumed
run is the same as the report of an uninterrupted one.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from kdtool import __version__
from kdtool.atomic import atomic_write_json, atomic_write_text
from kdtool.models import dir_size_bytes
from kdtool.recipes.context import (
    DEV,
    PLOT,
    PROFILE_JSON,
    PROFILE_MD,
    REPORT_JSON,
    REPORT_MD,
    TRAIN,
    VALIDATE_JSON,
    StageContext,
    engines,
    lang,
)

SCHEMA = "kdtool-run-report/1"


def _same(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def profile_summary(report: dict, engines: dict[str, str]) -> dict:
    """Per model (by run name: teacher, student, bundle-int8, ...): p50 latency and speed-up per shape."""
    index_to_name = {}
    for m in report.get("models", []):
        name = next((n for n, p in engines.items() if _same(p, m["path"])), m["name"])
        index_to_name[m["index"]] = name
    models: dict[str, dict] = {}
    for m in report.get("models", []):
        models[index_to_name[m["index"]]] = {"kind": m.get("kind"), "precision": m.get("precision"),
                                             "parameters": m.get("parameters"), "size_bytes": m.get("size_bytes"),
                                             "latency_p50_ms": {}, "speedup": {}}
    for row in report.get("fixed", []):
        entry = models[index_to_name[row["model_index"]]]
        shape = f"batch {row['batch_size']}, seq {row['seq_len']}"
        entry["latency_p50_ms"][shape] = (row.get("latency_ms") or {}).get("p50")
        entry["speedup"][shape] = row.get("speedup")
    for row in (report.get("data") or {}).get("rows", []):
        entry = models[index_to_name[row["model_index"]]]
        shape = f"dev questions, batch {row['batch_size']}"
        entry["latency_p50_ms"][shape] = (row.get("question_latency_ms") or {}).get("p50")
        entry["speedup"][shape] = row.get("speedup")
    return {"reference": index_to_name.get(0), "models": models,
            "device": report.get("settings", {}).get("device"), "threads": report.get("environment", {}).get("threads"),
            "load_average": report.get("environment", {}).get("load_average")}


def _mib(n) -> str:
    return "–" if n is None else f"{n / 2**20:.1f} MiB"


def _num(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def build_report(ctx: StageContext) -> dict:
    """The report of a run (see the module docstring)."""

    s = ctx.summaries
    paths = engines(ctx)
    val = (s.get("validate") or {}).get("models", {})
    prof = (s.get("profile") or {}).get("models", {})
    train = {"teacher": s.get("finetune") or {}, "student": s.get("distill") or {}}
    models = {}
    for name, path in paths.items():
        p = Path(path)
        params = (prof.get(name) or {}).get("parameters")
        if params is None and name == "student":
            params = train["student"].get("parameters")
        if params is None and name == "teacher":
            params = train["student"].get("teacher_parameters") or train["teacher"].get("parameters")
        models[name] = {
            "path": str(p), "size_bytes": dir_size_bytes(p) if p.exists() else None, "parameters": params,
            "f1": (val.get(name) or {}).get("f1"), "exact_match": (val.get(name) or {}).get("exact_match"),
            "agreement_with_reference": (val.get(name) or {}).get("agreement"),
            "latency_p50_ms": (prof.get(name) or {}).get("latency_p50_ms", {}),
            "speedup_vs_teacher": (prof.get(name) or {}).get("speedup", {}),
        }
    student_f1 = models["student"]["f1"]
    drift = {name: {"f1_drop": None if m["f1"] is None or student_f1 is None else round(student_f1 - m["f1"], 2),
                    "em_drop": None if m["exact_match"] is None or models["student"]["exact_match"] is None
                    else round(models["student"]["exact_match"] - m["exact_match"], 2),
                    "agreement": m["agreement_with_reference"] if s.get("validate", {}).get("reference") == "student"
                    else None}
             for name, m in models.items() if name.startswith("bundle-")}
    artifacts = {name: m["path"] for name, m in models.items()}
    for rel in (TRAIN, DEV, VALIDATE_JSON, PROFILE_JSON, PROFILE_MD, PLOT, REPORT_MD, REPORT_JSON, "recipe.yaml"):
        artifacts[rel] = str(ctx.run.path(rel))
    return {
        "schema": SCHEMA, "kdtool_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "recipe": ctx.recipe.name, "recipe_source": ctx.recipe.source, "run_dir": str(ctx.run.root),
        "data": {k: v for k, v in (s.get("data") or {}).items() if k != "load_report"},
        "lang": lang(ctx.recipe),
        "models": models, "drift_vs_student": drift,
        "validation_passed": (s.get("validate") or {}).get("passed"),
        "profile_device": (s.get("profile") or {}).get("device"),
        "stage_seconds": {k: v.get("stage_seconds") for k, v in s.items() if isinstance(v, dict)},
        "training": {"teacher_dev_f1_by_epoch": train["teacher"].get("evals"),
                     "student_dev_f1_by_epoch": train["student"].get("evals")},
        "commands": {k: v for k, v in ctx.commands.items() if v},
        "artifacts": artifacts,
    }


def render_markdown(r: dict) -> str:
    lines = [f"# kdtool run: {r['recipe']}", "",
             f"Run directory `{r['run_dir']}`, kdtool {r['kdtool_version']}, {r['created_utc']}.", ""]
    d = r.get("data") or {}
    if d:
        lines += [f"Data: {d.get('train_questions')} train questions, {d.get('dev_questions')} dev questions "
                  f"({d.get('split')}); answers scored with the `{r['lang']}` rules.", ""]
    shapes = sorted({k for m in r["models"].values() for k in m["latency_p50_ms"]})
    head = ["model", "parameters", "size", "F1", "EM"] + [f"p50 ms ({s})" for s in shapes] + \
           [f"speed-up ({s})" for s in shapes]
    lines += ["## Models", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in r["models"].items():
        row = [name, _num(m["parameters"], "{:,}"), _mib(m["size_bytes"]), _num(m["f1"]), _num(m["exact_match"])]
        row += [_num(m["latency_p50_ms"].get(s)) for s in shapes]
        row += [_num(m["speedup_vs_teacher"].get(s), "{:.2f}x") for s in shapes]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if r["drift_vs_student"]:
        lines += ["## Export drift (bundle against the FP32 student)", "",
                  "| bundle | ΔF1 | ΔEM | same answer % |", "|---|---|---|---|"]
        for name, dr in r["drift_vs_student"].items():
            lines.append(f"| {name} | {_num(dr['f1_drop'])} | {_num(dr['em_drop'])} | {_num(dr['agreement'], '{:.1f}')} |")
        lines.append("")
    if r.get("profile_device"):
        lines += [f"Latency measured on {r['profile_device']}; speed-ups are against the teacher, measured in the "
                  "same run (see `profile.md`).", "", "![latency](latency.png)", ""]
    lines += ["## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {_num(v, '{:.1f}')} |" for k, v in r["stage_seconds"].items()]
    lines += ["", "## Rerun a step by hand", "", "```sh"]
    for stage, cmd in r["commands"].items():
        lines += [f"# {stage}", cmd]
    lines += ["```", "", "## Artifacts", ""]
    lines += [f"- {k}: `{v}`" for k, v in r["artifacts"].items()]
    return "\n".join(lines) + "\n"


def write_report(ctx: StageContext) -> dict:
    """Write ``report.json`` and ``report.md`` into the run directory; returns the report."""
    report = build_report(ctx)
    atomic_write_json(ctx.run.path(REPORT_JSON), report)
    atomic_write_text(ctx.run.path(REPORT_MD), render_markdown(report))
    return {"report_json": str(ctx.run.path(REPORT_JSON)), "report_md": str(ctx.run.path(REPORT_MD))}


def summary_lines(report: dict) -> list[str]:
    """The short summary printed at the end of a run."""
    out = []
    shapes = sorted({k for m in report["models"].values() for k in m["speedup_vs_teacher"]})
    shape = next((s for s in shapes if s.startswith("dev")), shapes[0] if shapes else None)
    for name, m in report["models"].items():
        line = (f"  {name:<14} {_num(m['parameters'], '{:>11,}')} params  {_mib(m['size_bytes']):>10}  "
                f"F1 {_num(m['f1']):>6}  EM {_num(m['exact_match']):>6}")
        if shape:
            speedup = _num(m["speedup_vs_teacher"].get(shape), "{:.2f}x")
            line += f"  p50 {_num(m['latency_p50_ms'].get(shape)):>8} ms  {speedup:>6}"
        out.append(line)
    if shape:
        out.append(f"  (latency and speed-up vs the teacher: {shape}, {report.get('profile_device')})")
    for name, d in report["drift_vs_student"].items():
        out.append(f"  export drift {name}: ΔF1 {_num(d['f1_drop'])}, ΔEM {_num(d['em_drop'])}, "
                   f"same answer {_num(d['agreement'], '{:.1f}')}%")
    return out


def load_report(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / REPORT_JSON).read_text(encoding="utf-8"))
