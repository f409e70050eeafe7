"""The way in for a loss term (AR, TAR): named auxiliary outputs of the model, and terms that training adds
to what it backpropagates, in both engines.

The oracles: numpy for what the outputs are, and for the gradient the model's own pieces (Gluon's embedding,
RNN layer and dense layer) composed by hand with the term written out, one SGD step."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ptb_lm.assembly import assemble
from ptb_lm.data import Corpus, batchify
from ptb_lm.errors import ConfigError
from ptb_lm.model import RNNModel
from ptb_lm.regularisers import LossTerm
from ptb_lm.training import train_epoch
from ptb_lm.transformer import TransformerModel

from helpers import tiny_config

WEIGHT = 0.7  # large enough that the term moves the step well past float32 rounding


class SquaredHidden(LossTerm):
    """WEIGHT x the mean square of the last layer's outputs, per token (AR's form), in the summed scale."""

    name = "squares"
    needs = ("hidden",)

    def __call__(self, auxiliary, tokens):
        return WEIGHT * (auxiliary["hidden"] ** 2).mean() * tokens


def a_window(corpus, steps=5, streams=4):
    source = batchify(corpus.train, streams)
    return mx.nd.array(source[:steps], dtype="int32"), mx.nd.array(source[1:steps + 1].reshape(-1))


def dense_oracle(hidden, decoder):
    """The decoder in numpy: hidden (T, N, C) -> logits (T*N, V)."""
    weight, bias = decoder.weight.data().asnumpy(), decoder.bias.data().asnumpy()
    return hidden.reshape(-1, weight.shape[1]) @ weight.T + bias


@pytest.mark.parametrize("hybridized", [False, True], ids=["imperative", "hybridized"])
def test_the_rnn_returns_its_last_layers_outputs_before_and_after_dropout(tiny_corpus, hybridized):
    corpus = Corpus(tiny_corpus)
    mx.random.seed(3)
    model = RNNModel("lstm", len(corpus.dictionary), 8, 8, 2, dropout=0.5)
    model.initialize_parameters(mx.cpu())
    model.keep_auxiliary(["hidden_dropped", "hidden"])
    if hybridized:
        model.hybridize(static_alloc=True, static_shape=True)
    data, _ = a_window(corpus)
    state = model.begin_state(func=mx.nd.zeros, batch_size=4)
    with autograd.record():  # dropout on
        logits, _, auxiliary = model.with_auxiliary(data, state)
    hidden, dropped = auxiliary["hidden"].asnumpy(), auxiliary["hidden_dropped"].asnumpy()
    assert hidden.shape == dropped.shape == (5, 4, 8)
    kept = dropped != 0
    assert 0.2 < kept.mean() < 0.8  # a mask was drawn, and it is not the state before dropout
    np.testing.assert_allclose(dropped[kept], 2 * hidden[kept], rtol=1e-5)  # kept units scaled by 1 / (1 - p)
    np.testing.assert_allclose(logits.asnumpy(), dense_oracle(dropped, model.decoder), rtol=1e-4, atol=1e-5)
    # dropout off: "hidden" is Gluon's own RNN layer's output, and model(...) still returns (logits, state)
    logits, _, auxiliary = model.with_auxiliary(data, state)
    theirs, _ = model.rnn(model.encoder(data), state)
    np.testing.assert_allclose(auxiliary["hidden"].asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-6)
    plain = model(data, state)
    assert len(plain) == 2 and np.array_equal(plain[0].asnumpy(), logits.asnumpy())


@pytest.mark.parametrize("hybridized", [False, True], ids=["imperative", "hybridized"])
def test_the_transformer_returns_what_its_decoder_reads(hybridized):
    mx.random.seed(4)
    model = TransformerModel(23, 8, 2, 12, 2, dropout=0.0)
    model.initialize_parameters(mx.cpu())
    model.keep_auxiliary(["hidden"])
    if hybridized:
        model.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.array(np.arange(12).reshape(6, 2) % 23, dtype="int32")
    logits, state, auxiliary = model.with_auxiliary(data, [])
    assert state == [] and auxiliary["hidden"].shape == (6, 2, 8)
    np.testing.assert_allclose(logits.asnumpy(), dense_oracle(auxiliary["hidden"].asnumpy(), model.decoder),
                               rtol=1e-4, atol=1e-5)


def test_an_output_a_model_does_not_offer_is_refused_by_name():
    model = TransformerModel(23, 8, 2, 12, 1, dropout=0.0)
    with pytest.raises(ConfigError) as err:
        model.keep_auxiliary(["hidden_dropped"])
    assert "'hidden_dropped'" in str(err.value) and "'hidden'" in str(err.value)


def ar_oracle(hidden, tokens):
    """AWD-LSTM's AR written out (dropout 0: the outputs after dropout are the outputs)."""
    return 0.9 * (hidden ** 2).mean() * tokens


