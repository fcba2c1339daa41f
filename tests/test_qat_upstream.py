"""kdtool.models.qat copies transformers' BERT/RoBERTa self-attention and changes two of Model Optimizer's module
globals. Each was made against one upstream source (``kdtool.models.qat.UPSTREAM``); when an installed
transformers or nvidia-modelopt changes one of them, this test fails and says what to re-check. No GPU needed."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import warnings

import pytest

from kdtool.models.qat import UPSTREAM


def resolve(dotted: str):
    """The object a dotted name means: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # modelopt warns about transformers versions on import
                obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("name", UPSTREAM)
def test_the_upstream_code_qat_copies_or_patches_is_the_code_it_was_made_from(name):
    digest, recheck = UPSTREAM[name]
    now = hashlib.sha256(inspect.getsource(resolve(name)).encode()).hexdigest()[:16]
    assert now == digest, (f"{name} changed upstream (source sha256 {now}; kdtool.models.qat was made against "
                           f"{digest}). Re-check {recheck}; then record {now} in kdtool.models.qat.UPSTREAM.")


def test_the_patched_globals_are_still_where_the_patches_expect_them():
    from modelopt.torch.opt.plugins import huggingface as hf_checkpointing
    from modelopt.torch.quantization.plugins import custom, huggingface

    from kdtool.models import qat

    plugins = custom.CUSTOM_MODEL_PLUGINS
    assert isinstance(plugins, set) and (qat._READY or huggingface.register_hf_attentions_on_the_fly in plugins), \
        "modelopt no longer registers its HF attention plugin in CUSTOM_MODEL_PLUGINS (a set): re-check " \
        "kdtool.models.qat._patch_modelopt_globals, which removes it"
    assert callable(hf_checkpointing.print_rank_0), "modelopt's HF checkpointing no longer prints through " \
        "print_rank_0: re-check kdtool.models.qat._patch_modelopt_globals"
