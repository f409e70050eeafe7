"""ptb_lm's dropout kernel (ptb_lm.dropout, ptb_dropout in ptb_lm/kernels): its generator against the published
Philox4x32-10 answers, its masks against a numpy Philox of the formula, and its rescale, keep rate, shared axes and
evaluation against MXNet's own Dropout."""
import ctypes
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from ptb_lm import kernels
from ptb_lm.dropout import Dropout, DropoutKeys

from helpers import needs_kernels, tiny_config
from philox_reference import expected_mask, philox

pytestmark = needs_kernels


# Random123's known answers for Philox4x32-10 (its kat_vectors): counter, key -> the four words
KNOWN_ANSWERS = [
    ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
    ([0xffffffff] * 4, [0xffffffff] * 2, [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
    ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
     [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]),
]


def mxnet_dropout(x, p, axes=()):
    with autograd.train_mode():
        return mx.nd.Dropout(x, p=p, axes=axes).asnumpy()


def kernel_dropout(x, key, p, axes=(), site=0, head=None):
    """Our output and, under the head gradient ``head``, the input's gradient."""
    x = x.copy()
    x.attach_grad()
    with autograd.record():
        out = mx.nd.ptb_dropout(x, key, p=p, axes=str(tuple(axes)), site=site)
    out.backward(head if head is not None else mx.nd.ones_like(out))
    return out.asnumpy(), x.grad.asnumpy()


def test_the_generator_gives_philox_known_answers(loaded):
    lib = ctypes.CDLL(loaded.path)
    for counter, key, answer in KNOWN_ANSWERS:
        out = (ctypes.c_uint32 * 4)()
        lib.ptb_kernels_philox((ctypes.c_uint32 * 4)(*counter), (ctypes.c_uint32 * 2)(*key), out)
        assert list(out) == answer
        assert philox(np.array([counter], dtype=np.uint32), key)[0].tolist() == answer  # the oracle itself


CASES = [  # shape, axes, p: the three configs' dropout shapes, sizes no multiple of 4 or of a vector, one element
    ((35, 20, 200), (), 0.1),  # the transformer's activations (threaded: past 2**15 elements)
    ((40, 35, 35), (), 0.2),  # its attention weights, (N*H, T, T)
    ((5, 32, 100), (), 0.5),  # the chapter's
    ((7, 3, 13), (), 0.5),
    ((1,), (), 0.3),
    ((35, 20, 200), (0,), 0.4),  # locked: one mask per sequence, shared over time
    ((6, 5, 7), (0, 1), 0.25),
    ((6, 5, 7), (-1,), 0.25),  # shared along the last axis
    ((9, 11), (), 0.999),
    ((9, 11), (), 0.0),
]


@pytest.mark.parametrize("shape,axes,p", CASES, ids=["%s-axes%s-p%s" % c for c in CASES])
def test_the_kernels_masks_and_gradient_are_the_formulas(loaded, shape, axes, p):
    rng = np.random.RandomState(3)
    x = mx.nd.array(rng.normal(size=shape))
    head = mx.nd.array(rng.normal(size=shape))
    key = [rng.randint(1, 2 ** 31 - 1) for _ in range(4)]
    out, grad = kernel_dropout(x, mx.nd.array(key, dtype="int32"), p, axes, site=5, head=head)
    mask = expected_mask(shape, axes, key, 5, p)
    np.testing.assert_array_equal(out, x.asnumpy() * mask)
    np.testing.assert_array_equal(grad, head.asnumpy() * mask)


@pytest.mark.parametrize("size,begin,end", [(50000, 1234, 41233), (30, 0, 30), (30, 3, 17), (30, 0, 9), (30, 9, 30),
                                            (30, 5, 5)])
def test_a_range_is_dropped_as_its_slice_alone_and_the_rest_copied(loaded, size, begin, end):
    """ptb_dropout's begin/end (weight drop on one piece of a packed vector): inside, numpy's mask of a vector
    of the range's length; outside, the data itself, value and gradient."""
    rng = np.random.RandomState(4)
    x, head = (mx.nd.array(rng.normal(size=(size,))) for _ in range(2))
    key = [rng.randint(1, 2 ** 31 - 1) for _ in range(4)]
    x.attach_grad()
    with autograd.record():
        out = mx.nd.ptb_dropout(x, mx.nd.array(key, dtype="int32"), p=0.4, axes="()", site=2, begin=begin, end=end)
    out.backward(head)
    mask = np.ones(size, dtype=np.float32)
    mask[begin:end] = expected_mask((end - begin,), (), key, 2, 0.4)
    assert end - begin < 9 or 0 < (mask[begin:end] == 0).mean() < 1
    np.testing.assert_array_equal(out.asnumpy(), x.asnumpy() * mask)
    np.testing.assert_array_equal(x.grad.asnumpy(), head.asnumpy() * mask)


def test_a_range_with_mxnets_masks_drops_inside_it_only():
    """Without the kernel (a key of None) the same call slices, drops by MXNet's Dropout and concatenates."""
    from ptb_lm.dropout import dropout_range

    x = mx.nd.ones((40,))
    with autograd.train_mode():
        out = dropout_range(mx.nd, x, None, 0.5, 10, 30, 40).asnumpy()
    assert (out[:10] == 1).all() and (out[30:] == 1).all()
    assert set(np.unique(out[10:30])) <= {0.0, 2.0} and 0 < (out[10:30] == 0).mean() < 1


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_rescale_and_the_keep_rate_are_mxnets(loaded, p):
    """Kept elements are scaled exactly as MXNet's Dropout scales them, and as many are kept (within 5 sigma)."""
    ones = mx.nd.ones((200, 500))
    key = mx.nd.array([11, 12, 13, 14], dtype="int32")
    ours, theirs = kernel_dropout(ones, key, p)[0], mxnet_dropout(ones, p)
    assert set(np.unique(ours)) == set(np.unique(theirs)) == {0.0, theirs.max()}
    sigma = np.sqrt(p * (1 - p) / ones.size)
    assert abs((ours == 0).mean() - p) < 5 * sigma
    assert abs((theirs == 0).mean() - p) < 5 * sigma


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 2)])
def test_a_mask_is_shared_along_the_axes_mxnet_shares_it_along(loaded, axes):
    ones = mx.nd.ones((6, 5, 40))
    ours = kernel_dropout(ones, mx.nd.array([3, 1, 4, 1], dtype="int32"), 0.5, axes)[0]
    theirs = mxnet_dropout(ones, 0.5, axes)
    for pattern in (ours, theirs):
        for axis in range(3):
            constant = (pattern == pattern.take([0], axis=axis)).all()
            assert constant == (axis in axes), (axes, axis)


