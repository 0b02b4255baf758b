"""``bench/run.py``: start the server (or use ``--url``), run the suite, print the figures
and the final JSON object, and stop the server whatever happens.

Exit status: 0 when every target and check is met, 1 when some are not, 3 when the server
could not be started or reached, 130 when interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import orjson

from bench.auth import API_KEY_HEADER, ROLE, create_service_key
from bench.engine import run_with_loop
from bench.machine import machine_info
from bench.options import Options, parse_options
from bench.report import Report, progress
from bench.server import ServerError, ServerProcess, start_server, stop_server, wait_ready
from bench.suite import run_suite

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # A background job starts with SIGINT ignored; Ctrl-C and SIGTERM must always stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    server: ServerProcess | None = None
    started = time.monotonic()
    machine = machine_info()  # before the run, so the load average is the machine's own
    headers: dict[str, str] = {}
    try:
        if options.url is None:
            server = _start(options)
            _wait(server)
            if options.auth:
                headers[API_KEY_HEADER] = create_service_key(server)
                progress(f"# requests carry a key of role {ROLE!r}, not an administrator")
        else:
            wait_ready(options.url, None, timeout=10)
            progress(f"# using the running server at {options.url}")
        api = server.api if server else str(options.url)
        pid = server.process.pid if server else options.server_pid
        report = run_with_loop(run_suite(options, api, pid, headers))
        _check_server_survived(server, report)
    except KeyboardInterrupt:
        progress("# interrupted")
        return 130
    except (ServerError, aiohttp.ClientError) as exc:
        progress(f"!!! the server failed: {exc}")
        if server is not None:
            progress(f"server log tail:\n{server.log_tail()}")
        return 3
    finally:
        if server is not None:
            _stop(server, options)
    report.add("total_run_s", time.monotonic() - started)
    _emit(report, options, machine)
    return 1 if report.failed() else 0


def _start(options: Options) -> ServerProcess:
    server_cpus = _pin_driver() if options.pin else None
    server = start_server(options.server_cmd, server_cpus, options.auth)
    progress(f"# started {server.command} (pid {server.process.pid})")
    return server


def _wait(server: ServerProcess) -> None:
    seconds = wait_ready(server.api, server)
    progress(f"# server ready after {seconds:.1f} s at {server.api}")


def _pin_driver() -> set[int] | None:
    """Give the server the first CPU and this driver the others, so neither steals."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        return None
    server_cpus = {min(cpus)}
    os.sched_setaffinity(0, cpus - server_cpus)
    progress(
        f"# server pinned to CPU {sorted(server_cpus)}, driver to {sorted(cpus - server_cpus)}"
    )
    return server_cpus


def _check_server_survived(server: ServerProcess | None, report: Report) -> None:
    if server is not None and server.process.poll() is not None:
        report.note(f"the server exited with code {server.process.returncode} during the run")
        report.verdicts["server_survived"] = False


def _stop(server: ServerProcess, options: Options) -> None:
    code = stop_server(server, keep_workdir=options.keep_data)
    where = f"; data and log kept in {server.workdir}" if options.keep_data else ""
    progress(f"# server stopped (exit code {code}){where}")


def _emit(report: Report, options: Options, machine: dict[str, Any]) -> None:
    if options.quick:
        report.note("quick mode is a smoke check: the targets are meant for full runs")
    config: dict[str, Any] = options.as_json()
    document = report.as_json(machine, config)
    print(report.summary(), flush=True)
    print(orjson.dumps(document).decode(), flush=True)
    if options.json_path:
        Path(options.json_path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Treat SIGTERM as Ctrl-C: inside the event loop, asyncio.Runner's SIGINT handler
    # cancels the suite cleanly; outside it, SIGINT raises KeyboardInterrupt.
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
