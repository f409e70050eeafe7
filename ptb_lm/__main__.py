"""``python -m ptb_lm ARGS`` trains, as ``scripts/train.py ARGS`` does (launched workers use this)."""
import sys

from .cli import train_main

sys.exit(train_main())
