"""Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2017), the optimizer ``ntasgd``.

Plain SGD until the validation loss of an epoch is worse than the best of all epochs but the last
``nonmono`` ones (awd-lstm-lm's main.py: ``len(history) > nonmono and val_loss > min(history[:-nonmono])``);
from the next step on, the weights' running average over every later step (Polyak averaging,
PyTorch's ASGD with t0 = 0 and lambd = 0, which AWD-LSTM switches to)::

    count += 1;  average += (weights - average) / count          after each SGD step

Evaluation, ``best/`` and the export use the average; training goes on from the weights themselves
(the iterate). Fine-tuning (AWD-LSTM's finetune.py) continues a trained run from the weights it
evaluates, averaging from its first step, and ends when the same trigger, now reading the averaged
validation losses of the fine-tuning, fires. A checkpoint therefore holds the average as its model.params and the iterate in its
optimizer.params (``<parameter>:iterate``), with the count, the epoch the average started after and
the validation losses the rule reads, so that a resume on either side of the switch is exact.

The updaters own an :class:`Averager` when the optimizer is ``ntasgd`` and give it their weights as
buffers: the fast engine's one flat buffer per context, or the imperative engine's parameter arrays.
"""

import contextlib

from .runtime import import_mxnet

mx = import_mxnet()

SCALARS = "ntasgd:scalars"  # [active, count, started_after_epoch, len(history), finetuning], float64
HISTORY = "ntasgd:history"  # the validation losses of the SGD epochs, float64 (one 0 more, never empty)


def should_switch(history, val_loss, nonmono):
    """AWD-LSTM's trigger: ``val_loss`` is worse than the best of ``history`` but its last ``nonmono``."""
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


class Averager(object):
    """The average of a run's weights from the switch on; see the module's docstring.

    ``buffers(k)`` gives the arrays that hold the weights on context ``k`` (the same layout on every
    context), ``contexts`` how many contexts there are.
    """

    def __init__(self, nonmono, buffers, contexts):
        self.nonmono = nonmono
        self._buffers = buffers
        self._contexts = contexts
        self.active = False
        self.count = 0  # steps averaged
        self.started_after = None  # the epoch after which averaging began
        self.history = []  # validation losses of the SGD epochs (of the fine-tuning's), which the trigger reads
        self.finetuning = False
        self.average = []
        self._iterate = None  # the weights set aside while the average is swapped in
        self._best_before = None  # what the trigger compared the switching epoch's loss with

    def begin_finetune(self, epoch):
        """Fine-tune from here (after ``epoch``): the weights become those evaluated (the average, if any), and a
        new average starts with the next step; the trigger then reads the fine-tuning's own losses."""
        if self.active and self.count:
            self._write(self.average)
        self.active, self.count, self.started_after, self.history, self.finetuning = True, 0, epoch, [], True
        self.average = [buffer.copy() for buffer in self._buffers(0)]

    def end_of_epoch(self, epoch, val_loss):
        """Apply the trigger to the epoch's validation loss: ``"switch"`` if averaging starts with the next step,
        ``"stop"`` if fine-tuning is done, else None."""
        if self.active and not self.finetuning:
            return None
        fires = should_switch(self.history, val_loss, self.nonmono)
        self._best_before = min(self.history[:-self.nonmono]) if len(self.history) > self.nonmono else None
        self.history.append(val_loss)
        if self.finetuning:
            return "stop" if fires else None
        if fires:
            self.active, self.count, self.started_after = True, 0, epoch
            self.average = [buffer.copy() for buffer in self._buffers(0)]
            return "switch"
        return None

    def after_step(self):
        """Fold the weights just stepped to into the average (once per batch, after the update)."""
        if not self.active:
            return
        self.count += 1
        for average, weights in zip(self.average, self._buffers(0)):
            average += (weights - average) * (1.0 / self.count)

    def describe_switch(self):
        """Why averaging started (or fine-tuning stopped), in a few words."""
        said = "the validation loss %.4f" % self.history[-1]
        if self._best_before is None:
            return said
        return "%s is above %.4f, the best before the last %d epochs" % (said, self._best_before, self.nonmono)

    @property
    def swapped(self):
        return self._iterate is not None

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Within, the weights are the average (once anything is averaged); after, the iterate again."""
        if not self.active or self.count == 0 or self.swapped:
            yield
            return
        self._iterate = [buffer.copy() for buffer in self._buffers(0)]
        try:
            self._write(self.average)
            yield
        finally:
            self._write(self._iterate)
            self._iterate = None

    def _write(self, arrays):
        for k in range(self._contexts):
            for buffer, source in zip(self._buffers(k), arrays):
                buffer[:] = source.as_in_context(buffer.context)

    def iterate(self):
        """The weights training goes on from: set aside while the average is swapped in, else the weights."""
        return self._iterate if self.swapped else self._buffers(0)

    def scalars(self):
        """What a checkpoint keeps besides the arrays: ``{name: float64 NDArray}``."""
        return {SCALARS: mx.nd.array([float(self.active), self.count, -1 if self.started_after is None
                                      else self.started_after, len(self.history), float(self.finetuning)],
                                     dtype="float64"),
                HISTORY: mx.nd.array(list(self.history) + [0.0], dtype="float64")}

    def load(self, scalars, history, iterate):
        """Take a checkpoint's state back, with the weights holding what its model.params held (the average,
        once active): they become the average, and ``iterate`` (arrays like the buffers) the weights."""
        active, count, started, length, finetuning = scalars.asnumpy().tolist()
        self.active, self.count, self.finetuning = bool(active), int(count), bool(finetuning)
        self.started_after = None if started < 0 else int(started)
        self.history = history.asnumpy().tolist()[:int(length)]
        self.average = [buffer.copy() for buffer in self._buffers(0)] if self.active else []
        if self.active:
            self._write(iterate)
