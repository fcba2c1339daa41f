"""kdtool.export: ONNX export, fusion, quantization, TensorRT, bundles and their runtimes.

    export_model(ExportConfig(...))  -> bundle directory      (kdtool.export.pipeline)
    load_bundle_engine(path)         -> QAEngine              (kdtool.export.runtime)
    verify_bundle(path)              -> manifest dict         (kdtool.export.bundle)

Submodules import heavy packages (torch, onnx, onnxruntime, tensorrt) only when used.
"""

from kdtool.export.config import ExportConfig

__all__ = ["ExportConfig", "export_model", "load_bundle_engine", "verify_bundle"]


def __getattr__(name):  # lazy: keep `import kdtool.export` cheap
    if name == "export_model":
        from kdtool.export.pipeline import export_model

        return export_model
    if name == "load_bundle_engine":
        from kdtool.export.runtime import load_bundle_engine

        return load_bundle_engine
    if name == "verify_bundle":
        from kdtool.export.bundle import verify_bundle

        return verify_bundle
    raise AttributeError(name)
