"""The chapter's RNN language model, as a HybridBlock.

    ids (num_steps, batch_size)
      -> Embedding -> Dropout -> RNN x num_layers (dropout between layers) -> Dropout
      -> reshape to (num_steps * batch_size, last layer's size) -> Dense -> logits (num_steps * batch_size, vocab_size)

AWD-LSTM's dropouts, each off unless given (ptb_lm.dropout; their masks are ptb_lm's generator's where the
kernels load, in both engines, else MXNet's):

    Embedding, whole rows dropped (dropout_embedding) -> locked dropout, one (1, N, C) mask (dropout_input)
      -> RNN layer 1 -> locked dropout (dropout_hidden) -> ... -> RNN layer L   (weights: weight_drop)
      -> locked dropout (dropout_output) -> Dense

With dropout_hidden, or layers of different sizes (hidden_sizes, AWD-LSTM's 1150 -> 1150 -> 400), the fused RNN
kernel runs once per layer, on its slice of the same packed parameters. The state stays one array per kind,
``(num_layers, N, hidden_dim)`` with hidden_dim the widest layer's size; a narrower layer reads and writes the
first columns of its row, and the rest stay zero::

    h0 (3, N, 1150):  layer 0  [h h h ... h]          1150 columns
                      layer 1  [h h h ... h]          1150
                      layer 2  [h h h h 0 ... 0]       400, then zeros

so that the loops, the checkpoints, the ONNX interface and the portable scorer see one shape whatever the sizes.

Layouts are time-major (TNC), as the chapter's. Left un-hybridized, the block runs
op by op exactly as the chapter's ``gluon.Block`` did; ``hybridize()`` compiles the
same graph once (the fast engine).
"""

import warnings

import numpy as np

from .config import check_hidden_sizes
from .dropout import DroppedEmbedding, Dropout, DropoutKeys, Sites, WeightDrop
from .families import family_of
from .families.auxiliary import AuxiliaryOutputs
from .families.rnn import RNNFamily
from .errors import ConfigError
from .runtime import import_mxnet
from .runtime.internals import rnn_kernel_params, rnn_kernel_settings

mx = import_mxnet()
from mxnet import gluon  # noqa: E402
from mxnet.gluon import nn, rnn  # noqa: E402


