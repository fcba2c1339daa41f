"""``kdtool serve``: answer questions over HTTP with a bundle or model directory (thin layer over
:func:`kdtool.serve.server.serve`). Every number is bounded here, at parse time, by the ranges of
:data:`kdtool.serve.config.BOUNDS` (those that depend on the machine are checked by ``ServeConfig``,
still before anything loads)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import (
    FiniteFloat,
    device_check_options,
    device_option,
    max_answer_length_option,
    n_best_option,
    require_signature_option,
    threads_option,
    trust_remote_code_option,
)
from kdtool.serve.config import BOUNDS


def bounded(name: str, number: type = int):
    """The click type of ``name``'s range in BOUNDS (a machine-dependent upper end is left to ServeConfig)."""
    low, high, _ = BOUNDS[name]
    high = None if callable(high) else high
    return click.IntRange(low, high) if number is int else FiniteFloat(low, high)


@click.command("serve")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default is loopback only; 0.0.0.0 exposes the server to the network "
                   "(give --api-key-file then).")
@click.option("--port", type=bounded("port"), default=8000, show_default=True)
@click.option("--model-name", default=None,
              help="The model's name on /v2/models/NAME [default: MODEL's directory name reduced to A-Z a-z 0-9 _ . -, "
                   "the name kdtool triton gives it].")
@device_option()
@click.option("--profile", "profile_name", default=None,
              help="Device profile (kdtool profiles) for device, threads and providers when not given.")
@threads_option("CPU threads of each engine instance, at most 4 x the cores [default: the profile's, or the cores / "
                "--instances].")
@click.option("--instances", type=bounded("instances"), default=1, show_default=True,
              help="Engine instances, each running batches from the one queue in its own thread (Triton's instance "
                   "groups); for machines with cores to spare beyond one engine's (on a 2-core CPU one is faster).")
@click.option("--max-batch-size", type=bounded("max_batch_size"), default=None,
              help="Most questions gathered into one batch, and windows per forward pass, across concurrent requests "
                   "[default: 4 on a CPU, 16 on a GPU].")
@click.option("--max-wait-ms", type=bounded("max_wait_ms", float), default=0.0, show_default=True,
              help="How long the first question of a batch waits for more before the batch runs. 0: a free worker "
                   "runs what is queued at once (batches still form from requests that arrive while it runs); "
                   "a few ms can pay on a GPU, where a bigger pass costs little more.")
@click.option("--max-queue", type=bounded("max_queue"), default=256, show_default=True,
              help="Questions admitted and not yet running; beyond it requests get 503 + Retry-After at once.")
@click.option("--max-context-chars", type=bounded("max_context_chars"), default=20_000, show_default=True,
              help="Longest context accepted (413 beyond).")
@click.option("--max-body-bytes", type=bounded("max_body_bytes"), default=1 << 20, show_default=True,
              help="Largest request body accepted (413 beyond).")
@click.option("--request-timeout", type=bounded("request_timeout", float), default=30.0, show_default=True,
              help="Seconds from arrival to answer (body upload included) before a request gets 408/504.")
@click.option("--max-header-bytes", type=bounded("max_header_bytes"), default=16 << 10, show_default=True,
              help="Largest request line + headers; beyond it the connection gets 431 and is closed.")
@click.option("--header-timeout", type=bounded("header_timeout", float), default=5.0, show_default=True,
              help="Seconds a connection has to send a complete request head (slowloris defence); then it is closed.")
@click.option("--max-connections", type=bounded("max_connections"), default=None,
              help="Open connections at once, below the file-descriptor limit; beyond it the longest-idle connection "
                   "is closed, or the new one refused (503) [default: 1024, or ulimit -n less 64].")
@click.option("--api-key-file", type=click.Path(path_type=Path), default=None,
              help="File holding a bearer token; then every route but the health probes needs it (401/403).")
@max_answer_length_option
@click.option("--max-length", type=click.IntRange(min=32), default=384, show_default=True,
              help="Window length in tokens (clipped to the model's).")
@click.option("--doc-stride", type=click.IntRange(min=0), default=128, show_default=True,
              help="Overlap of consecutive windows of a long context, in tokens.")
@n_best_option
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One JSON line per request on stderr.")
@trust_remote_code_option()
@require_signature_option
@device_check_options
def command(model, host, port, model_name, device, profile_name, threads, instances, max_batch_size, max_wait_ms,
            max_queue, max_context_chars, max_body_bytes, request_timeout, max_header_bytes, header_timeout,
            max_connections, api_key_file, max_answer_length, max_length, doc_stride, n_best, access_log,
            trust_remote_code, require_signature, no_self_test, strict):
    """Serve MODEL (a kdtool bundle or a Hugging Face QA directory) over HTTP: POST /v1/answer, and the
    Open Inference Protocol (KServe v2) at /v2/models/NAME/infer.

    \b
    Answers are the ones kdtool answer gives; /healthz, /readyz, /v1/model, /metrics, /docs, /v2/health/*.
      kdtool serve bundle --port 8000
      curl -s localhost:8000/v1/answer -d '{"question": "¿Quién?", "context": "..."}'
    """
    from kdtool.data import FeatureConfig, PostprocessConfig
    from kdtool.predict import PredictConfig
    from kdtool.progress import console
    from kdtool.serve.config import ServeConfig
    from kdtool.serve.server import serve

    predict = PredictConfig(features=FeatureConfig(max_length=max_length, doc_stride=doc_stride),
                            postprocess=PostprocessConfig(n_best=n_best, max_answer_length=max_answer_length),
                            batch_size=max_batch_size or 16)
    config = ServeConfig(model=model, host=host, port=port, device=device, profile=profile_name, threads=threads,
                         instances=instances, trust_remote_code=trust_remote_code, require_signature=require_signature,
                         max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                         max_context_chars=max_context_chars, max_body_bytes=max_body_bytes,
                         request_timeout=request_timeout, api_key_file=api_key_file, access_log=access_log,
                         model_name=model_name, max_header_bytes=max_header_bytes, header_timeout=header_timeout,
                         max_connections=max_connections, predict=predict, self_test=not no_self_test, strict=strict)
    raise SystemExit(serve(config, progress=console()))  # its lines on stderr, as the access log
