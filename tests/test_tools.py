"""ptb-lm-evaluate, ptb-lm-generate and ptb-lm-plot on a tiny checkpoint, and the plot written during training."""
import json
import math
import os

import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.reporting import read_events

from helpers import SCRIPTS, one_line_error, run_cli


@pytest.fixture(scope="module")
def tiny_run(tiny_corpus, tmp_path_factory):
    """A 2-epoch run on the tiny corpus with checkpoints and a JSON log; returns (save_dir, log, history)."""
    folder = tmp_path_factory.mktemp("run")
    save, log = str(folder / "ckpt"), str(folder / "run.jsonl")
    config = TrainConfig(mode="gru", embed_dim=12, hidden_dim=12, batch_size=4, num_steps=5, epochs=2, seed=2,
                         data=tiny_corpus, ctx="cpu", save_dir=save, log_json=log, progress="none")
    return save, log, fit(config)


def test_training_writes_the_curves_png(tiny_run):
    save, _, _ = tiny_run
    png = os.path.join(save, "curves.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_reports_the_runs_own_test_perplexity(tiny_run, tiny_corpus):
    save, _, history = tiny_run
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), save, "--data", tiny_corpus, "--split", "test",
                   "--ctx", "cpu"])
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    ppl = float(line.split("perplexity ")[1].split()[0])
    assert ppl == pytest.approx(history.test["test_ppl"], abs=0.006)  # printed with 2 decimals
    assert "eval batch size 4" in line and "0 unknown" in line


def test_evaluate_maps_unknown_words_and_the_batch_size_is_printed(tiny_run, tmp_path):
    save, _, _ = tiny_run
    text = tmp_path / "mine.txt"
    text.write_text("w01 w02 w03 zebra w04\nw05 w06 quagga w07 w08 w09\n" * 6)
    results = {}
    for batch in ("1", "3"):
        out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), save, "--text", str(text), "--batch-size", batch,
                       "--ctx", "cpu"])
        assert out.returncode == 0, out.stderr
        line = out.stdout.strip().splitlines()[-1]
        assert "12 unknown" in line and "eval batch size %s" % batch in line
        results[batch] = float(line.split("perplexity ")[1].split()[0])
    assert all(math.isfinite(v) and v > 1 for v in results.values())


def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    """A path that does not exist says so; a folder that exists but holds no checkpoint says that."""
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), str(tmp_path / "none"), "--ctx", "cpu"])
    one_line_error(out, 2, str(tmp_path / "none"), "does not exist", alone=True)
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), str(tmp_path), "--ctx", "cpu"])
    one_line_error(out, 2, str(tmp_path), "is not a checkpoint", alone=True)


def test_generate_is_repeatable_with_a_seed_and_uses_the_vocabulary(tiny_run, tiny_corpus):
    save, _, _ = tiny_run
    args = [os.path.join(SCRIPTS, "generate.py"), save, "--words", "30", "--seed", "7", "--prompt", "w03 w04",
            "--ctx", "cpu"]
    first, second = run_cli(args), run_cli(args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    words = first.stdout.split()
    assert words[:2] == ["w03", "w04"] and len(words) >= 2 + 20  # <eos> becomes a line break
    vocab = set(open(os.path.join(save, "last", "vocab.txt")).read().split())
    assert set(words) <= vocab
    other = run_cli(args[:-4] + ["--seed", "8", "--ctx", "cpu", "--temperature", "1.5"])
    assert other.returncode == 0 and other.stdout != first.stdout


def test_plot_script_writes_a_png_from_the_log(tiny_run, tmp_path):
    _, log, _ = tiny_run
    assert [e["event"] for e in read_events(log)].count("epoch") == 2
    out_png = str(tmp_path / "curves.png")
    out = run_cli([os.path.join(SCRIPTS, "plot.py"), log, "--out", out_png])
    assert out.returncode == 0, out.stderr
    assert open(out_png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"event": "batch", "epoch": 1, "batch": 1, "loss": 1.0, "ppl": 2.7}) + "\n")
    bad = run_cli([os.path.join(SCRIPTS, "plot.py"), str(empty)])
    assert bad.returncode == 2 and "no epoch events" in bad.stderr


def test_plot_draws_reference_points_and_refuses_malformed_ones(tiny_run, tmp_path):
    _, log, _ = tiny_run
    out = str(tmp_path / "ref.png")
    good = run_cli([os.path.join(SCRIPTS, "plot.py"), log, "--out", out, "--reference", "1=30.5", "--reference", "2=25"])
    assert good.returncode == 0, good.stderr
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    bad = run_cli([os.path.join(SCRIPTS, "plot.py"), log, "--out", out, "--reference", "fourteen"])
    assert bad.returncode == 2 and "EPOCH=PERPLEXITY" in bad.stderr and "Traceback" not in bad.stderr


def test_a_one_epoch_plot_has_lines_and_whole_epoch_ticks(tiny_corpus, tmp_path):
    """One epoch: the training reports within it make a line (not a lone point), and the epoch axis ticks
    whole epochs only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ptb_lm.plotting import plot_history

    history = fit(TrainConfig(mode="gru", embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=1, seed=3,
                              data=tiny_corpus, ctx="cpu", progress="none", eval_period=5))
    captured = []
    real_close = plt.close
    plt.close = lambda fig=None: captured.append(fig)
    try:
        plot_history(history.events, str(tmp_path / "one.png"))
    finally:
        plt.close = real_close
    ax = captured[0].axes[0]
    reports = [line for line in ax.get_lines() if line.get_label().startswith("train (reports")][0]
    assert len(reports.get_xdata()) == len(history.of("batch")) >= 2
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
