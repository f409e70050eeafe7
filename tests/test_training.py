import math

import mxnet as mx
import numpy as np
import pytest

from ptb_lm import TrainConfig
from ptb_lm.data import Corpus, batchify
from ptb_lm.model import RNNModel
from ptb_lm.runner import seed_everything, setup
from ptb_lm.parallel import stream_shards
from ptb_lm.training import LossMeter, clip_gradients, detach, evaluate, train_epoch

from seed_reference import ChapterRNNModel, chapter_model_eval, chapter_train_losses

MODES = ["rnn_relu", "rnn_tanh", "lstm", "gru"]


def per_batch_losses(config, corpus):
    """Our training loop on ``config``, reporting every batch: the summed loss of each batch."""
    seed_everything(config.seed)
    run = setup(config, corpus)
    losses = []
    train_epoch(run.model, run.trainer, run.loss_fn, run.train_plan, config.replace(eval_period=1),
                on_report=lambda b, loss: losses.append(loss))
    return losses, run


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine", ["fast", "imperative"])
def test_training_does_the_chapter_math(tiny_corpus, mode, engine):
    """Same random seed, same data: our per-batch losses equal the chapter's code's, batch by batch."""
    corpus = Corpus(tiny_corpus)
    config = TrainConfig(mode=mode, engine=engine, seed=3, batch_size=4, num_steps=5, embed_dim=16,
                         hidden_dim=16, dropout=0.2, max_batches=25, data=tiny_corpus, ctx="cpu")
    ours, _ = per_batch_losses(config, corpus)
    seed_everything(3)
    train = mx.nd.array(batchify(corpus.train, 4), dtype="int32")
    theirs = chapter_train_losses(train, len(corpus.dictionary), mode, 16, 16, 2, 1.0, 0.2, 4, 5, 0.2, 25)
    # As in the chapter, the first report (batch 1) covers batches 0 and 1; then one batch each.
    theirs_per_token = [(theirs[0] + theirs[1]) / 40] + [l / 20 for l in theirs[2:]]
    assert len(ours) == len(theirs_per_token) == 24
    np.testing.assert_allclose(ours, theirs_per_token, rtol=1e-5)


@pytest.mark.ptb
@pytest.mark.slow
def test_the_early_loss_spikes_on_real_ptb_are_the_chapters_own(ptb_zip):
    """With random seed 1 the chapter's ReLU RNN at rate 1.0 spikes far above log(10000) in its first 50 batches.
    The chapter's own code, run with the same seed, takes the same losses batch by batch: it is the chapter's
    behaviour, not ours (README, "The first batches")."""
    corpus = Corpus(ptb_zip)
    config = TrainConfig(seed=1, data=ptb_zip, ctx="cpu", max_batches=50)
    ours, _ = per_batch_losses(config, corpus)
    seed_everything(1)
    train = mx.nd.array(batchify(corpus.train, 32), dtype="int32")
    theirs = chapter_train_losses(train, len(corpus.dictionary), "rnn_relu", 100, 100, 2, 1.0, 0.2, 32, 5, 0.2, 50)
    theirs_per_token = [(theirs[0] + theirs[1]) / 320] + [l / 160 for l in theirs[2:]]
    np.testing.assert_allclose(ours, theirs_per_token, rtol=1e-4)
    assert max(theirs_per_token) > math.log(len(corpus.dictionary))  # the spike the README describes


def test_fast_and_imperative_engines_are_bit_identical_and_learn(tiny_corpus):
    """The README says the engines take the same float32 steps: after 3 epochs every weight is equal, bit for
    bit. The reported losses differ only by how they are summed (float32 on the device, float64 on the host)."""
    corpus = Corpus(tiny_corpus)
    base = TrainConfig(mode="lstm", seed=5, batch_size=4, num_steps=6, embed_dim=16, hidden_dim=16, dropout=0.0,
                       data=tiny_corpus, ctx="cpu", eval_period=10)
    results, weights = {}, {}
    for engine in ("fast", "imperative"):
        seed_everything(5)
        run = setup(base.replace(engine=engine), corpus)
        losses = [train_epoch(run.model, run.trainer, run.loss_fn, run.train_plan, run.config)[0]
                  for _ in range(3)]
        val = evaluate(run.model, run.eval_source("valid"), 6, sync_every_batch=engine == "imperative")
        results[engine] = losses + [val]
        weights[engine] = {k: p.data().asnumpy() for k, p in run.model._collect_params_with_prefix().items()}
    for name, value in weights["fast"].items():
        assert np.array_equal(value, weights["imperative"][name]), name
    np.testing.assert_allclose(results["fast"], results["imperative"], rtol=1e-6)
    assert results["fast"][2] < results["fast"][0]  # it learns


