"""A trained model out of MXNet: an ONNX graph of its evaluation pass, checked in ONNX Runtime (``ptb-lm-export``).

    DIR/model.onnx   the evaluation graph (no dropout), opset 13:
                       tokens int64 [seq_len, batch], h0 float32 [num_layers, batch, hidden] (and c0 for lstm)
                       -> logits float32 [seq_len, batch, vocab], hn (and cn): both dimensions dynamic,
                       so a client carries the state across windows as the chapter's evaluation does;
                       a transformer has tokens -> logits only (it reads each window on its own)
    DIR/vocab.txt    one word a line, the id being the line number (as checkpoints hold it)
    DIR/model.json   the mode and sizes, the interface, the sha256 of model.onnx, the checkpoint it came
                     from, and the test perplexity ONNX Runtime measured on export

Two routes write the graph; model.json names the one taken:

* ``mxnet``: MXNet's own exporter (``mx.onnx.export_model``) on the hybridized evaluation
  block, with dynamic axes, and the model's opset set to 13, the nodes it writes (it
  labels them with onnx's newest opset, which ONNX Runtime then reads differently).
  It converts at most 2 layers of the fused RNN.
* ``ptb_lm``: the graph written here from the weights with onnx's helpers: Gather,
  one ONNX RNN/GRU/LSTM node a layer, MatMul and Add. Any number of layers; the gates
  reordered from MXNet's to ONNX's (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,n, with
  ``linear_before_reset``, as MXNet's GRU computes its candidate). The transformer is
  written node for node too (:func:`build_transformer_graph`): MXNet's exporter cannot
  convert the reshapes its attention uses.

``route="auto"`` tries MXNet's exporter and keeps its graph only if ONNX Runtime loads it
and matches MXNet on a probe at two shapes; otherwise it writes its own. Either way the
export is checked against MXNet before it is kept, and written into a staging folder
renamed into place, so that a killed export leaves nothing that looks complete.
"""

import json
import logging
import math
import os

import numpy as np

from .checkpoint import Checkpoint
from .errors import ConfigError, RunFailure, SaveDirError
from .files import sha256_of, staged_folder
from .runtime import error_summary, import_mxnet
from .runtime.internals import rnn_kernel_params, rnn_kernel_settings

mx = import_mxnet()
from mxnet import gluon  # noqa: E402

logger = logging.getLogger(__name__)

FORMAT = "ptb-lm-onnx"
FORMAT_VERSION = 1
OPSET = 13
PRODUCER = "ptb_lm"
ROUTES = ("auto", "mxnet", "ptb_lm")
# Agreement an export must show with MXNet before it is kept (float32, relative to the largest logit).
TOLERANCE = 1e-5


def state_count(mode):
    """How many state arrays the mode carries across windows: 2 for an LSTM, 1 for an RNN or GRU, 0 for the
    transformer, which reads each window on its own."""
    return {"lstm": 2, "transformer": 0}.get(mode, 1)


def interface(mode, num_layers, hidden, vocab):
    """The graph's inputs and outputs: ``[(name, type, shape)]`` each, shapes with named dynamic dimensions."""
    state = ["num_layers=%d" % num_layers, "batch", "hidden=%d" % hidden]
    inputs = [("tokens", "int64", ["seq_len", "batch"])]
    outputs = [("logits", "float32", ["seq_len", "batch", "vocab=%d" % vocab])]
    for name_in, name_out in (("h0", "hn"), ("c0", "cn"))[:state_count(mode)]:
        inputs.append((name_in, "float32", state))
        outputs.append((name_out, "float32", state))
    return inputs, outputs


class EvaluationGraph(gluon.HybridBlock):
    """The model's evaluation pass with the interface above: no dropout, logits as [seq_len, batch, vocab].

    It shares the model's parameters; its decoder applies them to the 3-D RNN output
    (``flatten=False``), so that no reshape needs the dynamic sizes.
    """

    def __init__(self, model, **kwargs):
        super(EvaluationGraph, self).__init__(**kwargs)
        with self.name_scope():
            self.encoder = model.encoder
            self.rnn = model.rnn
            self.decoder = gluon.nn.Dense(model.decoder.weight.shape[0], in_units=model.decoder.weight.shape[1],
                                          flatten=False, params=model.decoder.params)

    def hybrid_forward(self, F, tokens, *state):
        output, new_state = self.rnn(self.encoder(tokens), list(state))
        return (self.decoder(output),) + tuple(new_state)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError("exporting needs the onnx package: pip install -e '.[export]'") from None
    return onnx


