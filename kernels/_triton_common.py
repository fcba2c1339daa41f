"""Triton helpers shared by the kernel modules."""

import triton
import triton.language as tl

# Triton 3.9's interpreter computes tl.dot of bf16 operands wrongly (it multiplies the raw bits);
# under the interpreter, bf16 products are taken in fp32 instead. Compiled kernels never do this.
INTERPRETER_BF16_PRECISION = "interpreter-fp32"


@triton.jit
def dot(a, b, PREC: tl.constexpr):
    """``tl.dot(a, b)`` accumulated in fp32 with input precision ``PREC`` ("ieee", "tf32")."""
    if PREC == "interpreter-fp32":
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=PREC)
