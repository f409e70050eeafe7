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
    lines, source, data = _lines_to_score(checkpoint, split, text, data)
    ctx = ctx or mx.cpu()
    model = checkpoint.build_model(ctx)
    loss, tokens, unknown, scored = text_loss(model, checkpoint.dictionary, lines, batch_size, num_steps, ctx,
                                              context)
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens, "scored": scored, "unknown": unknown,
            "batch_size": batch_size, "num_steps": num_steps, "source": source,
            "data": None if text is not None else data, "checkpoint": checkpoint.folder,
            "context": context, "carries_state": model.carries_state}


def score_with_cache(path, window, theta=None, lam=None, search=False, split="test", text=None, batch_size=1,
                     num_steps=None, data=None, ctx=None):
    """Perplexity of the checkpoint at ``path`` with the continuous cache (:mod:`ptb_lm.cache`) and without it, on
    a split or the file ``text``, at ``batch_size`` (1 by default: one stream, one cache, as published).

    ``search``: first choose theta and lambda on the validation split of the run's data (never the test split),
    from :data:`ptb_lm.cache.THETAS` x :data:`~ptb_lm.cache.LAMBDAS`, then score with them. Returns the dict
    of :func:`score_checkpoint` (its ``loss`` and ``ppl`` with the cache) plus ``loss_without``,
    ``ppl_without``, ``settings`` (the CacheSettings used) and ``search`` (the validation figures, or None).
    """
    from .cache import LAMBDAS, THETAS, CacheSettings, best_settings, cache_losses

    if search:
        if theta is not None or lam is not None:
            raise ConfigError("cache_search chooses theta and lambda itself: leave out --cache-theta and "
                              "--cache-lambda", setting="cache_search")
        CacheSettings(window, 0.0, 0.0)  # the window checked before any pass
    else:
        if theta is None or lam is None:
            raise ConfigError("the cache needs --cache-theta and --cache-lambda (or --cache-search to choose them "
                              "on the validation split)", setting="cache_theta" if theta is None else "cache_lambda")
        settings = CacheSettings(window, theta, lam)
    checkpoint = Checkpoint(path)
    num_steps = checkpoint.config.num_steps if num_steps is None else num_steps
    check_whole_number("batch_size", batch_size)
    check_whole_number("num_steps", num_steps)
    ctx = ctx or mx.cpu()
    model = checkpoint.build_model(ctx)

    def losses(lines, thetas, lambdas):
        source, tokens, unknown = text_perplexity_inputs(lines, checkpoint.dictionary, batch_size, ctx)
        grid, without = cache_losses(model, source, num_steps, window, thetas, lambdas)
        return grid, without, tokens, unknown, (source.shape[0] - 1) * batch_size

    searched = None
    if search:
        valid_lines, _, _ = _lines_to_score(checkpoint, "valid", None, data)
        grid, without = losses(valid_lines, THETAS, LAMBDAS)[:2]
        settings = best_settings(grid, window)
        searched = {"loss": float(grid.min()), "ppl": perplexity(float(grid.min())), "loss_without": without,
                    "ppl_without": perplexity(without), "grid": grid.tolist()}
    lines, source, data = _lines_to_score(checkpoint, split, text, data)
    grid, without, tokens, unknown, scored = losses(lines, [settings.theta], [settings.lam])
    loss = float(grid[0, 0])
    return {"loss": loss, "ppl": perplexity(loss), "loss_without": without, "ppl_without": perplexity(without),
            "tokens": tokens, "scored": scored, "unknown": unknown, "batch_size": batch_size,
            "num_steps": num_steps, "source": source, "data": None if text is not None else data,
            "checkpoint": checkpoint.folder, "settings": settings, "search": searched}


def _lines_to_score(checkpoint, split, text, data):
    """``(lines, source, data)``: the file ``text``, else the split ``split`` of ``data`` or of the run's data."""
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
        data = locate_run_data(data, checkpoint.config.data)
        lines, source = read_split_texts(data)[split].splitlines(), split
    return lines, source, data