# --- the ptb_lm route: the graph from the weights ------------------------------------------------

ONNX_OP = {"rnn_relu": "RNN", "rnn_tanh": "RNN", "lstm": "LSTM", "gru": "GRU"}
# MXNet's gate blocks, in the order ONNX wants them
GATE_ORDER = {"rnn_relu": [0], "rnn_tanh": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _reorder(array, mode, hidden):
    """MXNet's stacked gate blocks (gates * hidden rows) in ONNX's order."""
    blocks = [array[g * hidden:(g + 1) * hidden] for g in range(len(GATE_ORDER[mode]))]
    return np.concatenate([blocks[g] for g in GATE_ORDER[mode]], axis=0)


def weights_of(model):
    """The model's weights as numpy arrays: embedding, per layer (i2h W, h2h W, i2h b, h2h b), decoder W and b;
    for a transformer, ``{name: array}`` under the names save_parameters writes (and the position table)."""
    if not getattr(model, "carries_state", True):
        from .runtime.internals import parameters_by_saved_name

        arrays = {name: p.data().asnumpy() for name, p in parameters_by_saved_name(model).items()}
        arrays["positions"] = model.positions.data().asnumpy()
        return arrays
    params = rnn_kernel_params(model.rnn)
    layers = rnn_kernel_settings(model.rnn)["num_layers"]
    per_layer = [tuple(params["l%d_%s_%s" % (layer, gate, kind)].data().asnumpy()
                       for kind, gate in (("weight", "i2h"), ("weight", "h2h"), ("bias", "i2h"), ("bias", "h2h")))
                 for layer in range(layers)]
    return (model.encoder.weight.data().asnumpy(), per_layer, model.decoder.weight.data().asnumpy(),
            model.decoder.bias.data().asnumpy())


def build_graph(config, vocab_size, weights):
    """The ONNX model (opset 13) of ``config``'s evaluation pass, from ``weights`` (see :func:`weights_of`)."""
    if config.mode == "transformer":
        return build_transformer_graph(config, vocab_size, weights)
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    mode, hidden, layers = config.mode, config.hidden_dim, config.num_layers
    embedding, per_layer, decoder_w, decoder_b = weights
    inits = [numpy_helper.from_array(embedding.astype(np.float32), "embedding"),
             numpy_helper.from_array(np.ascontiguousarray(decoder_w.T.astype(np.float32)), "decoder_weight_t"),
             numpy_helper.from_array(decoder_b.astype(np.float32), "decoder_bias"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1")]
    nodes = [helper.make_node("Gather", ["embedding", "tokens"], ["x0"], axis=0)]
    outs_h, outs_c = [], []
    for layer, (w, r, wb, rb) in enumerate(per_layer):
        prefix = "l%d_" % layer
        inits += [numpy_helper.from_array(_reorder(w, mode, hidden)[None].astype(np.float32), prefix + "W"),
                  numpy_helper.from_array(_reorder(r, mode, hidden)[None].astype(np.float32), prefix + "R"),
                  numpy_helper.from_array(np.concatenate([_reorder(wb, mode, hidden), _reorder(rb, mode, hidden)])[None]
                                          .astype(np.float32), prefix + "B"),
                  numpy_helper.from_array(np.array([layer], dtype=np.int64), prefix + "start"),
                  numpy_helper.from_array(np.array([layer + 1], dtype=np.int64), prefix + "end")]
        axis0 = prefix + "axis0"
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), axis0))
        nodes.append(helper.make_node("Slice", ["h0", prefix + "start", prefix + "end", axis0], [prefix + "h0"]))
        ins = ["x%d" % layer, prefix + "W", prefix + "R", prefix + "B", "", prefix + "h0"]
        outs = [prefix + "Y", prefix + "hn"]
        attrs = dict(hidden_size=hidden)
        if mode == "lstm":
            nodes.append(helper.make_node("Slice", ["c0", prefix + "start", prefix + "end", axis0], [prefix + "c0"]))
            ins.append(prefix + "c0")
            outs.append(prefix + "cn")
            outs_c.append(prefix + "cn")
        elif mode == "gru":
            attrs["linear_before_reset"] = 1
        else:
            attrs["activations"] = ["Relu" if mode == "rnn_relu" else "Tanh"]
        nodes.append(helper.make_node(ONNX_OP[mode], ins, outs, name=prefix + mode, **attrs))
        nodes.append(helper.make_node("Squeeze", [prefix + "Y", "axis_1"], ["x%d" % (layer + 1)]))  # [T, 1, N, H]
        outs_h.append(prefix + "hn")
    nodes.append(helper.make_node("Concat", outs_h, ["hn"], axis=0))
    if mode == "lstm":
        nodes.append(helper.make_node("Concat", outs_c, ["cn"], axis=0))
    nodes += [helper.make_node("MatMul", ["x%d" % layers, "decoder_weight_t"], ["scores"]),
              helper.make_node("Add", ["scores", "decoder_bias"], ["logits"])]
    types = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}
    inputs, outputs = interface(mode, layers, hidden, vocab_size)

    def value(name, kind, shape):
        dims = [int(d.split("=")[1]) if "=" in d else d for d in shape]
        return helper.make_tensor_value_info(name, types[kind], dims)

    graph = helper.make_graph(nodes, "ptb_lm_%s" % mode, [value(*i) for i in inputs], [value(*o) for o in outputs],
                              initializer=inits)
    model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnx 1.15 writes for opset 13 readers, ONNX Runtime among them
    onnx.checker.check_model(model)
    return model


