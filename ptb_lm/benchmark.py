"""Measuring the engines and the fast engine's levers on real PTB (``ptb-lm-benchmark``).

Each variant adds one lever (:class:`~ptb_lm.levers.FastLevers`, named as there) to
the one before::

    imperative        the chapter's loop (the reference)
    hybridized        compiled graphs (static memory), Gluon's Trainer
    flat_update       + one weight and one gradient buffer
    sparse_embedding  + the embedding's gradient row-sparse, updated lazily
    softmax_loss      + the loss through softmax on CPUs
    packed_rnn        + the RNN's parameters packed in the flat buffer
    fast              + kernels (ptb_lm's own, on CPUs): the fast engine, all levers on
    eval_windows      the fast engine, evaluating in windows of about ``window_tokens`` tokens
    pytorch           the same model, loop and data in PyTorch (dev/pytorch_baseline.py, run by
                      another interpreter that has torch)

Each (config, variant) runs in a fresh process (so that peak memory is its own) with the
same data and random seed, or all variants of a config in one process, timed in turn
(``same_process``): on a machine whose speed drifts between processes that is the fairer
comparison of levers. With several rounds, each ratio is taken within a round.

The functions here measure and return rows; ptb_lm.cli prints them.
"""

import json
import multiprocessing
import os
import queue as queue_module
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

from .errors import ConfigError, RunFailure
from .families import family_of, flops_per_token, state_names
from .levers import FastLevers
from .runtime.children import PACKAGE_ROOT, last_line

_NONE = FastLevers.none()
# variant -> (engine, levers, evaluation in windows)
VARIANTS = {
    "imperative": ("imperative", _NONE, False),
    "hybridized": ("fast", _NONE, False),
    "flat_update": ("fast", FastLevers(True, False, False, False, False), False),
    "sparse_embedding": ("fast", FastLevers(True, True, False, False, False), False),
    "softmax_loss": ("fast", FastLevers(True, True, True, False, False), False),
    "packed_rnn": ("fast", FastLevers(True, True, True, True, False), False),
    "fast": ("fast", FastLevers(), False),
    "eval_windows": ("fast", FastLevers(), True),
    "onnx_eval": ("fast", FastLevers(), False),  # evaluation in ONNX Runtime, on the model exported after training
}
# what each variant adds to the one before, for the table
ADDS = {"imperative": "-", "hybridized": "compiled graphs", "flat_update": "flat_update",
        "sparse_embedding": "sparse_embedding", "softmax_loss": "softmax_loss", "packed_rnn": "packed_rnn",
        "fast": "kernels",
        "eval_windows": "eval windows", "onnx_eval": "eval in ONNX Runtime", "pytorch": "-"}

CONFIGS = {
    "chapter": dict(preset="chapter"),
    "zaremba-small-shape": dict(preset="zaremba-small", dropout=0.0),
    "transformer-small-shape": dict(preset="transformer-small"),
}

PYTORCH_BASELINE = os.path.join(PACKAGE_ROOT, "dev", "pytorch_baseline.py")


