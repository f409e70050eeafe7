"""Everything needed to import MXNet 1.9.1 on today's Pythons, in one place.

MXNet 1.9.1 is the last release of a retired project. Two things break it:

* numpy >= 1.24 removed the alias ``np.bool`` that mxnet still uses at import
  time; aliasing it back to ``bool`` (what it always meant) is enough.
* Python 3.12 dropped ``distutils``, which mxnet imports; setuptools provides it
  (setup.py installs setuptools there).

Before mxnet loads, :func:`make_mxnet_importable` also applies the thread policy
(:mod:`.threads`) and the engine policy (:mod:`.engine`), which MXNet reads only then.

Import mxnet through :func:`import_mxnet` only, so that a missing or unusable
install ends with one message that names the command to fix it. ``import ptb_lm``
already calls :func:`make_mxnet_importable`, so a notebook may ``import mxnet``
itself once ptb_lm is imported, on any supported Python.
"""

import os
import sys

import numpy as np

from .engine import check_engine_variable, engine_is_ours, set_mxnet_engine, start_engine_quietly
from .threads import check_thread_variables, set_mxnet_threads

CPU_INSTALL = "pip install 'mxnet==1.9.1'   (or: pip install -e '.[cpu]')"
GPU_INSTALL = "pip install -e '.[cu112]'   (mxnet-cu112 1.9.1 with NVIDIA's CUDA 11 runtime wheels)"


class MXNetUnavailable(ImportError):
    """MXNet cannot be imported; the message says which install command fits."""


def make_mxnet_importable():
    """Restore what mxnet 1.9.1 needs of numpy, set its threads and engine (cheap); ``import ptb_lm`` calls it."""
    # np.bool was a plain alias of the builtin bool until numpy 1.24 removed it.
    if "bool" not in np.__dict__:
        np.bool = bool
    set_mxnet_threads()
    set_mxnet_engine()


def check_mxnet_variables(environ=os.environ):
    """Raise ConfigError for a thread count or an engine MXNet cannot take: it would abort, or fail mid-way."""
    check_thread_variables(environ)
    check_engine_variable(environ)


def import_mxnet():
    """Import and return the ``mxnet`` module, or raise :class:`MXNetUnavailable` (ConfigError: a thread count or
    an engine MXNet cannot take)."""
    make_mxnet_importable()
    if "mxnet" not in sys.modules:
        check_mxnet_variables()
        from .native import GPU_DISTRIBUTION, installed_mxnet, preload_cuda_libraries

        if installed_mxnet()[0] == GPU_DISTRIBUTION:
            try:
                preload_cuda_libraries()  # the nvidia-* wheels' CUDA 11 libraries, before libmxnet.so needs them
            except OSError as err:
                raise MXNetUnavailable(_explain(err)) from None
    try:
        import mxnet
    except (ImportError, OSError) as err:  # OSError: the GPU wheel without its CUDA libraries
        raise MXNetUnavailable(_explain(err)) from None
    if engine_is_ours():
        start_engine_quietly(mxnet)  # also when a notebook imported mxnet itself but has not run anything
    return mxnet


def _explain(err, version=None):
    text = str(err)
    first = text.splitlines()[0] if text else type(err).__name__
    version = sys.version_info[:2] if version is None else version
    if version > (3, 12):  # nothing to install here: MXNet 1.9.1 has no wheel and needs numpy < 2
        return (
            "MXNet 1.9.1, which training, evaluation and export need, runs on Python 3.8 to 3.12, and this is "
            "Python %d.%d: make a virtualenv with python3.12 or python3.11 (make train does). Here, an exported "
            "model scores and generates without MXNet: ptb-lm-onnx-score and ptb-lm-onnx-generate" % version
        )
    if "libcuda.so" in text:
        return (
            "mxnet's GPU wheel is installed, but this machine has no NVIDIA driver (%s): install the driver "
            "(450.80.02 or newer) to use a GPU, or switch to the CPU wheel: pip uninstall -y mxnet-cu112 && %s. "
            "ptb-lm-doctor tells more" % (first, CPU_INSTALL)
        )
    if isinstance(err, OSError) or ("lib" in text and ".so" in text):
        # The GPU wheel links CUDA 11's libraries without bundling them; NVIDIA's wheels ship them.
        return (
            "mxnet is installed but cannot load a native library (%s). For the GPU wheel, install CUDA 11's "
            "runtime wheels with %s (or set PTB_LM_CUDA=system to use a system CUDA 11.2 with cuDNN 8), or "
            "switch to the CPU wheel: pip uninstall -y mxnet-cu112 && %s. ptb-lm-doctor tells more"
            % (first, GPU_INSTALL, CPU_INSTALL)
        )
    if "numpy" in text or "np." in text:
        return (
            "mxnet 1.9.1 cannot import with this numpy (%s); it needs numpy < 2: "
            "pip install 'numpy<1.24' on Python <= 3.11, or 'numpy>=1.26,<2' on 3.12"
            % text.splitlines()[0]
        )
    return "mxnet is not installed (%s). Install the CPU build: %s, or on a CUDA 11.2 GPU: %s" % (
        text.splitlines()[0] if text else "ImportError",
        CPU_INSTALL,
        GPU_INSTALL,
    )


def error_summary(err):
    """One line of an exception's message: MXNet's errors start with a C++ traceback; keep their last line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    last = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return last.replace("MXNetError: ", "")