class RNNModel(AuxiliaryOutputs, gluon.HybridBlock):
    """Embedding, a multi-layer RNN and a dense decoder (the chapter's model).

    Parameters
    ----------
    mode : 'rnn_relu' | 'rnn_tanh' | 'lstm' | 'gru'
    vocab_size, embed_dim, hidden_dim, num_layers : int
    dropout : float
        Applied to the embeddings, between RNN layers and to the RNN's output.
    tied : bool
        The decoder reuses the embedding's weight (needs embed_dim == the last layer's size).
    hidden_sizes : sequence of int or None
        Each layer's size where they differ; ``hidden_dim`` must then be the largest (the state's width).
    init_scale : float or None
        None: the chapter's initialisers, Uniform(0.1) for the embedding and Xavier
        for the other weights. A number x: Uniform(x) for every weight (Zaremba).
        Biases start at zero either way.
    sparse_grad : bool
        The embedding's gradient is row-sparse (only the rows of the batch's
        words); the fast engine's lazy update then touches only those rows.
    dropout_input, dropout_hidden, dropout_output : float
        Locked dropout (one mask per sequence, shared over time) on the embeddings, between the RNN layers
        and on the last RNN layer's outputs, where ``dropout`` would draw one per element (give ``dropout``
        0 with them).
    dropout_embedding : float
        Whole rows of the embedding (words) dropped at each training pass.
    weight_drop : float
        DropConnect on each layer's hidden-to-hidden weights, a new mask every pass (AWD-LSTM's weight drop),
        applied to the RNN kernel's packed parameters in both engines (:class:`ptb_lm.dropout.WeightDrop`).
    keyed_dropout : bool
        The five above draw their masks by ptb_lm's kernel (loaded: ptb_lm.kernels); the chapter's
        ``dropout`` stays MXNet's.

    Call ``model(inputs, state)`` with ``inputs`` of shape ``(num_steps, batch_size)``
    and ``state`` from :meth:`begin_state`; it returns ``(logits, state)`` with
    logits of shape ``(num_steps * batch_size, vocab_size)``.

    Auxiliary outputs (:meth:`keep_auxiliary`, :meth:`with_auxiliary`), each
    ``(num_steps, batch_size, last layer's size)``: ``hidden``, the last RNN layer's outputs,
    and ``hidden_dropped``, the same after the output dropout (what the decoder reads).
    """

    carries_state = True  # the hidden state goes on from batch to batch (truncated BPTT)
    auxiliary = ("hidden", "hidden_dropped")

    def __init__(self, mode, vocab_size, embed_dim, hidden_dim, num_layers, dropout=0.5, tied=False,
                 init_scale=None, sparse_grad=False, dropout_input=0.0, dropout_output=0.0, dropout_embedding=0.0,
                 weight_drop=0.0, dropout_hidden=0.0, keyed_dropout=False, hidden_sizes=None, **kwargs):
        super(RNNModel, self).__init__(**kwargs)
        family_of(mode)  # an unknown mode is refused in the one wording
        if mode not in RNNFamily.modes:
            raise ConfigError("RNNModel takes %s; %r is another family's (ptb_lm.families)"
                              % (", ".join(RNNFamily.modes), mode), setting="mode")
        if hidden_sizes:
            check_hidden_sizes(tuple(hidden_sizes), num_layers, hidden_dim)
        sizes = tuple(hidden_sizes) if hidden_sizes else (hidden_dim,) * num_layers
        if tied and embed_dim != sizes[-1]:
            raise ConfigError("tied weights need embed_dim == the last layer's size, got %d and %d"
                              % (embed_dim, sizes[-1]))
        self.hidden_dim = hidden_dim  # the state's width
        self.hidden_sizes = sizes
        self.init_scale = init_scale
        self._mode = mode
        self._packed_rnn_params = {}  # ctx -> the RNN kernel's packed parameters, in pieces (use_packed_rnn_params)
        self._rnn_weight_transform = None  # transform_rnn_weights
        weight_init = mx.init.Uniform(init_scale) if init_scale else None  # None: the global Xavier
        self._dropout_keys = DropoutKeys(keyed_dropout and any((dropout_input, dropout_output, dropout_embedding,
                                                                weight_drop, dropout_hidden)))
        sites = Sites()
        with self.name_scope():
            self.drop = nn.Dropout(dropout)
            # AWD-LSTM's, made only when asked for, so that the chapter's graph stays the chapter's
            self.lock_input = Dropout(dropout_input, axes=(0,), site=sites()) if dropout_input else None
            self.lock_output = Dropout(dropout_output, axes=(0,), site=sites()) if dropout_output else None
            embedding_init = mx.init.Uniform(init_scale or 0.1)
            if dropout_embedding:
                self.encoder = DroppedEmbedding(vocab_size, embed_dim, dropout_embedding, site=sites(),
                                                sparse_grad=sparse_grad, weight_initializer=embedding_init)
            else:
                self.encoder = nn.Embedding(vocab_size, embed_dim, sparse_grad=sparse_grad,
                                            weight_initializer=embedding_init)
            layer_args = dict(i2h_weight_initializer=weight_init, h2h_weight_initializer=weight_init)
            if len(set(sizes)) == 1:  # the chapter's: one Gluon layer holds them all
                self.rnn = _rnn_layer(mode, hidden_size=hidden_dim, num_layers=num_layers, dropout=dropout,
                                      input_size=embed_dim, **layer_args)
            else:  # one Gluon layer each, which the forward pass chains (it never calls self.rnn itself)
                self.rnn = nn.HybridSequential()
                with self.rnn.name_scope():
                    for size, inputs in zip(sizes, (embed_dim,) + sizes[:-1]):
                        self.rnn.add(_rnn_layer(mode, hidden_size=size, num_layers=1, input_size=inputs,
                                                **layer_args))
            if tied:
                # Sharing the embedding's ParameterDict makes Dense find the same 'weight'.
                self.decoder = nn.Dense(vocab_size, in_units=sizes[-1], params=self.encoder.params)
            else:
                self.decoder = nn.Dense(vocab_size, in_units=sizes[-1], weight_initializer=weight_init)

        # one kernel call a layer: where a mask goes between the layers, or where their sizes differ
        self._layer_by_layer = bool(dropout_hidden and num_layers > 1) or len(set(sizes)) > 1
        # fixed from here on: the layout of the packed vector, and the pieces the model takes it in
        self._segments = self._packed_segments()
        self._packed_ranges = self._ranges()
        self._weight_drop = WeightDrop(weight_drop, self._segments, sites) if weight_drop else None
        with self.name_scope():
            self.lock_hidden = None  # between layer l and l + 1: lock_hidden[l]
            if dropout_hidden and num_layers > 1:
                self.lock_hidden = nn.HybridSequential()
                for _ in range(num_layers - 1):
                    self.lock_hidden.add(Dropout(dropout_hidden, axes=(0,), site=sites()))
        self._between = dropout if len(set(sizes)) > 1 and self.lock_hidden is None else 0.0  # --dropout's there
        self._layer_settings = [dict(rnn_kernel_settings(self._rnn_blocks()[0]), num_layers=1, p=0.0,
                                     state_size=size) for size in sizes]

    def _rnn_blocks(self):
        """The Gluon RNN layers: one that holds every layer, or one per layer where their sizes differ."""
        return list(self.rnn) if isinstance(self.rnn, nn.HybridSequential) else [self.rnn]

    def rnn_layer_params(self):
        """For each layer, first to last, its ``(i2h weight, h2h weight, i2h bias, h2h bias)`` Parameters: the
        order a one-layer kernel call reads them in."""
        layers = []
        for block in self._rnn_blocks():
            params = rnn_kernel_params(block)
            for layer in range(rnn_kernel_settings(block)["num_layers"]):
                layers.append(tuple(params["l%d_%s_%s" % (layer, gate, kind)]
                                    for kind in ("weight", "bias") for gate in ("i2h", "h2h")))
        return layers

    def rnn_packed_ranges(self):
        """The ``(start, end)`` pieces of the packed vector the model takes as separate arrays
        (:meth:`use_packed_rnn_params`): the whole, or each layer's where it runs layer by layer."""
        return list(self._packed_ranges)

    def _ranges(self):
        if not self._layer_by_layer:
            return [(0, self._segments[-1][1])]
        spans, start = [], 0
        for layer in self.rnn_layer_params():
            end = start + sum(int(np.prod(p.shape)) for p in layer)
            spans.append((start, end))
            start = end
        return spans

    def _packed_segments(self):
        """``(start, end, is_h2h)`` of each parameter in the RNN kernel's packed vector."""
        segments, start = [], 0
        for param in self.rnn_params_in_kernel_order():
            size = int(np.prod(param.shape))
            segments.append((start, start + size, param.name.endswith("h2h_weight")))
            start += size
        return segments

    def rnn_params_in_kernel_order(self):
        """The RNN's parameters in the order of MXNet's fused RNN kernel's one parameter vector: every layer's
        i2h and h2h weights, then every layer's i2h and h2h biases; run layer by layer, each layer's one-layer
        vector (i2h and h2h weights, i2h and h2h biases) after the other's."""
        if self._layer_by_layer:
            return [param for layer in self.rnn_layer_params() for param in layer]
        params = rnn_kernel_params(self.rnn)
        layers = rnn_kernel_settings(self.rnn)["num_layers"]
        return [params["l%d_%s_%s" % (layer, gate, kind)]
                for kind in ("weight", "bias") for layer in range(layers) for gate in ("i2h", "h2h")]

    def use_packed_rnn_params(self, packed):
        """Feed the RNN kernel ``packed[ctx]`` directly instead of concatenating its parameters every call.

        ``packed[ctx]`` must be a list of 1-D arrays, one per piece of :meth:`rnn_packed_ranges`, together
        holding :meth:`rnn_params_in_kernel_order`'s parameters back to back, each parameter a view into
        them (the fast engine's flat buffer does this), each array marked for autograd with its gradient.
        Gluon's RNN layer copies the parameters into one such vector, and its backward copies the gradient
        out, on every batch; a model run layer by layer takes each layer's piece as it is. Call before the
        first forward pass: a hybridized graph keeps the inputs it was built with.
        """
        self._packed_rnn_params = {ctx: list(arrays) for ctx, arrays in dict(packed).items()}

    def transform_rnn_weights(self, transform):
        """Apply ``transform(F, packed) -> packed`` to the RNN's weights at every forward pass, in both engines:
        the way in for a regulariser on the weights themselves (weight drop).

        ``packed`` is the RNN kernel's one parameter vector, laid out as :meth:`rnn_params_in_kernel_order`
        (every layer's i2h and h2h weights, then every layer's biases; run layer by layer, each layer's
        weights and biases, one layer after the other), shape ``(P,)``; write ``transform``
        with ``F``'s operators, since the fast engine applies it inside its compiled graph, to the flat
        buffer's view. The imperative engine packs the parameters itself for it, as Gluon's RNN layer does.
        The gradient flows through it to the parameters; weight drop, if any, masks its result. Set it before
        the first forward pass.
        """
        self._rnn_weight_transform = transform

    def forward(self, inputs, state):
        logits, state, _ = self._forward_all(inputs, state)
        return logits, state

    def _forward_all(self, inputs, state):
        key = self._dropout_keys.key(inputs.context)
        packed = self._packed_rnn_params.get(inputs.context)
        if packed is None and (self._rnn_weight_transform is not None or self._weight_drop is not None or
                               self._layer_by_layer):
            # What Gluon's RNN layer does inside, done here so that the transform sees it (autograd follows).
            params = self.rnn_params_in_kernel_order()
            packed = [mx.nd.concat(*[p.data(inputs.context).reshape((-1,)) for p, (at, _, _) in zip(params,
                                                                                                 self._segments)
                                     if start <= at < end], dim=0) for start, end in self._packed_ranges]
        extra = [packed, key] if key is not None else [packed] if packed is not None else []  # the inputs given
        if packed is None:
            out = super(RNNModel, self).forward(inputs, state, *extra)
        else:
            with warnings.catch_warnings():
                # the RNN layer's own parameters are not graph inputs on this path: their packed view is
                warnings.filterwarnings("ignore", message="Parameter .* is not used by any computation")
                out = super(RNNModel, self).forward(inputs, state, *extra)
        return out[0], out[1], list(out[2:])

    def hybrid_forward(self, F, inputs, state, packed_rnn_params=None, key=None, **params):
        """``packed_rnn_params``: the RNN's packed parameters, a list of :meth:`rnn_packed_ranges`' pieces, or None
        (the RNN layer's own); ``key``: the forward pass's dropout key for AWD-LSTM's dropouts, or None
        (ptb_lm.dropout)."""
        emb = self.encoder(inputs, key) if isinstance(self.encoder, DroppedEmbedding) else self.encoder(inputs)
        emb = self.drop(emb) if self.lock_input is None else self.lock_input(emb, key)
        if packed_rnn_params is None:
            hidden, state = self.rnn(emb, state)
        else:
            pieces = list(packed_rnn_params)
            if self._rnn_weight_transform is not None:  # it sees the one vector
                whole = self._rnn_weight_transform(F, pieces[0] if len(pieces) == 1 else F.concat(*pieces, dim=0))
                pieces = [F.slice(whole, begin=(start,), end=(end,)) for start, end in self._packed_ranges]
            if self._weight_drop is not None and not self._layer_by_layer:  # else on each layer's piece
                pieces = [self._weight_drop(F, pieces[0], key)]
            hidden, state = self._fused_rnn(F, emb, state, pieces, key)
        dropped = self.drop(hidden) if self.lock_output is None else self.lock_output(hidden, key)
        decoded = self.decoder(dropped.reshape((-1, self.hidden_sizes[-1])))
        auxiliary = {"hidden": hidden, "hidden_dropped": dropped}
        return (decoded, state) + tuple(auxiliary[name] for name in self.kept_auxiliary)

    def _fused_rnn(self, F, emb, state, pieces, key=None):
        """What Gluon's RNN layer does after concatenating its parameters (TNC, unidirectional), on ``pieces``
        (:meth:`rnn_packed_ranges`); layer by layer (locked dropout between the layers, or their sizes differ),
        one kernel call a layer on its own piece and its row of the state (its first columns, the rest kept
        zero: see the module)."""
        if not self._layer_by_layer:
            out = F.RNN(emb, pieces[0], *state, bidirectional=False, state_outputs=True,
                        **rnn_kernel_settings(self.rnn))
            return out[0], list(out[1:])
        x, finals = emb, [[] for _ in state]
        for layer, (size, settings, own, span) in enumerate(zip(self.hidden_sizes, self._layer_settings, pieces,
                                                                self._packed_ranges)):
            if layer > 0 and self.lock_hidden is not None:
                x = self.lock_hidden[layer - 1](x, key)
            elif layer > 0 and self._between:
                x = self.drop(x)
            if self._weight_drop is not None:
                own = self._weight_drop.within(F, own, key, *span)
            own_state = [F.slice(s, begin=(layer, None, None), end=(layer + 1, None, size)) for s in state]
            out = F.RNN(x, own, *own_state, bidirectional=False, state_outputs=True, **settings)
            x = out[0]
            for kept, final, s in zip(finals, out[1:], state):
                if size < self.hidden_dim:
                    final = F.concat(final, F.zeros_like(F.slice(s, begin=(layer, None, size), end=(layer + 1, None,
                                                                                                     None))), dim=2)
                kept.append(final)
        return x, [F.concat(*kept, dim=0) for kept in finals]

    def begin_state(self, batch_size=0, func=None, **kwargs):
        """The RNN's zero state: a list of ``(num_layers, batch_size, hidden_dim)`` arrays (h, and c for lstm)."""
        func = func or mx.nd.zeros
        if not isinstance(self.rnn, nn.HybridSequential):
            return self.rnn.begin_state(batch_size=batch_size, func=func, **kwargs)
        shape = (len(self.hidden_sizes), batch_size, self.hidden_dim)
        return [func(shape=shape, **kwargs) for _ in range(2 if self._mode == "lstm" else 1)]

    def initialize_parameters(self, ctx):
        """Initialise as the chapter does: Xavier unless a weight has its own initialiser."""
        default = mx.init.Uniform(self.init_scale) if self.init_scale else mx.init.Xavier()
        self.collect_params().initialize(default, ctx=ctx)


