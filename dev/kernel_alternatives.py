#!/usr/bin/env python
"""The fast engine's kernel choices against their alternatives, forward and backward, on random data.

    python dev/kernel_alternatives.py

Prints ms per forward+backward (median of 3 tries of 20 steps, each hybridized with static
memory) at the two configs' decoder shapes, 160 x 100 -> 10000 (the chapter's batch) and
400 x 200 -> 10000 (Zaremba-small's):

* the loss over the logits: the chapter's SoftmaxCrossEntropyLoss (log_softmax), the fast
  engine's -log(pick(softmax)), SoftmaxOutput, and softmax - onehot built from elementwise ops;
* the decoder with that loss: Dense (FullyConnected, oneDNN) against a dot-based decoder,
  with and without its bias.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptb_lm.runtime import import_mxnet  # noqa: E402

mx = import_mxnet()  # ptb_lm's threads and engine, and its engine started without MXNet's stderr line
from mxnet import autograd, gluon, nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from ptb_lm.loss import SoftmaxPickLoss  # noqa: E402

VOCAB = 10000


class SoftmaxOutputLoss(gluon.HybridBlock):
    """Gradient softmax - onehot from SoftmaxOutput; the value from log_softmax (SoftmaxOutput's would underflow)."""

    def hybrid_forward(self, F, z, y):
        value = -F.pick(F.log_softmax(F.BlockGrad(z)), y)
        prob = F.SoftmaxOutput(z, F.cast(y, "float32"), normalization="null")
        return value + 0 * F.pick(prob, y)


class ElementwiseLoss(gluon.HybridBlock):
    """Gradient softmax - onehot built from exp, one_hot and a product."""

    def hybrid_forward(self, F, z, y):
        lp = F.log_softmax(F.BlockGrad(z))
        gradient = F.BlockGrad(F.exp(lp) - F.one_hot(y, VOCAB))
        surrogate = F.sum(z * gradient, axis=1)
        return -F.pick(lp, y) + (surrogate - F.BlockGrad(surrogate))


class DotDecoder(gluon.HybridBlock):
    def __init__(self, hidden, bias):
        super(DotDecoder, self).__init__()
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(VOCAB, hidden))
            if bias:
                self.bias = self.params.get("bias", shape=(VOCAB,), init="zeros")

    def hybrid_forward(self, F, x, weight, bias=None):
        out = F.dot(x, weight, transpose_b=True)
        return out if bias is None else F.broadcast_add(out, bias.reshape((1, -1)))


class WithLoss(gluon.HybridBlock):
    def __init__(self, decoder, loss):
        super(WithLoss, self).__init__()
        with self.name_scope():
            self.decoder, self.loss = decoder, loss

    def hybrid_forward(self, F, x, y):
        return self.loss(self.decoder(x), y)


def milliseconds(block, rows, columns, steps=20, tries=3):
    block.initialize(mx.init.Xavier())
    block.hybridize(static_alloc=True, static_shape=True)
    x = nd.random.normal(shape=(rows, columns))
    y = nd.array(nd.random.randint(0, VOCAB, shape=(rows,)), dtype="int32")
    x.attach_grad()

    def step():
        with autograd.record():
            loss = block(x, y)
        loss.backward()
        x.grad.wait_to_read()
        loss.wait_to_read()

    for _ in range(5):
        step()
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps * 1e3)
    return sorted(times)[len(times) // 2]


def main():
    for rows, hidden in ((160, 100), (400, 200)):
        losses = {
            "chapter's loss (log_softmax)": gluon.loss.SoftmaxCrossEntropyLoss,
            "-log(pick(softmax)) [fast engine]": SoftmaxPickLoss,
            "SoftmaxOutput for the gradient": SoftmaxOutputLoss,
            "softmax - onehot from elementwise ops": ElementwiseLoss,
        }
        print("loss alone, logits %d x %d:" % (rows, VOCAB))
        for name, make in losses.items():
            print("  %-40s %6.2f ms" % (name, milliseconds(make(), rows, VOCAB)))
        decoders = {
            "Dense (FullyConnected) [fast engine]": lambda: nn.Dense(VOCAB, in_units=hidden),
            "dot + broadcast_add bias": lambda: DotDecoder(hidden, bias=True),
            "Dense without bias": lambda: nn.Dense(VOCAB, in_units=hidden, use_bias=False),
            "dot without bias": lambda: DotDecoder(hidden, bias=False),
        }
        print("decoder %d x %d -> %d with the chapter's loss:" % (rows, hidden, VOCAB))
        for name, make in decoders.items():
            block = WithLoss(make(), gluon.loss.SoftmaxCrossEntropyLoss())
            print("  %-40s %6.2f ms" % (name, milliseconds(block, rows, hidden)))


if __name__ == "__main__":
    main()
