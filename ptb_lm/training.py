"""Truncated backpropagation through time, one batch and one epoch at a time.

Two engines run the same math (:data:`~ptb_lm.config.ENGINES`):

* ``fast``: the model and the loss are hybridized (one compiled graph each, static
  memory); the loss is summed on the device and read once per report; on a CPU the
  loss is :class:`~ptb_lm.loss.TrainingLoss` (the chapter's, with a faster backward);
  the update is :class:`~ptb_lm.updater.FlatUpdater`'s few large operations, which
  also hands the RNN kernel its parameters packed.
* ``imperative``: the chapter's loop: the Block runs op by op, every batch waits for
  the finiteness check inside ``clip_global_norm`` and for ``asscalar()``
  (:class:`~ptb_lm.updater.ChapterUpdater`).

Batches, the hidden state and the reporting are shared.
"""

import logging
import math
import time

from .data import batch_starts, get_batch
from .errors import TrainingDiverged, arg
from .runtime import import_mxnet

mx = import_mxnet()
from mxnet import autograd, gluon  # noqa: E402

logger = logging.getLogger(__name__)


def detach(state):
    """Cut the autograd graph behind ``state`` (an array, or a list/tuple of them).

    The next batch continues the same streams, so it starts from this state; but
    without the cut, backward would run through every earlier batch of the
    epoch. Truncated BPTT stops the gradient at the batch boundary.
    """
    if isinstance(state, (tuple, list)):
        return [s.detach() for s in state]
    return state.detach()


class LossMeter(object):
    """Sums per-token losses, on the device unless told to wait for every batch.

    A NaN or inf anywhere makes the running sum NaN or inf, so checking the sum
    when it is read catches every divergent batch since the last read.
    """

    def __init__(self, ctx, sync_every_batch):
        self.ctx = ctx
        self.sync_every_batch = sync_every_batch
        self.reset()

    def reset(self):
        self.loss_sum = 0.0 if self.sync_every_batch else mx.nd.zeros((1,), ctx=self.ctx)
        self.tokens = 0

    def add(self, loss_sums, tokens):
        """Add the summed losses of one batch (one 1-element array per context)."""
        total = loss_sums[0] if len(loss_sums) == 1 else mx.nd.add_n(*[s.as_in_context(self.ctx) for s in loss_sums])
        self.loss_sum += total.asscalar() if self.sync_every_batch else total  # += on an NDArray is in place
        self.tokens += tokens

    def wait(self):
        """Wait until every batch added so far is computed (a progress bar then shows work done, not queued)."""
        if not self.sync_every_batch:
            self.loss_sum.wait_to_read()

    def total(self):
        """``(summed loss, tokens)`` so far, NaN and inf included; resets."""
        loss_sum = self.loss_sum if self.sync_every_batch else self.loss_sum.asscalar()
        tokens = self.tokens
        self.reset()
        return float(loss_sum), tokens

    def read(self):
        """Return ``(summed loss, tokens)`` and reset; raise TrainingDiverged on NaN or inf."""
        loss_sum, tokens = self.total()
        if not math.isfinite(loss_sum):
            raise TrainingDiverged("training diverged: the loss became %s; lower %s or %s"
                                   % (loss_sum, arg("lr"), arg("clipping_norm")))
        return loss_sum, tokens


