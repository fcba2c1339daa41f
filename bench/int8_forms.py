#!/usr/bin/env python
"""INT8 forms on the x86-avx2 class: accuracy, exactness on its kernels, and their cost. Prints JSON.

For an x86 CPU without VNNI (an AVX2 EPYC), where ONNX Runtime's u8 x s8 products saturate, kdtool can make
INT8 exact two ways (``kdtool.export.int8_forms``):

- ``u8``: the weights as u8 (zero point 128), or s8 weights with ``session.x64quantprecision`` (what kdtool's
  engines set on such a CPU): ONNX Runtime's u8 x u8 kernels, the same values, so the accuracy of the s8 bundle;
- ``s7``: weights within [-64, 64] (``--reduce-range``): the fast u8 x s8 kernel cannot saturate, but the weights
  lose a bit of resolution (and a QAT model would have to be trained so).

This machine may not be such a CPU, so its kernels are run where they exist: under ``qemu-x86_64 -cpu Haswell``
(AVX2, no AVX-512/VNNI: ONNX Runtime dispatches exactly its AVX2 kernels, saturation included; slow, so it
measures correctness, not speed) and under valgrind (which also hides AVX-512: callgrind counts the
instructions of the AVX2 kernels, deterministic and load-independent, the speed proxy here). Steps:

1. ``kdtool export`` each form of the FP32 model (dynamic INT8) and, with ``--qat-model``, of the QAT model
   (``int8-qat``; s8 and u8 only: 7-bit weights would need 7-bit training);
2. F1/EM of every bundle on the dev questions, natively, in one ``kdtool validate`` against the FP32 model;
3. under qemu (AVX2 kernels): each bundle's self-test through kdtool's engine, a plain ONNX Runtime session's
   max |logit diff| from the native logits on the same windows (what saturation does without kdtool), and with
   ``--qemu-validate`` the F1 of the QAT bundles on the dev questions there;
4. under valgrind: instructions per forward pass (batch 1, ``--seq-len``) of each form on the AVX2 kernels.

    python bench/int8_forms.py --model student --qat-model student-qat --data dev.json --out WORK \\
        --results bench/results/int8_forms.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import emit, keep, machine, sh

KDTOOL_IN_QEMU = ["-c", "import sys; from kdtool.cli import main; sys.exit(main())"]
# qemu 7.2 crashes (SIGSEGV) in numpy's AVX2 argpartition (x86-simd-sort), which span decoding uses: numpy keeps to
# its x86-64-v2 baseline there. Only numpy: ONNX Runtime's own dispatch, the thing measured, still picks AVX2.
QEMU_HASWELL = ["env", "NPY_DISABLE_CPU_FEATURES=X86_V3", "qemu-x86_64", "-cpu", "Haswell"]
FORMS = {  # name -> export options; profile x86-avx2 writes u8 weights, x86-avx512-vnni s8
    "int8-s8": ["--precision", "int8", "--profile", "x86-avx512-vnni"],
    "int8-u8": ["--precision", "int8", "--profile", "x86-avx2"],
    "int8-s7": ["--precision", "int8", "--profile", "x86-avx512-vnni", "--reduce-range"],
}
QAT_FORMS = {"int8-qat-s8": ["--precision", "int8-qat", "--profile", "x86-avx512-vnni"],
             "int8-qat-u8": ["--precision", "int8-qat", "--profile", "x86-avx2"]}

EMULATED = """
import json, sys
import numpy as np
import onnxruntime as ort
from kdtool.bundle.arithmetic import this_machine
from kdtool.engines import load_engine
from kdtool.export.onnx_export import run_session

windows, out = dict(np.load(sys.argv[1])), {"arithmetic": this_machine().arithmetic}
work = sys.argv[1].rsplit("/", 1)[0]
for bundle in sys.argv[2:]:
    result = load_engine(bundle, device="cpu").self_test()
    plain = ort.SessionOptions()
    plain.log_severity_level = 3
    logits = run_session(ort.InferenceSession(bundle + "/model.onnx", plain, providers=["CPUExecutionProvider"]), windows)
    np.save(work + "/" + bundle.rsplit("/", 1)[1] + "-plain-avx2.npy", np.stack(logits))  # beside, never in, the bundle
    out[bundle] = {"self_test": result.to_dict()}
print(json.dumps(out))
"""

TIMED = """
import sys
import numpy as np
from kdtool.engines import load_engine
engine = load_engine(sys.argv[1], device="cpu", threads=1)
batch = {k: v[:1] for k, v in np.load(sys.argv[2]).items()}
for _ in range(int(sys.argv[3])):
    engine.run(batch)
