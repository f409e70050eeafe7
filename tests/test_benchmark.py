"""scripts/benchmark.py end to end on the tiny corpus: its rows, its ratios, and its PyTorch plumbing.

The PyTorch baseline itself needs torch, which the test environments do not install; here a
stand-in interpreter answers for it with fixed speeds, so that the ratios the table prints
can be checked against the raw runs it writes.
"""
import json
import os
import stat
import statistics

import pytest

from helpers import ROOT, one_line_error, run_cli, write_tiny_corpus

BENCHMARK = os.path.join(ROOT, "scripts", "benchmark.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny corpus, long enough for the benchmark's configs (batch 32 at the chapter's)."""
    return write_tiny_corpus(str(tmp_path_factory.mktemp("bench")), train_lines=400, eval_lines=120)


def stand_in_python(folder, train_tps, eval_tps, import_error=None):
    """An executable that plays ``python`` for scripts/benchmark.py --pytorch: ``-c 'import torch'`` passes
    (or fails with ``import_error``), and running dev/pytorch_baseline.py writes one row at fixed speeds."""
    path = os.path.join(folder, "python")
    row = dict(variant="pytorch", train_tokens_per_sec=train_tps, eval_tokens_per_sec=eval_tps, ms_per_batch=1.0,
               train_loss=1.0, eval_loss=1.0, batches=2, peak_rss_mb=1.0, vocab=31, torch="stand-in", threads=2)
    with open(path, "w") as f:
        f.write("""#!/bin/sh
if [ "$1" = "-c" ]; then
  %s
fi
case "$1" in */dev/pytorch_baseline.py) ;; *) echo "not the baseline: $1" >&2; exit 3;; esac
while [ $# -gt 0 ]; do
  case "$1" in --configs) config=$2;; --json) out=$2;; esac
  shift
done
printf '[%%s]' '%s' | sed "s/CONFIG/$config/" > "$out"
""" % ("echo \"%s\" >&2; exit 1" % import_error if import_error else "exit 0",
       json.dumps(dict(row, config="CONFIG"))))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("same_process", [False, True], ids=["fresh-processes", "same-process"])
def test_the_table_gives_each_variant_as_a_multiple_of_imperative_and_of_pytorch(corpus, tmp_path, same_process):
    python = stand_in_python(str(tmp_path), train_tps=1000.0, eval_tps=4000.0)
    out = str(tmp_path / "bench.json")
    result = run_cli([BENCHMARK, "--data", corpus, "--configs", "chapter", "--variants", "imperative,fast",
                      "--max-batches", "2", "--eval-batches", "2", "--warmup", "1", "--rounds", "2",
                      "--pytorch", python, "--json", out] + (["--same-process"] if same_process else []))
    assert result.returncode == 0, result.stderr
    table = json.load(open(out))
    runs = {(r["variant"], r["round"]): r for r in table["runs"]}
    assert sorted(runs) == [(v, k) for v in ("fast", "imperative", "pytorch") for k in (0, 1)]
    rows = {r["variant"]: r for r in table["rows"]}
    for variant in ("imperative", "fast", "pytorch"):
        for phase, speed in (("train", 1000.0), ("eval", 4000.0)):
            key = phase + "_tokens_per_sec"
            assert rows[variant]["%s_ratios_to_pytorch" % phase] == pytest.approx(
                [runs[variant, k][key] / speed for k in (0, 1)])
            assert rows[variant]["%s_ratios_to_imperative" % phase] == pytest.approx(
                [runs[variant, k][key] / runs["imperative", k][key] for k in (0, 1)])
            assert rows[variant][key] == pytest.approx(statistics.median(runs[variant, k][key] for k in (0, 1)))
    printed = [line for line in result.stdout.splitlines() if line.startswith("| chapter | fast |")]
    cells = [c.strip() for c in printed[0].strip("|").split("|")]
    assert cells[7] == "%.2f [%.2f-%.2f]" % (statistics.median(rows["fast"]["train_ratios_to_pytorch"]),
                                            min(rows["fast"]["train_ratios_to_pytorch"]),
                                            max(rows["fast"]["train_ratios_to_pytorch"]))


def test_a_pytorch_interpreter_that_cannot_run_the_baseline_is_one_line_before_measuring(corpus, tmp_path):
    args = ["--data", corpus, "--configs", "chapter", "--variants", "fast", "--max-batches", "2",
            "--eval-batches", "2", "--warmup", "1"]
    missing = run_cli([BENCHMARK] + args + ["--pytorch", str(tmp_path / "nowhere" / "python")])
    one_line_error(missing, 1, "--pytorch", "nowhere", alone=True)
    python = stand_in_python(str(tmp_path), 1.0, 1.0, import_error="ModuleNotFoundError: No module named 'torch'")
    without_torch = run_cli([BENCHMARK] + args + ["--pytorch", python])
    one_line_error(without_torch, 1, "cannot import torch", "No module named 'torch'", "pip install torch",
                   alone=True)


@pytest.mark.parametrize("flag", ["--warmup", "--max-batches", "--eval-batches", "--rounds"])
def test_a_count_below_one_is_one_line_before_anything_is_measured(corpus, flag):
    out = run_cli([BENCHMARK, "--data", corpus, "--configs", "chapter", "--variants", "fast", flag, "0"])
    one_line_error(out, 2, flag + " must be a whole number of at least 1", alone=True)
    assert "GEMM peak" not in out.stdout  # nothing started


def test_unknown_loads_configs_and_variants_are_one_line(corpus):
    for args, words in ((["--load", "together:1"], "--load"), (["--load", "crowd:3"], "--load"),
                        (["--configs", "huge"], "unknown --configs huge"), (["--variants", "turbo"], "unknown --variants turbo")):
        one_line_error(run_cli([BENCHMARK, "--data", corpus] + args), 2, words, alone=True)


def test_the_load_table_gives_each_copys_share_of_its_speed_alone(corpus, tmp_path):
    """Two tiny trainings started together, and one beside a busy process: each copy's share is its speed over
    the same config's speed alone, as the runs written to --json say."""
    out = str(tmp_path / "load.json")
    result = run_cli([BENCHMARK, "--data", corpus, "--configs", "chapter", "--load", "together:2", "--load", "busy:1",
                      "--max-batches", "30", "--json", out])
    assert result.returncode == 0, result.stderr
    runs = json.load(open(out))["runs"]
    alone = [r for r in runs if r["load"] == "alone"][0]["speeds"][0]
    together = [r for r in runs if r["load"] == "together:2"][0]
    assert len(together["speeds"]) == 2 and together["shares"] == pytest.approx([s / alone for s in together["speeds"]])
    assert together["fair"] == pytest.approx(1.0 / 2) and [r for r in runs if r["load"] == "busy:1"][0]["fair"] < 1
    row = [l for l in result.stdout.splitlines() if l.startswith("| chapter | ptb_lm | together:2 |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5].startswith("%.2f" % statistics.median(together["shares"]))


def test_the_pytorch_baselines_configs_are_the_benchmarks_shapes():
    """dev/pytorch_baseline.py writes its configs again (it runs where ptb_lm may not import, and here without
    torch, so they are read from its source): each must be the same model and schedule as the benchmark's
    config of that name, or the two columns time different things and the trained rows compare different
    models."""
    import ast

    from ptb_lm.benchmark import CONFIGS, PYTORCH_BASELINE, config_for

    tree = ast.parse(open(PYTORCH_BASELINE).read())
    assigned = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "CONFIGS" for t in node.targets))

    def value(node):  # a literal or arithmetic on literals, such as 5.0 / 20
        return eval(compile(ast.Expression(node), PYTORCH_BASELINE, "eval"), {"__builtins__": {}})

    baseline = {value(key): {kw.arg: value(kw.value) for kw in call.keywords}
                for key, call in zip(assigned.keys, assigned.values)}
    assert set(baseline) == set(CONFIGS)
    for name, theirs in baseline.items():
        ours = config_for(name)
        assert theirs["mode"] == ours.mode and theirs["layers"] == ours.num_layers, name
        assert (theirs["embed"], theirs["hidden"]) == (ours.embed_dim, ours.hidden_dim), name
        assert (theirs["batch"], theirs["steps"]) == (ours.batch_size, ours.num_steps), name
        assert theirs["dropout"] == ours.dropout, name
        assert theirs["lr"] == pytest.approx(ours.lr) and theirs["clipping_norm"] == ours.clipping_norm, name
        if ours.mode == "transformer":
            assert (theirs["heads"], theirs["ffn"]) == (ours.heads, ours.feed_forward), name


def test_the_pytorch_baselines_recipes_are_ptb_lms_presets():
    """Its whole recipes (--train-epochs) must be the presets of the same name, or the trained rows compare
    different models."""
    import ast

    from ptb_lm.benchmark import PYTORCH_BASELINE
    from ptb_lm.config import from_preset

    tree = ast.parse(open(PYTORCH_BASELINE).read())
    assigned = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "RECIPES" for t in node.targets))
    recipes = {ast.literal_eval(key): {kw.arg: eval(compile(ast.Expression(kw.value), "", "eval"), {}) for kw in
                                       call.keywords} for key, call in zip(assigned.keys, assigned.values)}
    assert recipes
    for name, theirs in recipes.items():
        ours = from_preset(name)
        assert (theirs["mode"], theirs["layers"], theirs["embed"], theirs["hidden"]) == (
            ours.mode, ours.num_layers, ours.embed_dim, ours.hidden_dim), name
        assert (theirs["batch"], theirs["steps"], theirs["dropout"]) == (ours.batch_size, ours.num_steps,
                                                                         ours.dropout), name
        assert theirs["lr"] == pytest.approx(ours.lr) and theirs["clipping_norm"] == ours.clipping_norm, name
        assert theirs.get("tied", False) == ours.tied, name
