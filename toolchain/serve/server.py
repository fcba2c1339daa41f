"""Run ``kdtool serve``: open and warm the engine, then serve the app on uvicorn until stopped.

The engine is opened with :func:`kdtool.engines.load_engine`, the loader ``answer`` and ``validate``
use, so a bundle is verified (every checksum, the engine's TensorRT version) before anything in it
is deserialized; a bad bundle stops the command with the usual one line before a port is bound.

Stopping: uvicorn catches SIGTERM and SIGINT, stops accepting connections, lets in-flight requests
finish (up to ``request_timeout`` + 5 s), runs the app's shutdown (the batcher finishes queued jobs)
and then re-raises the signal it caught. The handlers installed here turn that re-raised signal
into the command's exit status: 0 for SIGTERM (an orderly stop), 130 for Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path

from kdtool.bundle.manifest import MANIFEST, sha256_file, source_digest
from kdtool.data import Example
from kdtool.engines import load_engine
from kdtool.errors import InputError
from kdtool.predict import feature_config_for, predict
from kdtool.profiles.registry import get_profile
from kdtool.progress import Progress, say
from kdtool.serve.config import ServeConfig

EXIT_CODES = {signal.SIGTERM: 0, signal.SIGINT: 130}


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum, frame):
    raise _Stop(signum)


def open_engine(config: ServeConfig):
    """One engine instance for ``config.model`` through the shared loader, with the profile's defaults;
    with several instances each gets ``--threads`` or its share of the cores."""
    device, threads, providers = config.device, config.threads, None
    if config.profile:
        profile = get_profile(config.profile)
        device = profile.device if device == "auto" else device
        threads = threads or profile.threads
        providers = list(profile.providers)
    if threads is None and config.instances > 1:
        threads = max(1, (os.cpu_count() or 1) // config.instances)
    # the loader verifies the bundle's bytes (and its signature when a key is given) before any port is bound
    return load_engine(config.model, device=device, threads=threads, providers=providers,
                       trust_remote_code=config.trust_remote_code, require_signature=config.require_signature,
                       self_test=config.self_test, strict=config.strict)


MANIFEST_SHOWN = ("schema_version", "kdtool_version", "created", "task", "precision", "opset", "max_seq_length",
                  "num_parameters", "inputs", "outputs")  # never source.path: a path of the export machine
ENGINE_SHOWN = ("kind", "device", "parameters", "size_bytes", "providers", "precision", "bundle_schema")


def model_info(engine, config: ServeConfig) -> dict:
    """What ``/v1/model`` shows: what a client needs (name, precision, digests, limits), no path of any machine.
    ``identity`` (name, digests, precision, version, device) goes with every answer."""
    from kdtool import __version__

    manifest = getattr(engine, "manifest", None)
    described = engine.describe()
    if manifest is not None:
        identity = {"name": engine.name, "kind": engine.kind, "precision": manifest.get("precision"),
                    "source_sha256": (manifest.get("source") or {}).get("sha256"),
                    "manifest_sha256": sha256_file(Path(engine.path) / MANIFEST),
                    "bundle_kdtool_version": manifest.get("kdtool_version")}
        shown = {k: manifest[k] for k in MANIFEST_SHOWN if k in manifest}
        shown["file_count"] = len(manifest.get("files") or {})
    else:
        identity = {"name": engine.name, "kind": engine.kind, "precision": described.get("precision"),
                    "source_sha256": source_digest(engine.path)}
        shown = None
    identity.update(kdtool_version=__version__, device=engine.device)
    limits = {k: getattr(config, k) for k in ("max_batch_size", "max_wait_ms", "max_queue", "max_context_chars",
                                              "max_body_bytes", "request_timeout", "instances", "max_header_bytes",
                                              "header_timeout")}
    limits["max_connections"] = config.connection_cap()
    return {"identity": identity, "engine": {k: described[k] for k in ENGINE_SHOWN if k in described},
            "manifest": shown, "signed": bool(described.get("signed_by")), "limits": limits,
            "max_length": engine.max_length, "auth": config.api_key_file is not None,
            "oip": {"name": config.served_name(), "version": "1", "platform": f"kdtool_{engine.kind}"},
            "self_test": _self_test(engine)}


def _self_test(engine) -> dict | None:
    """The bundle's self-test on this machine (kdtool.engines.device), without the export machine's details."""
    result = getattr(engine, "self_test_result", None)
    if result is None:
        return None
    return {k: v for k, v in result.to_dict().items() if k not in ("made_on", "graph")}


def warm_up(engine, config: ServeConfig) -> None:
    """One real answer before the server says it is ready (first-run allocations, lazy inits)."""

    ex = Example("warm-up", "¿Quién?", "María construyó un puente en Sevilla en 1905. " * 8, answers=())
    predict(engine, [ex] * min(4, config.max_batch_size), config.predict)


def _configure_access_log(enabled: bool) -> None:
    log = logging.getLogger("kdtool.serve.access")
    log.propagate = False
    log.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


def check_address(host: str, port: int) -> None:
    """Fail with one line, before the slow model load, when ``host:port`` cannot be listened on."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as err:
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --host/--port") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (only this machine can connect)."""
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _http_server(config: ServeConfig, engines: list, progress: Progress | None):
    """The uvicorn server over the app, the batcher over ``engines``, and the connection guards."""
    import uvicorn  # uvicorn and fastapi (through app) load only when a server starts

    from kdtool.serve.app import create_app
    from kdtool.serve.batcher import Batcher
    from kdtool.serve.connections import ConnectionLimits, guarded_protocol
    from kdtool.serve.metrics import ServeMetrics

    engine = engines[0]
    info = model_info(engine, config)
    metrics = ServeMetrics()
    metrics.model.info({k: str(v) for k, v in info["identity"].items() if v is not None})
    batcher = Batcher(engines, config.predict, metrics, max_batch_size=config.max_batch_size,
                      max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue)
    app = create_app(config, batcher, metrics, info)
    _configure_access_log(config.access_log)
    limits = ConnectionLimits(config.max_header_bytes, config.header_timeout, config.connection_cap())
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="on",
        http=guarded_protocol(limits, metrics.connections_closed), timeout_keep_alive=5,
        backlog=min(2048, limits.max_connections), timeout_graceful_shutdown=int(config.request_timeout) + 5,
        server_header=False))
    auth = "bearer token required" if config.api_key_file else "no authentication"
    copies = f", {len(engines)} instances" if len(engines) > 1 else ""
    say(progress, f"kdtool serve: {engine.name} ({engine.kind}, {info['identity'].get('precision') or '?'}, "
                  f"{engine.device}{copies}) on http://{config.host}:{config.port} ({auth}); Open Inference Protocol "
                  f"model {info['oip']['name']!r}; SIGTERM or Ctrl-C drains and stops")
    return server


