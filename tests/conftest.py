"""Shared fixtures: a tiny generated corpus, the real PTB zip, and a CLI runner."""
import os
import random
import shutil
import subprocess
import sys

import pytest

from ptb_lm._compat import import_mxnet

import_mxnet()  # before any test module's own "import mxnet": numpy >= 1.24 needs the np.bool alias first

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PTB = os.path.join(ROOT, "..", "shared", "data", "ptb.zip")


def write_tiny_corpus(folder, seed=0, train_lines=120, eval_lines=20):
    """Write ptb.{train,valid,test}.txt of short sentences over a 30-word vocabulary (and <unk>) with structure
    (each word tends to be followed by the next in a cycle), so a model can learn something fast."""
    rng = random.Random(seed)
    words = ["w%02d" % i for i in range(30)]

    def sentence():
        start = rng.randrange(len(words))
        n = rng.randint(4, 9)
        # like PTB, rare words are already <unk>
        return " ".join("<unk>" if rng.random() < 0.05 else words[(start + k + (rng.random() < 0.1)) % len(words)]
                        for k in range(n))

    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", train_lines), ("valid", eval_lines), ("test", eval_lines)):
        with open(os.path.join(folder, "ptb.%s.txt" % split), "w") as f:
            f.write("\n".join(" " + sentence() + " " for _ in range(n)) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A folder holding a tiny ptb.{train,valid,test}.txt (about 800 / 130 / 130 tokens)."""
    return write_tiny_corpus(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def ptb_zip():
    """The real PTB zip: data/ptb.zip, else a copy from ../shared/data (never skipped: it must exist)."""
    local = os.path.join(ROOT, "data", "ptb.zip")
    if not os.path.isfile(local):
        assert os.path.isfile(SHARED_PTB), "PTB is missing: put ptb.zip in data/ or ../shared/data/"
        os.makedirs(os.path.dirname(local), exist_ok=True)
        shutil.copy(SHARED_PTB, local)
    return local


def run_cli(args, cwd=None, env=None, timeout=600):
    """Run scripts/train.py (or another script) in a fresh interpreter; return the CompletedProcess."""
    script = args[0] if args and args[0].endswith(".py") else os.path.join(ROOT, "scripts", "train.py")
    rest = args[1:] if args and args[0].endswith(".py") else args
    return subprocess.run([sys.executable, script] + list(rest), cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
