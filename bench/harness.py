"""What the benchmark scripts share, in one place: running a command, printing and writing a result,
describing the machine, reading questions, timing engines in turn, and the paper-shape models.

A script run as ``python bench/NAME.py`` finds this module on its own path (``from harness import ...``);
``bench/gpu/`` scripts put ``bench/`` on ``sys.path`` first. No script imports another script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SQUAD_ES = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-es" / "squad-es-v1.1-pool.json"

# The paper's models (random weights: only the shape matters for speed): a RoBERTa-large teacher and the
# SpanishTinyRoBERTa student; TINY is the same pair at toy size for the GPU check's CPU dry run.
PAPER = {"teacher": dict(vocab_size=50262, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                         intermediate_size=4096, max_position_embeddings=514),
         "student": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=16, intermediate_size=3072)}
TINY = {"teacher": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=514),
        "student": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)}


def sh(args: list[str], log=None) -> float:
    """Run ``args`` (echoed to stderr), fail on a non-zero exit; the seconds it took. ``log``: a file for its output."""
    print("+", " ".join(args), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=log, stderr=log)
    return time.perf_counter() - t0


def report(path: Path) -> dict:
    """The ``*_report.json`` a kdtool training command wrote into the model directory ``path``."""
    return json.loads(next(path.glob("*_report.json")).read_text())


def keep(result: dict, out: Path | None) -> None:
    """Write the benchmark's JSON to ``out`` when given (also what a long benchmark measured so far)."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def emit(result: dict, out: Path | None) -> None:
    """Print the benchmark's JSON, and write it to ``out`` too when given."""
    print(json.dumps(result, indent=2))
    keep(result, out)


def machine() -> dict:
    """The CPU, its cores and INT8/bf16 instructions, and the load average now."""
    info = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", info)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    return {"cpu": name.group(1) if name else "?", "cores": os.cpu_count(),
            "avx512_vnni": "avx512_vnni" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory of process ``pid`` in MB (``field="VmHWM"``: its peak), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def load_questions(path: Path, limit: int) -> list[dict]:
    """The first ``limit`` questions of a SQuAD file as ``{"id", "question", "context"}``."""
    from kdtool.data import load_squad

    examples = load_squad(path, strict=False).examples[:limit]
    return [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in examples]


def time_engines(engines: dict, batch: dict, rounds: int, warmup: int = 2) -> tuple[dict, dict]:
    """Round-robin timing of every engine (``{name: (engine, how)}``); spinning ones after the rest, each on its own.
    Returns wall and process-CPU milliseconds per run, by name.

    ORT worker threads that spin keep busy-waiting for a while after a run, so an interleaved
    spinning session slows whichever engine runs next (measured: the next engine 1.5x slower).
    """
    import torch

    times = {name: [] for name in engines}
    cpu = {name: [] for name in engines}

    def once(name, engine):
        if engine.kind == "pytorch":  # set per call: ORT sessions own their thread pools
            torch.set_num_threads(engine._threads)
        t, c = time.perf_counter(), time.process_time()
        engine.run(batch)
        times[name].append((time.perf_counter() - t) * 1000)
        cpu[name].append((time.process_time() - c) * 1000)

    quiet = {n: e for n, (e, _) in engines.items() if "spinning" not in n}
    for engine in quiet.values():
        for _ in range(warmup):
            engine.run(batch)
    for _ in range(rounds):
        for name, engine in quiet.items():
            once(name, engine)
    for name, (engine, _) in engines.items():
        if name not in quiet:
            for _ in range(warmup):
                engine.run(batch)
            for _ in range(rounds):
                once(name, engine)
    return times, cpu


def paper_configs(tiny: bool = False):
    """RoBERTa configs of the paper's teacher and student (``tiny``: the toy pair), the student sharing the
    teacher's vocabulary and positions."""
    import torch
    from transformers import RobertaConfig

    torch.manual_seed(0)
    shapes = TINY if tiny else PAPER
    teacher_cfg = RobertaConfig(type_vocab_size=1, **shapes["teacher"])
    student_cfg = RobertaConfig(**{**teacher_cfg.to_dict(), **shapes["student"]})
    return teacher_cfg, student_cfg


def make_tokenizer():
    """A small BPE tokenizer trained on kdtool's built-in sample sentences: the benchmarks draw token ids from
    its vocabulary, and latency does not depend on which ids they are."""
    from kdtool.export.samples import BUILTIN
    from kdtool.tokenizer_training import train_tokenizer

    return train_tokenizer([t for pair in BUILTIN for t in pair] * 20, "bpe", vocab_size=600)


def build_model(out: Path, name: str, tokenizer, tiny: bool = False) -> Path:
    """Save the paper's ``name`` (teacher or student; ``tiny``: the toy pair's), random weights, with ``tokenizer``."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    config = paper_configs(tiny)[("teacher", "student").index(name)]
    config.pad_token_id, config.bos_token_id, config.eos_token_id = (tokenizer.pad_token_id, tokenizer.cls_token_id,
                                                                     tokenizer.sep_token_id)
    config.architectures = ["RobertaForQuestionAnswering"]
    torch.manual_seed(0)
    AutoModelForQuestionAnswering.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def paper_models(work: Path, tok, tiny: bool = False) -> tuple[Path, Path]:
    """The paper-shape teacher and student under ``work``: built once, reused by later runs with the same ``--workdir``."""
    return tuple(work / name if (work / name / "config.json").is_file() else build_model(work / name, name, tok, tiny)
                 for name in ("teacher", "student"))
