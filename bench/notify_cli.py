"""``bench/notify_run.py``: start the server (or use ``--url``), run the notification
workloads, print the figures and the final JSON object, and stop the server whatever
happens. Server start and stop, pinning and the final output are ``bench/cli.py``'s, so
both drivers behave alike. With ``--fresh-server`` each workload gets its own server.

Exit status: 0 when every target and check is met, 1 when some are not, 3 when the server
could not be started or reached, 130 when interrupted.
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace

import aiohttp

# These take bench/run.py's Options, of which NotifyOptions has every field they read
# (keep_data, quick, json_path, as_json): hence the type: ignore below.
from bench.cli import _check_server_survived, _emit, _interrupt, _pin_driver, _stop, _wait
from bench.engine import run_with_loop
from bench.machine import machine_info
from bench.notify_options import NotifyOptions, parse_options
from bench.notify_report import NotifyReport, register_targets
from bench.notify_subscriptions import SetupFailed
from bench.notify_suite import run_notify_suite
from bench.report import progress
from bench.server import ServerError, ServerProcess, start_server, wait_ready

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    register_targets()
    # A background job starts with SIGINT ignored; Ctrl-C and SIGTERM must always stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    machine = machine_info()
    report = NotifyReport()
    try:
        if options.url is not None:
            wait_ready(options.url, None, timeout=10)
            progress(f"# using the running server at {options.url}")
            run_with_loop(run_notify_suite(options, options.url, options.server_pid, report))
        else:
            # Pin once: a second _pin_driver() would find the driver on one CPU and give up.
            server_cpus = _pin_driver() if options.pin else None
            for group in _server_groups(options):
                _run_on_new_server(group, report, server_cpus)
    except KeyboardInterrupt:
        progress("# interrupted")
        return 130
    except (ServerError, SetupFailed, aiohttp.ClientError) as exc:
        progress(f"!!! the server failed: {exc}")
        return 3
    report.add("total_run_s", time.monotonic() - started)
    _emit(report, options, machine)  # type: ignore[arg-type]
    return 1 if report.failed() else 0


def _server_groups(options: NotifyOptions) -> list[NotifyOptions]:
    """One server for the whole run, or (``--fresh-server``) one per workload."""
    if not options.fresh_server:
        return [options]
    return [replace(options, only=(name,)) for name in options.only]


def _run_on_new_server(
    options: NotifyOptions, report: NotifyReport, server_cpus: set[int] | None
) -> None:
    server: ServerProcess = start_server(options.server_cmd, server_cpus)
    progress(f"# started {server.command} (pid {server.process.pid})")
    try:
        _wait(server)
        run_with_loop(run_notify_suite(options, server.api, server.process.pid, report))
        _check_server_survived(server, report)
    except (ServerError, SetupFailed, aiohttp.ClientError):
        progress(f"server log tail:\n{server.log_tail()}")
        raise
    finally:
        _stop(server, options)  # type: ignore[arg-type]
