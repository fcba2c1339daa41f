"""``kdtool serve``: answer questions over HTTP with a bundle or model directory (thin layer over
:func:`kdtool.serve.server.serve`)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import (
    FiniteFloat,
    device_option,
    max_answer_length_option,
    n_best_option,
    require_signature_option,
    threads_option,
    trust_remote_code_option,
)


@click.command("serve")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default is loopback only; 0.0.0.0 exposes the server to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@device_option()
@click.option("--profile", "profile_name", default=None,
              help="Device profile (kdtool profiles) for device, threads and providers when not given.")
@threads_option("CPU threads of each engine instance [default: the profile's, or the cores / --instances].")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Engine instances, each running batches from the one queue in its own thread (Triton's instance "
                   "groups); for machines with cores to spare beyond one engine's (on a 2-core CPU one is faster).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=None,
              help="Most questions gathered into one batch, and windows per forward pass, across concurrent requests "
                   "[default: 4 on a CPU, 16 on a GPU].")
@click.option("--max-wait-ms", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="How long the first question of a batch waits for more before the batch runs. 0: a free worker "
                   "runs what is queued at once (batches still form from requests that arrive while it runs); "
                   "a few ms can pay on a GPU, where a bigger pass costs little more.")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Questions admitted and not yet running; beyond it requests get 503 + Retry-After at once.")
@click.option("--max-context-chars", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Longest context accepted (413 beyond).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="Largest request body accepted (413 beyond).")
@click.option("--request-timeout", type=FiniteFloat(min=0.001), default=30.0, show_default=True,
              help="Seconds from arrival to answer before a request gets 504.")
@click.option("--api-key-file", type=click.Path(path_type=Path), default=None,
              help="File holding a bearer token; then every route but /healthz and /readyz needs it (401/403).")
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
def command(model, host, port, device, profile_name, threads, instances, max_batch_size, max_wait_ms, max_queue,
            max_context_chars, max_body_bytes, request_timeout, api_key_file, max_answer_length, max_length, doc_stride,
            n_best, access_log, trust_remote_code, require_signature):
    """Serve MODEL (a kdtool bundle or a Hugging Face QA directory) over HTTP: POST /v1/answer.

    \b
    Answers are the ones kdtool answer gives; /healthz, /readyz, /v1/model, /metrics, /docs.
      kdtool serve bundle --port 8000
      curl -s localhost:8000/v1/answer -d '{"question": "¿Quién?", "context": "..."}'
    """
    from kdtool.data import FeatureConfig, PostprocessConfig
    from kdtool.predict import PredictConfig
    from kdtool.serve.config import ServeConfig
    from kdtool.serve.server import serve

    predict = PredictConfig(features=FeatureConfig(max_length=max_length, doc_stride=doc_stride),
                            postprocess=PostprocessConfig(n_best=n_best, max_answer_length=max_answer_length),
                            batch_size=max_batch_size or 16)
    config = ServeConfig(model=model, host=host, port=port, device=device, profile=profile_name, threads=threads,
                         instances=instances,
                         trust_remote_code=trust_remote_code, require_signature=require_signature,
                         max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                         max_queue=max_queue, max_context_chars=max_context_chars, max_body_bytes=max_body_bytes,
                         request_timeout=request_timeout, api_key_file=api_key_file, access_log=access_log,
                         predict=predict)
    from kdtool.progress import console

    raise SystemExit(serve(config, progress=console()))  # its lines on stderr, as the access log
