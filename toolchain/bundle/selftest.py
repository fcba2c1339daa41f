"""The self-test a bundle carries: golden windows, the logits its graphs gave where it was certified, the bound.

A bundle is certified (parity, drift) on the machine that exports it and runs on another, whose
arithmetic may differ (:mod:`kdtool.bundle.arithmetic`). ``self_test.json`` travels inside the bundle,
so its checksum and the manifest's signature cover it: a few real feature windows (token ids and
masks), and for each graph the engines run (``model.onnx``; ``model.trt.onnx``, which TensorRT engines
are built from) the logits ONNX Runtime gave on the export machine, with the largest difference a
device may show and still pass. :func:`run_self_test` feeds the windows to an opened engine (the one
``answer`` / ``validate`` / ``serve`` use) and compares.

The bounds (:data:`kdtool.bundle.precision.Precision.self_test_bound`) separate what two correct
devices differ by from what a wrong one does: float kernels of other vector widths round differently,
and in an INT8 graph such a difference can move an activation across a rounding boundary; a u8 x s8
product that saturates, a wrong provider or a damaged kernel moves the logits by far more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from kdtool.errors import IntegrityError

SELF_TEST_FILE = "self_test.json"
SCHEMA = "kdtool-self-test/1"


@dataclass(frozen=True)
class SelfTest:
    inputs: dict[str, np.ndarray]  # [windows, seq] int64 each
    outputs: tuple[str, ...]
    per_token: bool  # outputs are [windows, seq] logits masked by attention_mask (else [windows, labels])
    graphs: dict[str, dict]  # graph member -> {"expected": {output: array}, "bound": {"cpu": x, "cuda": y}}
    made_on: dict


def build_self_test(inputs: dict[str, np.ndarray], outputs, per_token: bool, expected: dict[str, tuple],
                    bounds: dict[str, float], made_on: dict) -> bytes:
    """``self_test.json`` for graphs whose logits on ``inputs`` were ``expected[graph]`` (one array per output)."""
    doc = {
        "schema": SCHEMA, "outputs": list(outputs), "per_token": per_token,
        "inputs": {k: np.asarray(v, dtype=np.int64).tolist() for k, v in inputs.items()},
        "graphs": {g: {"expected": {o: _floats(a) for o, a in zip(outputs, arrays, strict=True)}, "bound": dict(bounds)}
                   for g, arrays in expected.items()},
        "made_on": made_on,
    }
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def _floats(array) -> list:
    """Logits as JSON numbers of 7 significant digits (float32 to within 1e-7 relative, far inside any bound)."""
    return [[float(f"{x:.7g}") for x in row] for row in np.asarray(array, dtype=np.float32).reshape(len(array), -1)] \
        if np.ndim(array) > 1 else [float(f"{x:.7g}") for x in np.asarray(array, dtype=np.float32)]


def parse_self_test(raw: bytes, where: str) -> SelfTest:
    """The self-test in ``raw`` (verified bytes of a bundle member); IntegrityError when malformed."""
    def damaged(what: str) -> IntegrityError:
        return IntegrityError(f"{where}: {SELF_TEST_FILE} is damaged ({what}); export the bundle again")

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise damaged("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise damaged(f"schema is not {SCHEMA}")
    try:
        inputs = {str(k): np.asarray(v, dtype=np.int64) for k, v in doc["inputs"].items()}
        outputs = tuple(str(o) for o in doc["outputs"])
        graphs = {}
        for name, g in doc["graphs"].items():
            expected = {o: np.asarray(g["expected"][o], dtype=np.float32) for o in outputs}
            bound = {str(k): float(v) for k, v in g["bound"].items()}
            graphs[str(name)] = {"expected": expected, "bound": bound}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise damaged(f"{type(err).__name__}: {str(err)[:80]}") from None
    shapes = {a.shape for a in inputs.values()}
    if "input_ids" not in inputs or "attention_mask" not in inputs or len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise damaged("its windows are not [windows, tokens] arrays of input_ids and attention_mask")
    for g in graphs.values():
        if any(a.shape[0] != len(inputs["input_ids"]) for a in g["expected"].values()):
            raise damaged("expected logits do not match its windows")
    return SelfTest(inputs=inputs, outputs=outputs, per_token=bool(doc.get("per_token", True)), graphs=graphs,
                    made_on=doc.get("made_on") if isinstance(doc.get("made_on"), dict) else {})


@dataclass(frozen=True)
class SelfTestResult:
    passed: bool
    max_abs_logit_diff: float
    argmax_agreement: float  # share of (window, output) rows whose argmax equals the expected one
    bound: float
    graph: str
    device: str  # "cpu" or "cuda"
    engine: str  # the engine kind
    providers: tuple[str, ...]
    windows: int
    machine: dict  # this machine's arithmetic class, CPU and flags (or the GPU)
    made_on: dict

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        where = self.machine.get("gpu") or f"{self.machine.get('arithmetic')} ({self.machine.get('cpu')}; " \
                                           f"{', '.join(self.machine.get('flags', [])) or 'no INT8 flags'})"
        return (f"self-test {verdict}: max |logit diff| {self.max_abs_logit_diff:.2e} (bound {self.bound:.2e}), argmax "
                f"agreement {100 * self.argmax_agreement:.1f}% over {self.windows} windows of {self.graph} on "
                f"{self.engine} [{', '.join(self.providers) or self.device}], {where}")

    def to_dict(self) -> dict:
        return {"passed": self.passed, "max_abs_logit_diff": self.max_abs_logit_diff,
                "argmax_agreement": self.argmax_agreement, "bound": self.bound, "graph": self.graph,
                "device": self.device, "engine": self.engine, "providers": list(self.providers),
                "windows": self.windows, "machine": self.machine, "made_on": self.made_on}


def compare(test: SelfTest, graph: str, device: str, got: tuple[np.ndarray, ...]) -> tuple[float, float, float]:
    """(max |diff| over real positions, argmax agreement, bound) of ``got`` against the expected logits."""
    entry = test.graphs[graph]
    bound = entry["bound"].get("cuda" if device.startswith("cuda") else "cpu")
    if bound is None:
        raise IntegrityError(f"{SELF_TEST_FILE} has no bound for {device} engines; export the bundle again")
    mask = test.inputs["attention_mask"].astype(bool)
    worst, agree, rows = 0.0, 0, 0
    for name, g in zip(test.outputs, got, strict=True):
        e = entry["expected"][name]
        g = np.asarray(g, dtype=np.float32)
        if g.shape != e.shape:
            return float("inf"), 0.0, bound
        m = mask if test.per_token else np.ones_like(e, dtype=bool)
        worst = max(worst, float(np.abs(g - e)[m].max()))
        neg = np.where(m, 0, -np.inf)
        agree += int(((g + neg).argmax(-1) == (e + neg).argmax(-1)).sum())
        rows += len(e)
    return worst, agree / max(rows, 1), bound
