"""Benchmark City OS notifications: ``python bench/notify_run.py [--quick] [--help]``.

See the "Notifications" section of ``bench/README.md`` for the workloads and figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import ``bench`` as a package of the repository root, and keep the
    # bench directory itself off sys.path so its module names shadow nothing.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.notify_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
