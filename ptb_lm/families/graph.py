"""What every family's ONNX writer shares: the opset, the graph's interface, the onnx import and the finished model.

The interface (``model.json`` records it, and ptb_lm_onnx reads the state's names from there)::

    inputs   tokens int64 [seq_len, batch], then each state array float32 [num_layers, batch, hidden] (h0, c0)
    outputs  logits float32 [seq_len, batch, vocab], then each new state array (hn, cn)
"""

from ..errors import ConfigError

OPSET = 13
PRODUCER = "ptb_lm"


def onnx():
    """The onnx package, or ConfigError saying how to install it."""
    try:
        import onnx as package
    except ImportError:
        raise ConfigError("exporting needs the onnx package: pip install -e '.[export]'") from None
    return package


def interface(state_names, num_layers, hidden, vocab):
    """The graph's inputs and outputs: ``[(name, type, shape)]`` each, shapes with named dynamic dimensions; each
    state input ``x0`` has the output ``xn``."""
    state = ["num_layers=%d" % num_layers, "batch", "hidden=%d" % hidden]
    inputs = [("tokens", "int64", ["seq_len", "batch"])]
    outputs = [("logits", "float32", ["seq_len", "batch", "vocab=%d" % vocab])]
    for name in state_names:
        inputs.append((name, "float32", state))
        outputs.append((name[:-1] + "n", "float32", state))
    return inputs, outputs


def finish(nodes, initializers, name, described):
    """The checked ONNX model of ``nodes`` and ``initializers``, with ``described``'s ``(inputs, outputs)``
    (:func:`interface`) as its graph's inputs and outputs."""
    package = onnx()
    from onnx import TensorProto, helper

    types = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}

    def value(name, kind, shape):
        dims = [int(d.split("=")[1]) if "=" in d else d for d in shape]
        return helper.make_tensor_value_info(name, types[kind], dims)

    inputs, outputs = described
    graph = helper.make_graph(nodes, name, [value(*i) for i in inputs], [value(*o) for o in outputs],
                              initializer=initializers)
    model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnx 1.15 writes for opset 13 readers, ONNX Runtime among them
    package.checker.check_model(model)
    return model
