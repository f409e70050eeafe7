"""A corpus of the user's own (train.txt, valid.txt, test.txt of plain text, with no <unk>), end to end: every tool
after training uses the run's corpus, says what it read, and reads words it never saw as <unk>."""
import json
import os
import random
import shutil

import numpy as np
import pytest

import ptb_lm_onnx
from ptb_lm import TrainConfig, fit
from ptb_lm.checkpoint import Checkpoint
from ptb_lm.data import UNK, Corpus, Dictionary, encode
from ptb_lm.errors import DataError
from ptb_lm.sampling import prompt_ids

from helpers import SCRIPTS, one_line_error, run_cli

WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa", "lam", "mu"]
UNSEEN = "alpha beta zebra gamma\ndelta quagga eps zeta\n" * 3  # zebra and quagga are in no split


def write_own_corpus(folder, seed=0):
    """PyTorch's naming, ordinary words, no <unk> anywhere."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for split, lines in (("train", 150), ("valid", 25), ("test", 25)):
        with open(os.path.join(folder, "%s.txt" % split), "w") as f:
            for _ in range(lines):
                start = rng.randrange(len(WORDS))
                f.write(" ".join(WORDS[(start + k) % len(WORDS)] for k in range(rng.randint(4, 8))) + "\n")
    return folder


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A run trained from its own working directory on ``../corpus``, a relative path, with its log beside it."""
    root = tmp_path_factory.mktemp("own")
    corpus = write_own_corpus(str(root / "corpus"))
    work = root / "work"
    work.mkdir()
    out = run_cli(["--data", "../corpus", "--mode", "lstm", "--embed-dim", "8", "--hidden-dim", "8", "--batch-size",
                   "4", "--num-steps", "5", "--epochs", "2", "--seed", "1", "--ctx", "cpu", "--progress", "none",
                   "--save-dir", "runs/my", "--log-json", "runs/my.jsonl"], cwd=str(work))
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in open(str(work / "runs" / "my.jsonl"))]
    return {"root": root, "corpus": corpus, "work": work, "save": str(work / "runs" / "my"), "stdout": out.stdout,
            "test_ppl": [e for e in events if e["event"] == "test"][-1]["test_ppl"]}


def test_a_corpus_without_unk_gains_it_last_and_ptbs_ids_do_not_move(tmp_path, tiny_corpus):
    own = Corpus(write_own_corpus(str(tmp_path / "c")))
    words = set(open(str(tmp_path / "c" / "train.txt")).read().split()) | {"<eos>"}
    assert own.added_unk and own.dictionary.idx_to_word[-1] == UNK
    assert set(own.dictionary.idx_to_word[:-1]) == words  # nothing else added
    tiny = Corpus(tiny_corpus)  # holds <unk> already, as PTB does: nothing is added, no id moves
    assert not tiny.added_unk
    assert tiny.dictionary.idx_to_word == Corpus(tiny_corpus, add_unk=False).dictionary.idx_to_word
    old = Corpus(str(tmp_path / "c"), add_unk=False)  # a model trained before: its vocabulary as it was
    assert UNK not in old.dictionary.word_to_idx


def test_the_training_log_says_unk_was_added(own_run):
    assert "the data has no <unk>: it is added to the vocabulary" in own_run["stdout"]


def test_evaluate_scores_the_runs_own_corpus_and_says_so(own_run):
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), own_run["save"], "--split", "test", "--ctx", "cpu"],
                  cwd=str(own_run["root"]))  # another working directory: the data path is the run's, absolute
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.endswith("read from %s" % own_run["corpus"])
    assert float(line.split("perplexity ")[1].split()[0]) == pytest.approx(own_run["test_ppl"], abs=0.006)


