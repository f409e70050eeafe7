"""Using a trained model: the perplexity of a checkpoint on a PTB split or any text, and sampling words."""

import logging

import numpy as np

from ._compat import import_mxnet
from .checkpoint import Checkpoint
from .data import EOS, UNK, SPLITS, batchify, encode, read_split_texts
from .download import locate_ptb
from .errors import ConfigError, DataError
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
    source = mx.nd.array(batchify(ids, batch_size), ctx=ctx, dtype="int32")
    return source, len(ids), unknown


def evaluate_text(model, dictionary, lines, batch_size, num_steps, ctx=None):
    """Mean loss per token of ``model`` on ``lines``; returns ``(loss, tokens, unknown, tokens_scored)``.

    As in training, the text is cut into ``batch_size`` streams and the tail that
    does not fill a row is dropped, so ``tokens_scored`` can be below ``tokens``.
    """
    ctx = ctx or mx.cpu()
    source, tokens, unknown = text_perplexity_inputs(lines, dictionary, batch_size, ctx)
    loss = evaluate(model, source, num_steps)
    return loss, tokens, unknown, (source.shape[0] - 1) * batch_size


def evaluate_checkpoint(path, split="test", text=None, batch_size=None, num_steps=None, data=None, ctx=None):
    """Perplexity of the checkpoint at ``path`` on a PTB ``split`` or on the file ``text``.

    ``batch_size`` and ``num_steps`` default to the run's evaluation settings.
    Returns a dict: ``loss``, ``ppl``, ``tokens``, ``scored``, ``unknown``,
    ``batch_size``, ``num_steps``, ``source`` and ``checkpoint`` (the folder used).
    """
    from .reporting import perplexity

    point = Checkpoint(path)
    config = point.config
    batch_size = config.eval_batch if batch_size is None else batch_size
    num_steps = config.num_steps if num_steps is None else num_steps
    for name, value in (("--batch-size", batch_size), ("--num-steps", num_steps)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError("%s must be a whole number of at least 1, got %r" % (name, value))
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
        lines, source = read_split_texts(locate_ptb(data))[split].splitlines(), split
    ctx = ctx or mx.cpu()
    model = point.build_model(ctx)
    loss, tokens, unknown, scored = evaluate_text(model, point.dictionary, lines, batch_size, num_steps, ctx)
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens, "scored": scored, "unknown": unknown,
            "batch_size": batch_size, "num_steps": num_steps, "source": source, "checkpoint": point.folder}


def check_sampling(num_words, temperature, seed=None):
    """Raise ConfigError, naming the setting, unless :func:`generate` can sample with these."""
    if num_words < 1:
        raise ConfigError("--words must be at least 1, got %d" % num_words)
    if not temperature > 0:
        raise ConfigError("--temperature must be above 0, got %g" % temperature)
    if seed is not None and not 0 <= seed < 2 ** 32:
        raise ConfigError("--seed must be a whole number from 0 to 2**32 - 1, got %d" % seed)


def generate(model, dictionary, num_words, temperature=1.0, prompt="", seed=None, ctx=None):
    """Sample ``num_words`` words after ``prompt`` (words outside the vocabulary read as ``<unk>``).

    Each next word is drawn from softmax(logits / temperature): below 1 sharper,
    above 1 flatter. Returns the list of sampled words.
    """
    check_sampling(num_words, temperature, seed)
    ctx = ctx or mx.cpu()
    rng = np.random.RandomState(seed)
    words = prompt.split() or [EOS]
    unk = dictionary.word_to_idx.get(UNK, 0)
    ids = [dictionary.word_to_idx.get(w, unk) for w in words]
    hidden = model.begin_state(func=mx.nd.zeros, batch_size=1, ctx=ctx)
    inputs = mx.nd.array(ids, ctx=ctx, dtype="int32").reshape((-1, 1))  # (len(prompt), 1)
    out = []
    for _ in range(num_words):
        logits, hidden = model(inputs, hidden)
        last = logits[-1].asnumpy().astype(np.float64) / temperature
        probs = np.exp(last - last.max())
        probs /= probs.sum()
        next_id = int(rng.choice(len(probs), p=probs))
        out.append(dictionary.idx_to_word[next_id])
        inputs = mx.nd.array([[next_id]], ctx=ctx, dtype="int32")
    return out
