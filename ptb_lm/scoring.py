"""Scoring a trained model: its perplexity on a PTB split or on any text (``ptb-lm-evaluate``)."""

import logging

from .batches import device_batches
from .checkpoint import Checkpoint
from .config import check_whole_number
from .data import SPLITS, UNK, encode, read_split_texts
from .download import locate_run_data
from .errors import ConfigError, DataError
from .families import family_of
from .reporting import perplexity
from .runtime import import_mxnet
from .training import evaluate

mx = import_mxnet()
logger = logging.getLogger(__name__)


def text_perplexity_inputs(lines, dictionary, batch_size, ctx):
    """Encode ``lines`` with a fixed vocabulary (unknown words -> ``<unk>``) and batchify them.

    Returns ``(source, tokens, unknown)``: ``source`` is ``(num_rows, batch_size)`` on ``ctx``.
    """
    ids, unknown = encode(lines, dictionary, unknown=UNK)
    if len(ids) // batch_size < 2:
        raise DataError("the text has %d tokens: too few for batch size %d (each stream needs 2)"
                        % (len(ids), batch_size))
    return device_batches(ids, batch_size, ctx), len(ids), unknown


def text_loss(model, dictionary, lines, batch_size, num_steps, ctx=None, context=None):
    """Mean loss per token of ``model`` on ``lines``; returns ``(loss, tokens, unknown, tokens_scored)``.

    As in training, the text is cut into ``batch_size`` streams and the tail that
    does not fill a row is dropped, so ``tokens_scored`` can be below ``tokens``.
    """
    ctx = ctx or mx.cpu()
    source, tokens, unknown = text_perplexity_inputs(lines, dictionary, batch_size, ctx)
    loss = evaluate(model, source, num_steps, context=context)
    return loss, tokens, unknown, (source.shape[0] - 1) * batch_size


def score_checkpoint(path, split="test", text=None, batch_size=None, num_steps=None, data=None, ctx=None,
                     context=None):
    """Perplexity of the checkpoint at ``path`` on a ``split`` of its data or on the file ``text``.

    The split is read from ``data`` if given, else from the data the run was trained on
    (PTB, or the user's corpus: :func:`~ptb_lm.download.locate_run_data`).
    ``batch_size`` and ``num_steps`` default to the run's evaluation settings.
    Returns a dict: ``loss``, ``ppl``, ``tokens``, ``scored``, ``unknown``,
    ``batch_size``, ``num_steps``, ``source`` (the split, or the text file), ``data`` (the data the split
    was read from; None for a text file),
    ``checkpoint`` (the folder used), ``context`` and ``carries_state``
    (False for a model that reads each window on its own).
    """
    checkpoint = Checkpoint(path)
    config = checkpoint.config
    batch_size = config.eval_batch if batch_size is None else batch_size
    num_steps = config.num_steps if num_steps is None else num_steps
    check_whole_number("batch_size", batch_size)
    check_whole_number("num_steps", num_steps)
    if context is not None:
        check_whole_number("context", context)
        if family_of(config.mode).carries_state:
            raise ConfigError("context goes with a transformer: an RNN carries all it has read in its state",
                              setting="context")
    if text is not None:
        try:
            with open(text, encoding="utf-8") as f:
                lines, source = f.read().splitlines(), text
        except OSError as err:
            raise DataError("cannot read --text %s: %s" % (text, err.strerror)) from None
        except UnicodeDecodeError as err:
            raise DataError("--text %s is not UTF-8 text (byte %d): convert it to UTF-8" % (text, err.start)) \
                from None
    else:
        if split not in SPLITS:
            raise ConfigError("unknown --split %r: use %s" % (split, ", ".join(SPLITS)))
        data = locate_run_data(data, config.data)
        lines, source = read_split_texts(data)[split].splitlines(), split
    ctx = ctx or mx.cpu()
    model = checkpoint.build_model(ctx)
    loss, tokens, unknown, scored = text_loss(model, checkpoint.dictionary, lines, batch_size, num_steps, ctx,
                                              context)
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens, "scored": scored, "unknown": unknown,
            "batch_size": batch_size, "num_steps": num_steps, "source": source,
            "data": None if text is not None else data, "checkpoint": checkpoint.folder,
            "context": context, "carries_state": model.carries_state}
