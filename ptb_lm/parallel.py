"""Data parallelism in one place: which streams each context and worker owns, the kvstore, the sums.

    global batch: 32 streams              worker 0 (or context 0)     worker 1 (or context 1)
    columns 0..31 of batchify(train, 32)  columns 0..15, its hidden   columns 16..31, its hidden
    each computes its loss summed over its tokens -> backward -> kvstore sums the gradients
    -> every copy clips the summed gradient at clipping_norm x num_steps x 32 -> step(32)

That is the gradient, the clipping and the step of one process with the whole
batch, up to the order of floating-point sums. Worker r of n, with k contexts,
owns stream blocks r*k .. r*k+k-1 of n*k. Only rank 0 logs, evaluates and
writes checkpoints; its validation loss is shared so every worker follows the
same rate schedule.
"""

import os

import numpy as np

from .errors import ConfigError
from .runtime import import_mxnet
from .runtime.internals import kvstore_barrier

mx = import_mxnet()

# ptb_lm's kvstore keys: numbers no parameter uses (Gluon's Trainer numbers parameters from 0)
REPORT_KEY = 10 ** 6  # the reported losses and token counts (report_reducer)
GRAD_KEY = 10 ** 6 + 1  # the fast engine's gradient buffer (updater.FlatUpdater)
WEIGHT_KEY = 10 ** 6 + 2  # its weight buffer, once, for the first weights


def stream_shards(batch_size, num_shards):
    """Split the columns ``0..batch_size-1`` into ``num_shards`` contiguous ``(start, stop)`` blocks.

    With 2 shards of 5 streams: ``[(0, 3), (3, 5)]``. Each device (or worker)
    keeps the streams of its block, and their hidden state, across batches.
    """
    if num_shards > batch_size:
        raise ConfigError("cannot split %d streams over %d devices or workers: raise --batch-size"
                          % (batch_size, num_shards))
    bounds = np.linspace(0, batch_size, num_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def shards_of_rank(batch_size, rank, num_workers, num_ctxs):
    """The stream blocks that worker ``rank`` runs, one per context."""
    return stream_shards(batch_size, num_workers * num_ctxs)[rank * num_ctxs:(rank + 1) * num_ctxs]


def create_kvstore(kvstore, ctxs):
    """Return ``(kvstore or None, rank, num_workers)``; ``None`` where one context needs no reduction."""
    if kvstore == "dist_sync":
        if "DMLC_ROLE" not in os.environ:
            raise ConfigError("--kvstore dist_sync needs the DMLC_* environment: start it with ptb-lm-launch (scripts/launch.py)")
        kv = mx.kv.create("dist_sync")
        return kv, kv.rank, kv.num_workers
    if len(ctxs) == 1:
        return None, 0, 1
    return mx.kv.create(kvstore), 0, 1


def begin_data_parallel(updater, kv, ctx):
    """Put rank 0's initial weights everywhere now, wait for every worker, and return the report reducer.

    Gluon's Trainer would do the first part lazily, inside the first all-reduce.
    Doing it here, then waiting at a barrier, means no worker's first gradients
    can meet a server whose parameters are not all in place yet.
    """
    updater.broadcast_initial_weights(kv)
    kvstore_barrier(kv)
    return report_reducer(kv, ctx)


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
