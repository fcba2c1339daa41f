"""``export_model``: a Hugging Face QA directory in, a verified deployable bundle out.

Stages (each reported through ``progress``): check inputs -> plain ONNX export (Optimum, or the QAT
QDQ graph) -> parity with PyTorch on real feature windows -> ORT transformer fusion -> the bundled
graph at its precision, in the INT8 form of the target's arithmetic -> optional TensorRT-ready ONNX
and engine -> the self-test -> tokenizer, config, manifest. What a precision does at each stage is
its class in :mod:`kdtool.export.precisions`; nothing here branches on a precision's name.
Everything is written inside :func:`kdtool.atomic.atomic_directory`, so a failed or killed export
leaves no bundle behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.atomic import atomic_directory, check_output_dir, scratch_dir
from kdtool.bundle import manifest as B
from kdtool.bundle.arithmetic import this_machine
from kdtool.bundle.precision import Precision, get_precision
from kdtool.bundle.verified import open_verified_bundle
from kdtool.data import MAX_LENGTH, fit_window
from kdtool.engines.trt import ENGINE_FILE, build_unavailable_reason
from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError, require_file
from kdtool.export import trt as T
from kdtool.export.config import ExportConfig
from kdtool.export.fusion import fuse_transformer
from kdtool.export.int8_forms import WEIGHT_FORMS, to_u8_weights, weight_form
from kdtool.export.onnx_export import custom_exporter, parity, torch_logits
from kdtool.export.onnx_io import onnx_io
from kdtool.export.precisions import PrecisionExport, precision_export
from kdtool.export.samples import sample_windows
from kdtool.export.self_test import certified_on, write_self_test
from kdtool.models import count_parameters, load_task_model, load_tokenizer, max_positions
from kdtool.profiles import DeviceProfile, get_profile
from kdtool.progress import Progress, say
from kdtool.tasks import resolve_task

MODEL_FILE = "model.onnx"


@dataclass
class _Job:
    """What the stages of one export share, prepared before anything is written."""

    config: ExportConfig
    profile: DeviceProfile | None
    precision: Precision
    behaviour: PrecisionExport
    task: object
    model: object
    tokenizer: object
    max_len: int
    checks: list  # real feature windows for the parity checks (the first batch is the self-test's)
    reference: list  # PyTorch logits on ``checks``
    calibration: list | None
    fuse: bool


def _target(profile, precision: Precision) -> tuple[str, str]:
    """The INT8 arithmetic class the export is for, and where that came from (the profile, else this machine)."""
    if profile is not None and profile.int8_arithmetic:
        return profile.int8_arithmetic, f"profile {profile.name}"
    if profile is not None and profile.device == "cuda" and precision.int8:
        return "tensorrt", f"profile {profile.name}"
    return this_machine().arithmetic, "this machine"


def _max_length(config: ExportConfig, profile, model) -> int:
    """The bundle's window: --max-seq-length, else the profile's, else the default, fitted to the model (fit_window)."""
    return fit_window(config.max_seq_length, max_positions(model.config), model=config.model_dir,
                      option="--max-seq-length", default=profile.max_seq_length if profile else MAX_LENGTH)


def _prepare(config: ExportConfig, progress: Progress | None) -> _Job:
    profile = get_profile(config.profile) if config.profile else None
    precision = get_precision(config.precision or (profile.precision if profile else "fp32"))
    if config.calibration_data is not None:
        require_file(config.calibration_data, "calibration data")
    behaviour = precision_export(precision)
    behaviour.check(config)
    task = resolve_task(None, config.model_dir)  # what the head is decides the Optimum task and the outputs
    model = load_task_model(config.model_dir, task, trust_remote_code=config.trust_remote_code).eval()
    tokenizer = load_tokenizer(config.model_dir, trust_remote_code=config.trust_remote_code)
    max_len = _max_length(config, profile, model)
    data = config.calibration_data
    say(progress, f"[1/6] reference logits: PyTorch FP32 on {'windows of ' + data.name if data else 'built-in examples'}")
    checks = sample_windows(tokenizer, data, config.parity_samples, max_len, batch_size=4)
    # one shape for every calibration window: histogram calibrators (entropy, percentile) stack activations
    calibration = sample_windows(tokenizer, data, config.calibration_samples, max_len, pad_to_max=True) \
        if behaviour.needs_calibration(config) else None
    return _Job(config, profile, precision, behaviour, task, model, tokenizer, max_len, checks,
                torch_logits(model, checks, task.outputs), calibration,
                behaviour.fuse(config, custom_exporter(model.config.model_type)))


def export_model(config: ExportConfig, *, progress: Progress | None = None) -> Path:
    """Export ``config.model_dir`` to a bundle at ``config.output``; return the bundle path.

    Each stage is reported to ``progress`` as a line (:mod:`kdtool.progress`)."""
    check_output_dir(config.output, config.overwrite, kind="bundle")  # fail before minutes of work, not after
    job = _prepare(config, progress)
    with scratch_dir("export") as work, \
            atomic_directory(config.output, overwrite=config.overwrite, kind="bundle") as out:
        plain, plain_parity = _plain_stage(job, Path(work), progress)
        graph, fusion = plain, {}
        if job.fuse:
            say(progress, "[3/6] transformer fusion (ORT optimizer)")
            graph = Path(work) / "fused.onnx"
            fusion = fuse_transformer(plain, graph, job.model.config, gelu_approximation=config.fast_gelu)
        quant, int8 = _precision_stage(job, graph, out / MODEL_FILE, progress)
        final_parity = _bundle_parity(job, out / MODEL_FILE, plain_parity, progress)
        trt_section = _trt_stage(job, plain, out, progress) if config.trt else None
        say(progress, "[5b] self-test: golden windows and the logits of the bundled graphs, on this machine")
        graphs = [MODEL_FILE] + ([T.TRT_ONNX_FILE] if trt_section is not None else [])
        self_test = write_self_test(out, job.checks[0], job.task, job.precision, graphs,
                                    certified_error=final_parity.get("max_abs_logit_diff"))
        say(progress, "[6/6] manifest and checksums")
        _write_manifest(job, out, parity={"plain_onnx": plain_parity, "bundle": final_parity}, fusion=fusion,
                        quantization=quant, tensorrt=trt_section, self_test=self_test, int8=int8)
    return config.output


def _plain_stage(job: _Job, work: Path, progress: Progress | None) -> tuple[Path, dict]:
    """The plain ONNX graph and its parity against PyTorch; a graph off by more than the tolerance is refused."""
    config, behaviour = job.config, job.behaviour
    custom = custom_exporter(job.model.config.model_type)
    name = behaviour.exporter_name if behaviour.exporter_name != "Optimum" or custom is None else "kdtool"
    say(progress, f"[2/6] ONNX export ({name}, {job.task.optimum_task}, opset {config.opset})")
    plain = behaviour.plain_graph(job.model, config, work, job.checks, job.task)
    found = dict(parity(job.reference, plain, job.checks, job.task.outputs, job.task.per_token),
                 reference=behaviour.reference_name)
    tolerance = behaviour.plain_tolerance(config)
    if found["max_abs_logit_diff"] > tolerance:
        raise IntegrityError(f"ONNX export of {config.model_dir} differs from PyTorch by "
                             f"{found['max_abs_logit_diff']:.2e} (> {tolerance}); not bundling it")
    return plain, found


def _precision_stage(job: _Job, graph: Path, final: Path, progress: Progress | None) -> tuple[dict, dict | None]:
    """The bundled graph at the precision; INT8 weights in the form of the target's arithmetic class."""
    precision = job.precision
    if not precision.int8:
        say(progress, f"[4/6] precision {precision.name}")
        return job.behaviour.bundle_graph(graph, final, job.config, job.calibration, fused=job.fuse), None
    target, source = _target(job.profile, precision)
    form = weight_form(target, reduce_range=job.config.reduce_range)
    hint = "; --profile exports for another CPU" if source == "this machine" else ""
    say(progress, f"[4/6] precision {precision.name} for {target} INT8 arithmetic ({source}: "
                  f"{this_machine().describe()}{hint}), {form} weights")
    quant = job.behaviour.bundle_graph(graph, final, job.config, job.calibration, fused=job.fuse)
    if form == "u8":
        quant.update(to_u8_weights(final))
    return quant, {"target": target, "target_from": source, "weights": form, "about": WEIGHT_FORMS[form]}


