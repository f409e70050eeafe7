"""Regularisers: the ways in for what a run may add to the chapter's model and loss.

There are two, each applied in both engines:

* **A term of the training loss** (:class:`LossTerm`), computed from the model's named auxiliary
  outputs (:mod:`ptb_lm.families.auxiliary`). Activation regularisation (AR, on the last layer's
  outputs after dropout) and temporal activation regularisation (TAR, on them before it) are
  terms of this kind.
* **A transform of the RNN's weights at every forward pass**
  (:meth:`ptb_lm.model.RNNModel.transform_rnn_weights`), the way in for weight drop (DropConnect
  on the hidden-to-hidden weights). The fast engine applies it to the flat buffer's packed view,
  so it is never skipped there.

Each regulariser is a small module of this package, made by :func:`loss_terms_for` from the config:

* :mod:`.activation`: AR (``--ar``) and TAR (``--tar``).

The chapter's config has none, and a run with none builds the graph it always built. :func:`ptb_lm.assembly.assemble` asks the model to keep the
auxiliary outputs the terms need, and :func:`ptb_lm.training.train_epoch` adds the terms to what it
backpropagates. The loss it reports stays the cross-entropy alone, so that a run's perplexities mean
the same with and without them.
"""

import abc


class LossTerm(abc.ABC):
    """A term added to the training loss, from the model's auxiliary outputs.

    ptb_lm's training loss is the cross-entropy summed over a batch's tokens (the chapter's
    ``L.backward()``), and the update divides by the batch size. A term is returned in that scale: a
    per-token mean (AWD-LSTM's ``alpha * h.pow(2).mean()``) times ``tokens``.
    """

    #: a short name, for logs
    name = ""
    #: the config setting that asks for it (for errors that name the flag)
    setting = ""
    #: the auxiliary outputs it reads (names a family's block offers)
    needs = ()

    @abc.abstractmethod
    def __call__(self, auxiliary, tokens):
        """The term, a ``(1,)`` array, from ``auxiliary`` ({name: array}, as ``needs`` asks) of one forward pass
        over ``tokens`` tokens; called inside ``autograd.record()``, so its gradient reaches the model."""


def loss_terms_for(config):
    """The loss terms ``config`` asks for, as :class:`LossTerm` objects (none in the chapter's config)."""
    from .activation import ActivationRegularisation, TemporalActivationRegularisation

    terms = []
    if config.ar:
        terms.append(ActivationRegularisation(config.ar))
    if config.tar:
        terms.append(TemporalActivationRegularisation(config.tar))
    return terms


def auxiliary_needed(terms):
    """The auxiliary outputs ``terms`` read, each once."""
    return sorted({name for term in terms for name in term.needs})
