"""Nothing a user does loses a run: every failure on a file they gave is one line, and what was whole stays whole."""
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from ptb_lm import fit, load
from ptb_lm.errors import TrainingDiverged

from helpers import ROOT, TINY, one_line_error, run_cli, tiny_config, write_tiny_corpus


def one_epoch_config(corpus, **changes):
    return tiny_config(corpus, **dict(dict(epochs=1), **changes))


EVALUATE = os.path.join(ROOT, "scripts", "evaluate.py")


@pytest.fixture(scope="module")
def saved(tiny_corpus, tmp_path_factory):
    """A one-epoch save dir, never changed by the tests (they copy it)."""
    save = str(tmp_path_factory.mktemp("saved") / "run")
    fit(one_epoch_config(tiny_corpus, save_dir=save))
    return save


def copy_of(save, tmp_path):
    import shutil

    target = str(tmp_path / "copy")
    shutil.copytree(save, target, symlinks=True)
    return target


def test_a_save_dir_under_a_file_is_one_line_before_training(tiny_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run_cli(["--data", tiny_corpus, "--save-dir", str(blocker / "run")] + TINY)
    one_line_error(out, 2, str(blocker / "run"), "a file is in the way")
    assert "[Epoch" not in out.stdout


@pytest.mark.parametrize("flag", ["--save-dir", "--log-json"])
def test_a_place_that_cannot_be_written_is_one_line_before_training(tiny_corpus, flag):
    # /proc refuses new files and folders even to root, which CI runs as
    out = run_cli(["--data", tiny_corpus, flag, "/proc/ptb-lm-test/x"] + TINY)
    one_line_error(out, 2, "/proc/ptb-lm-test/x", flag)
    assert "[Epoch" not in out.stdout


def test_a_full_disk_under_the_log_ends_the_run_with_one_line(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    out = run_cli(["--data", tiny_corpus, "--save-dir", save, "--log-json", "/dev/full", "--eval-period", "5"]
                  + TINY)
    one_line_error(out, 1, "/dev/full", "No space left on device")


def limit_file_size(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(tiny_corpus, saved, tmp_path):
    save = copy_of(saved, tmp_path)
    before = open(os.path.join(save, "last", "model.params"), "rb").read()
    # a bigger model: its model.params (about 600 kB) cannot be written under a 100 kB limit
    first = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                            "--save-dir", str(tmp_path / "big"), "--embed-dim", "128", "--hidden-dim", "128",
                            "--batch-size", "4", "--num-steps", "5", "--epochs", "1", "--ctx", "cpu",
                            "--progress", "none"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           preexec_fn=limit_file_size(100 * 1024))
    line = one_line_error(first, 1, "epoch 1", str(tmp_path / "big"), "the disk is full")
    assert "Check failed" not in line  # MXNet's own words for a failed write say nothing to a user
    assert [e for e in os.listdir(str(tmp_path / "big")) if not e.startswith(".lock")] == []
    again = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--resume", save,
                            "--epochs", "2", "--progress", "none"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, preexec_fn=limit_file_size(len(before) - 1))
    one_line_error(again, 1, "epoch 2", "still holds epoch-0001", "--resume")
    assert open(os.path.join(save, "last", "model.params"), "rb").read() == before
    load(save)  # whole and verified


def test_a_plot_that_fails_never_ends_the_run(tiny_corpus, tmp_path, caplog):
    save = tmp_path / "run"
    (save / "curves.png").mkdir(parents=True)  # matplotlib cannot write the picture there
    history = fit(one_epoch_config(tiny_corpus, epochs=2, save_dir=str(save)))
    assert len(history.of("epoch")) == 2 and history.test is not None
    warnings = [r.getMessage() for r in caplog.records if "curves.png" in r.getMessage()]
    assert len(warnings) == 1 and "Is a directory" in warnings[0], warnings  # once, with the child's reason


def test_the_training_process_never_loads_matplotlib(tiny_corpus, tmp_path):
    """The curves are drawn in a child process: matplotlib's figures grew the training process epoch by epoch."""
    save = str(tmp_path / "run")
    code = ("import sys; from ptb_lm import TrainConfig, fit; "
            "fit(TrainConfig(embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=2, data=%r, ctx='cpu', "
            "progress='none', save_dir=%r)); print('matplotlib' in sys.modules)" % (tiny_corpus, save))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"
    assert os.path.isfile(os.path.join(save, "curves.png"))


def test_two_runs_on_one_save_dir_the_second_is_refused(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                              "--save-dir", save] + TINY + ["--epochs", "100000"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.islink(os.path.join(save, "last")):
            time.sleep(0.2)
        second = run_cli(["--data", tiny_corpus, "--save-dir", save] + TINY)
        one_line_error(second, 2, save, "in use", "process %d" % first.pid)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)


def test_a_stale_lock_is_taken_over_and_the_log_says_so(tiny_corpus, tmp_path, caplog):
    save = tmp_path / "run"
    save.mkdir()
    (save / ".lock").write_text("process 999999 on a-machine-long-gone")
    fit(one_epoch_config(tiny_corpus, save_dir=str(save)))
    assert "999999" in caplog.text and "no longer running" in caplog.text
    assert os.path.islink(str(save / "last"))


def damage(path, how):
    data = open(path, "rb").read()
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    open(path, "wb").write(data)


@pytest.mark.parametrize("name, how, words", [
    ("model.params", "flip", ["model.params is damaged", "sha256"]),
    ("model.params", "truncate", ["model.params is damaged"]),
    ("state.json", "truncate", ["state.json is damaged"]),
    ("config.json", "truncate", ["config.json is damaged"]),
    ("vocab.txt", "remove", ["lacks vocab.txt"]),
])
@pytest.mark.parametrize("script", ["evaluate", "generate", "resume"])
def test_a_damaged_checkpoint_is_one_line_everywhere(saved, tiny_corpus, tmp_path, name, how, words, script):
    save = copy_of(saved, tmp_path)
    path = os.path.join(save, "last", name)
    os.remove(path) if how == "remove" else damage(path, how)
    if script == "evaluate":
        out = run_cli([EVALUATE, save, "--data", tiny_corpus, "--ctx", "cpu"])
    elif script == "generate":
        out = run_cli([os.path.join(ROOT, "scripts", "generate.py"), save, "--ctx", "cpu"])
    else:
        out = run_cli(["--resume", save, "--epochs", "2", "--progress", "none"])
    one_line_error(out, 2, *words)


def test_checkpoints_hold_no_pickle(saved, monkeypatch, tiny_corpus, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("dump", "dumps", "load", "loads", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    save = str(tmp_path / "run")
    fit(one_epoch_config(tiny_corpus, save_dir=save))
    load(save)
    for name in os.listdir(os.path.join(save, "last")):
        head = open(os.path.join(save, "last", name), "rb").read(2)
        assert not head.startswith(b"\x80"), name  # every pickle protocol >= 2 starts so
    for name in ("config.json", "state.json"):
        json.load(open(os.path.join(save, "last", name)))


KILLER = r"""
import builtins, os, shutil, signal, sys, tempfile
sys.path.insert(0, {root!r})
from ptb_lm import checkpoint
from ptb_lm.resume import ResumePoint



step, target = [0], int(sys.argv[1])

def counted(fn):
    def wrapper(*args, **kwargs):
        step[0] += 1
        if step[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapper

point = ResumePoint(sys.argv[2])  # a pristine run of one epoch; its epoch 2 is written into sys.argv[3]
model = point.checkpoint.build_model(None)
state = dict(point.checkpoint.state, epoch=point.checkpoint.epoch + 1)
real_open = builtins.open
def open_counted(file, mode="r", *args, **kwargs):
    return (counted(real_open) if any(c in mode for c in "wax+") else real_open)(file, mode, *args, **kwargs)
builtins.open = open_counted
for module, names in ((os, ["rename", "replace", "symlink", "fsync", "chmod", "remove", "makedirs"]),
                      (shutil, ["rmtree"]), (tempfile, ["mkdtemp"])):
    for name in names:
        setattr(module, name, counted(getattr(module, name)))
model.save_parameters = counted(model.save_parameters)
checkpoint.save_checkpoint(sys.argv[3], model, point.config, point.checkpoint.dictionary, state,
                           best=True)
print("steps", step[0])
"""


@pytest.mark.slow
def test_kill_9_at_every_step_of_a_checkpoint_write_leaves_last_and_best_loadable(saved, tmp_path):
    save = copy_of(saved, tmp_path)
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=ROOT))
    epochs_seen = set()
    for target in range(1, 60):
        out = subprocess.run([sys.executable, str(script), str(target), saved, save], capture_output=True,
                             text=True, timeout=120)
        for link in ("last", "best"):
            _, _, config = load(os.path.join(save, link))  # verifies the sha256 of model.params
            epochs_seen.add(json.load(open(os.path.join(save, link, "state.json")))["epoch"])
        if out.returncode == 0:
            break
        assert out.returncode == -signal.SIGKILL, out.stderr
    else:
        pytest.fail("the write never finished")
    assert target > 8  # the kills did land inside the write: at least this many steps
    assert epochs_seen == {1, 2} and json.load(open(os.path.join(save, "last", "state.json")))["epoch"] == 2


# NaN; and a finite loss whose perplexity overflows (a run printed 1.5e16, perplexity inf, and kept it as best)
@pytest.mark.parametrize("val_loss", [float("nan"), 14752436704335190.0, 710.0])
def test_a_validation_loss_without_a_finite_perplexity_is_divergence_and_nothing_is_saved(tiny_corpus, tmp_path,
                                                                                         monkeypatch, val_loss):
    from ptb_lm.assembly import Run

    save = str(tmp_path / "run")
    fit(one_epoch_config(tiny_corpus, save_dir=save))
    before = os.readlink(os.path.join(save, "last")), os.readlink(os.path.join(save, "best"))
    monkeypatch.setattr(Run, "split_loss", lambda self, split, progress=None, between_batches=None: val_loss)
    with pytest.raises(TrainingDiverged) as err:
        fit(one_epoch_config(tiny_corpus, epochs=2), resume=save)
    assert "validation loss" in str(err.value) and err.value.exit_code == 1
    assert (os.readlink(os.path.join(save, "last")), os.readlink(os.path.join(save, "best"))) == before


def test_a_loss_far_above_chance_is_said_once_with_the_rate_in_ptb_lms_units(caplog):
    import math

    from ptb_lm import TrainConfig
    from ptb_lm.runner import LossWatch

    class Loss(object):
        fallbacks = 3

    watch = LossWatch(10000, TrainConfig(lr=20.0, num_steps=35), Loss())
    watch({"event": "batch", "loss": 1.5 * math.log(10000)})  # early batches go a little above chance: quiet
    assert not caplog.records
    for loss in (240.92, 300.0):
        watch({"event": "batch", "loss": loss})
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "240.92" in said[0] and "%.2f" % math.log(10000) in said[0], said
    assert "%g" % (20.0 / 35) in said[0] and "3 batches" in said[0]


def test_a_damaged_data_zip_is_one_line(ptb_zip, tmp_path):
    data = open(ptb_zip, "rb").read()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    one_line_error(run_cli(["--data", str(truncated)] + TINY), 2, str(truncated))
    corrupted = tmp_path / "corrupted.zip"
    corrupted.write_bytes(data[:5000] + bytes(b ^ 0x55 for b in data[5000:6000]) + data[6000:])
    one_line_error(run_cli(["--data", str(corrupted)] + TINY), 2, str(corrupted), "damaged")


def test_a_split_that_is_not_utf8_is_one_line(tmp_path):
    folder = write_tiny_corpus(str(tmp_path / "c"))
    with open(os.path.join(folder, "ptb.valid.txt"), "ab") as f:
        f.write(b"caf\xe9\n")
    one_line_error(run_cli(["--data", folder] + TINY), 2, "valid split", "UTF-8")
    archive = tmp_path / "latin1.zip"
    with zipfile.ZipFile(str(archive), "w") as z:
        for split in ("train", "valid", "test"):
            z.write(os.path.join(folder, "ptb.%s.txt" % split), "ptb/ptb.%s.txt" % split)
    one_line_error(run_cli(["--data", str(archive)] + TINY), 2, "valid split", "UTF-8")


def test_a_half_deleted_data_folder_is_one_line_and_is_left_alone(tmp_path):
    work = tmp_path / "work"
    folder = write_tiny_corpus(str(work / "data" / "ptb"))
    os.remove(os.path.join(folder, "ptb.valid.txt"))
    out = run_cli([os.path.join(ROOT, "scripts", "train.py")] + TINY, cwd=str(work))
    one_line_error(out, 2, os.path.join(str(work), "data", "ptb"), "ptb.valid.txt", "delete it")
    assert sorted(os.listdir(folder)) == ["ptb.test.txt", "ptb.train.txt"]


def test_a_host_name_beginning_with_a_dash_never_reaches_ssh(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("good-host\n-oProxyCommand=touch /tmp/owned\n")
    out = run_cli([os.path.join(ROOT, "scripts", "launch.py"), "--hosts", str(hosts), "--", "--epochs", "1"])
    one_line_error(out, 2, "line 2", "not a host name")


def test_a_new_run_never_replaces_an_earlier_runs_checkpoints_or_log(saved, tiny_corpus, tmp_path):
    save = copy_of(saved, tmp_path)
    before = sorted(os.listdir(save))
    out = run_cli(["--data", tiny_corpus, "--save-dir", save] + TINY)
    one_line_error(out, 2, save, "already holds a complete run", "--resume")
    assert sorted(os.listdir(save)) == before
    log = tmp_path / "run.jsonl"
    log.write_text('{"event": "epoch"}\n')
    out = run_cli(["--data", tiny_corpus, "--log-json", str(log)] + TINY)
    one_line_error(out, 2, str(log), "already holds")
    assert log.read_text() == '{"event": "epoch"}\n'


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], ["seed must be"]),
    (["--seed", str(2 ** 32)], ["seed must be"]),
])
def test_a_seed_out_of_range_is_one_line(tiny_corpus, args, words):
    one_line_error(run_cli(["--data", tiny_corpus] + TINY + args), 2, *words)


@pytest.mark.parametrize("args, words", [
    (["--local", "2", "--port", "70000"], ["--port must be"]),
    (["--local", "2", "--host-ip", "no-such-host.invalid"], ["--host-ip", "no-such-host.invalid"]),
    (["--local", "2", "--servers", "0"], ["--servers must be"]),
])
def test_bad_launcher_flags_are_one_line(args, words):
    out = run_cli([os.path.join(ROOT, "scripts", "launch.py")] + args + ["--", "--epochs", "1"])
    one_line_error(out, 2, *words)
