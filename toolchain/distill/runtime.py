"""Where training runs: Hugging Face Accelerate (one process, DDP over processes or nodes, mixed
precision) or, without the package, a single-process stand-in with the same few methods. (Evaluation
of the in-memory student is the task's ``evaluate``, :mod:`kdtool.tasks`.)
"""

from __future__ import annotations

import contextlib

import torch

from kdtool.errors import EnvironmentUnsupported, InputError


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast is faster, not slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def mixed_precision(precision: str) -> str:
    """Accelerate's ``mixed_precision`` for ``--precision``.

    ``auto`` is bf16 (or fp16) on a GPU and fp32 on CPU, so CPU runs stay repeatable and exact.
    ``bf16`` on CPU is allowed where the CPU has native bf16 (AVX512-BF16 / AMX): a MiniLM training
    step at batch 16 x 256 tokens takes 1.35 s instead of 2.05 s on this project's 2-core EPYC.
    fp16 needs a GPU (CPU autocast has no loss scaling).
    """
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if precision == "bf16" and not cuda and not cpu_has_bf16():
        raise InputError("--precision bf16 needs a CUDA GPU or a CPU with native bf16 (AVX512-BF16 or AMX); "
                         "use fp32 (or auto) here")
    if precision == "fp16" and not cuda:
        raise InputError("--precision fp16 needs a CUDA GPU; use fp32 (or auto) on CPU, or bf16 on a CPU with AVX512-BF16")
    return "no" if precision == "fp32" else precision


class SingleProcess:
    """The subset of ``accelerate.Accelerator`` the trainer uses, for one process without the package."""

    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self, mixed: str):
        if mixed != "no":
            raise EnvironmentUnsupported("mixed precision training needs the 'accelerate' package (pip install accelerate)")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.scaler = None

    def prepare(self, *objs):
        return objs[0].to(self.device) if len(objs) == 1 else tuple(o.to(self.device) if hasattr(o, "to") else o for o in objs)

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def autocast(self):
        return contextlib.nullcontext()

    def no_sync(self, model):
        return contextlib.nullcontext()

    def unwrap_model(self, model):
        return model

    def reduce(self, tensor, reduction="mean"):
        return tensor

    def wait_for_everyone(self):
        pass


def make_accelerator(precision: str, *, find_unused_parameters: bool):
    return accelerator_for(mixed_precision(precision), find_unused_parameters=find_unused_parameters)


def accelerator_for(mixed: str, *, find_unused_parameters: bool = False):
    """An ``Accelerator`` with Accelerate's ``mixed`` precision ("no", "bf16", "fp16").

    Accelerate keeps one process-wide ``AcceleratorState`` and refuses a second ``Accelerator`` with
    another precision. Training runs in one process one after another (a recipe's fp32 finetune then
    a bf16 distill, a notebook, the test suite), so a state left by an earlier run with another
    precision is dropped here; the process group (``PartialState``) is kept, so DDP is unaffected.
    """
    try:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs
    except ImportError:
        return SingleProcess(mixed)
    state = getattr(AcceleratorState, "_shared_state", None) or {}  # private: absent in some release, nothing to drop
    if state.get("_mixed_precision") not in (None, mixed) and hasattr(AcceleratorState, "_reset_state"):
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
