"""The way in for a regulariser on the RNN's weights: a transform of the packed weights, applied in both engines.

The oracle is Gluon's own RNN layer with the transformed weights put in its parameters."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ptb_lm.assembly import assemble
from ptb_lm.data import Corpus

from helpers import tiny_config

SCALE = 0.5  # a transform whose effect a model without it can reproduce exactly: every RNN weight halved


def halve(F, packed):
    return packed * SCALE


@pytest.mark.parametrize("engine", ["fast", "imperative"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_a_transform_of_the_rnn_weights_is_applied_in_both_engines(tiny_corpus, engine, mode):
    config = tiny_config(tiny_corpus, mode=mode, engine=engine, num_layers=2, dropout=0.0)
    corpus = Corpus(tiny_corpus)
    run = assemble(config, corpus)
    run.model.transform_rnn_weights(halve)
    reference = assemble(config.replace(engine="imperative"), corpus).model  # no transform
    for name, param in run.model.collect_params().items():
        value = param.data().asnumpy()
        target = reference.collect_params()[name.replace(run.model.prefix, reference.prefix, 1)]
        rnn_weight = ("_l0_" in name or "_l1_" in name) and "rnn" in name
        target.set_data(value * SCALE if rnn_weight else value)
    data = mx.nd.array(corpus.train[:20].reshape(5, 4), dtype="int32")
    target_ids = mx.nd.array(corpus.train[1:21].reshape(5, 4).reshape((-1,)), dtype="float32")

    def forward_and_grad(model):
        state = model.begin_state(func=mx.nd.zeros, batch_size=4, ctx=mx.cpu())
        with autograd.record():
            logits, _ = model(data, state)
            loss = mx.nd.softmax_cross_entropy(logits, target_ids)
        loss.backward()
        return logits.asnumpy()

    ours, theirs = forward_and_grad(run.model), forward_and_grad(reference)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # the gradient reaches the parameters through the transform: d/dw f(w * s) = s * f'(w * s)
    h2h = [n for n in run.model.collect_params() if n.endswith("l1_h2h_weight")][0]
    ours_grad = run.model.collect_params()[h2h].grad().asnumpy()
    theirs_grad = reference.collect_params()[h2h.replace(run.model.prefix, reference.prefix, 1)].grad().asnumpy()
    np.testing.assert_allclose(ours_grad, SCALE * theirs_grad, rtol=1e-4, atol=1e-7)
