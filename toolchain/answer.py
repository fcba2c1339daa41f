"""``answer_file``: answer one question or a JSONL file of them with a model, writing JSON lines as they come.

The question and answer format, and the JSONL reading and writing, are :mod:`kdtool.questions`'
(shared with ``kdtool serve``, so both give the same answer to the same question). An input file
is checked whole first (a malformed line is one error naming it, before any model loads), then
answered in chunks: each chunk's lines are written, flushed and fsync'd as soon as they exist, so
memory stays flat over any number of questions and an interrupted run keeps every line it
finished (the result says how many, with ``interrupted`` set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.atomic import check_output_file
from kdtool.data import Example, FeatureConfig, PostprocessConfig
from kdtool.engines import load_engine
from kdtool.engines.settings import (
    device_setting,
    require_signature_setting,
    self_test_setting,
    strict_setting,
    threads_setting,
    trust_remote_code_setting,
)
from kdtool.fields import setting, shared
from kdtool.predict import PredictConfig, answer_questions, feature_config_for
from kdtool.progress import Progress, count
from kdtool.questions import AnswerSink, check_jsonl, jsonl_chunks


@dataclass(frozen=True)
class AnswerConfig:
    model: Path = setting(argument=True)  # a Hugging Face QA directory or a kdtool bundle
    input: Path | None = setting(None, type="path", help='JSONL file of {"id", "question", "context"} objects.')
    question: str | None = setting(None, option=("--question", "-q"), type="text", help="The question (with --context).")
    context: str | None = setting(None, option=("--context", "-c"), type="text",
                                  help="The passage to answer from (with --question).")
    output: Path | None = setting(None, option=("--output", "-o"), type="path",
                                  help="Write JSONL answers here, each line as soon as it is answered [default: stdout].")
    device: str = device_setting()
    threads: int | None = threads_setting()
    batch_size: int = shared(PredictConfig, "batch_size")
    # windows: --max-length and --doc-stride, as kdtool serve takes them (the same answer to the same question)
    features: FeatureConfig = setting(factory=FeatureConfig, recipe_only=("max_query_length",))
    max_answer_length: int = shared(PostprocessConfig, "max_answer_length")
    trust_remote_code: bool = trust_remote_code_setting()
    require_signature: str | None = require_signature_setting()  # a public key the bundle must be signed with
    self_test: bool = self_test_setting()  # run a bundle's self-test on this device before answering
    strict: bool = strict_setting()  # refuse a bundle exported for another INT8 arithmetic class, or one without a self-test


@dataclass(frozen=True)
class AnswerResult:
    written: int  # answers written
    total: int  # questions asked
    interrupted: bool = False  # Ctrl-C (or SIGTERM): ``written`` lines were finished and kept


def answer_file(config: AnswerConfig, *, progress: Progress | None = None) -> AnswerResult:
    """Answer ``config.input`` (or the one ``question``/``context``) into ``config.output`` (or stdout).

    ``progress`` counts task ``"answer"`` in unit ``"question"``.
    """
    total = check_jsonl(config.input) if config.input else 1
    check_output_file(config.output, "--output", parent_must_exist=True)
    engine = load_engine(config.model, device=config.device, threads=config.threads,
                         trust_remote_code=config.trust_remote_code, require_signature=config.require_signature,
                         self_test=config.self_test, strict=config.strict)
    predict = PredictConfig(features=feature_config_for(engine, config.features),  # the window, fitted once
                            postprocess=PostprocessConfig(max_answer_length=config.max_answer_length),
                            batch_size=config.batch_size)
    parts = jsonl_chunks(config.input) if config.input else \
        iter([[(Example("0", config.question, config.context, answers=()), "0")]])
    sink = AnswerSink(config.output)
    try:
        for chunk in parts:
            sink.write(answer_questions(engine, chunk, predict))
            count(progress, "answer", sink.written, total, "question")
    except KeyboardInterrupt:
        return AnswerResult(sink.written, total, interrupted=True)
    finally:
        sink.close()
        engine.close()
    return AnswerResult(sink.written, total)
