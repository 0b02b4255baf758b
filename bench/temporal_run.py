"""Benchmark City OS temporal history: ``python bench/temporal_run.py [--quick] [--help]``.

See the "Temporal" section of ``bench/README.md`` for the workloads and figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.temporal_suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
