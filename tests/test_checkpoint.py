"""Checkpoints: what they hold, that they reload whole, and that a failing run leaves the best one intact."""
import hashlib
import json
import os

import mxnet as mx
import pytest

from ptb_lm import fit, load
from ptb_lm.data import Corpus, batchify
from ptb_lm.errors import TrainingDiverged
from ptb_lm.training import evaluate

from helpers import ROOT, lstm_config, one_line_error, run_cli, tiny_config


def test_checkpoint_round_trip_reproduces_the_validation_loss(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, epochs=2, save_dir=str(tmp_path / "run"))
    history = fit(config)
    folder = tmp_path / "run" / "last"
    assert sorted(os.listdir(str(folder))) == ["config.json", "model.params", "state.json", "vocab.txt"]
    assert json.loads((folder / "state.json").read_text())["epoch"] == 2
    model, vocab, saved = load(str(tmp_path / "run"))
    assert saved == config and len(vocab) == len(Corpus(tiny_corpus).dictionary)
    source = mx.nd.array(batchify(Corpus(tiny_corpus).valid, 4), dtype="int32")
    assert evaluate(model, source, 5) == pytest.approx(history.of("epoch")[-1]["val_loss"], rel=1e-6)
    assert not any(n.endswith(".pkl") or n.endswith(".pickle") for _, _, f in os.walk(str(tmp_path)) for n in f)


def test_tied_weights_train_and_reload(tiny_corpus, tmp_path):
    config = lstm_config(tiny_corpus, epochs=1, tied=True, save_dir=str(tmp_path / "t"))
    history = fit(config)
    model, _, saved = load(str(tmp_path / "t"))
    assert saved.tied and model.decoder.weight is model.encoder.weight
    assert history.test["test_ppl"] > 1


def sha1(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


def test_divergence_stops_the_run_and_leaves_best_intact(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    fit(lstm_config(tiny_corpus, epochs=1, save_dir=save))
    best_params = os.path.join(save, "best", "model.params")
    before = sha1(best_params)
    with pytest.raises(TrainingDiverged) as err:
        fit(lstm_config(tiny_corpus, epochs=2, save_dir=save, lr=1e38, clipping_norm=1e30), resume=save)
    assert "diverged" in str(err.value)
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001" and sha1(best_params) == before


def test_a_checkpoint_from_a_newer_ptb_lm_is_refused_in_one_line(tiny_corpus, tmp_path):
    from ptb_lm.checkpoint import FORMAT_VERSION

    save = str(tmp_path / "run")
    fit(tiny_config(tiny_corpus, epochs=1, save_dir=save), quiet=True)
    state_path = os.path.join(save, "last", "state.json")
    state = json.load(open(state_path))
    assert state["format_version"] == FORMAT_VERSION
    load(save)  # this version reads its own
    state["format_version"] = FORMAT_VERSION + 1
    with open(state_path, "w") as f:
        json.dump(state, f)
    out = run_cli([os.path.join(ROOT, "scripts", "evaluate.py"), save, "--ctx", "cpu"])
    one_line_error(out, 2, "newer ptb_lm", "format %d" % (FORMAT_VERSION + 1), "upgrade", alone=True)
    del state["format_version"]  # a checkpoint written before the field: version 1, read as before
    with open(state_path, "w") as f:
        json.dump(state, f)
    load(save)


def test_a_staged_folder_is_the_old_one_or_the_whole_new_one(tmp_path, monkeypatch):
    from ptb_lm.files import staged_folder

    final = str(tmp_path / "out")
    os.mkdir(final)
    with open(os.path.join(final, "a"), "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError):
        with staged_folder(final) as staging:
            with open(os.path.join(staging, "a"), "w") as f:
                f.write("half")
            raise RuntimeError("killed while writing")
    assert os.listdir(str(tmp_path)) == ["out"] and open(os.path.join(final, "a")).read() == "old"
    real_rename = os.rename

    def rename_fails_onto_final(src, dst):
        if dst == final and os.path.basename(src).startswith(".writing-"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_fails_onto_final)
    with pytest.raises(OSError):
        with staged_folder(final) as staging:
            open(os.path.join(staging, "a"), "w").write("new")
    assert os.listdir(str(tmp_path)) == ["out"] and open(os.path.join(final, "a")).read() == "old"  # put back
    monkeypatch.setattr(os, "rename", real_rename)
    with staged_folder(final) as staging:
        open(os.path.join(staging, "a"), "w").write("new")
    assert os.listdir(str(tmp_path)) == ["out"] and open(os.path.join(final, "a")).read() == "new"
    assert os.stat(final).st_mode & 0o777 == 0o755
