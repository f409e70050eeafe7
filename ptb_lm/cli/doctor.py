"""``ptb-lm-doctor``: what this machine can do for ptb_lm.
"""

import json
import sys

from ..runtime.doctor import diagnose, format_report
from .common import Parser, _run


def doctor_main(argv=None):
    """ptb-lm-doctor: what this machine can do for ptb_lm (Python, numpy, mxnet and its native libraries, the
    NVIDIA driver and GPUs, the context --ctx auto picks, the PTB data). Paste its output into a bug report."""
    parser = Parser(prog="ptb-lm-doctor", description=doctor_main.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--data-dir", default="data", help="where PTB is looked for (default: data)")
    args = parser.parse_args(argv)

    def body():
        report = diagnose(args.data_dir)
        sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else "\n".join(format_report(report)) + "\n")

    return _run(body)
