"""Model families: what ptb_lm asks of a kind of model, and the registry that maps each ``--mode`` to one.

A family's model is a Gluon block that ptb_lm's loops drive without knowing its kind::

    state  = model.begin_state(func=mx.nd.zeros, batch_size=N, ctx=ctx)   a list of arrays, each
                                                                           (num_layers, N, hidden); [] if none
    logits, state = model(tokens, state)     tokens (T, N) int32, time-major (TN)
                                             logits (T * N, vocab), row t * N + n for time t, stream n
    model.carries_state                      True: the state goes on from window to window (truncated
                                             BPTT); False: each window is read on its own
    model.initialize_parameters(ctxs)        the family's own initialisers
    model.auxiliary                          names of further outputs it can compute, for a loss term
                                             (ptb_lm.families.auxiliary: keep_auxiliary, with_auxiliary)

Everything else ptb_lm needs to know of a family, its :class:`ModelFamily` says: how the block is
built, the settings it refuses, the names of its state arrays in the ONNX interface, its tensor
sizes, memory and FLOPs per token, and how its evaluation pass is written to ONNX. Nothing here
imports MXNet (a config is checked before MXNet is loaded); a family imports its block and onnx
only where it builds one.

Adding a family: a module here with its :class:`ModelFamily` (and a module with its block), and one
entry in :data:`FAMILIES`. Nothing else asks which family a model is.
"""

import abc

from ..errors import ConfigError


class ModelFamily(abc.ABC):
    """One kind of model, with the modes it answers to (see the module's docstring for the block's interface)."""

    #: the --mode values of this family
    modes = ()
    #: whether its model carries a state from window to window (an RNN), or reads each on its own
    carries_state = True
    #: whether MXNet's own ONNX exporter can convert its graph (else only ptb_lm's writer is tried)
    mxnet_exports = True

    @abc.abstractmethod
    def state_names(self, mode):
        """The names of the state arrays in the ONNX interface, in ``begin_state``'s order ([] for none); each is
        ``(num_layers, batch, hidden)``, and the graph's outputs carry them on as ``hn``, ``cn``..."""

    def keyed_dropout(self, config):
        """Whether a model of ``config`` has dropouts whose masks ptb_lm's generator draws where the kernels load
        (:mod:`ptb_lm.dropout`), in both engines, so that they agree; ``build`` then gets ``keyed_dropout``."""
        return False

    def check(self, config):
        """Raise ConfigError, naming the setting, for settings this family cannot take (the config calls it)."""

    @abc.abstractmethod
    def build(self, config, vocab_size, sparse_grad=False, kernels=False, keyed_dropout=False):
        """The model block ``config`` describes, not yet initialised; ``kernels``: it may use ptb_lm's own CPU
        operators (:mod:`ptb_lm.kernels`, loaded), for the same math; ``keyed_dropout``: its dropout masks are
        drawn by ptb_lm's kernel (:mod:`ptb_lm.dropout`; where :meth:`keyed_dropout` says so only)."""

    @abc.abstractmethod
    def layer_sizes(self, config):
        """``{name: elements}`` of each layer's parameters (the embedding and the decoder are counted apart)."""

    @abc.abstractmethod
    def activation_floats_per_token(self, config):
        """About how many floats of activations one training token keeps in one layer, for the memory check."""

    @abc.abstractmethod
    def layer_flops_per_token(self, config, context):
        """Multiply-adds x 2 of one token's forward pass through the layers (the decoder apart); ``context`` is
        how many tokens attention looks at, where it does."""

    @abc.abstractmethod
    def onnx_weights(self, model):
        """The trained weights as NumPy arrays, in the form :meth:`onnx_graph` takes."""

    @abc.abstractmethod
    def onnx_graph(self, config, vocab_size, weights):
        """ptb_lm's own ONNX model (opset 13) of the evaluation pass: inputs ``tokens`` int64 (T, N) and the
        state arrays, outputs ``logits`` float32 (T, N, vocab) and the new state."""


def _registry():
    from .rnn import RNNFamily
    from .transformer import TransformerFamily

    return (RNNFamily(), TransformerFamily())


#: every family ptb_lm knows, in the order modes are listed
FAMILIES = _registry()
#: every --mode, with the family that answers to it
BY_MODE = {mode: family for family in FAMILIES for mode in family.modes}
MODES = tuple(BY_MODE)


def family_of(mode):
    """The family of ``mode``; ConfigError, in the one wording of an unknown mode, if there is none."""
    family = BY_MODE.get(mode)
    if family is None:
        raise ConfigError("unknown mode %r: choose one of %s" % (mode, ", ".join(MODES)), setting="mode")
    return family


def state_names(mode):
    """The names of ``mode``'s state arrays in the ONNX interface ([] for a model that carries none)."""
    return family_of(mode).state_names(mode)


def flops_per_token(config, vocab_size, context=0):
    """Multiply-adds x 2 of one token's forward pass: the layers', then the decoder's ``last layer x vocab`` product
    (the embedding lookup counts 0). A training step costs about 3x this (forward, and backward to both
    inputs and weights)."""
    return family_of(config.mode).layer_flops_per_token(config, context) + 2 * config.output_dim * vocab_size
