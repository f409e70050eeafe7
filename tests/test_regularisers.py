"""AWD-LSTM's regularisers against numpy: AR and TAR (ptb_lm.regularisers), value and gradient, on outputs with
the shapes the configs give; locked and embedding dropout (ptb_lm.dropout) with numpy's Philox masks; the config's
wiring (the flags' one-line errors are in test_cli.py)."""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ptb_lm import TrainConfig
from ptb_lm.errors import ConfigError
from ptb_lm.regularisers import auxiliary_needed, loss_terms_for
from ptb_lm.regularisers.activation import ActivationRegularisation, TemporalActivationRegularisation

from helpers import needs_kernels
from philox_reference import expected_mask


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


def drawn_key(seed):
    """The key a model's first training pass under ``mx.random.seed(seed)`` draws (ptb_lm.dropout.DropoutKeys)."""
    mx.random.seed(seed)
    return mx.nd.random.randint(1, 2 ** 31 - 1, shape=(4,), dtype="int32").asnumpy().astype(np.int64).tolist()


def awd_model(**dropouts):
    from ptb_lm.model import RNNModel

    model = RNNModel("lstm", 30, 8, 8, 2, dropout=0.0, keyed_dropout=True, **dropouts)
    model.initialize_parameters(mx.cpu())
    model.keep_auxiliary(["hidden", "hidden_dropped"])
    return model


WINDOW = np.arange(5 * 4).reshape(5, 4) * 7 % 30  # (T, N) = (5, 4) word ids


def training_pass(model, seed, hybridized=True):
    """One recorded pass over WINDOW from a zero state under ``mx.random.seed(seed)``, its logits backpropagated:
    ``(key it drew, data, state, logits, auxiliary outputs)``."""
    if hybridized:
        model.hybridize(static_alloc=True, static_shape=True)
    data = mx.nd.array(WINDOW, dtype="int32")
    state = model.begin_state(func=mx.nd.zeros, batch_size=4)
    key = drawn_key(seed)
    mx.random.seed(seed)
    with autograd.record():
        logits, _, auxiliary = model.with_auxiliary(data, state)
    logits.backward()
    return key, data, state, logits, auxiliary


@needs_kernels
@pytest.mark.parametrize("hybridized", [False, True], ids=["imperative", "hybridized"])
def test_locked_dropout_is_one_mask_per_sequence_as_numpy_draws_it(loaded, hybridized):
    """The outputs' dropout (1, N, H) and the embeddings' (1, N, E), each the numpy Philox mask of its site under
    the pass's key; the RNN reads the dropped embeddings (Gluon's own RNN layer is the oracle of the rest)."""
    model = awd_model(dropout_input=0.4, dropout_output=0.3)
    key, data, state, logits, auxiliary = training_pass(model, 9, hybridized)
    hidden, dropped = auxiliary["hidden"].asnumpy(), auxiliary["hidden_dropped"].asnumpy()
    output_mask = expected_mask((5, 4, 8), (0,), key, model.lock_output._site, 0.3)
    assert output_mask.shape == (1, 4, 8) and 0 < (output_mask == 0).mean() < 1
    np.testing.assert_array_equal(dropped, hidden * output_mask)
    input_mask = expected_mask((5, 4, 8), (0,), key, model.lock_input._site, 0.4)
    embedded = model.encoder.weight.data().asnumpy()[WINDOW] * input_mask
    theirs, _ = model.rnn(mx.nd.array(embedded), state)
    np.testing.assert_allclose(hidden, theirs.asnumpy(), rtol=1e-5, atol=1e-6)


@needs_kernels
def test_embedding_dropout_drops_whole_words_in_value_and_gradient(loaded):
    """Every occurrence of a dropped word reads zeros and sends its row no gradient; kept rows are scaled by
    1 / (1 - p), forward and backward: numpy's mask of (V, 1), and Gluon's Embedding on the masked table."""
    model = awd_model(dropout_embedding=0.5)
    key, data, state, logits, _ = training_pass(model, 4)
    row_mask = expected_mask((30, 8), (1,), key, model.encoder._site, 0.5)  # (V, 1)
    assert row_mask.shape == (30, 1) and 0 < (row_mask[np.unique(WINDOW)] == 0).mean() < 1
    weight = model.encoder.weight.data().asnumpy()
    masked = mx.nd.array(weight * row_mask)
    masked.attach_grad()
    with autograd.record():
        emb = mx.nd.Embedding(data, masked, input_dim=30, output_dim=8)
        hidden, _ = model.rnn(emb, state)
        theirs = model.decoder(hidden.reshape((-1, 8)))
    theirs.backward()
    np.testing.assert_allclose(logits.asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.encoder.weight.grad().asnumpy(), masked.grad.asnumpy() * row_mask,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("switch", ["kernels", "mxnet"])
def test_locked_dropout_shares_its_mask_over_time_with_either_generator(switch):
    """With the kernel's masks or MXNet's (no key: PTB_LM_KERNELS=0), one mask per sequence; evaluation none."""
    model = awd_model(dropout_output=0.5)
    if switch == "mxnet":
        model._dropout_keys.kernel = False
    elif os.environ.get("PTB_LM_KERNELS", "").strip() == "0":
        pytest.skip("PTB_LM_KERNELS=0")
    data = mx.nd.array(WINDOW, dtype="int32")
    state = model.begin_state(func=mx.nd.zeros, batch_size=4)
    with autograd.record():
        _, _, auxiliary = model.with_auxiliary(data, state)
    ratio = auxiliary["hidden_dropped"].asnumpy() / auxiliary["hidden"].asnumpy()
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-5)
    assert set(np.round(np.unique(ratio), 4)) == {0.0, 2.0}
    _, _, auxiliary = model.with_auxiliary(data, state)  # not training
    np.testing.assert_array_equal(auxiliary["hidden_dropped"].asnumpy(), auxiliary["hidden"].asnumpy())


