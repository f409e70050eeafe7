"""The epoch loop of a run, with its schedule and Ctrl-C: :func:`fit`, what ``ptb-lm-train`` and a notebook call.

    fit(config) -> resume.begin (assemble the run, open its outputs, restore a checkpoint)
                -> for each epoch: run_epoch (train, validate) -> outputs.save (checkpoint, curves)
                -> the test split
"""

import logging
import math
import os
import random
import signal
import threading
import time

import numpy as np

from .assembly import assemble
from .config import epoch_seed
from .errors import Interrupted, RunFailure, TrainingDiverged, arg
from .outputs import RunOutputs, can_plot
from .reporting import History, Progress, console_logging, describe_reading, log_event, perplexity
from .resume import begin
from .runtime import error_summary, import_mxnet
from .runtime.engine import describe_engine
from .runtime.sharing import ThreadSharing
from .runtime.threads import describe_threads
from .training import train_epoch

mx = import_mxnet()

logger = logging.getLogger(__name__)


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's generators (no-op for None, as the chapter)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def learning_rate(config, epoch, plateau_factor=1.0):
    """The rate for ``epoch`` (1-based): the base rate, times the plateau decays so far,
    times ``lr_decay_per_epoch`` for each epoch past ``lr_decay_after`` (Zaremba's schedule)."""
    rate = config.lr * plateau_factor
    if config.lr_decay_after is not None:
        rate *= config.lr_decay_per_epoch ** max(epoch - config.lr_decay_after, 0)
    return rate


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
    def build(config, vocabulary=None):
        seed_everything(config.seed)
        return assemble(config, corpus, vocabulary=vocabulary)

    def open_outputs(run, resuming):  # only rank 0 writes
        return RunOutputs(run.config, resuming).open() if run.is_chief else None

    history = History()
    outputs = None
    progress = Progress("none")
    try:
        run, outputs, state = begin(config, resume, build, open_outputs)
        config = run.config
        progress = Progress(config.progress if run.is_chief else "none")
        sharing = ThreadSharing.for_this_process()
        history.events[:0] = state.events
        listeners = [history]
        if run.is_chief:
            listeners.append(LossWatch(len(run.corpus.dictionary), config, run.loss_fn))
        if outputs is not None:
            listeners += [log_event] + ([outputs.log] if outputs.log else []) + ([on_event] if on_event else [])

        def emit(event):
            for listen in listeners:
                listen(event)

        def between_batches():
            ctrl_c.check()
            sharing.tick()

        if run.is_chief:
            _log_header(run, sharing)
        best_val, plateau = state.best_val_loss, state.plateau_factor
        for epoch in range(state.next_epoch, config.epochs + 1):
            val_loss = run_epoch(run, epoch, learning_rate(config, epoch, plateau), emit, progress, between_batches)
            turn = run.updater.end_of_epoch(epoch, val_loss)  # NT-ASGD's trigger
            if turn == "switch" and run.is_chief:
                logger.info("averaging the weights from now on (NT-ASGD): after epoch %d, %s; validation, best/ "
                            "and the test use the average", epoch, run.updater.average.describe_switch())
            improved = val_loss < best_val
            if not improved and config.lr_decay is not None:
                plateau *= config.lr_decay
            best_val = min(best_val, val_loss)
            if outputs is not None:
                saved = {"epoch": epoch, "best_val_loss": best_val, "plateau_factor": plateau,
                         "events": history.events}
                with run.updater.evaluation_weights():  # model.params: the weights to evaluate
                    outputs.save(run, saved, improved, history)
            ctrl_c.check()  # a Ctrl-C during the save or the plot ends the run here, with the epoch saved
            if turn == "stop":
                if run.is_chief:
                    logger.info("fine-tuning is done after epoch %d: %s", epoch,
                                run.updater.average.describe_switch())
                break
        if run.is_chief:
            with run.updater.evaluation_weights():
                test_loss = run.split_loss("test", progress, between_batches)
            emit({"event": "test", "test_loss": test_loss, "test_ppl": perplexity(test_loss),
                  "eval_batch_size": config.eval_batch})
            if outputs is not None:
                outputs.draw_curves(history)  # with the test line
            _log_outputs(config)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(config, history)) from None
    except mx.base.MXNetError as err:
        if "allocate" not in str(err).lower():
            raise  # a bug of ours or MXNet's: its traceback says where
        raise RunFailure("MXNet ran out of memory while training (%s): lower %s, %s or %s; %s"
                         % (error_summary(err), arg("batch_size"), arg("num_steps"), arg("hidden_dim"),
                            _kept(config, history))) from None
    finally:
        progress.close()
        if outputs is not None:
            outputs.close()
    return history


class LossWatch(object):
    """Says once, in the log, when the training loss is far above what guessing every word alike scores
    (log of the vocabulary's size): a run that diverges without a NaN, often a rate meant for a loss averaged
    over time steps, and slow, since batches with a token past 80 nats take the chapter's slower loss."""

    FAR = 2.0  # times log(vocabulary size): the chapter's first batches reach about 1.02 times

    def __init__(self, vocab_size, config, loss_fn):
        self.chance = math.log(vocab_size)
        self.config = config
        self.loss_fn = loss_fn
        self.said = False

    def __call__(self, event):
        if self.said or event["event"] != "batch" or not event["loss"] > self.FAR * self.chance:
            return
        self.said = True
        slow = getattr(self.loss_fn, "fallbacks", 0)
        logger.warning(
            "the training loss is %.2f, far above %.2f = log(vocabulary size), what guessing every word alike "
            "scores: training is diverging. Lower the rate (lr): ptb_lm sums the loss over time steps, so a rate "
            "meant for a loss averaged over them, as the PyTorch example's, is that rate / num_steps here (%g "
            "for this run's %g)%s", event["loss"], self.chance, self.config.lr / self.config.num_steps,
            self.config.lr,
            "; %d batches so far had a token past 80 nats and took the chapter's slower loss" % slow
            if slow else "")