def _rnn_layer(mode, **args):
    """Gluon's RNN layer of ``mode``."""
    if mode == "rnn_relu":
        return rnn.RNN(activation="relu", **args)
    if mode == "rnn_tanh":
        return rnn.RNN(activation="tanh", **args)
    return rnn.LSTM(**args) if mode == "lstm" else rnn.GRU(**args)


def build_model(config, vocab_size, sparse_grad=False, kernels=False, keyed_dropout=False):
    """Return the model ``config`` describes (not yet initialised), as its family builds it (ptb_lm.families);
    ``kernels``: with ptb_lm's own CPU operators where the family has them (loaded: ptb_lm.kernels);
    ``keyed_dropout``: its dropout masks drawn by ptb_lm's generator, if its family does (ptb_lm.dropout)."""
    return family_of(config.mode).build(config, vocab_size, sparse_grad=sparse_grad, kernels=kernels,
                                        keyed_dropout=keyed_dropout)


# MXNet 1.9.1's wheels index tensors with 32-bit ints: a tensor of 2**31 elements or more cannot be made.
MAX_TENSOR_ELEMENTS = 2 ** 31 - 1
ALL_PARAMETERS = "all parameters (the fast engine's one buffer)"


def tensor_sizes(config, vocab_size):
    """``{name: elements}`` of the largest tensors a training of ``config`` makes: each layer's parameters, the
    fast engine's flat buffer of all of them, and the logits of a batch."""
    sizes = {"embedding": vocab_size * config.embed_dim}
    sizes.update(family_of(config.mode).layer_sizes(config))
    sizes["decoder"] = vocab_size if config.tied else vocab_size * config.output_dim + vocab_size
    sizes[ALL_PARAMETERS] = sum(sizes.values())
    sizes["a batch's logits"] = config.num_steps * max(config.batch_size, config.eval_batch) * vocab_size
    return sizes


