#!/usr/bin/env python
"""Train the PTB language model: ``python scripts/train.py --mode rnn_relu`` (see ``--help``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ptb_lm.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
