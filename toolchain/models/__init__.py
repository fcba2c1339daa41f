"""Loading Hugging Face model directories safely and with one-line errors (:mod:`kdtool.models.heads`:
which head a model has; :mod:`kdtool.models.qat`: the fake-quantized models of quantization-aware training).

Weights load only from safetensors, or from ``pytorch_model.bin`` through
``torch.load(weights_only=True)`` (transformers does this for us); remote code never runs unless
the caller passes ``trust_remote_code=True`` explicitly.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from kdtool.data.features import MODEL_INPUTS  # noqa: F401  (kdtool.models.MODEL_INPUTS: what a batch may feed)
from kdtool.errors import InputError, require_dir

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _check_model_dir(path: Path) -> Path:
    path = require_dir(path, "model directory")
    if not (path / "config.json").is_file():
        raise InputError(f"{path} has no config.json; give a Hugging Face model directory (save_pretrained output)")
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise InputError(f"{path} has no weights (model.safetensors or pytorch_model.bin); was the model saved completely?")
    return path


REMOTE_CODE_HINT = ("holds custom Python code (auto_map) that kdtool does not run; pass --trust-remote-code "
                    "only if you have read that code and trust it")


def _needs_remote_code(err: Exception) -> bool:
    text = str(err)
    return "trust_remote_code" in text or "custom code" in text


def load_config(path, *, trust_remote_code: bool = False):
    from transformers import AutoConfig

    import kdtool.students  # noqa: F401 - registers kdtool's own model types (BiLSTM) with the Auto classes

    path = require_dir(path, "model directory")
    if not (path / "config.json").is_file():
        raise InputError(f"{path} has no config.json; give a Hugging Face model directory (save_pretrained output)")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as err:
        if _needs_remote_code(err):
            raise InputError(f"{path} {REMOTE_CODE_HINT}") from None
        raise InputError(f"{path}/config.json could not be read: {str(err).strip().splitlines()[0][:200]}; "
                         "give a Hugging Face model directory") from None


def load_tokenizer(path, *, trust_remote_code: bool = False):
    """The fast tokenizer saved in ``path``; an InputError when there is none."""
    from transformers import AutoTokenizer

    path = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, TypeError) as err:
        if _needs_remote_code(err):
            raise InputError(f"{path}: its tokenizer {REMOTE_CODE_HINT}") from None
        raise InputError(f"{path} has no usable tokenizer ({str(err).splitlines()[0][:120]}); "
                         "save one with tokenizer.save_pretrained into the model directory") from None
    if not tok.is_fast:
        raise InputError(f"{path}: tokenizer {type(tok).__name__} is not a fast tokenizer; kdtool needs offset mappings")
    return tok


def load_qa_model(path, *, trust_remote_code: bool = False, attn_implementation: str | None = None,
                  require_head: bool = True, **kwargs):
    """An ``AutoModelForQuestionAnswering`` from a local directory, refusing models without a QA head.

    ``require_head=False`` accepts a bare encoder (e.g. ``BertModel``) and gives it a new, randomly
    initialised QA head: what fine-tuning a pretrained encoder needs.
    """
    from transformers import AutoModelForQuestionAnswering

    path = _check_model_dir(Path(path))
    config = load_config(path, trust_remote_code=trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    if require_head and archs and not any(a.endswith("ForQuestionAnswering") for a in archs):
        raise InputError(f"{path} is a {archs[0]}, not a question-answering model; fine-tune it first "
                         "(kdtool finetune) or give a *ForQuestionAnswering checkpoint")
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    # transformers loads pytorch_model.bin with torch.load(weights_only=True) by default (4.57:
    # modeling_utils.load_state_dict); no caller may turn that off
    kwargs.pop("weights_only", None)
    quantized = contextlib.nullcontext()
    if (path / "modelopt_state.pth").is_file():  # a QAT model (kdtool.models.qat): rebuild its quantizers
        from kdtool.models.qat import enable_loading  # defers torch and modelopt to QAT models

        quantized = enable_loading(path)
    try:
        with quantized:
            model, info = AutoModelForQuestionAnswering.from_pretrained(
                path, trust_remote_code=trust_remote_code, output_loading_info=True, **kwargs)
        return check_loaded_weights(model, info, path, require_head)
    except (ValueError, OSError, RuntimeError) as err:
        if _needs_remote_code(err):
            raise InputError(f"{path} {REMOTE_CODE_HINT}") from None
        if not any((path / w).is_file() for w in WEIGHT_FILES[:2]) and "pytorch checkpoint" in str(err):
            raise InputError(f"{path}/pytorch_model.bin is not a plain tensor file (damaged, or it holds pickled "
                             "objects that kdtool will not unpickle); convert the model to model.safetensors") from None
        raise InputError(f"{path}: the model could not be loaded: {str(err).strip().splitlines()[0][:200]}") from None


def check_loaded_weights(model, info: dict, path: Path, require_head: bool):
    """``model`` if its weights file held exactly the weights its config describes; else the directory is damaged.

    transformers fills missing weights with random ones and drops unexpected ones, with a warning kdtool
    hides: a config of 6 layers over weights of 2 would load with 4 random layers. A bare encoder given
    a new head (``require_head=False``) may lack the head's weights and carry another task's (a pooler,
    an LM head), never encoder or embedding weights.
    """
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    # a bare encoder's checkpoint names its weights without the prefix (encoder.layer.3...)
    body = (f"{prefix}encoder.", f"{prefix}embeddings.", "encoder.", "embeddings.") if prefix != "." else ("",)
    missing = [k for k in info.get("missing_keys", []) if require_head or k.startswith(prefix)]
    unexpected = [k for k in info.get("unexpected_keys", []) if require_head or k.startswith(body)]
    if missing or unexpected:
        parts = [f"{len(found)} {what}, e.g. {found[0]}" for found, what in
                 ((missing, "weights missing"), (unexpected, "unexpected weights")) if found]
        raise InputError(f"{path}: its weights do not match its config.json ({'; '.join(parts)}); the model "
                         "directory is damaged or mixed from two models, save it again")
    return model


def load_task_model(path, head, *, trust_remote_code: bool = False, require_head: bool = True, **kwargs):
    """A model with ``head`` (a :class:`~kdtool.models.heads.Head`, or a task, which has the same fields)
    from a local directory, with one-line errors.

    ``require_head=False`` accepts a bare encoder (or another head) and gives it a new, random head.
    """
    if head.name == "qa":
        return load_qa_model(path, trust_remote_code=trust_remote_code, require_head=require_head, **kwargs)
    import transformers

    path = _check_model_dir(Path(path))
    config = load_config(path, trust_remote_code=trust_remote_code)  # registers kdtool's own model types too
    archs = getattr(config, "architectures", None) or []
    if require_head and archs and not any(a.endswith(head.architecture_suffix) for a in archs):
        raise InputError(f"{path} is a {archs[0]}, not a {head.name} model; fine-tune it first "
                         f"(kdtool finetune --task {head.name}) or give a *{head.architecture_suffix} checkpoint")
    kwargs = {k: v for k, v in kwargs.items() if v is not None and k != "weights_only"}
    try:
        model, info = getattr(transformers, head.auto_model).from_pretrained(
            path, trust_remote_code=trust_remote_code, output_loading_info=True, **kwargs)
        return check_loaded_weights(model, info, path, require_head)
    except (ValueError, OSError, RuntimeError) as err:
        if _needs_remote_code(err):
            raise InputError(f"{path} {REMOTE_CODE_HINT}") from None
        raise InputError(f"{path}: the model could not be loaded: {str(err).strip().splitlines()[0][:200]}") from None


# Families whose learned positions start after padding_idx: position ids run from pad_token_id + 1.
OFFSET_POSITION_FAMILIES = ("roberta", "xlm-roberta", "camembert")


def max_positions(config) -> int | None:
    """How many tokens a window of this model may hold (None when the config sets no limit)."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit and getattr(config, "model_type", "") in OFFSET_POSITION_FAMILIES:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return int(limit) if limit else None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def dir_size_bytes(path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
