"""One immutable object holds every setting of a run; presets are named sets of them, stored as JSON.

The defaults are the chapter's (the d2l-zh Gluon RNN chapter's) hyperparameters, so a run
with no flags does the chapter's math. A config is frozen: training never
changes it; use ``config.replace(...)`` to derive another.

Presets are JSON files of settings (``ptb_lm/presets/NAME.json``), applied over the
defaults; a user's own file works the same way (``from_preset("my.json")``), and a
run's config.json holds every setting of that run (:func:`settings_of_run`).
"""

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigError, arg
from .families import MODES, family_of  # noqa: F401 - MODES: every --mode, named here too
from .families.rnn import RNNFamily

RNN_MODES = RNNFamily.modes
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "ntasgd")
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
    hidden_sizes: Optional[tuple] = None  # RNN: one size per layer (AWD's 1150,1150,400); None: hidden_dim for each
    dropout: float = 0.2  # the chapter's rate, on embeddings, between layers and on outputs
    tied: bool = False  # share embedding and decoder weights (Press & Wolf); off in the chapter
    init_scale: Optional[float] = None  # None: the chapter's Xavier (+ Uniform(0.1) embedding); x: Uniform(x) everywhere
    heads: int = 2  # transformer: attention heads (the PyTorch example's nhead); they divide the model size
    ffn_dim: Optional[int] = None  # transformer: the feed-forward size; None: the model size, as the example's nhid
    # --- regularisers (ptb_lm.regularisers, ptb_lm.dropout); off in the chapter
    dropout_input: float = 0.0  # AWD-LSTM: locked dropout (one mask per sequence) on the embeddings, for --dropout's
    dropout_hidden: float = 0.0  # ... between the RNN layers, for --dropout's there
    dropout_output: float = 0.0  # ... and on the last RNN layer's outputs, for --dropout's there
    dropout_embedding: float = 0.0  # AWD-LSTM: whole words dropped from the embedding (its rows)
    weight_drop: float = 0.0  # AWD-LSTM: DropConnect on each RNN layer's hidden-to-hidden weights, a mask per batch
    variable_bptt: bool = False  # AWD-LSTM: each window's length drawn around num_steps (half of it 5 % of the time)
    ar: float = 0.0  # AWD-LSTM's AR: this x the mean square of the last layer's outputs after dropout, per token
    tar: float = 0.0  # AWD-LSTM's TAR: this x the mean square of their change over one step (before dropout)
    # --- optimisation ----------------------------------------------------
    lr: float = 1.0  # the chapter's plain SGD rate (no momentum, no weight decay)
    optimizer: str = "sgd"  # the chapter's plain SGD; momentum, adam and adamw keep state, which checkpoints hold
    momentum: Optional[float] = None  # optimizer momentum: the momentum; None: 0.9, the usual choice
    nonmono: Optional[int] = None  # optimizer ntasgd: average once validation is worse than the best but the last N; None: 5
    finetune: bool = False  # optimizer ntasgd, resumed: average from the first step, stop when the trigger fires
    weight_decay: float = 0.0  # the chapter has none; L2 in the gradient (sgd, momentum, adam), decoupled in adamw
    betas: tuple = (0.9, 0.999)  # adam and adamw: the moments' decay rates (Kingma & Ba's, and PyTorch's, defaults)
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
        for name in ("betas", "hidden_sizes"):
            if isinstance(getattr(self, name), list):  # as JSON gives them back
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        unknown = unknown_settings(values)
        if unknown:
            raise ConfigError("unknown setting(s): %s" % ", ".join(unknown))
        return cls(**values)

    @property
    def momentum_value(self):
        """The momentum the momentum optimizer uses (0.9 unless given)."""
        return 0.9 if self.momentum is None else self.momentum

    @property
    def nonmono_value(self):
        """NT-ASGD's patience, in epochs (AWD-LSTM's 5 unless given)."""
        return 5 if self.nonmono is None else self.nonmono

    @property
    def feed_forward(self):
        """A transformer's feed-forward size."""
        return self.ffn_dim or self.hidden_dim

    @property
    def layer_dims(self):
        """Each RNN layer's size, first to last: ``hidden_sizes``, or ``hidden_dim`` for every layer."""
        return self.hidden_sizes or (self.hidden_dim,) * self.num_layers

    @property
    def output_dim(self):
        """The size of what the decoder reads: the last layer's (``hidden_dim`` unless ``hidden_sizes`` says)."""
        return self.layer_dims[-1]

    @property
    def eval_batch(self):
        """The batch size evaluation uses."""
        return self.eval_batch_size or self.batch_size

    def validate(self):
        family = family_of(self.mode)
        if self.engine not in ENGINES:
            raise ConfigError("unknown engine %r: choose one of %s" % (self.engine, ", ".join(ENGINES)),
                              setting="engine")
        if self.kvstore not in KVSTORES:
            raise ConfigError("unknown kvstore %r: choose one of %s" % (self.kvstore, ", ".join(KVSTORES)),
                              setting="kvstore")
        if self.progress not in PROGRESS:
            raise ConfigError("unknown progress %r: choose %s" % (self.progress, ", ".join(PROGRESS)),
                              setting="progress")
        for name in ("embed_dim", "hidden_dim", "num_layers", "epochs", "batch_size", "num_steps", "eval_period"):
            check_whole_number(name, getattr(self, name))
        for name in ("max_batches", "eval_batch_size", "lr_decay_after"):
            if getattr(self, name) is not None:
                check_whole_number(name, getattr(self, name), lowest=0 if name == "lr_decay_after" else 1)
        if self.seed is not None:
            check_seed("seed", self.seed)
        _check_range("lr", self.lr, self.lr >= 0, "must be 0 or more")
        _check_range("clipping_norm", self.clipping_norm, self.clipping_norm > 0, "must be above 0")
        _check_range("dropout", self.dropout, 0 <= self.dropout < 1, "must be in [0, 1)")
        for name in ("dropout_input", "dropout_hidden", "dropout_output", "dropout_embedding", "weight_drop"):
            value = getattr(self, name)
            _check_range(name, value, _is_number(value) and 0 <= value < 1, "must be in [0, 1)")
        for name in ("ar", "tar"):
            value = getattr(self, name)
            _check_range(name, value, _is_number(value) and math.isfinite(value) and value >= 0,
                         "must be 0 (off) or more")
        if self.init_scale is not None:
            _check_range("init_scale", self.init_scale, self.init_scale > 0, "must be above 0")
        for name in ("lr_decay", "lr_decay_per_epoch"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, 0 < value <= 1, "must be in (0, 1]")
        if (self.lr_decay_after is None) != (self.lr_decay_per_epoch is None):
            raise ConfigError("lr_decay_after and lr_decay_per_epoch go together: give both or neither",
                              setting="lr_decay_after")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("unknown optimizer %r: choose one of %s" % (self.optimizer, ", ".join(OPTIMIZERS)),
                              setting="optimizer")
        _check_range("weight_decay", self.weight_decay, self.weight_decay >= 0, "must be 0 or more")
        if self.momentum is not None:
            if self.optimizer != "momentum":
                raise ConfigError("momentum goes with --optimizer momentum, not %s" % self.optimizer,
                                  setting="momentum")
            _check_range("momentum", self.momentum, 0 <= self.momentum < 1, "must be in [0, 1)")
        if self.finetune and self.optimizer != "ntasgd":
            raise ConfigError("finetune averages the weights: it goes with --optimizer ntasgd, not %s"
                              % self.optimizer, setting="finetune")
        if self.nonmono is not None:
            if self.optimizer != "ntasgd":
                raise ConfigError("nonmono goes with --optimizer ntasgd, not %s" % self.optimizer, setting="nonmono")
            check_whole_number("nonmono", self.nonmono)
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2 and
                all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            raise ConfigError("betas must be two numbers in [0, 1), such as 0.9,0.999, got %r" % (self.betas,),
                              setting="betas")
        check_whole_number("heads", self.heads)
        if self.ffn_dim is not None:
            check_whole_number("ffn_dim", self.ffn_dim)
        if self.hidden_sizes is not None:
            check_hidden_sizes(self.hidden_sizes, self.num_layers, self.hidden_dim)
        family.check(self)  # what this kind of model cannot take (ptb_lm.families)
        if self.tied and self.embed_dim != self.output_dim:
            if self.hidden_sizes is not None:
                raise ConfigError("tied weights need embed_dim == the last layer's size (the decoder reuses the "
                                  "embedding), got %d and %d" % (self.embed_dim, self.output_dim),
                                  setting="embed_dim")
            raise ConfigError("tied weights need embed_dim == hidden_dim (the decoder reuses the embedding), "
                              "got %d and %d" % (self.embed_dim, self.hidden_dim), setting="embed_dim")


