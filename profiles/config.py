"""What ``kdtool profile`` measures, as one config: each field's default, help and option in one place
(:mod:`kdtool.fields`); ``None`` fields come from the device profile, else from :data:`AUTO_DEFAULTS`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.data.features import MAX_LENGTH
from kdtool.engines.settings import require_signature_setting, threads_setting, trust_remote_code_setting
from kdtool.fields import setting

# Defaults per device when no profile is given: data, not branches.
AUTO_DEFAULTS = {
    "cpu": {"seq_lengths": (128, 256, MAX_LENGTH), "batch_sizes": (1,), "runs": 20, "warmup": 3},
    "cuda": {"seq_lengths": (128, 256, MAX_LENGTH), "batch_sizes": (1, 8), "runs": 100, "warmup": 10},
}


def _auto(key: str, profile: bool = True) -> str:
    """What --help says a field's default is, read from AUTO_DEFAULTS (``profile``: a device profile sets it first)."""
    cpu, cuda = (",".join(map(str, v)) if isinstance(v, tuple) else str(v)
                 for v in (AUTO_DEFAULTS["cpu"][key], AUTO_DEFAULTS["cuda"][key]))
    auto = cpu if cpu == cuda else f"{cpu} on CPU and {cuda} on CUDA"
    return f"the profile's, else {auto}" if profile else auto


@dataclass
class ProfileConfig:
    """What to profile; ``None`` fields come from the device profile, else from :data:`AUTO_DEFAULTS`."""

    models: list = setting(argument=True)  # paths: HF model dirs or bundle dirs; the first is the reference
    profile: str | None = setting(None, help="Device profile for defaults and device (kdtool profiles lists them).",
                                  default_help="this machine, CPU or CUDA")
    seq_lengths: list[int] | None = setting(None, option="--seq-len", type="ints", help="Sequence lengths.",
                                            default_help=_auto("seq_lengths"))
    batch_sizes: list[int] | None = setting(None, option="--batch-size", type="ints", help="Batch sizes.",
                                            default_help=_auto("batch_sizes"))
    data: str | Path | None = setting(  # a SQuAD file: also measure over its real tokenized lengths
        None, type="file", help="A SQuAD JSON file: also measure latency per question over its real tokenized lengths.")
    # questions of ``data`` used (an evenly spread, seeded sample); None: all
    data_limit: int | None = setting(200, type="count", help="Questions of --data used (evenly spread).")
    runs: int | None = setting(None, type="count", help="Timed runs per model and shape.", default_help=_auto("runs", False))
    # untimed runs per model and shape (at least 1: peak memory is read there)
    warmup: int | None = setting(None, type="count", help="Untimed runs per model and shape first.",
                                 default_help=_auto("warmup", False))
    threads: int | None = threads_setting("CPU threads.", default_help="the profile's, else all cores")
    device: str | None = setting(None, choices=("cpu", "cuda"), help="Run PyTorch models and bundles here.",
                                 default_help="the profile's, else CUDA when visible")
    seed: int = setting(0, recipe_only=True)
    trust_remote_code: bool = trust_remote_code_setting("model directories", "their")
    # "DTYPE:ATTN" pairs (``fp16:sdpa``, ``bf16:torch-triton``): each Hugging Face directory is opened
    # once per pair and measured as its own row; None: once, as saved, with transformers' default attention
    torch_variants: list[str] | None = setting(
        None, option="--torch-variant", multiple=True, metavar="DTYPE:ATTN",
        help="Open each Hugging Face model directory once per variant, e.g. fp16:sdpa, bf16:torch-triton (DTYPE "
             "fp32|fp16|bf16, ATTN eager|sdpa|torch-triton); repeat the option. Bundles open once.")
    require_signature: str | None = require_signature_setting()  # every bundle among the models must be signed by it
