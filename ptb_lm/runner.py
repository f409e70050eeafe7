"""A whole run: data, model and updater set up from a config, then epochs, checkpoints and the test.

:func:`fit` is what ``scripts/train.py`` and a notebook call. Its pieces are
small functions so that a notebook can use them one by one.
"""

import importlib.util
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ._compat import describe_engine, describe_threads, import_mxnet
from .checkpoint import SaveDirLock, save_checkpoint
from .children import PACKAGE_ROOT, last_line, partial_path
from .config import check_fits_data
from .context import resolve_contexts
from .data import Corpus, batch_starts, batchify
from .download import locate_ptb
from .errors import Interrupted, SaveDirError, TrainingDiverged
from .loss import training_loss_for
from .model import build_model
from .parallel import create_kvstore, shards_of_rank, start_workers
from .reporting import History, JsonlWriter, Progress, console_logging, log_event, perplexity
from .resume import open_resume
from .training import BatchPlan, evaluate, train_epoch
from .updater import make_updater

mx = import_mxnet()
from mxnet import gluon  # noqa: E402

logger = logging.getLogger(__name__)

# Seconds a child may take to draw curves.png: matplotlib's first import in a new environment builds
# its font cache, which can take tens of seconds.
PLOT_TIMEOUT = 300
# The plotting child: this ptb_lm, whatever the working directory holds.
PLOTTER = "import sys; sys.path.insert(0, %r); from ptb_lm.plotting import main; main()"


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's generators (no-op for None, as the chapter)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def epoch_seed(seed, epoch):
    """MXNet's seed for ``epoch``: reseeding per epoch makes resuming at an epoch boundary exact."""
    return (seed * 1000003 + epoch) % (2 ** 31)


def learning_rate(config, epoch, plateau_factor=1.0):
    """The rate for ``epoch`` (1-based): the base rate, times the plateau decays so far,
    times ``lr_decay_per_epoch`` for each epoch past ``lr_decay_after`` (Zaremba's schedule)."""
    rate = config.lr * plateau_factor
    if config.lr_decay_after is not None:
        rate *= config.lr_decay_per_epoch ** max(epoch - config.lr_decay_after, 0)
    return rate


def load_corpus(config):
    """Find PTB as ``config.data`` says and tokenise it."""
    return Corpus(locate_ptb(config.data))


