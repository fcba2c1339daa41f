"""Opening the models a profile compares, and the inputs they are timed on: every model through
:func:`kdtool.engines.load_engine`, a Hugging Face directory once per torch variant (dtype and
attention implementation), with its load time and memory; random token batches of a fixed shape.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from kdtool.engines import bundle_signature, load_engine
from kdtool.errors import InputError
from kdtool.profiles.timing import rss, uses_cuda_events

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "torch-triton")


def parse_torch_variants(variants: list[str] | None) -> list[tuple[str, str]]:
    """``["fp16:sdpa", ...]`` as ``[("fp16", "sdpa"), ...]``; an InputError naming the bad one otherwise."""
    parsed = []
    for text in variants or ():
        dtype, _, attn = str(text).partition(":")
        if dtype not in TORCH_DTYPES or attn not in ATTENTION_IMPLEMENTATIONS:
            raise InputError(f"torch variant {text!r} is not DTYPE:ATTENTION with DTYPE one of {', '.join(TORCH_DTYPES)} "
                             f"and ATTENTION one of {', '.join(ATTENTION_IMPLEMENTATIONS)} (e.g. fp16:sdpa)")
        if (dtype, attn) in parsed:
            raise InputError(f"torch variant {text!r} is given twice")
        parsed.append((dtype, attn))
    return parsed


def _openings(path, variants: list[tuple[str, str]]) -> list[tuple[str, dict]]:
    """(name suffix, engine options) per opening of ``path``: one per variant for a Hugging Face
    directory, a single plain one for a bundle (its precision and runtime are fixed at export)."""
    if not variants or (Path(path) / "manifest.json").is_file():
        return [("", {})]
    return [(f"[{dtype},{attn}]", {"dtype": TORCH_DTYPES[dtype], "attn_implementation": attn}) for dtype, attn in variants]


def load_models(paths: list, settings: dict, *, trust_remote_code: bool = False,
                torch_variants: list[str] | None = None,
                require_signature: str | None = None) -> tuple[list, list[dict]]:
    """Open every model (all paths are checked first, so a typo fails before a slow load); with
    ``torch_variants``, each Hugging Face directory once per variant, in the order given."""
    variants = parse_torch_variants(torch_variants)
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"model not found: {p}")
    import transformers

    # import the libraries every engine needs (tokenizers at least) before the first RSS reading,
    # so the first model's load delta is its own memory, not the imports'
    transformers.AutoTokenizer, transformers.AutoModelForQuestionAnswering  # noqa: B018 - lazy imports
    if any((Path(p) / "manifest.json").is_file() for p in paths):
        with contextlib.suppress(ImportError):
            import onnxruntime  # noqa: F401 - bundles run on it
    engines, infos, seen = [], [], {}
    for p, (suffix, options) in ((path, o) for path in paths for o in _openings(path, variants)):
        i = len(engines)
        before, t0 = rss(), time.perf_counter()
        engine = load_engine(p, device=settings["device"], threads=settings["threads"],
                             trust_remote_code=trust_remote_code, **options,
                             require_signature=bundle_signature(p, require_signature))
        load_s = time.perf_counter() - t0
        info = engine.describe()
        name = (info["name"] or Path(p).name) + suffix
        seen[name] = seen.get(name, 0) + 1
        model = getattr(engine, "model", None)
        if model is not None:  # what transformers actually loaded, not what was asked for
            info["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        info.update(index=i, name=name if seen[name] == 1 else f"{name}#{seen[name]}", is_reference=i == 0,
                    max_length=engine.max_length, input_names=list(engine.input_names),
                    timer="cuda-events" if uses_cuda_events(engine) else "wall-clock",
                    load_seconds=round(load_s, 3), load_rss_delta_bytes=max(0, rss() - before))
        if info.get("precision") is None and model is not None:
            info["precision"] = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(
                str(engine.model.dtype).rsplit(".", 1)[-1], str(engine.model.dtype))
        engines.append(engine)
        infos.append(info)
    return engines, infos


def random_batch(engine, batch_size: int, seq_len: int, rng: np.random.Generator) -> dict:
    """Random non-special token ids in the tokenizer's vocabulary, full attention mask."""
    tok = engine.tokenizer
    allowed = np.setdiff1d(np.arange(len(tok)), np.asarray(tok.all_special_ids, dtype=np.int64))
    batch = {"input_ids": rng.choice(allowed, size=(batch_size, seq_len)).astype(np.int64),
             "attention_mask": np.ones((batch_size, seq_len), dtype=np.int64)}
    if "token_type_ids" in engine.input_names:
        batch["token_type_ids"] = np.zeros((batch_size, seq_len), dtype=np.int64)
    return {k: v for k, v in batch.items() if k in engine.input_names}
