"""The update after each backward: sum the gradients across devices, clip their global norm, take a step.

Two updaters, one per engine (:data:`~ptb_lm.config.ENGINES`), do the same math:

* :class:`ChapterUpdater` (``imperative``): the chapter's ``gluon.Trainer`` and
  ``gluon.utils.clip_global_norm``, parameter by parameter. It is the reference.
* :class:`FlatUpdater` (``fast``): every trainable parameter of a context is a view
  into one contiguous weight buffer, and its gradient a view into one gradient
  buffer, so a batch costs a few large operations instead of several per
  parameter (MXNet's CPU kernels are slow per call and per byte)::

      weights[ctx]  [ rnn (kernel order) | embedding | decoder weight | decoder bias ]   one NDArray
      grads[ctx]    [ the same layout ]                                              one NDArray
      norm² = dot(grads[0], grads[0])      one product (plus the sparse embedding's rows)
      sgd_update(weights, grads, lr, rescale_grad = clip_factor / batch_size)        one update
      (or sgd_mom_update, adam_update, adamw_update with flat state buffers: ptb_lm.optimizers)

  Clipping's factor and the 1/batch_size of ``trainer.step(batch_size)`` fold
  into the update's ``rescale_grad``. Across contexts or workers the all-reduce
  is one push/pull of the gradient buffer. Optionally (one context, one worker,
  untied weights) the embedding keeps a row-sparse gradient and a lazy update:
  for plain SGD without weight decay the rows no batch touched do not move
  either way, so the math is the same and the 1 M-float dense gradient is
  never written.

The RNN's parameters lead the buffer in the order of MXNet's fused RNN kernel, so
that slice is handed to the model as the kernel's one parameter vector, or one per
layer where it runs layer by layer (:meth:`~ptb_lm.model.RNNModel.use_packed_rnn_params`):
Gluon's RNN layer would otherwise concatenate them every forward pass and split the
gradient every backward.

Why clip at all: an RNN's gradient can explode over a few steps, and one huge
step undoes the training so far.
"""

import contextlib
import math

import numpy as np

from .averaging import HISTORY, SCALARS, Averager
from .errors import TrainingDiverged, arg
from .levers import FastLevers
from .optimizers import FlatRule, gluon_optimizer, gluon_state, set_gluon_state
from .parallel import GRAD_KEY, WEIGHT_KEY
from .runtime import import_mxnet
from .runtime.internals import (init_trainer_on_kvstore, parameter_data, parameters_by_saved_name,
                                point_parameter_at)

mx = import_mxnet()
from mxnet import autograd, gluon  # noqa: E402


def _diverged(norm):
    raise TrainingDiverged("training diverged: the gradient norm became %s; lower %s or %s"
                           % (norm, arg("lr"), arg("clipping_norm")))


def trainable(model):
    """The parameters that get gradients, in the model's order."""
    return [p for p in model.collect_params().values() if p.grad_req != "null"]


def state_keys(model, params):
    """A name for each of ``params`` that is the same in every instance of the model (the checkpoint's)."""
    names = {}
    for name, p in parameters_by_saved_name(model).items():
        names.setdefault(id(p), name)
    return [names[id(p)] for p in params]


def clip_gradients(params, ctxs, max_norm):
    """The chapter's clipping: scale every gradient so that their global 2-norm is at most ``max_norm``.

    The norm is taken on the first context (after the all-reduce every context
    holds the same summed gradient) by ``gluon.utils.clip_global_norm``, and the
    other contexts' copies are scaled by the factor it used. Returns the norm.
    """
    grads = [p.grad(ctxs[0]) for p in params]
    norm = gluon.utils.clip_global_norm(grads, max_norm, check_isfinite=True)  # scales ctxs[0]'s
    # the factor it used, in its float32 arithmetic, for the other contexts' copies
    factor = min(float(np.float32(max_norm) / (np.float32(norm) + np.float32(1e-8))), 1.0)
    for ctx in ctxs[1:]:
        for p in params:
            grad = p.grad(ctx)
            grad *= factor
    if not math.isfinite(norm):
        _diverged(norm)
    return norm


