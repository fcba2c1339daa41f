"""``kdtool triton``: a verified bundle -> a Triton Inference Server model repository (thin layer over
:func:`kdtool.deploy.triton_repo.write_triton_repository`)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import require_signature_option
from kdtool.deploy.triton_repo import ENCODER_BACKENDS, LAYOUTS


@click.command("triton")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Model repository directory to write (tritonserver --model-repository).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="python", show_default=True,
              help="python: one Python-backend model running kdtool's verified engine (CPU). ensemble: tokenizer -> "
                   "encoder -> span decoding, the encoder on a GPU backend (--encoder-backend).")
@click.option("--name", default="kdtool_qa", show_default=True, help="Model name clients call (/v2/models/NAME/infer).")
@click.option("--profile", "profile", default=None,
              help="Device profile (kdtool profiles): windows per engine pass, instance kind, TensorRT batch "
                   "[default: the bundle's, else CPU defaults].")
@click.option("--encoder-backend", type=click.Choice(ENCODER_BACKENDS), default="onnxruntime", show_default=True,
              help="Ensemble only: Triton backend of the encoder (onnxruntime: model.onnx; tensorrt: the bundle's engine; "
                   "python: the same model.onnx through ONNX Runtime inside the Python backend).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=None,
              help="Questions (python layout) or windows (ensemble encoder) Triton puts in one batch; also the most one "
                   "request may hold [default: 64; a tensorrt encoder: its profile's largest batch].")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=None,
              help="How long the dynamic batcher waits for more requests, in microseconds [default: 0 on a CPU, 1000 on a GPU].")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances of the batching model (instance_group count).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime threads of each Python-backend engine [default: the profile's, else ORT's].")
@click.option("--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True,
              help="Longest answer in tokens, as kdtool answer.")
@click.option("--execution-env", type=click.Path(path_type=Path), default=None,
              help="EXECUTION_ENV_PATH of the Python models: an environment directory whose Python has kdtool "
                   "(and NumPy < 2 for Triton <= 24.x stubs); without it the server's own Python must have kdtool.")
@require_signature_option
@click.option("--overwrite", is_flag=True, help="Replace an existing repository (only one kdtool wrote).")
def command(bundle, output, layout, name, profile, encoder_backend, max_batch_size, max_queue_delay_us, instances, threads,
            max_answer_length, execution_env, require_signature, overwrite):
    """Write a Triton model repository at -o from BUNDLE (verified first).

    \b
    The models answer the Open Inference Protocol tensors question/context -> answer/start/end/score
    (BYTES, INT64, FP32; shape [B, 1]), the same as kdtool serve's /v2 routes:
      kdtool triton bundle -o repo
      tritonserver --model-repository repo --backend-directory BACKENDS
    See docs/serving-triton.md for running the server and the client.
    """
    from kdtool.deploy.triton_repo import TritonRepoConfig, write_triton_repository
    from kdtool.paths import guard_outputs

    guard_outputs({"BUNDLE": bundle, "--require-signature": require_signature, "--execution-env": execution_env},
                  {"-o": output})
    config = TritonRepoConfig(bundle=bundle, output=output, layout=layout, name=name, profile=profile,
                              encoder_backend=encoder_backend, max_batch_size=max_batch_size,
                              max_queue_delay_us=max_queue_delay_us, instances=instances, threads=threads,
                              max_answer_length=max_answer_length, execution_env=execution_env,
                              require_signature=require_signature, overwrite=overwrite)
    result = write_triton_repository(config)
    b = result.batching
    click.echo(f"repository {result.path}: {layout} layout, models {', '.join(result.models)}; clients call "
               f"{result.models[0]} (max_batch_size {b.max_batch_size}, queue delay {b.max_queue_delay_us} us, "
               f"{b.instances} instance(s))")