"""


def export_forms(model: Path, forms: dict, out: Path, data: Path, seq: int) -> dict[str, Path]:
    made = {}
    for name, options in forms.items():
        bundle = out / name
        if not (bundle / "manifest.json").exists():
            sh(["kdtool", "export", str(model), "-o", str(bundle), "--calibration-data", str(data), "--max-seq-length",
                str(seq), "--overwrite", *options])
        made[name] = bundle
    return made


def native_logits(bundles: dict[str, Path], windows: Path) -> dict[str, object]:
    import numpy as np

    from kdtool.engines import load_engine

    batch = dict(np.load(windows))
    return {name: np.stack(load_engine(b, device="cpu").run(batch)) for name, b in bundles.items()}


def emulated(bundles: dict[str, Path], windows: Path, native: dict) -> dict:
    """Self-tests and plain-session logits on qemu's Haswell (AVX2 kernels); diffs against the native logits."""
    import numpy as np

    done = subprocess.run([*QEMU_HASWELL, sys.executable, "-c", EMULATED, str(windows),
                           *(str(b) for b in bundles.values())], capture_output=True, text=True, check=True)
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    mask = np.load(windows)["attention_mask"].astype(bool)
    result = {"arithmetic": raw["arithmetic"]}
    for name, b in bundles.items():
        plain = np.load(windows.parent / f"{b.name}-plain-avx2.npy")
        st = raw[str(b)]["self_test"]
        result[name] = {"self_test_passed": st["passed"], "self_test_max_abs_logit_diff": st["max_abs_logit_diff"],
                        "self_test_bound": st["bound"],
                        "plain_ort_max_abs_logit_diff": round(float(np.abs(plain - native[name])[:, mask].max()), 5),
                        "plain_ort_argmax_agreement": round(float(
                            (np.where(mask, plain, -np.inf).argmax(-1) == np.where(mask, native[name], -np.inf).argmax(-1))
                            .mean()), 4)}
    return result


def instructions(bundle: Path, windows: Path, runs: int) -> int:
    """Instructions per forward pass on valgrind's (AVX2) kernels: a run with ``runs`` passes minus one with none."""
    counts = []
    for n in (0, runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cg.out"
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", TIMED,
                            str(bundle), str(windows), str(n)], capture_output=True, text=True, check=True)
            summary = next(line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:")))
            counts.append(int(summary.split()[1]))
    return (counts[1] - counts[0]) // runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="FP32 QA model directory (dynamic INT8 forms)")
    ap.add_argument("--qat-model", type=Path, default=None, help="a kdtool --qat model directory (int8-qat forms)")
    ap.add_argument("--data", type=Path, required=True, help="dev SQuAD file: validate, windows and calibration")
    ap.add_argument("--out", type=Path, default=Path("bench/out/int8_forms"))
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--doc-stride", type=int, default=96)
    ap.add_argument("--windows", type=int, default=8, help="dev windows compared natively and under qemu")
    ap.add_argument("--valgrind-runs", type=int, default=3, help="forward passes counted under valgrind (0: skip)")
    ap.add_argument("--qemu-validate", action="store_true", help="also score the QAT bundles on all dev questions under qemu")
    args = ap.parse_args()

    import numpy as np

    from kdtool.export.samples import sample_windows
    from kdtool.models import load_tokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    bundles = export_forms(args.model, FORMS, args.out, args.data, args.seq_len)
    if args.qat_model:
        bundles.update(export_forms(args.qat_model, QAT_FORMS, args.out, args.data, args.seq_len))
    windows = args.out / "windows.npz"
    batch = sample_windows(load_tokenizer(args.model), args.data, args.windows, args.seq_len, batch_size=args.windows)[0]
    np.savez(windows, **batch)
    result = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()}, "bundles": {}}
    common = ["--data", str(args.data), "--lang", "es", "--max-length", str(args.seq_len), "--doc-stride",
              str(args.doc_stride), "--device", "cpu"]
    scores = args.out / "validate.json"
    reference = [str(args.model)] + ([str(args.qat_model)] if args.qat_model else [])
    sh(["kdtool", "validate", *reference, *(str(b) for b in bundles.values()), *common, "--json", str(scores)])
    by_path = {m["path"]: m for m in json.loads(scores.read_text())["models"]}
    for name, b in bundles.items():
        m = by_path[str(b)]
        manifest = json.loads((b / "manifest.json").read_text())
        result["bundles"][name] = {"f1": round(m["f1"], 2), "exact_match": round(m["exact_match"], 2),
                                   "f1_drop_vs_fp32": round(m["f1_drop"], 2), "agreement_vs_fp32": round(m["agreement"], 1),
                                   "weights": manifest["int8"]["weights"], "model_bytes": (b / "model.onnx").stat().st_size}
    if shutil.which("qemu-x86_64"):
        result["avx2_emulated"] = emulated(bundles, windows, native_logits(bundles, windows))
        keep(result, args.results)  # the steps below take an hour under qemu and valgrind
        if args.qemu_validate and args.qat_model:
            qat = [str(b) for n, b in bundles.items() if n.startswith("int8-qat")]
            emulated_scores = args.out / "validate-avx2.json"
            sh([*QEMU_HASWELL, sys.executable, *KDTOOL_IN_QEMU, "validate", *qat, *common,
                "--json", str(emulated_scores)])
            fp32_f1 = json.loads(scores.read_text())["models"][0]["f1"]
            result["avx2_emulated"]["validate"] = {
                Path(m["path"]).name: {"f1": round(m["f1"], 2), "exact_match": round(m["exact_match"], 2),
                                       "f1_drop_vs_fp32": round(fp32_f1 - m["f1"], 2)}
                for m in json.loads(emulated_scores.read_text())["models"]}
            keep(result, args.results)
    if args.valgrind_runs and shutil.which("valgrind"):
        result["avx2_instructions_per_pass"] = {name: instructions(b, windows, args.valgrind_runs)
                                                for name, b in bundles.items()}
    emit(result, args.results)


if __name__ == "__main__":
    main()