AWD_TINY = dict(mode="lstm", dropout=0.0, dropout_input=0.3, dropout_hidden=0.2, dropout_output=0.4,
                dropout_embedding=0.1, weight_drop=0.3, ar=1.0, tar=0.5, seed=6)


def engines_agree_and_a_resume_is_exact(config, tmp_path):
    """Both engines' validation losses alike; two epochs in one run and in two give the same bytes."""
    from ptb_lm import fit

    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    fast = fit(config.replace(save_dir=whole), quiet=True)
    imperative = fit(config.replace(engine="imperative"), quiet=True)
    assert fast.series("val_loss") == pytest.approx(imperative.series("val_loss"), rel=1e-4)
    fit(config.replace(epochs=1, save_dir=parts), quiet=True)
    fit(config.replace(save_dir=parts), resume=parts, quiet=True)
    a, b = (open(os.path.join(folder, "last", "model.params"), "rb").read() for folder in (whole, parts))
    assert a == b


def test_awd_regularisers_train_alike_in_both_engines_and_resume_bit_for_bit(tiny_corpus, tmp_path):
    """The engines draw the same masks (ptb_lm's where the kernels load, MXNet's under PTB_LM_KERNELS=0 in
    both); a run stopped after an epoch ends where an uninterrupted one does."""
    from helpers import tiny_config

    engines_agree_and_a_resume_is_exact(tiny_config(tiny_corpus, **AWD_TINY), tmp_path)