class _Averaging(object):
    """NT-ASGD's average (ptb_lm.averaging), the same in both updaters over their own weight buffers: each
    defines ``_weight_buffers(k)`` (the arrays holding the weights on context k), ``_per_parameter(buffers)``
    (those arrays as one array per parameter, in ``self.params``' order) and ``_buffers_of(arrays)`` (back)."""

    average = None

    def _begin_averaging(self, config):
        if config.optimizer == "ntasgd":
            self.average = Averager(config.nonmono_value, self._weight_buffers, len(self.ctxs))

    def evaluation_weights(self):
        """A context in which the weights are those to evaluate and save: NT-ASGD's average once it runs."""
        return self.average.evaluation_weights() if self.average is not None else contextlib.nullcontext()

    def end_of_epoch(self, epoch, val_loss):
        """Tell NT-ASGD's trigger the epoch's validation loss: ``"switch"`` (averaging starts now), ``"stop"``
        (fine-tuning is done) or None."""
        return self.average.end_of_epoch(epoch, val_loss) if self.average is not None else None

    def _averaging_state(self):
        if self.average is None:
            return {}
        arrays = dict(self.average.scalars())
        for key, array in zip(self.keys, self._per_parameter(self.average.iterate())):
            arrays["%s:iterate" % key] = array
        return arrays

    def _load_averaging(self, arrays):
        if self.average is not None:
            iterate = self._buffers_of([arrays["%s:iterate" % key] for key in self.keys])
            self.average.load(arrays[SCALARS], arrays[HISTORY], iterate)


class ChapterUpdater(_Averaging):
    """``trainer.allreduce_grads()``, the chapter's clipping, ``trainer.update(batch_size)``."""

    def __init__(self, model, ctxs, config, kv=None):
        self.params = trainable(model)
        self.keys = state_keys(model, self.params)
        self.ctxs = ctxs
        self.state_names = FlatRule(config).state_names
        self.trainer = gluon.Trainer(self.params, gluon_optimizer(config), kvstore=kv,
                                     update_on_kvstore=False if kv is not None else None)
        self._begin_averaging(config)

    def _weight_buffers(self, k):
        return [p.list_data()[k] for p in self.params]

    def _per_parameter(self, buffers):
        return list(buffers)

    def _buffers_of(self, arrays):
        return [a.reshape(p.shape) for a, p in zip(arrays, self.params)]

    def optimizer_state(self):
        """``({"<parameter>:<state>": array}, steps)``: what a checkpoint keeps of the optimizer."""
        arrays, steps = gluon_state(self.trainer, self.params, self.keys, self.state_names)
        arrays.update(self._averaging_state())
        return arrays, steps

    def load_optimizer_state(self, arrays, steps):
        set_gluon_state(self.trainer, self.params, self.keys, self.state_names, arrays, steps)
        self._load_averaging(arrays)

    def set_learning_rate(self, lr):
        self.trainer.set_learning_rate(lr)

    def broadcast_initial_weights(self, kv):
        """Put rank 0's initial weights on the parameter server and in every worker."""
        init_trainer_on_kvstore(self.trainer)  # what Gluon does lazily, inside the first all-reduce

    def __call__(self, batch_size, clip_at):
        self.trainer.allreduce_grads()
        norm = clip_gradients(self.params, self.ctxs, clip_at)
        self.trainer.update(batch_size)  # rescales the summed gradient by 1/batch_size, as the chapter's step
        if self.average is not None:
            self.average.after_step()
        return norm


