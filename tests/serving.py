"""Helpers of the serve tests: a real ``kdtool serve`` subprocess on a free loopback port, and one tiny
bundle exported once per session for every serve test module."""

from __future__ import annotations

import signal
import socket
import time

import httpx
from badinput_fixtures import Proc

KEY = "k" * 8 + "0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
_BUNDLES: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_bundle(tmp_path_factory, roberta_dir):
    """The fp32 bundle of the session's tiny RoBERTa, exported once and shared (tests copy it to change it)."""
    if roberta_dir not in _BUNDLES:
        from kdtool.export.config import ExportConfig
        from kdtool.export.pipeline import export_model

        _BUNDLES[roberta_dir] = export_model(ExportConfig(roberta_dir, tmp_path_factory.mktemp("serve") / "bundle"))
    return _BUNDLES[roberta_dir]


class Server:
    def __init__(self, bundle, tmp, *extra, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(["serve", bundle, "--port", self.port, "--device", "cpu", "--threads", 1, *extra], cwd=tmp,
                         env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.p.poll() is not None:
                raise AssertionError(f"server exited {self.proc.p.returncode}: {self.proc.stderr[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError("server did not become ready")

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.p.send_signal(sig)
        try:
            return self.proc.finish(timeout=60)
        finally:
            self.proc.kill()
