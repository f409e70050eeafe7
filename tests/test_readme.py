"""The README's Python snippets run as written, in a fresh interpreter, on a small corpus laid out as data/ptb/."""
import os
import re
import subprocess
import sys

from helpers import ROOT, write_tiny_corpus


def readme_python_blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(readme_python_blocks()) >= 2


def test_the_readmes_python_snippets_run_as_written(tmp_path):
    # big enough for zaremba-small's 20 x 20 batches in every split; tiny enough to train in seconds
    write_tiny_corpus(str(tmp_path / "data" / "ptb"), train_lines=2000, eval_lines=100)
    script = tmp_path / "readme_snippets.py"
    script.write_text("\n".join(readme_python_blocks()), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[Epoch 2]" in out.stdout  # fit() shows the chapter's lines in a notebook, as the README says
    # the snippets import mxnet themselves, first; ptb_lm still starts MXNet's engine without MXNet's line
    assert "MXNet start using engine" not in out.stderr
