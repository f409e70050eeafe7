"""Child processes of ours (the plotter, the launcher's workers and servers, the tracker): what they need,
and how to end them and everything below them.

Pure Python; nothing here imports mxnet.
"""

import os
import signal
import time

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


def descendants(pid, proc="/proc"):
    """The process ids below ``pid`` (its children, theirs, ...), read from /proc; deepest last."""
    children = {}
    for entry in os.listdir(proc):
        fields = stat_fields(entry, proc) if entry.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found += frontier
    return found


def end_processes(pids, grace=5.0):
    """SIGTERM ``pids``, then SIGKILL those still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + (grace if sig == signal.SIGTERM else 0)
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)


def _alive(pid):
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has ended


def stat_fields(pid, proc="/proc"):
    """The fields of /proc/PID/stat after the command's name (state, parent, ...); None if it is gone."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