def build_transformer_graph(config, vocab_size, weights):
    """The transformer's evaluation pass as ONNX (opset 13), from ``weights`` (:func:`weights_of`'s dict):
    the layers of ptb_lm.transformer, node for node, LayerNorm written out (opset 13 has none), the causal
    mask from the window's own length, and attention as 4-D batched MatMuls over (batch, heads)."""
    onnx = _onnx()
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
        var = node("ReduceMean", [node("Mul", [centred, centred], out + "_sq")], out + "_var", axes=[-1], keepdims=1)
        std = node("Sqrt", [node("Add", [var, const(out + "_eps", 1e-5)], out + "_ve")], out + "_std")
        scaled = node("Mul", [node("Div", [centred, std], out + "_n"), const(out + "_g", weights[prefix + "gamma"])],
                      out + "_s")
        return node("Add", [scaled, const(out + "_b", weights[prefix + "beta"])], out)

    const("embedding", weights["encoder.weight"])
    const("positions", weights["positions"])
    x = node("Mul", [node("Gather", ["embedding", "tokens"], "emb", axis=0), const("sqrt_d", math.sqrt(d))], "x_scaled")
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
        out = node("Transpose", [node("MatMul", [attention, heads4["v"]], q_ + "att")], q_ + "att_t", perm=[2, 0, 1, 3])
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
    inputs, outputs = interface(config.mode, config.num_layers, d, vocab_size)
    graph = helper.make_graph(nodes, "ptb_lm_transformer",
                              [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["seq_len", "batch"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["seq_len", "batch", vocab_size])],
                              initializer=inits)
    model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- the mxnet route -----------------------------------------------------------------------------

