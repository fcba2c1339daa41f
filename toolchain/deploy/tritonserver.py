"""Run the real ``tritonserver`` that ships in the ``nvidia-pytriton`` wheel on a ``kdtool triton`` repository.

The wheel carries Triton Inference Server 2.51 (``pytriton/tritonserver/bin/tritonserver``), its libraries
(``nvidia_pytriton.libs``), the Python backend (``pytriton/tritonserver/backends/python``) and one backend
stub per Python version (``pytriton/tritonserver/python_backend_stubs/3.X``); no ONNX Runtime or TensorRT
backend. PyTriton's own Python API is not used (on Python 3.11.7 it fails with ``'_thread.RLock' object has
no attribute '_recursion_count'``): this module drives the binary.

Three facts make the Python backend work here:

* the stub for the running Python is copied beside ``libtriton_python.so`` (:func:`backend_directory`), and
  the Python's own ``libpython3.X.so`` goes on ``LD_LIBRARY_PATH`` (otherwise the stub embeds whichever
  libpython the system has);
* the stub does not inherit ``PYTHONPATH``: the models name an environment in ``EXECUTION_ENV_PATH``; the
  backend activates it, and the embedded Python takes that environment's ``site-packages``;
* the stub's pybind11 predates NumPy 2: under NumPy 2 every tensor it hands over is garbled (a BYTES input
  fails with ``unpack_from requires a buffer of ...``). The environment therefore puts a NumPy 1.x
  (``make setup`` installs it in ``.venv/triton-numpy1``) ahead of this environment's ``site-packages``
  (:func:`make_execution_env`); kdtool, ONNX Runtime and tokenizers import and run under it.

Every address is loopback unless the caller says otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import EnvironmentUnsupported

NUMPY1_DIR = Path(sys.prefix) / "triton-numpy1"  # pip install --target .venv/triton-numpy1 "numpy<2" (make setup)


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    libs: Path
    python_backend: Path
    stub: Path


def find_tritonserver() -> TritonInstall:
    """The server inside the installed ``nvidia-pytriton`` wheel; EnvironmentUnsupported when it is not there."""
    site = Path(sysconfig.get_paths()["purelib"])
    root = site / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(root / "bin" / "tritonserver", site / "nvidia_pytriton.libs", root / "backends" / "python",
                            root / "python_backend_stubs" / version / "triton_python_backend_stub")
    missing = [p for p in (install.binary, install.python_backend, install.stub) if not p.exists()]
    if missing:
        raise EnvironmentUnsupported(f"tritonserver not found ({missing[0]} is missing); install the nvidia-pytriton "
                                     "wheel (make setup does: pip install --no-deps nvidia-pytriton)")
    return install


def backend_directory(install: TritonInstall, target: Path) -> Path:
    """``target/python`` = the Python backend plus the stub for this Python; ``target`` is ``--backend-directory``."""
    python = Path(target) / "python"
    python.mkdir(parents=True, exist_ok=True)
    for src in [*install.python_backend.glob("*.so"), *install.python_backend.glob("*.py"), install.stub]:
        shutil.copy2(src, python / src.name)
    return Path(target)


def make_execution_env(target: Path, numpy1: Path = NUMPY1_DIR) -> Path:
    """A venv (no pip) at ``target`` whose ``site-packages`` reads NumPy 1.x from ``numpy1``, then this environment's
    packages (kdtool included, editable installs too): the ``EXECUTION_ENV_PATH`` of the Python models."""
    if not (Path(numpy1) / "numpy").is_dir():
        raise EnvironmentUnsupported(f"no NumPy 1.x at {numpy1} for Triton's Python backend stub (it garbles tensors "
                                     f"under NumPy 2); run make setup, or pip install --target {numpy1} 'numpy<2'")
    target = Path(target)
    if not (target / "pyvenv.cfg").is_file():
        subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(target)],
                       check=True, capture_output=True)
    site = Path(sysconfig.get_paths(vars={"base": str(target), "platbase": str(target)})["purelib"])
    here = sysconfig.get_paths()["purelib"]
    (site / "00-kdtool-numpy1.pth").write_text(f"{Path(numpy1).absolute()}\n", encoding="utf-8")
    (site / "zz-kdtool-env.pth").write_text(f"import site; site.addsitedir({here!r})\n", encoding="utf-8")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TritonServer:
    """A ``tritonserver`` process on loopback ports serving ``repositories``; ``start()`` waits for ``/v2/health/live``."""

    repositories: tuple[Path, ...]
    backends: Path
    host: str = "127.0.0.1"
    ports: dict = field(default_factory=lambda: {"http": free_port(), "grpc": free_port(), "metrics": free_port()})
    log: Path | None = None
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    _log_file: object = None

    @property
    def http(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    def command(self, install: TritonInstall) -> tuple[list[str], dict]:
        repos = [arg for repo in self.repositories for arg in ("--model-repository", str(repo))]
        argv = [str(install.binary), *repos, "--backend-directory", str(self.backends),
                "--http-address", self.host, "--grpc-address", self.host, "--metrics-address", self.host,
                "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
                "--metrics-port", str(self.ports["metrics"]), "--exit-on-error=false", "--exit-timeout-secs", "5",
                *self.extra_args]
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        paths = [str(install.libs), libdir, os.environ.get("LD_LIBRARY_PATH", "")]
        return argv, {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}

    def start(self, timeout: float = 60.0) -> TritonServer:
        argv, env = self.command(find_tritonserver())
        self._log_file = open(self.log, "wb") if self.log else None  # closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvironmentUnsupported(f"tritonserver exited with {self.proc.returncode} before it was live"
                                             f"{f' (log: {self.log})' if self.log else ''}")
            if self.status("/v2/health/live") == 200:
                return self
            time.sleep(0.2)
        self.stop()
        raise EnvironmentUnsupported(f"tritonserver was not live within {timeout:g} s")

    def status(self, route: str) -> int | None:
        """The HTTP status of ``GET route`` on the server (None when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://{self.http}{route}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    def model_states(self) -> dict[str, tuple[str, str]]:
        """``{model: (state, reason)}`` from Triton's repository index (READY, UNAVAILABLE with its reason, ...)."""
        request = urllib.request.Request(f"http://{self.http}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            return {m["name"]: (m.get("state", ""), m.get("reason", "")) for m in json.loads(r.read())}

    def wait_ready(self, model: str, timeout: float = 120.0) -> bool:
        """True once ``model`` is ready; False when it failed to load or is not ready within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc and self.proc.poll() is None:
            if self.status(f"/v2/models/{model}/ready") == 200:
                return True
            if self.model_states().get(model, ("",))[0] == "UNAVAILABLE":
                return False
            time.sleep(0.2)
        return False

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
