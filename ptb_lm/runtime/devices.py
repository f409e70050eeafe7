"""Choosing where to compute: ``--ctx auto|cpu|gpu|gpu:N|gpu:0,1|cpu:0,1``."""

import logging
import re

from ..errors import ContextError
from .shim import error_summary, import_mxnet
from .supported import capability_range

logger = logging.getLogger(__name__)

_SPEC = re.compile(r"^(cpu|gpu)(?::(\d+(?:,\d+)*))?$")


def parse_ctx_spec(spec):
    """Split a --ctx value into ``('auto', [])`` or ``(kind, [device ids])``.

    >>> parse_ctx_spec('gpu:0,1')
    ('gpu', [0, 1])
    """
    spec = spec.strip().lower()
    if spec == "auto":
        return "auto", []
    match = _SPEC.match(spec)
    if not match:
        raise ContextError(
            "unknown --ctx %r: use auto, cpu, gpu, gpu:N, or a list such as gpu:0,1 or cpu:0,1" % spec
        )
    ids = [int(i) for i in match.group(2).split(",")] if match.group(2) else [0]
    if len(set(ids)) != len(ids):
        raise ContextError("--ctx %r names a device twice" % spec)
    return match.group(1), ids


def _probe(ctx):
    """Run a small computation on ``ctx`` and wait for it: raises if ``ctx`` cannot compute.

    It runs MXNet's own kernels (elementwise, activation, reduction), not only a
    cuBLAS product: cuBLAS may answer on a card whose architecture the wheel has
    no code for, where training would then fail.
    """
    mx = import_mxnet()
    x = mx.nd.ones((4, 4), ctx=ctx)
    (mx.nd.relu(x * 2 - 1).sum() + mx.nd.dot(x, x).sum()).asnumpy()  # asnumpy() waits: failures surface here


def gpu_description(index):
    """``{'name', 'capability', 'supported'}`` of GPU ``index`` as the driver reports it, or None."""
    from .native import cuda_driver

    devices = cuda_driver()["devices"]
    return devices[index] if index < len(devices) else None


def gpu_unusable_reason(index):
    """Return None if GPU ``index`` computes, else a sentence saying why not."""
    mx = import_mxnet()
    try:
        count = mx.context.num_gpus()
    except mx.base.MXNetError as err:
        return "the CUDA driver does not answer (%s)" % error_summary(err)
    if index >= count:
        return "no GPU %d is visible (this mxnet sees %d)" % (index, count)
    device = gpu_description(index)
    if device is not None and device["supported"] is False:
        return ("GPU %d (%s) has compute capability %s, and mxnet-cu112 1.9.1 runs on %s only (the last MXNet "
                "release predates this GPU)" % (index, device["name"], device["capability"], capability_range()))
    try:
        _probe(mx.gpu(index))
    except mx.base.MXNetError as err:
        return (
            "GPU %d cannot compute (%s); mxnet-cu112 1.9.1 supports compute capability %s; "
            "ptb-lm-doctor tells more" % (index, error_summary(err), capability_range())
        )
    return None


def try_gpu(index=0, purpose="training", say=None):
    """Return ``mx.gpu(index)`` if a computation there runs to the end, else ``mx.cpu()``, saying why
    (to ``say``, a callable taking the line; default: the log)."""
    mx = import_mxnet()
    reason = gpu_unusable_reason(index)
    if reason is None:
        return mx.gpu(index)
    (say or logger.info)("%s on the CPU: %s" % (purpose, reason))
    return mx.cpu()


def resolve_contexts(spec, purpose="training", say=None):
    """Return the list of MXNet contexts that a --ctx value names, each checked to compute (``say``: see
    :func:`try_gpu`)."""
    kind, ids = parse_ctx_spec(spec)
    mx = import_mxnet()
    if kind == "auto":
        return [try_gpu(0, purpose, say)]
    if kind == "cpu":
        return [mx.cpu(i) for i in ids]
    for i in ids:
        reason = gpu_unusable_reason(i)
        if reason is not None:
            raise ContextError("--ctx %s: %s. Use --ctx cpu or --ctx auto." % (spec, reason))
    return [mx.gpu(i) for i in ids]