def test_a_zero_key_is_evaluation_as_mxnets_dropout_outside_training(loaded):
    x = mx.nd.array(np.random.RandomState(0).normal(size=(4, 9)))
    ours, grad = kernel_dropout(x, mx.nd.zeros((4,), dtype="int32"), 0.5)
    np.testing.assert_array_equal(ours, mx.nd.Dropout(x, p=0.5).asnumpy())  # not training: the input
    np.testing.assert_array_equal(grad, np.ones((4, 9)))


def test_the_sites_and_the_keys_draw_different_masks(loaded):
    ones = mx.nd.ones((50, 40))
    key = [9, 8, 7, 6]
    base = kernel_dropout(ones, mx.nd.array(key, dtype="int32"), 0.5, site=0)[0]
    assert (kernel_dropout(ones, mx.nd.array(key, dtype="int32"), 0.5, site=0)[0] == base).all()
    assert (kernel_dropout(ones, mx.nd.array(key, dtype="int32"), 0.5, site=1)[0] != base).mean() > 0.3
    for word in range(4):
        other = list(key)
        other[word] += 1
        assert (kernel_dropout(ones, mx.nd.array(other, dtype="int32"), 0.5, site=0)[0] != base).mean() > 0.3


def test_the_block_draws_a_fresh_key_each_training_pass_from_mxnets_seed(loaded):
    """Training passes draw new masks; the same mx.random.seed draws the same ones; evaluation is the input."""
    block, keys = Dropout(0.5, site=2), DropoutKeys(kernel=True)
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.ones((8, 30))
    drawn = []
    for _ in range(2):
        mx.random.seed(5)
        with autograd.record():
            drawn.append([block(x, keys.key(mx.cpu())).asnumpy() for _ in range(2)])
    assert (drawn[0][0] != drawn[0][1]).any()
    np.testing.assert_array_equal(drawn[0], drawn[1])
    np.testing.assert_array_equal(block(x, keys.key(mx.cpu())).asnumpy(), x.asnumpy())
    assert DropoutKeys(kernel=False).key(mx.cpu()) is None  # MXNet's Dropout, which draws its own


def test_a_transformer_with_dropout_resumes_bit_for_bit_with_the_kernels(loaded, tiny_corpus, tmp_path):
    from ptb_lm import fit

    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    config = tiny_config(tiny_corpus, mode="transformer", heads=2, dropout=0.3, seed=8, ffn_dim=16)
    fit(config.replace(epochs=2, save_dir=whole))
    fit(config.replace(epochs=1, save_dir=parts))
    fit(config.replace(epochs=2, save_dir=parts), resume=parts)
    a, b = (open(os.path.join(folder, "last", "model.params"), "rb").read() for folder in (whole, parts))
    assert a == b


def test_the_masks_are_ptb_lms_in_both_engines_for_a_family_that_draws_them(loaded):
    """The engines then agree mask for mask (tests/test_transformer.py trains both); the header says so."""
    cpu = [mx.cpu()]
    imperative = kernels.for_run(cpu, fast=False, masks=True)
    assert imperative.masks and not imperative.active
    assert imperative.describe().endswith("with ptb_lm's dropout masks")
    assert kernels.for_run(cpu, fast=True, masks=True).masks
    for off in (kernels.for_run(cpu, fast=False), kernels.for_run(cpu, fast=True),
                kernels.for_run(cpu, fast=False, lever=False, masks=True)):
        assert not off.masks and "dropout masks" not in off.describe()
