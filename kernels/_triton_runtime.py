"""Choosing between a Triton kernel and its plain-PyTorch reference, and running Triton on the CPU.

Every public kernel function takes ``backend="auto" | "triton" | "reference"``:

- ``"auto"``: Triton when the tensors are on a CUDA device and triton is installed, else the reference;
- ``"triton"``: always the Triton kernel. On CUDA tensors it is compiled; on CPU tensors it runs
  under Triton's interpreter (``TRITON_INTERPRET=1``), which executes the same kernel source with
  numpy, so tests on a CPU-only machine check the kernel code itself and not only the fallback;
- ``"reference"``: the plain-PyTorch reference (autograd supplies its gradients).

Triton decides when it is imported whether kernels are compiled or interpreted (its own
``tl.zeros``, ``tl.sum``, ... are jit functions built at that moment), so the interpreter needs
``TRITON_INTERPRET=1`` in the environment before ``import triton``: ``TRITON_INTERPRET=1 python ...``.
kdtool never sets it itself, as that would turn every compiled kernel of the process into an
interpreted one. The kernel tests run their CPU cases in a subprocess that has it set.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

BACKENDS = ("auto", "triton", "reference")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, tensor: torch.Tensor) -> str:
    """``"triton"`` or ``"reference"`` for a tensor on its device; a ValueError for an unknown name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if tensor.is_cuda and triton_available() else "reference"
    if backend == "triton" and not triton_available():
        raise ImportError("backend='triton' needs the triton package (pip install 'kdtool[kernels]')")
    return backend


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernel_module(name: str, tensor: torch.Tensor):
    """The Triton kernel module ``name`` for ``tensor``: compiled on CUDA, interpreted on the CPU."""
    if not tensor.is_cuda and not interpreter_enabled():
        raise RuntimeError("backend='triton' on CPU tensors runs Triton's interpreter, which needs TRITON_INTERPRET=1 "
                           "in the environment before triton is imported (TRITON_INTERPRET=1 python ...)")
    return importlib.import_module(name)


def key_mask_int32(key_mask: torch.Tensor, batch: int, seq: int) -> torch.Tensor:
    """``key_mask`` ([batch, seq], nonzero = real token) as a contiguous int32 tensor, shape-checked."""
    if tuple(key_mask.shape) != (batch, seq):
        raise ValueError(f"key_mask must have shape [batch, seq] = [{batch}, {seq}], got {list(key_mask.shape)}")
    return (key_mask != 0).to(torch.int32).contiguous()


def key_lengths(key_mask_i32: torch.Tensor) -> torch.Tensor:
    """Per batch element, one past the last real key (0 for a fully padded row): kernels stop there."""
    positions = torch.arange(1, key_mask_i32.shape[1] + 1, device=key_mask_i32.device, dtype=torch.int32)
    return (key_mask_i32 * positions).amax(dim=1).to(torch.int32).contiguous()


def padded_head_dim(head_dim: int) -> int:
    """The tile width for a head dim: a power of two, at least 16 (the smallest ``tl.dot`` operand)."""
    return max(16, 1 << (head_dim - 1).bit_length())


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get IEEE products (matching the reference); fp16/bf16 use the tensor cores as they are."""
    if dtype == torch.bfloat16 and interpreter_enabled():
        return "interpreter-fp32"  # see kdtool.kernels._triton_common
    return "ieee" if dtype == torch.float32 else "tf32"
