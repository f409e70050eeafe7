"""The continuous cache pointer at evaluation (Grave et al. 2017, "Improving neural language models with a
continuous cache"), as awd-lstm-lm's pointer.py and gluon-nlp's cache model compute it.

For each position t of a stream, with h_t the last layer's output there (the model's auxiliary ``hidden``),
the cache holds the last ``window`` positions i before t of the same stream, each with h_i and the word
x_{i+1} that followed it::

    p_cache(w | t) = sum over cached i with x_{i+1} = w of  softmax_i(theta * h_i . h_t)
    p(w | t)       = (1 - lambda) * p_model(w | t) + lambda * p_cache(w | t)

Only the target word's probability is needed for the loss, so neither distribution is made over the
vocabulary. A position with nothing cached yet (a stream's first) scores p_model alone. Streams do not
share a cache: evaluate at batch size 1 for the published setting.

Both losses come from the same pass, so the gain of the cache is measured on the same logits. A
grid of (theta, lambda) costs one pass too: the model's outputs do not depend on them.
"""

import math
from dataclasses import dataclass

import numpy as np

from .config import check_whole_number
from .data import batch_starts, get_batch
from .errors import ConfigError
from .runtime import import_mxnet

mx = import_mxnet()

# the grid --cache-search tries on the validation split (awd-lstm-lm's PTB values are theta 1.0, lambda 0.1)
THETAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
LAMBDAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class CacheSettings:
    """How many positions the cache holds, its sharpness theta and its weight lambda in the mixture."""

    window: int
    theta: float
    lam: float

    def __post_init__(self):
        check_whole_number("cache_window", self.window)
        for name, value, ok, rule in (("cache_theta", self.theta, lambda v: v >= 0, "0 or more"),
                                      ("cache_lambda", self.lam, lambda v: 0 <= v <= 1, "in [0, 1]")):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not ok(value):
                raise ConfigError("%s must be %s, got %r" % (name, rule, value), setting=name)


class _Streams(object):
    """Each stream's cached outputs (n, H) and the words that followed them (n,), n <= window."""

    def __init__(self, streams, window):
        self.window = window
        self.hidden = [None] * streams
        self.words = [None] * streams

    def scores(self, stream, hidden, targets, thetas):
        """The window's cache probabilities of its targets, one row per theta: (len(thetas), T), and which
        positions had anything cached (T,). ``hidden`` (T, H) and ``targets`` (T,) are this stream's."""
        past_h, past_w = self.hidden[stream], self.words[stream]
        before = 0 if past_h is None else len(past_h)
        all_h = hidden if past_h is None else np.concatenate([past_h, hidden])
        all_w = targets if past_w is None else np.concatenate([past_w, targets])
        steps = len(hidden)
        position = before + np.arange(steps)[:, None]  # each row's own index in all_h
        index = np.arange(len(all_h))[None, :]
        visible = (index < position) & (index >= position - self.window)  # (T, before + T)
        dots = hidden.astype(np.float64) @ all_h.astype(np.float64).T
        same = all_w[None, :] == targets[:, None]
        probabilities = np.empty((len(thetas), steps))
        for k, theta in enumerate(thetas):
            logits = np.where(visible, theta * dots, -np.inf)
            top = logits.max(axis=1, keepdims=True)
            weights = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
            total = weights.sum(axis=1)
            probabilities[k] = np.where(total > 0, (weights * same).sum(axis=1) / np.where(total > 0, total, 1), 0)
        self.hidden[stream] = all_h[-self.window:]
        self.words[stream] = all_w[-self.window:]
        return probabilities, visible.any(axis=1)


def cache_losses(model, data_source, num_steps, window, thetas, lambdas):
    """Mean loss per token of ``model`` over a batchified split ``(rows, streams)``, with the cache of ``window``
    positions at every (theta, lambda) of the grid and without it: ``(losses (len(thetas), len(lambdas)), loss
    without)``. The state carries across windows as in :func:`ptb_lm.training.evaluate`."""
    model.keep_auxiliary(sorted(set(model.kept_auxiliary) | {"hidden"}))
    ctx = data_source.context
    streams = data_source.shape[1]
    state = model.begin_state(func=mx.nd.zeros, batch_size=streams, ctx=ctx)
    cache = _Streams(streams, window)
    lambdas = np.asarray(lambdas, dtype=np.float64)[None, :, None]
    with_cache = np.zeros((len(thetas), lambdas.shape[1]))
    without, tokens = 0.0, 0
    for ibatch, i in enumerate(batch_starts(data_source.shape[0], num_steps)):
        data, target = get_batch(data_source, i, num_steps)
        logits, state, auxiliary = model.with_auxiliary(data, state)
        logits = logits.asnumpy().astype(np.float64)  # (T * N, V), row t * N + n
        targets = target.asnumpy().astype(np.int64)
        top = logits.max(axis=1, keepdims=True)
        log_model = logits[np.arange(len(targets)), targets] - (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
        steps = data.shape[0]
        log_model = log_model.reshape(steps, streams)
        targets = targets.reshape(steps, streams)
        hidden = auxiliary["hidden"].asnumpy()  # (T, N, H)
        for n in range(streams):
            p_cache, cached = cache.scores(n, hidden[:, n], targets[:, n], thetas)  # (thetas, T), (T,)
            p_model = np.exp(log_model[:, n])
            mixed = (1 - lambdas) * p_model + lambdas * p_cache[:, None, :]  # (thetas, lambdas, T)
            mixed = np.where(cached, mixed, p_model)
            with np.errstate(divide="ignore"):
                with_cache -= np.log(mixed).sum(axis=2)
            without -= log_model[:, n].sum()
        tokens += steps * streams
    return with_cache / tokens, without / tokens


def best_settings(losses, window, thetas=THETAS, lambdas=LAMBDAS):
    """The :class:`CacheSettings` of the grid's lowest loss in ``losses`` (len(thetas), len(lambdas))."""
    k, j = np.unravel_index(int(np.argmin(losses)), losses.shape)
    return CacheSettings(window, thetas[k], lambdas[j])
