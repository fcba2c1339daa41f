"""Everything ``kdtool serve`` takes, as one typed config (the CLI only fills it in).

Every number has a range checked when the config is made (:data:`BOUNDS`), so an absurd value
(``--max-wait-ms 1e300``, ``--threads 100000``) is one line before anything loads, never an
``OverflowError`` in the log of a running server or a process the kernel kills.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.predict import PredictConfig

FD_RESERVE = 64  # descriptors the server keeps for itself beyond client connections (model files, logs, pipes)


def cores() -> int:
    return os.cpu_count() or 1


def fd_limit() -> int:
    """This process's soft limit on open file descriptors (``ulimit -n``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


# field -> (lowest, highest, why the highest); a callable bound depends on the machine
BOUNDS: dict[str, tuple] = {
    "port": (0, 65535, "the TCP port range"),
    "threads": (1, lambda: 4 * cores(), "4 x the cores of this machine; more only slows the engine"),
    "instances": (1, lambda: max(4, cores()), "one engine per core (at least 4)"),
    "max_batch_size": (1, 1024, "windows one forward pass can hold"),
    "max_wait_ms": (0, 10_000, "10 s; a batch that waits longer only delays answers"),
    "max_queue": (1, 100_000, "questions one server can hold in memory"),
    "max_context_chars": (1, 10_000_000, "10 M characters"),
    "max_body_bytes": (1, 256 << 20, "256 MiB"),
    "request_timeout": (0.001, 3600, "one hour"),
    "max_header_bytes": (1024, 1 << 20, "1 MiB of request line and headers"),
    "header_timeout": (0.1, 300, "5 minutes"),
    "max_connections": (1, lambda: fd_limit() - FD_RESERVE, "the file-descriptor limit (ulimit -n) less what "
                        f"the server needs ({FD_RESERVE}); raise ulimit -n first"),
}


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
    # a public key (kdtool.bundle.signing.SignatureRequirement carries --min-version too): refuse a bundle it did not sign
    require_signature: Path | None = None
    # the device checks of kdtool.engines.device: the bundle's self-test must pass on this machine before the
    # server binds a port (so a failing device never becomes ready); strict also refuses another arithmetic class
    self_test: bool = True
    strict: bool = False
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
    request_timeout: float = 30.0  # seconds from arrival to answer (the body's upload included); then 408/504
    api_key_file: Path | None = None  # when given, every route but the probes needs this bearer token
    access_log: bool = True
    # the name /v2/models/NAME serves; None: kdtool.serve.oip.default_model_name(model), the rule `kdtool triton` uses
    model_name: str | None = None
    # hostile clients (kdtool.serve.connections): request line + headers are capped in bytes (431 beyond) and
    # must arrive within header_timeout seconds of the connection (or of the previous response); at most
    # max_connections are open at once (None: 1024, or fewer where ulimit -n is lower), beyond which the
    # connection idle the longest is closed, or the new one is refused when none is idle
    max_header_bytes: int = 16 << 10
    header_timeout: float = 5.0
    max_connections: int | None = None
    predict: PredictConfig = field(default_factory=PredictConfig)

    def __post_init__(self):
        for name, (low, high, why) in BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            high = high() if callable(high) else high
            if not low <= value <= high:
                option = name.replace("_", "-")
                raise InputError(f"--{option} {value:g} is out of range: give {low:g} to {high:g} ({why})")
        if self.model_name is not None:
            from kdtool.serve.oip import check_model_name

            check_model_name(self.model_name)

    def batch_size_for(self, device: str) -> int:
        """``max_batch_size``, or the default for an engine on ``device``."""
        return self.max_batch_size or (16 if str(device).startswith("cuda") else 4)

    def connection_cap(self) -> int:
        """``max_connections``, or 1024 kept below the descriptor limit."""
        return self.max_connections or max(1, min(1024, fd_limit() - FD_RESERVE))

    def served_name(self) -> str:
        """The model's name on /v2/models/NAME."""
        from kdtool.serve.oip import default_model_name

        return self.model_name or default_model_name(self.model)

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
