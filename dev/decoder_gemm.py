#!/usr/bin/env python
"""The decoder's matrix products: MXNet's FullyConnected (oneDNN) against numpy's BLAS, alone and
inside MXNet as a custom operator.

    python dev/decoder_gemm.py
    OMP_WAIT_POLICY=PASSIVE python dev/decoder_gemm.py

Prints, at the two configs' decoder shapes (160 x 100 -> 10000, the chapter's batch, and
400 x 200 -> 10000, Zaremba-small's), ms per forward + backward (x, weight and bias
gradients), the best of four tries of ten steps, for:

* ``FullyConnected``: what the model uses;
* numpy alone: the same three products and the bias sum on numpy arrays (its BLAS, here
  OpenBLAS), no MXNet involved: what a faster GEMM could give;
* ``npdecoder``: a custom operator that runs those numpy products on zero-copy views of
  MXNet's own arrays, so that MXNet's autograd and engine drive them; and how far its
  values and gradients are from FullyConnected's (relative, max over elements).

On this project's 2-core AVX2 machine numpy alone first looked about 1.6x faster than
FullyConnected. That was MXNet running its operators on one of the two cores (MXNet's
default; see "MXNet's threads" in the README): with one thread a core, as ptb_lm now
sets, FullyConnected was as fast as numpy alone, and the custom operator slower than both.
"""
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptb_lm.runtime import import_mxnet  # noqa: E402

mx = import_mxnet()  # ptb_lm's threads and engine, and its engine started without MXNet's stderr line
from mxnet import autograd, nd  # noqa: E402
from mxnet.base import _LIB, check_call  # noqa: E402

VOCAB = 10000
SHAPES = ((160, 100), (400, 200))


def numpy_view(array):
    """A numpy view of a float32 NDArray's memory, no copy: valid only while MXNet runs the operator."""
    pointer = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(array.handle, ctypes.byref(pointer)))
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=array.shape)


class NumpyDecoder(mx.operator.CustomOp):
    """z = x w^T + b and its gradients, computed by numpy's BLAS straight into MXNet's buffers."""

    def forward(self, is_train, req, in_data, out_data, aux):
        x, w, b = (numpy_view(a) for a in in_data)
        out = numpy_view(out_data[0])
        np.matmul(x, w.T, out=out)
        out += b

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        x, w, dz = numpy_view(in_data[0]), numpy_view(in_data[1]), numpy_view(out_grad[0])
        np.matmul(dz, w, out=numpy_view(in_grad[0]))
        np.matmul(dz.T, x, out=numpy_view(in_grad[1]))
        np.sum(dz, axis=0, out=numpy_view(in_grad[2]))


@mx.operator.register("npdecoder")
class NumpyDecoderProp(mx.operator.CustomOpProp):
    def __init__(self):
        super().__init__(need_top_grad=True)

    def list_arguments(self):
        return ["data", "weight", "bias"]

    def infer_shape(self, in_shape):
        return in_shape, [(in_shape[0][0], in_shape[1][0])], []

    def create_operator(self, ctx, shapes, dtypes):
        return NumpyDecoder()


def best_ms(step, tries=4, steps=10):
    step()
    times = []
    for _ in range(tries):
        start = time.time()
        for _ in range(steps):
            out = step()
        if isinstance(out, nd.NDArray):
            out.wait_to_read()
        times.append((time.time() - start) / steps * 1000)
    return min(times)


def main():
    for rows, width in SHAPES:
        x, w, b = (nd.random.uniform(shape=s) for s in ((rows, width), (VOCAB, width), (VOCAB,)))
        head = nd.random.uniform(shape=(rows, VOCAB)) * 1e-3
        for a in (x, w, b):
            a.attach_grad()

        def mxnet_step(custom):
            with autograd.record():
                z = nd.Custom(x, w, b, op_type="npdecoder") if custom else \
                    nd.FullyConnected(x, w, b, num_hidden=VOCAB)
            z.backward(head)
            return w.grad

        xs, ws, hs = x.asnumpy(), w.asnumpy(), head.asnumpy()

        def numpy_step():
            xs @ ws.T
            hs @ ws
            hs.T @ xs
            return hs.sum(axis=0)

        results = []
        for custom in (False, True):
            mxnet_step(custom)
            results.append([a.grad.asnumpy() for a in (x, w, b)])
        gaps = [float(np.abs(p - q).max() / np.abs(p).max()) for p, q in zip(*results)]
        z = nd.FullyConnected(x, w, b, num_hidden=VOCAB)
        z_gap = float((nd.abs(z - nd.Custom(x, w, b, op_type="npdecoder")).max() / nd.abs(z).max()).asscalar())
        print("%d x %d -> %d: FullyConnected %.2f ms, numpy alone %.2f ms, npdecoder %.2f ms; npdecoder's "
              "values differ by %.1e, gradients by %s" % (
                  rows, width, VOCAB, best_ms(lambda: mxnet_step(False)), best_ms(numpy_step),
                  best_ms(lambda: mxnet_step(True)), z_gap, ", ".join("%.1e" % g for g in gaps)))


if __name__ == "__main__":
    main()
