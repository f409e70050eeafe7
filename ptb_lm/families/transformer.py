"""The PyTorch example's family: a decoder-only causal Transformer (``ptb_lm.transformer.TransformerModel``).

    modes      transformer
    state      none: each num_steps window is read on its own
    ONNX       ptb_lm's writer only (MXNet's exporter converts no reshape by -3 or -4, which attention uses)
"""

import math

import numpy as np

from ..errors import ConfigError, arg
from . import ModelFamily
from .graph import finish, interface, onnx
from .rnn import AWD_DROPOUTS


def check_model_size(d_model, heads):
    """Raise ConfigError unless ``heads`` divide the model size and it is even (the sinusoidal positions); the
    config and TransformerModel both ask."""
    if d_model % heads:
        raise ConfigError("heads must divide the model size: %d heads do not divide %d" % (heads, d_model),
                          setting="heads")
    if d_model % 2:
        raise ConfigError("a transformer's model size must be even (sinusoidal positions), got %d" % d_model,
                          setting="hidden_dim")


class TransformerFamily(ModelFamily):
    modes = ("transformer",)
    carries_state = False
    mxnet_exports = False

    def state_names(self, mode):
        return []

    def keyed_dropout(self, config):
        return config.dropout > 0  # 1 + 4 per layer dropouts a pass, whose masks MXNet draws one element at a time

    def check(self, config):
        if config.embed_dim != config.hidden_dim:
            raise ConfigError("a transformer's embedding and hidden sizes are its one model size: give "
                              "--embed-dim and --hidden-dim alike, got %d and %d" % (config.embed_dim,
                                                                                    config.hidden_dim),
                              setting="hidden_dim")
        check_model_size(config.hidden_dim, config.heads)
        if config.hidden_sizes is not None:
            raise ConfigError("%s sizes an RNN's layers one by one; a transformer's layers share its one model "
                              "size (--hidden-dim)" % arg("hidden_sizes"), setting="hidden_sizes")
        for name in AWD_DROPOUTS:
            if getattr(config, name):
                raise ConfigError("%s is AWD-LSTM's, for an RNN mode; a transformer takes --dropout" % arg(name),
                                  setting=name)
        if config.ar:
            raise ConfigError("ar reads an RNN's last outputs after its output dropout, which a transformer does "
                              "not have: use an RNN mode, or --ar 0 (--tar reads what its decoder reads)",
                              setting="ar")

    def build(self, config, vocab_size, sparse_grad=False, kernels=False, keyed_dropout=False):
        from ..transformer import TransformerModel

        return TransformerModel(vocab_size, config.hidden_dim, config.heads, config.feed_forward, config.num_layers,
                                config.dropout, tied=config.tied, init_scale=config.init_scale,
                                sparse_grad=sparse_grad, kernels=kernels, keyed_dropout=keyed_dropout)

    def layer_sizes(self, config):
        hidden, sizes = config.hidden_dim, {}
        for layer in range(config.num_layers):
            sizes["layer %d attention" % layer] = 4 * hidden * hidden + 4 * hidden
            sizes["layer %d feed-forward" % layer] = 2 * hidden * config.feed_forward + config.feed_forward + hidden
            sizes["layer %d norms" % layer] = 4 * hidden
        sizes["final norm"] = 2 * hidden
        return sizes

    def activation_floats_per_token(self, config):
        return 12 * config.hidden_dim + 2 * config.feed_forward + 3 * config.heads * config.num_steps

    def layer_flops_per_token(self, config, context=0):
        """Each layer's four attention projections, the scores and weighted values over ``context`` tokens, and
        its two feed-forward products."""
        hidden = config.hidden_dim
        return config.num_layers * 2 * (4 * hidden * hidden + 2 * context * hidden + 2 * hidden * config.feed_forward)

    def onnx_weights(self, model):
        """``{name: array}`` under the names save_parameters writes, and the position table."""
        from ..runtime.internals import parameters_by_saved_name

        arrays = {name: p.data().asnumpy() for name, p in parameters_by_saved_name(model).items()}
        arrays["positions"] = model.positions.data().asnumpy()
        return arrays

    def onnx_graph(self, config, vocab_size, weights):
        """The layers of ptb_lm.transformer, node for node: LayerNorm written out (opset 13 has none), the causal
        mask from the window's own length, and attention as 4-D batched MatMuls over (batch, heads)."""
        onnx()
        from onnx import TensorProto, helper, numpy_helper

        d, heads = config.hidden_dim, config.heads
        inits, nodes = [], []

        def const(name, array, dtype=np.float32):
            inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
            return name

        def node(op, ins, out, **attrs):
            nodes.append(helper.make_node(op, ins, [out], **attrs))
            return out

        def weight_t(name):  # Dense computes x W^T + b
            return const(name + "_t", np.ascontiguousarray(weights[name].T))

        def layer_norm(x, prefix, out):
            mean = node("ReduceMean", [x], out + "_mean", axes=[-1], keepdims=1)
            centred = node("Sub", [x, mean], out + "_c")
            var = node("ReduceMean", [node("Mul", [centred, centred], out + "_sq")], out + "_var", axes=[-1],
                       keepdims=1)
            std = node("Sqrt", [node("Add", [var, const(out + "_eps", 1e-5)], out + "_ve")], out + "_std")
            scaled = node("Mul", [node("Div", [centred, std], out + "_n"),
                                  const(out + "_g", weights[prefix + "gamma"])], out + "_s")
            return node("Add", [scaled, const(out + "_b", weights[prefix + "beta"])], out)

        const("embedding", weights["encoder.weight"])
        const("positions", weights["positions"])
        x = node("Mul", [node("Gather", ["embedding", "tokens"], "emb", axis=0), const("sqrt_d", math.sqrt(d))],
                 "x_scaled")
        shape = node("Shape", ["tokens"], "tokens_shape")  # [seq_len, batch]
        zero, one = const("zero", [0], np.int64), const("one", [1], np.int64)
        steps = node("Slice", [shape, zero, one], "steps")  # [seq_len]
        x = node("Add", [x, node("Slice", ["positions", zero, steps, zero], "pe")], "x0")
        position = node("Range", [const("zero_s", 0, np.int64), node("Squeeze", [steps, zero], "steps_s"),
                                  const("one_s", 1, np.int64)], "position")
        later = node("Less", [node("Unsqueeze", [position, one], "row"), node("Unsqueeze", [position, zero], "col")],
                     "later")  # true where the column (a key) comes after the row (a query)
        mask = node("Mul", [node("Cast", [later], "later_f", to=TensorProto.FLOAT), const("neg", -1e9)], "mask")
        split_shape = node("Concat", [shape, const("heads_dims", [heads, d // heads], np.int64)], "split_shape", axis=0)
        merge_shape = node("Concat", [shape, const("model_dim", [d], np.int64)], "merge_shape", axis=0)
        for layer in range(config.num_layers):
            p = "layers.%d." % layer
            q_ = "l%d_" % layer
            qkv = node("Add", [node("MatMul", [x, weight_t(p + "attention.in_proj.weight")], q_ + "qkv_w"),
                               const(q_ + "qkv_b", weights[p + "attention.in_proj.bias"])], q_ + "qkv")
            nodes.append(helper.make_node("Split", [qkv, const(q_ + "split", [d, d, d], np.int64)],
                                          [q_ + "q", q_ + "k", q_ + "v"], axis=2))
            heads4 = {}
            for name, perm in (("q", [1, 2, 0, 3]), ("k", [1, 2, 3, 0]), ("v", [1, 2, 0, 3])):
                split = node("Reshape", [q_ + name, split_shape], q_ + name + "_h")  # [T, N, H, d]
                heads4[name] = node("Transpose", [split], q_ + name + "_t", perm=perm)  # q, v [N,H,T,d]; k [N,H,d,T]
            scores = node("Mul", [node("MatMul", [heads4["q"], heads4["k"]], q_ + "qk"),
                                  const(q_ + "scale", 1.0 / math.sqrt(d // heads))], q_ + "scores")
            attention = node("Softmax", [node("Add", [scores, mask], q_ + "masked")], q_ + "weights", axis=-1)
            out = node("Transpose", [node("MatMul", [attention, heads4["v"]], q_ + "att")], q_ + "att_t",
                       perm=[2, 0, 1, 3])
            out = node("Reshape", [out, merge_shape], q_ + "att_m")
            out = node("Add", [node("MatMul", [out, weight_t(p + "attention.out_proj.weight")], q_ + "proj_w"),
                               const(q_ + "proj_b", weights[p + "attention.out_proj.bias"])], q_ + "proj")
            x = layer_norm(node("Add", [x, out], q_ + "res1"), p + "norm1.", q_ + "x1")
            hidden = node("Relu", [node("Add", [node("MatMul", [x, weight_t(p + "ffn1.weight")], q_ + "f1w"),
                                                const(q_ + "f1b", weights[p + "ffn1.bias"])], q_ + "f1")], q_ + "relu")
            ffn = node("Add", [node("MatMul", [hidden, weight_t(p + "ffn2.weight")], q_ + "f2w"),
                               const(q_ + "f2b", weights[p + "ffn2.bias"])], q_ + "f2")
            x = layer_norm(node("Add", [x, ffn], q_ + "res2"), p + "norm2.", q_ + "x2")
        x = layer_norm(x, "norm.", "final")
        decoder_w = weights["decoder.weight"] if "decoder.weight" in weights else weights["encoder.weight"]
        node("Add", [node("MatMul", [x, const("decoder_weight_t", np.ascontiguousarray(decoder_w.T))], "scores"),
                     const("decoder_bias", weights["decoder.bias"])], "logits")
        return finish(nodes, inits, "ptb_lm_transformer", interface([], config.num_layers, d, vocab_size))
