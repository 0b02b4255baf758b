"""``cityos serve`` as a real process on a free loopback port, for tests that talk to it
over a socket (the smoke tests, and federation between several City OS instances)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

API = "/ngsi-ld/v1"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def start_server(
    data_dir: Path, env_extra: Mapping[str, str] | None = None, port: int | None = None
) -> Server:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env.update(env_extra or {})
    log_path = data_dir.parent / f"serve-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cityos", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = Server(process, port, log, log_path)
    _wait_ready(server)
    return server


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.log.close()
            pytest.fail(
                f"cityos serve exited with {server.process.returncode}:\n{server.log_path.read_text()}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + "/version", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    server.stop()
    pytest.fail(
        f"cityos serve was not ready within {STARTUP_SECONDS}s:\n{server.log_path.read_text()}"
    )
