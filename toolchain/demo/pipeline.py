"""``run_demo``: the whole kdtool pipeline on a CPU in minutes, with nothing downloaded.

1. ``prepare``: a synthetic Spanish QA set (:mod:`kdtool.demo.synthetic`), a byte-level BPE
   tokenizer trained on it, and a small randomly initialised RoBERTa (the teacher's starting point)
   saved as a Hugging Face directory, plus the student's shape as a JSON config.
2. Then a recipe built from :class:`DemoConfig`, run by the same runner and library functions as
   ``kdtool run``: finetune the teacher, distil the student (two-stage TinyBERT), export an INT8
   bundle, validate all three on dev, profile them, write the report.

There is no demo-only training code: the demo is a recipe whose inputs it makes itself. The run
directory holds that recipe (``recipe.yaml``), so ``kdtool run DIR/recipe.yaml -o DIR`` reruns it,
and rerunning ``kdtool demo`` into the same directory skips what is done. Thresholds in the
config make a stage whose result is unreasonable (a teacher that did not learn) stop the demo
with a :class:`DemoCheckFailed` that says which and by how much.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import RobertaConfig, RobertaForQuestionAnswering

from kdtool.atomic import atomic_directory, atomic_write_json, claim_container
from kdtool.demo.synthetic import SyntheticConfig, generate
from kdtool.errors import InputError, KdtoolError
from kdtool.progress import Progress, say
from kdtool.recipes.loading import parse_recipe
from kdtool.recipes.report import load_report
from kdtool.recipes.run_dir import RunDir, config_hash
from kdtool.recipes.runner import STAGES, run_recipe
from kdtool.recipes.sections import Recipe
from kdtool.tokenizer_training import train_tokenizer

INPUTS = "inputs"


class DemoCheckFailed(KdtoolError):
    """A demo stage finished with a result outside what the demo accepts (see DemoConfig thresholds)."""


@dataclass(frozen=True)
class DemoConfig:
    output: str = "demo-output"
    seed: int = 0
    # data and tokenizer
    # Many different paragraphs seen a few times, not few seen many times: a model trained from
    # scratch memorises a small set. Measured here (one thread, batch 8, same 5625 teacher steps): 600
    # paragraphs x 15 epochs reach dev F1 85 (75 with numbers left to BPE), 3000 x 3 reach 97.
    train_paragraphs: int = 3000  # five questions each
    dev_paragraphs: int = 80
    vocab_size: int = 2000
    split_digits: bool = True  # one token per digit: years and counts tokenize alike (see train_tokenizer)
    max_length: int = 128
    doc_stride: int = 32
    max_query_length: int = 32
    # teacher: a small RoBERTa trained from scratch on the synthetic set
    teacher_layers: int = 2
    teacher_hidden: int = 64
    teacher_heads: int = 4
    teacher_epochs: int = 3
    teacher_lr: float = 2e-3
    # student: half the layers, initialised from the teacher's (DistilBERT style), then the default
    # two-stage TinyBERT schedule: intermediate losses, then the prediction loss
    student_layers: int = 1
    student_hidden: int = 64
    student_heads: int = 4
    student_init: str = "teacher-layers"
    distill_epochs: int = 2  # half intermediate, half prediction
    distill_lr: float = 3e-3
    batch_size: int = 16  # a step costs little more than at 8: the teacher trains in 127 s instead of 169 (alone)
    precisions: tuple[str, ...] = ("int8",)
    profile_runs: int = 10
    profile_questions: int = 100
    # fail loudly: what a stage must reach
    min_teacher_f1: float = 80.0
    min_student_f1: float = 60.0
    max_bundle_f1_drop: float = 5.0
    min_student_speedup: float = 1.0  # student p50 vs teacher at batch 1, seq max_length
    # Tiny models gain nothing from intra-op threads, and on a busy machine two threads per process
    # spin against each other (measured here: 7x the CPU time per training step); None: torch's default.
    threads: int | None = 1

    def __post_init__(self):
        for name in ("teacher_hidden", "student_hidden"):
            heads = getattr(self, name.replace("hidden", "heads"))
            if getattr(self, name) % heads:
                raise InputError(f"{name.replace('_', ' ')} {getattr(self, name)} is not a multiple of its {heads} heads")
        if self.teacher_heads % self.student_heads:
            raise InputError(f"teacher heads ({self.teacher_heads}) must be a multiple of student heads "
                             f"({self.student_heads}) for the attention loss")
        if self.distill_epochs < 2:
            raise InputError("the two-stage schedule needs at least 2 distillation epochs")


@dataclass
class DemoResult:
    run_dir: Path
    report: dict
    seconds: float
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# inputs the demo makes itself


def _prepare_key(cfg: DemoConfig) -> dict:
    keep = ("seed", "train_paragraphs", "dev_paragraphs", "vocab_size", "split_digits", "max_length", "teacher_layers",
            "teacher_hidden", "teacher_heads", "student_layers", "student_hidden", "student_heads")
    return {k: getattr(cfg, k) for k in keep}


def prepare(cfg: DemoConfig, run: RunDir, progress: Progress | None = None) -> dict:
    """Dataset, tokenizer, base model and student shape under ``inputs/``; skipped when already made."""
    key = config_hash(_prepare_key(cfg))
    paths = {"train": run.path(f"{INPUTS}/synthetic-train.json"), "dev": run.path(f"{INPUTS}/synthetic-dev.json"),
             "base": run.path(f"{INPUTS}/base-roberta"), "student": run.path(f"{INPUTS}/student.json")}
    if run.is_done("prepare", key):
        say(progress, "[prepare] synthetic data, tokenizer and base model: done earlier, skipped")
        return {k: str(v) for k, v in paths.items()}
    run.forget(["prepare", *STAGES])  # new inputs: every stage runs again
    t0 = time.perf_counter()
    train, dev = generate(SyntheticConfig(cfg.train_paragraphs, cfg.dev_paragraphs, cfg.seed))
    atomic_write_json(paths["train"], train)
    atomic_write_json(paths["dev"], dev)
    n_train = sum(len(p["qas"]) for a in train["data"] for p in a["paragraphs"])
    n_dev = sum(len(p["qas"]) for a in dev["data"] for p in a["paragraphs"])
    say(progress, f"[prepare] synthetic Spanish QA: {n_train} train and {n_dev} dev questions (seed {cfg.seed})")
    texts = [p["context"] for a in train["data"] for p in a["paragraphs"]]
    texts += [qa["question"] for a in train["data"] for p in a["paragraphs"] for qa in p["qas"]]
    tokenizer = train_tokenizer(texts, "bpe", cfg.vocab_size, split_digits=cfg.split_digits)
    say(progress, f"[prepare] byte-level BPE tokenizer: {len(tokenizer)} tokens")
    with atomic_directory(paths["base"], overwrite=True, kind="demo-base-model") as tmp:
        n_params = _base_model(cfg, tokenizer, tmp)
    say(progress, f"[prepare] base RoBERTa (random init): {cfg.teacher_layers} layers, hidden {cfg.teacher_hidden}, "
        f"{cfg.teacher_heads} heads, {n_params:,} parameters")
    atomic_write_json(paths["student"], {"layers": cfg.student_layers, "hidden": cfg.student_hidden,
                                         "heads": cfg.student_heads, "intermediate": 4 * cfg.student_hidden})
    run.write_record("prepare", key, [str(p.relative_to(run.root)) for p in paths.values()],
                     {"train_questions": n_train, "dev_questions": n_dev, "vocab": len(tokenizer),
                      "base_parameters": n_params}, time.perf_counter() - t0)
    return {k: str(v) for k, v in paths.items()}


def _base_model(cfg: DemoConfig, tokenizer, out: Path) -> int:
    torch.manual_seed(cfg.seed)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.teacher_hidden, num_hidden_layers=cfg.teacher_layers,
        num_attention_heads=cfg.teacher_heads, intermediate_size=4 * cfg.teacher_hidden,
        max_position_embeddings=cfg.max_length + tokenizer.pad_token_id + 1, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config.architectures = ["RobertaForQuestionAnswering"]
    model = RobertaForQuestionAnswering(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# the recipe


def demo_recipe(cfg: DemoConfig, inputs: dict, run_dir: Path) -> Recipe:
    common = {"batch_size": cfg.batch_size, "seed": cfg.seed, "save_every": 100000, "eval_batch_size": 128,
              "warmup": 0.1, "dropout": 0.0}
    raw = {
        "name": "demo",
        "description": "kdtool demo: synthetic Spanish QA, small RoBERTa teacher, two-stage TinyBERT student, INT8",
        "data": {"train": inputs["train"], "dev": inputs["dev"], "lang": "es"},
        "features": {"max_length": cfg.max_length, "doc_stride": cfg.doc_stride, "max_query_length": cfg.max_query_length},
        "finetune": {"model": inputs["base"], "epochs": cfg.teacher_epochs, "lr": cfg.teacher_lr, **common},
        "distill": {"student": inputs["student"], "student_init": cfg.student_init, "schedule": "two-stage",
                    "epochs": cfg.distill_epochs, "lr": cfg.distill_lr, **common},
        "export": {"precisions": list(cfg.precisions)},
        "validate": {"reference": "student", "max_f1_drop": cfg.max_bundle_f1_drop},
        "profile": {"seq_lengths": [cfg.max_length], "batch_sizes": [1], "runs": cfg.profile_runs, "warmup": 2,
                    "data": "dev", "data_limit": cfg.profile_questions, "threads": cfg.threads},
    }
    return parse_recipe(raw, base_dir=run_dir, source="kdtool demo (embedded)")


def make_check(cfg: DemoConfig) -> Callable[[str, dict], None]:
    """The demo's "fail loudly": after each stage, its summary against the thresholds of ``cfg``."""

    def check(stage: str, s: dict) -> None:
        if stage == "finetune" and (s.get("dev_f1") or 0.0) < cfg.min_teacher_f1:
            raise DemoCheckFailed(f"the teacher did not learn: dev F1 {s.get('dev_f1') or 0:.1f} < {cfg.min_teacher_f1} "
                                  "(min_teacher_f1); train it longer (teacher_epochs) or with another teacher_lr")
        if stage == "distill" and (s.get("dev_f1") or 0.0) < cfg.min_student_f1:
            raise DemoCheckFailed(f"the student did not learn: dev F1 {s.get('dev_f1') or 0:.1f} < {cfg.min_student_f1} "
                                  "(min_student_f1); distil longer (distill_epochs)")
        if stage == "validate":
            for name, m in s["models"].items():
                if name.startswith("bundle-") and m["f1_drop"] > cfg.max_bundle_f1_drop:
                    raise DemoCheckFailed(f"{name} lost {m['f1_drop']:.1f} F1 against the FP32 student "
                                          f"(> {cfg.max_bundle_f1_drop}, max_bundle_f1_drop): the export is broken")
            teacher = s["models"].get("teacher", {})
            if teacher.get("f1", 0.0) < cfg.min_teacher_f1:
                raise DemoCheckFailed(f"the teacher scores F1 {teacher.get('f1', 0):.1f} on dev, below "
                                      f"{cfg.min_teacher_f1} (min_teacher_f1)")
        if stage == "profile":
            shape = f"batch 1, seq {cfg.max_length}"
            speedup = (s["models"].get("student") or {}).get("speedup", {}).get(shape)
            if speedup is None or speedup < cfg.min_student_speedup:
                raise DemoCheckFailed(f"the student is not faster than the teacher at {shape}: speed-up {speedup} "
                                      f"< {cfg.min_student_speedup} (min_student_speedup)")

    return check


