"""The update after backward: the fast engine's flat buffers against the chapter's Trainer, step by step."""

import mxnet as mx
import numpy as np
import pytest

from ptb_lm import TrainConfig
from ptb_lm.assembly import assemble
from ptb_lm.config import RNN_MODES
from ptb_lm.data import Corpus, batchify
from ptb_lm.levers import FastLevers
from ptb_lm.model import RNNModel
from ptb_lm.runner import seed_everything
from ptb_lm.training import train_epoch
from ptb_lm.updater import FlatUpdater


def twin_models(corpus, seed):
    """Two identical models with gradients from the same batch, in both updaters' hands."""
    models = []
    for _ in range(2):
        mx.random.seed(seed)
        model = RNNModel("gru", len(corpus.dictionary), 8, 8, 2, dropout=0.0)
        model.initialize_parameters(mx.cpu())
        models.append(model)
    return models


def backward_on(model, corpus, loss_fn):
    source = mx.nd.array(batchify(corpus.train, 4), dtype="int32")
    data, target = source[:5], source[1:6].reshape((-1,))
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=4)
    with mx.autograd.record():
        output, _ = model(data, hidden)
        loss = loss_fn(output, target)
    loss.backward()


OPTIMIZERS = {
    "sgd": dict(optimizer="sgd"),
    "sgd-wd": dict(optimizer="sgd", weight_decay=1e-2),
    "momentum": dict(optimizer="momentum", momentum=0.9, weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.01, betas=(0.8, 0.99)),
    "adam-wd": dict(optimizer="adam", lr=0.01, weight_decay=1e-2),
}


@pytest.mark.parametrize("settings", list(OPTIMIZERS.values()), ids=list(OPTIMIZERS))
@pytest.mark.parametrize("clip_at, schedule", [(1e-3, False), (1e6, False), (1e6, True)],
                         ids=["clipped", "unclipped", "scheduled"])