def test_detach_cuts_the_graph_for_arrays_and_lists():
    x = mx.nd.ones((2,))
    x.attach_grad()
    with mx.autograd.record():
        y = x * 2
        z = detach(y) * 3 + y
    z.backward()
    assert x.grad.asnumpy().tolist() == [2.0, 2.0]  # only the path through y, not through detach(y)
    state = [mx.nd.ones((1,)), mx.nd.zeros((1,))]
    assert isinstance(detach(state), list) and len(detach(state)) == 2


@pytest.mark.parametrize("mode", MODES)
def test_evaluate_matches_the_chapters_model_eval(tiny_corpus, mode):
    """The chapter's own model_eval, on the chapter's own model holding the same weights, is the oracle."""
    corpus = Corpus(tiny_corpus)
    ours = RNNModel(mode, len(corpus.dictionary), 8, 8, 2, dropout=0.5)
    ours.initialize_parameters(mx.cpu())
    ours.hybridize(static_alloc=True, static_shape=True)
    theirs = ChapterRNNModel(mode, len(corpus.dictionary), 8, 8, 2, dropout=0.5)
    theirs.collect_params().initialize(mx.init.Xavier(), ctx=mx.cpu())
    our_params = ours._collect_params_with_prefix()
    their_params = theirs._collect_params_with_prefix()
    assert sorted(our_params) == sorted(their_params)
    for name, param in their_params.items():
        param.set_data(our_params[name].data())
    for batch_size, num_steps in ((3, 4), (5, 7)):
        source = mx.nd.array(batchify(corpus.valid, batch_size), dtype="int32")
        expected = chapter_model_eval(theirs, source, batch_size, num_steps)
        assert evaluate(ours, source, num_steps) == pytest.approx(expected, rel=1e-6)


def test_evaluate_is_the_same_with_and_without_per_batch_sync(tiny_corpus):
    corpus = Corpus(tiny_corpus)
    model = RNNModel("gru", len(corpus.dictionary), 8, 8, 2, 0.5)
    model.initialize_parameters(mx.cpu())
    source = mx.nd.array(batchify(corpus.valid, 3), dtype="int32")
    a = evaluate(model, source, 4, sync_every_batch=True)
    b = evaluate(model, source, 4, sync_every_batch=False)
    assert math.isclose(a, b, rel_tol=1e-6)
    assert a > 0 and math.isfinite(a)


def test_loss_meter_reports_divergence():
    from ptb_lm.errors import TrainingDiverged

    for sync in (True, False):
        meter = LossMeter(mx.cpu(), sync_every_batch=sync)
        meter.add([mx.nd.array([2.0])], 4)
        meter.add([mx.nd.array([1.0]), mx.nd.array([0.5])], 4)
        assert meter.read() == (3.5, 8)
        meter.add([mx.nd.array([float("nan")])], 4)
        with pytest.raises(TrainingDiverged):
            meter.read()


@pytest.mark.parametrize("engine", ["fast", "imperative"])
def test_clipping_matches_gluon_bit_for_bit(engine):
    mx.random.seed(0)
    shapes = [(50, 8), (8,), (3, 3)]
    for max_norm in (1e-3, 1e6):  # clipping, and not
        params = []
        for k, shape in enumerate(shapes):
            p = mx.gluon.Parameter("p%d" % k, shape=shape)
            p.initialize(ctx=mx.cpu())
            p.grad()[:] = mx.nd.random.normal(shape=shape)
            params.append(p)
        expected = [p.grad().copy() for p in params]
        expected_norm = mx.gluon.utils.clip_global_norm(expected, max_norm, check_isfinite=True)
        norm = clip_gradients(params, [mx.cpu()], max_norm, engine)
        assert norm == pytest.approx(expected_norm, rel=1e-7)
        for p, e in zip(params, expected):
            assert np.array_equal(p.grad().asnumpy(), e.asnumpy())


def test_clipping_raises_on_a_non_finite_norm():
    from ptb_lm.errors import TrainingDiverged

    p = mx.gluon.Parameter("p", shape=(2,))
    p.initialize(ctx=mx.cpu())
    p.grad()[:] = mx.nd.array([1.0, float("inf")])
    with pytest.raises(TrainingDiverged):
        clip_gradients([p], [mx.cpu()], 1.0, "fast")


def test_stream_shards_cover_every_stream_once():
    for batch, n in [(5, 2), (32, 3), (4, 4)]:
        shards = stream_shards(batch, n)
        assert len(shards) == n and shards[0][0] == 0 and shards[-1][1] == batch
        assert all(a < b for a, b in shards) and all(s[1] == t[0] for s, t in zip(shards, shards[1:]))