def training_bytes(config, vocab_size):
    """About how many bytes a training of ``config`` needs (float32): weights, gradients and a transient copy
    of each while the fast engine builds its buffers; a batch's logits, their softmax and gradient; the layers'
    activations."""
    sizes = tensor_sizes(config, vocab_size)
    tokens = config.num_steps * max(config.batch_size, config.eval_batch)
    per_token = family_of(config.mode).activation_floats_per_token(config)
    activations = 4 * sizes["a batch's logits"] + config.num_layers * tokens * per_token
    return 4 * (3 * sizes[ALL_PARAMETERS] + activations)


def check_fits(config, vocab_size, available=None):
    """Raise ConfigError, with the size and what to change, if a training of ``config`` cannot be made here:
    a tensor past MXNet's 2**31 elements, or more memory than ``available`` bytes (None: not checked)."""
    for name, elements in tensor_sizes(config, vocab_size).items():
        if elements > MAX_TENSOR_ELEMENTS:
            raise ConfigError("the model is too big for MXNet 1.9.1: its %s would hold %.2g elements, and MXNet's "
                              "tensors hold at most 2**31 (%.2g); lower --hidden-dim or --embed-dim (or --batch-size "
                              "and --num-steps)" % (name, elements, 2.0 ** 31), setting="hidden_dim")
    needed = training_bytes(config, vocab_size)
    if available is not None and needed > available:
        raise ConfigError("the model needs about %.1f GB to train (%.1f million parameters) and this process has "
                          "about %.1f GB available: lower --hidden-dim or --embed-dim (or --batch-size), or free memory"
                          % (needed / 1e9, tensor_sizes(config, vocab_size)[ALL_PARAMETERS] / 1e6, available / 1e9),
                          setting="hidden_dim")
