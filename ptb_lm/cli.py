"""Command lines. The only module that reads argv or prints; scripts/ call these ``main`` functions.

Every training flag maps onto a :class:`~ptb_lm.config.TrainConfig` field.
Only the flags given on the command line override the preset (or the resumed
checkpoint's config), so ``--preset zaremba-small --lr 0.5`` changes only the rate.
"""

import argparse
import dataclasses
import logging
import os
import socket
import sys

from ._compat import MXNetUnavailable
from .config import PRESETS, TrainConfig
from .errors import Interrupted, TrainingDiverged, UserError

# flag -> (type, help); the default shown is TrainConfig's
_TRAIN_FLAGS = [
    ("--mode", str, "cell: rnn_relu, rnn_tanh, lstm or gru"),
    ("--embed-dim", int, "embedding size"),
    ("--hidden-dim", int, "hidden state size of each RNN layer"),
    ("--num-layers", int, "number of stacked RNN layers"),
    ("--dropout", float, "dropout rate on embeddings, between layers and on outputs, in [0, 1)"),
    ("--lr", float, "SGD learning rate (no momentum, no weight decay)"),
    ("--clipping-norm", float, "per-token gradient clipping norm; the global norm is clipped at "
                               "this x num_steps x batch_size"),
    ("--epochs", int, "number of epochs in total (with --resume: up to this many)"),
    ("--batch-size", int, "number of parallel streams per batch"),
    ("--num-steps", int, "truncated-BPTT length: time steps per batch"),
    ("--eval-period", int, "report the training loss every this many batches"),
    ("--eval-batch-size", int, "batch size for validation and test (default: --batch-size, as the seed)"),
    ("--max-batches", int, "stop each epoch after this many batches (smoke runs)"),
    ("--seed", int, "seed Python, NumPy and MXNet (default: unseeded, as the seed)"),
    ("--engine", str, "fast (hybridized, one wait per batch) or imperative (the seed's loop); same math"),
    ("--data", str, "PTB folder or zip (default: data/ptb/, else data/ptb.zip, else download)"),
    ("--ctx", str, "auto, cpu, gpu, gpu:N, or a list such as gpu:0,1 or cpu:0,1"),
    ("--kvstore", str, "gradient reduction across contexts or workers: device, local or dist_sync"),
    ("--save-dir", str, "write last/ and best/ checkpoints here every epoch"),
    ("--log-json", str, "write one JSON object per line: batch, epoch and test events"),
    ("--lr-decay", float, "multiply the rate by this whenever validation loss fails to improve"),
    ("--lr-decay-after", int, "with --lr-decay-per-epoch: epochs at the full rate before decaying"),
    ("--lr-decay-per-epoch", float, "multiply the rate by this every epoch after --lr-decay-after"),
    ("--init-scale", float, "initialise every weight Uniform(-x, x) (Zaremba) instead of the seed's Xavier"),
    ("--progress", str, "auto (a bar in a terminal, plain lines elsewhere), bar, plain or none"),
]


def _field(flag):
    return flag[2:].replace("-", "_")


def train_parser():
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="ptb-lm-train",
        description="Train a word-level RNN language model on Penn Treebank with MXNet Gluon. "
                    "With no flags it runs the seed chapter's configuration and math.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", default="seed",
                        help="a named set of flag values, which explicit flags override: %s" % ", ".join(PRESETS))
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run saved in DIR (its config, except the flags given here)")
    parser.add_argument("--tied", action="store_true", default=argparse.SUPPRESS,
                        help="share the embedding and decoder weights (needs --embed-dim == --hidden-dim)")
    for flag, kind, text in _TRAIN_FLAGS:
        default = getattr(defaults, _field(flag))
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                            help="%s (default: %s)" % (text, default))
    return parser


