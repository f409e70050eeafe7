"""The command line, run as a user runs it: in a fresh interpreter."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from helpers import ROOT, TINY, one_line_error, run_cli, write_tiny_corpus


def assert_one_line_error(result, *words):
    one_line_error(result, 2, *words, alone=True)


def test_help_explains_every_flag():
    out = run_cli(["--help"])
    assert out.returncode == 0
    for flag in ["--mode", "--embed-dim", "--hidden-dim", "--num-layers", "--lr", "--clipping-norm", "--epochs",
                 "--batch-size", "--num-steps", "--dropout", "--eval-period", "--data", "--ctx", "--seed",
                 "--max-batches", "--log-json", "--engine", "--preset", "--resume", "--save-dir"]:
        assert flag in out.stdout


@pytest.mark.parametrize("args, words", [
    (["--mode", "tcn"], ["--mode", "rnn_relu, rnn_tanh, lstm, gru, transformer"]),
    (["--mode", "transformer", "--heads", "3"], ["--heads must divide the model size"]),
    (["--weight-decay", "-1"], ["--weight-decay must be 0 or more"]),
    (["--optimizer", "adam", "--betas", "0.9,1.5"], ["--betas must be two numbers in [0, 1)"]),
    (["--betas", "0.9"], ["--betas", "give two numbers"]),
    (["--optimizer", "rmsprop"], ["unknown --optimizer 'rmsprop'"]),
    (["--batch-size", "0"], ["--batch-size must be a whole number"]),  # the flag as typed, not the field
    (["--num-steps", "0"], ["--num-steps must be"]),
    (["--batch-size", "100"], ["too large", "split"]),
    (["--num-steps", "100"], ["num_steps 100 is too large"]),
    (["--lr", "-1"], ["lr must be"]),
    (["--dropout", "1"], ["dropout must be in [0, 1)"]),
    (["--dropout", "-0.5"], ["dropout"]),
    (["--ctx", "tpu:0"], ["unknown --ctx"]),
    (["--ar", "-1"], ["--ar must be 0 (off) or more"]),
    (["--nonmono", "3"], ["--nonmono goes with --optimizer ntasgd"]),
    (["--finetune"], ["--finetune averages the weights: it goes with --optimizer ntasgd"]),
    (["--optimizer", "ntasgd", "--finetune"], ["--finetune continues a trained run: give --resume"]),
    (["--optimizer", "ntasgd", "--nonmono", "0"], ["--nonmono must be a whole number of at least 1"]),
    (["--dropout-input", "0.5"], ["--dropout-input draws one mask per sequence", "--dropout 0"]),
    (["--dropout", "0", "--dropout-embedding", "1"], ["--dropout-embedding must be in [0, 1)"]),
    (["--mode", "transformer", "--weight-drop", "0.5"], ["--weight-drop is AWD-LSTM's, for an RNN mode"]),
    (["--tar", "inf"], ["--tar must be 0 (off) or more"]),
    (["--mode", "transformer", "--ar", "2"], ["--ar reads an RNN's last outputs"]),
])
def test_bad_settings_give_one_line(tiny_corpus, args, words):
    out = run_cli(["--data", tiny_corpus] + TINY + args)
    assert_one_line_error(out, *words)


def test_bad_data_gives_one_line(tmp_path):
    out = run_cli(["--data", str(tmp_path / "missing")] + TINY)
    assert_one_line_error(out, "does not exist")
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    assert_one_line_error(run_cli(["--data", str(fake)] + TINY), "not a zip")
    folder = write_tiny_corpus(str(tmp_path / "c"))
    os.remove(os.path.join(folder, "ptb.test.txt"))
    assert_one_line_error(run_cli(["--data", folder] + TINY), "test split is missing")
    open(os.path.join(folder, "ptb.test.txt"), "w").close()
    assert_one_line_error(run_cli(["--data", folder] + TINY), "test split", "empty")


def test_checksum_mismatch_of_the_default_zip_gives_one_line(tmp_path, tiny_corpus):
    (tmp_path / "data").mkdir()
    with zipfile.ZipFile(str(tmp_path / "data" / "ptb.zip"), "w") as z:
        z.write(os.path.join(tiny_corpus, "ptb.train.txt"), "ptb/ptb.train.txt")
    out = run_cli([os.path.join(ROOT, "scripts", "train.py")] + TINY, cwd=str(tmp_path))
    assert_one_line_error(out, "sha1")
    assert (tmp_path / "data" / "ptb.zip").exists()  # the user's file is left as it was


def test_missing_mxnet_names_the_install_command(tmp_path, tiny_corpus):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['mxnet'] = None\n")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    out = run_cli(["--data", tiny_corpus] + TINY, env=env)
    assert_one_line_error(out, "mxnet is not installed", "pip install 'mxnet==1.9.1'")


def test_gpu_wheel_without_cuda_names_the_cpu_wheel(tmp_path, tiny_corpus):
    fake = tmp_path / "fake" / "mxnet"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('libcuda.so.1: cannot open shared object file: No such file or directory')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    out = run_cli(["--data", tiny_corpus] + TINY, env=env)
    assert_one_line_error(out, "libcuda.so.1", "pip uninstall -y mxnet-cu112")


def test_a_model_past_mxnets_tensor_limit_is_one_line_before_anything_is_allocated(tiny_corpus):
    """MXNet 1.9.1 cannot make a tensor of 2**31 elements (its wheels index with 32-bit ints): a 50000-unit
    layer's recurrent weights alone would hold 2.5e9."""
    out = run_cli(["--data", tiny_corpus] + TINY + ["--hidden-dim", "50000"])
    assert_one_line_error(out, "too big", "2**31", "--hidden-dim")


