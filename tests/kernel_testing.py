"""Helpers for the kernel tests: where Triton runs, the interpreter subprocess, compiling for sm_90.

Where the Triton kernels are checked against their references:

- on a CUDA GPU: in this process, compiled by Triton;
- on a CPU: in a subprocess with ``TRITON_INTERPRET=1`` (it must be set before triton is
  imported, and setting it here would make every Triton kernel of the test process interpreted),
  which runs the same test file; this process then checks that subprocess passed.

Independently of a GPU, :func:`compile_for_sm90` compiles a kernel for an H100 (sm_90) through
Triton's real compiler down to a cubin, which catches what the interpreter accepts but the
compiler rejects (non-constexpr globals, type errors, unsupported ops).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
if torch.cuda.is_available() and HAS_TRITON and not INTERPRETED:
    TRITON_DEVICE = "cuda"
elif INTERPRETED and HAS_TRITON:
    TRITON_DEVICE = "cpu"
else:
    TRITON_DEVICE = None

_skip_without_triton_device = pytest.mark.skipif(
    TRITON_DEVICE is None, reason="no CUDA GPU: this test runs in the TRITON_INTERPRET=1 subprocess (test_*_under_interpreter)")


def needs_triton_device(test):
    """A kernel case: compiled on a CUDA GPU, interpreted in the subprocess on a CPU, skipped elsewhere.

    It also carries the ``gpu`` marker, so ``pytest -m gpu`` on a GPU machine (bench/gpu/check.sh) runs
    exactly these cases compiled; the interpreter subprocess selects them by name, not by marker.
    """
    return pytest.mark.gpu(_skip_without_triton_device(test))
needs_compiler = pytest.mark.skipif(not HAS_TRITON or INTERPRETED, reason="needs triton's compiler (not the interpreter)")


def run_test_file_under_interpreter(test_file: str, min_passed: int, timeout: int = 300) -> str:
    """Run the ``test_triton_*`` tests of ``test_file`` with TRITON_INTERPRET=1 in a subprocess.

    Fails with the subprocess's output unless they all pass and at least ``min_passed`` ran.
    """
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "-k", "test_triton_", "-p", "no:cacheprovider",
                             "-W",
                             "ignore::RuntimeWarning"], env=env, capture_output=True, text=True, timeout=timeout)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, f"interpreter run failed ({summary}):\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= min_passed, f"too few interpreter tests ran: {summary}"
    return summary


def compile_for_sm90(kernel, arg_types: dict, constexprs: dict, *, num_warps: int = 4, num_stages: int = 2):
    """Compile a ``@triton.jit`` kernel for sm_90 without a GPU; unnamed arguments are int32 scalars."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: "constexpr" if name in constexprs else arg_types.get(name, "i32") for name in kernel.arg_names}
    compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    assert compiled.asm.get("cubin"), "no cubin produced"
    return compiled


def assert_close_to_reference(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str):
    """|actual - expected| <= rel * max|expected| (plus a tiny floor), with no NaN or inf anywhere."""
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    actual, expected = actual.float().cpu(), expected.float().cpu()
    scale = expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= rel * scale + 1e-7, f"{what}: max error {error:.3g} vs max |reference| {scale:.3g} (rel {rel})"
