"""``export_model``: a Hugging Face QA directory in, a verified deployable bundle out.

Stages (each reported through ``progress``): check inputs -> Optimum ONNX export -> parity with
PyTorch on real feature windows -> ORT transformer fusion -> precision (FP32 / FP16 / INT8
dynamic / INT8 static QDQ) -> optional TensorRT-ready ONNX and engine -> tokenizer, config,
manifest. Everything is written inside :func:`kdtool.atomic.atomic_directory`, so a failed or
killed export leaves no bundle behind.
"""

from __future__ import annotations

from pathlib import Path

from kdtool.atomic import atomic_directory, check_output_dir, scratch_dir
from kdtool.bundle import manifest as B
from kdtool.bundle.arithmetic import this_machine
from kdtool.bundle.precision import Precision, get_precision
from kdtool.bundle.verified import open_verified_bundle
from kdtool.engines.trt import ENGINE_FILE, build_unavailable_reason
from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError, require_file
from kdtool.export import trt as T
from kdtool.export.config import ExportConfig
from kdtool.export.fp16 import convert_fp16
from kdtool.export.fusion import fuse_transformer
from kdtool.export.int8_forms import WEIGHT_FORMS, to_u8_weights, weight_form
from kdtool.export.onnx_export import custom_exporter, export_onnx, parity, torch_logits
from kdtool.export.qat import export_qat_onnx, ort_integer_kernels, qdq_summary
from kdtool.export.quantize import quantize_int8_dynamic, quantize_int8_static
from kdtool.export.samples import sample_windows
from kdtool.export.self_test import certified_on, write_self_test
from kdtool.models import count_parameters, load_task_model, load_tokenizer, max_positions
from kdtool.profiles import DeviceProfile, get_profile
from kdtool.progress import Progress, say
from kdtool.tasks import resolve_task

MODEL_FILE = "model.onnx"


