"""What a run tells: events as dicts, the chapter's log lines, JSON lines and a progress bar.

Training emits events, plain dicts with an ``"event"`` key:

    {"event": "batch", "epoch": E, "batch": B, "loss": L, "ppl": P}
    {"event": "epoch", "epoch": E, "train_loss": .., "val_loss": .., "val_ppl": .., "lr": ..,
                       "batches": .., "train_tokens_per_sec": .., "time_s": ..}
    {"event": "test", "test_loss": .., "test_ppl": .., "eval_batch_size": ..}
    {"event": "resume", "after_epoch": N}        (in a --log-json file only: see read_events)

Any callable taking one event can listen: :class:`History` keeps them for a
notebook, :class:`JsonlWriter` writes them, :func:`log_event` logs the chapter's lines.
"""

import json
import logging
import math
import os
import shutil
import sys

from .errors import SaveDirError, WriteFailed, arg

logger = logging.getLogger("ptb_lm")  # every module's logger is a child of this one


def perplexity(loss):
    """exp(loss), or inf where that overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def format_ppl(ppl):
    """A perplexity for people: two decimals, as the chapter prints them, up to 100000; past that (an early,
    wild batch) three significant digits, e.g. 3.03e+39."""
    return "%.2f" % ppl if ppl < 1e5 else "%.3g" % ppl


def format_event(event):
    """The chapter's log line for an event."""
    kind = event["event"]
    if kind == "batch":
        return "[Epoch %d Batch %d] loss %.2f, perplexity %s" % (
            event["epoch"], event["batch"], event["loss"], format_ppl(event["ppl"]))
    if kind == "epoch":
        return ("[Epoch %d] time cost %.2fs, validation loss %.2f, validation perplexity %s "
                "(train loss %.2f, %.0f tokens/s, lr %g)" % (
                    event["epoch"], event["time_s"], event["val_loss"], format_ppl(event["val_ppl"]),
                    event["train_loss"], event["train_tokens_per_sec"], event["lr"]))
    if kind == "test":
        return "Test loss %.2f, test perplexity %s (eval batch size %d)" % (
            event["test_loss"], format_ppl(event["test_ppl"]), event["eval_batch_size"])
    return json.dumps(event)


def describe_reading(num_steps, context=None, sampling=False):
    """How a model with no state (the transformer) reads the stream, for the logs of training, evaluation
    (``context``: a sliding window) and generation (``sampling``): an RNN carries its state from window to
    window, this model sees one window at a time."""
    if sampling:
        return ("no state crosses windows: each word is sampled from the last %d words alone (the run's window), "
                "as in the PyTorch example" % num_steps)
    if context and context > num_steps:
        return ("no state crosses windows: each %d-token window is scored with up to %d tokens before it, a "
                "sliding window of %d" % (num_steps, context - num_steps, context))
    return ("no state crosses windows: each %d-token window is read on its own, as in the PyTorch example, so a "
            "word sees at most the %d before it" % (num_steps, num_steps - 1))


def log_event(event):
    logger.info(format_event(event))


class History(object):
    """Every event of a run, in order, with the per-epoch series a notebook wants."""

    def __init__(self, events=None):
        self.events = list(events or [])

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]

    def series(self, key, kind="epoch"):
        """E.g. ``history.series('val_ppl')``: one value per epoch."""
        return [e[key] for e in self.of(kind)]

    @property
    def test(self):
        """The test event (``test_loss``, ``test_ppl``), or None before the end."""
        tests = self.of("test")
        return tests[-1] if tests else None

    def __repr__(self):
        return "History(%d epochs, val_ppl=%s, test=%s)" % (
            len(self.of("epoch")), ["%.2f" % p for p in self.series("val_ppl")], self.test)


class JsonlWriter(object):
    """Append each event as one JSON line, flushed at once (a killed run keeps what it logged).

    The file is opened when the writer is made, so a log that cannot be written
    stops a run before it trains (SaveDirError); a write that fails later (a full
    disk) raises WriteFailed.
    """

    def __init__(self, path, append=False):
        self.path = path
        try:
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            self._file = open(path, "a" if append else "w", encoding="utf-8")
        except OSError as err:
            raise SaveDirError("cannot write %s (%s): choose a file in a folder you can write to"
                               % (arg("log_json", path), err.strerror or err)) from None

    def __call__(self, event):
        try:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()
        except OSError as err:
            raise WriteFailed("cannot write %s (%s): the run stopped; its checkpoints, if any, are "
                              "whole. Free space and continue with %s" % (arg("log_json", self.path),
                                                                        err.strerror or err, arg("resume"))) \
                from None

    def close(self):
        try:
            self._file.close()
        except OSError:  # the flush of a full disk; the failure was reported when it happened
            pass


