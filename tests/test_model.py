import mxnet as mx
import numpy as np
import pytest

from ptb_lm import TrainConfig
from ptb_lm.families import flops_per_token
from ptb_lm.model import RNNModel


@pytest.mark.parametrize("mode, states", [("rnn_relu", 1), ("rnn_tanh", 1), ("lstm", 2), ("gru", 1)])
@pytest.mark.parametrize("hybrid", [False, True])
def test_shapes_for_every_mode(mode, states, hybrid):
    model = RNNModel(mode, 50, 8, 12, 3, 0.2)
    model.initialize_parameters(mx.cpu())
    if hybrid:
        model.hybridize(static_alloc=True, static_shape=True)
    state = model.begin_state(func=mx.nd.zeros, batch_size=4, ctx=mx.cpu())
    assert len(state) == states and state[0].shape == (3, 4, 12)
    logits, state = model(mx.nd.zeros((5, 4)), state)
    assert logits.shape == (20, 50) and state[0].shape == (3, 4, 12)


def test_unknown_mode_names_the_four():
    with pytest.raises(ValueError) as err:
        RNNModel("transformer", 10, 4, 4, 1)
    for mode in ("rnn_relu", "rnn_tanh", "lstm", "gru"):
        assert mode in str(err.value)


def test_seed_initialisers_and_zaremba_uniform():
    model = RNNModel("lstm", 1000, 32, 32, 2)
    model.initialize_parameters(mx.cpu())
    params = model.collect_params()
    emb = params[model.encoder.weight.name].data().asnumpy()
    assert np.abs(emb).max() <= 0.1 and np.abs(emb).max() > 0.09  # Uniform(0.1)
    dense = model.decoder.weight.data().asnumpy()
    xavier_bound = np.sqrt(3.0 / ((32 + 1000) / 2.0))  # Xavier's default: uniform, avg fan, magnitude 3
    assert np.abs(dense).max() <= xavier_bound and np.abs(dense).max() > 0.9 * xavier_bound
    assert np.all(model.decoder.bias.data().asnumpy() == 0)
    scaled = RNNModel("lstm", 1000, 32, 32, 2, init_scale=0.04)
    scaled.initialize_parameters(mx.cpu())
    for name, p in scaled.collect_params().items():
        values = p.data().asnumpy()
        assert np.abs(values).max() <= 0.04, name


def test_tied_decoder_shares_the_embedding_weight():
    model = RNNModel("lstm", 100, 16, 16, 1, tied=True)
    model.initialize_parameters(mx.cpu())
    assert model.decoder.weight is model.encoder.weight
    assert len(list(model.collect_params().values())) == len(list(RNNModel("lstm", 100, 16, 16, 1).collect_params().values())) - 1
    with pytest.raises(ValueError):
        RNNModel("lstm", 100, 16, 32, 1, tied=True)


def test_flop_count_follows_the_layer_shapes():
    # one layer, RNN: 2*(in*h + h*h) for the cell plus 2*h*V for the decoder
    def shape(mode):
        return TrainConfig(mode=mode, embed_dim=3, hidden_dim=5, num_layers=1)

    assert flops_per_token(shape("rnn_relu"), 7) == 2 * (3 * 5 + 5 * 5) + 2 * 5 * 7
    assert flops_per_token(shape("lstm"), 7) == 4 * 2 * (3 * 5 + 5 * 5) + 2 * 5 * 7


def test_the_model_classes_a_notebook_is_sent_to_have_their_docstrings():
    from ptb_lm import RNNModel, TransformerModel

    for cls in (RNNModel, TransformerModel):
        assert cls.__doc__ and "state" in cls.__doc__, cls  # help(RNNModel) in a notebook says how to call it
    assert "Parameters" in RNNModel.__doc__


def test_an_unknown_mode_is_one_error_in_one_wording():
    from ptb_lm import RNNModel, TrainConfig
    from ptb_lm.errors import ConfigError

    said = []
    for make in (lambda: TrainConfig(mode="rnn"), lambda: RNNModel("rnn", 10, 4, 4, 1)):
        with pytest.raises(ConfigError) as err:
            make()
        said.append(str(err.value).split(":")[0])
    assert said == ["unknown mode 'rnn'"] * 2
