"""One immutable object holds every setting of a run; presets are named sets of them.

The defaults are the chapter's (the d2l-zh Gluon RNN chapter's) hyperparameters, so a run
with no flags does the chapter's math. A config is frozen: training never
changes it; use ``config.replace(...)`` to derive another.
"""

import dataclasses
import json
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigError

MODES = ("rnn_relu", "rnn_tanh", "lstm", "gru")
ENGINES = ("fast", "imperative")
KVSTORES = ("device", "local", "dist_sync")
PROGRESS = ("auto", "bar", "none")


@dataclass(frozen=True)
class TrainConfig:
    # --- model -----------------------------------------------------------
    mode: str = "rnn_relu"  # the chapter's cell: a ReLU RNN
    embed_dim: int = 100  # the chapter's embedding size
    hidden_dim: int = 100  # the chapter's hidden size
    num_layers: int = 2  # the chapter's depth
    dropout: float = 0.2  # the chapter's rate, on embeddings, between layers and on outputs
    tied: bool = False  # share embedding and decoder weights (Press & Wolf); off in the chapter
    init_scale: Optional[float] = None  # None: the chapter's Xavier (+ Uniform(0.1) embedding); x: Uniform(x) everywhere
    # --- optimisation ----------------------------------------------------
    lr: float = 1.0  # the chapter's plain SGD rate (no momentum, no weight decay)
    clipping_norm: float = 0.2  # per token: the global norm is clipped at this x num_steps x batch_size
    epochs: int = 100  # the chapter's code runs 100 epochs
    batch_size: int = 32  # the chapter's number of parallel streams
    num_steps: int = 5  # the chapter's truncated-BPTT length
    lr_decay: Optional[float] = None  # multiply lr by this when validation loss fails to improve; off in the chapter
    lr_decay_after: Optional[int] = None  # Zaremba: after this many epochs, decay every epoch ...
    lr_decay_per_epoch: Optional[float] = None  # ... by this factor
    # --- evaluation and logging -------------------------------------------
    eval_period: int = 500  # the chapter reports the training loss every 500 batches
    eval_batch_size: Optional[int] = None  # None: evaluate at the training batch size, as the chapter
    max_batches: Optional[int] = None  # stop each epoch after this many batches (smoke runs)
    # --- run -------------------------------------------------------------
    seed: Optional[int] = None  # seeds python, numpy and mxnet; None leaves them unseeded, as the chapter
    engine: str = "fast"  # fast: hybridized, synchronises once per report; imperative: the chapter's loop
    data: Optional[str] = None  # folder or zip; None: data/ptb/, data/ptb.zip, else download
    ctx: str = "auto"  # auto: the GPU if one works, else the CPU
    kvstore: str = "device"  # how gradients are summed across several contexts or workers
    save_dir: Optional[str] = None  # where checkpoints go (last/ and best/); None: none written
    log_json: Optional[str] = None  # one JSON object per line: batch, epoch and test events
    progress: str = "auto"  # auto: a tqdm bar in a terminal (or notebook), none elsewhere, where log lines suffice

    def __post_init__(self):
        self.validate()

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("unknown setting(s): %s" % ", ".join(unknown))
        return cls(**values)

    @property
    def eval_batch(self):
        """The batch size evaluation uses."""
        return self.eval_batch_size or self.batch_size

    def validate(self):
        if self.mode not in MODES:
            raise ConfigError("unknown mode %r: choose one of %s" % (self.mode, ", ".join(MODES)))
        if self.engine not in ENGINES:
            raise ConfigError("unknown engine %r: choose one of %s" % (self.engine, ", ".join(ENGINES)))
        if self.kvstore not in KVSTORES:
            raise ConfigError("unknown kvstore %r: choose one of %s" % (self.kvstore, ", ".join(KVSTORES)))
        if self.progress not in PROGRESS:
            raise ConfigError("unknown progress %r: choose %s" % (self.progress, ", ".join(PROGRESS)))
        for name in ("embed_dim", "hidden_dim", "num_layers", "epochs", "batch_size", "num_steps", "eval_period"):
            _at_least_one(name, getattr(self, name))
        for name in ("max_batches", "eval_batch_size", "lr_decay_after"):
            if getattr(self, name) is not None:
                _at_least_one(name, getattr(self, name), allow_zero=name == "lr_decay_after")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < 2 ** 32):
            raise ConfigError("seed must be a whole number from 0 to 2**32 - 1, got %r" % (self.seed,))
        if not self.lr >= 0:
            raise ConfigError("lr must be 0 or more, got %r" % self.lr)
        if not self.clipping_norm > 0:
            raise ConfigError("clipping_norm must be above 0, got %r" % self.clipping_norm)
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must be in [0, 1), got %r" % self.dropout)
        if self.init_scale is not None and not self.init_scale > 0:
            raise ConfigError("init_scale must be above 0, got %r" % self.init_scale)
        for name in ("lr_decay", "lr_decay_per_epoch"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise ConfigError("%s must be in (0, 1], got %r" % (name, value))
        if (self.lr_decay_after is None) != (self.lr_decay_per_epoch is None):
            raise ConfigError("lr_decay_after and lr_decay_per_epoch go together: give both or neither")
        if self.tied and self.embed_dim != self.hidden_dim:
            raise ConfigError(
                "tied weights need embed_dim == hidden_dim (the decoder reuses the embedding), "
                "got %d and %d" % (self.embed_dim, self.hidden_dim)
            )


def _at_least_one(name, value, allow_zero=False):
    lowest = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise ConfigError("%s must be a whole number of at least %d, got %r" % (name, lowest, value))


def check_fits_data(config, split_lengths):
    """Raise ConfigError if a batch of ``config`` does not fit the smallest split.

    ``split_lengths`` maps split names to token counts. Training and evaluation
    need at least one batch of ``num_steps`` rows plus the row that holds its
    targets in every split.
    """
    for split, length in sorted(split_lengths.items(), key=lambda kv: kv[1]):
        batch = config.batch_size if split == "train" else config.eval_batch
        rows = length // batch
        if rows < 2:
            raise ConfigError(
                "batch size %d is too large for the %s split (%d tokens): use at most %d"
                % (batch, split, length, length // 2)
            )
        if config.num_steps > rows - 1:
            raise ConfigError(
                "num_steps %d is too large for the %s split at batch size %d (%d rows): use at most %d"
                % (config.num_steps, split, batch, rows, rows - 1)
            )


# Zaremba et al. 2014, "Recurrent neural network regularization", translated to
# our conventions. Their code clips the gradient of the loss summed over time and
# averaged over the batch at norm 5 (10 for large); ours clips the gradient of the
# loss summed over time and batch at clipping_norm x num_steps x batch_size, so
# their 5 is our 5 / num_steps. Their keep_prob p is our dropout 1 - p. Their rate
# stays at 1.0 for max_epoch epochs, then decays by lr_decay every epoch.
_ZAREMBA = {
    "zaremba-small": dict(
        mode="lstm", num_layers=2, embed_dim=200, hidden_dim=200, num_steps=20, batch_size=20,
        dropout=0.0, init_scale=0.1, lr=1.0, clipping_norm=5.0 / 20, epochs=13,
        lr_decay_after=4, lr_decay_per_epoch=0.5,
    ),
    "zaremba-medium": dict(
        mode="lstm", num_layers=2, embed_dim=650, hidden_dim=650, num_steps=35, batch_size=20,
        dropout=0.5, init_scale=0.05, lr=1.0, clipping_norm=5.0 / 35, epochs=39,
        lr_decay_after=6, lr_decay_per_epoch=0.8,
    ),
    "zaremba-large": dict(
        mode="lstm", num_layers=2, embed_dim=1500, hidden_dim=1500, num_steps=35, batch_size=20,
        dropout=0.65, init_scale=0.04, lr=1.0, clipping_norm=10.0 / 35, epochs=55,
        lr_decay_after=14, lr_decay_per_epoch=1 / 1.15,
    ),
}

PRESETS = {"chapter": {}}
for _name, _values in _ZAREMBA.items():
    PRESETS[_name] = _values
    PRESETS[_name + "-tied"] = dict(_values, tied=True)

def from_preset(name, **overrides):
    """Return the config of preset ``name`` with ``overrides`` applied on top."""
    if name not in PRESETS:
        raise ConfigError("unknown preset %r: choose one of %s" % (name, ", ".join(PRESETS)))
    return TrainConfig(**dict(PRESETS[name], **overrides))
