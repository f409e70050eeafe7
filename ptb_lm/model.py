"""The chapter's RNN language model, as a HybridBlock.

    ids (num_steps, batch_size)
      -> Embedding -> Dropout -> RNN x num_layers (dropout between layers) -> Dropout
      -> reshape to (num_steps * batch_size, hidden_dim) -> Dense -> logits (num_steps * batch_size, vocab_size)

Layouts are time-major (TNC), as the chapter's. Left un-hybridized, the block runs
op by op exactly as the chapter's ``gluon.Block`` did; ``hybridize()`` compiles the
same graph once (the fast engine).
"""

import warnings

from .config import MODES
from .errors import ConfigError
from .runtime import import_mxnet
from .runtime.internals import rnn_kernel_params, rnn_kernel_settings

mx = import_mxnet()
from mxnet import gluon  # noqa: E402
from mxnet.gluon import nn, rnn  # noqa: E402


class RNNModel(gluon.HybridBlock):
    """Embedding, a multi-layer RNN and a dense decoder (the chapter's model).

    Parameters
    ----------
    mode : 'rnn_relu' | 'rnn_tanh' | 'lstm' | 'gru'
    vocab_size, embed_dim, hidden_dim, num_layers : int
    dropout : float
        Applied to the embeddings, between RNN layers and to the RNN's output.
    tied : bool
        The decoder reuses the embedding's weight (needs embed_dim == hidden_dim).
    init_scale : float or None
        None: the chapter's initialisers, Uniform(0.1) for the embedding and Xavier
        for the other weights. A number x: Uniform(x) for every weight (Zaremba).
        Biases start at zero either way.
    sparse_grad : bool
        The embedding's gradient is row-sparse (only the rows of the batch's
        words); the fast engine's lazy update then touches only those rows.

    Call ``model(inputs, state)`` with ``inputs`` of shape ``(num_steps, batch_size)``
    and ``state`` from :meth:`begin_state`; it returns ``(logits, state)`` with
    logits of shape ``(num_steps * batch_size, vocab_size)``.
    """

    def __init__(self, mode, vocab_size, embed_dim, hidden_dim, num_layers, dropout=0.5, tied=False,
                 init_scale=None, sparse_grad=False, **kwargs):
        super(RNNModel, self).__init__(**kwargs)
        if mode not in MODES:
            raise ConfigError("Invalid mode %s. Options are %s" % (mode, ", ".join(MODES)), setting="mode")
        if tied and embed_dim != hidden_dim:
            raise ConfigError("tied weights need embed_dim == hidden_dim, got %d and %d" % (embed_dim, hidden_dim))
        self.hidden_dim = hidden_dim
        self.init_scale = init_scale
        self._packed_rnn_params = {}  # ctx -> the RNN kernel's packed parameter vector (use_packed_rnn_params)
        weight_init = mx.init.Uniform(init_scale) if init_scale else None  # None: the global Xavier
        with self.name_scope():
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(vocab_size, embed_dim, sparse_grad=sparse_grad,
                                        weight_initializer=mx.init.Uniform(init_scale or 0.1))
            layer_args = dict(hidden_size=hidden_dim, num_layers=num_layers, dropout=dropout,
                              input_size=embed_dim, i2h_weight_initializer=weight_init,
                              h2h_weight_initializer=weight_init)
            if mode == "rnn_relu":
                self.rnn = rnn.RNN(activation="relu", **layer_args)
            elif mode == "rnn_tanh":
                self.rnn = rnn.RNN(activation="tanh", **layer_args)
            elif mode == "lstm":
                self.rnn = rnn.LSTM(**layer_args)
            else:
                self.rnn = rnn.GRU(**layer_args)
            if tied:
                # Sharing the embedding's ParameterDict makes Dense find the same 'weight'.
                self.decoder = nn.Dense(vocab_size, in_units=hidden_dim, params=self.encoder.params)
            else:
                self.decoder = nn.Dense(vocab_size, in_units=hidden_dim, weight_initializer=weight_init)

    def rnn_params_in_kernel_order(self):
        """The RNN's parameters in the order of MXNet's fused RNN kernel's one parameter vector:
        every layer's i2h and h2h weights, then every layer's i2h and h2h biases."""
        params = rnn_kernel_params(self.rnn)
        layers = rnn_kernel_settings(self.rnn)["num_layers"]
        return [params["l%d_%s_%s" % (layer, gate, kind)]
                for kind in ("weight", "bias") for layer in range(layers) for gate in ("i2h", "h2h")]

    def use_packed_rnn_params(self, packed):
        """Feed the RNN kernel ``packed[ctx]`` directly instead of concatenating its parameters every call.

        ``packed[ctx]`` must be one 1-D array holding :meth:`rnn_params_in_kernel_order`'s
        parameters back to back, each of them a view into it (the fast engine's flat buffer
        does this), marked for autograd with its gradient. Gluon's RNN layer copies them into
        such a vector, and its backward copies the gradient out, on every batch. Call before
        the first forward pass: a hybridized graph keeps the inputs it was built with.
        """
        self._packed_rnn_params = dict(packed)

    def forward(self, inputs, state):
        packed = self._packed_rnn_params.get(inputs.context)
        if packed is None:
            return super(RNNModel, self).forward(inputs, state)
        with warnings.catch_warnings():
            # the RNN layer's own parameters are not graph inputs on this path: their packed view is
            warnings.filterwarnings("ignore", message="Parameter .* is not used by any computation")
            return super(RNNModel, self).forward(inputs, state, packed)

    def hybrid_forward(self, F, inputs, state, packed_rnn_params=None, **params):
        emb = self.drop(self.encoder(inputs))
        if packed_rnn_params is None:
            output, state = self.rnn(emb, state)
        else:
            output, state = self._fused_rnn(F, emb, state, packed_rnn_params)
        output = self.drop(output)
        decoded = self.decoder(output.reshape((-1, self.hidden_dim)))
        return decoded, state

    def _fused_rnn(self, F, emb, state, packed):
        """What Gluon's RNN layer does after concatenating its parameters (TNC, unidirectional)."""
        out = F.RNN(emb, packed, *state, bidirectional=False, state_outputs=True, **rnn_kernel_settings(self.rnn))
        return out[0], list(out[1:])

    def begin_state(self, *args, **kwargs):
        """The RNN's zero state: a list of ``(num_layers, batch_size, hidden_dim)`` arrays."""
        return self.rnn.begin_state(*args, **kwargs)

    def initialize_parameters(self, ctx):
        """Initialise as the chapter does: Xavier unless a weight has its own initialiser."""
        default = mx.init.Uniform(self.init_scale) if self.init_scale else mx.init.Xavier()
        self.collect_params().initialize(default, ctx=ctx)


def build_model(config, vocab_size, sparse_grad=False):
    """Return the :class:`RNNModel` that ``config`` describes (not yet initialised)."""
    return RNNModel(config.mode, vocab_size, config.embed_dim, config.hidden_dim, config.num_layers,
                    config.dropout, tied=config.tied, init_scale=config.init_scale, sparse_grad=sparse_grad)


def count_flops_per_token(mode, vocab_size, embed_dim, hidden_dim, num_layers):
    """Multiply-adds x 2 of one token's forward pass (the embedding lookup counts 0).

    Each RNN layer does ``gates`` matrix-vector products with its input and its
    state (gates: 1 for an RNN, 3 for a GRU, 4 for an LSTM); the decoder does one
    ``hidden_dim x vocab_size`` product. A training step costs about 3x this
    (forward, and backward to both inputs and weights).
    """
    gates = {"rnn_relu": 1, "rnn_tanh": 1, "gru": 3, "lstm": 4}[mode]
    flops = 0
    for layer in range(num_layers):
        input_dim = embed_dim if layer == 0 else hidden_dim
        flops += 2 * gates * hidden_dim * (input_dim + hidden_dim)
    return flops + 2 * hidden_dim * vocab_size
