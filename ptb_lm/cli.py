"""Command lines. The only module that reads argv or prints; scripts/ call these ``main`` functions.

Every training flag maps onto a :class:`~ptb_lm.config.TrainConfig` field.
Only the flags given on the command line override the preset (or the resumed
checkpoint's config), so ``--preset zaremba-small --lr 0.5`` changes only the rate.
"""

import argparse
import logging
import os
import socket
import sys

from ._compat import MXNetUnavailable
from .config import PRESETS, TrainConfig, from_preset
from .errors import ConfigError, PtbLmError

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
    parser = argparse.ArgumentParser(
        prog="ptb-lm-train",
        description="Train a word-level RNN language model on Penn Treebank with MXNet Gluon. With no flags it "
                    "runs the configuration and math of the chapter (the d2l-zh chapter \"循环神经网络 — 使用Gluon\"): "
                    "100 epochs, hours on a laptop CPU; add --epochs 1 --max-batches 200 for a one-minute try.",
    )
    parser.add_argument("--preset", default=None,
                        help="a named set of flag values, which explicit flags override: %s (default: chapter)"
                        % ", ".join(PRESETS))
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run saved in DIR (a save dir, or a checkpoint folder such as DIR/last) "
                             "in the save dir that holds it; give --save-dir NEW to branch from an older "
                             "checkpoint. Its settings are kept, except --epochs, --lr and the like given here")
    parser.add_argument("--tied", action="store_true", default=argparse.SUPPRESS,
                        help="share the embedding and decoder weights (needs --embed-dim == --hidden-dim)")
    for flag, kind, text in _TRAIN_FLAGS:
        default = getattr(defaults, _field(flag))
        shown = "" if "default:" in text else " (default: %s)" % ("none" if default is None else default)
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                            help=text + shown)
    return parser


def config_from_args(args):
    """The config that parsed ``args`` describe, and the resume point if any.

    Without --resume: the preset, then the explicit flags. With --resume: the
    checkpoint's config, then the explicit flags (:mod:`ptb_lm.resume` refuses
    those that would change the architecture, and --preset).
    """
    explicit = {k: v for k, v in vars(args).items() if k not in ("preset", "resume")}
    if args.resume:
        from .resume import ResumePoint

        if getattr(args, "preset", None) is not None:
            raise ConfigError("--resume continues a run with its own settings: drop --preset %s (flags such as "
                              "--epochs or --lr may still be given)" % args.preset)
        point = ResumePoint(args.resume)
        return point.config_with(explicit), point
    return from_preset(args.preset or "chapter", **explicit), None


def setup_logging(level=logging.INFO):
    """Log lines as they are: information to stdout, warnings and errors to stderr.

    The library only logs; this decides where it goes.
    """
    from .reporting import ConsoleHandler

    out = ConsoleHandler(sys.stdout)  # writes above a progress bar, never onto its line
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = ConsoleHandler(sys.stderr, level=logging.WARNING)
    root = logging.getLogger("ptb_lm")
    root.handlers[:] = [out, err]
    root.setLevel(level)
    root.propagate = False


def _fail(message, code=2):
    sys.stderr.write("ptb-lm: error: %s\n" % message)
    return code


def _run(body):
    """Run ``body()`` with the command lines' error handling: one line ``ptb-lm: error: ...`` on stderr
    and the error's exit code (2 bad input, 1 a run that could not go on, 130 Ctrl-C)."""
    setup_logging()
    try:
        return body() or 0
    except PtbLmError as err:
        return _fail(err, err.exit_code)
    except MXNetUnavailable as err:
        return _fail(err)
    except KeyboardInterrupt:  # before fit's own handler (importing mxnet, setting up) or outside fit
        return _fail("interrupted", 130)


def train_main(argv=None):
    """``ptb-lm-train``: exits 0 on success, 2 on bad input, 1 on divergence, 130 on Ctrl-C."""
    args = train_parser().parse_args(argv)

    def body():
        from .runner import fit

        config, point = config_from_args(args)
        fit(config, resume=point)

    return _run(body)


def _checkpoint_argument(parser):
    parser.add_argument("checkpoint", help="a save dir (its last/ is used) or a checkpoint folder such as runs/x/best")
    parser.add_argument("--ctx", default="auto", help="auto, cpu, gpu or gpu:N (default: auto)")


