"""Command lines. The only module that reads argv or prints; scripts/ call these ``main`` functions.

Every training flag maps onto a :class:`~ptb_lm.config.TrainConfig` field.
Only the flags given on the command line override the preset (or the resumed
checkpoint's config), so ``--preset zaremba-small --lr 0.5`` changes only the rate.
Every failure is one line ``ptb-lm: error: ...`` that names the flag as typed.
"""

import argparse
import difflib
import json
import logging
import os
import socket
import sys

from .config import PRESETS, TrainConfig, from_preset, settings_of_run
from .errors import ConfigError, PtbLmError
from .runtime import MXNetUnavailable


class Parser(argparse.ArgumentParser):
    """argparse with ptb_lm's error voice (one line, ``ptb-lm: error:``, exit 2) and no prefix matching,
    so that a mistyped flag (``--epoch``) is an error rather than a guess."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super(Parser, self).__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, "ptb-lm: error: %s%s (%s --help lists the flags)\n" % (message, self._hints(message), self.prog))

    def _hints(self, message):
        """For an unrecognized flag: ptb_lm's own for it, as ``: did you mean ...``."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [s for action in self._actions for s in action.option_strings]
        hints = []
        for word in message.split(":", 1)[1].split():
            flag = word.split("=", 1)[0]
            if not flag.startswith("--"):
                continue
            if flag in PYTORCH_FLAGS:
                ours, note = PYTORCH_FLAGS[flag]
                if ours.split()[0] in known:
                    hints.append("%s is ptb_lm's %s%s" % (flag, ours, note))
                continue
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            if close:
                hints.append("did you mean %s?" % close[0])
        return ": " + "; ".join(hints) if hints else ""


# The PyTorch word_language_model example's flags, and ptb_lm's for each.
PYTORCH_FLAGS = {
    "--emsize": ("--embed-dim", ""),
    "--nhid": ("--hidden-dim", ""),
    "--nlayers": ("--num-layers", ""),
    "--bptt": ("--num-steps", ""),
    "--batch_size": ("--batch-size", ""),
    "--clip": ("--clipping-norm", " (the same number: ptb_lm clips the summed gradient at it x num-steps x "
                                  "batch-size)"),
    "--log-interval": ("--eval-period", ""),
    "--save": ("--save-dir", " (a folder of checkpoints)"),
    "--nhead": ("--heads", ""),
    "--dry-run": ("--epochs 1 --max-batches N", ""),
    "--model": ("--mode", " (lstm, gru, rnn_tanh, rnn_relu or transformer, in lower case)"),
    "--tied": ("--tied", ""),
    "--cuda": ("--ctx gpu", ""),
    "--lr": ("--lr", ""),
}

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