def _onnx_io(path: Path) -> tuple[list[dict], list[dict]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def describe(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return [describe(v) for v in graph.input if v.name not in inits], [describe(v) for v in graph.output]


def _copy_onnx(src: Path, dst: Path) -> None:
    import onnx

    model = onnx.load(str(src))
    onnx.save_model(model, str(dst), save_as_external_data=model.ByteSize() > (1 << 31) - (1 << 26),
                    location=dst.name + ".data")


def _target(profile, precision: Precision) -> tuple[str, str]:
    """The INT8 arithmetic class the export is for, and where that came from (the profile, else this machine)."""
    if profile is not None and profile.int8_arithmetic:
        return profile.int8_arithmetic, f"profile {profile.name}"
    if profile is not None and profile.device == "cuda" and precision.int8:
        return "tensorrt", f"profile {profile.name}"
    return this_machine().arithmetic, "this machine"


def _resolve(config: ExportConfig) -> tuple[object, Precision]:
    profile = get_profile(config.profile) if config.profile else None
    precision = get_precision(config.precision or (profile.precision if profile else "fp32"))
    if config.calibration_data is not None:
        require_file(config.calibration_data, "calibration data")
    if precision.calibrated and config.calibration_data is None:
        raise InputError(f"--precision {precision.name} needs real calibration features: pass --calibration-data SQUAD.json")
    if precision.quantizer == "qat":
        from kdtool.models.qat import is_qat_dir  # defers torch to the QAT export

        if not is_qat_dir(config.model_dir):
            raise InputError(f"--precision int8-qat exports a quantization-aware-trained model, and {config.model_dir} "
                             "has no modelopt_state.pth; train it with kdtool distill/finetune --qat, or use "
                             "--precision int8")
        if config.reduce_range:
            raise InputError("--reduce-range requantizes weights; an int8-qat graph keeps the scales it was trained with: "
                             "drop it")
        if config.fast_gelu:
            raise InputError("--fast-gelu rewrites the fused FP32 graph; an int8-qat graph is not fused: drop --fast-gelu")
    elif config.trt and precision.trt_calibrated and config.calibration_data is None:
        raise InputError("--trt at INT8 needs calibrated Q/DQ scales: pass --calibration-data SQUAD.json")
    if config.reduce_range and not precision.int8:
        raise InputError(f"--reduce-range narrows INT8 weights, but the precision is {precision.name}; "
                         "add --precision int8 (or int8-static), or drop --reduce-range")
    return profile, precision


def _max_length(config: ExportConfig, profile, model) -> int:
    wanted = config.max_seq_length or (profile.max_seq_length if profile else 384)
    limit = max_positions(model.config)
    if limit and wanted > limit:
        if config.max_seq_length:
            raise InputError(f"--max-seq-length {wanted} exceeds what {config.model_dir} accepts ({limit} positions)")
        return int(limit)
    return int(wanted)


def export_model(config: ExportConfig, *, progress: Progress | None = None) -> Path:
    """Export ``config.model_dir`` to a bundle at ``config.output``; return the bundle path.

    Each stage is reported to ``progress`` as a line (:mod:`kdtool.progress`)."""
    check_output_dir(config.output, config.overwrite, kind="bundle")  # fail before minutes of work, not after
    profile, precision = _resolve(config)
    task = resolve_task(None, config.model_dir)  # what the head is decides the Optimum task and the outputs
    model = load_task_model(config.model_dir, task, trust_remote_code=config.trust_remote_code).eval()
    custom = custom_exporter(model.config.model_type)
    qat = precision.quantizer == "qat"  # the graph is the fake-quantized model itself, exported as QDQ (export/qat.py)
    fuse = config.fuse and not qat and (custom is None or custom.fuse)
    tokenizer = load_tokenizer(config.model_dir, trust_remote_code=config.trust_remote_code)
    max_len = _max_length(config, profile, model)
    data = config.calibration_data
    say(progress, f"[1/6] reference logits: PyTorch FP32 on {'windows of ' + data.name if data else 'built-in examples'}")
    checks = sample_windows(tokenizer, data, config.parity_samples, max_len, batch_size=4)
    reference = torch_logits(model, checks, task.outputs)
    calibration = None
    if precision.calibrated or (config.trt and precision.trt_calibrated):
        # one shape for every window: histogram calibrators (entropy, percentile) stack activations across batches
        calibration = sample_windows(tokenizer, data, config.calibration_samples, max_len, pad_to_max=True)

    with scratch_dir("export") as work, \
            atomic_directory(config.output, overwrite=config.overwrite, kind="bundle") as out:
        work = Path(work)
        say(progress, f"[2/6] ONNX export ({'QAT QDQ' if qat else 'kdtool' if custom else 'Optimum'}, {task.optimum_task}, "
            f"opset {config.opset})")
        if qat:
            plain = export_qat_onnx(model, work / "plain" / MODEL_FILE, checks[0], opset=config.opset,
                                    outputs=task.outputs)
        else:
            plain = export_onnx(config.model_dir, work / "plain", opset=config.opset,
                                trust_remote_code=config.trust_remote_code, task=task.optimum_task,
                                model_type=model.config.model_type)
        plain_parity = parity(reference, plain, checks, task.outputs, task.per_token)
        if qat:
            plain_parity["reference"] = "pytorch fake-quantized (QAT)"
        if plain_parity["max_abs_logit_diff"] > (config.qat_parity_tolerance if qat else config.parity_tolerance):
            raise IntegrityError(f"ONNX export of {config.model_dir} differs from PyTorch by "
                                 f"{plain_parity['max_abs_logit_diff']:.2e} (> "
                                 f"{config.qat_parity_tolerance if qat else config.parity_tolerance}); not bundling it")
        graph, fusion = plain, {}
        if fuse:
            say(progress, "[3/6] transformer fusion (ORT optimizer)")
            graph = work / "fused.onnx"
            fusion = fuse_transformer(plain, graph, model.config, gelu_approximation=config.fast_gelu)
        final = out / MODEL_FILE
        target, target_from = _target(profile, precision)
        form = weight_form(target, reduce_range=config.reduce_range) if precision.int8 else None
        say(progress, f"[4/6] precision {precision.name}" + (
            f" for {target} INT8 arithmetic ({target_from}: {this_machine().describe()}"
            f"{'; --profile exports for another CPU' if target_from == 'this machine' else ''}), {form} weights"
            if precision.int8 else ""))
        quant = _apply_precision(precision, graph, final, config, calibration, fused=fuse)
        if form == "u8":
            quant.update(to_u8_weights(final))
        say(progress, "[5/6] parity of the bundled graph against PyTorch")
        final_parity = _safe_parity(reference, final, checks, task)
        if qat:
            final_parity["reference"] = plain_parity["reference"]
        # FastGelu is an approximation by choice: its FP32 graph is not held to the exactness tolerance
        if precision.exact and not config.fast_gelu and (final_parity["max_abs_logit_diff"] or 0) > config.parity_tolerance:
            raise IntegrityError(f"the fused FP32 graph differs from PyTorch by {final_parity['max_abs_logit_diff']:.2e} "
                                 f"(> {config.parity_tolerance}); export with --no-fuse")
        trt_section = None
        if config.trt:
            trt_section = _trt_stage(plain, out, precision, calibration, config, profile, progress)
        say(progress, "[5b] self-test: golden windows and the logits of the bundled graphs, on this machine")
        self_test = write_self_test(out, checks[0], task, precision,
                                    [MODEL_FILE] + ([T.TRT_ONNX_FILE] if trt_section is not None else []))
        tokenizer.save_pretrained(out)
        model.config.save_pretrained(out)
        inputs, outputs = _onnx_io(final)
        manifest = B.new_manifest(
            source={"path": str(config.model_dir.resolve()), "sha256": B.source_digest(config.model_dir),
                    "model_type": model.config.model_type, "architectures": list(model.config.architectures or [])},
            model=MODEL_FILE, precision=precision.name, opset=config.opset, max_seq_length=max_len,
            inputs=inputs, outputs=outputs, num_parameters=count_parameters(model),
            parity={"plain_onnx": plain_parity, "bundle": final_parity}, fusion=fusion, quantization=quant,
            device_profile=profile.to_dict() if profile else None, tensorrt=trt_section, task=task.optimum_task,
            certified_on=certified_on(), self_test=self_test,
            int8={"target": target, "target_from": target_from, "weights": form, "about": WEIGHT_FORMS[form]}
            if precision.int8 else None)
        if trt_section is not None:
            manifest["trt_onnx"] = T.TRT_ONNX_FILE
            if trt_section["built"]:
                manifest.update(engine=ENGINE_FILE, timing_cache=T.TIMING_CACHE_FILE)
        say(progress, "[6/6] manifest and checksums")
        B.write_manifest(out, manifest)
    return config.output


def _apply_precision(precision: Precision, graph: Path, final: Path, config: ExportConfig, calibration, *,
                     fused: bool) -> dict:
    """The bundled graph at ``precision`` from the (fused) FP32 ``graph``: its quantizer decides how."""
    if precision.quantizer == "none":
        _copy_onnx(graph, final)
        return {"mode": "none"}
    if precision.quantizer == "qat":
        _copy_onnx(graph, final)
        return {"mode": "qat", "format": "QDQ", "weights": "int8 per-channel, symmetric", "activations":
                "int8 per-tensor, symmetric (ORT on x86 runs them as u8, exactly)",
                "scales": "the --qat model's (max-calibrated, fixed while its weights trained)",
                **qdq_summary(final), "ort_cpu": ort_integer_kernels(final)}
    if precision.quantizer == "fp16":
        return convert_fp16(graph, final)

    if precision.quantizer == "dynamic":
        return quantize_int8_dynamic(graph, final, fused=fused, per_channel=config.per_channel,
                                     reduce_range=config.reduce_range)
    return quantize_int8_static(graph, final, calibration, method=config.calibration_method,
                                per_channel=config.per_channel, fused=fused, reduce_range=config.reduce_range)


def _safe_parity(reference, path: Path, checks, task) -> dict:
    """Parity on ORT CPU; a graph the CPU provider cannot run (e.g. some FP16 ops) is reported, not fatal."""
    try:
        return parity(reference, path, checks, task.outputs, task.per_token)
    except Exception as err:  # onnxruntime raises its own exception types
        return {"max_abs_logit_diff": None, "reference": "pytorch fp32",
                "skipped": f"not runnable on ONNX Runtime CPU: {str(err).splitlines()[0][:160]}"}


def _trt_stage(plain: Path, out: Path, precision: Precision, calibration, config: ExportConfig, profile,
               progress: Progress | None) -> dict:
    trt_precision = precision.trt_precision
    say(progress, f"[4b] TensorRT-ready ONNX ({trt_precision})")
    info = T.make_trt_onnx(plain, out / T.TRT_ONNX_FILE, precision, calibration=calibration,
                           method=config.calibration_method)
    reason = build_unavailable_reason()
    if reason:
        section = T.engine_manifest(None, reason=reason, trt_precision=trt_precision)
    else:
        say(progress, "[4c] TensorRT engine build")
        shapes = profile.tensorrt if profile and profile.tensorrt else None
        build = T.build_engine(out / T.TRT_ONNX_FILE, out / ENGINE_FILE, out / T.TIMING_CACHE_FILE, trt_precision, shapes)
        section = T.engine_manifest(build, trt_precision=trt_precision)
    section["onnx"] = info
    return section


def build_bundle_engine(bundle: Path, *, profile: str | None = None, progress: Progress | None = None,
                        require_signature=None) -> Path:
    """Build (or rebuild) the TensorRT engine of ``bundle`` from its TRT-ready ONNX, on this machine.

    The bundle is verified first and replaced atomically: the new manifest lists the engine, the
    timing cache and the TensorRT version that built them.
    """

    bundle = Path(bundle)
    verified = open_verified_bundle(bundle, public_key=require_signature)  # the bytes built from are these
    manifest = verified.manifest
    if not manifest.get("trt_onnx") or not manifest.get("tensorrt"):
        raise InputError(f"bundle {bundle} has no TensorRT-ready ONNX; export it with kdtool export --trt")
    reason = build_unavailable_reason()
    if reason:
        raise EnvironmentUnsupported(f"cannot build a TensorRT engine here: {reason}; run kdtool build-engine "
                                     "on the target device (TensorRT and a CUDA GPU)")
    if profile:
        prof = get_profile(profile)
    elif manifest.get("device_profile"):
        prof = DeviceProfile.from_dict(manifest["device_profile"], "in manifest.json")
    else:
        prof = None
    precision = manifest["tensorrt"]["precision"]
    with atomic_directory(bundle, overwrite=True, kind="bundle") as out:
        for rel in manifest["files"]:
            if rel != ENGINE_FILE:
                dest = out.joinpath(*rel.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(verified.member(rel))
        say(progress, f"building the TensorRT engine ({precision}) from {manifest['trt_onnx']}")
        build = T.build_engine(out / manifest["trt_onnx"], out / ENGINE_FILE, out / T.TIMING_CACHE_FILE, precision,
                               prof.tensorrt if prof and prof.tensorrt else None)
        section = T.engine_manifest(build, trt_precision=precision)
        section["onnx"] = manifest["tensorrt"].get("onnx")
        updated = dict(manifest, tensorrt=section, engine=ENGINE_FILE, timing_cache=T.TIMING_CACHE_FILE)
        if prof:
            updated["device_profile"] = prof.to_dict()
        B.write_manifest(out, updated)
    return bundle
