"""A whole run: data, model and trainer set up from a config, then epochs, checkpoints and the test.

:func:`fit` is what ``scripts/train.py`` and a notebook call. Its pieces are
small functions so that a notebook can use them one by one.
"""

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import checkpoint
from ._compat import import_mxnet
from .config import check_fits_data
from .context import resolve_contexts
from .data import Corpus, batchify
from .download import locate_ptb
from .errors import ConfigError, Interrupted
from .model import build_model
from .reporting import History, JsonlWriter, Progress, log_event, perplexity
from .training import BatchPlan, evaluate, stream_shards, train_epoch

mx = import_mxnet()
from mxnet import gluon  # noqa: E402

logger = logging.getLogger(__name__)

# The settings that fix the shapes of the parameters: a checkpoint only resumes under the same ones.
ARCHITECTURE = ("mode", "embed_dim", "hidden_dim", "num_layers", "tied")


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's generators (no-op for None, as the seed)."""
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
    trainer: object
    loss_fn: object
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

    def evaluate(self, split):
        """Mean loss per token on ``split``, waiting every batch only under the imperative engine."""
        return evaluate(self.model, self.eval_source(split), self.config.num_steps, self.loss_fn,
                        sync_every_batch=self.config.engine == "imperative")


REPORT_KEY = 10 ** 6  # a kvstore key no parameter uses (the trainer numbers parameters from 0)


def report_reducer(kv, ctx):
    """Return ``f(loss_sum, tokens) -> (sum over workers, sum over workers)`` through ``kv``.

    dist_sync sums what every worker pushes under a key, and each pull returns
    that sum; every worker must call ``f`` at the same points (they do: at each
    report and at the end of each epoch).
    """
    kv.init(REPORT_KEY, mx.nd.zeros((2,), ctx=ctx))

    def sum_across_workers(loss_sum, tokens):
        buffer = mx.nd.array([loss_sum, tokens], ctx=ctx)  # float32: ~1e-7 relative, exact counts below 2**24
        kv.pushpull(REPORT_KEY, buffer, out=buffer)
        total_loss, total_tokens = buffer.asnumpy().tolist()
        return total_loss, int(round(total_tokens))

    return sum_across_workers


def create_kvstore(config, ctxs):
    """Return ``(kvstore or None, rank, num_workers)``; ``None`` where one context needs no reduction."""
    if config.kvstore == "dist_sync":
        if "DMLC_ROLE" not in os.environ:
            raise ConfigError("--kvstore dist_sync needs the DMLC_* environment: start it with scripts/launch.py")
        kv = mx.kv.create("dist_sync")
        return kv, kv.rank, kv.num_workers
    if len(ctxs) == 1:
        return None, 0, 1
    return mx.kv.create(config.kvstore), 0, 1


def make_optimizer(config):
    """The seed's SGD: no momentum, no weight decay.

    MXNet's SGD updates parameters in groups of four with one ``multi_sgd_update``
    call by default (the seed's way, kept by the imperative engine). On this CPU
    that op is about 1.6x slower than one ``sgd_update`` per parameter, which
    computes the same float32 result bit for bit; the fast engine uses the latter.
    """
    optimizer = mx.optimizer.SGD(learning_rate=config.lr, momentum=0, wd=0)
    if config.engine == "fast":
        optimizer.aggregate_num = 0
    return optimizer


def setup(config, corpus=None):
    """Build the data plan, the model and the trainer that ``config`` describes."""
    corpus = corpus or load_corpus(config)
    check_fits_data(config, {name: len(ids) for name, ids in corpus.splits().items()})
    ctxs = resolve_contexts(config.ctx)
    kv, rank, num_workers = create_kvstore(config, ctxs)
    model = build_model(config, len(corpus.dictionary))
    model.initialize_parameters(ctxs)
    if config.engine == "fast":
        # One compiled graph for the whole forward pass; static memory reuses its buffers every batch.
        model.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    if config.engine == "fast":
        loss_fn.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(model.collect_params(), make_optimizer(config), kvstore=kv,
                            update_on_kvstore=False if kv is not None else None)
    # Worker r of n, with k contexts, owns stream blocks r*k .. r*k+k-1 of n*k.
    shards = stream_shards(config.batch_size, num_workers * len(ctxs))[rank * len(ctxs):(rank + 1) * len(ctxs)]
    plan = BatchPlan(corpus.train, config.batch_size, config.num_steps, ctxs, shards)
    reducer = None
    if num_workers > 1:
        # Gluon sets up the kvstore lazily, inside the first all-reduce: rank 0's initial weights
        # are broadcast there. Do it now and wait for every worker, so that no worker's first
        # gradients can meet a server whose parameters are not all in place yet.
        trainer._init_kvstore()  # private, but stable: mxnet is pinned at its last release, 1.9.1
        trainer._init_params()
        kv._barrier()
        reducer = report_reducer(kv, ctxs[0])
    return Setup(config, corpus, ctxs, model, trainer, loss_fn, plan, rank, num_workers, reducer)


