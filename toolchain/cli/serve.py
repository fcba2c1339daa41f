"""``kdtool serve``: answer questions over HTTP with a bundle or model directory (thin layer over
:func:`kdtool.serve.server.serve`). The options are :class:`kdtool.serve.config.ServeConfig`'s fields; every
number is bounded at parse time by the ranges of :data:`kdtool.serve.config.BOUNDS` (those that depend on the
machine are checked by ``ServeConfig``, still before anything loads)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.serve.config import ServeConfig


@click.command("serve")
@click.argument("model", type=click.Path(path_type=Path))
@config_options(ServeConfig)
def command(**options):
    """Serve MODEL (a kdtool bundle or a Hugging Face QA directory) over HTTP: POST /v1/answer, and the
    Open Inference Protocol (KServe v2) at /v2/models/NAME/infer.

    \b
    Answers are the ones kdtool answer gives; /healthz, /readyz, /v1/model, /metrics, /docs, /v2/health/*.
      kdtool serve bundle --port 8000
      curl -s localhost:8000/v1/answer -d '{"question": "¿Quién?", "context": "..."}'
    """
    from dataclasses import replace

    from kdtool.progress import console
    from kdtool.serve.server import serve

    config = build_config(ServeConfig, options)
    config = replace(config, predict=replace(config.predict, batch_size=config.max_batch_size or 16))
    raise SystemExit(serve(config, progress=console()))  # its lines on stderr, as the access log
