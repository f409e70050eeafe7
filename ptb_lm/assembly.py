"""Assembling a run from its config: the data on the devices, the model, the loss and the updater.

:func:`assemble` is step one of :func:`ptb_lm.fit`, and usable on its own (a benchmark,
a notebook that wants to drive :func:`~ptb_lm.training.train_epoch` itself).
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from typing import Callable, Optional

from .batches import BatchPlan, device_batches
from .config import check_fits_data, epoch_seed
from .data import UNK, Corpus, batch_starts
from .download import locate_ptb
from .families import family_of
from .kernels import KernelStatus, for_run as kernels_for_run
from .levers import FastLevers
from .loss import losses_for
from .errors import ConfigError
from .model import build_model, check_fits
from .optimizers import lazy_update_is_exact
from .parallel import begin_data_parallel, create_kvstore, shards_of_rank
from .regularisers import auxiliary_needed, loss_terms_for
from .runtime import error_summary, import_mxnet
from .runtime.devices import resolve_contexts
from .runtime.memory import available_bytes
from .training import evaluate
from .updater import make_updater

mx = import_mxnet()
from mxnet import gluon  # noqa: E402

logger = logging.getLogger(__name__)


def load_corpus(config, vocabulary=None):
    """Find the data as ``config.data`` says and tokenise it; ``vocabulary``, a resumed checkpoint's, decides
    whether ``<unk>`` is added (a model trained before ptb_lm added it has none)."""
    corpus = Corpus(locate_ptb(config.data), add_unk=vocabulary is None or UNK in vocabulary.word_to_idx)
    if corpus.added_unk:
        logger.info("the data has no %s: it is added to the vocabulary (id %d), so that the trained model reads "
                    "words it never saw as %s", UNK, len(corpus.dictionary) - 1, UNK)
    return corpus


@dataclass
class Run:
    """What a run trains with, once assembled."""

    config: object
    corpus: Corpus
    ctxs: list
    model: object
    updater: object
    loss_fn: object  # training's
    eval_loss_fn: object  # the chapter's SoftmaxCrossEntropyLoss, or the kernels' (ptb_lm.loss.losses_for)
    train_plan: BatchPlan
    rank: int = 0
    num_workers: int = 1
    sum_across_workers: Optional[Callable] = None
    loss_terms: list = field(default_factory=list)  # added to what training backpropagates (ptb_lm.regularisers)
    kernels: Optional[KernelStatus] = None  # whose operators run (ptb_lm.kernels.for_run)
    _eval_sources: dict = field(default_factory=dict, repr=False)

    @property
    def is_chief(self):
        """Only rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def batches_per_epoch(self):
        """The batches an epoch trains: the plan's, or ``max_batches`` if fewer."""
        total = len(self.train_plan)
        return total if self.config.max_batches is None else min(self.config.max_batches, total)

    def eval_source(self, split):
        """A split batchified at the evaluation batch size, on the first context (made once per run)."""
        if split not in self._eval_sources:
            self._eval_sources[split] = device_batches(getattr(self.corpus, split), self.config.eval_batch,
                                                       self.ctxs[0])
        return self._eval_sources[split]

    def split_loss(self, split, progress=None, between_batches=None):
        """Mean loss per token on ``split``, waiting every batch only under the imperative engine."""
        source = self.eval_source(split)
        steps = self.config.num_steps
        if progress is not None:
            progress.start(len(batch_starts(source.shape[0], steps)),
                           {"valid": "validating", "test": "testing"}.get(split, split))
        try:
            return evaluate(self.model, source, steps, self.eval_loss_fn,
                            sync_every_batch=self.config.engine == "imperative", progress=progress,
                            between_batches=between_batches)
        finally:
            if progress is not None:
                progress.close()


def window_lengths_rng(config):
    """``epoch -> RandomState`` that draws the epoch's window lengths: from ``(seed, epoch)`` when seeded, so that
    a resumed run draws the same ones, else from NumPy's generator."""
    if config.seed is None:
        return lambda epoch: np.random.RandomState(np.random.randint(2 ** 31))
    return lambda epoch: np.random.RandomState(epoch_seed(config.seed, epoch))


def assemble(config, corpus=None, levers=FastLevers(), vocabulary=None, loss_terms=None):
    """Build the data plan, the model and the updater that ``config`` describes.

    ``levers`` turns the fast engine's levers off one by one, for measuring them
    (:class:`~ptb_lm.levers.FastLevers`); the imperative engine uses none of them.
    ``loss_terms`` (:class:`~ptb_lm.regularisers.LossTerm` objects) replace the ones
    ``config`` asks for, for a notebook or a test that brings its own.
    """
    corpus = corpus or load_corpus(config, vocabulary)
    check_fits_data(config, {name: len(ids) for name, ids in corpus.splits().items()})
    said = []  # the device line, said by rank 0 alone once the ranks are known
    ctxs = resolve_contexts(config.ctx, say=said.append)
    kv, rank, num_workers = create_kvstore(config.kvstore, ctxs)
    for line in said if rank == 0 else ():
        logger.info(line)
    fast = config.engine == "fast"
    # A row-sparse embedding gradient needs no all-reduce and no tying: one context, one worker, untied.
    # A row-sparse, lazily updated embedding is the same math for plain SGD without weight decay only.
    # Embedding dropout masks the whole table before the lookup, so its gradient reaches every row.
    sparse = fast and levers.flat_update and levers.sparse_embedding and kv is None and not config.tied and \
        lazy_update_is_exact(config) and not config.dropout_embedding
    check_fits(config, len(corpus.dictionary), available_bytes())
    kernel_use = kernels_for_run(ctxs, fast, levers.kernels, masks=family_of(config.mode).keyed_dropout(config))
    model = build_model(config, len(corpus.dictionary), sparse_grad=sparse, kernels=kernel_use.active,
                        keyed_dropout=kernel_use.masks)
    loss_terms = loss_terms_for(config) if loss_terms is None else list(loss_terms)
    model.keep_auxiliary(auxiliary_needed(loss_terms))  # before the graph is built
    try:
        model.initialize_parameters(ctxs)
        updater = make_updater(config, model, ctxs, kv, levers, sparse_embedding=sparse)  # before the first backward
    except mx.base.MXNetError as err:  # what the estimate missed: MXNet could not allocate the model
        raise ConfigError("the model cannot be allocated (MXNet: %s): lower --hidden-dim or --embed-dim"
                          % error_summary(err), setting="hidden_dim") from None
    if fast:
        loss_fn, eval_loss_fn = losses_for(ctxs, levers.softmax_loss, kernel_use.active)
        # One compiled graph for the whole forward pass; static memory reuses its buffers every batch (windows of
        # drawn lengths change the shapes from batch to batch)
        for block in (model, loss_fn, eval_loss_fn):
            block.hybridize(static_alloc=True, static_shape=not config.variable_bptt)
    else:
        loss_fn = eval_loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    shards = shards_of_rank(config.batch_size, rank, num_workers, len(ctxs))
    plan = BatchPlan(corpus.train, config.batch_size, config.num_steps, ctxs, shards,
                     variable=window_lengths_rng(config) if config.variable_bptt else None)
    reducer = begin_data_parallel(updater, kv, ctxs[0]) if num_workers > 1 else None
    return Run(config, corpus, ctxs, model, updater, loss_fn, eval_loss_fn, plan, rank, num_workers, reducer,
               loss_terms, kernel_use)
