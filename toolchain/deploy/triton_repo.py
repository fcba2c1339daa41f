"""``write_triton_repository``: a verified kdtool bundle -> a Triton Inference Server model repository.

The bundle is verified first (checksums, and the signature with ``require_signature``) and the
repository is written from the verified bytes, atomically (:func:`kdtool.atomic.atomic_directory`):
an interrupted run leaves no repository, or the previous one. Every copy of the bundle keeps its
``manifest.json`` (and signature file), so the Python models verify it again when Triton loads them.

Layouts (see :mod:`kdtool.deploy.triton_configs` for the configs)::

    python                                 ensemble
    REPO/NAME/config.pbtxt                 REPO/NAME/config.pbtxt            (platform: ensemble)
    REPO/NAME/1/model.py                   REPO/NAME/1/
    REPO/NAME/1/bundle/manifest.json ...   REPO/NAME_tokenizer/1/{model.py,bundle/...}
                                           REPO/NAME_encoder/1/model.onnx|model.plan   (model.py on python)
                                           REPO/NAME_decoder/1/model.py

Batching comes from the device profile (``profile``, else the bundle manifest's ``device_profile``). In the
``python`` layout Triton's ``max_batch_size`` bounds the questions of one request and of one batch of
requests (64: a request cannot hold more, so it is generous), and the profile's largest batch size is the
windows per forward pass of kdtool's engine (4 on a CPU and 16 on a GPU without a profile, as ``kdtool
serve``). In the ``ensemble`` layout the encoder batches windows: 64, or the TensorRT profile's largest batch
for a ``tensorrt`` encoder (a request whose windows exceed it is refused by Triton). ``instance_group`` is CPU
or GPU as the profile's device. The queue delay is 0 on a CPU (a free instance runs what is queued at once;
see :class:`kdtool.serve.config.ServeConfig`) and 1 ms on a GPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from kdtool.atomic import MARKER, atomic_directory
from kdtool.bundle.manifest import MANIFEST, UNLISTED_OK
from kdtool.bundle.verified import VerifiedBundle, open_verified_bundle, read_member
from kdtool.deploy import triton_configs as C
from kdtool.deploy.pbtxt import to_pbtxt
from kdtool.errors import InputError
from kdtool.profiles import DeviceProfile, get_profile

LAYOUTS = ("python", "ensemble")
ENCODER_BACKENDS = tuple(C.ENCODER_FILES)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENTRY = Path(__file__).with_name("python_model_entry.py")
CPU_PASS, GPU_PASS, MAX_BATCH = 4, 16, 64


@dataclass(frozen=True)
class TritonRepoConfig:
    bundle: Path
    output: Path
    layout: str = "python"
    name: str = "kdtool_qa"  # the model clients call (the ensemble's name in the ensemble layout)
    profile: str | None = None  # a device profile name; None: the manifest's device_profile, else CPU defaults
    encoder_backend: str = "onnxruntime"  # ensemble: onnxruntime | tensorrt | python (ONNX Runtime in the Python backend)
    max_batch_size: int | None = None  # questions (python layout) or windows (encoder) per batch; None: 64 (TRT: its profile's)
    max_queue_delay_us: int | None = None  # None: 0 on a CPU profile, 1000 on a GPU one
    instances: int = 1  # instances of the batching model
    threads: int | None = None  # ONNX Runtime threads per Python instance; None: the profile's, else ORT's default
    max_answer_length: int = 30  # tokens, as kdtool answer
    execution_env: Path | None = None  # EXECUTION_ENV_PATH of the Python models: an environment with kdtool in it
    require_signature: Path | None = None  # checked now, and again by the Python models when they load
    overwrite: bool = False

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown layout {self.layout!r}; choose one of: {', '.join(LAYOUTS)}")
        if self.encoder_backend not in ENCODER_BACKENDS:
            raise InputError(f"unknown encoder backend {self.encoder_backend!r}; choose one of: {', '.join(ENCODER_BACKENDS)}")
        if not NAME_PATTERN.fullmatch(self.name):
            raise InputError(f"model name {self.name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit")
        for field in ("max_batch_size", "instances", "threads", "max_answer_length"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise InputError(f"{field.replace('_', '-')} must be at least 1, got {value}")
        if self.max_queue_delay_us is not None and self.max_queue_delay_us < 0:
            raise InputError(f"max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")


@dataclass(frozen=True)
class TritonRepoResult:
    path: Path
    models: tuple[str, ...]  # every model directory written; the first is the one clients call
    batching: C.Batching


def _profile(config: TritonRepoConfig, manifest: dict) -> DeviceProfile | None:
    if config.profile:
        return get_profile(config.profile)
    raw = manifest.get("device_profile")
    return DeviceProfile.from_dict(raw, f"{config.bundle / MANIFEST} (device_profile)") if raw else None


def batching_for(config: TritonRepoConfig, profile: DeviceProfile | None) -> C.Batching:
    gpu = bool(profile and profile.device == "cuda")
    pass_windows = max(profile.batch_sizes) if profile else (GPU_PASS if gpu else CPU_PASS)
    default = MAX_BATCH
    trt = profile.tensorrt if profile else None
    if config.layout == "ensemble" and config.encoder_backend == "tensorrt" and trt:
        default = trt.max_shape[0]  # the engine takes no more windows than its optimization profile's largest batch
    delay = config.max_queue_delay_us if config.max_queue_delay_us is not None else (1000 if gpu else 0)
    return C.Batching(config.max_batch_size or default, delay, config.instances,
                      gpu or config.encoder_backend == "tensorrt", pass_windows)


def _write_bundle(bundle: VerifiedBundle, dest: Path) -> None:
    """The verified bytes of every member, the manifest as verified, and the signature file(s) beside it."""
    for rel, blob in bundle.data.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(blob)
    (dest / MANIFEST).write_bytes(bundle.manifest_bytes)
    for extra in sorted(UNLISTED_OK - {MANIFEST, MARKER}):
        if (bundle.root / extra).is_file():
            (dest / extra).write_bytes(read_member(bundle.root, extra, 1 << 20))


def _link_or_copy(src: Path, dest: Path) -> None:
    """One file in two places: a hard link where the filesystem allows (no second copy of the weights)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        dest.write_bytes(src.read_bytes())


