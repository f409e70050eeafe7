#!/usr/bin/env python
"""``python scripts/generate.py --help``: see ptb_lm.cli.generate_main."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import generate_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(generate_main())
