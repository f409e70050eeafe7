"""The chapter's family: an embedding, stacked RNN layers of one cell, a dense decoder (``ptb_lm.model.RNNModel``).

    modes      rnn_relu, rnn_tanh (Elman cells), lstm, gru
    state      h0 (and c0 for lstm), each (num_layers, batch, hidden): carried from window to window; where the
               layers' sizes differ (hidden_sizes), hidden is the widest and a narrower layer's row is zero-padded
    ONNX       one RNN, LSTM or GRU node a layer, the gates reordered from MXNet's to ONNX's
"""

import numpy as np

from . import ModelFamily
from ..errors import ConfigError, arg
from .graph import finish, interface, onnx

# AWD-LSTM's dropouts (Merity et al. 2017), which the chapter does not have; each off at 0
AWD_DROPOUTS = ("dropout_input", "dropout_hidden", "dropout_output", "dropout_embedding", "weight_drop")

# Gate blocks a layer's weights stack, per cell
GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
ONNX_OP = {"rnn_relu": "RNN", "rnn_tanh": "RNN", "lstm": "LSTM", "gru": "GRU"}
# MXNet's gate blocks, in the order ONNX wants them
GATE_ORDER = {"rnn_relu": [0], "rnn_tanh": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _reorder(array, mode, hidden):
    """MXNet's stacked gate blocks (gates * hidden rows) in ONNX's order."""
    blocks = [array[g * hidden:(g + 1) * hidden] for g in range(len(GATE_ORDER[mode]))]
    return np.concatenate([blocks[g] for g in GATE_ORDER[mode]], axis=0)


class RNNFamily(ModelFamily):
    modes = tuple(GATES)
    carries_state = True
    mxnet_exports = True  # at 1 or 2 layers; the export checks it and writes its own graph otherwise

    def state_names(self, mode):
        return ["h0", "c0"] if mode == "lstm" else ["h0"]

    def keyed_dropout(self, config):
        # AWD-LSTM's dropouts only: the chapter's masks (--dropout), drawn by MXNet's generator under the
        # chapter's seed, are part of the chapter's math that the per-batch match with its code measures
        return any(getattr(config, name) for name in AWD_DROPOUTS)

    def check(self, config):
        locked = [name for name in ("dropout_input", "dropout_hidden", "dropout_output") if getattr(config, name)]
        if locked and config.dropout:
            raise ConfigError("%s draws one mask per sequence where --dropout draws one per element, at the same "
                              "place: give --dropout 0 with it" % arg(locked[0]), setting=locked[0])

    def build(self, config, vocab_size, sparse_grad=False, kernels=False, keyed_dropout=False):
        # its products are oneDNN's already
        from ..model import RNNModel

        return RNNModel(config.mode, vocab_size, config.embed_dim, config.hidden_dim, config.num_layers,
                        config.dropout, tied=config.tied, init_scale=config.init_scale, sparse_grad=sparse_grad,
                        dropout_input=config.dropout_input, dropout_output=config.dropout_output,
                        dropout_embedding=config.dropout_embedding, weight_drop=config.weight_drop,
                        dropout_hidden=config.dropout_hidden, hidden_sizes=config.hidden_sizes,
                        keyed_dropout=keyed_dropout)

    def layer_sizes(self, config):
        gates, sizes = GATES[config.mode], {}
        for layer, (inputs, hidden) in enumerate(_layer_shapes(config)):
            sizes["layer %d input weights" % layer] = gates * hidden * inputs
            sizes["layer %d recurrent weights" % layer] = gates * hidden * hidden
            sizes["layer %d biases" % layer] = 2 * gates * hidden
        return sizes

    def activation_floats_per_token(self, config):
        return 6 * GATES[config.mode] * sum(config.layer_dims) // config.num_layers  # per layer, on average

    def layer_flops_per_token(self, config, context=0):
        """Each layer does ``gates`` matrix-vector products with its input and its state."""
        gates = GATES[config.mode]
        return sum(2 * gates * hidden * (inputs + hidden) for inputs, hidden in _layer_shapes(config))

    def onnx_weights(self, model):
        """Embedding, per layer (i2h W, h2h W, i2h b, h2h b), decoder W and b."""
        per_layer = [tuple(param.data().asnumpy() for param in layer) for layer in model.rnn_layer_params()]
        return (model.encoder.weight.data().asnumpy(), per_layer, model.decoder.weight.data().asnumpy(),
                model.decoder.bias.data().asnumpy())

    def onnx_graph(self, config, vocab_size, weights):
        onnx()
        from onnx import helper, numpy_helper

        mode, width, layers = config.mode, config.hidden_dim, config.num_layers
        embedding, per_layer, decoder_w, decoder_b = weights
        inits = [numpy_helper.from_array(embedding.astype(np.float32), "embedding"),
                 numpy_helper.from_array(np.ascontiguousarray(decoder_w.T.astype(np.float32)), "decoder_weight_t"),
                 numpy_helper.from_array(decoder_b.astype(np.float32), "decoder_bias"),
                 numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1")]
        nodes = [helper.make_node("Gather", ["embedding", "tokens"], ["x0"], axis=0)]
        outs_h, outs_c = [], []
        for layer, ((w, r, wb, rb), hidden) in enumerate(zip(per_layer, config.layer_dims)):
            prefix = "l%d_" % layer
            inits += [numpy_helper.from_array(_reorder(w, mode, hidden)[None].astype(np.float32), prefix + "W"),
                      numpy_helper.from_array(_reorder(r, mode, hidden)[None].astype(np.float32), prefix + "R"),
                      numpy_helper.from_array(np.concatenate([_reorder(wb, mode, hidden),
                                                              _reorder(rb, mode, hidden)])[None].astype(np.float32),
                                              prefix + "B"),
                      # the layer's row of the state, its first ``hidden`` columns (the rest is padding)
                      numpy_helper.from_array(np.array([layer, 0], dtype=np.int64), prefix + "start"),
                      numpy_helper.from_array(np.array([layer + 1, hidden], dtype=np.int64), prefix + "end"),
                      numpy_helper.from_array(np.array([0, 2], dtype=np.int64), prefix + "axes"),
                      numpy_helper.from_array(np.array([0, 0, 0, 0, 0, width - hidden], dtype=np.int64),
                                              prefix + "pads")]
            axes = prefix + "axes"
            nodes.append(helper.make_node("Slice", ["h0", prefix + "start", prefix + "end", axes], [prefix + "h0"]))
            ins = ["x%d" % layer, prefix + "W", prefix + "R", prefix + "B", "", prefix + "h0"]
            outs = [prefix + "Y", prefix + "h"]
            attrs = dict(hidden_size=hidden)
            if mode == "lstm":
                nodes.append(helper.make_node("Slice", ["c0", prefix + "start", prefix + "end", axes],
                                              [prefix + "c0"]))
                ins.append(prefix + "c0")
                outs.append(prefix + "c")
            elif mode == "gru":
                attrs["linear_before_reset"] = 1
            else:
                attrs["activations"] = ["Relu" if mode == "rnn_relu" else "Tanh"]
            nodes.append(helper.make_node(ONNX_OP[mode], ins, outs, name=prefix + mode, **attrs))
            nodes.append(helper.make_node("Squeeze", [prefix + "Y", "axis_1"], ["x%d" % (layer + 1)]))  # [T, 1, N, H]
            for final, kept in zip(outs[1:], (outs_h, outs_c)):
                if hidden < width:  # back to the state's width, zeros after the layer's own columns
                    nodes.append(helper.make_node("Pad", [final, prefix + "pads"], [final + "_padded"]))
                    final += "_padded"
                kept.append(final)
        nodes.append(helper.make_node("Concat", outs_h, ["hn"], axis=0))
        if mode == "lstm":
            nodes.append(helper.make_node("Concat", outs_c, ["cn"], axis=0))
        nodes += [helper.make_node("MatMul", ["x%d" % layers, "decoder_weight_t"], ["scores"]),
                  helper.make_node("Add", ["scores", "decoder_bias"], ["logits"])]
        return finish(nodes, inits, "ptb_lm_%s" % mode,
                      interface(self.state_names(mode), layers, width, vocab_size))


def _layer_shapes(config):
    """``(input size, size)`` of each RNN layer of ``config``."""
    sizes = config.layer_dims
    return list(zip((config.embed_dim,) + tuple(sizes[:-1]), sizes))