def check_choices(configs, variants, max_batches, eval_batches, warmup, rounds):
    """Raise ConfigError, naming the flag, unless a benchmark can run with these (before anything starts)."""
    for name, value in (("max_batches", max_batches), ("eval_batches", eval_batches), ("warmup", warmup),
                        ("rounds", rounds)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError("%s must be a whole number of at least 1, got %r" % (name, value), setting=name)
    for kind, given, known in (("configs", configs, CONFIGS), ("variants", variants, VARIANTS)):
        unknown = [name for name in given if name not in known]
        if unknown or not given:
            raise ConfigError("unknown %s %s: choose from %s" % (kind, ", ".join(unknown) or "(none given)",
                                                                  ", ".join(known)), setting=kind)


def peak_rss_mb():
    """This process's peak resident memory in MB: the kernel's VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the peak of the process that spawned this one, if that was larger)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def config_for(config_name, **overrides):
    """The TrainConfig of benchmark config ``config_name`` (its preset and changes), with ``overrides``."""
    from .config import from_preset

    values = dict(CONFIGS[config_name])
    return from_preset(values.pop("preset"), **dict(values, **overrides))


def gflops(config, vocab, train_tokens_per_sec, eval_tokens_per_sec):
    """GFLOP/s from the layer shapes (a training token costs 3x a forward one)."""
    flops = flops_per_token(config, vocab, (config.num_steps + 1) // 2)  # a causal token sees half its window
    return dict(train_gflops=3 * flops * train_tokens_per_sec / 1e9, eval_gflops=flops * eval_tokens_per_sec / 1e9)


def operator_profile(run, config, batches):
    """MXNet's own per-operator time over ``batches`` training batches, as text (the top rows)."""
    from .runtime import import_mxnet
    from .training import train_epoch

    mx = import_mxnet()
    # MXNet's profiler deletes and recreates its file: given os.devnull, it turned /dev/null into a regular
    # file (as root). So it writes into a temporary folder of its own, removed afterwards.
    folder = tempfile.mkdtemp(prefix="ptb-lm-profile-")
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.path.join(folder, "profile.json"))
    mx.profiler.set_state("run")
    train_epoch(run, config.replace(max_batches=batches, eval_period=10 ** 9))
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    text = mx.profiler.dumps(sort_by="total", ascending=False)
    shutil.rmtree(folder, ignore_errors=True)
    lines = text[text.index("operator"):].splitlines()
    return "\n".join(lines[:24])


def build(config_name, variant, corpus, data, seed, warmup):
    """The config and the assembled run of one (config, variant), seeded alike and warmed up."""
    from .assembly import assemble
    from .runner import seed_everything
    from .training import train_epoch

    engine, levers, _ = VARIANTS[variant]
    config = config_for(config_name, engine=engine, seed=seed, data=data, ctx="cpu", progress="none")
    seed_everything(seed)
    run = assemble(config, corpus, levers)
    train_epoch(run, config.replace(max_batches=warmup, eval_period=10 ** 9))  # compile, allocate
    return config, run