def test_text_with_unseen_words_is_scored_in_both_packages_alike(own_run, tmp_path):
    text = tmp_path / "unseen.txt"
    text.write_text(UNSEEN)
    out = run_cli([os.path.join(SCRIPTS, "evaluate.py"), own_run["save"], "--text", str(text), "--batch-size", "2",
                   "--ctx", "cpu"])
    assert out.returncode == 0, out.stderr
    assert "6 unknown, read as <unk>" in out.stdout
    mxnet_loss = float(out.stdout.split("(loss ")[1].split(")")[0])
    export = str(tmp_path / "onnx")
    assert run_cli([os.path.join(SCRIPTS, "export.py"), own_run["save"], "--out", export]).returncode == 0
    scored = ptb_lm_onnx.load(export).score(UNSEEN.splitlines(), batch_size=2)
    assert scored["unknown"] == 6
    assert scored["loss"] == pytest.approx(mxnet_loss, abs=1e-4)  # printed with 4 decimals


def test_onnx_score_command_reads_unseen_words(own_run, tmp_path):
    import subprocess
    import sys

    export = str(tmp_path / "onnx")
    assert run_cli([os.path.join(SCRIPTS, "export.py"), own_run["save"], "--out", export]).returncode == 0
    text = tmp_path / "unseen.txt"
    text.write_text(UNSEEN)
    out = subprocess.run([sys.executable, "-c", "import sys; from ptb_lm_onnx.cli import score_main; "
                          "sys.exit(score_main(sys.argv[1:]))", export, str(text)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6 unknown, read as <unk>" in out.stdout


def test_export_without_data_measures_the_runs_corpus(own_run, tmp_path):
    export = str(tmp_path / "onnx")
    out = run_cli([os.path.join(SCRIPTS, "export.py"), own_run["save"], "--out", export], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    described = json.load(open(os.path.join(export, "model.json")))
    assert described["test"]["data"] == os.path.abspath(own_run["corpus"])
    assert "on the test split of %s" % os.path.abspath(own_run["corpus"]) in out.stdout
    # the run's own test perplexity, at the batch size it was measured at (4), within float32's rounding
    assert described["test"]["perplexity"] == pytest.approx(own_run["test_ppl"], rel=1e-4)


def test_export_with_no_data_to_be_found_exports_and_says_no_perplexity_was_measured(own_run, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(own_run["save"], str(moved), symlinks=True)
    with open(str(moved / "last" / "config.json")) as f:
        config = json.load(f)
    assert config["data"] == os.path.abspath(own_run["corpus"])  # stored absolute
    hidden = own_run["corpus"] + ".away"
    os.rename(own_run["corpus"], hidden)  # the corpus is gone: nothing to measure, and PTB is never fetched
    try:
        out = run_cli([os.path.join(SCRIPTS, "export.py"), str(moved), "--out", str(tmp_path / "onnx")],
                      cwd=str(tmp_path))
    finally:
        os.rename(hidden, own_run["corpus"])
    assert out.returncode == 0, out.stderr
    described = json.load(open(str(tmp_path / "onnx" / "model.json")))
    assert "perplexity" not in described["test"] and own_run["corpus"] in described["test"]["skipped"]
    assert "no test perplexity was measured" in out.stdout
    assert not os.path.exists(str(tmp_path / "data"))  # no download was tried


def test_generation_reads_an_unseen_prompt_word_as_unk_and_names_it(own_run):
    args = [os.path.join(SCRIPTS, "generate.py"), own_run["save"], "--words", "12", "--seed", "3", "--ctx", "cpu"]
    unseen = run_cli(args + ["--prompt", "alpha market"])
    as_unk = run_cli(args + ["--prompt", "alpha <unk>"])
    assert unseen.returncode == 0 and as_unk.returncode == 0, unseen.stderr
    assert "not in the vocabulary, read as <unk>: market" in unseen.stderr
    assert unseen.stdout.split()[2:] == as_unk.stdout.split()[2:]
    vocab = Checkpoint(own_run["save"]).dictionary
    assert prompt_ids(vocab, "alpha market")[0] == [vocab.word_to_idx["alpha"], vocab.word_to_idx[UNK]]
    assert vocab.word_to_idx[UNK] != 0
    strict = run_cli(args + ["--prompt", "alpha market", "--strict"])
    one_line_error(strict, 2, "market")


def test_a_vocabulary_without_unk_refuses_unseen_words_by_name():
    old = Dictionary()
    for word in ["<eos>", "alpha", "beta"]:
        old.add_word(word)
    with pytest.raises(DataError, match="zebra"):
        prompt_ids(old, "alpha zebra")
    with pytest.raises(DataError, match="zebra"):
        encode(["alpha zebra beta"], old, unknown=UNK)
    assert prompt_ids(old, "alpha beta")[0] == [1, 2]
    old.add_word(UNK)
    ids, unknown = prompt_ids(old, "alpha zebra")
    assert ids == [1, 3] and unknown == ["zebra"]


def test_the_onnx_model_reads_unseen_prompt_words_as_ptb_lm_does(own_run, tmp_path):
    export = str(tmp_path / "onnx")
    assert run_cli([os.path.join(SCRIPTS, "export.py"), own_run["save"], "--out", export]).returncode == 0
    model = ptb_lm_onnx.load(export)
    assert model.generate(10, prompt="alpha market", seed=2) == model.generate(10, prompt="alpha <unk>", seed=2)
    model.ids.pop(UNK)  # as an export of a model trained before every vocabulary had <unk>
    with pytest.raises(ptb_lm_onnx.ExportError, match="market"):
        model.generate(3, prompt="alpha market", seed=2)
    with pytest.raises(ptb_lm_onnx.ExportError, match="zebra"):
        model.encode(["alpha zebra"])


def test_a_resume_from_another_folder_reads_the_same_data_and_appends_to_the_same_log(own_run, tmp_path):
    save = str(tmp_path / "run")
    shutil.copytree(own_run["save"], save, symlinks=True)
    log = own_run["work"] / "runs" / "my.jsonl"
    before = log.read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_cli(["--resume", save, "--epochs", "3", "--progress", "none"], cwd=str(elsewhere))
    try:
        assert out.returncode == 0, out.stderr
        assert os.listdir(str(elsewhere)) == []  # no log split off into the new working directory
        added = log.read_text()[len(before):]
        assert '"after_epoch": 2' in added and '"epoch": 3' in added
    finally:
        log.write_text(before)


def test_a_refused_branch_leaves_nothing_behind_and_the_corrected_command_runs(own_run, tmp_path, tiny_corpus):
    branch = str(tmp_path / "branch")
    wrong = run_cli(["--resume", own_run["save"] + "/best", "--save-dir", branch, "--data", tiny_corpus,
                     "--epochs", "3", "--progress", "none"])
    one_line_error(wrong, 2, "vocabulary", "--data")
    assert not os.path.exists(branch)
    right = run_cli(["--resume", own_run["save"] + "/best", "--save-dir", branch, "--epochs", "3",
                     "--progress", "none"])
    assert right.returncode == 0, right.stderr
    assert json.load(open(os.path.join(branch, "last", "state.json")))["epoch"] == 3


def test_a_model_trained_before_unk_was_added_resumes_with_its_own_vocabulary(tmp_path):
    """Its checkpoint's vocabulary has no <unk>: the corpus is read as it was then, and the run goes on."""
    corpus = write_own_corpus(str(tmp_path / "c"))
    config = TrainConfig(mode="gru", embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, dropout=0.0, epochs=1,
                         seed=7, data=corpus, ctx="cpu", progress="none", save_dir=str(tmp_path / "run"))
    old = Corpus(corpus, add_unk=False)
    fit(config, corpus=old, quiet=True)
    assert UNK not in Checkpoint(str(tmp_path / "run")).dictionary.word_to_idx
    history = fit(config.replace(epochs=2), resume=str(tmp_path / "run"), quiet=True)
    assert [e["epoch"] for e in history.of("epoch")] == [1, 2]
    assert np.isfinite(history.test["test_ppl"])
