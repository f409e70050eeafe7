"""ptb_lm's own CPU kernels (ptb_lm.kernels) against MXNet's own operators, forward and gradient, and the way
back to MXNet's operators when the kernels cannot be built.

The kernels must be built wherever a compiler is (CI has one): they are skipped only under PTB_LM_KERNELS=0."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from ptb_lm import kernels
from ptb_lm.loss import KernelLoss

from helpers import ROOT, TINY, clean_env, needs_kernels



def value_and_grad(loss_fn, logits, labels, head):
    logits = logits.copy()
    logits.attach_grad()
    with autograd.record():
        losses = loss_fn(logits, labels)
    losses.backward(head)
    return losses.asnumpy(), logits.grad.asnumpy()


def against_mxnet(logits, labels, hybridize=False, rtol=1e-5, atol=1e-6):
    """Our loss and its gradient (under a random head gradient) against the chapter's, MXNet's own operators."""
    ours, theirs = KernelLoss(), gluon.loss.SoftmaxCrossEntropyLoss()
    if hybridize:
        ours.hybridize(static_alloc=True, static_shape=True)
    head = mx.nd.array(np.random.RandomState(1).uniform(0.5, 2.0, size=logits.shape[0]))
    value, grad = value_and_grad(ours, logits, labels, head)
    expected_value, expected_grad = value_and_grad(theirs, logits, labels, head)
    np.testing.assert_allclose(value, expected_value, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=atol)
    return value, grad


# the three benchmark configs' loss shapes (batch x steps, vocabulary), and sizes that are no multiple of
# any vector width, with one row
SHAPES = [(32 * 5, 10000), (20 * 20, 10000), (20 * 35, 10000), (7, 33), (1, 10001), (3, 5)]


@needs_kernels
@pytest.mark.parametrize("shape", SHAPES, ids=["%dx%d" % s for s in SHAPES])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_the_kernel_loss_is_mxnets_in_value_and_gradient(loaded, shape, hybridize):
    rng = np.random.RandomState(0)
    logits = mx.nd.array(rng.randn(*shape) * 3)
    labels = mx.nd.array(rng.randint(0, shape[1], size=shape[0]), dtype="int32")
    against_mxnet(logits, labels, hybridize)


@needs_kernels
def test_a_token_past_100_nats_is_exact_where_softmax_underflows(loaded):
    """log_softmax is the oracle at any loss: a token 150 nats below the top, where exp(-loss) is 0 in float32."""
    logits = np.random.RandomState(2).randn(4, 300).astype(np.float32)
    labels = np.array([5, 6, 7, 8])
    logits[0, 5] -= 150.0  # this token's loss is about 150 nats
    value, grad = against_mxnet(mx.nd.array(logits), mx.nd.array(labels))
    assert value[0] > 100 and np.isfinite(grad).all()


@needs_kernels
def test_equal_logits_give_log_v_and_labels_as_floats_or_out_of_range_are_read_as_mxnet_reads_them(loaded):
    value, _ = against_mxnet(mx.nd.zeros((3, 17)), mx.nd.array([0, 16, 3], dtype="int32"))
    np.testing.assert_allclose(value, np.log(17), rtol=1e-6)
    logits = mx.nd.array(np.random.RandomState(3).randn(4, 9))
    against_mxnet(logits, mx.nd.array([0.0, 8.0, 2.0, 5.0]))  # float32 labels, as the chapter's batches have
    against_mxnet(logits, mx.nd.array([-3, 12, 2, 5], dtype="int32"))  # clipped into [0, V), as pick does


@needs_kernels
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_a_nan_or_infinite_logit_gives_what_mxnet_gives_or_a_nan(loaded, bad):
    """-inf is a word of probability 0: the oracle is MXNet's own loss, value and gradient. NaN and +inf make the
    row's loss NaN, so that training sees the divergence, where MXNet's is inf or NaN, or, for a NaN logit
    outside the label, a finite number (89.8 here) that would hide it; the other rows are MXNet's."""
    logits = np.random.RandomState(4).randn(3, 10).astype(np.float32)
    logits[1, 3] = bad
    logits[2, 7] = bad  # the label's own logit
    labels = mx.nd.array([1, 2, 7])
    ours = KernelLoss()(mx.nd.array(logits), labels).asnumpy()
    theirs = gluon.loss.SoftmaxCrossEntropyLoss()(mx.nd.array(logits), labels).asnumpy()
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    if bad == -float("inf"):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)  # row 2: inf in both, its word had probability 0
        against_mxnet(mx.nd.array(logits[:2]), labels[:2])  # and the gradient of the rows with a finite loss
    else:
        assert np.isnan(ours[1:]).all() and not np.isfinite(theirs[2])


