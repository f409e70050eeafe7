"""The optimizers: the chapter's plain SGD, and momentum, Adam and AdamW, which keep state.

Each is one MXNet update operator, applied to a whole buffer at once by the fast engine
(:class:`FlatRule`, over the flat weight buffer and flat state buffers of the same
layout) and parameter by parameter by Gluon's Trainer in the imperative engine
(:func:`gluon_optimizer`)::

    sgd       sgd_update        w -= lr (g + wd w)                       no state (the chapter's, wd 0)
    momentum  sgd_mom_update    m = mu m - lr (g + wd w);  w += m        state: m
    adam      adam_update       Gluon's Adam: L2 decay in g, the bias correction folded into the rate,
                                lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)    state: mean, var
    adamw     adamw_update      the same moments, decay decoupled from them (Loshchilov & Hutter, as
              (contrib)         PyTorch's AdamW): w -= lr (lr_t/lr m / (sqrt(v) + eps) + wd w)
    ntasgd    sgd_update        sgd's step, and from a switch on the weights' average (ptb_lm.averaging)

In every one, g is the summed gradient times ``rescale_grad``: clipping's factor and
the chapter's 1/batch_size. A lazy (row-sparse) update is the same math only for SGD
without weight decay, where rows no batch touched do not move either way; for momentum
and the Adams the untouched rows' state would stop decaying, so the fast engine keeps
the embedding dense there.

The state is saved with every checkpoint (ptb_lm.checkpoint), as one array per
parameter and state (``"<parameter>:<state>"``, the parameter named as save_parameters
names it), whichever engine wrote it, and
the number of steps taken.
"""

import math

from .runtime import import_mxnet
from .runtime.internals import optimizer_step_count, set_optimizer_step_count, trainer_states

mx = import_mxnet()

EPSILON = 1e-8  # Adam's and AdamW's epsilon: Kingma & Ba's, Gluon's and PyTorch's default
# ntasgd: SGD's step; its average of the weights is ptb_lm.averaging's, kept by the updaters
STATES = {"sgd": (), "momentum": ("momentum",), "adam": ("mean", "var"), "adamw": ("mean", "var"), "ntasgd": ()}


def lazy_update_is_exact(config):
    """Whether updating only the rows a batch touched is the same math (plain SGD without weight decay)."""
    return config.optimizer == "sgd" and config.weight_decay == 0


def corrected_rate(lr, betas, step):
    """Gluon's Adam's rate at ``step`` (1-based): the moments' bias correction folded into ``lr``."""
    beta1, beta2 = betas
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)


class FlatRule(object):
    """One optimizer's update over flat buffers: ``rule(weights, grads, states, lr, rescale)`` in place.

    ``states`` is the list :meth:`new_states` made for the buffer (one NDArray a state).
    :attr:`step` counts the updates, for Adam's bias correction.
    """

    def __init__(self, config):
        self.name = config.optimizer
        self.wd = float(config.weight_decay)
        self.momentum = config.momentum_value
        self.betas = tuple(config.betas)
        self.step = 0

    @property
    def state_names(self):
        return STATES[self.name]

    def new_states(self, size, ctx):
        return [mx.nd.zeros((size,), ctx=ctx) for _ in self.state_names]

    def begin_step(self):
        """Count one more update (once per batch, before the buffers of every context are updated)."""
        self.step += 1

    def __call__(self, weights, grads, states, lr, rescale, lazy=False):
        if self.name in ("sgd", "ntasgd"):
            mx.nd.sgd_update(weights, grads, lr=lr, wd=self.wd, rescale_grad=rescale, lazy_update=lazy, out=weights)
        elif self.name == "momentum":
            mx.nd.sgd_mom_update(weights, grads, states[0], lr=lr, momentum=self.momentum, wd=self.wd,
                                 rescale_grad=rescale, out=weights)
        elif self.name == "adam":
            mx.nd.adam_update(weights, grads, states[0], states[1], lr=corrected_rate(lr, self.betas, self.step),
                              beta1=self.betas[0], beta2=self.betas[1], epsilon=EPSILON, wd=self.wd,
                              rescale_grad=rescale, out=weights)
        else:
            scale = mx.nd.full((1,), rescale, ctx=weights.context)
            mx.nd.contrib.adamw_update(weights, grads, states[0], states[1], scale,
                                       lr=corrected_rate(lr, self.betas, self.step) / lr if lr else 0.0, eta=lr,
                                       beta1=self.betas[0], beta2=self.betas[1], epsilon=EPSILON, wd=self.wd,
                                       out=weights)


@mx.optimizer.register
class PtbAdamW(mx.optimizer.Optimizer):
    """AdamW for Gluon's Trainer, as :class:`FlatRule` computes it (MXNet 1.9.1 ships the operator only)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=EPSILON, **kwargs):
        super(PtbAdamW, self).__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        step = self._index_update_count[index]
        scale = mx.nd.full((1,), self.rescale_grad, ctx=weight.context)
        mean, var = state
        mx.nd.contrib.adamw_update(weight, grad, mean, var, scale,
                                   lr=corrected_rate(lr, (self.beta1, self.beta2), step) / lr if lr else 0.0,
                                   eta=lr, beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon, wd=wd, out=weight)


def gluon_optimizer(config):
    """The optimizer of ``config`` for Gluon's Trainer (the imperative engine): the same math as FlatRule."""
    wd = float(config.weight_decay)
    if config.optimizer in ("sgd", "ntasgd"):
        return mx.optimizer.SGD(learning_rate=config.lr, momentum=0, wd=wd)
    if config.optimizer == "momentum":
        return mx.optimizer.SGD(learning_rate=config.lr, momentum=config.momentum_value, wd=wd)
    beta1, beta2 = config.betas
    if config.optimizer == "adam":
        return mx.optimizer.Adam(learning_rate=config.lr, beta1=beta1, beta2=beta2, epsilon=EPSILON, wd=wd)
    return PtbAdamW(learning_rate=config.lr, beta1=beta1, beta2=beta2, epsilon=EPSILON, wd=wd)


# --- the state as a checkpoint holds it ------------------------------------------------------------

def gluon_state(trainer, params, keys, state_names):
    """``({"<key>:<state>": NDArray}, steps)`` of a Trainer's optimizer for ``params`` (in the Trainer's order,
    named by ``keys``), from its first context's copies (every context holds the same)."""
    arrays = {}
    states = trainer_states(trainer)[0]
    for index, key in enumerate(keys):
        state = states.get(index)
        if state is None:
            continue
        parts = state if isinstance(state, (tuple, list)) else (state,)
        for name, part in zip(state_names, parts):
            arrays["%s:%s" % (key, name)] = part
    return arrays, optimizer_step_count(trainer.optimizer)


def set_gluon_state(trainer, params, keys, state_names, arrays, steps):
    """Put ``arrays`` and ``steps`` (as :func:`gluon_state` gives them) into a Trainer's optimizer, on every
    context."""
    optimizer = trainer.optimizer
    for k, states in enumerate(trainer_states(trainer)):
        for index, (param, key) in enumerate(zip(params, keys)):
            weight = param.list_data()[k]
            created = optimizer.create_state_multi_precision(index, weight)
            parts = created if isinstance(created, (tuple, list)) else (created,)
            for name, part in zip(state_names, parts):
                part[:] = arrays["%s:%s" % (key, name)].as_in_context(part.context).reshape(part.shape)
            states[index] = created
    set_optimizer_step_count(optimizer, range(len(params)), steps)