@needs_kernels
@pytest.mark.parametrize("engine", ["fast", "imperative"])
def test_weight_drop_masks_the_hidden_to_hidden_weights_as_numpy_draws_them(loaded, tiny_corpus, engine):
    """On the fast engine the mask reaches the RNN kernel through the flat buffer's packed view; the oracle is
    Gluon's own RNN layer holding the weights numpy masked."""
    from ptb_lm.assembly import assemble
    from ptb_lm.data import Corpus

    from helpers import tiny_config

    config = tiny_config(tiny_corpus, mode="lstm", engine=engine, dropout=0.0, weight_drop=0.5, seed=3)
    model = assemble(config, Corpus(tiny_corpus)).model
    assert bool(model._packed_rnn_params) == (engine == "fast")  # the flat buffer feeds the kernel
    model.keep_auxiliary(["hidden"])
    key, data, state, _, auxiliary = training_pass(model, 5, hybridized=False)
    h2h = [p for p in model.rnn_params_in_kernel_order() if p.name.endswith("h2h_weight")]
    assert len(h2h) == len(model._weight_drop.sites) == 2
    for param, site in zip(h2h, model._weight_drop.sites):
        mask = expected_mask((param.data().size,), (), key, site, 0.5).reshape(param.shape)
        assert 0 < (mask == 0).mean() < 1
        param.set_data(param.data() * mx.nd.array(mask))
    theirs, _ = model.rnn(model.encoder(data), state)
    np.testing.assert_allclose(auxiliary["hidden"].asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_layer_by_layer_is_the_fused_kernels_math_when_nothing_is_dropped(mode):
    """With locked dropout between the layers, the kernel runs once per layer on slices of the packed parameters
    and the state: in evaluation that is the chapter's fused call on the same weights, outputs and state."""
    from ptb_lm.model import RNNModel

    ours, theirs = (RNNModel(mode, 30, 8, 8, 3, dropout=0.0, dropout_hidden=h) for h in (0.5, 0.0))
    for model in (ours, theirs):
        model.initialize_parameters(mx.cpu())
    their_params = theirs._collect_params_with_prefix()
    for name, param in ours._collect_params_with_prefix().items():
        their_params[name].set_data(param.data())
    data = mx.nd.array(WINDOW, dtype="int32")
    state = [s + 0.3 for s in ours.begin_state(func=mx.nd.zeros, batch_size=4)]
    (a, a_state), (b, b_state) = ours(data, state), theirs(data, state)
    for x, y in zip([a] + a_state, [b] + b_state):
        np.testing.assert_allclose(x.asnumpy(), y.asnumpy(), rtol=1e-5, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("hybridized", [False, True], ids=["imperative", "hybridized"])
def test_locked_dropout_between_layers_is_numpys_mask_on_each_layers_outputs(loaded, hybridized):
    """The oracle: one-layer Gluon LSTMs holding each layer's weights, numpy's (1, N, H) mask between them."""
    from mxnet.gluon import rnn

    from ptb_lm.runtime.internals import rnn_kernel_params

    model = awd_model(dropout_hidden=0.5)
    key, data, state, _, auxiliary = training_pass(model, 2, hybridized)
    params = rnn_kernel_params(model.rnn)  # l0_i2h_weight, ..., l1_h2h_bias
    x = model.encoder(data)
    for layer in range(2):
        if layer:
            mask = expected_mask((5, 4, 8), (0,), key, model.lock_hidden[layer - 1]._site, 0.5)
            assert mask.shape == (1, 4, 8) and 0 < (mask == 0).mean() < 1
            x = x * mx.nd.array(mask)
        one = rnn.LSTM(8, num_layers=1, input_size=8)
        one.initialize()
        for name, param in rnn_kernel_params(one).items():
            param.set_data(params[name.replace("l0_", "l%d_" % layer)].data())
        x, _ = one(x, [s[layer:layer + 1] for s in state])
    np.testing.assert_allclose(auxiliary["hidden"].asnumpy(), x.asnumpy(), rtol=1e-5, atol=1e-6)


def awd_window_lengths(num_rows, bptt, rng):
    """awd-lstm-lm's main.py train() loop, reduced to the windows it reads (its get_batch cuts the last)."""
    lengths, i = [], 0
    while i < num_rows - 1 - 1:
        window = bptt if rng.random_sample() < 0.95 else bptt / 2.
        seq_len = max(5, int(rng.normal(window, 5)))
        seq_len = min(seq_len, num_rows - 1 - i)
        lengths.append(seq_len)
        i += seq_len
    return lengths


def test_variable_windows_follow_awds_rule_and_cover_the_split_once(tiny_corpus):
    from ptb_lm.assembly import assemble, window_lengths_rng
    from ptb_lm.config import TrainConfig
    from ptb_lm.data import Corpus

    config = TrainConfig(mode="lstm", embed_dim=8, hidden_dim=8, batch_size=2, num_steps=12, variable_bptt=True,
                         seed=5, data=tiny_corpus, ctx="cpu", dropout=0.0)
    plan = assemble(config, Corpus(tiny_corpus)).train_plan
    for epoch in (1, 2):
        plan.begin_epoch(epoch)
        lengths = [data.shape[0] for (data, _), in plan.batches]
        assert lengths == awd_window_lengths(plan.num_rows, 12, window_lengths_rng(config)(epoch))
        rows = np.concatenate([data.asnumpy() for (data, _), in plan.batches])
        np.testing.assert_array_equal(rows, plan.source[0].asnumpy()[:sum(lengths)])  # each row once, in order
        assert sum(lengths) >= plan.num_rows - 2 and len(set(lengths)) > 2
    plan.begin_epoch(1)
    again = [data.shape[0] for (data, _), in plan.batches]
    assert again == awd_window_lengths(plan.num_rows, 12, window_lengths_rng(config)(1))  # the seed's, again


def test_variable_windows_train_alike_in_both_engines_and_resume_bit_for_bit(tiny_corpus, tmp_path):
    from helpers import tiny_config

    engines_agree_and_a_resume_is_exact(tiny_config(tiny_corpus, mode="lstm", variable_bptt=True, num_steps=8,
                                                    seed=2), tmp_path)


def test_each_variable_window_is_clipped_as_awd_clips_its_mean_gradient(tiny_corpus):
    """AWD clips the gradient of the loss averaged over its window's T x N tokens at clip; ptb_lm's loss is the
    sum, so the threshold is clip x T x N with the window's own T."""
    from ptb_lm.assembly import assemble
    from ptb_lm.data import Corpus
    from ptb_lm.training import train_epoch

    from helpers import tiny_config

    config = tiny_config(tiny_corpus, mode="lstm", variable_bptt=True, num_steps=8, clipping_norm=0.25, seed=2)
    run = assemble(config, Corpus(tiny_corpus))
    step, seen = run.updater, []
    run.updater = lambda batch_size, clip_at: seen.append(clip_at) or step(batch_size, clip_at)
    train_epoch(run)
    lengths = [data.shape[0] for (data, _), in run.train_plan.batches]
    assert seen == [pytest.approx(0.25 * length * 4) for length in lengths] and len(set(lengths)) > 1