def _listeners(config, on_event, resuming):
    listeners = [log_event]
    if config.log_json:
        listeners.append(JsonlWriter(config.log_json, append=resuming))
    if on_event is not None:
        listeners.append(on_event)
    return listeners


def fit(config, on_event=None, resume=None, corpus=None):
    """Train as ``config`` says and return the run's :class:`~ptb_lm.reporting.History`.

    ``on_event`` is called with every event dict. ``resume`` is a save dir or
    checkpoint folder to continue from, up to ``config.epochs`` in total.
    """
    seed_everything(config.seed)
    run = setup(config, corpus)
    history, start_epoch, best_val, plateau = History(), 1, math.inf, 1.0
    if resume is not None:
        history, start_epoch, best_val, plateau = _resume(run, resume)
    listeners = [history] + (_listeners(config, on_event, resume is not None) if run.is_chief else [])

    def emit(event):
        for listen in listeners:
            listen(event)

    if run.is_chief:
        logger.info("training %s %dx%d on %s%s: %d tokens in %d batches of %dx%d per epoch, %d epochs (engine %s)",
                    config.mode, config.num_layers, config.hidden_dim, ", ".join(str(c) for c in run.ctxs),
                    " x %d workers" % run.num_workers if run.num_workers > 1 else "",
                    len(run.corpus.train), len(run.train_plan), config.num_steps, config.batch_size,
                    config.epochs, config.engine)
    progress = Progress(config.progress if run.is_chief else "none")
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            val_loss = run_epoch(run, epoch, learning_rate(config, epoch, plateau), emit, progress)
            improved = val_loss < best_val
            if not improved and config.lr_decay is not None:
                plateau *= config.lr_decay
            best_val = min(best_val, val_loss)
            if config.save_dir and run.is_chief:
                state = {"epoch": epoch, "best_val_loss": best_val, "plateau_factor": plateau,
                         "events": history.events}
                checkpoint.save_checkpoint(config.save_dir, run.model, run.trainer, config,
                                           run.corpus.dictionary, state, best=improved)
                _plot_if_possible(config, history)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(config, history)) from None
    finally:
        progress.close()
    if run.is_chief:
        test_loss = run.evaluate("test")
        emit({"event": "test", "test_loss": test_loss, "test_ppl": perplexity(test_loss),
              "eval_batch_size": config.eval_batch})
    for listen in listeners:
        if hasattr(listen, "close"):
            listen.close()
    return history


def run_epoch(run, epoch, lr, emit, progress):
    """Train one epoch at rate ``lr``, evaluate on valid, emit the events; return the validation loss."""
    config = run.config
    if config.seed is not None:
        mx.random.seed(epoch_seed(config.seed, epoch))
    run.trainer.set_learning_rate(lr)
    start = time.time()

    def report(batch, loss):
        progress.report(loss)
        emit({"event": "batch", "epoch": epoch, "batch": batch, "loss": loss, "ppl": perplexity(loss)})

    total = len(run.train_plan) if config.max_batches is None else min(config.max_batches, len(run.train_plan))
    progress.start(epoch, total)
    train_loss, tokens, train_seconds = train_epoch(
        run.model, run.trainer, run.loss_fn, run.train_plan, config, epoch, report, progress,
        run.sum_across_workers)
    progress.close()
    val_loss = 0.0
    if run.is_chief:
        val_loss = run.evaluate("valid")
        emit({"event": "epoch", "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "val_ppl": perplexity(val_loss), "lr": lr,
              "train_tokens_per_sec": tokens / train_seconds,
              "time_s": time.time() - start})
    if run.sum_across_workers is not None:
        # Only rank 0 evaluates; every worker needs its figure to follow the same rate schedule.
        val_loss = run.sum_across_workers(val_loss, 0)[0]
    return val_loss


def _resume(run, path):
    folder, saved_config, dictionary, state = checkpoint.read_checkpoint(path)
    changed = [k for k in ARCHITECTURE if getattr(saved_config, k) != getattr(run.config, k)]
    if changed:
        raise ConfigError("cannot resume %s with a different %s" % (folder, ", ".join(changed)))
    if dictionary.idx_to_word != run.corpus.dictionary.idx_to_word:
        raise ConfigError("cannot resume %s: its vocabulary differs from this data's" % folder)
    run.model.load_parameters(os.path.join(folder, "model.params"), ctx=run.ctxs)
    checkpoint.restore_trainer(run.trainer, folder)
    checkpoint.restore_rng_states(state["rng"])
    logger.info("resuming from %s after epoch %d", folder, state["epoch"])
    return History(state["events"]), state["epoch"] + 1, state["best_val_loss"], state["plateau_factor"]


def _interrupted_message(config, history):
    done = len(history.of("epoch"))
    if config.save_dir and done:
        return ("interrupted: %s/last holds epoch %d, the last one completed; the batches since are not "
                "saved. Continue with: --resume %s" % (config.save_dir, done, config.save_dir))
    return "interrupted before a checkpoint was written (give --save-dir to be able to resume)"


def _plot_if_possible(config, history):
    try:
        from .plotting import plot_history
    except ImportError:  # matplotlib is an optional extra
        return
    plot_history(history.events, os.path.join(config.save_dir, "curves.png"))
