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
* ``ptb_lm``: the graph each model family writes from the weights with onnx's helpers
  (``ptb_lm.families``): for an RNN, one ONNX RNN/GRU/LSTM node a layer, any number of
  layers, the gates reordered from MXNet's to ONNX's; the transformer node for node
  (MXNet's exporter converts neither its attention's operators nor its reshapes, so it has this route only).

``route="auto"`` tries MXNet's exporter and keeps its graph only if ONNX Runtime loads it
and matches MXNet on a probe at two shapes; otherwise it writes its own. Either way the
export is checked against MXNet before it is kept, and written into a staging folder
renamed into place, so that a killed export leaves nothing that looks complete.
"""

import json
import logging
import os

import numpy as np

from .checkpoint import Checkpoint
from .errors import ConfigError, RunFailure, SaveDirError
from . import families
from .families import family_of
from .families.graph import OPSET, PRODUCER, interface, onnx as _onnx
from .files import sha256_of, staged_folder
from .runtime import error_summary, import_mxnet

mx = import_mxnet()
from mxnet import gluon  # noqa: E402

logger = logging.getLogger(__name__)

FORMAT = "ptb-lm-onnx"
FORMAT_VERSION = 1
ROUTES = ("auto", "mxnet", "ptb_lm")
# Agreement an export must show with MXNet before it is kept (float32, relative to the largest logit).
TOLERANCE = 1e-5


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


# --- the mxnet route -----------------------------------------------------------------------------

def mxnet_graph(model, config, vocab_size, folder):
    """The ONNX model MXNet's exporter writes for ``model``'s evaluation pass, with dynamic axes and opset 13;
    raises RuntimeError where it cannot."""
    onnx = _onnx()
    if len(set(config.layer_dims)) > 1:
        raise RuntimeError("MXNet's exporter: its graph is one RNN layer of one size, and this model's layers "
                           "differ (%s)" % ",".join(map(str, config.layer_dims)))
    block = EvaluationGraph(model)
    block.hybridize()
    layers, hidden = config.num_layers, config.hidden_dim
    state_names = families.state_names(config.mode)
    states = len(state_names)
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
    names = [n for n, _, _ in interface(state_names, layers, hidden, vocab_size)[0]]
    for k, name in enumerate(names):  # Gluon's export names a block's inputs data0, data1, ...
        _rename(exported.graph, "data%d" % k, name)
    # Its outputs come in an order of its own: name each by the MXNet output it equals on a probe.
    out_names = [n for n, _, _ in interface(state_names, layers, hidden, vocab_size)[1]]
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
    inputs, outputs = interface(state_names, layers, hidden, vocab_size)
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
    state_names = families.state_names(config.mode)
    states = len(state_names)
    worst = 0.0
    for seq_len, batch in shapes:
        state = [rng.uniform(-0.5, 0.5, (config.num_layers, batch, config.hidden_dim)).astype(np.float32)
                 for _ in range(states)]
        ours_state, theirs_state = state, state
        for _ in range(2):
            tokens = rng.randint(0, vocab, size=(seq_len, batch)).astype(np.int64)
            theirs = mxnet_outputs(model, config, tokens, theirs_state)
            feed = dict(zip(["tokens"] + state_names, [tokens] + list(ours_state)))
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
            family = family_of(config.mode)
            inputs, outputs = interface(families.state_names(config.mode), config.num_layers, config.hidden_dim,
                                        len(vocab))
            described = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "producer": PRODUCER, "route": taken,
                "route_reason": why, "opset": OPSET, "mode": config.mode, "vocab_size": len(vocab),
                "embed_dim": config.embed_dim, "hidden_dim": config.hidden_dim, "num_layers": config.num_layers,
                "hidden_sizes": list(config.layer_dims),
                "tied": config.tied, "num_steps": config.num_steps, "eval_batch_size": config.eval_batch,
                "carries_state": family.carries_state, "heads": config.heads,
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
    family = family_of(config.mode)

    def ours():
        return family.onnx_graph(config, vocab_size, family.onnx_weights(model))

    if not family.mxnet_exports:
        if route == "mxnet":
            raise RunFailure("MXNet's exporter cannot export a %s (it converts neither MXNet's interleaved attention "
                             "operators nor a reshape by -3, which the model uses): use --route ptb_lm" % config.mode)
        return ours(), "ptb_lm", "MXNet's exporter cannot convert the %s's attention" % config.mode
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
        return ours(), "ptb_lm", reason
    return ours(), "ptb_lm", "asked for"


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
                                        config.hidden_dim, config.num_steps,
                                        state_names=families.state_names(config.mode))
    batch = batch_size or config.eval_batch
    try:
        result = portable.score(text.splitlines(), batch_size=batch, num_steps=config.num_steps)
    except ExportError as err:  # a text too short for the batch size, or words a vocabulary without <unk> lacks
        raise DataError("cannot measure the test perplexity on %s: %s" % (where, err)) from None
    return {"perplexity": result["perplexity"], "loss": result["loss"], "batch_size": batch,
            "num_steps": config.num_steps, "tokens_scored": result["tokens_scored"], "unknown": result["unknown"],
            "split": "test", "data": os.path.abspath(where)}
