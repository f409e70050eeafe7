#!/usr/bin/env python
"""``python scripts/doctor.py [--json]``: see ptb_lm.cli.doctor_main."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import doctor_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(doctor_main())