def test_the_flat_update_is_the_chapters_update(tiny_corpus, clip_at, schedule, settings):
    """Gluon's own Trainer with MXNet's own SGD and Adam optimizers is the oracle, step by step: the flat
    buffers (one update over the whole buffer, with flat state buffers) must take the same steps, also when
    the learning rate changes between steps (a schedule, or the plateau decay), which must reach every rule."""
    from ptb_lm.updater import ChapterUpdater

    corpus = Corpus(tiny_corpus)
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    flat_model, chapter_model = twin_models(corpus, 3)
    config = TrainConfig(**dict(dict(lr=0.7), **settings))
    flat = FlatUpdater(flat_model, [mx.cpu()], config)
    chapter = ChapterUpdater(chapter_model, [mx.cpu()], config)
    assert type(chapter.trainer.optimizer).__name__ == {"sgd": "SGD", "momentum": "SGD", "adam": "Adam"}[
        config.optimizer]  # MXNet's own, not ours
    for step in range(5):
        for model, update in ((flat_model, flat), (chapter_model, chapter)):
            if schedule:
                update.set_learning_rate(config.lr * (0.3, 2.0, 0.05, 1.0, 4.0)[step])
            backward_on(model, corpus, loss_fn)
            norm = update(4, clip_at)
            assert norm > 0
        ours = flat_model._collect_params_with_prefix()
        for name, param in chapter_model._collect_params_with_prefix().items():
            np.testing.assert_allclose(ours[name].data().asnumpy(), param.data().asnumpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", RNN_MODES)
def test_the_packed_rnn_parameters_change_nothing_but_the_copies(tiny_corpus, mode):
    """Gluon's own RNN layer (it concatenates the parameters every batch) is the oracle for the packed path."""
    corpus = Corpus(tiny_corpus)
    config = TrainConfig(mode=mode, seed=4, batch_size=4, num_steps=5, embed_dim=16, hidden_dim=16, dropout=0.2,
                         max_batches=15, data=tiny_corpus, ctx="cpu", eval_period=1)
    results = {}
    for pack in (True, False):
        seed_everything(4)
        run = assemble(config, corpus, FastLevers(packed_rnn=pack))
        assert bool(getattr(run.model, "_packed_rnn_params", None)) == pack
        losses = []
        train_epoch(run, config, on_report=lambda b, l: losses.append(l))
        results[pack] = losses + [run.split_loss("valid")]
    np.testing.assert_allclose(results[True], results[False], rtol=1e-6)


def test_parameters_are_views_into_the_flat_buffers(tiny_corpus, tmp_path):
    """FlatUpdater rewires Gluon's private _data/_grad (mxnet is pinned at 1.9.1): guard that it holds."""
    corpus = Corpus(tiny_corpus)
    model, _ = twin_models(corpus, 4)
    flat = FlatUpdater(model, [mx.cpu()], TrainConfig(lr=0.5))
    model.hybridize(static_alloc=True, static_shape=True)
    weight = model.decoder.weight
    flat.weights[0][:] = 0.25
    assert (weight.data().asnumpy() == 0.25).all()
    backward_on(model, corpus, mx.gluon.loss.SoftmaxCrossEntropyLoss())
    assert sorted(p.name for p in flat.params) == sorted(model.collect_params().keys())
    pieces = np.concatenate([p.grad().asnumpy().reshape(-1) for p in flat.params])
    assert np.array_equal(pieces, flat.grads[0].asnumpy()) and np.abs(pieces).sum() > 0
    # the RNN's gradient arrived through its packed view (the kernel's one parameter vector)
    assert all(np.abs(p.grad().asnumpy()).sum() > 0 for p in model.rnn_params_in_kernel_order())
    model.save_parameters(str(tmp_path / "m.params"))
    flat.weights[0][:] = 0.0
    model.load_parameters(str(tmp_path / "m.params"))
    assert (flat.weights[0].asnumpy() == 0.25).all()  # loading fills the buffer: the views hold


@pytest.mark.filterwarnings("ignore:nan or inf is detected")
def test_a_non_finite_gradient_norm_is_divergence_in_both_updaters(tiny_corpus):
    from ptb_lm.errors import TrainingDiverged
    from ptb_lm.updater import ChapterUpdater

    corpus = Corpus(tiny_corpus)
    for make in (lambda m: FlatUpdater(m, [mx.cpu()], TrainConfig()), lambda m: ChapterUpdater(m, [mx.cpu()],
                                                                                           TrainConfig())):
        model, _ = twin_models(corpus, 5)
        update = make(model)
        backward_on(model, corpus, mx.gluon.loss.SoftmaxCrossEntropyLoss())
        model.decoder.bias.grad()[:] = float("inf")
        with pytest.raises(TrainingDiverged):
            update(4, 1.0)


def adamw_oracle(weight, grads, lr, betas, eps, wd):
    """PyTorch's AdamW (Loshchilov & Hutter's decoupled decay), in numpy, float64: w -= lr wd w, then the
    bias-corrected Adam step. MXNet folds the bias correction into the rate and adds eps to sqrt(v) before
    correcting it (as Gluon's Adam does), so eps enters scaled by sqrt(1 - b2^t): tiny here."""
    m = np.zeros_like(weight)
    v = np.zeros_like(weight)
    w = weight.astype(np.float64)
    for t, g in enumerate(grads, 1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        rate = lr * np.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t)
        w = w - rate * m / (np.sqrt(v) + eps) - lr * wd * w
    return w


def test_the_flat_adamw_update_is_decoupled_adamw():
    from ptb_lm.optimizers import FlatRule

    rng = np.random.RandomState(0)
    weight = rng.randn(50).astype(np.float32)
    grads = [rng.randn(50).astype(np.float32) for _ in range(6)]
    config = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.1, betas=(0.85, 0.98))
    rule = FlatRule(config)
    w = mx.nd.array(weight)
    states = rule.new_states(50, mx.cpu())
    for g in grads:
        rule.begin_step()
        rule(w, mx.nd.array(g) * 4, states, config.lr, 0.25)  # rescale_grad undoes the factor 4
    expected = adamw_oracle(weight, grads, 0.01, (0.85, 0.98), 1e-8, 0.1)
    np.testing.assert_allclose(w.asnumpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, adamw_oracle(weight, grads, 0.01, (0.85, 0.98), 1e-8, 0.0))  # wd matters


@pytest.mark.parametrize("wd", [0.0, 0.1], ids=["no-decay", "decay"])
def test_the_imperative_engines_adamw_is_decoupled_adamw(wd):
    """The AdamW that Gluon's Trainer runs in the imperative engine (MXNet 1.9.1 has none of its own), against
    the same numpy oracle as the flat rule, through Trainer.step as the chapter's loop calls it."""
    from ptb_lm.optimizers import gluon_optimizer

    rng = np.random.RandomState(1)
    weight = rng.randn(50).astype(np.float32)
    grads = [rng.randn(50).astype(np.float32) for _ in range(6)]
    config = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=wd, betas=(0.85, 0.98))
    param = mx.gluon.Parameter("w", shape=(50,))
    param.initialize(ctx=mx.cpu())
    param.set_data(mx.nd.array(weight))
    trainer = mx.gluon.Trainer([param], gluon_optimizer(config))
    for g in grads:
        with mx.autograd.record():
            loss = (param.data() * mx.nd.array(g * 4)).sum()  # its gradient is 4 g
        loss.backward()
        trainer.step(4)  # step(batch_size) divides the gradient by 4
    expected = adamw_oracle(weight, grads, 0.01, (0.85, 0.98), 1e-8, wd)
    np.testing.assert_allclose(param.data().asnumpy(), expected, rtol=1e-5, atol=1e-6)
