"""MXNet 1.9.1 on today's machines: everything ptb_lm needs to make the last MXNet release run here.

The rest of ptb_lm reaches MXNet through :func:`import_mxnet` only, and knows nothing
else of what is below::

    shim.py        numpy's np.bool alias, import_mxnet and its one-line failures
    threads.py     OpenMP threads for MXNet's operators: one per physical core, cgroup quotas
    sharing.py     a busy machine: fewer threads while other work wants the cores
    engine.py      NaiveEngine with the CPU wheel, and MXNet's stderr line about it
    internals.py   every private MXNet and Gluon name ptb_lm reads, each pinned by a test
    supported.py   the Pythons and GPUs MXNet 1.9.1 runs on (data, read by setup.py too)
    native.py      the GPU wheel's native libraries and the NVIDIA driver, without importing mxnet
    memory.py      how much memory this process may still take, so a model too big is refused first
    devices.py     --ctx and try_gpu: which devices compute
    children.py    what ptb_lm's child processes need, and ending them and all below them
    launcher.py    the parameter-server processes of a dist_sync run
    tracker.py     MXNet's dmlc_tracker (mpi, slurm, sge, yarn), mended for today's Pythons
    doctor.py      what this machine can do (ptb-lm-doctor)
"""

from .shim import MXNetUnavailable, error_summary, import_mxnet, make_mxnet_importable

__all__ = ["MXNetUnavailable", "error_summary", "import_mxnet", "make_mxnet_importable"]
