"""Shared fixtures: a tiny generated corpus, the real PTB zip, a local HTTP server, and a CLI runner."""
import functools
import http.server
import os
import random
import shutil
import signal
import subprocess
import sys
import threading

import pytest

import ptb_lm  # noqa: F401 - before any test module's own "import mxnet": it restores numpy's np.bool alias
from ptb_lm.native import GPU_DISTRIBUTION, installed_mxnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PTB = os.path.join(ROOT, "..", "shared", "data", "ptb.zip")


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_as_a_terminal_gives_it():
    """A shell without job control starts background commands with SIGINT ignored, and ptb_lm keeps an
    ignored SIGINT ignored on purpose (a run started with ``nohup ... &`` must not stop on Ctrl-C). The
    Ctrl-C tests need SIGINT as a terminal gives it, so a test run started that way restores Python's own."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


def pytest_collection_modifyitems(config, items):
    """The gpu_wheel tests run whenever mxnet-cu112 is the installed mxnet, and only then."""
    if installed_mxnet()[0] == GPU_DISTRIBUTION:
        return
    selected = [item for item in items if "gpu_wheel" not in item.keywords]
    if len(selected) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if "gpu_wheel" in item.keywords])
        items[:] = selected


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


def tiny_config(corpus, **changes):
    """A TrainConfig small enough to train on the tiny corpus in a second or two."""
    from ptb_lm import TrainConfig

    values = dict(mode="gru", embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, dropout=0.0, epochs=2,
                  seed=7, data=corpus, ctx="cpu", eval_period=10, progress="none")
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A folder holding a tiny ptb.{train,valid,test}.txt (about 800 / 130 / 130 tokens)."""
    return write_tiny_corpus(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def ptb_zip(request):
    """The real PTB zip at data/ptb.zip: already there, else copied from ../shared/data/ (our CI), else
    downloaded as training downloads it (the same URL, sha1 check and atomic write). Never skipped: if the
    download fails, the test run stops with one message that says how to get the file by hand."""
    from ptb_lm.download import PTB_URL, download, sha1_of, PTB_SHA1
    from ptb_lm.errors import DataError

    local = os.path.join(ROOT, "data", "ptb.zip")
    if os.path.isfile(local):
        return local
    if os.path.isfile(SHARED_PTB):
        os.makedirs(os.path.dirname(local), exist_ok=True)
        shutil.copy(SHARED_PTB, local)
        return local
    url = os.environ.get("PTB_LM_TEST_PTB_URL", PTB_URL)  # the tests of this fixture point it at a local server
    message = "PTB is not in %s: downloading %s (about 2 MB) to %s, once" % (os.path.dirname(local), url, local)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # on the terminal, not in a test's captured output
        sys.stdout.write("\n" + message + "\n")
        sys.stdout.flush()
    try:
        download(url, local, PTB_SHA1)
    except DataError as err:
        pytest.exit("the tests need PTB and it could not be downloaded (%s). Get it by hand: download %s and "
                    "save it as %s (sha1 %s)" % (err, PTB_URL, local, PTB_SHA1), returncode=1)
    assert sha1_of(local) == PTB_SHA1
    return local


@pytest.fixture
def served(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yield (folder, base_url)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def one_line_error(result, code, *words, alone=False):
    """Assert that ``result`` failed with ``code`` and one ``ptb-lm: error:`` line, the last on stderr, holding
    ``words``, and no traceback; ``alone``: nothing else on stderr. Returns the line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [l for l in result.stderr.splitlines() if l.startswith("ptb-lm: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    if alone:
        assert len([l for l in result.stderr.splitlines() if l.strip()]) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def run_cli(args, cwd=None, env=None, timeout=600):
    """Run scripts/train.py (or another script) in a fresh interpreter; return the CompletedProcess."""
    script = args[0] if args and args[0].endswith(".py") else os.path.join(ROOT, "scripts", "train.py")
    rest = args[1:] if args and args[0].endswith(".py") else args
    return subprocess.run([sys.executable, script] + list(rest), cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
