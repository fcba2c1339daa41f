"""The integer arithmetic of a target: ONE table of classes, and what this machine's ONNX Runtime does.

INT8 matrix products are where CPUs differ. ONNX Runtime (MLAS) on x86 multiplies u8 activations by s8
weights; without VNNI it does so with ``vpmaddubsw``, which adds each pair of products into an int16 and
saturates (255 * 127 * 2 = 64770 > 32767), so a graph that is exact on a VNNI CPU (``vpdpbusd``
accumulates in int32) can be wrong on an AVX2 one. u8 x u8, s8 x s8 and s8 x u8 products are exact on
every x86 class, as are ARM64's dot products and TensorRT's symmetric s8 kernels.

kdtool makes every INT8 bundle exact wherever it runs it:

- at run time, on a CPU whose u8 x s8 products saturate, ONNX Runtime is told to run its exact u8 x u8
  kernels for every weight wider than 7 bits (``session.x64quantprecision``; weights within [-64, 64]
  cannot overflow and keep the fast kernel): :func:`ort_exactness_config`;
- at export, for an ``x86-avx2`` target, the weights are stored as u8 (zero point 128), the form that is
  exact on that class in any ONNX Runtime, kdtool's or not (``kdtool.export.int8_forms``).

Which class a machine belongs to is not read from its flags alone: :func:`probe_u8s8_saturates` runs one
u8 x s8 product through ONNX Runtime and looks at the result, so the answer is what the kernels really do
(also under an emulator or a hypervisor that hides flags). ``/proc/cpuinfo`` names the CPU for reports.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

from kdtool.errors import InputError

X64_PRECISION_KEY = "session.x64quantprecision"  # ORT: "1" = exact u8 x u8 where s8 weights could overflow


@dataclass(frozen=True)
class ArithmeticClass:
    name: str
    description: str
    u8s8_saturates: bool  # ONNX Runtime's u8 x s8 products saturate at int16 on this class
    family: str  # "x86", "arm64" or "gpu"


ARITHMETIC: dict[str, ArithmeticClass] = {a.name: a for a in (
    ArithmeticClass("x86-avx2", "x86-64 without VNNI (SSE4.1, AVX2, AVX-512 without VNNI): u8 x s8 pair sums "
                    "saturate at int16 (vpmaddubsw)", True, "x86"),
    ArithmeticClass("x86-vnni", "x86-64 with AVX-512 VNNI, AVX-VNNI or AMX: u8 x s8 accumulates in int32 (vpdpbusd)",
                    False, "x86"),
    ArithmeticClass("arm64", "ARM64 (NEON, dot-product or i8mm): integer products accumulate in int32", False, "arm64"),
    ArithmeticClass("tensorrt", "NVIDIA GPU under TensorRT: symmetric s8 Q/DQ, int32 accumulation", False, "gpu"),
)}

# the /proc/cpuinfo flags that decide the x86 INT8 path, named in reports
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
              "asimddp", "i8mm")


def get_arithmetic(name: str) -> ArithmeticClass:
    try:
        return ARITHMETIC[name]
    except KeyError:
        raise InputError(f"unknown INT8 arithmetic {name!r}; choose one of {', '.join(ARITHMETIC)}") from None


@dataclass(frozen=True)
class Machine:
    """This machine as INT8 arithmetic sees it."""

    arithmetic: str  # a name of ARITHMETIC
    cpu: str  # the CPU model, as /proc/cpuinfo (or the platform) names it
    flags: tuple[str, ...]  # the INT8-relevant flags the kernel reports
    u8s8_saturates: bool  # measured: ONNX Runtime's u8 x s8 product saturated

    def describe(self) -> str:
        flags = ", ".join(self.flags) or "no INT8-relevant flags"
        return f"{self.arithmetic} ({self.cpu}; {flags})"

    def to_dict(self) -> dict:
        return {"arithmetic": self.arithmetic, "cpu": self.cpu, "flags": list(self.flags),
                "u8s8_saturates": self.u8s8_saturates}


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", tuple(f for f in INT8_FLAGS if f in flags)


@functools.cache
def probe_u8s8_saturates() -> bool:
    """Run 255 x 127 summed over 64 products through ONNX Runtime's u8 x s8 kernel: True if it saturated."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    weights = numpy_helper.from_array(np.full((k, 8), 127, np.int8), "W")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [4, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [4, 8])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {"A": np.full((4, k), 255, np.uint8)})[0]
    return bool((got != 255 * 127 * k).any())


@functools.cache
def this_machine() -> Machine:
    """The arithmetic class of this machine's CPU, measured through ONNX Runtime, with its name and flags."""
    cpu, flags = _cpuinfo()
    saturates = probe_u8s8_saturates()
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        name = "arm64"
    else:
        name = "x86-avx2" if saturates else "x86-vnni"
    return Machine(arithmetic=name, cpu=cpu, flags=flags, u8s8_saturates=saturates)


def ort_exactness_config(*, int8_activations: bool = False) -> dict[str, str]:
    """ONNX Runtime session config entries that make INT8 products exact on this machine.

    Where u8 x s8 saturates, ``session.x64quantprecision=1`` (exact u8 x u8 for weights beyond 7 bits). Not
    with s8 activations kept (``session.qdqisint8allowed``): s8 x s8 is exact there already, and ORT has no
    s8 x u8 kernel for the weights it would convert.
    """
    if int8_activations or not probe_u8s8_saturates():
        return {}
    return {X64_PRECISION_KEY: "1"}