# flag -> (type, help); the default shown is TrainConfig's
_TRAIN_FLAGS = [
    ("--mode", str, "rnn_relu, rnn_tanh, lstm or gru (the chapter's cells), or transformer (a causal "
                    "self-attention model, as the PyTorch example's; it reads each window on its own)"),
    ("--embed-dim", int, "embedding size"),
    ("--hidden-dim", int, "hidden state size of each RNN layer"),
    ("--num-layers", int, "number of stacked RNN layers"),
    ("--dropout", float, "dropout rate on embeddings, between layers and on outputs, in [0, 1)"),
    ("--heads", int, "transformer: attention heads; they divide the model size (--hidden-dim)"),
    ("--ffn-dim", int, "transformer: the feed-forward size (default: the model size)"),
    ("--lr", float, "learning rate"),
    ("--optimizer", str, "sgd (the chapter's, no state), momentum, adam or adamw"),
    ("--momentum", float, "with --optimizer momentum: the momentum (default: 0.9)"),
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
    if args.preset is not None and args.config is not None:
        raise ConfigError("--preset and --config both give every setting: give one of them")
    if args.resume:
        from .resume import ResumePoint

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


def setup_logging(level=logging.INFO, info=None):
    """Log lines as they are: information to ``info`` (stdout unless given), warnings and errors to stderr.

    The library only logs; this decides where it goes.
    """
    from .reporting import ConsoleHandler

    out = ConsoleHandler(info or sys.stdout)  # writes above a progress bar, never onto its line
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = ConsoleHandler(sys.stderr, level=logging.WARNING)
    root = logging.getLogger("ptb_lm")
    root.handlers[:] = [out, err]
    root.setLevel(level)
    root.propagate = False


def _fail(message, code=2):
    from .runtime.engine import quiet_exit

    sys.stderr.write("ptb-lm: error: %s\n" % message)
    sys.stderr.flush()
    quiet_exit()  # MXNet's own stderr line at exit would otherwise follow ours
    return code


def _as_typed(err):
    """``err``'s message, naming the flag as typed where it names a setting (``--batch-size``, not ``batch_size``)."""
    import re

    message = err.for_command_line() if isinstance(err, PtbLmError) else str(err)
    setting = getattr(err, "setting", None)
    if setting:
        message = re.sub(r"(?<![\w-])%s(?![\w-])" % re.escape(setting), "--" + setting.replace("_", "-"), message,
                         count=1)
    return message


def _run(body, info=None):
    """Run ``body()`` with the command lines' error handling: one line ``ptb-lm: error: ...`` on stderr
    and the error's exit code (2 bad input, 1 a run that could not go on, 130 Ctrl-C); information lines
    go to ``info`` (stdout unless given)."""
    setup_logging(info=info)
    try:
        return body() or 0
    except PtbLmError as err:
        return _fail(_as_typed(err), err.exit_code)
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
    """ptb-lm-evaluate: perplexity of a checkpoint on a split of the data it was trained on, or on any text file."""
    parser = Parser(prog="ptb-lm-evaluate", description=evaluate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--split", default="test", help="valid, test or train of the run's data (default: test; "
                                                         "ignored with --text)")
    parser.add_argument("--text", help="a UTF-8 text file, one sentence per line, instead of a PTB split")
    parser.add_argument("--data", help="the data whose --split is read: a folder or zip (default: the data the run "
                                       "was trained on)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's); it changes "
                                                       "perplexity, since each stream starts from a zero state")
    parser.add_argument("--num-steps", type=int, help="time steps per batch (default: the run's)")
    parser.add_argument("--context", type=int, help="a transformer only: give each window the tokens before it, "
                                                     "up to this many in all (a sliding window; default: each "
                                                     "window on its own, as in training)")
    args = parser.parse_args(argv)

    def body():
        from .runtime.devices import resolve_contexts
        from .scoring import score_checkpoint

        ctx = resolve_contexts(args.ctx, purpose="evaluating")[0]
        result = score_checkpoint(args.checkpoint, split=args.split, text=args.text, batch_size=args.batch_size,
                                  num_steps=args.num_steps, data=args.data, ctx=ctx, context=args.context)
        from .reporting import describe_reading, format_ppl

        seen = ", context %d" % args.context if args.context else ""
        if not result["carries_state"]:
            seen += "; " + describe_reading(result["num_steps"], args.context)
        read = "; read from %s" % result["data"] if result["data"] else ""
        logging.getLogger("ptb_lm").info(
            "%(source)s perplexity %(shown)s (loss %(loss).4f) on %(tokens)d tokens (%(scored)d scored; "
            "%(unknown)d unknown, read as <unk>); eval batch size %(batch_size)d, num_steps %(num_steps)d%(seen)s; "
            "checkpoint %(checkpoint)s%(read)s" % dict(result, shown=format_ppl(result["ppl"]), seen=seen,
                                                         read=read))

    return _run(body)


def generate_main(argv=None):
    """ptb-lm-generate: words sampled from a checkpoint."""
    parser = Parser(prog="ptb-lm-generate", description=generate_main.__doc__)
    _checkpoint_argument(parser)
    parser.add_argument("--words", type=int, default=50, help="how many words to sample (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="below 1: safer; above 1: more varied (default: 1.0)")
    parser.add_argument("--seed", type=int, help="random seed of the sampler, for a repeatable text "
                                                 "(default: a different text each time)")
    parser.add_argument("--prompt", default="", help="words to start from; words outside the vocabulary read as "
                                                     "<unk>, and are named (default: none, start of a sentence)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse prompt words outside the vocabulary instead of reading them as <unk>")
    args = parser.parse_args(argv)

    def body():
        from .checkpoint import load
        from .runtime.devices import resolve_contexts
        from .reporting import describe_reading
        from .sampling import check_sampling, generate, prompt_ids

        check_sampling(args.words, args.temperature, args.seed)  # before loading anything
        ctx = resolve_contexts(args.ctx, purpose="generating")[0]
        model, vocab, config = load(args.checkpoint, ctx=ctx)
        _, unknown = prompt_ids(vocab, args.prompt)
        if unknown and args.strict:
            from .errors import DataError

            raise DataError("--prompt has words outside the vocabulary: %s" % " ".join(unknown))
        if unknown:
            logging.getLogger("ptb_lm").warning("not in the vocabulary, read as <unk>: %s", " ".join(unknown))
        if not model.carries_state:
            logging.getLogger("ptb_lm").info(describe_reading(config.num_steps, sampling=True))
        words = generate(model, vocab, args.words, args.temperature, args.prompt, args.seed, ctx,
                         window=config.num_steps)
        text = " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")
        sys.stdout.write((args.prompt + " " if args.prompt else "") + text.strip(" ") + "\n")

    return _run(body, info=sys.stderr)  # stdout carries the text alone


def plot_main(argv=None):
    """ptb-lm-plot: a PNG of train and validation perplexity by epoch from a run's --log-json file or save dir."""
    parser = Parser(prog="ptb-lm-plot", description=plot_main.__doc__)
    parser.add_argument("log_json", metavar="RUN", help="the file written by ptb-lm-train --log-json, or a save dir "
                                                        "(its events are in its checkpoints)")
    parser.add_argument("--out", help="the PNG to write (default: the log's name with .png; for a save dir, "
                                      "DIR/curves.png)")
    parser.add_argument("--reference", action="append", default=[], metavar="EPOCH=PPL",
                        help="a validation perplexity printed elsewhere, drawn as a point; repeatable "
                             "(e.g. the chapter's: --reference 14=178.52 --reference 26=173.24)")
    parser.add_argument("--reference-label", default="the chapter", help="the legend of those points "
                                                                         "(default: the chapter)")
    args = parser.parse_args(argv)

    def body():
        from .errors import DataError
        from .reporting import read_events

        try:
            from .plotting import plot_history
        except ImportError:
            raise DataError("plotting needs matplotlib: pip install -e '.[plot]'") from None
        if os.path.isdir(args.log_json):
            events = _run_events(args.log_json)
            out = args.out or os.path.join(args.log_json, "curves.png")
        else:
            try:
                events = read_events(args.log_json)
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


def _run_events(save_dir):
    """A save dir's events: its log's, if it names one that is there (it holds the test figure too), else those
    its last checkpoint holds."""
    from .checkpoint import Checkpoint
    from .reporting import read_events

    checkpoint = Checkpoint(save_dir)
    log = checkpoint.config.log_json
    if log and os.path.isfile(log):
        try:
            return read_events(log)
        except (OSError, ValueError, KeyError):
            pass  # the checkpoint's own events below
    return checkpoint.state["events"]


def launch_main(argv=None):
    """ptb-lm-launch: data-parallel training over MXNet's parameter server (kvstore dist_sync).

    Everything after -- goes to each worker's training command, e.g.
      ptb-lm-launch --local 2 -- --epochs 1 --seed 1                  two workers on this machine
      ptb-lm-launch --hosts hosts.txt -- --epochs 1                   one worker a host, over ssh
      ptb-lm-launch --launcher mpi --num-workers 4 --hostfile H -- ... through mpirun (MXNet's dmlc_tracker)
      ptb-lm-launch --launcher slurm --num-workers 4 -- ...            through srun, inside a SLURM allocation
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = Parser(prog="ptb-lm-launch", description=launch_main.__doc__,
                    usage="%(prog)s (--local N | --hosts FILE | --launcher NAME --num-workers N) [options] -- "
                          "TRAINING FLAGS",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launcher", choices=("local", "ssh", "mpi", "slurm", "sge", "yarn"),
                        help="how to start the processes: local and ssh are ptb_lm's own, supervised launchers "
                             "(--local N and --hosts FILE choose them too); mpi, slurm, sge and yarn go through "
                             "MXNet's dmlc_tracker")
    parser.add_argument("--local", type=int, metavar="N", help="run N workers on this machine (127.0.0.1)")
    parser.add_argument("--hosts", metavar="FILE", help="run the workers over ssh on these hosts, one per line")
    parser.add_argument("--hostfile", metavar="FILE", help="with --launcher mpi: mpirun's host file")
    parser.add_argument("--num-workers", type=int, help="how many workers (default with --hosts: one per host)")
    parser.add_argument("--servers", type=int, default=1, help="parameter-server processes (default: 1)")
    parser.add_argument("--port", type=int, help="the scheduler's port (default: a free one)")
    parser.add_argument("--host-ip", default=None,
                        help="the address workers reach the scheduler at (default: 127.0.0.1 with --local and "
                             "--launcher mpi without a host file, else this machine's hostname)")
    parser.add_argument("--allow-run-as-root", action="store_true",
                        help="with --launcher mpi: let Open MPI run as root, as in most containers (it sets "
                             "OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)")
    parser.add_argument("--tracker-option", action="append", default=[], metavar="OPTION",
                        help="passed to dmlc_tracker as it is (e.g. --tracker-option=--queue=gpu with sge); "
                             "repeatable")
    args = parser.parse_args(own)
    if "--kvstore" not in train_args:
        train_args = ["--kvstore", "dist_sync"] + train_args

    def body():
        from .errors import LaunchError
        from .runtime.launcher import MPI_ROOT_VARIABLES, launch, launch_on_cluster, read_hosts

        launcher = args.launcher or ("ssh" if args.hosts else "local" if args.local is not None else None)
        if launcher is None:
            raise LaunchError("say how to start the workers: --local N, --hosts FILE, or --launcher NAME with "
                              "--num-workers N")
        if (args.local is not None and launcher != "local") or (args.hosts and launcher != "ssh"):
            raise LaunchError("--local goes with --launcher local and --hosts with --launcher ssh: give one of them")
        if args.allow_run_as_root:
            if launcher != "mpi":
                raise LaunchError("--allow-run-as-root goes with --launcher mpi (Open MPI's rule)")
            os.environ.update({name: "1" for name in MPI_ROOT_VARIABLES})  # the tracker's mpirun inherits them
        if launcher in ("local", "ssh"):
            hosts = read_hosts(args.hosts) if launcher == "ssh" else None
            if launcher == "ssh" and not hosts:
                raise LaunchError("--launcher ssh needs --hosts FILE")
            workers = args.local if args.local is not None else (args.num_workers or (len(hosts) if hosts else None))
            if workers is None:
                raise LaunchError("--launcher local needs the number of workers: --local N or --num-workers N")
            host_ip = args.host_ip or ("127.0.0.1" if not hosts else socket.gethostname())
            return launch(workers, train_args, hosts=hosts, num_servers=args.servers, port=args.port,
                          host_ip=host_ip)
        if args.num_workers is None:
            raise LaunchError("--launcher %s needs --num-workers N" % launcher)
        if args.port is not None:
            raise LaunchError("--port goes with ptb_lm's own launchers; dmlc_tracker picks the scheduler's port")
        host_ip = args.host_ip or ("127.0.0.1" if launcher == "mpi" and not args.hostfile else None)
        return launch_on_cluster(launcher, args.num_workers, train_args, num_servers=args.servers, host_ip=host_ip,
                                 host_file=args.hostfile, extra_options=args.tracker_option)

    return _run(body)


def doctor_main(argv=None):
    """ptb-lm-doctor: what this machine can do for ptb_lm (Python, numpy, mxnet and its native libraries, the
    NVIDIA driver and GPUs, the context --ctx auto picks, the PTB data). Paste its output into a bug report."""
    parser = Parser(prog="ptb-lm-doctor", description=doctor_main.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--data-dir", default="data", help="where PTB is looked for (default: data)")
    args = parser.parse_args(argv)

    def body():
        from .runtime.doctor import diagnose, format_report

        report = diagnose(args.data_dir)
        sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else "\n".join(format_report(report)) + "\n")

    return _run(body)


def benchmark_main(argv=None):
    """ptb-lm-benchmark: the engines and the fast engine's levers, one by one, on real PTB, as one table.

    Each variant adds one lever to the one before (ptb_lm.levers names them); see
    ptb_lm/benchmark.py. Compare figures as ratios within one run: a machine's speed
    drifts between runs.
    """
    from . import benchmark as bench

    parser = Parser(prog="ptb-lm-benchmark", description=benchmark_main.__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="PTB folder or zip (default: data/ptb/, else data/ptb.zip, else download)")
    parser.add_argument("--max-batches", type=int, help="training batches timed per variant (default: 300; "
                                                        "400 with --load)")
    parser.add_argument("--eval-batches", type=int, default=300, help="validation batches timed per variant "
                                                                      "(default: 300)")
    parser.add_argument("--warmup", type=int, default=20, help="batches run before timing (default: 20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of every variant (default: 1)")
    parser.add_argument("--configs", default=",".join(bench.CONFIGS),
                        help="comma-separated, from: %s (default: all)" % ", ".join(bench.CONFIGS))
    parser.add_argument("--variants", default=",".join(bench.VARIANTS),
                        help="comma-separated, from: %s (default: all)" % ", ".join(bench.VARIANTS))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set an environment variable in the measuring processes (MXNet knobs), repeatable")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print MXNet's per-operator times over N more batches of each run (default: 0)")
    parser.add_argument("--eval-window-tokens", type=int, default=1024,
                        help="tokens per evaluation call of the eval_windows variant (default: 1024)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, round by round, and print medians (default: 1)")
    parser.add_argument("--same-process", action="store_true",
                        help="set every variant of a config up in one process and time them in turn, --rounds "
                             "times (robust to drift between processes; peak memory is then shared)")
    parser.add_argument("--pytorch", metavar="PYTHON",
                        help="also time the same model in PyTorch, run by this interpreter (one with torch; "
                             "see dev/pytorch_baseline.py)")
    parser.add_argument("--load", action="append", default=[], metavar="together:N|busy:N|pytest",
                        help="instead of the levers: time ptb_lm's training (and with --pytorch, the PyTorch "
                             "baseline's) alone, then N identical copies started together, or one beside N busy "
                             "processes or the test suite, and print each copy's share of its speed alone; "
                             "repeatable. Uses --configs, --max-batches (default here: 400), --rounds, --seed")
    parser.add_argument("--json", help="also write the table and every run here")
    args = parser.parse_args(argv)
    configs, variants = args.configs.split(","), args.variants.split(",")
    if args.load:
        return _load_benchmark(parser, args, configs)

    def body():
        from .runtime.engine import describe_engine
        from .runtime.threads import describe_threads

        batches = 300 if args.max_batches is None else args.max_batches
        bench.check_choices(configs, variants, batches, args.eval_batches, args.warmup, args.rounds)
        if args.pytorch:
            bench.check_pytorch(args.pytorch)
        _set_environment(args.env)
        from .runtime import import_mxnet

        import_mxnet()  # here, so that a thread count or engine MXNet cannot take is one line
        result = bench.benchmark(configs, variants, args.data, batches, args.eval_batches, args.warmup,
                                 args.seed, args.profile, args.eval_window_tokens, args.rounds, args.same_process,
                                 args.pytorch)
        out = sys.stdout
        if args.env:
            out.write("environment: %s\n" % " ".join(args.env))
        out.write("MXNet's CPU threads: %s; its engine: %s\n" % (describe_threads(), describe_engine()))
        out.write("GEMM peak (fp32 1024^3, oneDNN FullyConnected): %.1f GFLOP/s\n" % result["gemm_peak_gflops"])
        if args.same_process:
            out.write("all variants of a config in one process, timed in turn (peak RSS: the process's)\n")
        if args.rounds > 1:
            out.write("%d rounds: medians; each ratio is the median of the rounds' own ratios [min-max]\n"
                      % args.rounds)
        out.write("\n".join(bench.table_lines(result, pytorch=bool(args.pytorch))) + "\n")
        for r in result["runs"]:
            if r.get("profile"):
                out.write("\n%s, %s, per-operator time over %d batches:\n%s\n" % (r["config"], r["variant"],
                                                                                args.profile, r["profile"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(result, args=vars(args)), f, indent=2)

    return _run(body)


def _set_environment(items):
    """``NAME=VALUE`` items into this process's environment, which the measuring processes inherit; a value
    given so is a choice, even one equal to ptb_lm's default, so its mark goes."""
    from .runtime.engine import ENGINE_MARK, ENGINE_VARIABLE
    from .runtime.threads import DEFAULT_MARK, THREAD_VARIABLES

    marks = dict({name: DEFAULT_MARK for name in THREAD_VARIABLES}, **{ENGINE_VARIABLE: ENGINE_MARK})
    for item in items:
        name, _, value = item.partition("=")
        os.environ[name] = value
        if name in marks:
            os.environ.pop(marks[name], None)


def _load_benchmark(parser, args, configs):
    """``ptb-lm-benchmark --load ...``: shares of the speed alone under company."""
    from . import benchmark as bench

    def body():
        loads = [bench.parse_company(text) for text in args.load]
        batches = 400 if args.max_batches is None else args.max_batches
        bench.check_choices(configs, ["fast"], batches, 1, 1, args.rounds)
        if args.pytorch:
            bench.check_pytorch(args.pytorch)
        _set_environment(args.env)
        if args.env:
            sys.stdout.write("environment: %s\n" % " ".join(args.env))
        runs = bench.load_benchmark(loads, configs, args.data, batches, args.seed, args.rounds, args.pytorch)
        sys.stdout.write("%d training batches per timed run (chapter's math; --ctx cpu), %d round%s\n"
                         % (batches, args.rounds, "" if args.rounds == 1 else "s"))
        sys.stdout.write("\n".join(bench.load_table_lines(runs)) + "\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": runs, "args": vars(args)}, f, indent=2)

    return _run(body)


