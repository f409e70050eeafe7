"""Learning curves as a PNG: train and validation perplexity by epoch (matplotlib, an optional extra).

A run redraws its curves.png after every epoch in a process of its own (:func:`main`,
started by ptb_lm.outputs), so that the training process never loads matplotlib: drawing
there grew it by a few MB an epoch.
"""

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .errors import DataError  # noqa: E402
from .files import partial_path  # noqa: E402
from .reporting import perplexity  # noqa: E402


def plot_history(events, path, title=None, reference=None, reference_label="reference"):
    """Write ``path``: the epoch events' train and validation perplexity, and the test one if present.

    ``reference`` maps epochs to validation perplexities printed elsewhere (e.g. the chapter's), drawn as points.
    """
    epochs = [e for e in events if e["event"] == "epoch"]
    if not epochs:
        raise DataError("no epoch events to plot: the log holds no finished epoch")
    x = [e["epoch"] for e in epochs]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    # the training loss reported within each epoch, at its place in the epoch (so that one epoch is a line too)
    per_epoch = {e["epoch"]: e.get("batches") for e in epochs}
    reports = [(b["epoch"] - 1 + b["batch"] / float(per_epoch[b["epoch"]]), b["ppl"]) for b in events
               if b["event"] == "batch" and per_epoch.get(b["epoch"]) and math.isfinite(b["ppl"])]
    if reports:
        ax.plot(*zip(*reports), linewidth=0.8, alpha=0.6, color="C0", label="train (reports within epochs)")
    ax.plot(x, [perplexity(e["train_loss"]) for e in epochs], marker="o", color="C0", label="train")
    ax.plot(x, [e["val_ppl"] for e in epochs], marker="o", color="C1", label="validation")
    if reference:
        epochs_ref = sorted(reference)
        ax.plot(epochs_ref, [reference[e] for e in epochs_ref], linestyle="none", marker="*", markersize=12,
                color="black", label="%s (validation)" % reference_label)
    tests = [e for e in events if e["event"] == "test"]
    if tests:
        ax.axhline(tests[-1]["test_ppl"], color="grey", linestyle="--",
                   label="test %.1f" % tests[-1]["test_ppl"])
    ax.set_xlim(0, max(x) + 0.05)  # training starts at 0; the reports come within epoch 1
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.set_title(title or "ptb_lm learning curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main():
    """Draw one plot described on stdin, ``{"events": [...], "path": ...}`` (JSON); how a run draws curves.png.

    The picture is drawn beside ``path`` and renamed over it, so a process killed
    while drawing leaves the previous picture whole.
    """
    job = json.load(sys.stdin)
    path = job["path"]
    partial = partial_path(path)
    try:
        plot_history(job["events"], partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


if __name__ == "__main__":
    main()