@needs_kernels
def test_the_fast_engine_with_kernels_does_the_chapters_math_and_says_so(tiny_corpus, loaded):
    from ptb_lm import TrainConfig
    from ptb_lm.assembly import assemble
    from ptb_lm.data import Corpus
    from ptb_lm.levers import FastLevers
    from ptb_lm.runner import seed_everything
    from ptb_lm.training import train_epoch

    corpus = Corpus(tiny_corpus)
    config = TrainConfig(mode="lstm", seed=2, batch_size=4, num_steps=5, embed_dim=16, hidden_dim=16, dropout=0.2,
                         max_batches=20, data=tiny_corpus, ctx="cpu", eval_period=1)
    results = {}
    for on in (True, False):
        seed_everything(2)
        run = assemble(config, corpus, FastLevers(kernels=on))
        assert isinstance(run.loss_fn, KernelLoss) == on
        losses = []
        train_epoch(run, on_report=lambda b, l: losses.append(l))
        results[on] = losses + [run.split_loss("valid")]
    np.testing.assert_allclose(results[True], results[False], rtol=1e-5)


def test_without_a_compiler_or_a_cache_or_with_a_failing_build_mxnet_does_it_and_says_why(tmp_path):
    off = kernels.load({kernels.SWITCH: "0"})
    assert not off.active and off.describe() == "MXNet's (PTB_LM_KERNELS=0)"
    bare = kernels.load({"PATH": str(tmp_path)})
    assert not bare.active and "no C++ compiler" in bare.reason
    failing = tmp_path / "failing-cxx"
    failing.write_text("#!/bin/sh\necho 'cc1plus: fatal error: out of memory' >&2\nexit 1\n")
    failing.chmod(0o755)
    environ = {"CXX": str(failing), "PATH": os.environ["PATH"], "PTB_LM_CACHE": str(tmp_path / "c")}
    folder = kernels.cache_folder(str(failing), kernels.cpu_flags(), environ)
    os.makedirs(folder)
    open(os.path.join(folder, ".build-killed.so"), "wb").close()  # what a build killed before renaming leaves
    broken = kernels.load(environ)
    assert not broken.active and broken.reason == "their build failed: cc1plus: fatal error: out of memory"
    left = [name for _, _, files in os.walk(str(tmp_path / "c")) for name in files]
    assert left == [".lock"]  # nothing half-built is left to be loaded, the killed build's included
    not_runnable = tmp_path / "not-runnable-cxx"
    not_runnable.write_text("")  # not executable: which() passes it over, so name it by path
    odd = kernels.load({"CXX": str(not_runnable), "PATH": str(tmp_path), "PTB_LM_CACHE": str(tmp_path / "d")})
    assert not odd.active and "no C++ compiler" in odd.reason
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    unwritable = kernels.load({"PATH": os.environ["PATH"], "PTB_LM_CACHE": str(blocked)})
    assert not unwritable.active and "cache cannot be written" in unwritable.reason


def test_the_cache_key_changes_with_the_cpu_the_compiler_and_the_source(tmp_path):
    source = tmp_path / "k.cc"
    source.write_text("int x;")
    key = kernels.build_key("g++ 12", kernels.FLAGS, ["avx", "avx2"], [str(source)])
    assert kernels.build_key("g++ 12", kernels.FLAGS, ["avx", "avx2", "avx512f"], [str(source)]) != key
    assert kernels.build_key("g++ 13", kernels.FLAGS, ["avx", "avx2"], [str(source)]) != key
    source.write_text("int y;")
    assert kernels.build_key("g++ 12", kernels.FLAGS, ["avx", "avx2"], [str(source)]) != key


@pytest.mark.parametrize("switch", ["1", "0"])
def test_the_runs_header_says_whose_operators_run(tiny_corpus, switch, tmp_path):
    env = clean_env(PTB_LM_KERNELS=switch)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus] + TINY,
                         cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    assert out.returncode == 0, out.stderr
    header = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("training ")][0]
    assert ("kernels: ptb_lm's, built for" in header) == (switch == "1"), header
    assert ("kernels: MXNet's (PTB_LM_KERNELS=0)" in header) == (switch == "0"), header


