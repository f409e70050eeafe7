"""The download path, served from a local HTTP server (no machine here reaches the public address)."""
import hashlib
import os
import shutil
import zipfile

import pytest

from ptb_lm.download import ChecksumMismatch, DataError, download, locate_ptb, safe_extract, sha1_of, unpack_ptb

from helpers import ROOT


def test_download_and_unpack_real_ptb_from_a_local_server(served, ptb_zip, tmp_path):
    www, url = served
    shutil.copy(ptb_zip, str(www / "ptb.zip"))
    expected = sha1_of(ptb_zip)
    data_dir = tmp_path / "data"
    path = locate_ptb(None, data_dir=str(data_dir), url=url + "/ptb.zip", sha1=expected)
    assert path == os.path.join(str(data_dir), "ptb")
    assert sha1_of(str(data_dir / "ptb.zip")) == expected
    assert sorted(os.listdir(path)) == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]
    assert not [n for n in os.listdir(str(data_dir)) if n.startswith(".")]  # no temporary left
    # a second call uses the unpacked folder and downloads nothing
    os.remove(str(www / "ptb.zip"))
    assert locate_ptb(None, data_dir=str(data_dir), url=url + "/ptb.zip", sha1=expected) == path


def test_corrupted_download_is_refused_and_nothing_is_kept(served, ptb_zip, tmp_path):
    www, url = served
    good = open(ptb_zip, "rb").read()
    (www / "ptb.zip").write_bytes(good[:1000] + b"X" + good[1001:])
    data_dir = tmp_path / "data"
    with pytest.raises(ChecksumMismatch) as err:
        locate_ptb(None, data_dir=str(data_dir), url=url + "/ptb.zip", sha1=hashlib.sha1(good).hexdigest())
    assert "sha1" in str(err.value)
    assert not data_dir.exists()  # neither ptb.zip nor a temporary file, nor the folder made for them


def test_unreachable_address_is_one_clear_error(tmp_path, served):
    _, url = served
    with pytest.raises(DataError) as err:
        download(url + "/absent.zip", str(tmp_path / "x.zip"), "0" * 40)
    assert "could not download" in str(err.value)
    assert not os.path.exists(str(tmp_path / "x.zip"))


def test_default_zip_with_wrong_checksum_is_refused(tmp_path, tiny_corpus):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with zipfile.ZipFile(str(data_dir / "ptb.zip"), "w") as z:
        z.write(os.path.join(tiny_corpus, "ptb.train.txt"), "ptb/ptb.train.txt")
    with pytest.raises(ChecksumMismatch) as err:
        locate_ptb(None, data_dir=str(data_dir))
    assert "delete it" in str(err.value)


def test_default_prefers_the_unpacked_folder(tmp_path, tiny_corpus):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_corpus, str(data_dir / "ptb"))
    assert locate_ptb(None, data_dir=str(data_dir)) == os.path.join(str(data_dir), "ptb")


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "ptb/../../escape.txt"])
def test_extraction_refuses_members_outside_the_target(tmp_path, evil):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(str(archive), "w") as z:
        z.writestr("ptb/ok.txt", "fine")
        z.writestr(evil, "escaped")
    target = tmp_path / "out" / "inner"
    with pytest.raises(DataError) as err:
        safe_extract(str(archive), str(target))
    assert "outside" in str(err.value)
    assert not (tmp_path / "out" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (target / "ptb" / "ok.txt").exists()  # refused before anything was written


def test_unpack_is_atomic_on_a_bad_archive(tmp_path):
    archive = tmp_path / "incomplete.zip"
    with zipfile.ZipFile(str(archive), "w") as z:
        z.writestr("ptb/ptb.train.txt", "a b")
    with pytest.raises(DataError):
        unpack_ptb(str(archive), str(tmp_path / "ptb"))
    assert sorted(os.listdir(str(tmp_path))) == ["incomplete.zip"]


FIXTURE_USER = """
def test_uses_the_ptb_fixture(ptb_zip):
    import hashlib, os
    assert os.path.abspath(ptb_zip) == os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "data",
                                                                    "ptb.zip"))
    assert hashlib.sha1(open(ptb_zip, "rb").read()).hexdigest() == "%s"
"""


def fresh_layout(tmp_path):
    """A checkout's tests/ folder with our conftest (and the helpers it imports) and one test that uses the PTB
    fixture: no data/, no ../shared."""
    from ptb_lm.download import PTB_SHA1

    layout = tmp_path / "clone"
    (layout / "tests").mkdir(parents=True)
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(os.path.join(ROOT, "tests", name), str(layout / "tests" / name))
    (layout / "tests" / "test_fixture_user.py").write_text(FIXTURE_USER % PTB_SHA1)
    assert not (tmp_path / "shared").exists()
    return layout


def run_layout_tests(layout, url):
    import subprocess
    import sys

    env = dict(os.environ, PTB_LM_TEST_PTB_URL=url)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(layout / "tests")],
                          cwd=str(layout), env=env, capture_output=True, text=True, timeout=300)


def test_the_ptb_fixture_downloads_ptb_in_a_fresh_clone(served, ptb_zip, tmp_path):
    www, url = served
    shutil.copy(ptb_zip, str(www / "ptb.zip"))
    layout = fresh_layout(tmp_path)
    out = run_layout_tests(layout, url + "/ptb.zip")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
    assert out.stdout.count("downloading %s/ptb.zip" % url) == 1
    assert sha1_of(str(layout / "data" / "ptb.zip")) == sha1_of(ptb_zip)
    again = run_layout_tests(layout, url + "/absent.zip")  # now there: nothing is fetched
    assert again.returncode == 0 and "downloading" not in again.stdout


def test_the_ptb_fixture_stops_the_run_with_how_to_get_ptb_by_hand(served, tmp_path):
    _, url = served
    layout = fresh_layout(tmp_path)
    out = run_layout_tests(layout, url + "/absent.zip")
    assert out.returncode != 0 and "skipped" not in out.stdout
    assert "Get it by hand" in out.stdout + out.stderr and "d2l-data" in out.stdout + out.stderr
    assert not (layout / "data").exists()
