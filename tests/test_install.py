"""Installing: an unsupported Python is refused at once, by setup.py, before pip resolves anything."""
import subprocess
import sys

import pytest

from helpers import ROOT

FAKE_VERSION = """
import runpy, sys


sys.version_info = ({major}, {minor}, 0, "final", 0)
sys.argv = ["setup.py", "--version"]
runpy.run_path("setup.py", run_name="__main__")
"""


@pytest.mark.parametrize("version, refused", [((3, 13), True), ((3, 14), True), ((3, 7), True),
                                              ((3, 11), False), ((3, 12), False)])
def test_setup_refuses_an_unsupported_python_with_one_line(version, refused):
    code = FAKE_VERSION.format(major=version[0], minor=version[1])
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if refused:
        assert out.returncode == 1, out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ptb-lm: error: Python %d.%d is not supported" % version)
        assert "3.8 to 3.12" in lines[0] and "numpy < 2" in lines[0]
    else:
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "0.1.0"
