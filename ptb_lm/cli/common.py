"""What every command line shares: a parser with ptb_lm's error voice, logging to the terminal, and the one line
``ptb-lm: error: ...`` that ends any failure, with its exit code.
"""

import argparse
import difflib
import logging
import sys

from ..errors import PtbLmError
from ..reporting import ConsoleHandler
from ..runtime import MXNetUnavailable
from ..runtime.engine import quiet_exit


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
    "--cuda": ("--ctx gpu", ""),
}


def setup_logging(level=logging.INFO, info=None):
    """Log lines as they are: information to ``info`` (stdout unless given), warnings and errors to stderr.

    The library only logs; this decides where it goes.
    """
    out = ConsoleHandler(info or sys.stdout)  # writes above a progress bar, never onto its line
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = ConsoleHandler(sys.stderr, level=logging.WARNING)
    root = logging.getLogger("ptb_lm")
    root.handlers[:] = [out, err]
    root.setLevel(level)
    root.propagate = False


def _fail(message, code=2):
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


def checkpoint_argument(parser):
    parser.add_argument("checkpoint", help="a save dir (its last/ is used) or a checkpoint folder such as runs/x/best")
    parser.add_argument("--ctx", default="auto", help="auto, cpu, gpu or gpu:N (default: auto)")