def _bundle_parity(job: _Job, final: Path, plain_parity: dict, progress: Progress | None) -> dict:
    say(progress, "[5/6] parity of the bundled graph against PyTorch")
    found = _safe_parity(job.reference, final, job.checks, job.task)
    found["reference"] = plain_parity["reference"]
    limit = job.config.parity_tolerance
    # FastGelu is an approximation by choice: its FP32 graph is not held to the exactness tolerance
    if job.behaviour.gates_bundle_parity and not job.config.fast_gelu and (found["max_abs_logit_diff"] or 0) > limit:
        raise IntegrityError(f"the fused FP32 graph differs from PyTorch by {found['max_abs_logit_diff']:.2e} "
                             f"(> {limit}); export with --no-fuse")
    return found


def _write_manifest(job: _Job, out: Path, **sections) -> None:
    config, model = job.config, job.model
    job.tokenizer.save_pretrained(out)
    model.config.save_pretrained(out)
    inputs, outputs = onnx_io(out / MODEL_FILE)
    manifest = B.new_manifest(
        source={"path": str(config.model_dir.resolve()), "sha256": B.source_digest(config.model_dir),
                "model_type": model.config.model_type, "architectures": list(model.config.architectures or [])},
        model=MODEL_FILE, precision=job.precision.name, opset=config.opset, max_seq_length=job.max_len,
        inputs=inputs, outputs=outputs, num_parameters=count_parameters(model),
        device_profile=job.profile.to_dict() if job.profile else None, task=job.task.optimum_task,
        certified_on=certified_on(), **sections)
    trt_section = sections.get("tensorrt")
    if trt_section is not None:
        manifest["trt_onnx"] = T.TRT_ONNX_FILE
        if trt_section["built"]:
            manifest.update(engine=ENGINE_FILE, timing_cache=T.TIMING_CACHE_FILE)
    B.write_manifest(out, manifest)


def _safe_parity(reference, path: Path, checks, task) -> dict:
    """Parity on ORT CPU; a graph the CPU provider cannot run (e.g. some FP16 ops) is reported, not fatal."""
    try:
        return parity(reference, path, checks, task.outputs, task.per_token)
    except Exception as err:  # onnxruntime raises its own exception types
        return {"max_abs_logit_diff": None, "reference": "pytorch fp32",
                "skipped": f"not runnable on ONNX Runtime CPU: {str(err).splitlines()[0][:160]}"}


def _trt_stage(job: _Job, plain: Path, out: Path, progress: Progress | None) -> dict:
    trt_precision = job.precision.trt_precision
    say(progress, f"[4b] TensorRT-ready ONNX ({trt_precision})")
    info = job.behaviour.trt_graph(plain, out / T.TRT_ONNX_FILE, job.config, job.calibration)
    reason = build_unavailable_reason()
    if reason:
        section = T.engine_manifest(None, reason=reason, trt_precision=trt_precision)
    else:
        say(progress, "[4c] TensorRT engine build")
        shapes = job.profile.tensorrt if job.profile and job.profile.tensorrt else None
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
