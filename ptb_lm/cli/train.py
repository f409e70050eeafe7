"""``ptb-lm-train`` (and ``python -m ptb_lm``): the training flags, and the config they describe.

Every training flag maps onto a :class:`~ptb_lm.config.TrainConfig` field.
Only the flags given on the command line override the preset (or the resumed
checkpoint's config), so ``--preset zaremba-small --lr 0.5`` changes only the rate.
Every failure is one line ``ptb-lm: error: ...`` that names the flag as typed.
"""

import argparse
import logging

from ..config import PRESETS, TrainConfig, from_preset, settings_of_run
from ..errors import ConfigError
from .common import Parser, _run


def _betas(text):
    """``--betas 0.9,0.999`` -> (0.9, 0.999)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two numbers such as 0.9,0.999, got %r" % text) from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError("give two numbers such as 0.9,0.999, got %r" % text)
    return values


_betas.__name__ = "B1,B2"


def _sizes(text):
    """``--hidden-sizes 1150,1150,400`` -> (1150, 1150, 400)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give one whole number per layer, such as 1150,1150,400, got %r"
                                         % text) from None
    return values


_sizes.__name__ = "H1,H2,..."


# flag -> (type, help); the default shown is TrainConfig's
_TRAIN_FLAGS = [
    ("--mode", str, "rnn_relu, rnn_tanh, lstm or gru (the chapter's cells), or transformer (a causal "
                    "self-attention model, as the PyTorch example's; it reads each window on its own)"),
    ("--embed-dim", int, "embedding size"),
    ("--hidden-dim", int, "hidden state size of each RNN layer"),
    ("--num-layers", int, "number of stacked RNN layers"),
    ("--hidden-sizes", _sizes, "each RNN layer's size, first to last, where they differ (AWD-LSTM's 1150,1150,400); "
                               "--num-layers and --hidden-dim then follow from it"),
    ("--dropout", float, "dropout rate on embeddings, between layers and on outputs, in [0, 1)"),
    ("--dropout-input", float, "AWD-LSTM's locked dropout on the embeddings: one mask per sequence, shared over "
                               "time, instead of --dropout's there (give --dropout 0); in [0, 1)"),
    ("--dropout-hidden", float, "the same between the RNN layers (AWD's --dropouth)"),
    ("--dropout-output", float, "the same on the last RNN layer's outputs (AWD's --dropout)"),
    ("--dropout-embedding", float, "AWD-LSTM's embedding dropout: whole words (rows of the embedding) dropped at "
                                   "each batch, in [0, 1)"),
    ("--weight-drop", float, "AWD-LSTM's weight drop: DropConnect on each RNN layer's hidden-to-hidden weights, a "
                             "new mask every batch, in [0, 1)"),
    ("--ar", float, "AWD-LSTM's activation regularisation: ALPHA x the mean square of the last layer's outputs "
                    "after dropout, per token (AWD's PTB value: 2; default 0, off)"),
    ("--tar", float, "AWD-LSTM's temporal activation regularisation: BETA x the mean square of those outputs' "
                     "change over one time step, before dropout (AWD's: 1; default 0, off)"),
    ("--heads", int, "transformer: attention heads; they divide the model size (--hidden-dim)"),
    ("--ffn-dim", int, "transformer: the feed-forward size (default: the model size)"),
    ("--lr", float, "learning rate"),
    ("--optimizer", str, "sgd (the chapter's, no state), momentum, adam, adamw, or ntasgd (AWD-LSTM's: SGD, then "
                         "the weights' average once validation stops improving)"),
    ("--momentum", float, "with --optimizer momentum: the momentum (default: 0.9)"),
    ("--nonmono", int, "with --optimizer ntasgd: start averaging when an epoch's validation loss is worse than the "
                       "best of all but the last N epochs (default: 5)"),
    ("--weight-decay", float, "L2 weight decay (decoupled from the moments with adamw)"),
    ("--betas", _betas, "adam and adamw: the moments' decay rates, e.g. 0.9,0.999"),
    ("--clipping-norm", float, "per-token gradient clipping norm; the global norm is clipped at "
                               "this x num_steps x batch_size"),
    ("--epochs", int, "number of epochs in total (with --resume: up to this many)"),
    ("--batch-size", int, "number of parallel streams per batch"),
    ("--num-steps", int, "truncated-BPTT length: time steps per batch"),
    ("--eval-period", int, "report the training loss every this many batches"),
    ("--eval-batch-size", int, "batch size for validation and test (default: --batch-size, as the chapter)"),
    ("--max-batches", int, "stop each epoch after this many batches (smoke runs)"),
    ("--seed", int, "random seed for Python, NumPy and MXNet, for a repeatable run (default: none, unseeded as in the chapter)"),
    ("--engine", str, "fast (hybridized, one wait per batch) or imperative (the chapter's loop); same math"),
    ("--data", str, "PTB folder or zip (default: data/ptb/, else data/ptb.zip, else download)"),
    ("--ctx", str, "auto, cpu, gpu, gpu:N, or a list such as gpu:0,1 or cpu:0,1"),
    ("--kvstore", str, "gradient reduction across contexts or workers: device, local or dist_sync"),
    ("--save-dir", str, "write last/ and best/ checkpoints here every epoch"),
    ("--log-json", str, "write one JSON object per line: batch, epoch and test events"),
    ("--lr-decay", float, "multiply the rate by this whenever validation loss fails to improve"),
    ("--lr-decay-after", int, "with --lr-decay-per-epoch: epochs at the full rate before decaying"),
    ("--lr-decay-per-epoch", float, "multiply the rate by this every epoch after --lr-decay-after"),
    ("--init-scale", float, "initialise every weight Uniform(-x, x) (Zaremba) instead of the chapter's Xavier"),
    ("--progress", str, "auto (a bar in a terminal, none elsewhere), bar or none; the log lines are always printed"),
]


