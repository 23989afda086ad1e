"""A server in its own process for the tests: started on a free local port, ready once ``/health`` answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python ARGS... --port PORT`` (a command that serves on ``PORT``); output goes to a temporary log file.

    Args:
        args: the interpreter's arguments (``["-m", "airoboros_ggml", "serve", ...]`` or ``["-c", code]``);
            ``--port PORT`` is appended.
        api_key: the key the server requires, if any (sent by :attr:`headers`).
    """

    def __init__(self, args: list[str], api_key: str | None = None, ready_timeout_s: float = 300.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.log = tempfile.NamedTemporaryFile(prefix="airoboros-server-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, *args, "--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer /health in {ready_timeout_s} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server process (``VmRSS``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL after 30 s) and remove its log."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def serve_code(**load_options) -> list[str]:
    """``-c`` arguments of an interpreter that serves SmolLM2 (model name ``smollm2``) with these load options.

    The CLI has no flag for every load option (``kv_reuse``); this runs :func:`airoboros_ggml.serve.run_server`
    as ``airoboros-ggml serve`` does.
    """
    code = (
        "import sys, airoboros_ggml as ag\n"
        "from airoboros_ggml.serve import ServerSettings, run_server\n"
        f"model = ag.load('smollm2', prompt_format='auto', **{load_options!r})\n"
        "run_server(model, ServerSettings(model_name='smollm2'), port=int(sys.argv[-1]))\n"
    )
    return ["-c", code]
