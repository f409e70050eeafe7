"""Installing: where MXNet 1.9.1 cannot run, what needs it is refused at once, before pip resolves anything,
and ptb_lm_onnx (the model without MXNet) still installs."""
import os
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, one_line_error

FAKE_VERSION = """
import runpy, sys


sys.version_info = ({major}, {minor}, 0, "final", 0)
sys.argv = ["setup.py", "--version"]
runpy.run_path("setup.py", run_name="__main__")
"""


EXTRAS = """
import json, runpy, sys
import setuptools


sys.version_info = ({major}, {minor}, 0, "final", 0)
setuptools.setup = lambda **kw: print(json.dumps(dict(extras=kw["extras_require"], requires=kw["install_requires"],
                                                      python=kw["python_requires"])))
runpy.run_path("setup.py", run_name="__main__")
"""


def test_a_python_older_than_mxnets_range_is_refused_with_one_line():
    out = subprocess.run([sys.executable, "-c", FAKE_VERSION.format(major=3, minor=7)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ptb-lm: error: Python 3.7 is not supported")
    assert "3.8 to 3.12" in lines[0]


@pytest.mark.parametrize("version, mxnet_runs", [((3, 11), True), ((3, 12), True), ((3, 13), False), ((3, 14), False)])
def test_where_mxnet_cannot_run_its_extras_stop_at_once_and_the_onnx_extra_stays(version, mxnet_runs):
    import json

    out = subprocess.run([sys.executable, "-c", EXTRAS.format(major=version[0], minor=version[1])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    extras = found["extras"]
    for extra in ("cpu", "cu112", "export"):
        if mxnet_runs:
            assert not any("MXNet-1.9.1-needs-Python" in r for r in extras[extra])
        else:  # one requirement pip cannot meet, naming why, instead of numpy 1.26 built from source
            assert len(extras[extra]) == 1 and "MXNet-1.9.1-needs-Python-3.8-to-3.12" in extras[extra][0]
            assert "this-is-Python-%d.%d" % version in extras[extra][0]
    assert extras["onnx"] == ["onnxruntime>=1.17"]
    assert ("mxnet==1.9.1" in extras["cpu"]) == mxnet_runs


def test_an_installed_ptb_lm_stands_without_the_checkout(tmp_path):
    """pip install . (not -e), here into a folder of its own: every command's --help runs from another folder,
    and ptb-lm-benchmark names, in one line, what only a checkout has."""
    target = str(tmp_path / "site")
    source = str(tmp_path / "source")  # a copy: setuptools builds in the source tree, and leaves build/ there
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "data", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, source],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    assert not os.path.exists(os.path.join(target, "tests")) and not os.path.exists(os.path.join(target, "dev"))
    env = dict(os.environ, PYTHONPATH=target)
    elsewhere = str(tmp_path)

    def command(module, main, *args):
        code = "import sys; from %s import %s; sys.exit(%s(sys.argv[1:]))" % (module, main, main)
        return subprocess.run([sys.executable, "-c", code] + list(args), cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    found = subprocess.run([sys.executable, "-c", "import ptb_lm; print(ptb_lm.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
    assert found.stdout.strip().startswith(target), found.stdout + found.stderr  # the installed copy is tested
    scripts = [line.split("=", 1)[1].strip().strip('",') for line in open(os.path.join(ROOT, "setup.py"))
               if "=ptb_lm" in line and ":" in line]
    assert len(scripts) == 10, scripts
    for script in scripts:
        module, main = script.split(":")
        out = command(module, main, "--help")
        assert out.returncode == 0 and "usage:" in out.stdout, (script, out.stderr[-2000:])
    # the kernels' source ships, and the installed copy builds (or finds) and loads them as a checkout does
    assert os.path.isfile(os.path.join(target, "ptb_lm", "kernels", "ptb_kernels.cc"))
    kernels = subprocess.run([sys.executable, "-c", "from ptb_lm.kernels import status; print(status().describe())"],
                             cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert kernels.returncode == 0, kernels.stderr[-2000:]
    on = os.environ.get("PTB_LM_KERNELS") != "0"
    assert kernels.stdout.startswith("ptb_lm's, built for" if on else "MXNet's"), kernels.stdout + kernels.stderr
    out = command("ptb_lm.cli.benchmark", "benchmark_main", "--load", "pytest", "--configs", "chapter")
    one_line_error(out, 1, "--load pytest", "installed, not a checkout")
    out = command("ptb_lm.cli.benchmark", "benchmark_main", "--pytorch", sys.executable, "--configs", "chapter")
    one_line_error(out, 1, "--pytorch needs dev/pytorch_baseline.py")