def _field(flag):
    return flag[2:].replace("-", "_")


def train_parser():
    defaults = TrainConfig()
    parser = Parser(
        prog="ptb-lm-train",
        description="Train a word-level RNN language model on Penn Treebank with MXNet Gluon. With no flags it "
                    "runs the configuration and math of the chapter (the d2l-zh chapter \"循环神经网络 — 使用Gluon\"): "
                    "100 epochs, hours on a laptop CPU; add --epochs 1 --max-batches 200 for a one-minute try.",
    )
    parser.add_argument("--preset", default=None, metavar="NAME_OR_FILE",
                        help="a named set of flag values, which explicit flags override: %s; or a JSON file of "
                             "settings (default: chapter)" % ", ".join(PRESETS))
    parser.add_argument("--config", metavar="RUN/config.json",
                        help="train with an earlier run's settings (its config.json, or the checkpoint folder "
                             "holding it), except its --save-dir and --log-json; explicit flags override them")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run saved in DIR (a save dir, or a checkpoint folder such as DIR/last) "
                             "in the save dir that holds it; give --save-dir NEW to branch from an older "
                             "checkpoint. Its settings are kept, except --epochs, --lr and the like given here")
    parser.add_argument("--tied", action="store_true", default=argparse.SUPPRESS,
                        help="share the embedding and decoder weights (needs --embed-dim == --hidden-dim)")
    parser.add_argument("--finetune", action="store_true", default=argparse.SUPPRESS,
                        help="with --resume and --optimizer ntasgd: continue from the weights the run evaluates, "
                             "averaging from the first step, until NT-ASGD's trigger fires (AWD-LSTM's finetune.py)")
    parser.add_argument("--variable-bptt", action="store_true", default=argparse.SUPPRESS,
                        help="AWD-LSTM's window lengths: each batch's drawn around --num-steps (half of it 5%% of the "
                             "time, then normal with deviation 5, at least 5); a seeded run draws the same ones, "
                             "resumed or not")
    for flag, kind, text in _TRAIN_FLAGS:
        default = getattr(defaults, _field(flag))
        shown = "" if "default:" in text else " (default: %s)" % (
            "none" if default is None else ",".join(map(str, default)) if isinstance(default, tuple) else default,)
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                            help=text + shown)
    return parser


def config_from_args(args):
    """The config that parsed ``args`` describe, and the resume point if any.

    Without --resume: the preset, then the explicit flags. With --resume: the
    checkpoint's config, then the explicit flags (:mod:`ptb_lm.resume` refuses
    those that would change the architecture, and --preset).
    """
    explicit = {k: v for k, v in vars(args).items() if k not in ("preset", "resume", "config")}
    if explicit.get("hidden_sizes"):  # the depth and the state's width follow, unless given too (then checked)
        explicit.setdefault("num_layers", len(explicit["hidden_sizes"]))
        explicit.setdefault("hidden_dim", max(explicit["hidden_sizes"]))
    if args.preset is not None and args.config is not None:
        raise ConfigError("--preset and --config both give every setting: give one of them")
    if args.resume:
        from ..resume import ResumePoint

        for flag, value in (("--preset", args.preset), ("--config", args.config)):
            if value is not None:
                raise ConfigError("--resume continues a run with its own settings: drop %s %s (flags such as "
                                  "--epochs or --lr may still be given)" % (flag, value))
        resume_point = ResumePoint(args.resume)
        return resume_point.config_with(explicit), resume_point
    if args.config is not None:
        settings = settings_of_run(args.config)
        logging.getLogger("ptb_lm").info("settings from %s (not its --save-dir or --log-json)", args.config)
        return TrainConfig.from_dict(dict(settings, **explicit)), None
    return from_preset(args.preset or "chapter", **explicit), None


def train_main(argv=None):
    """``ptb-lm-train``: exits 0 on success, 2 on bad input, 1 on divergence, 130 on Ctrl-C."""
    args = train_parser().parse_args(argv)

    def body():
        from ..runner import fit

        config, point = config_from_args(args)
        fit(config, resume=point)

    return _run(body)