class FlatUpdater(_Averaging):
    """One weight buffer and one gradient buffer per context; see the module's docstring.

    Replaces each parameter's arrays with views into the buffers
    (:func:`~ptb_lm.runtime.internals.point_parameter_at`).
    Must run before the model's first backward, or the model must be hybridized
    again after it: a static_alloc graph keeps writing into the arrays it saw.
    """

    def __init__(self, model, ctxs, config, kv=None, sparse_embedding=False, pack_rnn=True):
        self.ctxs = list(ctxs)
        self.lr = config.lr
        self.kv = kv
        self.rule = FlatRule(config)
        self.sparse = [model.encoder.weight] if sparse_embedding else []
        # An RNN's parameters first, in its fused kernel's order, so that they are one packed vector too.
        pack_rnn = pack_rnn and hasattr(model, "rnn_params_in_kernel_order")
        rnn = model.rnn_params_in_kernel_order() if pack_rnn else []
        dense = rnn + [p for p in trainable(model) if all(p is not q for q in self.sparse + rnn)]
        self.params = dense  # in buffer order
        self.keys = state_keys(model, dense)
        sizes = [int(np.prod(p.shape)) for p in dense]
        self.offsets = np.cumsum([0] + sizes).tolist()
        total = self.offsets[-1]
        self.weights = [mx.nd.zeros((total,), ctx=ctx) for ctx in self.ctxs]
        self.grads = [mx.nd.zeros((total,), ctx=ctx) for ctx in self.ctxs]
        self.states = [self.rule.new_states(total, ctx) for ctx in self.ctxs]  # the same layout as the weights
        offset = 0
        for p, size in zip(dense, sizes):
            for ctx, weights, grads in zip(self.ctxs, self.weights, self.grads):
                k = p.list_ctx().index(ctx)
                weight = weights[offset:offset + size]
                weight[:] = parameter_data(p, k).reshape((-1,))
                view, grad_view = weight.reshape(p.shape), grads[offset:offset + size].reshape(p.shape)
                point_parameter_at(p, k, view, grad_view)
                autograd.mark_variables([view], [grad_view], grad_reqs="write")
            offset += size
        if pack_rnn:
            packed = {}  # the RNN's piece(s) of the buffer, each a variable with its gradient's view
            for ctx, weights, grads in zip(self.ctxs, self.weights, self.grads):
                packed[ctx] = [weights[start:end] for start, end in model.rnn_packed_ranges()]
                autograd.mark_variables(packed[ctx], [grads[start:end] for start, end in model.rnn_packed_ranges()],
                                        grad_reqs="write")
            model.use_packed_rnn_params(packed)
        if kv is not None:
            kv.init(GRAD_KEY, mx.nd.zeros((total,), ctx=self.ctxs[0]))
        self._begin_averaging(config)

    def _weight_buffers(self, k):
        return [self.weights[k]]

    def _per_parameter(self, buffers):
        return [buffers[0][start:stop].reshape(p.shape)
                for p, start, stop in zip(self.params, self.offsets, self.offsets[1:])]

    def _buffers_of(self, arrays):
        return [mx.nd.concat(*[a.reshape((-1,)) for a in arrays], dim=0)]

    def set_learning_rate(self, lr):
        self.lr = lr

    def broadcast_initial_weights(self, kv):
        """Put rank 0's initial weights on the parameter server and in every worker (one key)."""
        assert not self.sparse, "a sparse embedding is only used with one context and one worker"
        kv.init(WEIGHT_KEY, self.weights[0])
        kv.pull(WEIGHT_KEY, out=self.weights)

    def __call__(self, batch_size, clip_at):
        if self.kv is not None:
            self.kv.pushpull(GRAD_KEY, self.grads, out=self.grads)  # every context now holds the sum
        grad = self.grads[0]
        squared = mx.nd.dot(grad, grad)
        for p in self.sparse:
            rows = p.grad(self.ctxs[0]).data.reshape((-1,))
            squared = squared + mx.nd.dot(rows, rows)
        norm = math.sqrt(float(squared.asscalar()))  # the one wait of a batch
        if not math.isfinite(norm):
            _diverged(norm)
        rescale = min(clip_at / (norm + 1e-8), 1.0) / batch_size  # clipping and step(batch_size) in one factor
        self.rule.begin_step()
        for weights, grads, states in zip(self.weights, self.grads, self.states):
            self.rule(weights, grads, states, self.lr, rescale)
        for p in self.sparse:  # plain SGD without weight decay only (optimizers.lazy_update_is_exact)
            weight = p.data(self.ctxs[0])
            self.rule(weight, p.grad(self.ctxs[0]), [], self.lr, rescale, lazy=True)
        if self.average is not None:  # never with a sparse embedding: ntasgd is not lazy_update_is_exact
            self.average.after_step()
        return norm

    def optimizer_state(self):
        """``({"<parameter>:<state>": array}, steps)``: what a checkpoint keeps of the optimizer (per
        parameter, as the Trainer's path keeps it)."""
        arrays = {}
        for name, buffer in zip(self.rule.state_names, self.states[0]):
            for p, key, start, stop in zip(self.params, self.keys, self.offsets, self.offsets[1:]):
                arrays["%s:%s" % (key, name)] = buffer[start:stop].reshape(p.shape)
        arrays.update(self._averaging_state())
        return arrays, self.rule.step

    def load_optimizer_state(self, arrays, steps):
        for states in self.states:
            for name, buffer in zip(self.rule.state_names, states):
                for key, start, stop in zip(self.keys, self.offsets, self.offsets[1:]):
                    buffer[start:stop] = arrays["%s:%s" % (key, name)].as_in_context(buffer.context).reshape((-1,))
        self.rule.step = steps
        self._load_averaging(arrays)


def make_updater(config, model, ctxs, kv, levers=FastLevers(), sparse_embedding=False):
    """The updater of ``config.engine`` with ``levers`` (``flat_update`` off: the chapter's, whatever the engine)."""
    if config.engine == "imperative" or not levers.flat_update:
        return ChapterUpdater(model, ctxs, config, kv)
    return FlatUpdater(model, ctxs, config, kv, sparse_embedding=sparse_embedding, pack_rnn=levers.packed_rnn)
