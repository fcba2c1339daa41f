"""Everything ``kdtool serve`` takes, as one typed config (the CLI only fills it in).

Every number has a range checked when the config is made (:data:`BOUNDS`), so an absurd value
(``--max-wait-ms 1e300``, ``--threads 100000``) is one line before anything loads, never an
``OverflowError`` in the log of a running server or a process the kernel kills.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from kdtool.engines.settings import (
    device_setting,
    require_signature_setting,
    self_test_setting,
    strict_setting,
    trust_remote_code_setting,
)
from kdtool.errors import InputError
from kdtool.fields import setting
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


def bounded(name: str, default, **spelling):
    """A field whose range is :data:`BOUNDS`' (a machine-dependent upper end is checked by ServeConfig)."""
    return setting(default, type=BOUNDS[name][:2], **spelling)


@dataclass(frozen=True)
class ServeConfig:
    model: Path = setting(argument=True)
    host: str = setting("127.0.0.1",  # loopback unless the operator says otherwise
                        help="Address to listen on. The default is loopback only; 0.0.0.0 exposes the server to the "
                             "network (give --api-key-file then).")
    port: int = bounded("port", 8000, help="TCP port to listen on (0: any free port).")
    device: str = device_setting()
    profile: str | None = setting(None, help="Device profile (kdtool profiles) for device, threads and providers when "
                                             "not given.")
    threads: int | None = bounded("threads", None, help="CPU threads of each engine instance, at most 4 x the cores.",
                                  default_help="the profile's, or the cores / --instances")
    # engine instances, each with its own worker thread taking batches from the one queue (Triton's
    # instance groups); threads default to the cores / instances. In-process, 2 instances of 1 thread answer
    # up to 1.5x the questions of 1 of 2 threads on the 2-core CPU (bench/serve_ceiling.py), but through the
    # server there they answered fewer (the HTTP layer and the second worker share the same two cores:
    # bench/results/serve_load_kd_real_int8_instances*.json), so the default is one
    instances: int = bounded("instances", 1, help="Engine instances, each running batches from the one queue in its own "
                             "thread (Triton's instance groups); for machines with cores to spare beyond one engine's "
                             "(on a 2-core CPU one is faster).")
    trust_remote_code: bool = trust_remote_code_setting()
    # a public key (kdtool.bundle.signing.SignatureRequirement carries --min-version too): refuse a bundle it did not sign
    require_signature: Path | None = require_signature_setting()
    # the device checks of kdtool.engines.device: the bundle's self-test must pass on this machine before the
    # server binds a port (so a failing device never becomes ready); strict also refuses another arithmetic class
    self_test: bool = self_test_setting()
    strict: bool = strict_setting()
    # questions gathered per batch, and windows per forward pass; None: 4 on a CPU, 16 on a GPU (on the 2-core
    # CPU, passes of 8-16 padded windows cost more per question than passes of 4: bench/results/serve_load_*)
    max_batch_size: int | None = bounded(
        "max_batch_size", None, help="Most questions gathered into one batch, and windows per forward pass, across "
        "concurrent requests.", default_help="4 on a CPU, 16 on a GPU")
    # how long the first question of a batch waits for company. 0: none; a worker that is free runs what is
    # queued at once, and batches form from the requests that arrive while it runs. On the 2-core CPU that
    # answered 1.76x the questions/s of a 5 ms wait at 1 client and 1.26x at 16, with the same batch sizes
    # under load (bench/results/serve_load_kd_real_int8_wait{0,5}.json); raise it for a GPU, where a pass of
    # 16 windows costs little more than one
    max_wait_ms: float = bounded(
        "max_wait_ms", 0.0, help="How long the first question of a batch waits for more before the batch runs. 0: a "
        "free worker runs what is queued at once (batches still form from requests that arrive while it runs); a few "
        "ms can pay on a GPU, where a bigger pass costs little more.")
    max_queue: int = bounded("max_queue", 256, help="Questions admitted and not yet running; beyond it requests get "
                                                    "503 + Retry-After at once.")
    max_context_chars: int = bounded("max_context_chars", 20_000, help="Longest context accepted (413 beyond).")
    max_body_bytes: int = bounded("max_body_bytes", 1 << 20, help="Largest request body accepted (413 beyond).")
    request_timeout: float = bounded("request_timeout", 30.0, help="Seconds from arrival to answer (body upload "
                                                                   "included) before a request gets 408/504.")
    api_key_file: Path | None = setting(  # when given, every route but the probes needs this bearer token
        None, type="path", help="File holding a bearer token; then every route but the health probes needs it (401/403).")
    access_log: bool = setting(True, option="--access-log", off="--no-access-log",
                               help="One JSON line per request on stderr.")
    # the name /v2/models/NAME serves; None: kdtool.serve.oip.default_model_name(model), the rule `kdtool triton` uses
    model_name: str | None = setting(None, help="The model's name on /v2/models/NAME.",
                                     default_help="MODEL's directory name reduced to A-Z a-z 0-9 _ . -, the name kdtool "
                                                  "triton gives it")
    # hostile clients (kdtool.serve.connections): request line + headers are capped in bytes (431 beyond) and
    # must arrive within header_timeout seconds of the connection (or of the previous response); at most
    # max_connections are open at once (None: 1024, or fewer where ulimit -n is lower), beyond which the
    # connection idle the longest is closed, or the new one is refused when none is idle
    max_header_bytes: int = bounded("max_header_bytes", 16 << 10, help="Largest request line + headers; beyond it the "
                                                                       "connection gets 431 and is closed.")
    header_timeout: float = bounded("header_timeout", 5.0, help="Seconds a connection has to send a complete request "
                                                                "head (slowloris defence); then it is closed.")
    max_connections: int | None = bounded(
        "max_connections", None, help="Open connections at once, below the file-descriptor limit; beyond it the "
        "longest-idle connection is closed, or the new one refused (503).", default_help="1024, or ulimit -n less 64")
    # windows and answers: --max-length, --doc-stride, --n-best, --max-answer-length; the windows per forward pass
    # are --max-batch-size's (the command sets predict.batch_size from it)
    predict: PredictConfig = setting(factory=PredictConfig, recipe_only=(
        "features.max_query_length", "postprocess.version_2", "postprocess.null_score_diff_threshold", "batch_size"))

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
