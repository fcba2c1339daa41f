"""kdtool.deploy: a verified bundle as a model repository for Triton Inference Server (``kdtool triton``).

:mod:`~kdtool.deploy.triton_repo` writes the repository (one typed config, one function),
:mod:`~kdtool.deploy.triton_configs` holds the model configs as data, :mod:`~kdtool.deploy.triton_models` is
what the Python-backend models run, and :mod:`~kdtool.deploy.tritonserver` starts the real server from the
``nvidia-pytriton`` wheel (tests, benchmarks, the docs' recipe).
"""
