"""The fast engine's levers as one object, so a benchmark can turn them off one by one. Pure Python.

Each lever is the same math as the chapter's, done with fewer or faster operations;
``FastLevers()`` (all on) is the fast engine, and scripts/benchmark.py's variants add
them in this order, under these names:

    flat_update       every parameter a view into one weight buffer and one gradient buffer:
                      one dot for the global norm, one update with the clip folded in
                      (ptb_lm.updater.FlatUpdater); off: Gluon's Trainer, parameter by parameter
    sparse_embedding  the embedding's gradient row-sparse and updated lazily, beside the flat
                      buffer (one context, one worker, untied weights, plain SGD only)
    softmax_loss      on CPUs, the loss through softmax, whose backward oneDNN runs, instead of
                      log_softmax (ptb_lm.loss.TrainingLoss)
    packed_rnn        the RNN's parameters packed in the flat buffer in its kernel's order, instead
                      of concatenated by Gluon every batch
    kernels           on CPUs, ptb_lm's own vectorised kernels (ptb_lm.kernels) where they can be
                      built: the loss in log-sum-exp form, forward and backward in one pass each
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class FastLevers:
    """Which of the fast engine's levers are on (all, by default); the imperative engine uses none."""

    flat_update: bool = True
    sparse_embedding: bool = True
    softmax_loss: bool = True
    packed_rnn: bool = True
    kernels: bool = True

    @classmethod
    def none(cls):
        """Every lever off: compiled graphs and Gluon's Trainer, the chapter's loss and RNN layer."""
        return cls(flat_update=False, sparse_embedding=False, softmax_loss=False, packed_rnn=False, kernels=False)

    def on(self):
        """The names of the levers that are on, in order."""
        return [name for name in ("flat_update", "sparse_embedding", "softmax_loss", "packed_rnn", "kernels")
                if getattr(self, name)]