def _model_dir(root: Path, name: str, config: dict, entry: bool) -> Path:
    version = root / name / "1"
    version.mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
    if entry:
        (version / "model.py").write_text(ENTRY.read_text(encoding="utf-8"), encoding="utf-8")
    return version


def _common_params(config: TritonRepoConfig, profile: DeviceProfile | None) -> dict[str, str]:
    params = {"device": "auto" if profile and profile.device == "cuda" else "cpu",
              "threads": config.threads or (profile.threads if profile else None),
              "require_signature": config.require_signature and Path(config.require_signature).absolute(),
              "EXECUTION_ENV_PATH": config.execution_env and Path(config.execution_env).absolute()}
    return {k: str(v) for k, v in params.items() if v}


def _write_python(root: Path, config: TritonRepoConfig, bundle, batching, params) -> tuple[str, ...]:
    qa = C.python_qa_config(config.name, batching, {"bundle": "bundle", "max_answer_length": config.max_answer_length,
                                                    **params})
    _write_bundle(bundle, _model_dir(root, config.name, qa, entry=True) / "bundle")
    return (config.name,)


def _encoder_member(bundle: VerifiedBundle, backend: str) -> str | None:
    manifest = bundle.manifest
    if backend == "python":
        return None
    member = manifest.get("engine") if backend == "tensorrt" else manifest["model"]
    if not member or member not in bundle.data:
        raise InputError(f"bundle {bundle.root} has no TensorRT engine; build it on the target GPU "
                         f"(kdtool build-engine {bundle.root}) or use --encoder-backend onnxruntime")
    if backend == "onnxruntime" and bundle.has_external_data(member):
        raise InputError(f"bundle {bundle.root}: {member} keeps its weights in external data files, which the ensemble "
                         "layout does not copy; use --layout python")
    return member


def _write_ensemble(root: Path, config: TritonRepoConfig, bundle, batching, params) -> tuple[str, ...]:
    manifest, backend = bundle.manifest, config.encoder_backend
    names = {part: f"{config.name}_{part}" for part in ("tokenizer", "encoder", "decoder")}
    member = _encoder_member(bundle, backend)
    env = {k: v for k, v in params.items() if k == "EXECUTION_ENV_PATH"}
    encoder_file = f"../../{names['encoder']}/1/{C.ENCODER_FILES[backend]}" if member else ""
    tokenizer = C.tokenizer_config(names["tokenizer"], manifest, {
        "bundle": "bundle", "encoder_file": encoder_file, "encoder_member": member or "",
        **{k: v for k, v in params.items() if k in ("require_signature", "EXECUTION_ENV_PATH")}})
    tok_dir = _model_dir(root, names["tokenizer"], tokenizer, entry=True)
    _write_bundle(bundle, tok_dir / "bundle")
    encoder_params = {"bundle": f"../../{names['tokenizer']}/1/bundle",
                      **{k: v for k, v in params.items() if k != "require_signature"}}
    encoder = C.encoder_config(names["encoder"], manifest, backend, batching, encoder_params)
    enc_dir = _model_dir(root, names["encoder"], encoder, entry=backend == "python")
    if member:
        _link_or_copy(tok_dir / "bundle" / member, enc_dir / C.ENCODER_FILES[backend])
    logits = ",".join(o["name"] for o in manifest["outputs"])
    decoder = C.decoder_config(names["decoder"], manifest, {"max_answer_length": config.max_answer_length,
                                                            "logits": logits, **env})
    _model_dir(root, names["decoder"], decoder, entry=True)
    _model_dir(root, config.name, C.ensemble_config(config.name, manifest, names), entry=False)
    return (config.name, names["tokenizer"], names["encoder"], names["decoder"])


WRITERS = {"python": _write_python, "ensemble": _write_ensemble}


def write_triton_repository(config: TritonRepoConfig) -> TritonRepoResult:
    """Verify ``config.bundle`` and write the ``config.layout`` repository at ``config.output``."""
    if config.execution_env is not None and not Path(config.execution_env).is_dir():
        raise InputError(f"--execution-env {config.execution_env} is not a directory; give the environment (a venv or "
                         "an unpacked conda-pack) whose Python has kdtool")
    bundle = open_verified_bundle(config.bundle, public_key=config.require_signature)
    profile = _profile(config, bundle.manifest)
    batching = batching_for(config, profile)
    params = _common_params(config, profile)
    with atomic_directory(config.output, overwrite=config.overwrite, kind="triton-repository") as tmp:
        models = WRITERS[config.layout](tmp, config, bundle, batching, params)
    return TritonRepoResult(Path(config.output), models, batching)