def config_from_args(args):
    """The config that parsed ``args`` describe: preset or checkpoint, then the explicit flags."""
    explicit = {k: v for k, v in vars(args).items() if k not in ("preset", "resume")}
    if args.resume:
        from .checkpoint import read_checkpoint

        saved = read_checkpoint(args.resume)[1]
        base = dataclasses.asdict(saved)
        if "save_dir" not in explicit:
            explicit["save_dir"] = args.resume if saved.save_dir is None else saved.save_dir
        return TrainConfig(**dict(base, **explicit))
    from .config import from_preset

    return from_preset(args.preset, **explicit)


def setup_logging(level=logging.INFO):
    """Log lines as they are: information to stdout, warnings and errors to stderr.

    The library only logs; this decides where it goes.
    """
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("ptb_lm")
    root.handlers[:] = [out, err]
    root.setLevel(level)
    root.propagate = False


def _fail(message, code=2):
    sys.stderr.write("ptb-lm: error: %s\n" % message)
    return code


def _run(body):
    """Run ``body()`` with the command lines' error handling: one line on stderr and the exit
    code: 2 for bad input, 1 for divergence, 130 for Ctrl-C (0, or body's own code, otherwise)."""
    setup_logging()
    try:
        return body() or 0
    except (UserError, MXNetUnavailable) as err:
        return _fail(err)
    except TrainingDiverged as err:
        return _fail(err, code=1)
    except Interrupted as err:
        return _fail(err, code=130)


def train_main(argv=None):
    """``ptb-lm-train``: exits 0 on success, 2 on bad input, 1 on divergence, 130 on Ctrl-C."""
    args = train_parser().parse_args(argv)

    def body():
        from .runner import fit

        fit(config_from_args(args), resume=args.resume)

    return _run(body)


def _checkpoint_argument(parser):
    parser.add_argument("checkpoint", help="a save dir (its last/ is used) or a checkpoint folder such as runs/x/best")
    parser.add_argument("--ctx", default="auto", help="auto, cpu, gpu or gpu:N")


def evaluate_main(argv=None):
    """``ptb-lm-evaluate``: perplexity of a checkpoint on a PTB split or on any text file."""
    parser = argparse.ArgumentParser(prog="ptb-lm-evaluate", description=evaluate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--split", default="test", help="valid, test or train (ignored with --text)")
    parser.add_argument("--text", help="a text file, one sentence per line, instead of a PTB split")
    parser.add_argument("--data", help="PTB folder or zip (default: data/ptb/, else data/ptb.zip, else download)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's); it changes "
                                                       "perplexity, since each stream starts from a zero state")
    parser.add_argument("--num-steps", type=int, help="time steps per batch (default: the run's)")
    args = parser.parse_args(argv)

    def body():
        from .checkpoint import checkpoint_folder, load
        from .context import resolve_contexts
        from .data import read_split_texts
        from .download import locate_ptb
        from .errors import DataError
        from .generation import evaluate_text
        from .reporting import perplexity

        ctx = resolve_contexts(args.ctx)[0]
        model, vocab, config = load(args.checkpoint, ctx=ctx)
        if args.text:
            try:
                with open(args.text, encoding="utf-8") as f:
                    lines, source = f.read().splitlines(), args.text
            except OSError as err:
                raise DataError("cannot read --text %s: %s" % (args.text, err.strerror)) from None
        else:
            if args.split not in ("valid", "test", "train"):
                raise DataError("unknown --split %r: use valid, test or train" % args.split)
            lines, source = read_split_texts(locate_ptb(args.data))[args.split].splitlines(), args.split
        batch_size = args.batch_size or config.eval_batch
        num_steps = args.num_steps or config.num_steps
        if batch_size < 1 or num_steps < 1:
            raise DataError("--batch-size and --num-steps must be at least 1")
        try:
            loss, tokens, unknown, scored = evaluate_text(model, vocab, lines, batch_size, num_steps, ctx)
        except ValueError as err:
            raise DataError(str(err)) from None
        logging.getLogger("ptb_lm").info(
            "%s perplexity %.2f (loss %.4f) on %d tokens (%d scored; %d unknown, mapped to <unk>); "
            "eval batch size %d, num_steps %d; checkpoint %s",
            source, perplexity(loss), loss, tokens, scored, unknown, batch_size, num_steps,
            checkpoint_folder(args.checkpoint))

    return _run(body)


def generate_main(argv=None):
    """``ptb-lm-generate``: words sampled from a checkpoint."""
    parser = argparse.ArgumentParser(prog="ptb-lm-generate", description=generate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--words", type=int, default=50, help="how many words to sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="below 1: safer; above 1: more varied")
    parser.add_argument("--seed", type=int, help="seed of the sampler, for a repeatable text")
    parser.add_argument("--prompt", default="", help="words to start from (unknown ones read as <unk>)")
    args = parser.parse_args(argv)

    def body():
        from .checkpoint import load
        from .context import resolve_contexts
        from .errors import ConfigError
        from .generation import generate

        if args.words < 1 or not args.temperature > 0:
            raise ConfigError("--words must be at least 1 and --temperature above 0")
        ctx = resolve_contexts(args.ctx)[0]
        model, vocab, _ = load(args.checkpoint, ctx=ctx)
        words = generate(model, vocab, args.words, args.temperature, args.prompt, args.seed, ctx)
        text = " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")
        sys.stdout.write((args.prompt + " " if args.prompt else "") + text.strip(" ") + "\n")

    return _run(body)