@contextlib.contextmanager
def _torch_threads(n: int | None):
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_demo(cfg: DemoConfig = DemoConfig(), *, progress: Progress | None = None, fresh: bool = False) -> DemoResult:
    """Run the demo into ``cfg.output`` (see the module docstring); ``fresh`` redoes every stage.

    ``progress`` gets the demo's lines and the counts of the training, scoring and profiling it runs."""
    t0 = time.perf_counter()
    with _torch_threads(cfg.threads):  # process-wide in PyTorch: give the caller its setting back
        root = claim_container(Path(cfg.output), "demo", accept=("demo",))
        run = RunDir(root)
        if fresh:
            run.forget(["prepare", *STAGES])
        atomic_write_json(root / "demo_config.json", asdict(cfg))
        inputs = prepare(cfg, run, progress)
        recipe = demo_recipe(cfg, inputs, root)
        result = run_recipe(recipe, root, progress=progress, check=make_check(cfg))
        report = load_report(root)
        report["demo"] = {"config": asdict(cfg), "wall_seconds": round(time.perf_counter() - t0, 1),
                          "rerun": f"kdtool run {root / 'recipe.yaml'} -o {root}"}
        atomic_write_json(root / "report.json", report)
    return DemoResult(root, report, time.perf_counter() - t0, result.ran, result.skipped)


def describe(cfg: DemoConfig) -> str:
    return json.dumps(asdict(cfg))
