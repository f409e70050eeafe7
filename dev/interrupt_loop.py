#!/usr/bin/env python
"""Interrupt ``scripts/train.py`` with SIGINT at random moments, N times, and count the outcomes.

    python dev/interrupt_loop.py 50                       # training runs, SIGINT after 1-8 s
    python dev/interrupt_loop.py 30 --scenario eval       # a large valid split: most interrupts land in evaluation
    python dev/interrupt_loop.py 30 --scenario startup    # SIGINT after 0.5-2 s: during imports and setup

Each run trains on a tiny generated corpus (30 words; 120/20/20 lines, or a 3000-line valid split
with --scenario eval) with --epochs 100000, so only the interrupt ends it. Expected of every run:
exit code 130 and a stderr holding one line, ``ptb-lm: error: interrupted...``, and no
'Segmentation fault' and no 'Traceback'.

With --phase (default) the child runs scripts/train.py through a wrapper that installs a Python
SIGINT handler which notes where the main thread is (the innermost ptb_lm function) and then raises
KeyboardInterrupt just as Python's default handler does. --no-phase runs the script as is.
PYTHONFAULTHANDLER=1 is set in the child so a segfault prints every thread's Python stack; the
stderr of every run that is not a clean 130 is kept in --keep (default: a temp folder).
"""

import argparse
import collections
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
WORDS = ["w%02d" % i for i in range(30)]

