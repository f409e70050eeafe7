"""Activation regularisation (AR) and temporal activation regularisation (TAR), as AWD-LSTM adds them to its
loss (Merity et al. 2017, "Revisiting activation regularization for language RNNs"; awd-lstm-lm's main.py).

Both read the last RNN layer's outputs, (T, N, H), TNC:

    AR   alpha * mean(d ** 2)                    d: the outputs after the output dropout ("hidden_dropped")
    TAR  beta  * mean((h[1:] - h[:-1]) ** 2)     h: the outputs before it ("hidden")

each mean over every element, as AWD's ``.pow(2).mean()``. AR keeps the activations small; TAR keeps them
from jumping between time steps. ptb_lm's training loss is summed over the batch's tokens, so each term is
returned times ``tokens`` (:class:`~ptb_lm.regularisers.LossTerm`): the same step as AWD's mean loss at a
rate ``tokens`` times smaller.
"""

from . import LossTerm


class ActivationRegularisation(LossTerm):
    """AR: ``alpha`` times the mean square of the last layer's outputs after dropout, per token."""

    name = "ar"
    setting = "ar"
    needs = ("hidden_dropped",)

    def __init__(self, alpha):
        self.alpha = alpha

    def __call__(self, auxiliary, tokens):
        dropped = auxiliary["hidden_dropped"]
        return (dropped * dropped).mean() * (self.alpha * tokens)


class TemporalActivationRegularisation(LossTerm):
    """TAR: ``beta`` times the mean square of the last layer's outputs' change over one time step, per token."""

    name = "tar"
    setting = "tar"
    needs = ("hidden",)

    def __init__(self, beta):
        self.beta = beta

    def __call__(self, auxiliary, tokens):
        hidden = auxiliary["hidden"]
        if hidden.shape[0] < 2:  # a window of one step has no change: a zero that autograd still follows
            return hidden.sum() * 0
        change = hidden.slice_axis(axis=0, begin=1, end=None) - hidden.slice_axis(axis=0, begin=0, end=-1)
        return (change * change).mean() * (self.beta * tokens)