def train_epoch(run, config=None, on_report=None, progress=None, between_batches=None):
    """Train one epoch of ``run`` (an assembled :class:`~ptb_lm.assembly.Run`: its model, updater, loss, batch
    plan and worker reduction) under ``config`` (default: the run's own; a benchmark changes ``max_batches``);
    return ``(mean training loss per token, tokens, seconds)``.

    ``on_report(batch, mean_loss)`` is called every ``eval_period`` batches;
    ``between_batches()`` is called before every batch: it may raise to stop the run
    (Ctrl-C), and the run also lets MXNet's threads follow the machine's load there.
    ``config.batch_size`` is the global batch: the plan may hold only this
    worker's share of its streams, and ``run.sum_across_workers(loss_sum, tokens)``
    then turns this worker's sums into everyone's, so that every worker reports
    (and returns) the loss of the whole batch.

    The run's loss terms (:mod:`ptb_lm.regularisers`), if any, are computed from the
    model's auxiliary outputs and backpropagated with the cross-entropy; the loss
    reported and returned is the cross-entropy alone.

    Normalisation with several contexts or workers: each computes the loss
    summed over its own tokens and backpropagates it; the all-reduce sums the
    gradients, which is the gradient of the loss summed over the whole batch,
    exactly as one process computes it. Clipping then uses the norm of that sum
    at ``clipping_norm x num_steps x batch_size`` (global batch), and the step
    divides by the global ``batch_size``: the same SGD step as one process.
    """
    config = run.config if config is None else config
    model, updater, loss_fn, plan, terms = run.model, run.updater, run.loss_fn, run.train_plan, run.loss_terms
    batch_size = config.batch_size
    sum_across_workers = run.sum_across_workers or (lambda loss_sum, tokens: (loss_sum, tokens))
    imperative = config.engine == "imperative"
    # The gradient is of the loss summed over num_steps x batch_size tokens, so the
    # per-token clipping_norm scales by both (the chapter's rule); a short last batch keeps it.
    # With windows of drawn lengths, each window's own length: AWD-LSTM clips the gradient of the loss
    # averaged over the window. (Its rate scaled by the length is the summed loss's own step.)
    clip_at = config.clipping_norm * config.num_steps * batch_size
    ctxs = plan.ctxs
    hidden = [model.begin_state(func=mx.nd.zeros, batch_size=n, ctx=ctx) for n, ctx in zip(plan.streams, ctxs)]
    period = LossMeter(ctxs[0], sync_every_batch=imperative)
    epoch_loss, epoch_tokens = 0.0, 0
    start = time.time()
    for ibatch, shards in enumerate(plan.batches):
        if config.max_batches is not None and ibatch >= config.max_batches:
            break
        if between_batches is not None:
            between_batches()
        hidden = [detach(h) for h in hidden]
        losses, added = [], []
        with autograd.record():
            for k, (data, target) in enumerate(shards):
                if terms:
                    output, hidden[k], auxiliary = model.with_auxiliary(data, hidden[k])
                    added.extend(term(auxiliary, target.shape[0]) for term in terms)
                else:
                    output, hidden[k] = model(data, hidden[k])
                losses.append(loss_fn(output, target))
        autograd.backward(losses + added)  # the loss summed over tokens, as the chapter's L.backward()
        if config.variable_bptt:
            clip_at = config.clipping_norm * shards[0][0].shape[0] * batch_size
        updater(batch_size, clip_at)  # all-reduce, clip, step(batch_size)
        tokens = sum(t.shape[0] for _, t in shards)
        period.add([l.sum() for l in losses], tokens)
        if progress is not None:
            progress.update(tokens)
        if ibatch % config.eval_period == 0 and ibatch > 0:
            loss_sum, count = sum_across_workers(*period.read())
            epoch_loss, epoch_tokens = epoch_loss + loss_sum, epoch_tokens + count
            if on_report is not None:
                on_report(ibatch, loss_sum / count)
    loss_sum, count = sum_across_workers(*period.read())
    epoch_loss, epoch_tokens = epoch_loss + loss_sum, epoch_tokens + count
    mx.nd.waitall()
    return epoch_loss / max(epoch_tokens, 1), epoch_tokens, time.time() - start


def evaluate(model, data_source, num_steps, loss_fn=None, sync_every_batch=False, progress=None, between_batches=None,
             context=None):
    """Mean per-token loss of ``model`` over a batchified split (the chapter's ``model_eval``).

    ``data_source`` is ``(num_rows, batch_size)`` on one context; the state starts
    at zero and carries across batches, as in training. Runs outside
    ``autograd.record()``, so dropout is off and no graph is kept. The batch size
    changes the result (each column starts from a zero state), so report it.

    Nothing is truncated in evaluation, so ``num_steps`` only sets how the split
    is cut in time, not the loss: a window many times longer gives the same
    result to float32 rounding (a test checks it), with bigger products and far
    fewer calls, though measured no faster here (ptb-lm-benchmark, variant
    ``eval_windows``), so both engines evaluate at ``num_steps``. With an active
    ``progress`` bar the host waits every 20 calls, so the bar shows work done
    rather than work queued.

    A model that carries no state (the transformer) reads each window on its own;
    ``context=C`` (above ``num_steps``) gives it the ``C - num_steps`` tokens before
    each window as well, and scores the window's own tokens only: a sliding window
    over the stream, each token seeing up to ``C - 1`` before it, for about
    ``C / num_steps`` times the work.
    """
    loss_fn = loss_fn or gluon.loss.SoftmaxCrossEntropyLoss()
    ctx = data_source.context
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=data_source.shape[1], ctx=ctx)
    meter = LossMeter(ctx, sync_every_batch)
    showing = progress is not None and progress.active
    for ibatch, i in enumerate(batch_starts(data_source.shape[0], num_steps)):
        if between_batches is not None:
            between_batches()
        data, target = get_batch(data_source, i, num_steps)
        if context and context > num_steps and not model.carries_state:
            start = max(0, i - (context - num_steps))
            output, hidden = model(data_source[start:i + data.shape[0]], hidden)
            output = output[(i - start) * data_source.shape[1]:]  # the window's own positions
        else:
            output, hidden = model(data, hidden)
        meter.add([loss_fn(output, target).sum()], target.shape[0])
        if showing and (ibatch + 1) % 20 == 0:
            meter.wait()
            progress.update(20 * target.shape[0], batches=20)
    loss_sum, tokens = meter.total()
    return loss_sum / tokens
