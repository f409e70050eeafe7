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


class BatchPlan(object):
    """A split laid out as in the chapter, on the device(s), with every batch's views made once.

    ``source[k]`` is the ``(num_rows, streams_k)`` array of shard k on ``ctxs[k]``;
    ``batches[j][k]`` is ``(data, target)`` of batch j on that shard, as
    :func:`~ptb_lm.data.get_batch` returns them (views, not copies).
    """

    def __init__(self, ids, batch_size, num_steps, ctxs, shards=None):
        shards = shards or stream_shards(batch_size, len(ctxs))
        self.num_rows = len(ids) // batch_size
        self.ctxs = list(ctxs)
        self.streams = [stop - start for start, stop in shards]
        self.source = [device_batches(ids, batch_size, ctx, columns) for columns, ctx in zip(shards, ctxs)]
        self.batches = [[get_batch(src, i, num_steps) for src in self.source]
                        for i in batch_starts(self.num_rows, num_steps)]

    def __len__(self):
        return len(self.batches)