def read_events(path):
    """The events of a --log-json file, each batch and epoch once, as one uninterrupted run would log them.

    A resumed run appends to its log, after ``{"event": "resume", "after_epoch": N}``:
    the events of epochs after N logged before that line belong to the interrupted
    epoch, which the resumed run logs again, so they are dropped here.
    """
    with open(path) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    events = []
    for event in raw:
        if event.get("event") == "resume":
            events = [e for e in events if e.get("epoch", 0) <= event["after_epoch"]]
        else:
            events.append(event)
    return events


def in_notebook():
    """True inside a Jupyter notebook (an IPython kernel)."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class ConsoleHandler(logging.Handler):
    """Writes log lines to ``stream``, clearing any progress bar first and redrawing it after,
    so a line never lands on the end of the bar's line."""

    def __init__(self, stream=None, level=logging.NOTSET):
        super(ConsoleHandler, self).__init__(level)
        self.stream = stream
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        try:
            from tqdm import tqdm

            stream = self.stream or sys.stdout
            with tqdm.external_write_mode(file=stream):
                stream.write(self.format(record) + "\n")
                stream.flush()
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


class console_logging(object):
    """While a run lasts, show ptb_lm's information lines on stdout if nobody has configured logging.

    A notebook that called ``fit()`` would otherwise see nothing (Python shows only
    warnings by default). Where the user set up logging (any handler on the
    ``ptb_lm`` logger or the root logger), that configuration is left alone;
    ``quiet=True`` shows nothing.
    """

    def __init__(self, quiet=False):
        self.quiet = quiet
        self.handler = None
        self._level = None

    def __enter__(self):
        if self.quiet or logger.hasHandlers():
            return self
        self.handler = ConsoleHandler(level=logging.INFO)
        self._level = logger.level
        logger.addHandler(self.handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        if self.handler is not None:
            logger.removeHandler(self.handler)
            logger.setLevel(self._level)
            self.handler = None


def _bar_class(stream):
    """tqdm's notebook widget in Jupyter when ipywidgets is installed (pip install -e '.[notebook]'), else its
    text bar, which a notebook also redraws in place; never tqdm.auto's fallback, which warns and adds an
    output for every update."""
    if stream is sys.stderr and in_notebook():
        try:
            import ipywidgets  # noqa: F401

            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm


class Progress(object):
    """A tqdm bar in a terminal or a notebook: per epoch (batches, ETA, and at each report the loss and
    tokens/s), and during validation and test. ``none``, and ``auto`` elsewhere: no bar, since the log lines
    say enough."""

    def __init__(self, mode="auto", stream=None, mininterval=0.5):
        self.stream = stream or sys.stderr
        self.mininterval = mininterval
        if mode == "auto":
            terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
            mode = "bar" if terminal or (stream is None and in_notebook()) else "none"
        self.enabled = mode == "bar"
        self._bar = None
        self._tokens = 0

    def start(self, total_batches, desc):
        """A bar for ``total_batches`` batches, titled ``desc`` ("epoch 3", "validating")."""
        self.close()
        if not self.enabled:
            return
        tqdm = _bar_class(self.stream)
        # A few columns short of the terminal's width: the "^C" a terminal echoes at Ctrl-C then stays on the
        # bar's line, which the bar clears when it closes, instead of wrapping to a line of its own and
        # leaving a stale bar above the run's last lines.
        width = shutil.get_terminal_size((80, 24)).columns - 4
        self._bar = tqdm(total=total_batches, desc=desc, unit="batch", file=self.stream,
                         leave=False, ncols=max(width, 20), mininterval=self.mininterval)
        self._tokens = 0

    @property
    def active(self):
        return self._bar is not None

    def update(self, tokens, batches=1):
        if self._bar is not None:
            self._tokens += tokens
            self._bar.update(batches)

    def report(self, loss):
        if self._bar is not None:
            rate = self._tokens / max(self._bar.format_dict["elapsed"], 1e-9)
            self._bar.set_postfix(loss="%.2f" % loss, tok_s="%.0f" % rate)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
