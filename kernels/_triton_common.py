"""Triton helpers shared by the kernel modules."""

import triton
import triton.language as tl

# PREC "interpreter-fp32" (chosen by _triton_runtime.dot_precision): Triton 3.9's interpreter computes
# tl.dot of bf16 operands wrongly (it multiplies the raw bits), so under the interpreter bf16 products
# are taken in fp32 instead. Compiled kernels never do this.


@triton.jit
def dot(a, b, PREC: tl.constexpr):
    """``tl.dot(a, b)`` accumulated in fp32 with input precision ``PREC`` ("ieee", "tf32")."""
    if PREC == "interpreter-fp32":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PREC)
