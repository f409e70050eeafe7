"""Dropout with MXNet's meaning, by ptb_lm's kernel where a model has the kernels, and the keys that drive it.

    x (any shape) -> x * mask      mask = 1 / (1 - p) where kept, 0 where dropped (probability p),
                                   one mask element per element, or shared along ``axes``:

    axes=()    (T, N, C): a mask element per element           (the chapter's dropout)
    axes=(0,)  (T, N, C): a mask of (1, N, C), the same at every time step (locked dropout)

MXNet's own Dropout draws its mask one generator call per element, in scalar code. ptb_lm's
``ptb_dropout`` (:mod:`ptb_lm.kernels`) draws it from Philox4x32-10, a counter-based generator:
element ``m`` of the mask is decided by the generator at counter ``(m // 4, key[2], key[3], site)``
under the key ``(key[0], key[1])``. The backward draws the same mask again rather than keeping it,
and the masks do not depend on the thread count.

A loaded operator is not told whether MXNet is training, so the key says it: a key whose first word
is 0 is evaluation, and the operator then copies its input. For training, :class:`DropoutKeys`
draws a fresh key from MXNet's own generator at every forward pass, so the masks follow
``mx.random.seed`` exactly as MXNet's Dropout's do: a seeded run, which the runner reseeds each
epoch, resumes drawing the same masks. The site, a number given to each dropout of a model, keeps
the masks of two dropouts under one key apart.
"""

from .runtime import import_mxnet

mx = import_mxnet()
from mxnet import autograd, gluon  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

KEY_WORDS = 4
KEY_DTYPE = "int32"


def dropout(F, x, key, rate, axes=(), site=0):
    """``x`` with dropout at ``rate``, the mask shared along ``axes``: by ptb_lm's kernel under ``key``, or by
    MXNet's Dropout when ``key`` is None."""
    if rate == 0:
        return F.identity(x)
    if key is None:
        return F.Dropout(x, p=rate, axes=tuple(axes), cudnn_off=False)
    return F.ptb_dropout(x, key, p=rate, axes=str(tuple(axes)), site=site)


def dropout_range(F, x, key, rate, begin, end, size, site=0):
    """``x`` (``(size,)``) with its elements ``[begin, end)`` dropped at ``rate`` as :func:`dropout` drops that slice
    alone (the same mask), the rest unchanged: by the kernel in one pass, or by slicing when ``key`` is None."""
    if rate == 0:
        return F.identity(x)
    if key is not None:
        return F.ptb_dropout(x, key, p=rate, axes="()", site=site, begin=begin, end=end)
    pieces = [F.slice(x, begin=(0,), end=(begin,))] if begin > 0 else []
    pieces.append(dropout(F, F.slice(x, begin=(begin,), end=(end,)), None, rate))
    if end < size:
        pieces.append(F.slice(x, begin=(end,), end=(size,)))
    return pieces[0] if len(pieces) == 1 else F.concat(*pieces, dim=0)


class Dropout(gluon.HybridBlock):
    """``nn.Dropout(rate, axes)``; called with a key (:class:`DropoutKeys`) it runs ptb_lm's kernel.

    ``site`` tells this dropout's masks from the model's other dropouts' under the same key: give each
    dropout of a model its own (:class:`Sites`).
    """

    def __init__(self, rate, axes=(), site=0, **kwargs):
        super(Dropout, self).__init__(**kwargs)
        self._rate, self._axes, self._site = rate, tuple(axes), site

    def hybrid_forward(self, F, x, key=None):
        return dropout(F, x, key, self._rate, self._axes, self._site)

    def __repr__(self):
        return "%s(p = %s, axes=%s, site=%d)" % (self.__class__.__name__, self._rate, self._axes, self._site)


class DroppedEmbedding(nn.Embedding):
    """``nn.Embedding`` whose weight loses whole rows at each training pass, the rest scaled by 1 / (1 - rate):
    AWD-LSTM's embedding dropout (its embed_regularize.py), every occurrence of a dropped word in the batch
    reading zeros. Call it as ``embedding(ids, key)``; ``rate`` 0 is ``nn.Embedding``."""

    def __init__(self, input_dim, output_dim, rate, site=0, **kwargs):
        super(DroppedEmbedding, self).__init__(input_dim, output_dim, **kwargs)
        self._rate, self._site = rate, site

    def hybrid_forward(self, F, x, key=None, weight=None):
        if self._rate:
            weight = dropout(F, weight, key, self._rate, axes=(1,), site=self._site)  # a mask of (V, 1): rows
        return F.Embedding(x, weight, name="fwd", **self._kwargs)


class WeightDrop(object):
    """DropConnect on the hidden-to-hidden weights in the RNN kernel's packed parameter vector (AWD-LSTM's weight
    drop, its weight_drop.py): one mask per element, drawn afresh at each training pass, the kept weights scaled
    by 1 / (1 - rate), the same mask for every time step of the pass. ``segments``: ``(start, end, is_h2h)`` of
    the vector's pieces in order; call ``drop(F, packed, key)`` inside the graph (``RNNModel`` does)."""

    def __init__(self, rate, segments, sites):
        self.rate = rate
        self._pieces = []  # (start, end, site or None), neighbouring pieces that keep their weights merged
        for start, end, is_h2h in segments:
            if not is_h2h and self._pieces and self._pieces[-1][2] is None:
                self._pieces[-1] = (self._pieces[-1][0], end, None)
            else:
                self._pieces.append((start, end, sites() if is_h2h else None))

    @property
    def sites(self):
        """The site of each hidden-to-hidden weight, layer by layer."""
        return [site for _, _, site in self._pieces if site is not None]

    def __call__(self, F, packed, key):
        pieces = []
        for start, end, site in self._pieces:
            piece = F.slice(packed, begin=(start,), end=(end,))
            pieces.append(piece if site is None else dropout(F, piece, key, self.rate, site=site))
        return F.concat(*pieces, dim=0)

    def within(self, F, vector, key, start, end):
        """The piece ``[start, end)`` of the packed vector, given alone as ``vector`` (a model run layer by layer
        takes each layer's so), with its hidden-to-hidden weights masked in place: the same masks."""
        for begin, stop, site in self._pieces:
            if site is not None and start <= begin and stop <= end:
                vector = dropout_range(F, vector, key, self.rate, begin - start, stop - start, end - start, site)
        return vector


class Sites(object):
    """Hands out the site numbers of one model's dropouts, in the order they are made."""

    def __init__(self):
        self._next = 0

    def __call__(self):
        self._next += 1
        return self._next - 1


class DropoutKeys(object):
    """The keys a model passes its dropouts on each call: ``None`` without the kernel (MXNet's Dropout then
    draws), zeros in evaluation, and a fresh draw from MXNet's generator for every training forward pass.

    A fresh array each pass, never one rewritten in place: a forward pass's backward reads its own key to draw
    its masks again, and it may run after the next forward pass (two calls under one ``autograd.record()``).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._evaluation = {}  # ctx -> zeros

    def key(self, ctx):
        """The key for a forward pass on ``ctx`` now (training or not, as autograd says)."""
        if not self.kernel:
            return None
        if autograd.is_training():
            return mx.nd.random.randint(1, 2 ** 31 - 1, shape=(KEY_WORDS,), dtype=KEY_DTYPE, ctx=ctx)
        if ctx not in self._evaluation:
            self._evaluation[ctx] = mx.nd.zeros((KEY_WORDS,), ctx=ctx, dtype=KEY_DTYPE)
        return self._evaluation[ctx]
