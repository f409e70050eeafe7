"""RNN layers of different sizes (--hidden-sizes, AWD-LSTM's 400 -> 1150 -> 1150 -> 400 shape), against an oracle of
MXNet's own: one-layer Gluon RNN layers chained by hand, holding the same weights. Logits, the new state (each layer's
row its own columns, then zeros) and every parameter's gradient; the config's and the CLI's rules; both engines
and an exact resume. The ONNX export of such a model is a case of test_export.py."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import rnn

from ptb_lm import TrainConfig
from ptb_lm.errors import ConfigError
from ptb_lm.families import family_of
from ptb_lm.model import ALL_PARAMETERS, RNNModel, tensor_sizes
from ptb_lm.runtime.internals import rnn_kernel_params

from helpers import needs_kernels, one_line_error, run_cli, tiny_config

SIZES = (7, 10, 5)  # a wide middle layer, a narrow last one tied to an embedding of 5
CELLS = {"lstm": lambda h, i: rnn.LSTM(h, input_size=i), "gru": lambda h, i: rnn.GRU(h, input_size=i),
         "rnn_relu": lambda h, i: rnn.RNN(h, activation="relu", input_size=i)}


def oracle_pass(model, mode, data, state):
    """The model's loss and gradients, recomputed by Gluon layers of one size each (MXNet's fused kernel, called
    by Gluon), fed each layer's row and columns of the state; returns (logits, new state per layer, gradients)."""
    layers = []
    for block, size, inputs in zip(model.rnn, SIZES, (5,) + SIZES[:-1]):  # the model's Gluon layers, by MXNet's names
        layer = CELLS[mode](size, inputs)
        layer.initialize()
        theirs = rnn_kernel_params(block)
        for name, param in rnn_kernel_params(layer).items():
            param.set_data(theirs[name].data())
        layers.append(layer)
    embedding = model.encoder.weight.data().copy()
    bias = model.decoder.bias.data().copy()
    for array in (embedding, bias):  # the layers' parameters have their gradients already
        array.attach_grad()
    with autograd.record():
        x, finals = mx.nd.Embedding(data, embedding, input_dim=embedding.shape[0], output_dim=5), []
        for index, (layer, size) in enumerate(zip(layers, SIZES)):
            x, final = layer(x, [mx.nd.slice(s, begin=(index, 0, 0), end=(index + 1, None, size)) for s in state])
            finals.append(final)
        logits = mx.nd.FullyConnected(x.reshape((-1, 5)), embedding, bias, num_hidden=embedding.shape[0])
        loss = (logits * mx.nd.arange(logits.shape[1]).reshape((1, -1)) / 100.0).sin().sum()
    loss.backward()
    grads = {"embedding": embedding.grad.asnumpy(), "bias": bias.grad.asnumpy()}
    for index, layer in enumerate(layers):
        for name, param in rnn_kernel_params(layer).items():
            grads["%d %s" % (index, name[3:])] = param.grad().asnumpy()
    return logits.asnumpy(), finals, grads


