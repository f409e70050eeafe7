"""``ptb-lm-benchmark``: the fast engine's levers one by one, or each training's share of its speed under load.
"""

import argparse
import json
import os
import sys

from .. import benchmark as bench
from ..runtime import import_mxnet
from ..runtime.engine import ENGINE_MARK, ENGINE_VARIABLE, describe_engine
from ..runtime.threads import DEFAULT_MARK, THREAD_VARIABLES, describe_threads
from .common import Parser, _run


def benchmark_main(argv=None):
    """ptb-lm-benchmark: the engines and the fast engine's levers, one by one, on real PTB, as one table.

    Each variant adds one lever to the one before (ptb_lm.levers names them); see
    ptb_lm/benchmark.py. Compare figures as ratios within one run: a machine's speed
    drifts between runs.
    """
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

    def body():
        batches = args.max_batches if args.max_batches is not None else 400 if args.load else 300
        loads = [bench.parse_company(text) for text in args.load]
        if args.load:
            bench.check_choices(configs, ["fast"], batches, 1, 1, args.rounds)
            bench.check_company(loads)
        else:
            bench.check_choices(configs, variants, batches, args.eval_batches, args.warmup, args.rounds)
        if args.pytorch:
            bench.check_pytorch(args.pytorch)
        _set_environment(args.env)
        out = sys.stdout
        if args.env:
            out.write("environment: %s\n" % " ".join(args.env))
        if args.load:
            runs = bench.load_benchmark(loads, configs, args.data, batches, args.seed, args.rounds, args.pytorch)
            out.write("%d training batches per timed run (chapter's math; --ctx cpu), %d round%s\n"
                      % (batches, args.rounds, "" if args.rounds == 1 else "s"))
            out.write("\n".join(bench.load_table_lines(runs)) + "\n")
            result = {"runs": runs}
        else:
            import_mxnet()  # here, so that a thread count or engine MXNet cannot take is one line
            result = bench.benchmark(configs, variants, args.data, batches, args.eval_batches, args.warmup,
                                     args.seed, args.profile, args.eval_window_tokens, args.rounds,
                                     args.same_process, args.pytorch)
            _write_levers(out, args, result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(result, args=vars(args)), f, indent=2)

    return _run(body)


def _write_levers(out, args, result):
    """The levers' table, and the per-operator profiles if asked for."""
    out.write("MXNet's CPU threads: %s; its engine: %s\n" % (describe_threads(), describe_engine()))
    out.write("GEMM peak (fp32 1024^3, oneDNN FullyConnected): %.1f GFLOP/s\n" % result["gemm_peak_gflops"])
    if args.same_process:
        out.write("all variants of a config in one process, timed in turn (peak RSS: the process's)\n")
    if args.rounds > 1:
        out.write("%d rounds: medians; each ratio is the median of the rounds' own ratios [min-max]\n" % args.rounds)
    out.write("\n".join(bench.table_lines(result, pytorch=bool(args.pytorch))) + "\n")
    for r in result["runs"]:
        if r.get("profile"):
            out.write("\n%s, %s, per-operator time over %d batches:\n%s\n" % (r["config"], r["variant"],
                                                                            args.profile, r["profile"]))


def _set_environment(items):
    """``NAME=VALUE`` items into this process's environment, which the measuring processes inherit; a value
    given so is a choice, even one equal to ptb_lm's default, so its mark goes."""
    marks = dict({name: DEFAULT_MARK for name in THREAD_VARIABLES}, **{ENGINE_VARIABLE: ENGINE_MARK})
    for item in items:
        name, _, value = item.partition("=")
        os.environ[name] = value
        if name in marks:
            os.environ.pop(marks[name], None)
