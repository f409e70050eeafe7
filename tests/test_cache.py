"""The continuous cache pointer (ptb_lm.cache) against a numpy loop of its formula on the same hidden states, the
repeat that it must make cheap, its search on the validation split alone, and its flags' one-line errors."""
import math
import os

import mxnet as mx
import numpy as np
import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.cache import LAMBDAS, THETAS, CacheSettings, cache_losses
from ptb_lm.checkpoint import Checkpoint
from ptb_lm.data import Corpus, batchify
from ptb_lm.scoring import score_with_cache

from helpers import SCRIPTS, one_line_error, run_cli


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    save = str(tmp_path_factory.mktemp("cache") / "run")
    # Uniform(0.5) weights: states far enough apart that a repeated context finds its first occurrence
    fit(TrainConfig(mode="lstm", embed_dim=32, hidden_dim=32, num_layers=2, batch_size=4, num_steps=5, epochs=2,
                    dropout=0.0, seed=3, init_scale=0.5, data=tiny_corpus, ctx="cpu", progress="none",
                    save_dir=save), quiet=True)
    return save


def oracle_losses(model, source, num_steps, window, theta, lam):
    """Token by token: p = (1 - lam) softmax(logits)[y] + lam * sum_{cached i, x_{i+1} = y} softmax_i(theta h_i.h_t),
    the last ``window`` positions of the stream cached; a stream's first position has p_model alone."""
    model.keep_auxiliary(["hidden"])
    streams = source.shape[1]
    state = model.begin_state(func=mx.nd.zeros, batch_size=streams)
    history = [[] for _ in range(streams)]  # (h_i, x_{i+1})
    with_cache, without, count = 0.0, 0.0, 0
    for i in range(0, source.shape[0] - 1, num_steps):
        steps = min(num_steps, source.shape[0] - 1 - i)
        logits, state, auxiliary = model.with_auxiliary(source[i:i + steps], state)
        logits = logits.asnumpy().astype(np.float64).reshape(steps, streams, -1)
        hidden = auxiliary["hidden"].asnumpy().astype(np.float64)
        targets = source[i + 1:i + 1 + steps].asnumpy().astype(int)
        for t in range(steps):
            for n in range(streams):
                row = np.exp(logits[t, n] - logits[t, n].max())
                p_model = row[targets[t, n]] / row.sum()
                cached = history[n][-window:]
                p = p_model
                if cached:
                    scores = np.array([theta * h.dot(hidden[t, n]) for h, _ in cached])
                    attention = np.exp(scores - scores.max())
                    attention /= attention.sum()
                    p_cache = sum(a for a, (_, word) in zip(attention, cached) if word == targets[t, n])
                    p = (1 - lam) * p_model + lam * p_cache
                with_cache -= math.log(p) if p > 0 else -math.inf
                without -= math.log(p_model)
                count += 1
                history[n].append((hidden[t, n], targets[t, n]))
    return with_cache / count, without / count


@pytest.mark.parametrize("streams,window", [(1, 7), (3, 4), (1, 1000)])
def test_the_cache_is_its_formula_on_the_same_hidden_states(trained, tiny_corpus, streams, window):
    checkpoint = Checkpoint(os.path.join(trained, "last"))
    source = mx.nd.array(batchify(Corpus(tiny_corpus).valid, streams), dtype="int32")
    thetas, lambdas = [0.0, 0.7, 3.0], [0.0, 0.25, 1.0]
    grid, without = cache_losses(checkpoint.build_model(mx.cpu()), source, 5, window, thetas, lambdas)
    assert grid.shape == (3, 3)
    for k, theta in enumerate(thetas):
        for j, lam in enumerate(lambdas):
            expected, expected_without = oracle_losses(checkpoint.build_model(mx.cpu()), source, 5, window, theta,
                                                       lam)
            assert without == pytest.approx(expected_without, rel=1e-6)
            if math.isinf(expected):  # lambda 1: a word never seen before has probability 0
                assert math.isinf(grid[k, j])
            else:
                assert grid[k, j] == pytest.approx(expected, rel=1e-5), (theta, lam)


def test_a_text_that_repeats_itself_is_far_cheaper_with_the_cache(trained, tmp_path):
    words = Checkpoint(os.path.join(trained, "last")).dictionary.idx_to_word
    rng = np.random.RandomState(0)
    first = [" ".join(rng.choice(words[:30], size=8)) for _ in range(12)]  # random words: no structure to learn
    text = tmp_path / "twice.txt"
    text.write_text("\n".join(first + first) + "\n")
    result = score_with_cache(trained, window=200, theta=5.0, lam=0.5, text=str(text))
    assert result["ppl"] < 0.5 * result["ppl_without"], result
    assert result["batch_size"] == 1


def test_the_search_reads_the_validation_split_only(trained, tiny_corpus):
    result = score_with_cache(trained, window=50, search=True, split="test")
    checkpoint = Checkpoint(os.path.join(trained, "last"))
    valid = mx.nd.array(batchify(Corpus(tiny_corpus).valid, 1), dtype="int32")
    grid, without = cache_losses(checkpoint.build_model(mx.cpu()), valid, 5, 50, THETAS, LAMBDAS)
    assert result["search"]["loss"] == pytest.approx(grid.min(), rel=1e-9)
    k, j = np.unravel_index(np.argmin(grid), grid.shape)
    assert (result["settings"].theta, result["settings"].lam) == (THETAS[k], LAMBDAS[j])
    assert result["source"] == "test" and result["loss"] != pytest.approx(result["search"]["loss"])


def test_the_command_says_both_perplexities(trained):
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), trained, "--cache-window", "30", "--cache-search",
                   "--split", "valid"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout + out.stderr
    assert "cache search on the validation split (window 30)" in lines
    assert "valid perplexity" in lines and "with the cache" in lines and "without it" in lines


@pytest.mark.parametrize("flags,words", [
    (["--cache-theta", "1"], ["--cache-window"]),
    (["--cache-window", "10", "--cache-theta", "1"], ["--cache-theta and --cache-lambda"]),
    (["--cache-window", "10", "--cache-theta", "1", "--cache-lambda", "2"], ["--cache-lambda must be in [0, 1]"]),
    (["--cache-window", "0", "--cache-search"], ["--cache-window must be a whole number"]),
    (["--cache-window", "10", "--cache-search", "--cache-lambda", "0.1"], ["--cache-search chooses"]),
])
def test_a_bad_cache_setting_is_one_line(trained, flags, words):
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), trained] + flags)
    one_line_error(out, 2, *words)


def test_settings_are_checked_where_they_are_made():
    with pytest.raises(Exception) as err:
        CacheSettings(10, -1.0, 0.1)
    assert "cache_theta must be 0 or more" in str(err.value)