def plot_main(argv=None):
    """``ptb-lm-plot``: a PNG of train and validation perplexity by epoch from a --log-json file."""
    parser = argparse.ArgumentParser(prog="ptb-lm-plot", description=plot_main.__doc__)
    parser.add_argument("log_json", help="the file written by ptb-lm-train --log-json")
    parser.add_argument("--out", help="the PNG to write (default: beside the log, .png)")
    args = parser.parse_args(argv)

    def body():
        from .errors import DataError
        from .reporting import read_jsonl

        try:
            from .plotting import plot_history
        except ImportError:
            raise DataError("plotting needs matplotlib: pip install -e '.[plot]'") from None
        try:
            events = read_jsonl(args.log_json)
        except (OSError, ValueError) as err:
            raise DataError("cannot read %s: %s" % (args.log_json, err)) from None
        out = args.out or os.path.splitext(args.log_json)[0] + ".png"
        try:
            plot_history(events, out)
        except ValueError as err:
            raise DataError(str(err)) from None
        logging.getLogger("ptb_lm").info("wrote %s", out)

    return _run(body)


def launch_main(argv=None):
    """``ptb-lm-launch``: data-parallel training over MXNet's parameter server (kvstore dist_sync).

    Everything after ``--`` goes to each worker's training command, e.g.
    ``ptb-lm-launch --local 2 -- --kvstore dist_sync --epochs 1``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="ptb-lm-launch", description=launch_main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", type=int, metavar="N", help="run N workers on this machine (127.0.0.1)")
    where.add_argument("--hosts", metavar="FILE", help="run the workers over ssh on these hosts, one per line")
    parser.add_argument("--num-workers", type=int, help="with --hosts: how many workers (default: one per host)")
    parser.add_argument("--servers", type=int, default=1, help="parameter-server processes")
    parser.add_argument("--port", type=int, help="the scheduler's port (default: a free one)")
    parser.add_argument("--host-ip", default=None,
                        help="the address workers reach the scheduler at (default: 127.0.0.1 with --local, "
                             "this machine's hostname with --hosts)")
    args = parser.parse_args(own)
    if "--kvstore" not in train_args:
        train_args = ["--kvstore", "dist_sync"] + train_args

    def body():
        from .launcher import launch, read_hosts

        hosts = read_hosts(args.hosts) if args.hosts else None
        workers = args.local if args.local is not None else (args.num_workers or len(hosts))
        host_ip = args.host_ip or ("127.0.0.1" if not hosts else socket.gethostname())
        return launch(workers, train_args, hosts=hosts, num_servers=args.servers, port=args.port, host_ip=host_ip)

    return _run(body)
