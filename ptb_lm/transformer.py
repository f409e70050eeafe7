"""A decoder-only causal Transformer language model, as a HybridBlock: the PyTorch example's layer, in Gluon.

    ids (seq_len, batch)                                         TN
      -> Embedding x sqrt(d_model) + sinusoidal positions -> Dropout                  (T, N, C)
      -> layers x [ x + Dropout(SelfAttention(x)) -> LayerNorm                       post-norm, as
                    x + Dropout(W2 Dropout(ReLU(W1 x))) -> LayerNorm ]               nn.TransformerEncoderLayer
      -> LayerNorm (nn.Transformer's encoder norm)
      -> Dense -> logits (seq_len * batch, vocab)

It matches the PyTorch word_language_model example's TransformerModel, which is
``nn.Transformer``'s encoder with a causal mask: post-norm layers with a ReLU feed-forward
network, embeddings scaled by sqrt(d_model), sinusoidal positions with sin and cos
interleaved, dropout after the positions, in attention and in each residual branch, and
a final LayerNorm; every matrix starts Xavier-uniform, then the embedding and the
decoder Uniform(0.1) with a zero decoder bias; the attention's biases start at zero and
the feed-forward ones as nn.Linear starts them, U(+-1/sqrt(fan_in)).

Attention, with ``heads`` of ``d = C / heads`` each, is batched matrix products over
``(batch x heads)``, by MXNet's interleaved attention operators (forward and backward, no
split and no transposes of the activations)::

    qkv       x W^T + b, W's rows taken per head   (T, N, 3C): [q_h k_h v_h] for h = 1..H
    scores    q k^T / sqrt(d)                      (N*H, T, T), + the causal mask: -1e9 above the diagonal
    out       softmax(scores) v                    (T, N, C)

Every dropout is :class:`ptb_lm.dropout.Dropout`: with ``kernels``, ptb_lm's counter-based kernel, with one
key per forward pass (:class:`~ptb_lm.dropout.DropoutKeys`) and a site per dropout; without, MXNet's Dropout.

``W`` and ``b`` keep PyTorch's layout (``in_proj``: the q rows, then k, then v), which the
checkpoints and the ONNX writer read; only the product takes their rows in the head order.

Unlike an RNN it carries no state across batches: each ``num_steps`` window is read on
its own, as in the PyTorch example (:attr:`TransformerModel.carries_state` is False;
``begin_state`` is an empty list, so the chapter's loop runs it unchanged).
"""

import math

import numpy as np

from .dropout import Dropout, DropoutKeys, Sites
from .families.auxiliary import AuxiliaryOutputs
from .families.transformer import check_model_size
from .runtime import import_mxnet

mx = import_mxnet()
from mxnet import gluon  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

NEG = -1e9  # added to the scores a token may not see: exp(NEG) is 0 in float32, as exp(-inf)
MAX_LEN = 5000  # positions the sinusoid table holds (the PyTorch example's max_len)


