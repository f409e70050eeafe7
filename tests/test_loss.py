"""The fast engine's training loss against the chapter's (gluon.loss.SoftmaxCrossEntropyLoss), the oracle."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ptb_lm.loss import SAFE_NATS, KernelLoss, SoftmaxPickLoss, TrainingLoss, losses_for


def loss_and_grad(loss_fn, logits, labels):
    """Per-token losses and the gradient of their sum with respect to the logits."""
    logits = logits.copy()
    logits.attach_grad()
    with autograd.record():
        losses = loss_fn(logits, labels)
    losses.backward()
    return losses.asnumpy(), logits.grad.asnumpy()


def chapter_loss():
    return gluon.loss.SoftmaxCrossEntropyLoss()


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("scale", [1.0, 8.0])  # ordinary logits, and confident ones (losses up to ~50 nats)
def test_the_training_loss_is_the_chapters_loss_in_value_and_gradient(hybridize, scale):
    rng = np.random.RandomState(0)
    logits = mx.nd.array(rng.randn(64, 500) * scale)
    labels = mx.nd.array(rng.randint(0, 500, size=64), dtype="int32")
    ours = TrainingLoss()
    theirs = chapter_loss()
    if hybridize:
        ours.hybridize(static_alloc=True, static_shape=True)
        theirs.hybridize(static_alloc=True, static_shape=True)
    value, grad = loss_and_grad(ours, logits, labels)
    expected_value, expected_grad = loss_and_grad(theirs, logits, labels)
    assert expected_value.max() < SAFE_NATS and ours.fallbacks == 0  # the fast path did it
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_a_batch_with_a_token_past_the_safe_range_takes_the_chapters_loss():
    """Past ~87 nats softmax(z)[y] underflows and the softmax path gives inf; the batch is redone exactly."""
    rng = np.random.RandomState(1)
    logits = rng.randn(8, 50).astype(np.float32)
    labels = rng.randint(0, 50, size=8)
    wrong = (labels[3] + 1) % 50
    logits[3, wrong] = 200.0  # token 3's loss is about 200 nats
    logits, labels = mx.nd.array(logits), mx.nd.array(labels, dtype="int32")
    fast_value, _ = loss_and_grad(SoftmaxPickLoss(), logits, labels)
    assert not np.isfinite(fast_value[3])  # why the fallback exists
    ours = TrainingLoss()
    value, grad = loss_and_grad(ours, logits, labels)
    expected_value, expected_grad = loss_and_grad(chapter_loss(), logits, labels)
    assert ours.fallbacks == 1
    assert expected_value[3] > SAFE_NATS
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nats", [81.5, 83.0, 85.5])
def test_a_token_between_the_safe_range_and_underflow_takes_the_chapters_loss(nats):
    """Between SAFE_NATS (80) and float32's underflow (about 87 nats) the fast loss is still finite, but its
    gradient divides by a subnormal probability: the batch must still take the chapter's loss."""
    rng = np.random.RandomState(2)
    logits = np.zeros((6, 40), dtype=np.float32)
    labels = rng.randint(0, 40, size=6)
    wrong = (labels[2] + 1) % 40
    logits[2, wrong] = nats  # token 2's loss: log(exp(nats) + 39) - 0, just above ``nats``
    logits, labels = mx.nd.array(logits), mx.nd.array(labels, dtype="int32")
    expected_value, expected_grad = loss_and_grad(chapter_loss(), logits, labels)
    assert SAFE_NATS < expected_value[2] < 87  # the range this test is about
    assert np.isfinite(loss_and_grad(SoftmaxPickLoss(), logits, labels)[0]).all()  # no inf to catch it otherwise
    ours = TrainingLoss()
    value, grad = loss_and_grad(ours, logits, labels)
    assert ours.fallbacks == 1
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


def test_a_nan_logit_takes_the_chapters_loss_so_divergence_looks_the_same():
    logits = mx.nd.zeros((4, 10))
    logits[2, 3] = float("nan")
    labels = mx.nd.array([0, 1, 2, 3], dtype="int32")
    ours = TrainingLoss()
    value, grad = loss_and_grad(ours, logits, labels)
    expected_value, expected_grad = loss_and_grad(chapter_loss(), logits, labels)
    assert ours.fallbacks == 1
    np.testing.assert_array_equal(value, expected_value)
    np.testing.assert_array_equal(grad, expected_grad)


def test_the_softmax_loss_is_a_cpu_lever_and_gpus_keep_the_chapters_loss():
    train, evaluate = losses_for([mx.cpu(0), mx.cpu(1)])
    assert isinstance(train, TrainingLoss) and isinstance(evaluate, gluon.loss.SoftmaxCrossEntropyLoss)
    assert all(isinstance(fn, KernelLoss) for fn in losses_for([mx.cpu(0)], kernels=True))
    for ctxs in ([mx.gpu(0)], [mx.cpu(0), mx.gpu(0)]):  # Context objects; no GPU is touched
        assert all(isinstance(fn, gluon.loss.SoftmaxCrossEntropyLoss) for fn in losses_for(ctxs))


def test_the_fast_engine_trains_with_the_fast_losses_and_the_imperative_one_with_the_chapters(tiny_corpus):
    from ptb_lm import TrainConfig
    from ptb_lm.assembly import assemble
    from ptb_lm.kernels import for_run
    from ptb_lm.levers import FastLevers

    config = TrainConfig(batch_size=4, num_steps=5, embed_dim=8, hidden_dim=8, data=tiny_corpus, ctx="cpu")
    fast = assemble(config)
    assert fast.kernels == for_run([mx.cpu()])
    assert isinstance(fast.loss_fn, KernelLoss if fast.kernels.active else TrainingLoss)
    assert isinstance(fast.eval_loss_fn, KernelLoss if fast.kernels.active else gluon.loss.SoftmaxCrossEntropyLoss)
    without = assemble(config, levers=FastLevers(kernels=False))
    assert isinstance(without.loss_fn, TrainingLoss) and not without.kernels.active
    assert isinstance(without.eval_loss_fn, gluon.loss.SoftmaxCrossEntropyLoss)
    imperative = assemble(config.replace(engine="imperative"))
    assert isinstance(imperative.loss_fn, gluon.loss.SoftmaxCrossEntropyLoss) and not imperative.kernels.active
