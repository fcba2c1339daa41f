"""Everything ``kdtool serve`` takes, as one typed config (the CLI only fills it in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.predict import PredictConfig


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    host: str = "127.0.0.1"  # loopback unless the operator says otherwise
    port: int = 8000
    device: str = "auto"
    profile: str | None = None  # a device profile: device, threads and providers when not given
    threads: int | None = None  # per engine instance
    # engine instances, each with its own worker thread taking batches from the one queue (Triton's
    # instance groups); threads default to the cores / instances. In-process, 2 instances of 1 thread answer
    # up to 1.5x the questions of 1 of 2 threads on the 2-core CPU (bench/serve_ceiling.py), but through the
    # server there they answered fewer (the HTTP layer and the second worker share the same two cores:
    # bench/results/serve_load_kd_real_int8_instances*.json), so the default is one
    instances: int = 1
    trust_remote_code: bool = False
    require_signature: Path | None = None  # an Ed25519 public key: refuse a bundle it did not sign
    # questions gathered per batch, and windows per forward pass; None: 4 on a CPU, 16 on a GPU (on the 2-core
    # CPU, passes of 8-16 padded windows cost more per question than passes of 4: bench/results/serve_load_*)
    max_batch_size: int | None = None
    # how long the first question of a batch waits for company. 0: none; a worker that is free runs what is
    # queued at once, and batches form from the requests that arrive while it runs. On the 2-core CPU that
    # answered 1.76x the questions/s of a 5 ms wait at 1 client and 1.26x at 16, with the same batch sizes
    # under load (bench/results/serve_load_kd_real_int8_wait{0,5}.json); raise it for a GPU, where a pass of
    # 16 windows costs little more than one
    max_wait_ms: float = 0.0
    max_queue: int = 256  # questions admitted and not yet running; beyond it: 503 at once
    max_context_chars: int = 20_000  # a longer context is refused with 413
    max_body_bytes: int = 1 << 20  # a larger request body is refused with 413
    request_timeout: float = 30.0  # seconds from arrival to answer; then 504
    api_key_file: Path | None = None  # when given, every route but /healthz and /readyz needs this bearer token
    access_log: bool = True
    predict: PredictConfig = field(default_factory=PredictConfig)

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_context_chars", "max_body_bytes", "instances"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.request_timeout <= 0:
            raise InputError("max-wait-ms must be >= 0 and request-timeout > 0")
        if not 0 <= self.port < 65536:
            raise InputError(f"port must be between 0 and 65535, got {self.port}")

    def batch_size_for(self, device: str) -> int:
        """``max_batch_size``, or the default for an engine on ``device``."""
        return self.max_batch_size or (16 if str(device).startswith("cuda") else 4)

    def api_key(self) -> str | None:
        """The bearer token from ``api_key_file`` (one line), or None when the server is open."""
        from kdtool.errors import require_file

        if self.api_key_file is None:
            return None
        key = require_file(self.api_key_file, "API key file").read_text(encoding="utf-8").strip()
        if len(key) < 16 or any(c.isspace() for c in key):
            raise InputError(f"API key file {self.api_key_file} must hold one token of at least 16 characters "
                             "without spaces (e.g. the output of `openssl rand -hex 32`)")
        return key
