"""The server under test: start ``cityos serve`` on a fresh data directory and a free port,
wait until it answers, and always stop it.

The server runs in its own session (process group), so stopping it also stops any
worker process it forked; ``PR_SET_PDEATHSIG`` ends it even if the driver is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_COMMAND",
    "ServerError",
    "ServerProcess",
    "start_server",
    "stop_server",
    "wait_ready",
]

DEFAULT_COMMAND = "{cityos} serve --host {host} --port {port} --data-dir {data_dir}"
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """The server did not start, or stopped while being measured."""


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    command: str
    api: str
    workdir: Path
    log_path: Path

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ServerError(f"the server exited with code {code}")


def start_server(command: str, cpus: set[int] | None, auth: bool = False) -> ServerProcess:
    """Start ``command`` (placeholders ``{cityos} {host} {port} {data_dir}``) pinned to
    ``cpus``, with ``--auth`` appended if ``auth``; the caller must :func:`stop_server` it,
    also on errors."""
    workdir = Path(tempfile.mkdtemp(prefix="cityos-bench-"))
    port = _free_port()
    (workdir / "data").mkdir()
    argv = shlex.split(
        command.format(cityos=_cityos(), host=HOST, port=port, data_dir=workdir / "data")
    ) + (["--auth"] if auth else [])
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _prepare_child(cpus),
        )
    api = f"http://{HOST}:{port}/ngsi-ld/v1"
    return ServerProcess(process, shlex.join(argv), api, workdir, log_path)


def wait_ready(api: str, server: ServerProcess | None, timeout: float = 60.0) -> float:
    """Poll ``GET /types`` until it answers 200 (401 with authentication on); returns the
    seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server is not None:
            server.check_alive()
        if _answers(f"{api}/types"):
            return time.monotonic() - started
        time.sleep(0.1)
    raise ServerError(f"{api}/types did not answer 200 within {timeout:.0f} s")


def stop_server(server: ServerProcess, keep_workdir: bool = False) -> int | None:
    """SIGTERM the server's process group, SIGKILL it after 10 s; returns the exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        code = server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    # Also reaps workers that outlived their parent.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    if code is None:
        code = server.process.wait()
    if not keep_workdir:
        shutil.rmtree(server.workdir, ignore_errors=True)
    return code


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        # With authentication on, the server is up when it refuses a request without a key.
        return exc.code == 401
    except (urllib.error.URLError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _cityos() -> str:
    """The ``cityos`` console script next to this Python, else on PATH, else ``-m``."""
    sibling = Path(sys.executable).with_name("cityos")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("cityos")
    return found if found else f"{shlex.quote(sys.executable)} -m cityos"


def _prepare_child(cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