def limited_memory(kilobytes):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (kilobytes * 1024, kilobytes * 1024))
    return limit


def test_a_model_too_big_for_the_memory_is_one_line_that_says_how_big(tiny_corpus):
    # 1.4e9 parameters: each tensor below MXNet's 2**31 elements, but some 17 GB to train
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus] + TINY +
                         ["--hidden-dim", "20000"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         preexec_fn=limited_memory(4000000))
    assert_one_line_error(out, "needs about", "GB to train", "GB available", "--hidden-dim")


UNCHECKED = """
import sys
import ptb_lm.assembly
ptb_lm.assembly.available_bytes = lambda: None  # as if the machine's memory could not be read
from ptb_lm.cli import train_main
sys.exit(train_main(sys.argv[1:]))
"""


def test_an_allocation_that_fails_anyway_is_one_line(tiny_corpus):
    """Where the memory cannot be read beforehand, MXNet's own allocation failure becomes the one line."""
    out = subprocess.run([sys.executable, "-c", UNCHECKED, "--data", tiny_corpus] + TINY + ["--hidden-dim", "20000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=limited_memory(3000000))
    assert_one_line_error(out, "cannot be allocated", "--hidden-dim")


@pytest.mark.parametrize("args, words", [
    (["--epoch", "1"], ["unrecognized arguments: --epoch 1", "ptb-lm-train --help"]),  # not taken as --epochs
    (["--batch-size", "x"], ["--batch-size", "invalid int value"]),
])
def test_argparse_speaks_with_ptb_lms_voice_and_takes_no_abbreviations(tiny_corpus, args, words):
    out = run_cli(["--data", tiny_corpus] + TINY + args)
    assert_one_line_error(out, *words)
    assert "usage:" not in out.stderr and "ptb-lm-train: error" not in out.stderr


def test_log_json_writes_batch_epoch_and_test_events(tiny_corpus, tmp_path):
    log = tmp_path / "run.jsonl"
    out = run_cli(["--data", tiny_corpus, "--log-json", str(log), "--eval-period", "10", "--seed", "1"]
                  + TINY + ["--epochs", "2"])
    assert out.returncode == 0, out.stderr
    events = [json.loads(l) for l in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("epoch") == 2 and kinds[-1] == "test" and "batch" in kinds
    batch = next(e for e in events if e["event"] == "batch")
    assert set(batch) == {"event", "epoch", "batch", "loss", "ppl"}
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"epoch", "train_loss", "val_loss", "val_ppl", "train_tokens_per_sec", "time_s"} <= set(epoch)
    assert set(events[-1]) >= {"test_loss", "test_ppl"}
    # the seed's log lines are printed too
    assert "[Epoch 1 Batch 10] loss" in out.stdout and "[Epoch 2] time cost" in out.stdout
    assert "Test loss" in out.stdout


def test_training_evaluation_and_generation_say_that_the_transformer_reads_each_window_on_its_own(
        tiny_corpus, tmp_path):
    """An RNN carries its state across windows; the transformer does not, and each command says so, with the
    run's own window (here 5, not the default 35); an RNN's commands say nothing of the kind."""
    said = "no state crosses windows"
    for mode in ("transformer", "lstm"):
        run = str(tmp_path / mode)
        train = run_cli(["--data", tiny_corpus, "--mode", mode, "--heads", "2", "--seed", "1", "--save-dir", run]
                        + TINY)
        evaluate = run_cli([os.path.join(ROOT, "scripts", "evaluate.py"), run, "--data", tiny_corpus])
        sliding = run_cli([os.path.join(ROOT, "scripts", "evaluate.py"), run, "--data", tiny_corpus,
                           "--context", "8"]) if mode == "transformer" else None
        generate = run_cli([os.path.join(ROOT, "scripts", "generate.py"), run, "--words", "5", "--seed", "1"])
        for out in (train, evaluate, generate):
            assert out.returncode == 0, out.stderr
        logs = [out.stdout + out.stderr for out in (train, evaluate, generate)]
        if mode == "lstm":
            assert not any(said in log for log in logs)
            continue
        for log in logs[:2]:
            assert said in log and "each 5-token window is read on its own" in log, log
        assert said in generate.stderr and "sampled from the last 5 words alone" in generate.stderr, logs[2]
        assert said not in generate.stdout  # the text alone, as ptb_lm_onnx's generate writes it
        assert sliding.returncode == 0, sliding.stderr
        assert "each 5-token window is scored with up to 3 tokens before it" in sliding.stdout + sliding.stderr


@pytest.mark.ptb
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rnn_relu", "rnn_tanh", "lstm", "gru"])
def test_every_mode_learns_on_real_ptb(ptb_zip, tmp_path, mode):
    log = tmp_path / "run.jsonl"
    out = run_cli(["--data", ptb_zip, "--mode", mode, "--max-batches", "200", "--eval-period", "50",
                   "--epochs", "1", "--seed", "1", "--log-json", str(log), "--progress", "none"])
    assert out.returncode == 0, out.stderr
    losses = [json.loads(l)["loss"] for l in log.read_text().splitlines() if '"batch"' in l]
    assert len(losses) == 3  # batches 50, 100, 150
    assert all(l == l and l < 50 for l in losses)  # finite
    assert losses[-1] < losses[0]