# Runs scripts/train.py as __main__ after installing a SIGINT handler that records the phase.
WRAPPER = r"""
import os, runpy, signal, sys
def _note(signum, frame):
    names = []
    while frame is not None:
        names.append("%s:%s" % (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name))
        frame = frame.f_back
    with open(os.environ["INTERRUPT_LOOP_PHASE"], "w") as f:
        f.write(" < ".join(names))
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, _note)
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def write_corpus(folder, rng, valid_lines=20):
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", 120), ("valid", valid_lines), ("test", 20)):
        with open(os.path.join(folder, "ptb.%s.txt" % split), "w") as f:
            for _ in range(n):
                f.write(" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) + " \n")


def classify(stack):
    """The phase a recorded stack (innermost first) is in."""
    if not stack:
        return "no-handler-yet"
    frames = stack.split(" < ")
    names = [f.split(":", 1)[1] for f in frames]
    files = [f.split(":", 1)[0] for f in frames]
    if "<frozen importlib._bootstrap>" in files:
        return "import"
    if "_draw_curves" in names:
        return "plot"
    if "checkpoint.py" in files or "save_checkpoint" in names:
        return "checkpoint"
    if "evaluate" in names:
        return "validation" if "run_epoch" in names else "test-eval"
    if "train_epoch" in names:
        return "train-batches"
    if "assemble" in names or "load_corpus" in names:
        return "setup"
    return "other:" + names[0]


def one_run(args, data, run_dir, delay, index):
    save_dir = os.path.join(run_dir, "run%03d" % index)
    phase_file = os.path.join(run_dir, "phase%03d.txt" % index)
    train = [os.path.join(ROOT, "scripts", "train.py"), "--data", data, "--embed-dim", "8", "--hidden-dim", "8",
             "--batch-size", "4", "--num-steps", "5", "--epochs", "100000", "--ctx", "cpu", "--progress", "none",
             "--save-dir", save_dir] + args.extra
    cmd = [sys.executable, "-c", WRAPPER] + train if args.phase else [sys.executable] + train
    env = dict(os.environ, INTERRUPT_LOOP_PHASE=phase_file)
    if args.faulthandler:
        env["PYTHONFAULTHANDLER"] = "1"
    else:
        env.pop("PYTHONFAULTHANDLER", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "hang"
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    stack = open(phase_file).read() if os.path.exists(phase_file) else ""
    epochs = sum(1 for line in stdout.splitlines() if line.startswith("[Epoch "))
    # The message names the epoch that save_dir/last holds: check that it does.
    match = re.search(r"last holds epoch (\d+)", stderr)
    if match:
        link = os.path.join(save_dir, "last")
        held = os.readlink(link) if os.path.islink(link) else "nothing"
        if held != "epoch-%04d" % int(match.group(1)):
            stderr += "\nINTERRUPT_LOOP: the message says epoch %s, but last holds %s\n" % (match.group(1), held)
    return code, stdout, stderr, stack, epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, help="how many runs to interrupt")
    parser.add_argument("--scenario", choices=("train", "eval", "startup"), default="train")
    parser.add_argument("--min-delay", type=float, help="default: 1 (train, eval), 0.5 (startup)")
    parser.add_argument("--max-delay", type=float, help="default: 8 (train, eval), 2 (startup)")
    parser.add_argument("--seed", type=int, help="seed of the delays and the corpus")
    parser.add_argument("--timeout", type=float, default=20, help="seconds to wait for exit after SIGINT")
    parser.add_argument("--no-phase", dest="phase", action="store_false", help="run train.py without the wrapper")
    parser.add_argument("--no-faulthandler", dest="faulthandler", action="store_false",
                        help="leave PYTHONFAULTHANDLER unset: MXNet's own SIGSEGV handler then reports a crash "
                             "('Segmentation fault: 11', exit 255)")
    parser.add_argument("--keep", help="folder for the stderr of the runs that are not a clean 130")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per run")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    # A shell's background job starts with SIGINT ignored, and its children would inherit that: the
    # SIGINTs sent below would then be ignored too. A Python handler here is reset to the default on exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lo, hi = (0.5, 2.0) if args.scenario == "startup" else (1.0, 8.0)
    lo = lo if args.min_delay is None else args.min_delay
    hi = hi if args.max_delay is None else args.max_delay
    rng = random.Random(args.seed)
    keep = args.keep or tempfile.mkdtemp(prefix="interrupt-loop-")
    os.makedirs(keep, exist_ok=True)
    codes, phases, bad = collections.Counter(), collections.Counter(), []
    segfaults = tracebacks = wrongs = 0
    with tempfile.TemporaryDirectory(prefix="interrupt-loop-") as tmp:
        data = os.path.join(tmp, "data")
        write_corpus(data, rng, valid_lines=3000 if args.scenario == "eval" else 20)
        for i in range(args.n):
            delay = rng.uniform(lo, hi)
            code, stdout, stderr, stack, epochs = one_run(args, data, tmp, delay, i)
            phase = classify(stack) if args.phase else "-"
            segv, tb = "Segmentation fault" in stderr, "Traceback" in stderr
            wrong = "INTERRUPT_LOOP: the message says" in stderr
            segfaults, tracebacks, wrongs = segfaults + segv, tracebacks + tb, wrongs + wrong
            clean = code == 130 and not segv and not tb and not wrong
            codes[code] += 1
            phases[(phase, "ok" if clean else "BAD")] += 1
            if not clean:
                path = os.path.join(keep, "run%03d.txt" % i)
                with open(path, "w") as f:
                    f.write("delay %.2f s, exit %s, phase %s\nstack: %s\n--- stdout\n%s--- stderr\n%s"
                            % (delay, code, phase, stack, stdout, stderr))
                bad.append((i, code, phase, path))
            if args.verbose or not clean:
                print("run %3d: delay %.2f s, exit %s, phase %s, %d epochs%s%s%s" % (
                    i, delay, code, phase, epochs, ", SEGFAULT" if segv else "", ", TRACEBACK" if tb else "",
                    ", WRONG-EPOCH-IN-MESSAGE" if wrong else ""),
                    flush=True)
    print("phases: " + ", ".join("%s %s: %d" % (p, s, n) for (p, s), n in sorted(phases.items())))
    others = sorted((str(c) for c in codes.elements() if c != 130))
    print("%d interrupts: %d exit 130, %d other (codes %s); %d with 'Segmentation fault', %d with 'Traceback', "
          "%d naming an epoch last/ does not hold%s"
          % (args.n, codes[130], args.n - codes[130], " ".join(others) or "-", segfaults, tracebacks, wrongs,
             "; stderr kept in %s" % keep if bad else ""))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
