"""ptb_lm_onnx, the exported model without MXNet: numpy and onnxruntime only, on any Python from 3.11.

CI runs this file twice: in the MXNet virtualenvs, where the export is made here, and on Python 3.13
with numpy 2 and no mxnet installed at all (PTB_LM_PORTABLE=DIR names an export and its reference.json,
made by tests/portable_reference.py with MXNet beforehand; PTB_LM_NO_MXNET=1 asserts mxnet is absent).
The oracle is what MXNet's ptb-lm-evaluate and ptb-lm-generate print for the same checkpoint.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ptb_lm_onnx

from helpers import ROOT, one_line_error


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory):
    """``(export folder, reference)``: PTB_LM_PORTABLE's, or made here with MXNet."""
    given = os.environ.get("PTB_LM_PORTABLE")
    if given:
        with open(os.path.join(given, "reference.json")) as f:
            return os.path.join(given, "export"), json.load(f)
    if importlib.util.find_spec("mxnet") is None:
        pytest.fail("no mxnet here to make an export with: set PTB_LM_PORTABLE to a folder that "
                    "tests/portable_reference.py made")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from portable_reference import make

    return make(tiny_corpus, str(tmp_path_factory.mktemp("portable")))


def test_where_mxnet_is_said_to_be_absent_it_is():
    if os.environ.get("PTB_LM_NO_MXNET") == "1":
        assert importlib.util.find_spec("mxnet") is None
        assert int(np.__version__.split(".")[0]) >= 2
    # In a fresh interpreter: other tests in this process may have imported mxnet themselves.
    code = "import sys, ptb_lm_onnx.cli; print('mxnet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # the portable package never loads it


def portable(*args):
    code = ("import sys; from ptb_lm_onnx.cli import score_main, generate_main; "
            "sys.exit((generate_main if '--words' in sys.argv else score_main)(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_it_scores_a_text_as_ptb_lm_evaluate_does(exported):
    folder, reference = exported
    out = portable(folder, reference["text"], "--batch-size", str(reference["batch_size"]), "--num-steps",
                   str(reference["num_steps"]), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert "%.4f" % result["loss"] == reference["loss"] and result["unknown"] == reference["unknown"]


def test_it_generates_what_ptb_lm_generate_generates_with_the_same_seed(exported):
    folder, reference = exported
    out = portable(folder, *reference["generate"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == reference["generated"]


def test_per_line_log_probabilities_sum_to_the_whole_texts_under_batch_one(exported):
    """One stream (batch 1) over the whole text, windows as long as it: the loss is minus the mean log-prob of
    every token after the first; each line's own log-prob is scored from a zero state after <eos>."""
    folder, reference = exported
    model = ptb_lm_onnx.load(folder)
    lines = open(reference["text"]).read().splitlines()
    result = model.score(lines, batch_size=1, num_steps=1000, per_line=True)
    assert len(result["lines"]) == len(lines) and all(p < 0 for p in result["lines"])
    first = model.line_log_prob(lines[0])
    ids, _ = model.encode(lines[:1])
    logits, _ = model.step(np.concatenate([[model.ids["<eos>"]], ids])[:-1].reshape(-1, 1), model.begin_state(1))
    z = logits[:, 0, :].astype(np.float64)
    log_probs = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    # float64 here; ptb_lm_onnx's exponentials are float32, each off by at most 2**-24 relative
    assert first == pytest.approx(float(log_probs[np.arange(len(ids)), ids].sum()), abs=1e-7 * len(ids), rel=0)


def test_a_newer_export_format_is_one_line(exported, tmp_path):
    import shutil

    folder, reference = exported
    copy = str(tmp_path / "copy")
    shutil.copytree(folder, copy)
    described = json.load(open(os.path.join(copy, "model.json")))
    described["format_version"] += 1
    json.dump(described, open(os.path.join(copy, "model.json"), "w"))
    one_line_error(portable(copy, reference["text"]), 2, "newer than this ptb_lm_onnx reads", alone=True)


def test_bad_flags_are_one_line(exported):
    folder, reference = exported
    one_line_error(portable(folder, reference["text"], "--batch-size", "0"), 2, "--batch-size", alone=True)
    one_line_error(portable(folder, "--words", "0"), 2, "--words", alone=True)
    one_line_error(portable(folder, "--words", "3", "--temperature", "0"), 2, "--temperature", alone=True)
    one_line_error(portable(folder, reference["text"], "--batch", "2"), 2, "unrecognized", alone=True)
    one_line_error(portable(folder + "-nowhere", reference["text"]), 2, "not a ptb_lm export", alone=True)
