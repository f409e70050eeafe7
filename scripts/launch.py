#!/usr/bin/env python
"""Data-parallel training with MXNet's parameter server: ``python scripts/launch.py --local 2 -- ARGS``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import launch_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(launch_main())
