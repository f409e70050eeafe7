"""Using a trained model: perplexity of any text, and sampling words."""

import numpy as np

from ._compat import import_mxnet
from .data import EOS, UNK, batchify, encode
from .training import evaluate

mx = import_mxnet()


def text_perplexity_inputs(lines, dictionary, batch_size, ctx):
    """Encode ``lines`` with a fixed vocabulary (unknown words -> ``<unk>``) and batchify them.

    Returns ``(source, tokens, unknown)``: ``source`` is ``(num_rows, batch_size)`` on ``ctx``.
    """
    ids, unknown = encode(lines, dictionary, unknown=UNK)
    if len(ids) // batch_size < 2:
        raise ValueError("the text has %d tokens: too few for batch size %d" % (len(ids), batch_size))
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


def generate(model, dictionary, num_words, temperature=1.0, prompt="", seed=None, ctx=None):
    """Sample ``num_words`` words after ``prompt`` (words outside the vocabulary read as ``<unk>``).

    Each next word is drawn from softmax(logits / temperature): below 1 sharper,
    above 1 flatter. Returns the list of sampled words.
    """
    if not temperature > 0:
        raise ValueError("temperature must be above 0, got %r" % temperature)
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
