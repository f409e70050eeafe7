"""ptb_lm: word-level language models (the chapter's RNNs, a Transformer) on Penn Treebank, trained with MXNet Gluon.

The chapter's names (the d2l-zh chapter "循环神经网络 — 使用Gluon") are here: ``Dictionary``, ``Corpus``, ``batchify``,
``get_batch``, ``RNNModel``, ``detach``, ``evaluate`` (the chapter's ``model_eval``),
``try_gpu``; and the tool's: ``TrainConfig``, ``from_preset``, ``fit``, ``load``, ``score_checkpoint``,
``generate``, ``TransformerModel``, ``export_onnx``.

The package reads top-down: data (``data``, ``download``) -> model (``model``, ``loss``)
-> training (``batches``, ``training``, ``updater``, ``parallel``) -> a run (``assembly``,
``outputs``, ``checkpoint``, ``resume``, ``runner``) -> using a model (``scoring``,
``sampling``, ``export``) -> the command lines (``cli``). ``ptb_lm.runtime`` is what makes MXNet 1.9.1
run on today's machines; everything else reaches MXNet through ``runtime.import_mxnet``.

The data layer (``ptb_lm.data``, ``ptb_lm.download``, ``ptb_lm.config``) is pure
NumPy; the rest loads mxnet on first use, so ``import ptb_lm`` works without it
and a missing mxnet is reported, with the command to install it, only when a
name that needs it is used.
"""

from .config import PRESETS, TrainConfig, from_preset
from .data import Corpus, Dictionary, batchify, get_batch
from .download import locate_ptb
from .errors import ConfigError, DataError, Interrupted, PtbLmError, RunFailure, TrainingDiverged, UserError
from .runtime import make_mxnet_importable

__version__ = "0.1.0"

make_mxnet_importable()  # so that ``import ptb_lm`` then ``import mxnet`` works on numpy >= 1.24 (Python 3.12)

# name -> module, imported on first use because these need mxnet
_LAZY = {
    "RNNModel": "model",
    "build_model": "model",
    "detach": "training",
    "evaluate": "training",
    "score_checkpoint": "scoring",
    "generate": "sampling",
    "try_gpu": "runtime.devices",
    "fit": "runner",
    "History": "reporting",
    "load": "checkpoint",
    "TransformerModel": "transformer",
    "export_onnx": "export",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    raise AttributeError("module 'ptb_lm' has no attribute %r" % name)


__all__ = ["Corpus", "Dictionary", "batchify", "get_batch", "locate_ptb", "TrainConfig", "ConfigError", "DataError",
           "PRESETS", "from_preset", "PtbLmError", "UserError", "RunFailure", "Interrupted",
           "TrainingDiverged"] + sorted(_LAZY)