def _log_outputs(config):
    """Say where the run's files went."""
    if config.save_dir:
        last = os.path.realpath(os.path.join(config.save_dir, "last"))
        best = os.path.realpath(os.path.join(config.save_dir, "best"))
        curves = os.path.join(config.save_dir, "curves.png")
        logger.info("checkpoints: %s/last -> %s, %s/best -> %s; %s", config.save_dir, os.path.basename(last),
                    config.save_dir, os.path.basename(best),
                    "curves: %s" % curves if os.path.isfile(curves) else
                    "no curves.png: matplotlib is not installed (pip install -e '.[plot]')" if not can_plot() else
                    "no curves.png (see the warning above)")
    if config.log_json:
        logger.info("events: %s", config.log_json)


def describe_layers(config):
    """``2x200``: layers x size; ``1150,1150,400`` where the sizes differ."""
    sizes = config.layer_dims
    return "%dx%d" % (len(sizes), sizes[0]) if len(set(sizes)) == 1 else ",".join(map(str, sizes))


def _log_header(run, sharing):
    config = run.config
    batches = run.batches_per_epoch
    logger.info("training %s %s on %s%s: %d batches of %s%dx%d per epoch%s, %d epoch%s (engine %s; "
                "kernels: %s; MXNet's CPU threads: %s; MXNet's engine: %s)",
                config.mode, describe_layers(config), ", ".join(str(c) for c in run.ctxs),
                " x %d workers" % run.num_workers if run.num_workers > 1 else "",
                batches, "about " if config.variable_bptt else "", config.num_steps, config.batch_size,
                " (--max-batches %d of %d)" % (batches, len(run.train_plan)) if batches < len(run.train_plan) else "",
                config.epochs, "" if config.epochs == 1 else "s", config.engine, run.kernels.describe(),
                describe_threads() + (", " + sharing.describe() if sharing.active else ""), describe_engine())
    if not run.model.carries_state:
        logger.info(describe_reading(config.num_steps))


def run_epoch(run, epoch, lr, emit, progress, between_batches=None):
    """Train one epoch at rate ``lr``, evaluate on valid, emit the events; return the validation loss.

    A NaN or infinite validation loss is divergence: it raises before anything of the epoch is saved.
    """
    config = run.config
    if config.seed is not None:
        mx.random.seed(epoch_seed(config.seed, epoch))
    run.updater.set_learning_rate(lr)
    run.train_plan.begin_epoch(epoch)
    start = time.time()

    def report(batch, loss):
        progress.report(loss)
        emit({"event": "batch", "epoch": epoch, "batch": batch, "loss": loss, "ppl": perplexity(loss)})

    progress.start(run.batches_per_epoch, "epoch %d" % epoch)
    train_loss, tokens, train_seconds = train_epoch(run, config, report, progress, between_batches)
    progress.close()
    val_loss = 0.0
    if run.is_chief:
        with run.updater.evaluation_weights():  # NT-ASGD's average, once it runs
            val_loss = run.split_loss("valid", progress, between_batches)
    if run.sum_across_workers is not None:
        # Only rank 0 evaluates; every worker needs its figure to follow the same rate schedule.
        val_loss = run.sum_across_workers(val_loss, 0)[0]
    if not math.isfinite(perplexity(val_loss)):  # NaN, inf, or a loss past exp's float range (709.8 nats)
        raise TrainingDiverged("training diverged: the validation loss after epoch %d is %s (perplexity %s); "
                               "nothing of this epoch was saved. Lower %s or %s"
                               % (epoch, val_loss, perplexity(val_loss), arg("lr"), arg("clipping_norm")))
    if run.is_chief:
        emit({"event": "epoch", "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "val_ppl": perplexity(val_loss), "lr": lr, "batches": run.batches_per_epoch,
              "train_tokens_per_sec": tokens / train_seconds,
              "time_s": time.time() - start})
    return val_loss


def _kept(config, history):
    """What a failed run kept, in a few words."""
    done = history.of("epoch")
    if config.save_dir and done:
        return "%s/last holds epoch %d (continue with %s)" % (config.save_dir, done[-1]["epoch"],
                                                             arg("resume", config.save_dir))
    return "nothing was saved"


def _interrupted_message(config, history):
    done = history.of("epoch")
    if done and done[-1]["epoch"] >= config.epochs:
        where = " (%s/last holds it)" % config.save_dir if config.save_dir else ""
        return ("interrupted after the last epoch, during the test: training is complete%s; measure the test "
                "perplexity with ptb-lm-evaluate%s" % (where, " " + config.save_dir if config.save_dir else ""))
    if config.save_dir and done:
        return ("interrupted: %s/last holds epoch %d, the last one completed; the batches since are not "
                "saved. Continue with: %s" % (config.save_dir, done[-1]["epoch"], arg("resume", config.save_dir)))
    if config.save_dir:
        return ("interrupted during epoch 1, before the first checkpoint: nothing was saved in %s yet"
                % config.save_dir)
    return "interrupted; nothing was saved (give %s to be able to resume)" % arg("save_dir")
