"""Named auxiliary outputs: what a model can return beside its logits and state, for a loss term to use.

A regulariser such as AR or TAR needs more of the forward pass than the logits: the last layer's
outputs, before or after dropout. A family's block offers such arrays by name (:attr:`auxiliary`),
and computes only the ones a run keeps (:meth:`keep_auxiliary`), so that a run without a loss term
builds the graph it always built::

    model.keep_auxiliary(["hidden"])                  before the first forward pass
    logits, state, aux = model.with_auxiliary(tokens, state)
    aux["hidden"]                                     (T, N, hidden), as the block documents it
    logits, state = model(tokens, state)              unchanged: the kept arrays are dropped

The kept arrays are further outputs of the same graph (hybridized or not), so autograd carries a
term's gradient through them into the model.
"""

from ..errors import ConfigError


class AuxiliaryOutputs(object):
    """Mixin for a family's block. The block lists what it offers in :attr:`auxiliary`, and implements
    ``_forward_all(inputs, state) -> (logits, state, [kept arrays, in kept_auxiliary's order])``; its
    ``forward`` returns the first two."""

    #: the names of the auxiliary outputs this block can return
    auxiliary = ()
    _kept = ()

    @property
    def kept_auxiliary(self):
        """The auxiliary outputs the block computes, in :attr:`auxiliary`'s order."""
        return self._kept

    def keep_auxiliary(self, names):
        """Compute ``names`` (some of :attr:`auxiliary`) at every forward pass from now on (a hybridized block builds
        its graph again, with these outputs)."""
        unknown = sorted(set(names) - set(self.auxiliary))
        if unknown:
            raise ConfigError("%s offers no auxiliary output %s (it offers %s)"
                              % (type(self).__name__, ", ".join(map(repr, unknown)),
                                 ", ".join(map(repr, self.auxiliary)) or "none"))
        kept = tuple(name for name in self.auxiliary if name in names)
        if kept != self._kept:
            from ..runtime.internals import forget_compiled_graph

            forget_compiled_graph(self)
        self._kept = kept

    def with_auxiliary(self, inputs, state):
        """``(logits, state, {name: array})``: the forward pass, with the kept auxiliary outputs."""
        logits, state, kept = self._forward_all(inputs, state)
        return logits, state, dict(zip(self._kept, kept))