def mxnet_graph(model, config, vocab_size, folder):
    """The ONNX model MXNet's exporter writes for ``model``'s evaluation pass, with dynamic axes and opset 13;
    raises RuntimeError where it cannot."""
    onnx = _onnx()
    block = EvaluationGraph(model)
    block.hybridize()
    layers, hidden = config.num_layers, config.hidden_dim
    states = state_count(config.mode)
    tokens = mx.nd.zeros((3, 2))
    block(tokens, *[mx.nd.zeros((layers, 2, hidden)) for _ in range(states)])
    prefix = os.path.join(folder, "mxnet")
    block.export(prefix)
    shapes = [(3, 2)] + [(layers, 2, hidden)] * states
    dynamic = [(None, None)] + [(layers, None, hidden)] * states
    path = os.path.join(folder, "mxnet.onnx")
    try:
        mx.onnx.export_model(prefix + "-symbol.json", prefix + "-0000.params", shapes,
                             [np.int64] + [np.float32] * states, path, dynamic=True, dynamic_input_shapes=dynamic)
    except Exception as err:  # noqa: BLE001 - what MXNet's exporter cannot do sends the export the other way
        raise RuntimeError("MXNet's exporter: %s" % error_summary(err)) from None
    exported = onnx.load(path)
    for opset in exported.opset_import:  # it labels the graph with onnx's newest opset, yet writes opset-13 nodes
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    # It lists the weights among the graph's inputs too, which ONNX Runtime then may not fold as constants (and
    # warns about, once a weight): the graph's inputs are the interface's alone.
    weights = {w.name for w in exported.graph.initializer}
    kept = [value for value in exported.graph.input if value.name not in weights]
    del exported.graph.input[:]
    exported.graph.input.extend(kept)
    names = [n for n, _, _ in interface(config.mode, layers, hidden, vocab_size)[0]]
    for k, name in enumerate(names):  # Gluon's export names a block's inputs data0, data1, ...
        _rename(exported.graph, "data%d" % k, name)
    # Its outputs come in an order of its own: name each by the MXNet output it equals on a probe.
    out_names = [n for n, _, _ in interface(config.mode, layers, hidden, vocab_size)[1]]
    rng = np.random.RandomState(1)
    tokens = rng.randint(0, vocab_size, size=(3, 2)).astype(np.int64)
    state = [rng.uniform(-0.5, 0.5, (layers, 2, hidden)).astype(np.float32) for _ in range(states)]
    theirs = mxnet_outputs(model, config, tokens, state)
    ours = runtime_for(exported).run(None, dict(zip(names, [tokens] + state)))
    renames = {}
    for value, got in zip(exported.graph.output, ours):
        matches = [name for name, want in zip(out_names, theirs)
                   if got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1)]
        if len(matches) != 1:
            raise RuntimeError("MXNet's exporter: output %s matches %s of MXNet's outputs" % (value.name,
                                                                                           matches or "none"))
        renames[value.name] = matches[0]
    temporary = {old: "ptb_lm_tmp_%d" % k for k, old in enumerate(renames)}
    for old, tmp in temporary.items():
        _rename(exported.graph, old, tmp)
    for old, tmp in temporary.items():
        _rename(exported.graph, tmp, renames[old])
    # Its inputs and outputs carry the interface's shapes (it leaves every dimension dynamic).
    inputs, outputs = interface(config.mode, layers, hidden, vocab_size)
    for values, described in ((exported.graph.input, inputs), (exported.graph.output, outputs)):
        by_name = {v.name: v for v in values}
        for name, _, shape in described:
            dims = by_name[name].type.tensor_type.shape.dim
            for dim, want in zip(dims, shape):
                if "=" in want:
                    dim.dim_value = int(want.split("=")[1])
                else:
                    dim.dim_param = want
    order = {name: k for k, name in enumerate(out_names)}
    ordered = sorted(exported.graph.output, key=lambda v: order[v.name])
    del exported.graph.output[:]
    exported.graph.output.extend(ordered)
    exported.producer_name = PRODUCER
    return exported


def _rename(graph, old, new):
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


# --- checking an export against MXNet ------------------------------------------------------------

def mxnet_outputs(model, config, tokens, state):
    """MXNet's logits [seq_len, batch, vocab] and final state for ``tokens`` [seq_len, batch] from ``state``."""
    out, new_state = model(mx.nd.array(tokens, dtype="int32"), [mx.nd.array(s) for s in state])
    return [out.asnumpy().reshape(tokens.shape + (-1,))] + [s.asnumpy() for s in new_state]


