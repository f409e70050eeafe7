"""The fast engine's loss: the chapter's cross-entropy, computed faster on CPUs.

Where ptb_lm's own kernels run (:mod:`ptb_lm.kernels`), the loss is :class:`KernelLoss`: one
operator, in log-sum-exp form, exact at any loss, whose forward reads the logits once and whose
backward reads them once and writes their gradient; it serves training and evaluation.

Where they do not (no compiler, ``PTB_LM_KERNELS=0``), MXNet's own operators do it as follows.

The chapter's loss, ``gluon.loss.SoftmaxCrossEntropyLoss``, is ``-pick(log_softmax(z), y)``.
Its forward is cheap, but MXNet's CPU backward of ``log_softmax`` is not: it
measured about 9x the forward at both configs, the largest cost of a batch
after the decoder (``scripts/benchmark.py --profile``). ``softmax``'s backward
runs on oneDNN and is several times faster, so the fast engine trains on

    logits z (N, V) ── softmax ── pick(y) ── -log ──> per-token loss (N,)

which is the same function: ``-log softmax(z)[y] = -log_softmax(z)[y]``, and its
gradient with respect to z is ``softmax(z) - onehot(y)`` either way. Two other
ways measured slower: ``SoftmaxOutput`` (its forward softmax is not vectorised)
and building ``softmax(z) - onehot(y)`` from elementwise operations.

The one difference is float32 range. ``softmax(z)[y]`` underflows, and the
gradient path divides by it, where ``log_softmax`` does not: for a token whose
loss is past about 87 nats. :class:`TrainingLoss` looks at every batch's losses
before backward, and a batch with a token past :data:`SAFE_NATS` is computed
again from the same logits with the chapter's loss (same dropout, same state:
only the last step is redone). So the math is the chapter's in every batch.

It is a CPU lever (:func:`training_loss_for`): waiting for each forward pass would
serialise several GPUs, and it was measured on CPUs only.
"""

import logging

from .runtime import import_mxnet

mx = import_mxnet()
from mxnet import autograd, gluon  # noqa: E402

logger = logging.getLogger(__name__)

# exp(-80) = 1.8e-35 is well inside float32's normal range (down to 1.2e-38), and its
# reciprocal, which the backward forms, well below float32's largest value (3.4e38).
SAFE_NATS = 80.0


class SoftmaxPickLoss(gluon.HybridBlock):
    """``-log(softmax(logits)[label])``: per-token loss ``(N,)`` of logits ``(N, V)`` and labels ``(N,)``.

    Accurate while every token's loss is below :data:`SAFE_NATS`; use it through
    :class:`TrainingLoss`, which checks that.
    """

    def hybrid_forward(self, F, logits, label):
        return -F.log(F.pick(F.softmax(logits, axis=-1), label))


class KernelLoss(gluon.HybridBlock):
    """``lse(logits) - logits[label]`` by ptb_lm's kernel: per-token loss ``(N,)`` of logits ``(N, V)`` and labels
    ``(N,)``, the chapter's ``SoftmaxCrossEntropyLoss`` to float32 rounding at any loss (needs the kernels loaded).

    It writes the logits' gradient: logits that are a leaf accumulating gradients (``grad_req='add'``, not
    a model's output) need the chapter's loss."""

    def hybrid_forward(self, F, logits, label):
        return F.ptb_softmax_ce(logits, label)[0]


class TrainingLoss(object):
    """The fast engine's loss: :class:`SoftmaxPickLoss`, or the chapter's loss for a batch it cannot take.

    Call it inside ``autograd.record()`` as a Gluon loss: ``loss(logits, label)``
    returns the per-token losses ``(N,)`` to backpropagate. It waits for the
    batch's forward pass to read the largest loss (the fast engine waits once a
    batch anyway, for the gradient norm). ``fallbacks`` counts the batches that
    took the chapter's loss.
    """

    def __init__(self):
        self.fast = SoftmaxPickLoss()
        self.exact = gluon.loss.SoftmaxCrossEntropyLoss()
        self.fallbacks = 0

    def hybridize(self, **kwargs):
        self.fast.hybridize(**kwargs)
        self.exact.hybridize(**kwargs)

    def __call__(self, logits, label):
        losses = self.fast(logits, label)
        with autograd.pause():
            largest = float(losses.max().asscalar())
        if largest < SAFE_NATS:  # False for NaN too: the chapter's loss then reports the divergence
            return losses
        self.fallbacks += 1
        logger.debug("a token's loss reached %s nats: this batch takes the chapter's loss", largest)
        return self.exact(logits, label)


def losses_for(ctxs, softmax_loss=True, kernels=False):
    """``(training loss, evaluation loss)`` of the fast engine on ``ctxs``: :class:`KernelLoss` for both where
    ``kernels`` run (:func:`ptb_lm.kernels.for_run`), else :class:`TrainingLoss` for training on CPUs (the
    ``softmax_loss`` lever) and the chapter's loss for evaluation and on GPUs."""
    if kernels:
        return KernelLoss(), KernelLoss()
    chapter = gluon.loss.SoftmaxCrossEntropyLoss()
    if softmax_loss and all(ctx.device_type == "cpu" for ctx in ctxs):
        return TrainingLoss(), chapter
    return chapter, chapter
