"""Child Python processes of ours (the plotter, the launcher's workers and servers): what they need.

Pure Python; nothing here imports mxnet.
"""

import os

# The folder that holds the ptb_lm package (a checkout, or site-packages).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def package_environment(environ):
    """A copy of ``environ`` in which a child Python imports this ptb_lm, installed or not (a checkout's scripts/)."""
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def last_line(text, default):
    """The last non-empty line of a child's output, which says why it failed (a traceback's last line is the error)."""
    return (text.strip().splitlines() or [default])[-1]