def layer_norm_against_mxnet(shape, hybridize=False, seed=5):
    """ptb_lm's LayerNorm block with the kernel against MXNet's own LayerNorm operator: output and the gradients
    of data, gamma and beta under a random head gradient."""
    from ptb_lm.transformer import LayerNorm

    rng = np.random.RandomState(seed)
    channels = shape[-1]
    data = mx.nd.array(rng.randn(*shape) * 2 + 0.5)
    gamma, beta = mx.nd.array(rng.rand(channels) + 0.5), mx.nd.array(rng.randn(channels))
    head = mx.nd.array(rng.randn(*shape))
    block = LayerNorm(channels, kernel=True)
    block.initialize(ctx=mx.cpu())
    block.gamma.set_data(gamma)
    block.beta.set_data(beta)
    if hybridize:
        block.hybridize(static_alloc=True, static_shape=True)
    x = data.copy()
    x.attach_grad()
    with autograd.record():
        out = block(x)
    out.backward(head)
    ours = [out.asnumpy(), x.grad.asnumpy(), block.gamma.grad().asnumpy(), block.beta.grad().asnumpy()]
    arrays = [data.copy(), gamma.copy(), beta.copy()]
    for a in arrays:
        a.attach_grad()
    with autograd.record():
        expected = mx.nd.LayerNorm(*arrays, axis=-1, eps=1e-5)
    expected.backward(head)
    theirs = [expected.asnumpy()] + [a.grad.asnumpy() for a in arrays]
    for name, a, b in zip(("out", "d data", "d gamma", "d beta"), ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()), err_msg=name)


# the transformer-small shape (T, N, C), and sizes that are no multiple of any vector width, with one row
NORM_SHAPES = [(35, 20, 200), (7, 33), (1, 5), (3, 2, 17)]


@needs_kernels
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=["x".join(map(str, s)) for s in NORM_SHAPES])
@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_the_kernel_layer_norm_is_mxnets_in_value_and_gradients(loaded, shape, hybridize):
    layer_norm_against_mxnet(shape, hybridize)


@needs_kernels
def test_the_transformer_with_kernels_computes_what_it_computes_without(loaded):
    """The same weights, the two blocks: logits and every parameter's gradient (the built block is the oracle)."""
    from ptb_lm.transformer import TransformerModel

    grads, logits = [], []
    for kernels_on in (False, True):
        mx.random.seed(6)
        model = TransformerModel(41, 16, 2, 24, 2, dropout=0.0, kernels=kernels_on)
        model.initialize_parameters(mx.cpu())
        model.hybridize(static_alloc=True, static_shape=True)
        tokens = mx.nd.array(np.random.RandomState(7).randint(0, 41, size=(9, 3)), dtype="int32")
        with autograd.record():
            out, _ = model(tokens, [])
            loss = mx.nd.softmax_cross_entropy(out, mx.nd.array(np.arange(27) % 41))
        loss.backward()
        logits.append(out.asnumpy())
        grads.append({name.split("_", 1)[1]: p.grad().asnumpy() for name, p in model.collect_params().items()
                      if p.grad_req != "null"})
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)
    assert sorted(grads[0]) == sorted(grads[1])
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], rtol=1e-3, atol=1e-5, err_msg=name)


@needs_kernels
def test_accumulated_gradients_take_mxnets_layer_norm(loaded):
    """A loaded operator cannot add to a gradient (MXNet does not pass it grad_req): with grad_req 'add' the block
    takes MXNet's operator, and two backward passes sum, as MXNet's LayerNorm alone sums them."""
    from ptb_lm.transformer import LayerNorm

    data = mx.nd.array(np.random.RandomState(8).randn(4, 6))
    grads = []
    for kernel in (True, False):
        block = LayerNorm(6, kernel=kernel)
        block.initialize(ctx=mx.cpu())
        block.collect_params().setattr("grad_req", "add")
        for _ in range(2):
            with autograd.record():
                out = block(data)
            out.backward(mx.nd.ones_like(out) * mx.nd.arange(6))
        grads.append((block.gamma.grad().asnumpy(), block.beta.grad().asnumpy()))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_damaged_cached_binary_is_named_with_the_folder_to_delete(tmp_path):
    """What is in the cache under the right key is loaded as it is; if MXNet cannot load it, the reason says which
    folder to delete (the next run then builds it again)."""
    folder = kernels.cache_folder(kernels.find_compiler(), kernels.cpu_flags(), {"PTB_LM_CACHE": str(tmp_path)})
    os.makedirs(folder)
    with open(os.path.join(folder, kernels.LIBRARY), "wb") as f:
        f.write(b"not a shared library")
    code = ("import os; from ptb_lm.kernels import load; "
            "print(load(dict(os.environ, PTB_LM_CACHE=%r, PTB_LM_KERNELS='1')).reason)" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert "cannot be loaded" in out.stdout and "delete %s" % folder in out.stdout, out.stdout
