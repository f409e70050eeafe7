#!/usr/bin/env python
"""Measure the engines, and the fast engine's levers one by one, on real PTB; print one table.

    python scripts/benchmark.py --max-batches 200 --eval-batches 200 --rounds 3 --json bench.json

The variants (``--variants``), each adding one lever to the one before:

    imperative   the chapter's loop (the reference)
    hybridized   compiled graphs (static memory), Gluon's Trainer: one update and one norm term per parameter
    flat         + one weight and one gradient buffer: one dot for the norm, one sgd_update with the clip folded in
    sparse       + the embedding's gradient row-sparse, updated lazily beside the flat buffer
    softmax      + the loss through softmax, whose backward oneDNN runs, instead of log_softmax
                 (ptb_lm.loss)
    fast         + the RNN's parameters packed in the flat buffer in its kernel's order, instead of
                 concatenated by Gluon every batch: the fast engine
    windows      + evaluation in windows of --eval-window-tokens tokens instead of num_steps (training as
                 "fast"); measured slower and bigger here, so the fast engine does not use it
    pytorch      with --pytorch PYTHON: the same model, loop and data in PyTorch (its
                 word_language_model example's code; dev/pytorch_baseline.py), run by that
                 interpreter in each round right after the config's MXNet variants; the table
                 then also gives every variant's speed as a multiple of PyTorch's

Each (config, variant) runs in a fresh process (so peak memory is its own) with the
same data and random seed; with --rounds N every variant runs N times, round by round,
and each ratio is taken within a round, so that a drift of the machine's speed hits
numerator and denominator alike. With --same-process every variant of a config is set up
in one process and they are timed in turn, round after round: on a machine whose speed
differs from one process to the next (this one's did, by tens of percent) that is the
fairer comparison of levers, and fresh processes the one for peak memory.
Training tokens/s is timed after a warm-up, over --max-batches
batches; evaluation tokens/s over --eval-batches batches of the validation split.
GFLOP/s counts the layer shapes (ptb_lm.model.count_flops_per_token; a training
token costs 3x a forward one); the GEMM peak is a 1024^3 fp32 matrix product
measured in the same run through MXNet's FullyConnected (oneDNN).
"""
import argparse
import json
import multiprocessing
import os
import queue as queue_module
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ptb_lm.children import last_line  # noqa: E402

VARIANTS = {
    "imperative": dict(engine="imperative", flat=False, sparse=False, softmax=False, packed=False, window=False),
    "hybridized": dict(engine="fast", flat=False, sparse=False, softmax=False, packed=False, window=False),
    "flat": dict(engine="fast", flat=True, sparse=False, softmax=False, packed=False, window=False),
    "sparse": dict(engine="fast", flat=True, sparse=True, softmax=False, packed=False, window=False),
    "softmax": dict(engine="fast", flat=True, sparse=True, softmax=True, packed=False, window=False),
    "fast": dict(engine="fast", flat=True, sparse=True, softmax=True, packed=True, window=False),
    "windows": dict(engine="fast", flat=True, sparse=True, softmax=True, packed=True, window=True),
}

CONFIGS = {
    "chapter": dict(preset="chapter"),
    "zaremba-small-shape": dict(preset="zaremba-small", dropout=0.0),
}


def peak_rss_mb():
    """This process's peak resident memory in MB: the kernel's VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the peak of the process that spawned this one, if that was larger)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def operator_profile(run, config, batches):
    """MXNet's own per-operator time over ``batches`` training batches, as text (the top rows)."""
    import mxnet as mx

    from ptb_lm.training import train_epoch

    # MXNet's profiler deletes and recreates its file: given os.devnull, it turned /dev/null into a regular
    # file (as root). So it writes into a temporary folder of its own, removed afterwards.
    folder = tempfile.mkdtemp(prefix="ptb-lm-profile-")
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.path.join(folder, "profile.json"))
    mx.profiler.set_state("run")
    train_epoch(run.model, run.updater, run.loss_fn, run.train_plan, config.replace(max_batches=batches,
                                                                                     eval_period=10 ** 9))
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    text = mx.profiler.dumps(sort_by="total", ascending=False)
    shutil.rmtree(folder, ignore_errors=True)
    lines = text[text.index("operator"):].splitlines()
    return "\n".join(lines[:24])


def config_for(config_name, **overrides):
    """The TrainConfig of benchmark config ``config_name`` (its preset and changes), with ``overrides``."""
    from ptb_lm.config import from_preset

    values = dict(CONFIGS[config_name])
    return from_preset(values.pop("preset"), **dict(values, **overrides))


