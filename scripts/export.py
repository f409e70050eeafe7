#!/usr/bin/env python
"""Export a checkpoint to ONNX, checked in ONNX Runtime: ``python scripts/export.py runs/x --out runs/x-onnx``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import export_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_main())
