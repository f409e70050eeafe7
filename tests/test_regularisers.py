"""ptb_lm.regularisers' terms against numpy: AR and TAR, value and gradient, on outputs with the shapes the
configs give; the config's wiring (the flags' one-line errors are in test_cli.py)."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ptb_lm import TrainConfig
from ptb_lm.errors import ConfigError
from ptb_lm.regularisers import auxiliary_needed, loss_terms_for
from ptb_lm.regularisers.activation import ActivationRegularisation, TemporalActivationRegularisation


def term_and_gradient(term, name, array):
    x = mx.nd.array(array)
    x.attach_grad()
    with autograd.record():
        value = term({name: x}, array.shape[0] * array.shape[1])
    value.backward()
    assert value.shape == (1,)
    return float(value.asscalar()), x.grad.asnumpy()


SHAPES = [(20, 20, 200), (5, 32, 100), (1, 3, 4), (7, 1, 9)]


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_ar_is_alpha_times_the_mean_square_per_token(shape):
    h = np.random.RandomState(1).normal(size=shape).astype(np.float32)
    tokens = shape[0] * shape[1]
    value, grad = term_and_gradient(ActivationRegularisation(2.0), "hidden_dropped", h)
    assert value == pytest.approx(2.0 * np.mean(h.astype(np.float64) ** 2) * tokens, rel=1e-5)
    np.testing.assert_allclose(grad, 2.0 * tokens * 2 * h / h.size, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_tar_is_beta_times_the_mean_square_change_over_one_step(shape):
    h = np.random.RandomState(2).normal(size=shape).astype(np.float32)
    tokens = shape[0] * shape[1]
    value, grad = term_and_gradient(TemporalActivationRegularisation(1.5), "hidden", h)
    change = np.diff(h.astype(np.float64), axis=0)  # (T - 1, N, H)
    if shape[0] == 1:  # nothing changes in one step
        assert value == 0 and not grad.any()
        return
    assert value == pytest.approx(1.5 * np.mean(change ** 2) * tokens, rel=1e-5)
    # d/dh_t of sum (h_{t+1} - h_t)^2: 2 (h_t - h_{t+1}) + 2 (h_t - h_{t-1}), inside the sequence
    expected = np.zeros_like(h, dtype=np.float64)
    expected[1:] += 2 * change
    expected[:-1] -= 2 * change
    np.testing.assert_allclose(grad, 1.5 * tokens * expected / change.size, rtol=1e-4, atol=1e-7)


def test_the_config_asks_for_the_terms_and_the_outputs_they_read():
    assert loss_terms_for(TrainConfig()) == []  # the chapter's: none
    terms = loss_terms_for(TrainConfig(mode="lstm", ar=2.0, tar=1.0))
    assert [type(t) for t in terms] == [ActivationRegularisation, TemporalActivationRegularisation]
    assert [t.alpha if t.name == "ar" else t.beta for t in terms] == [2.0, 1.0]
    assert auxiliary_needed(terms) == ["hidden", "hidden_dropped"]


def test_a_transformer_takes_tar():
    assert loss_terms_for(TrainConfig(mode="transformer", tar=1.0))[0].needs == ("hidden",)
    with pytest.raises(ConfigError):
        TrainConfig(mode="transformer", ar=1.0)