def evaluate_main(argv=None):
    """ptb-lm-evaluate: perplexity of a checkpoint on a PTB split or on any text file."""
    parser = argparse.ArgumentParser(prog="ptb-lm-evaluate", description=evaluate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--split", default="test", help="valid, test or train (default: test; ignored with --text)")
    parser.add_argument("--text", help="a UTF-8 text file, one sentence per line, instead of a PTB split")
    parser.add_argument("--data", help="PTB folder or zip (default: data/ptb/, else data/ptb.zip, else download)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's); it changes "
                                                       "perplexity, since each stream starts from a zero state")
    parser.add_argument("--num-steps", type=int, help="time steps per batch (default: the run's)")
    args = parser.parse_args(argv)

    def body():
        from .context import resolve_contexts
        from .generation import evaluate_checkpoint

        ctx = resolve_contexts(args.ctx, purpose="evaluating")[0]
        result = evaluate_checkpoint(args.checkpoint, split=args.split, text=args.text, batch_size=args.batch_size,
                                     num_steps=args.num_steps, data=args.data, ctx=ctx)
        logging.getLogger("ptb_lm").info(
            "%(source)s perplexity %(ppl).2f (loss %(loss).4f) on %(tokens)d tokens (%(scored)d scored; "
            "%(unknown)d unknown, mapped to <unk>); eval batch size %(batch_size)d, num_steps %(num_steps)d; "
            "checkpoint %(checkpoint)s" % result)

    return _run(body)


def generate_main(argv=None):
    """ptb-lm-generate: words sampled from a checkpoint."""
    parser = argparse.ArgumentParser(prog="ptb-lm-generate", description=generate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--words", type=int, default=50, help="how many words to sample (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="below 1: safer; above 1: more varied (default: 1.0)")
    parser.add_argument("--seed", type=int, help="random seed of the sampler, for a repeatable text "
                                                 "(default: a different text each time)")
    parser.add_argument("--prompt", default="", help="words to start from; words outside the vocabulary read as "
                                                     "<unk>, and are named (default: none, start of a sentence)")
    args = parser.parse_args(argv)

    def body():
        from .checkpoint import load
        from .context import resolve_contexts
        from .generation import check_sampling, generate

        check_sampling(args.words, args.temperature, args.seed)  # before loading anything
        ctx = resolve_contexts(args.ctx, purpose="generating")[0]
        model, vocab, _ = load(args.checkpoint, ctx=ctx)
        unknown = [w for w in args.prompt.split() if w not in vocab.word_to_idx]
        if unknown:
            logging.getLogger("ptb_lm").warning("not in the vocabulary, read as <unk>: %s", " ".join(unknown))
        words = generate(model, vocab, args.words, args.temperature, args.prompt, args.seed, ctx)
        text = " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")
        sys.stdout.write((args.prompt + " " if args.prompt else "") + text.strip(" ") + "\n")

    return _run(body)


def plot_main(argv=None):
    """ptb-lm-plot: a PNG of train and validation perplexity by epoch from a --log-json file."""
    parser = argparse.ArgumentParser(prog="ptb-lm-plot", description=plot_main.__doc__)
    parser.add_argument("log_json", help="the file written by ptb-lm-train --log-json")
    parser.add_argument("--out", help="the PNG to write (default: the log's name with .png)")
    parser.add_argument("--reference", action="append", default=[], metavar="EPOCH=PPL",
                        help="a validation perplexity printed elsewhere, drawn as a point; repeatable "
                             "(e.g. the chapter's: --reference 14=178.52 --reference 26=173.24)")
    parser.add_argument("--reference-label", default="the chapter", help="the legend of those points "
                                                                         "(default: the chapter)")
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
        except (OSError, ValueError, KeyError) as err:
            raise DataError("cannot read %s: %s" % (args.log_json, err)) from None
        out = args.out or os.path.splitext(args.log_json)[0] + ".png"
        reference = {}
        for item in args.reference:
            epoch, _, ppl = item.partition("=")
            try:
                reference[int(epoch)] = float(ppl)
            except ValueError:
                raise DataError("--reference %r: give EPOCH=PERPLEXITY, e.g. 14=178.52" % item) from None
        try:
            plot_history(events, out, reference=reference, reference_label=args.reference_label)
        except OSError as err:
            raise DataError("cannot write %s: %s" % (out, err.strerror or err)) from None
        logging.getLogger("ptb_lm").info("wrote %s", out)

    return _run(body)


def launch_main(argv=None):
    """ptb-lm-launch: data-parallel training over MXNet's parameter server (kvstore dist_sync).

    Everything after -- goes to each worker's training command, e.g.
    ptb-lm-launch --local 2 -- --epochs 1 --seed 1
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="ptb-lm-launch", description=launch_main.__doc__,
                                     usage="%(prog)s (--local N | --hosts FILE) [options] -- TRAINING FLAGS",
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


def doctor_main(argv=None):
    """ptb-lm-doctor: what this machine can do for ptb_lm (Python, numpy, mxnet and its native libraries, the
    NVIDIA driver and GPUs, the context --ctx auto picks, the PTB data). Paste its output into a bug report."""
    parser = argparse.ArgumentParser(prog="ptb-lm-doctor", description=doctor_main.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--data-dir", default="data", help="where PTB is looked for (default: data)")
    args = parser.parse_args(argv)

    def body():
        import json

        from .doctor import diagnose, format_report

        report = diagnose(args.data_dir)
        sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else "\n".join(format_report(report)) + "\n")

    return _run(body)
