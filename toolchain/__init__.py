"""kdtool: distil a large extractive QA model into a small student and ship it to a device.

The package is split by stage; each CLI command is a thin layer over one library function:

    kdtool.data       SQuAD loading, features, post-processing
    kdtool.metrics    official SQuAD F1/EM (English and Spanish rules)
    kdtool.models     loading model directories (heads, QAT checkpoints)
    kdtool.bundle     the bundle format: manifest, checksums, signatures, the precision table
    kdtool.engines    one engine interface over HF model dirs and bundles, one registry of kinds
    kdtool.validate   F1/EM of several engines on one file, with drift against a reference
    kdtool.distill    TinyBERT-style distillation and plain fine-tuning
    kdtool.kernels    fused attention kernels (Triton) with PyTorch references
    kdtool.export     building bundles: ONNX export, fusion, quantization, TensorRT
    kdtool.profiles   device profiles and the latency profiler
"""

__version__ = "0.1.0"