def sinusoids(max_len, d_model):
    """The PyTorch example's positional table, (max_len, 1, d_model): sin at even columns, cos at odd ones."""
    position = np.arange(max_len, dtype=np.float64)[:, None]
    div = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    table = np.zeros((max_len, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(position * div)
    table[:, 1::2] = np.cos(position * div)[:, : d_model // 2]
    return table[:, None, :].astype(np.float32)


class HeadOrderedProjection(nn.Dense):
    """The q, k, v projection ``(T, N, C) -> (T, N, 3C)`` with PyTorch's weight layout (the q rows, then k, then v),
    its outputs in the order MXNet's interleaved attention reads: for each head, its q, k and v."""

    def __init__(self, d_model, heads, **kwargs):
        super(HeadOrderedProjection, self).__init__(3 * d_model, in_units=d_model, flatten=False, **kwargs)
        self._heads, self._d_model = heads, d_model

    def hybrid_forward(self, F, x, weight, bias):
        c = self._d_model
        weight = weight.reshape((3, self._heads, -1, c)).transpose((1, 0, 2, 3)).reshape((-1, c))  # (H, 3, d, C)
        bias = bias.reshape((3, self._heads, -1)).transpose((1, 0, 2)).reshape((-1,))
        return F.FullyConnected(x, weight, bias, num_hidden=self._units, flatten=False)


class SelfAttention(gluon.HybridBlock):
    """Multi-head causal self-attention over (T, N, C) inputs; see the module's docstring for the layouts."""

    def __init__(self, d_model, heads, dropout, sites=None, **kwargs):
        super(SelfAttention, self).__init__(**kwargs)
        self.heads = heads
        sites = sites or Sites()
        with self.name_scope():
            self.in_proj = HeadOrderedProjection(d_model, heads)  # q, k, v in one product
            self.out_proj = nn.Dense(d_model, in_units=d_model, flatten=False)
            self.drop = Dropout(dropout, site=sites())

    def hybrid_forward(self, F, x, key=None):
        qkv = self.in_proj(x)  # (T, N, 3C), per head
        scores = F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=self.heads)  # (N*H, T, T), over sqrt(d)
        position = F.contrib.arange_like(x, axis=0)  # (T,)
        later = F.broadcast_lesser(position.reshape((-1, 1)), position.reshape((1, -1)))  # 1 where col > row
        scores = F.broadcast_add(scores, (later * NEG).expand_dims(0))
        weights = self.drop(F.softmax(scores, axis=-1), key)
        out = F.contrib.interleaved_matmul_selfatt_valatt(qkv, weights, heads=self.heads)  # (T, N, C)
        return self.out_proj(out)


class LayerNorm(nn.LayerNorm):
    """Gluon's LayerNorm over the last axis (eps 1e-5, as nn.LayerNorm's), by ptb_lm's kernel when ``kernel``
    (:mod:`ptb_lm.kernels`; the same math, and the same parameters): MXNet's own backward makes about ten
    passes over the data."""

    def __init__(self, in_channels, kernel=False, **kwargs):
        super(LayerNorm, self).__init__(in_channels=in_channels, epsilon=1e-5, **kwargs)
        self._kernel = kernel

    def hybrid_forward(self, F, data, gamma, beta):
        # MXNet does not tell a loaded operator to add to a gradient rather than write it: accumulating
        # parameters (grad_req 'add') take MXNet's own operator
        if self._kernel and "add" not in (self.gamma.grad_req, self.beta.grad_req):
            return F.ptb_layer_norm(data, gamma, beta, eps=self._epsilon)[0]
        return super(LayerNorm, self).hybrid_forward(F, data, gamma, beta)


class EncoderLayer(gluon.HybridBlock):
    """nn.TransformerEncoderLayer: post-norm, ReLU feed-forward, dropout in each residual branch."""

    def __init__(self, d_model, heads, ffn_dim, dropout, kernels=False, sites=None, **kwargs):
        super(EncoderLayer, self).__init__(**kwargs)
        sites = sites or Sites()
        with self.name_scope():
            self.attention = SelfAttention(d_model, heads, dropout, sites)
            self.norm1 = LayerNorm(d_model, kernels)
            self.norm2 = LayerNorm(d_model, kernels)
            # nn.Linear's own bias initialiser, U(+-1/sqrt(fan_in)), which nn.Transformer leaves as it is
            self.ffn1 = nn.Dense(ffn_dim, in_units=d_model, flatten=False, activation="relu",
                                 bias_initializer=mx.init.Uniform(1 / math.sqrt(d_model)))
            self.ffn2 = nn.Dense(d_model, in_units=ffn_dim, flatten=False,
                                 bias_initializer=mx.init.Uniform(1 / math.sqrt(ffn_dim)))
            self.drop1, self.drop_ffn, self.drop2 = [Dropout(dropout, site=sites()) for _ in range(3)]

    def hybrid_forward(self, F, x, key=None):
        """``key``: the forward pass's dropout key, or None for MXNet's Dropout (:mod:`ptb_lm.dropout`)."""
        x = self.norm1(x + self.drop1(self.attention(x, key), key))
        return self.norm2(x + self.drop2(self.ffn2(self.drop_ffn(self.ffn1(x), key)), key))


class TransformerModel(AuxiliaryOutputs, gluon.HybridBlock):
    """The causal Transformer LM; call ``model(inputs, state)`` with ``inputs`` (T, N) and ``state`` from
    :meth:`begin_state` (an empty list); returns ``(logits (T*N, vocab), state)`` as :class:`RNNModel` does."""

    carries_state = False
    auxiliary = ("hidden",)  # the last layer's normalised outputs (T, N, d_model), what the decoder reads

    def __init__(self, vocab_size, d_model, heads, ffn_dim, num_layers, dropout=0.2, tied=False, init_scale=None,
                 sparse_grad=False, kernels=False, keyed_dropout=None, **kwargs):
        super(TransformerModel, self).__init__(**kwargs)
        check_model_size(d_model, heads)
        self.d_model = d_model
        self.init_scale = init_scale
        self.hidden_dim = d_model
        # no key at dropout 0: every dropout is then the identity, and a graph input nothing reads is warned of
        self._dropout_keys = DropoutKeys((kernels if keyed_dropout is None else keyed_dropout) and dropout > 0)
        sites = Sites()
        with self.name_scope():
            self.encoder = nn.Embedding(vocab_size, d_model, sparse_grad=sparse_grad,
                                        weight_initializer=mx.init.Uniform(init_scale or 0.1))
            self.positions = self.params.get_constant("positions", sinusoids(MAX_LEN, d_model))
            self.drop = Dropout(dropout, site=sites())
            self.layers = nn.HybridSequential()
            for _ in range(num_layers):
                self.layers.add(EncoderLayer(d_model, heads, ffn_dim, dropout, kernels, sites))
            self.norm = LayerNorm(d_model, kernels)
            if tied:
                self.decoder = nn.Dense(vocab_size, in_units=d_model, flatten=False, params=self.encoder.params)
            else:
                self.decoder = nn.Dense(vocab_size, in_units=d_model, flatten=False,
                                        weight_initializer=mx.init.Uniform(init_scale or 0.1))

    def forward(self, inputs, state):
        logits, state, _ = self._forward_all(inputs, state)
        return logits, state

    def _forward_all(self, inputs, state):
        key = self._dropout_keys.key(inputs.context)
        out = super(TransformerModel, self).forward(inputs) if key is None else \
            super(TransformerModel, self).forward(inputs, key)
        if not self.kept_auxiliary:
            return out, state, []
        return out[0], state, list(out[1:])

    def hybrid_forward(self, F, inputs, key=None, positions=None):
        x = self.encoder(inputs) * math.sqrt(self.d_model)  # (T, N, C)
        x = F.broadcast_add(x, F.slice_like(positions, x, axes=(0,)))
        x = self.drop(x, key)
        for layer in self.layers:
            x = layer(x, key)
        x = self.norm(x)
        logits = self.decoder(x).reshape((-3, 0))  # (T*N, vocab)
        if not self.kept_auxiliary:
            return logits
        return (logits,) + tuple({"hidden": x}[name] for name in self.kept_auxiliary)

    def begin_state(self, *args, **kwargs):
        """No state: each window is read on its own."""
        return []

    def initialize_parameters(self, ctx):
        """As the PyTorch example: Xavier-uniform for every matrix (nn.Transformer's _reset_parameters), then
        the embedding and the decoder Uniform(0.1) (their own initialisers), zero biases, unit LayerNorm gains."""
        default = mx.init.Uniform(self.init_scale) if self.init_scale else mx.init.Xavier(rnd_type="uniform",
                                                                                           factor_type="avg",
                                                                                           magnitude=3)
        self.collect_params().initialize(default, ctx=ctx)