def tar_oracle(hidden, tokens):
    """AWD-LSTM's TAR written out: the change over one time step."""
    return 1.3 * ((hidden[1:] - hidden[:-1]) ** 2).mean() * tokens


TERMS = {  # how the run gets its term -> the term as the oracle writes it
    "own term": (dict(), [SquaredHidden()], lambda hidden, tokens: WEIGHT * (hidden ** 2).mean() * tokens),
    "--ar": (dict(ar=0.9), None, ar_oracle),
    "--tar": (dict(tar=1.3), None, tar_oracle),
}


@pytest.mark.parametrize("engine", ["fast", "imperative"])
@pytest.mark.parametrize("term", sorted(TERMS))
def test_a_loss_term_reaches_the_gradient_in_both_engines_but_not_the_reported_loss(tiny_corpus, engine, term):
    settings, terms, oracle = TERMS[term]
    corpus = Corpus(tiny_corpus)
    config = tiny_config(tiny_corpus, mode="lstm", engine=engine, num_layers=2, dropout=0.0, lr=0.5,
                         clipping_norm=1e6, max_batches=1, **settings)
    run = assemble(config, corpus, loss_terms=terms)
    assert len(run.loss_terms) == 1
    names = list(run.model.collect_params())
    before = {name: run.model.collect_params()[name].data().asnumpy().copy() for name in names}
    reference = assemble(config.replace(engine="imperative", ar=0.0, tar=0.0), corpus, loss_terms=[]).model
    ref_params = reference.collect_params()
    ref_of = {name: ref_params[name.replace(run.model.prefix, reference.prefix, 1)] for name in names}
    for name in names:
        ref_of[name].set_data(before[name])
    data, target = a_window(corpus)
    tokens = target.shape[0]

    def one_step(with_term):
        """The step the oracle takes: SGD on the summed cross-entropy (plus the term), divided by the batch."""
        state = reference.begin_state(func=mx.nd.zeros, batch_size=4)
        with autograd.record():
            hidden, _ = reference.rnn(reference.encoder(data), state)
            logits = reference.decoder(hidden.reshape((-1, 8)))
            cross_entropy = mx.nd.softmax_cross_entropy(logits, target)
            total = cross_entropy.sum() + (oracle(hidden, tokens) if with_term else 0)
        total.backward()
        return float(cross_entropy.asscalar()), {
            name: before[name] - config.lr * ref_of[name].grad().asnumpy() / 4 for name in names}

    cross_entropy, expected = one_step(with_term=True)
    _, without = one_step(with_term=False)
    mean_loss, counted, _ = train_epoch(run)
    assert counted == tokens and mean_loss == pytest.approx(cross_entropy / tokens, rel=1e-5)
    moved_by_term = 0
    for name in names:
        after = run.model.collect_params()[name].data().asnumpy()
        np.testing.assert_allclose(after, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
        moved_by_term += not np.allclose(after, without[name], rtol=1e-4, atol=1e-6)
    assert moved_by_term >= 4  # the RNN's weights and the embedding felt the term


def test_outputs_kept_after_the_graph_was_built_are_computed_by_a_new_graph(tiny_corpus):
    """keep_auxiliary on a hybridized block that has run already: the next call builds the graph again with the
    outputs (the old graph had none), and the logits stay what they were."""
    model = TransformerModel(23, 8, 2, 12, 1, dropout=0.0)
    model.initialize_parameters(mx.cpu())
    model.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.array(np.arange(12).reshape(6, 2) % 23, dtype="int32")
    before, _ = model(data, [])
    model.keep_auxiliary(["hidden"])
    logits, _, auxiliary = model.with_auxiliary(data, [])
    assert auxiliary["hidden"].shape == (6, 2, 8) and logits.shape == before.shape
    np.testing.assert_allclose(logits.asnumpy(), before.asnumpy(), rtol=1e-6)