def our_pass(model, data, state):
    params = list(model.collect_params().values())
    with autograd.record():
        logits, new_state = model(data, state)
        loss = (logits * mx.nd.arange(logits.shape[1]).reshape((1, -1)) / 100.0).sin().sum()
    loss.backward()
    grads = {"embedding": model.encoder.weight.grad().asnumpy(), "bias": model.decoder.bias.grad().asnumpy()}
    for index, block in enumerate(model.rnn):
        for name, param in rnn_kernel_params(block).items():
            grads["%d %s" % (index, name[3:])] = param.grad().asnumpy()
    assert len(params) == 2 + 4 * len(SIZES)  # the tied decoder's weight is the embedding's
    return logits.asnumpy(), new_state, grads


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("hybridized", [False, True], ids=["imperative", "hybridized"])
def test_layers_of_different_sizes_are_one_layer_rnns_chained(mode, hybridized):
    model = RNNModel(mode, 23, 5, max(SIZES), len(SIZES), dropout=0.0, tied=True, hidden_sizes=SIZES)
    model.initialize_parameters(mx.cpu())
    if hybridized:
        model.hybridize()
    rng = np.random.RandomState(3)
    data = mx.nd.array(rng.randint(0, 23, (6, 4)), dtype="int32")
    state = model.begin_state(func=mx.nd.zeros, batch_size=4)
    assert [s.shape for s in state] == [(3, 4, 10)] * (2 if mode == "lstm" else 1)
    state = [mx.nd.array(rng.uniform(-0.5, 0.5, s.shape)) for s in state]  # padding too: it must not be read
    ours, our_state, our_grads = our_pass(model, data, state)
    theirs, their_state, their_grads = oracle_pass(model, mode, data, state)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for kind, ours_kind in enumerate(our_state):
        for layer, size in enumerate(SIZES):
            np.testing.assert_allclose(ours_kind.asnumpy()[layer, :, :size], their_state[layer][kind][0].asnumpy(),
                                       rtol=1e-5, atol=1e-6)
            assert not ours_kind.asnumpy()[layer, :, size:].any()  # a narrower layer's row is padded with zeros
    assert sorted(our_grads) == sorted(their_grads)
    for name in our_grads:
        np.testing.assert_allclose(our_grads[name], their_grads[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", list(CELLS))
def test_what_the_family_says_of_such_a_model_is_what_it_does(mode):
    config = TrainConfig(mode=mode, embed_dim=5, hidden_dim=10, num_layers=3, hidden_sizes=SIZES, tied=True,
                         dropout=0.0)
    assert config.output_dim == 5 and config.layer_dims == SIZES
    model = family_of(mode).build(config, 23)
    model.initialize_parameters(mx.cpu())
    counted = sum(int(np.prod(p.shape)) for p in model.collect_params().values() if p.grad_req != "null")
    assert tensor_sizes(config, 23)[ALL_PARAMETERS] == counted
    model.keep_auxiliary(model.auxiliary)
    _, _, auxiliary = model.with_auxiliary(mx.nd.zeros((4, 3), dtype="int32"),
                                           model.begin_state(func=mx.nd.zeros, batch_size=3))
    assert all(a.shape == (4, 3, 5) for a in auxiliary.values())


@pytest.mark.parametrize("changes, setting, words", [
    (dict(hidden_sizes=(7, 10), hidden_dim=10), "hidden_sizes", "2 sizes for 3 layers"),
    (dict(hidden_sizes=(7, 10, 5), hidden_dim=7), "hidden_dim", "give hidden_dim=10"),
    (dict(hidden_sizes=(7, 0, 5), hidden_dim=10), "hidden_sizes", "whole numbers"),
    (dict(hidden_sizes=(7, 10, 6), hidden_dim=10, tied=True), "embed_dim", "last layer's size"),
    (dict(hidden_sizes=(10, 10, 10), hidden_dim=10, mode="transformer", embed_dim=10), "hidden_sizes",
     "transformer"),
])
def test_the_config_names_what_is_wrong_with_the_sizes(changes, setting, words):
    values = dict(mode="lstm", embed_dim=5, num_layers=3, dropout=0.0)
    values.update(changes)
    with pytest.raises(ConfigError) as err:
        TrainConfig(**values)
    assert err.value.setting == setting and words in str(err.value)


def test_the_flag_gives_the_depth_and_the_width_and_a_bad_list_is_one_line():
    from ptb_lm.cli.train import config_from_args, train_parser

    config, _ = config_from_args(train_parser().parse_args(["--mode", "lstm", "--hidden-sizes", "7,10,5"]))
    assert (config.num_layers, config.hidden_dim, config.hidden_sizes) == (3, 10, (7, 10, 5))
    result = run_cli(["--mode", "lstm", "--hidden-sizes", "7,ten,5"])
    one_line_error(result, 2, "--hidden-sizes", "1150,1150,400")
    result = run_cli(["--mode", "lstm", "--hidden-sizes", "7,10,5", "--num-layers", "2"])
    one_line_error(result, 2, "--hidden-sizes", "3 sizes for 2 layers")


def test_both_engines_train_it_alike_with_awds_regularisers_and_a_resume_is_exact(tiny_corpus, tmp_path):
    from test_regularisers import AWD_TINY, engines_agree_and_a_resume_is_exact

    config = tiny_config(tiny_corpus, **dict(AWD_TINY, embed_dim=6, hidden_dim=10, num_layers=3,
                                             hidden_sizes=(10, 8, 6), tied=True))
    engines_agree_and_a_resume_is_exact(config, tmp_path)


@needs_kernels
@pytest.mark.parametrize("engine", ["fast", "imperative"])
def test_weight_drop_masks_each_layers_hidden_to_hidden_weights_as_numpy_draws_them(loaded, tiny_corpus, engine):
    """Run layer by layer, each layer's piece of the packed vector (the flat buffer's, on the fast engine) is
    masked in place; the oracle is Gluon's one-layer layers chained, holding the weights numpy masked."""
    from ptb_lm.assembly import assemble
    from ptb_lm.data import Corpus

    from philox_reference import expected_mask
    from test_regularisers import training_pass

    config = tiny_config(tiny_corpus, mode="lstm", engine=engine, dropout=0.0, weight_drop=0.5, seed=3,
                         embed_dim=8, hidden_dim=10, num_layers=3, hidden_sizes=(10, 7, 8), tied=True)
    model = assemble(config, Corpus(tiny_corpus)).model
    assert bool(model._packed_rnn_params) == (engine == "fast")
    model.keep_auxiliary(["hidden"])
    key, data, state, _, auxiliary = training_pass(model, 5, hybridized=False)
    x = model.encoder(data)
    for index, (block, site, size) in enumerate(zip(model.rnn, model._weight_drop.sites, (10, 7, 8))):
        layer = rnn.LSTM(size, input_size=x.shape[2])
        layer.initialize()
        theirs = rnn_kernel_params(block)
        for name, param in rnn_kernel_params(layer).items():
            value = theirs[name].data()
            if name == "l0_h2h_weight":
                mask = expected_mask((value.size,), (), key, site, 0.5).reshape(value.shape)
                assert 0 < (mask == 0).mean() < 1
                value = value * mx.nd.array(mask)
            param.set_data(value)
        x, _ = layer(x, [mx.nd.slice(s, begin=(index, 0, 0), end=(index + 1, None, size)) for s in state])
    np.testing.assert_allclose(auxiliary["hidden"].asnumpy(), x.asnumpy(), rtol=1e-5, atol=1e-6)
