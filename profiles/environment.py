"""What a profile ran on: kdtool and library versions, CPU, cores, load, threads, device and GPU.

Stored in every profile's ``environment`` (``profiles/SCHEMA.md``), so a latency figure always
travels with the machine and software that produced it.
"""

from __future__ import annotations

import os

import numpy as np


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(settings: dict, profile) -> dict:
    import platform

    import psutil
    import torch

    from kdtool import __version__
    from kdtool.bundle.arithmetic import this_machine

    machine = this_machine()

    cuda = settings["device"].startswith("cuda")
    return {
        "kdtool": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": _version("transformers"), "onnxruntime": _version("onnxruntime"),
        "numpy": np.__version__, "cpu": machine.cpu, "int8_arithmetic": machine.to_dict(), "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "threads": settings["threads"] or torch.get_num_threads(),
        "device": settings["device"], "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "profile": profile.to_dict() if profile else settings["profile"],
    }