def epoch_seed(seed, epoch):
    """MXNet's seed for ``epoch``: reseeding per epoch makes resuming at an epoch boundary exact."""
    return (seed * 1000003 + epoch) % (2 ** 31)


def unknown_settings(values):
    """The keys of ``values`` that are not TrainConfig fields, sorted."""
    return sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})


def check_whole_number(name, value, lowest=1):
    """Raise ConfigError, naming ``name``, unless ``value`` is an int of at least ``lowest``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        raise ConfigError("%s must be a whole number of at least %d, got %r" % (name, lowest, value), setting=name)


def check_hidden_sizes(sizes, num_layers, hidden_dim):
    """Raise ConfigError unless ``sizes`` is one whole number per layer whose largest is ``hidden_dim``: the
    state's width, which every layer's state is padded to (ptb_lm.model.RNNModel)."""
    if not (isinstance(sizes, tuple) and sizes and
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes)):
        raise ConfigError("%s must be whole numbers of at least 1, one per layer, such as 1150,1150,400, got %r"
                          % (arg("hidden_sizes"), sizes), setting="hidden_sizes")
    if len(sizes) != num_layers:
        raise ConfigError("%s gives %d sizes for %d layers: give one size per layer, or %s"
                          % (arg("hidden_sizes"), len(sizes), num_layers, arg("num_layers", len(sizes))),
                          setting="hidden_sizes")
    if max(sizes) != hidden_dim:
        raise ConfigError("with %s, %s is the widest layer's size (the state's width): give %s, got %d"
                          % (arg("hidden_sizes"), arg("hidden_dim"), arg("hidden_dim", max(sizes)), hidden_dim),
                          setting="hidden_dim")


def check_seed(name, value):
    """Raise ConfigError, naming ``name``, unless ``value`` is a seed MXNet and NumPy take (0 to 2**32 - 1)."""
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 32):
        raise ConfigError("%s must be a whole number from 0 to 2**32 - 1, got %r" % (name, value), setting=name)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(name, value, ok, rule):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok:
        raise ConfigError("%s %s, got %r" % (name, rule, value), setting=name)


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


# Zaremba et al. 2014, "Recurrent neural network regularization", translated to our conventions in
# presets/zaremba-*.json. Their code clips the gradient of the loss summed over time and averaged over
# the batch at norm 5 (10 for large); ours clips the gradient of the loss summed over time and batch at
# clipping_norm x num_steps x batch_size, so their 5 is our 5 / num_steps. Their keep_prob p is our
# dropout 1 - p. Their rate stays at 1.0 for max_epoch epochs, then decays by lr_decay every epoch.
PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
PRESETS = tuple(sorted((name[:-5] for name in os.listdir(PRESET_DIR) if name.endswith(".json")),
                       key=lambda name: (name != "chapter", name)))


def read_settings(path, what="--preset"):
    """The settings in the JSON file at ``path``: an object of TrainConfig fields (ConfigError, naming ``what``).
    Keys beginning with ``_`` are notes beside the settings (a preset's reasons) and are left out."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except OSError as err:
        raise ConfigError("cannot read %s %s (%s): give a JSON file of settings" % (what, path, err.strerror or err)) from None
    except ValueError as err:
        raise ConfigError("%s %s is not JSON (%s)" % (what, path, err)) from None
    if not isinstance(values, dict):
        raise ConfigError("%s %s holds no JSON object of settings" % (what, path))
    values = {key: value for key, value in values.items() if not key.startswith("_")}
    unknown = unknown_settings(values)
    if unknown:
        raise ConfigError("%s %s has unknown setting(s): %s" % (what, path, ", ".join(unknown)))
    return values


def preset_settings(name):
    """The settings of preset ``name``: one of :data:`PRESETS`, or the path of a JSON file of settings."""
    if name in PRESETS:
        return read_settings(os.path.join(PRESET_DIR, name + ".json"))
    if name.endswith(".json") or os.sep in name:
        return read_settings(name)
    raise ConfigError("unknown preset %r: choose one of %s, or give a JSON file of settings" % (name, ", ".join(PRESETS)))


# A run's outputs: a rerun with --config writes its own (the earlier run's save dir already holds a run).
OUTPUTS = ("save_dir", "log_json")


def settings_of_run(path):
    """The settings in a run's config.json (a file, or a checkpoint folder holding one), without its outputs."""
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    values = read_settings(path, "--config")
    return {k: v for k, v in values.items() if k not in OUTPUTS}


def from_preset(name, **overrides):
    """The config of preset ``name`` (a name of :data:`PRESETS` or a JSON file) with ``overrides`` on top."""
    values = dict(preset_settings(name), **overrides)
    try:
        return TrainConfig(**values)
    except TypeError as err:  # a JSON value of the wrong kind that a check cannot name
        raise ConfigError("preset %s: %s" % (name, err)) from None