def gflops(config, vocab, train_tokens_per_sec, eval_tokens_per_sec):
    """GFLOP/s from the layer shapes (a training token costs 3x a forward one)."""
    from ptb_lm.model import count_flops_per_token

    flops = count_flops_per_token(config.mode, vocab, config.embed_dim, config.hidden_dim, config.num_layers)
    return dict(train_gflops=3 * flops * train_tokens_per_sec / 1e9, eval_gflops=flops * eval_tokens_per_sec / 1e9)


def build(config_name, variant, corpus, data, seed, warmup):
    """The config and the set-up run of one (config, variant), seeded alike and warmed up."""
    from ptb_lm.runner import seed_everything, setup
    from ptb_lm.training import train_epoch

    levers = VARIANTS[variant]
    config = config_for(config_name, engine=levers["engine"], seed=seed, data=data, ctx="cpu", progress="none")
    seed_everything(seed)
    run = setup(config, corpus, sparse_embedding=levers["sparse"], flat_update=levers["flat"],
                softmax_loss=levers["softmax"], pack_rnn=levers["packed"])
    train_epoch(run.model, run.updater, run.loss_fn, run.train_plan,
                config.replace(max_batches=warmup, eval_period=10 ** 9))  # compile, allocate
    return config, run


def time_variant(config_name, variant, config, run, corpus, max_batches, eval_batches, window_tokens):
    """Train ``max_batches`` batches and evaluate ``eval_batches`` validation batches; one result row."""
    from ptb_lm.training import evaluate, train_epoch

    levers = VARIANTS[variant]
    loss, tokens, seconds = train_epoch(run.model, run.updater, run.loss_fn, run.train_plan,
                                        config.replace(max_batches=max_batches, eval_period=10 ** 9))
    rows = min(eval_batches * config.num_steps + 1, run.eval_source("valid").shape[0])
    source = run.eval_source("valid")[:rows]
    # the "windows" lever: about window_tokens tokens per call instead of num_steps time steps
    steps = max(config.num_steps, window_tokens // config.eval_batch) if levers["window"] else config.num_steps
    evaluate(run.model, source[: 2 * steps + 1], steps, run.eval_loss_fn)  # warm-up
    start = time.time()
    eval_loss = evaluate(run.model, source, steps, run.eval_loss_fn,
                         sync_every_batch=levers["engine"] == "imperative")
    eval_seconds = time.time() - start
    eval_tokens = (rows - 1) * source.shape[1]
    train_tps, eval_tps = tokens / seconds, eval_tokens / eval_seconds
    return dict(config=config_name, variant=variant, eval_loss=eval_loss, profile=None,
                train_tokens_per_sec=train_tps, eval_tokens_per_sec=eval_tps,
                **gflops(config, len(corpus.dictionary), train_tps, eval_tps),
                train_loss=loss, batches=max_batches, ms_per_batch=1000 * seconds / max_batches,
                peak_rss_mb=peak_rss_mb(),
                loss_fallbacks=getattr(run.loss_fn, "fallbacks", 0))


def measure(config_name, variant, data, max_batches, eval_batches, warmup, seed, profile, window_tokens, queue):
    """One (config, variant) in this fresh process: its peak memory is its own."""
    from ptb_lm._compat import import_mxnet
    from ptb_lm.data import Corpus

    mx = import_mxnet()  # not "import mxnet": ptb_lm's way starts MXNet's engine without its stderr line

    corpus = Corpus(data)
    config, run = build(config_name, variant, corpus, data, seed, warmup)
    row = time_variant(config_name, variant, config, run, corpus, max_batches, eval_batches, window_tokens)
    row["profile"] = operator_profile(run, config, profile) if profile else None
    queue.put(row)
    mx.nd.waitall()


def check_pytorch(python):
    """Fail in one line, before anything is measured, unless ``python`` runs and imports torch."""
    if not shutil.which(python):
        raise SystemExit("ptb-lm: error: --pytorch %s: no such program; give the python of an environment "
                         "that has torch" % python)
    done = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("ptb-lm: error: --pytorch %s cannot import torch (%s); install it there: %s -m pip "
                         "install torch" % (python, last_line(done.stderr, "exit %d" % done.returncode), python))


def measure_pytorch(python, config_name, data, max_batches, eval_batches, warmup, seed):
    """One row of dev/pytorch_baseline.py, run by ``python`` (an interpreter with torch), for ``config_name``."""
    with tempfile.TemporaryDirectory(prefix="ptb-lm-bench-") as folder:
        out = os.path.join(folder, "row.json")
        done = subprocess.run([python, os.path.join(ROOT, "dev", "pytorch_baseline.py"), data, "--configs",
                               config_name, "--max-batches", str(max_batches), "--eval-batches", str(eval_batches),
                               "--warmup", str(warmup), "--seed", str(seed), "--json", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit("ptb-lm: error: the PyTorch baseline under %s failed (exit %d): %s"
                             % (python, done.returncode, last_line(done.stderr, "no output")))
        with open(out) as f:
            (row,) = json.load(f)
    return dict(row, profile=None, loss_fallbacks=0, **gflops(config_for(config_name), row["vocab"],
                                                              row["train_tokens_per_sec"], row["eval_tokens_per_sec"]))


def measure_interleaved(config_name, variants, data, max_batches, eval_batches, warmup, seed, window_tokens,
                        rounds, pytorch, queue):
    """Every variant of one config set up in this one process, timed in turn, round after round.

    A drift of the machine's speed between processes then cannot favour one variant; peak
    memory is the process's, shared by all of them. With ``pytorch`` (an interpreter), the
    PyTorch baseline runs in its own process at the end of each round.
    """
    from ptb_lm._compat import import_mxnet
    from ptb_lm.data import Corpus

    mx = import_mxnet()  # not "import mxnet": ptb_lm's way starts MXNet's engine without its stderr line

    corpus = Corpus(data)
    built = [(variant,) + build(config_name, variant, corpus, data, seed, warmup) for variant in variants]
    results = []
    for round_number in range(rounds):
        for variant, config, run in built:
            row = time_variant(config_name, variant, config, run, corpus, max_batches, eval_batches, window_tokens)
            results.append(dict(row, round=round_number))
        if pytorch:
            row = measure_pytorch(pytorch, config_name, data, max_batches, eval_batches, warmup, seed)
            results.append(dict(row, round=round_number))
    queue.put(results)
    mx.nd.waitall()


def gemm_peak(size=1024, repeat=20):
    """GFLOP/s of an fp32 size^3 matrix product, best of 3, through MXNet's fastest GEMM path.

    That is FullyConnected, which the CPU wheel runs on oneDNN, the product the model's
    decoder uses; ``mx.nd.dot`` goes to the wheel's own OpenBLAS instead.
    """
    from ptb_lm._compat import import_mxnet

    mx = import_mxnet()
    a = mx.nd.random.uniform(shape=(size, size))
    b = mx.nd.random.uniform(shape=(size, size))

    def product():
        return mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=size)

    product().wait_to_read()
    best = 0.0
    for _ in range(3):
        start = time.time()
        for _ in range(repeat):
            out = product()
        out.wait_to_read()
        best = max(best, 2 * size ** 3 * repeat / (time.time() - start) / 1e9)
    return best


def in_subprocess(*args, target=measure):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=args + (queue,))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise SystemExit("ptb-lm: error: the measuring process for %s / %s failed (exit %s)"
                                 % (args[0], args[1], proc.exitcode))
    proc.join()
    return result


def summarise(runs, baselines, peak):
    """One table row from a (config, variant)'s runs: medians, and its ratios to each baseline
    taken round by round (``baselines``: name -> that variant's runs, empty if it was not measured)."""
    row = {key: runs[0][key] for key in ("config", "variant", "batches", "train_loss", "eval_loss")}
    for key in ("train_tokens_per_sec", "eval_tokens_per_sec", "train_gflops", "eval_gflops", "ms_per_batch"):
        row[key] = statistics.median([r[key] for r in runs])
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    row["loss_fallbacks"] = max(r["loss_fallbacks"] for r in runs)
    row["gemm_peak_gflops"] = peak
    row["fraction_of_peak"] = row["train_gflops"] / peak
    for name, baseline in baselines.items():
        by_round = {b["round"]: b for b in baseline}
        for phase in ("train", "eval"):
            key = phase + "_tokens_per_sec"
            row["%s_ratios_to_%s" % (phase, name)] = [r[key] / by_round[r["round"]][key] for r in runs
                                                      if r["round"] in by_round]
    return row


def ratio_text(row, phase, baseline="imperative"):
    ratios = row["%s_ratios_to_%s" % (phase, baseline)]
    if not ratios:
        return "-"
    if len(ratios) == 1:
        return "%.2f" % ratios[0]
    return "%.2f [%.2f-%.2f]" % (statistics.median(ratios), min(ratios), max(ratios))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/ptb.zip", help="PTB folder or zip")
    parser.add_argument("--max-batches", type=int, default=300, help="training batches timed per variant")
    parser.add_argument("--eval-batches", type=int, default=300, help="validation batches timed per variant")
    parser.add_argument("--warmup", type=int, default=20, help="batches run before timing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: %s" % ", ".join(CONFIGS))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from: %s" % ", ".join(VARIANTS))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set an environment variable in the measuring processes (MXNet knobs), repeatable")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print MXNet's per-operator times over N more batches of each run")
    parser.add_argument("--eval-window-tokens", type=int, default=1024,
                        help="tokens per evaluation call of the 'windows' variant")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, round by round, and print medians "
                             "(this machine's speed drifts by tens of percent between identical runs)")
    parser.add_argument("--same-process", action="store_true",
                        help="set every variant of a config up in one process and time them in turn, --rounds "
                             "times (robust to drift between processes; peak memory is then shared)")
    parser.add_argument("--pytorch", metavar="PYTHON",
                        help="also time the same model in PyTorch, run by this interpreter (one with torch; "
                             "see dev/pytorch_baseline.py)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    if args.pytorch:
        check_pytorch(args.pytorch)
    from ptb_lm._compat import DEFAULT_MARK, ENGINE_MARK, ENGINE_VARIABLE, THREAD_VARIABLES, MXNetUnavailable

    marks = dict({name: DEFAULT_MARK for name in THREAD_VARIABLES}, **{ENGINE_VARIABLE: ENGINE_MARK})
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value  # inherited by the spawned measuring processes
        if name in marks:  # a value given here is a choice, even one equal to ptb_lm's default: unmark it
            os.environ.pop(marks[name], None)
    from ptb_lm.errors import PtbLmError

    try:
        peak = gemm_peak()  # the first import of mxnet: a thread count it cannot read, or no mxnet at all
    except (PtbLmError, MXNetUnavailable) as err:
        parser.exit(2, "ptb-lm: error: %s\n" % err)
    configs, variants = args.configs.split(","), args.variants.split(",")
    runs = []  # round by round, so that a drift of the machine's speed hits every variant alike
    if args.same_process:
        for name in configs:
            runs += in_subprocess(name, variants, args.data, args.max_batches, args.eval_batches, args.warmup,
                                  args.seed, args.eval_window_tokens, args.rounds, args.pytorch,
                                  target=measure_interleaved)
    for round_number in range(0 if args.same_process else args.rounds):
        for name in configs:
            for variant in variants:
                result = in_subprocess(name, variant, args.data, args.max_batches, args.eval_batches, args.warmup,
                                       args.seed, args.profile if round_number == 0 else 0, args.eval_window_tokens)
                runs.append(dict(result, round=round_number))
            if args.pytorch:
                result = measure_pytorch(args.pytorch, name, args.data, args.max_batches, args.eval_batches,
                                         args.warmup, args.seed)
                runs.append(dict(result, round=round_number))
    pytorch = ["pytorch"] if args.pytorch else []
    rows = [summarise([r for r in runs if r["config"] == name and r["variant"] == variant],
                      {b: [r for r in runs if r["config"] == name and r["variant"] == b]
                       for b in ["imperative"] + pytorch}, peak)
            for name in configs for variant in variants + pytorch]
    header = ("config", "variant", "train tok/s", "x imperative", "eval tok/s", "x imperative") + (
        ("train x pytorch", "eval x pytorch") if args.pytorch else ()) + (
        "train GFLOP/s", "% of GEMM peak", "ms/batch", "peak RSS MB", "train loss", "eval loss")
    if args.env:
        print("environment: %s" % " ".join(args.env))
    from ptb_lm._compat import describe_engine, describe_threads

    print("MXNet's CPU threads: %s; its engine: %s" % (describe_threads(), describe_engine()))
    print("GEMM peak (fp32 1024^3, oneDNN FullyConnected): %.1f GFLOP/s" % peak)
    if args.same_process:
        print("all variants of a config in one process, timed in turn (peak RSS: the process's)")
    if args.rounds > 1:
        print("%d rounds: medians; each ratio is the median of the rounds' own ratios [min-max]" % args.rounds)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["config"], r["variant"], "%.0f" % r["train_tokens_per_sec"], ratio_text(r, "train"),
                 "%.0f" % r["eval_tokens_per_sec"], ratio_text(r, "eval")]
        if args.pytorch:
            cells += [ratio_text(r, "train", "pytorch"), ratio_text(r, "eval", "pytorch")]
        cells += ["%.1f" % r["train_gflops"], "%.0f%%" % (100 * r["fraction_of_peak"]), "%.1f" % r["ms_per_batch"],
                  "%.0f" % r["peak_rss_mb"], "%.4f" % r["train_loss"], "%.4f" % r["eval_loss"]]
        print("| " + " | ".join(cells) + " |")
    for r in runs:
        if r["profile"]:
            print("\n%s, %s, per-operator time over %d batches:\n%s" % (r["config"], r["variant"],
                                                                     args.profile, r["profile"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gemm_peak_gflops": peak, "rows": rows, "runs": runs, "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