def export_main(argv=None):
    """ptb-lm-export: a checkpoint as an ONNX model, checked against MXNet in ONNX Runtime.

    It writes OUT/model.onnx, OUT/vocab.txt and OUT/model.json; ptb_lm_onnx (pip install
    '.[onnx]') scores and generates with them where MXNet does not run.
    """
    parser = Parser(prog="ptb-lm-export", description=export_main.__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a save dir (its last/ is used) or a checkpoint folder such as runs/x/best")
    parser.add_argument("--out", required=True, help="the folder to write (it must not exist, or be empty)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already holds something")
    parser.add_argument("--route", default="auto", help="auto (MXNet's exporter where it matches, else ptb_lm's), "
                                                         "mxnet or ptb_lm (default: auto)")
    parser.add_argument("--data", help="the data whose test split the export is measured on (default: the data the "
                                       "run was trained on, if it is there; nothing is downloaded)")
    parser.add_argument("--batch-size", type=int, help="the batch size of that measurement (default: the run's)")
    args = parser.parse_args(argv)

    def body():
        from .export import export_onnx

        if args.batch_size is not None:
            from .config import check_whole_number

            check_whole_number("batch_size", args.batch_size)
        export_onnx(args.checkpoint, args.out, route=args.route, force=args.force, data=args.data,
                    test_batch_size=args.batch_size)

    return _run(body)
