"""Token ids on the devices: a split batchified once, as NDArrays, with every batch's views made once.

One helper, :func:`device_batches`, turns ids into the chapter's ``(num_rows, batch_size)``
layout on a device (training's plan, evaluation's splits, the scorer's texts all use it);
:class:`BatchPlan` lays a training split out over several contexts or workers.
"""

import numpy as np

from .data import batch_starts, batchify, get_batch
from .parallel import stream_shards
from .runtime import import_mxnet

mx = import_mxnet()


def device_batches(ids, batch_size, ctx, columns=None):
    """``batchify(ids, batch_size)`` as an int32 NDArray on ``ctx``: ``(num_rows, batch_size)``, one stream a column.

    ``columns=(start, stop)`` keeps only those streams (a shard of them).
    """
    batched = batchify(np.asarray(ids), batch_size)
    if columns is not None:
        batched = batched[:, columns[0]:columns[1]]
    return mx.nd.array(np.ascontiguousarray(batched), ctx=ctx, dtype="int32")


def awd_lengths(num_rows, num_steps, rng):
    """AWD-LSTM's window lengths over ``num_rows`` rows (its main.py): ``num_steps`` with probability 0.95, else
    half of it, then normal around that with deviation 5, at least 5; each window starts where the last ended,
    and the last is cut at the split's end. ``rng`` is a numpy RandomState."""
    lengths, row = [], 0
    while row < num_rows - 1 - 1:  # AWD's loop bound
        bptt = num_steps if rng.random_sample() < 0.95 else num_steps / 2.0
        length = max(5, int(rng.normal(bptt, 5)))
        length = min(length, num_rows - 1 - row)
        lengths.append(length)
        row += length
    return lengths


class BatchPlan(object):
    """A split laid out as in the chapter, on the device(s), with every batch's views made once.

    ``source[k]`` is the ``(num_rows, streams_k)`` array of shard k on ``ctxs[k]``;
    ``batches[j][k]`` is ``(data, target)`` of batch j on that shard, as
    :func:`~ptb_lm.data.get_batch` returns them (views, not copies).

    With ``variable`` (a function ``epoch -> numpy RandomState``) the windows' lengths are drawn anew for each
    epoch by AWD-LSTM's rule (:func:`awd_lengths`): :meth:`begin_epoch` lays them out.
    """

    def __init__(self, ids, batch_size, num_steps, ctxs, shards=None, variable=None):
        shards = shards or stream_shards(batch_size, len(ctxs))
        self.num_rows = len(ids) // batch_size
        self.num_steps = num_steps
        self.ctxs = list(ctxs)
        self.streams = [stop - start for start, stop in shards]
        self.source = [device_batches(ids, batch_size, ctx, columns) for columns, ctx in zip(shards, ctxs)]
        self.variable = variable
        self.batches = [[get_batch(src, i, num_steps) for src in self.source]
                        for i in batch_starts(self.num_rows, num_steps)]
        if variable is not None:
            self.begin_epoch(1)

    def begin_epoch(self, epoch):
        """Lay out the windows of ``epoch``: the same every epoch, unless their lengths are drawn."""
        if self.variable is None:
            return
        starts = np.cumsum([0] + awd_lengths(self.num_rows, self.num_steps, self.variable(epoch)))
        self.batches = [[get_batch(src, int(start), int(stop - start)) for src in self.source]
                        for start, stop in zip(starts, starts[1:])]

    def __len__(self):
        return len(self.batches)
