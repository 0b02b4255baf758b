"""The end-to-end demo in docs/demo/ runs as its page says (a user copies it as is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mimamori_demo_runs_as_described() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "demo" / "mimamori.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "FAILED" not in out
    for line in (
        "no consent yet: the service receives nothing",
        "the service is notified of the position: [134.042, 34.34]",
        "the service receives nothing more",
        "and may no longer read the tag (403)",
        "audit log intact",
        "The demo ran as described.",
    ):
        assert line in out, line
    # the guardian's access log names the service's reads, by its key and client name
    assert "personal.read" in out and "(mimamori)" in out
