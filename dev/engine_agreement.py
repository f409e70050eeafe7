#!/usr/bin/env python
"""How long the two engines' per-batch losses agree to 1e-4 on real PTB, and the control that explains it.

    python dev/engine_agreement.py data/ptb.zip            # fast vs imperative, 4 modes x 2 configs
    python dev/engine_agreement.py data/ptb.zip --control  # + the imperative engine vs itself, norm summed in reverse

Training at rate 1.0 amplifies rounding through every loss spike; the control shows the same drift
without any change of engine. Prints, per (config, mode), the first report (1 per batch from batch 1)
whose relative difference exceeds 1e-4, over 100 batches.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ptb_lm  # noqa: E402,F401 - makes mxnet importable
from ptb_lm import Corpus  # noqa: E402
from ptb_lm import updater as updaters  # noqa: E402
from ptb_lm.assembly import assemble  # noqa: E402
from ptb_lm.config import MODES, from_preset  # noqa: E402
from ptb_lm.errors import TrainingDiverged  # noqa: E402
from ptb_lm.runner import seed_everything  # noqa: E402
from ptb_lm.training import train_epoch  # noqa: E402


def losses(config, corpus, batches):
    seed_everything(config.seed)
    run = assemble(config.replace(max_batches=batches), corpus)
    out = []
    try:
        train_epoch(run, run.config.replace(eval_period=1), on_report=lambda b, loss: out.append(loss))
    except TrainingDiverged:
        out.append(float("inf"))
    return np.array(out)


def first_above(a, b, tolerance=1e-4):
    n = min(len(a), len(b))
    rel = np.abs(a[:n] - b[:n]) / np.abs(b[:n])
    return (int(np.argmax(rel > tolerance)) + 1 if (rel > tolerance).any() else None), np.nanmax(rel)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the PTB zip or folder")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--control", action="store_true")
    args = parser.parse_args()
    corpus = Corpus(args.data)
    for shape in ("chapter", "zaremba-small"):
        for mode in MODES:
            config = from_preset(shape, mode=mode, seed=1, data=args.data, ctx="cpu", dropout=0.0)
            imperative = losses(config.replace(engine="imperative"), corpus, args.batches)
            fast = losses(config.replace(engine="fast"), corpus, args.batches)
            first, worst = first_above(fast, imperative)
            line = "%-13s %-8s fast vs imperative: first report above 1e-4: %s (max rel %.2e)" % (
                shape, mode, first, worst)
            if args.control:
                chapter_clip = updaters.clip_gradients
                updaters.clip_gradients = lambda params, ctxs, norm: chapter_clip(list(reversed(params)), ctxs, norm)
                try:
                    reordered = losses(config.replace(engine="imperative"), corpus, args.batches)
                finally:
                    updaters.clip_gradients = chapter_clip
                line += "; imperative vs itself reordered: %s" % (first_above(reordered, imperative)[0],)
            print(line, flush=True)


if __name__ == "__main__":
    main()