def serve(config: ServeConfig, *, progress: Progress | None = None) -> int:
    """Serve until SIGTERM (exit status 0) or Ctrl-C (130); returns the status. ``progress`` gets the
    server's lines (what it serves where, notes, how it stopped)."""
    config.api_key()  # a bad key file or address fails before the (slow) model load
    check_address(config.host, config.port)
    if config.api_key_file is None and not is_loopback(config.host):
        say(progress, f"warning: listening on {config.host} without --api-key-file: anyone who can reach this "
                      "machine can use the model; give --api-key-file, or --host 127.0.0.1")
    engine = open_engine(config)
    engines = [engine]
    window = feature_config_for(engine, config.predict.features)  # fitted once, not per request (fit_window)
    config = dataclasses.replace(config, max_batch_size=config.batch_size_for(engine.device),
                                 predict=dataclasses.replace(config.predict, features=window))
    try:
        engines += [open_engine(config) for _ in range(config.instances - 1)]
        if config.max_batch_size > 1 and getattr(engine, "max_batch", None):
            if engine.max_batch < config.max_batch_size:
                say(progress, f"note: the TensorRT engine's profile runs at most {engine.max_batch} windows per pass; "
                               "larger batches run in slices")
        for instance in engines:
            warm_up(instance, config)
        server = _http_server(config, engines, progress)
        previous = {s: signal.signal(s, _raise_stop) for s in EXIT_CODES}
        try:
            server.run()
        except SystemExit:  # uvicorn exits 1 when it cannot bind (taken since check_address)
            raise InputError(f"cannot listen on {config.host}:{config.port}; choose another --host/--port") from None
        except _Stop as stop:
            code = EXIT_CODES[stop.signum]
            say(progress, f"kdtool serve: stopped by {signal.Signals(stop.signum).name} after finishing in-flight requests")
            return code
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0
    finally:
        for instance in engines:
            instance.close()