def time_variant(config_name, variant, config, run, corpus, max_batches, eval_batches, window_tokens):
    """Train ``max_batches`` batches and evaluate ``eval_batches`` validation batches; one result row."""
    from .training import evaluate, train_epoch

    engine, _, windows = VARIANTS[variant]
    loss, tokens, seconds = train_epoch(run, config.replace(max_batches=max_batches, eval_period=10 ** 9))
    rows = min(eval_batches * config.num_steps + 1, run.eval_source("valid").shape[0])
    source = run.eval_source("valid")[:rows]
    # about window_tokens tokens per call instead of num_steps time steps
    steps = max(config.num_steps, window_tokens // config.eval_batch) if windows else config.num_steps
    if variant == "onnx_eval":
        eval_loss, eval_seconds = onnx_evaluation(run, config, source, steps)
    else:
        evaluate(run.model, source[: 2 * steps + 1], steps, run.eval_loss_fn)  # warm-up
        start = time.time()
        eval_loss = evaluate(run.model, source, steps, run.eval_loss_fn, sync_every_batch=engine == "imperative")
        eval_seconds = time.time() - start
    eval_tokens = (rows - 1) * source.shape[1]
    train_tps, eval_tps = tokens / seconds, eval_tokens / eval_seconds
    return dict(config=config_name, variant=variant, eval_loss=eval_loss, profile=None,
                train_tokens_per_sec=train_tps, eval_tokens_per_sec=eval_tps,
                **gflops(config, len(corpus.dictionary), train_tps, eval_tps),
                train_loss=loss, batches=max_batches, ms_per_batch=1000 * seconds / max_batches,
                peak_rss_mb=peak_rss_mb(), loss_fallbacks=getattr(run.loss_fn, "fallbacks", 0))


def onnx_evaluation(run, config, source, steps):
    """``(mean loss, seconds)`` of evaluating ``source`` with ONNX Runtime on the model as it stands, exported
    by ptb_lm's own graph writer, as ptb_lm_onnx scores (state carried, the loss in numpy)."""
    from ptb_lm_onnx import PortableModel

    from .export import runtime_for

    family = family_of(config.mode)
    graph = family.onnx_graph(config, len(run.corpus.dictionary), family.onnx_weights(run.model))
    portable = PortableModel(runtime_for(graph), run.corpus.dictionary.idx_to_word, config.mode, config.num_layers,
                             config.hidden_dim, state_names=state_names(config.mode))
    ids = source.asnumpy().T.reshape(-1)  # the streams back to back: the same batches again
    portable.score_ids(ids[: 2 * (steps + 1) * source.shape[1]], source.shape[1], steps)  # warm-up
    start = time.time()
    loss, _ = portable.score_ids(ids, source.shape[1], steps)
    return loss, time.time() - start


def _corpus(data):
    from .data import Corpus
    from .download import locate_ptb

    return Corpus(locate_ptb(data))


def measure(config_name, variant, data, max_batches, eval_batches, warmup, seed, profile, window_tokens, queue):
    """One (config, variant) in this fresh process: its peak memory is its own."""
    from .runtime import import_mxnet

    mx = import_mxnet()
    corpus = _corpus(data)
    config, run = build(config_name, variant, corpus, data, seed, warmup)
    row = time_variant(config_name, variant, config, run, corpus, max_batches, eval_batches, window_tokens)
    row["profile"] = operator_profile(run, config, profile) if profile else None
    queue.put(row)
    mx.nd.waitall()


def check_pytorch(python):
    """Raise RunFailure in one line, before anything is measured, unless ``python`` runs and imports torch."""
    if not shutil.which(python):
        raise RunFailure("--pytorch %s: no such program; give the python of an environment that has torch" % python)
    if not os.path.isfile(PYTORCH_BASELINE):
        raise RunFailure("--pytorch needs dev/pytorch_baseline.py of a ptb_lm checkout, and %s is not there"
                         % PYTORCH_BASELINE)
    done = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RunFailure("--pytorch %s cannot import torch (%s); install it there: %s -m pip install torch"
                         % (python, last_line(done.stderr, "exit %d" % done.returncode), python))


def measure_pytorch(python, config_name, data, max_batches, eval_batches, warmup, seed):
    """One row of dev/pytorch_baseline.py, run by ``python`` (an interpreter with torch), for ``config_name``."""
    from .download import locate_ptb

    with tempfile.TemporaryDirectory(prefix="ptb-lm-bench-") as folder:
        out = os.path.join(folder, "row.json")
        done = subprocess.run([python, PYTORCH_BASELINE, locate_ptb(data), "--configs", config_name,
                               "--max-batches", str(max_batches), "--eval-batches", str(eval_batches),
                               "--warmup", str(warmup), "--seed", str(seed), "--json", out],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RunFailure("the PyTorch baseline under %s failed (exit %d): %s"
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
    from .runtime import import_mxnet

    mx = import_mxnet()
    corpus = _corpus(data)
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
    from .runtime import import_mxnet

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
    """Run ``target(*args, queue)`` in a fresh (spawned) process and return what it puts on the queue."""
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
                raise RunFailure("the measuring process for %s / %s failed (exit %s)"
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
    """A row's ratios to ``baseline`` as text: the median, and [min-max] over several rounds."""
    ratios = row["%s_ratios_to_%s" % (phase, baseline)]
    if not ratios:
        return "-"
    if len(ratios) == 1:
        return "%.2f" % ratios[0]
    return "%.2f [%.2f-%.2f]" % (statistics.median(ratios), min(ratios), max(ratios))


def benchmark(configs, variants, data=None, max_batches=300, eval_batches=300, warmup=20, seed=1, profile=0,
              window_tokens=1024, rounds=1, same_process=False, pytorch=None):
    """Measure ``variants`` at ``configs``; return ``{"gemm_peak_gflops", "rows", "runs"}``."""
    peak = gemm_peak()
    runs = []  # round by round, so that a drift of the machine's speed hits every variant alike
    if same_process:
        for name in configs:
            runs += in_subprocess(name, variants, data, max_batches, eval_batches, warmup, seed, window_tokens,
                                  rounds, pytorch, target=measure_interleaved)
    for round_number in range(0 if same_process else rounds):
        for name in configs:
            for variant in variants:
                result = in_subprocess(name, variant, data, max_batches, eval_batches, warmup, seed,
                                       profile if round_number == 0 else 0, window_tokens)
                runs.append(dict(result, round=round_number))
            if pytorch:
                result = measure_pytorch(pytorch, name, data, max_batches, eval_batches, warmup, seed)
                runs.append(dict(result, round=round_number))
    extra = ["pytorch"] if pytorch else []
    rows = [summarise([r for r in runs if r["config"] == name and r["variant"] == variant],
                      {b: [r for r in runs if r["config"] == name and r["variant"] == b]
                       for b in ["imperative"] + extra}, peak)
            for name in configs for variant in list(variants) + extra]
    return {"gemm_peak_gflops": peak, "rows": rows, "runs": runs}


def table_lines(result, pytorch=False):
    """The benchmark's table, as Markdown lines."""
    header = ("config", "variant", "adds", "train tok/s", "x imperative", "eval tok/s", "x imperative") + (
        ("train x pytorch", "eval x pytorch") if pytorch else ()) + (
        "train GFLOP/s", "% of GEMM peak", "ms/batch", "peak RSS MB", "train loss", "eval loss")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["rows"]:
        cells = [r["config"], r["variant"], ADDS[r["variant"]], "%.0f" % r["train_tokens_per_sec"],
                 ratio_text(r, "train"), "%.0f" % r["eval_tokens_per_sec"], ratio_text(r, "eval")]
        if pytorch:
            cells += [ratio_text(r, "train", "pytorch"), ratio_text(r, "eval", "pytorch")]
        cells += ["%.1f" % r["train_gflops"], "%.0f%%" % (100 * r["fraction_of_peak"]), "%.1f" % r["ms_per_batch"],
                  "%.0f" % r["peak_rss_mb"], "%.4f" % r["train_loss"], "%.4f" % r["eval_loss"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- under load: several trainings at once, or one beside other work ------------------------------

# Company a training can have: N identical copies started together, N busy processes (one core each),
# or the project's own test suite.
COMPANY = ("together", "busy", "pytest")


def parse_company(text):
    """``together:N``, ``busy:N`` or ``pytest`` -> ``(kind, n)``; ConfigError names --load otherwise."""
    kind, _, count = text.partition(":")
    try:
        n = int(count) if count else (1 if kind == "pytest" else 0)
    except ValueError:
        n = 0
    if kind not in COMPANY or n < 1 or (kind == "together" and n < 2) or (kind == "pytest" and count):
        raise ConfigError("--load %r: give together:N (N >= 2 identical trainings at once), busy:N (one training "
                          "beside N busy processes) or pytest (one training beside the test suite)" % text,
                          setting="load")
    return kind, n


def fair_share(kind, n, cores):
    """The share of its speed alone a training keeps when the kernel splits the cores evenly among the
    threads that want them: a training alone has one thread per core; a busy process has one thread."""
    if kind == "pytest":
        return None  # the test suite's demand varies as it goes
    wanting = cores * n if kind == "together" else cores + n
    return float(cores) / wanting if wanting > cores else 1.0


def training_command(framework, config_name, data, batches, seed, out, python=None):
    """The command of one timed training: ptb_lm's own command line, or the PyTorch baseline."""
    if framework == "pytorch":
        return [python, PYTORCH_BASELINE, data, "--configs", config_name, "--max-batches", str(batches),
                "--eval-batches", "1", "--warmup", "20", "--seed", str(seed), "--json", out]
    import sys

    values = dict(CONFIGS[config_name])
    command = [sys.executable, "-m", "ptb_lm", "--preset", values.pop("preset")]
    for name, value in values.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    return command + ["--data", data, "--epochs", "1", "--max-batches", str(batches), "--seed", str(seed),
                      "--ctx", "cpu", "--progress", "none", "--eval-period", str(10 ** 6), "--log-json", out]


def training_speed(framework, out):
    """Training tokens/s from a finished command's output file."""
    if framework == "pytorch":
        with open(out) as f:
            return json.load(f)[0]["train_tokens_per_sec"]
    with open(out) as f:
        epochs = [json.loads(line) for line in f if '"epoch"' in line]
    return [e for e in epochs if e.get("event") == "epoch"][-1]["train_tokens_per_sec"]


def run_together(commands, env=None, company=None):
    """Start ``commands`` at once (beside ``company``'s processes, started first) and wait for them."""
    started = []
    try:
        for command in company or []:
            started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                            cwd=PACKAGE_ROOT, start_new_session=True))
        if company:
            time.sleep(2.0)  # let the company get going
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=PACKAGE_ROOT) for c in commands]
        for proc, command in zip(procs, commands):
            _, errors = proc.communicate()
            if proc.returncode != 0:
                raise RunFailure("a timed training failed (exit %d): %s" % (proc.returncode,
                                                                           last_line(errors, "no output")))
    finally:
        import signal

        for proc in started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def check_company(loads):
    """Raise RunFailure in one line, before anything is measured, where a company needs what is not here: the
    test suite is a checkout's (tests/), which an installed ptb_lm does not ship."""
    suite = os.path.join(PACKAGE_ROOT, "tests")
    if any(kind == "pytest" for kind, _ in loads) and not os.path.isdir(suite):
        raise RunFailure("--load pytest runs ptb_lm's test suite beside a training, and %s is not there (ptb_lm is "
                         "installed, not a checkout): run it from a checkout, or use --load busy:N" % suite)


def company_commands(kind, n):
    import sys

    if kind == "busy":
        return [[sys.executable, "-c", "while True: pass"] for _ in range(n)]
    if kind == "pytest":
        return [[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(PACKAGE_ROOT, "tests")]]
    return []


def load_benchmark(loads, configs, data=None, batches=400, seed=1, rounds=1, pytorch=None):
    """Each config's training alone, then under each load of ``loads`` ((kind, n) pairs), ``rounds`` times,
    for ptb_lm and (with ``pytorch``) the PyTorch baseline; returns every measured run."""
    from .download import locate_ptb
    from .runtime.threads import physical_cores

    data = locate_ptb(data)
    frameworks = ["ptb_lm"] + (["pytorch"] if pytorch else [])
    runs = []
    with tempfile.TemporaryDirectory(prefix="ptb-lm-load-") as folder:
        def timed(framework, config_name, copies, company, round_number, label):
            outs = [os.path.join(folder, "%s-%d.json" % (label, k)) for k in range(copies)]
            for out in outs:
                if os.path.exists(out):
                    os.remove(out)
            run_together([training_command(framework, config_name, data, batches, seed, out, pytorch)
                          for out in outs], company=company)
            return [training_speed(framework, out) for out in outs]

        for round_number in range(rounds):
            for config_name in configs:
                for framework in frameworks:
                    alone = timed(framework, config_name, 1, None, round_number, "alone")[0]
                    runs.append(dict(config=config_name, framework=framework, load="alone", round=round_number,
                                     speeds=[alone], alone=alone))
                    for kind, n in loads:
                        copies = n if kind == "together" else 1
                        speeds = timed(framework, config_name, copies, company_commands(kind, n), round_number,
                                       "%s%d" % (kind, n))
                        runs.append(dict(config=config_name, framework=framework, round=round_number,
                                         load="%s:%d" % (kind, n) if kind != "pytest" else kind, speeds=speeds,
                                         alone=alone, shares=[s / alone for s in speeds],
                                         fair=fair_share(kind, n, physical_cores() or 1)))
    return runs


def load_table_lines(runs):
    """One row per (config, framework, load): the speed alone, each copy's speed and its share of it."""
    lines = ["| config | framework | company | alone tok/s | each copy tok/s | share of alone | fair share |",
             "|---|---|---|---|---|---|---|"]
    keys = []
    for r in runs:
        key = (r["config"], r["framework"], r["load"])
        if r["load"] != "alone" and key not in keys:
            keys.append(key)
    for config, framework, load in keys:
        rows = [r for r in runs if (r["config"], r["framework"], r["load"]) == (config, framework, load)]
        alone = statistics.median(r["alone"] for r in rows)
        speeds = [s for r in rows for s in r["speeds"]]
        shares = [s for r in rows for s in r["shares"]]
        fair = rows[0]["fair"]
        lines.append("| %s | %s | %s | %.0f | %s | %.2f [%.2f-%.2f] | %s |" % (
            config, framework, load, alone, " ".join("%.0f" % s for s in speeds), statistics.median(shares),
            min(shares), max(shares), "%.2f" % fair if fair else "-"))
    return lines