def runtime_for(onnx_model):
    """ONNX Runtime loaded with an in-memory model, on the CPU."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("exporting needs onnxruntime to check the graph: pip install -e '.[export]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def disagreement(runtime, model, config, rng, shapes=((3, 2), (7, 3))):
    """The largest relative gap between ONNX Runtime and MXNet over ``shapes``, state carried over two windows."""
    vocab = model.decoder.weight.shape[0]
    states = state_count(config.mode)
    worst = 0.0
    for seq_len, batch in shapes:
        state = [rng.uniform(-0.5, 0.5, (config.num_layers, batch, config.hidden_dim)).astype(np.float32)
                 for _ in range(states)]
        ours_state, theirs_state = state, state
        for _ in range(2):
            tokens = rng.randint(0, vocab, size=(seq_len, batch)).astype(np.int64)
            theirs = mxnet_outputs(model, config, tokens, theirs_state)
            feed = dict(zip(["tokens", "h0", "c0"], [tokens] + list(ours_state)))
            ours = runtime.run(None, feed)
            for a, b in zip(ours, theirs):
                worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
            ours_state, theirs_state = ours[1:], theirs[1:]
    return worst


# --- the export ----------------------------------------------------------------------------------

def export_onnx(checkpoint, out, route="auto", force=False, data=None, test_batch_size=None):
    """Export the checkpoint (a save dir, a checkpoint folder) to ``out``; return model.json's content.

    The test perplexity is measured with ONNX Runtime on the test split of ``data``, else of the data
    the run was trained on, at ``test_batch_size`` (default: the run's evaluation batch size). With
    no data to be found (nothing is downloaded), the model is exported all the same, and
    model.json's ``test`` says why no perplexity was measured.
    """
    if route not in ROUTES:
        raise ConfigError("unknown route %r: choose one of %s" % (route, ", ".join(ROUTES)), setting="route")
    _onnx()  # both packages first, so that a missing one is the only thing said
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("exporting needs onnxruntime to check the graph: pip install -e '.[export]'") from None
    source = Checkpoint(checkpoint)  # verified against its sha256
    config, vocab = source.config, source.dictionary
    if os.path.lexists(out) and not force:
        if not (os.path.isdir(out) and not os.listdir(out)):  # an empty folder may be written into
            raise SaveDirError("--out %s already exists%s: give another folder, or --force to replace it"
                               % (out, " and holds an export" if os.path.isfile(os.path.join(out, "model.json"))
                                  else ""))
    model = source.build_model(mx.cpu())
    model.hybridize()
    rng = np.random.RandomState(0)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        # --force, or an empty folder: replaced only once the whole export is written and checked
        with staged_folder(out, prefix=".export-") as staging:
            graph, taken, why = _graph(model, config, len(vocab), route, staging, rng)
            runtime = runtime_for(graph)
            gap = disagreement(runtime, model, config, rng)
            if not gap <= TOLERANCE:
                raise RunFailure("the ONNX graph (route %s) differs from MXNet by %.2g relative, above %.0e: not "
                                 "kept" % (taken, gap, TOLERANCE))
            for name in ("mxnet-symbol.json", "mxnet-0000.params", "mxnet.onnx"):
                if os.path.exists(os.path.join(staging, name)):
                    os.remove(os.path.join(staging, name))
            onnx_path = os.path.join(staging, "model.onnx")
            with open(onnx_path, "wb") as f:
                f.write(graph.SerializeToString())
            vocab.save(os.path.join(staging, "vocab.txt"))
            test = _test_perplexity(onnx_path, vocab, config, data, test_batch_size)
            inputs, outputs = interface(config.mode, config.num_layers, config.hidden_dim, len(vocab))
            described = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "producer": PRODUCER, "route": taken,
                "route_reason": why, "opset": OPSET, "mode": config.mode, "vocab_size": len(vocab),
                "embed_dim": config.embed_dim, "hidden_dim": config.hidden_dim, "num_layers": config.num_layers,
                "tied": config.tied, "num_steps": config.num_steps, "eval_batch_size": config.eval_batch,
                "carries_state": state_count(config.mode) > 0, "heads": config.heads,
                "ffn_dim": config.feed_forward,
                "inputs": [dict(name=n, type=t, shape=s) for n, t, s in inputs],
                "outputs": [dict(name=n, type=t, shape=s) for n, t, s in outputs],
                "model_onnx_sha256": sha256_of(onnx_path),
                "checkpoint": {"folder": os.path.abspath(source.folder), "epoch": source.epoch,
                               "model_params_sha256": source.state["model_params_sha256"]},
                "agreement_with_mxnet": gap, "test": test,
            }
            with open(os.path.join(staging, "model.json"), "w", encoding="utf-8") as f:
                json.dump(described, f, indent=2)
    except OSError as err:
        raise SaveDirError("cannot write the export in %s (%s); nothing was kept" % (out, err.strerror or err)) \
            from None
    if "skipped" in test:
        measured = "no test perplexity was measured (%s)" % test["skipped"]
    else:
        measured = "test perplexity %.2f at batch size %d, on the test split of %s" % (
            test["perplexity"], test["batch_size"], test["data"])
    logger.info("exported %s (epoch %d, %s) to %s by the %s route: ONNX Runtime matches MXNet within %.1g; %s",
                source.folder, source.epoch, config.mode, out, taken, gap, measured)
    return described


def _graph(model, config, vocab_size, route, staging, rng):
    """``(onnx model, route taken, why)`` for ``route``."""
    if config.mode == "transformer":  # MXNet's exporter cannot convert the attention's reshapes (-3, -4)
        if route == "mxnet":
            raise RunFailure("MXNet's exporter cannot export the transformer (it converts no reshape by -3 or -4, "
                             "which the attention uses): use --route ptb_lm")
        return build_graph(config, vocab_size, weights_of(model)), "ptb_lm", "MXNet's exporter cannot convert the " \
            "attention's reshapes"
    if route in ("auto", "mxnet"):
        try:
            graph = mxnet_graph(model, config, vocab_size, staging)
            gap = disagreement(runtime_for(graph), model, config, rng)
            if gap <= TOLERANCE:
                return graph, "mxnet", "MXNet's exporter, checked in ONNX Runtime at two shapes"
            reason = "MXNet's graph differs from MXNet by %.2g" % gap
        except Exception as err:  # noqa: BLE001 - any failure of the other route is a reason to write our own
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if route == "mxnet":
            raise RunFailure("MXNet's exporter cannot export this model: %s (route ptb_lm can)" % reason)
        logger.info("MXNet's exporter was not used (%s): writing the graph from the weights", reason)
        return build_graph(config, vocab_size, weights_of(model)), "ptb_lm", reason
    return build_graph(config, vocab_size, weights_of(model)), "ptb_lm", "asked for"


def _test_perplexity(onnx_path, vocab, config, data, batch_size):
    """The test split's perplexity with ONNX Runtime, as ptb-lm-evaluate computes it with MXNet, on ``data``,
    else the data the run was trained on (never downloaded); ``{"skipped": why}`` where there is none to read."""
    from ptb_lm_onnx import ExportError, PortableModel

    from .data import read_split_texts
    from .download import locate_run_data
    from .errors import DataError

    try:
        where = locate_run_data(data, config.data, fetch=False)
        text = read_split_texts(where)["test"]
    except DataError as err:
        if data is not None:
            raise  # the user's --data: a mistake to say, not a figure to leave out
        return {"skipped": str(err)}
    portable = PortableModel.from_files(onnx_path, vocab.idx_to_word, config.mode, config.num_layers,
                                        config.hidden_dim, config.num_steps)
    batch = batch_size or config.eval_batch
    try:
        result = portable.score(text.splitlines(), batch_size=batch, num_steps=config.num_steps)
    except ExportError as err:  # a text too short for the batch size, or words a vocabulary without <unk> lacks
        raise DataError("cannot measure the test perplexity on %s: %s" % (where, err)) from None
    return {"perplexity": result["perplexity"], "loss": result["loss"], "batch_size": batch,
            "num_steps": config.num_steps, "tokens_scored": result["tokens_scored"], "unknown": result["unknown"],
            "split": "test", "data": os.path.abspath(where)}
