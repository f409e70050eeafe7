"""Shared fixtures: a tiny generated corpus, the real PTB zip, a local HTTP server (helpers live in helpers.py)."""
import functools
import http.server
import os
import shutil
import signal
import sys
import threading

import pytest

import ptb_lm  # noqa: F401 - before any test module's own "import mxnet": it restores numpy's np.bool alias
from ptb_lm.runtime.native import GPU_DISTRIBUTION, installed_mxnet

from helpers import ROOT, SHARED_PTB, write_tiny_corpus


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_as_a_terminal_gives_it():
    """A shell without job control starts background commands with SIGINT ignored, and ptb_lm keeps an
    ignored SIGINT ignored on purpose (a run started with ``nohup ... &`` must not stop on Ctrl-C). The
    Ctrl-C tests need SIGINT as a terminal gives it, so a test run started that way restores Python's own."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def loaded():
    """ptb_lm's kernels, loaded: a machine with a compiler must build them (tests that need them are skipped under
    PTB_LM_KERNELS=0 only: helpers.needs_kernels)."""
    from ptb_lm import kernels

    status = kernels.status()
    assert status.active, status.reason
    return status


def pytest_collection_modifyitems(config, items):
    """The gpu_wheel tests run whenever mxnet-cu112 is the installed mxnet, and only then."""
    if installed_mxnet()[0] == GPU_DISTRIBUTION:
        return
    selected = [item for item in items if "gpu_wheel" not in item.keywords]
    if len(selected) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if "gpu_wheel" in item.keywords])
        items[:] = selected


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A folder holding a tiny ptb.{train,valid,test}.txt (about 800 / 130 / 130 tokens)."""
    return write_tiny_corpus(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def ptb_zip(request):
    """The real PTB zip at data/ptb.zip: already there, else copied from ../shared/data/ (our CI), else
    downloaded as training downloads it (the same URL, sha1 check and atomic write). Never skipped: if the
    download fails, the test run stops with one message that says how to get the file by hand."""
    from ptb_lm.download import PTB_SHA1, PTB_URL, download, sha1_of
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