@dataclass
class Setup:
    """What a run trains with."""

    config: object
    corpus: Corpus
    ctxs: list
    model: object
    updater: object
    loss_fn: object  # training's
    eval_loss_fn: object  # the chapter's SoftmaxCrossEntropyLoss (evaluation has no backward to fuse)
    train_plan: BatchPlan
    rank: int = 0
    num_workers: int = 1
    sum_across_workers: Optional[Callable] = None
    _eval_sources: dict = field(default_factory=dict, repr=False)

    @property
    def is_chief(self):
        """Only rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    def eval_source(self, split):
        """A split batchified at the evaluation batch size, on the first context (made once per run)."""
        if split not in self._eval_sources:
            ids = getattr(self.corpus, split)
            self._eval_sources[split] = mx.nd.array(batchify(ids, self.config.eval_batch), ctx=self.ctxs[0],
                                                    dtype="int32")
        return self._eval_sources[split]

    def evaluate(self, split, progress=None, check_stop=None):
        """Mean loss per token on ``split``, waiting every batch only under the imperative engine."""
        source = self.eval_source(split)
        steps = self.config.num_steps
        if progress is not None:
            progress.start(len(batch_starts(source.shape[0], steps)),
                           {"valid": "validating", "test": "testing"}.get(split, split))
        try:
            return evaluate(self.model, source, steps, self.eval_loss_fn,
                            sync_every_batch=self.config.engine == "imperative", progress=progress,
                            check_stop=check_stop)
        finally:
            if progress is not None:
                progress.close()


def setup(config, corpus=None, sparse_embedding=True, flat_update=True, softmax_loss=True, pack_rnn=True):
    """Build the data plan, the model and the updater that ``config`` describes.

    For measuring the fast engine's levers one by one (scripts/benchmark.py):
    ``sparse_embedding=False`` keeps its embedding gradient dense,
    ``flat_update=False`` updates through Gluon's Trainer, parameter by parameter,
    ``softmax_loss=False`` trains with the chapter's loss instead of
    :class:`~ptb_lm.loss.TrainingLoss` (the same function, with a faster backward on a CPU), and
    ``pack_rnn=False`` lets Gluon's RNN layer concatenate its parameters every batch.
    """
    corpus = corpus or load_corpus(config)
    check_fits_data(config, {name: len(ids) for name, ids in corpus.splits().items()})
    ctxs = resolve_contexts(config.ctx)
    kv, rank, num_workers = create_kvstore(config.kvstore, ctxs)
    fast = config.engine == "fast"
    # A row-sparse embedding gradient needs no all-reduce and no tying: one context, one worker, untied.
    sparse = fast and flat_update and sparse_embedding and kv is None and not config.tied
    model = build_model(config, len(corpus.dictionary), sparse_grad=sparse)
    model.initialize_parameters(ctxs)
    updater = make_updater(config, model, ctxs, kv, sparse_embedding=sparse, flat=flat_update,
                           pack_rnn=pack_rnn)  # before the first backward
    eval_loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    loss_fn = training_loss_for(ctxs, eval_loss_fn) if fast and softmax_loss else eval_loss_fn
    if fast:
        # One compiled graph for the whole forward pass; static memory reuses its buffers every batch.
        for block in (model, loss_fn, eval_loss_fn):
            block.hybridize(static_alloc=True, static_shape=True)
    shards = shards_of_rank(config.batch_size, rank, num_workers, len(ctxs))
    plan = BatchPlan(corpus.train, config.batch_size, config.num_steps, ctxs, shards)
    reducer = start_workers(updater, kv, ctxs[0]) if num_workers > 1 else None
    return Setup(config, corpus, ctxs, model, updater, loss_fn, eval_loss_fn, plan, rank, num_workers, reducer)



class RunOutputs(object):
    """What a run writes besides its return value: the save dir (locked) and the JSON log.

    Both are checked when the run starts, so an unwritable folder is found
    before any training, not after an epoch of it.
    """

    def __init__(self, config, resuming):
        self.config = config
        self.resuming = resuming
        self.lock = SaveDirLock(config.save_dir) if config.save_dir else None
        self.log = None
        self._plot_failed = False

    def open(self):
        """Lock the save dir and open the log; a new run never replaces an earlier run's checkpoints or log."""
        if self.lock is not None:
            self.lock.acquire()
            if not self.resuming and os.path.lexists(os.path.join(self.config.save_dir, "last")):
                raise SaveDirError("--save-dir %s already holds a run: continue it with --resume %s, or give a new "
                                   "--save-dir (nothing was changed)" % (self.config.save_dir, self.config.save_dir))
        if self.config.log_json:
            if not self.resuming and os.path.isfile(self.config.log_json) and os.path.getsize(self.config.log_json):
                raise SaveDirError("--log-json %s already holds a run's events: give another file (a resumed run "
                                   "appends to its own)" % self.config.log_json)
            self.log = JsonlWriter(self.config.log_json, append=self.resuming)
        return self

    def close(self):
        if self.log is not None:
            self.log.close()
        if self.lock is not None:
            self.lock.release()

    def save(self, run, state, improved, history):
        """Write the epoch's checkpoint, then redraw the curves (best-effort: a plot never ends a run)."""
        if self.lock is None:
            return
        save_checkpoint(self.config.save_dir, run.model, self.config, run.corpus.dictionary, state, best=improved)
        if not self._plot_failed and importlib.util.find_spec("matplotlib") is not None:  # an optional extra
            self._draw_curves(history)

    def _draw_curves(self, history):
        """Redraw curves.png in a child process (ptb_lm.plotting), waiting for it; a failure is a warning.

        In this process, matplotlib's figures grew it by a few MB an epoch (a bare process:
        72.6 -> 92.2 MB over 25 plots), and a Ctrl-C inside its renderer could crash it.
        The child stays in this process's group, so whatever ends the group (a closed
        terminal, the launcher's SIGTERM) ends it too; but it starts with SIGINT blocked
        (a blocked signal mask survives exec), so a Ctrl-C at the terminal lets it finish
        the picture. This process's own SIGINT is blocked only while the child starts;
        :class:`CtrlC` then gets it, and the run stops after the plot.
        """
        path = os.path.join(self.config.save_dir, "curves.png")
        job = {"path": path, "events": [e for e in history.events if e["event"] in ("epoch", "test")]}
        try:
            unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # pending, never lost
            try:
                child = subprocess.Popen([sys.executable, "-c", PLOTTER % PACKAGE_ROOT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            try:
                _, errors = child.communicate(json.dumps(job), timeout=PLOT_TIMEOUT)
            finally:
                if child.poll() is None:  # a timeout, or a second Ctrl-C
                    child.kill()
                    child.wait()
            failure = None if child.returncode == 0 else last_line(errors, "exit %d" % child.returncode)
        except (OSError, subprocess.TimeoutExpired) as err:
            failure = str(err)
        if failure:
            partial = partial_path(path)  # a child killed while drawing leaves it
            if os.path.exists(partial):
                os.remove(partial)
            self._plot_failed = True
            logger.warning("could not draw %s (%s); training goes on without it", path, failure)


class CtrlC(object):
    """While a run lasts, Ctrl-C asks the run to stop at the next safe point instead of raising anywhere.

    Python raises KeyboardInterrupt in whatever Python code runs when SIGINT
    comes: inside an ``NDArray.__del__`` it is printed and ignored (the Ctrl-C is
    lost), and inside a callback of matplotlib's Agg renderer it made the process
    die of SIGSEGV (the curves are now drawn in a child process, which a terminal's
    Ctrl-C does not reach). So the handler only notes the request; the training and
    evaluation loops call :meth:`check` between batches, and the run checks after
    each checkpoint and plot, where stopping loses nothing. A second Ctrl-C
    interrupts at once. Only the main thread can set a handler; elsewhere (and
    where someone else set one) Python's own behaviour is left as it is.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stopping at the next batch (press Ctrl-C again to stop at once)")

    def check(self):
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the run began."""
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def fit(config, on_event=None, resume=None, corpus=None, quiet=False):
    """Train as ``config`` says and return the run's :class:`~ptb_lm.reporting.History`.

    ``on_event`` is called with every event dict. ``resume`` is a save dir or
    checkpoint folder to continue from, up to ``config.epochs`` in total, with
    the rules of :mod:`ptb_lm.resume` (the run continues in the save dir that
    holds the checkpoint unless ``config.save_dir`` names a new one to branch into).
    In a notebook the chapter's log lines are shown as on the command line,
    unless ``quiet`` or logging is configured already.
    """
    with console_logging(quiet), CtrlC() as ctrl_c:
        return _fit(config, on_event, resume, corpus, ctrl_c)


def _fit(config, on_event, resume, corpus, ctrl_c):
    point = open_resume(resume) if resume is not None else None
    if point is not None:
        config = point.continue_config(config)
    seed_everything(config.seed)
    run = setup(config, corpus)
    outputs = RunOutputs(config, resuming=point is not None) if run.is_chief else None
    progress = Progress(config.progress if run.is_chief else "none")
    history = History()
    listeners = [history]
    try:
        if outputs is not None:
            outputs.open()
            if point is not None:
                point.continue_config(config)  # again, under the lock: the save dir cannot have moved on since
            listeners += [log_event] + ([outputs.log] if outputs.log else []) + ([on_event] if on_event else [])
        start_epoch, best_val, plateau = 1, math.inf, 1.0
        if point is not None:
            if outputs is not None:
                point.start(config)
            events, start_epoch, best_val, plateau = point.restore(run)
            history.events[:0] = events

        def emit(event):
            for listen in listeners:
                listen(event)

        if run.is_chief:
            _log_header(run)
        for epoch in range(start_epoch, config.epochs + 1):
            val_loss = run_epoch(run, epoch, learning_rate(config, epoch, plateau), emit, progress, ctrl_c.check)
            improved = val_loss < best_val
            if not improved and config.lr_decay is not None:
                plateau *= config.lr_decay
            best_val = min(best_val, val_loss)
            if outputs is not None:
                state = {"epoch": epoch, "best_val_loss": best_val, "plateau_factor": plateau,
                         "events": history.events}
                outputs.save(run, state, improved, history)
            ctrl_c.check()  # a Ctrl-C during the save or the plot ends the run here, with the epoch saved
        if run.is_chief:
            test_loss = run.evaluate("test", progress, ctrl_c.check)
            emit({"event": "test", "test_loss": test_loss, "test_ppl": perplexity(test_loss),
                  "eval_batch_size": config.eval_batch})
            _log_outputs(config)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(config, history)) from None
    finally:
        progress.close()
        if outputs is not None:
            outputs.close()
    return history


def _log_outputs(config):
    """Say where the run's files went."""
    if config.save_dir:
        last = os.path.realpath(os.path.join(config.save_dir, "last"))
        best = os.path.realpath(os.path.join(config.save_dir, "best"))
        logger.info("checkpoints: %s/last -> %s, %s/best -> %s%s", config.save_dir, os.path.basename(last),
                    config.save_dir, os.path.basename(best),
                    "; curves: %s/curves.png" % config.save_dir
                    if os.path.isfile(os.path.join(config.save_dir, "curves.png")) else "")
    if config.log_json:
        logger.info("events: %s", config.log_json)


def _log_header(run):
    config = run.config
    batches = len(run.train_plan) if config.max_batches is None else min(config.max_batches, len(run.train_plan))
    logger.info("training %s %dx%d on %s%s: %d batches of %dx%d per epoch%s, %d epoch%s (engine %s; "
                "MXNet's CPU threads: %s; MXNet's engine: %s)",
                config.mode, config.num_layers, config.hidden_dim, ", ".join(str(c) for c in run.ctxs),
                " x %d workers" % run.num_workers if run.num_workers > 1 else "",
                batches, config.num_steps, config.batch_size,
                " (--max-batches %d of %d)" % (batches, len(run.train_plan)) if batches < len(run.train_plan) else "",
                config.epochs, "" if config.epochs == 1 else "s", config.engine, describe_threads(),
                describe_engine())


def run_epoch(run, epoch, lr, emit, progress, check_stop=None):
    """Train one epoch at rate ``lr``, evaluate on valid, emit the events; return the validation loss.

    A NaN or infinite validation loss is divergence: it raises before anything of the epoch is saved.
    """
    config = run.config
    if config.seed is not None:
        mx.random.seed(epoch_seed(config.seed, epoch))
    run.updater.set_learning_rate(lr)
    start = time.time()

    def report(batch, loss):
        progress.report(loss)
        emit({"event": "batch", "epoch": epoch, "batch": batch, "loss": loss, "ppl": perplexity(loss)})

    total = len(run.train_plan) if config.max_batches is None else min(config.max_batches, len(run.train_plan))
    progress.start(total, "epoch %d" % epoch)
    train_loss, tokens, train_seconds = train_epoch(
        run.model, run.updater, run.loss_fn, run.train_plan, config, report, progress, run.sum_across_workers,
        check_stop)
    progress.close()
    val_loss = 0.0
    if run.is_chief:
        val_loss = run.evaluate("valid", progress, check_stop)
    if run.sum_across_workers is not None:
        # Only rank 0 evaluates; every worker needs its figure to follow the same rate schedule.
        val_loss = run.sum_across_workers(val_loss, 0)[0]
    if not math.isfinite(val_loss):
        raise TrainingDiverged("training diverged: the validation loss after epoch %d is %s; nothing of this "
                               "epoch was saved. Lower --lr or --clipping-norm" % (epoch, val_loss))
    if run.is_chief:
        emit({"event": "epoch", "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "val_ppl": perplexity(val_loss), "lr": lr,
              "train_tokens_per_sec": tokens / train_seconds,
              "time_s": time.time() - start})
    return val_loss


def _interrupted_message(config, history):
    done = history.of("epoch")
    if done and done[-1]["epoch"] >= config.epochs:
        where = " (%s/last holds it)" % config.save_dir if config.save_dir else ""
        return ("interrupted after the last epoch, during the test: training is complete%s; measure the test "
                "perplexity with ptb-lm-evaluate%s" % (where, " " + config.save_dir if config.save_dir else ""))
    if config.save_dir and done:
        return ("interrupted: %s/last holds epoch %d, the last one completed; the batches since are not "
                "saved. Continue with: --resume %s" % (config.save_dir, done[-1]["epoch"], config.save_dir))
    if config.save_dir:
        return ("interrupted during epoch 1, before the first checkpoint: nothing was saved in %s yet"
                % config.save_dir)
    return "interrupted; nothing was saved (give --save-dir to be able to resume)"
