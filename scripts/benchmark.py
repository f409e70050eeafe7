#!/usr/bin/env python
"""Measure the engines and the fast engine's levers on real PTB: ``python scripts/benchmark.py`` (see ``--help``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import benchmark_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(benchmark_main())
