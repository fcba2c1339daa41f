"""The bundle self-test on the GPU engines: the student exported as a bundle, its self-test run per engine. JSON.

``kdtool verify BUNDLE --run`` on each engine a bundle can open here: ONNX Runtime's CPU provider (the
reference machine class), its CUDA provider (FP32 bundle; needs onnxruntime-gpu) and the bundle's TensorRT
engine (needs TensorRT; built by ``kdtool export --trt`` when TensorRT and a GPU are present). An engine that
cannot open here is recorded with its one-line reason, not as a failure of the self-test.

    python bench/gpu/selftest.py MODELS_DIR OUT.json [--tiny]     # MODELS_DIR from bench/gpu/make_models.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared harness

from harness import emit  # noqa: E402

BUNDLES = {"fp32": ["--precision", "fp32", "--trt"], "int8": ["--precision", "int8", "--trt"]}
DEVICES = {"fp32": ("cpu", "cuda", "tensorrt"), "int8": ("cpu", "tensorrt")}  # ORT's CUDA provider runs no INT8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiny", action="store_true", help="short windows (the CPU dry run)")
    args = ap.parse_args()

    from kdtool.engines.registry import run_bundle_self_test
    from kdtool.errors import KdtoolError
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.export.samples import BUILTIN

    data = args.models / "calibration.json"  # the built-in sentences as a SQuAD file: real text for calibration
    data.write_text(json.dumps({"version": "1.1", "data": [{"title": "builtin", "paragraphs": [
        {"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [{"text": c.split()[0], "answer_start": 0}]}]}
        for i, (q, c) in enumerate(BUILTIN)]}]}, ensure_ascii=False))
    result = {"bundles": {}}
    for name, options in BUNDLES.items():
        bundle = args.models / f"bundle-{name}"
        export_model(ExportConfig(args.models / "student", bundle, precision=options[1], trt=True, calibration_data=data,
                                  max_seq_length=64 if args.tiny else 384, overwrite=bundle.exists()))
        manifest = json.loads((bundle / "manifest.json").read_text())
        runs = {"tensorrt_engine_built": bool((manifest.get("tensorrt") or {}).get("built"))}
        for device in DEVICES[name]:
            try:
                runs[device] = run_bundle_self_test(bundle, device=device).to_dict()
            except KdtoolError as err:  # no CUDA provider, no TensorRT, no GPU: said, not failed
                runs[device] = {"passed": None, "not_run": str(err)}
        result["bundles"][name] = runs
    emit(result, args.out)
    if any(r.get("passed") is False for runs in result["bundles"].values() for r in runs.values() if isinstance(r, dict)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
