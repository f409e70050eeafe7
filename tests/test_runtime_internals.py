"""Every private MXNet and Gluon name ptb_lm reads (ptb_lm.runtime.internals), read here on real MXNet objects.

An MXNet whose internals differ from 1.9.1's fails these tests loudly, by name, before a
run could fail in the middle. The oracles are MXNet's own public behaviour: what Gluon's
RNN layer computes, what save_parameters writes, what a Trainer's update does.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import rnn

from ptb_lm.runtime import internals


def test_each_private_name_is_checked_and_a_missing_one_is_named():
    with pytest.raises(internals.InternalsChanged) as err:
        internals.kvstore_barrier(object())
    assert "_barrier" in str(err.value) and "mxnet==1.9.1" in str(err.value)


@pytest.mark.parametrize("mode", ["rnn_relu", "rnn_tanh", "lstm", "gru"])
def test_the_rnn_kernel_names_and_settings_reproduce_gluons_own_layer(mode):
    """Calling the fused kernel with the layer's parameters in kernel order and its settings gives the layer's
    own output: so the names and the four settings read are the ones Gluon passes."""
    make = {"rnn_relu": lambda **k: rnn.RNN(activation="relu", **k), "rnn_tanh": lambda **k: rnn.RNN(activation="tanh", **k),
            "lstm": rnn.LSTM, "gru": rnn.GRU}[mode]
    layer = make(hidden_size=6, num_layers=2, input_size=4)
    layer.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.uniform(shape=(3, 2, 4))
    state = layer.begin_state(batch_size=2)
    expected, _ = layer(x, state)
    params = internals.rnn_kernel_params(layer)
    settings = internals.rnn_kernel_settings(layer)
    assert settings["num_layers"] == 2 and settings["state_size"] == 6
    ordered = [params["l%d_%s_%s" % (l, g, kind)].data()
               for kind in ("weight", "bias") for l in range(2) for g in ("i2h", "h2h")]
    packed = mx.nd.concat(*[p.reshape((-1,)) for p in ordered], dim=0)
    out = mx.nd.RNN(x, packed, *state, bidirectional=False, state_outputs=True, **settings)
    np.testing.assert_allclose(out[0].asnumpy(), expected.asnumpy(), rtol=1e-6, atol=1e-7)


def test_a_parameter_pointed_at_new_arrays_trains_through_them():
    """After point_parameter_at, Gluon's forward reads the new array and backward writes the new gradient."""
    dense = gluon.nn.Dense(3, in_units=2)
    dense.initialize()
    weight = dense.weight
    data, grad = mx.nd.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), mx.nd.zeros((3, 2))
    autograd.mark_variables([data], [grad], grad_reqs="write")
    internals.point_parameter_at(weight, 0, data, grad)
    assert internals.parameter_data(weight, 0) is data
    x = mx.nd.array([[1.0, 1.0]])
    with autograd.record():
        y = dense(x)
        total = y.sum()
    total.backward()
    np.testing.assert_allclose(y.asnumpy() - dense.bias.data().asnumpy(), [[3.0, 7.0, 11.0]])
    np.testing.assert_allclose(grad.asnumpy(), np.ones((3, 2)))
    assert weight.grad() is grad


def test_the_saved_names_are_what_save_parameters_writes(tmp_path):
    tied = gluon.nn.HybridSequential()
    with tied.name_scope():
        first = gluon.nn.Dense(4, in_units=4)
        tied.add(first, gluon.nn.Dense(4, in_units=4, params=first.params))
    tied.initialize()
    path = str(tmp_path / "p.params")
    tied.save_parameters(path)
    assert sorted(internals.saved_parameter_names(tied)) == sorted(mx.nd.load(path))


def test_a_trainer_initialised_on_its_kvstore_starts_from_rank_0s_weights():
    """A local kvstore with two contexts: after init_trainer_on_kvstore the trainer has its kvstore, and an
    update averages what both contexts computed (MXNet's own behaviour once its kvstore is set up)."""
    ctxs = [mx.cpu(0), mx.cpu(1)]
    dense = gluon.nn.Dense(1, in_units=1, use_bias=False)
    dense.initialize(mx.init.One(), ctx=ctxs)
    trainer = gluon.Trainer(dense.collect_params(), "sgd", {"learning_rate": 1.0}, kvstore="device")
    internals.init_trainer_on_kvstore(trainer)
    assert trainer._kv_initialized and trainer._kvstore is not None
    for ctx, value in zip(ctxs, (1.0, 3.0)):
        with autograd.record():
            y = dense(mx.nd.array([[value]], ctx=ctx))
        y.backward()
    trainer.step(2)
    for ctx in ctxs:
        assert dense.weight.data(ctx).asscalar() == pytest.approx(1.0 - (1.0 + 3.0) / 2)


def test_the_barrier_exists_on_a_kvstore():
    # a local kvstore's barrier returns at once; dist_sync's is exercised by tests/test_parallel.py
    internals.kvstore_barrier(mx.kv.create("local"))


def test_a_forgotten_graph_is_built_again_with_the_blocks_new_outputs():
    class Doubling(gluon.HybridBlock):
        factor = 2

        def hybrid_forward(self, F, x):
            return x * self.factor

    block = Doubling()
    block.hybridize()
    x = mx.nd.ones((2,))
    assert block(x).asnumpy().tolist() == [2, 2]
    block.factor = 3  # read when the graph is built: the compiled graph keeps 2
    assert block(x).asnumpy().tolist() == [2, 2]
    internals.forget_compiled_graph(block)
    assert block(x).asnumpy().tolist() == [3, 3]
