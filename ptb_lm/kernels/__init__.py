"""ptb_lm's own CPU kernels: a small C++ library that MXNet loads at run time (``mx.library.load``).

MXNet 1.9.1's own CPU operators were compiled without vector instructions. These kernels are
written so that the compiler can vectorise them, and are built on first use for the CPU this
process runs on (``-march=native``: AVX2, or AVX-512 where the CPU has it), into a per-user cache
(``$PTB_LM_CACHE``, else ``$XDG_CACHE_HOME/ptb_lm``, else ``~/.cache/ptb_lm``) under a key of the
source, the compiler, the build flags, the CPU's flags and MXNet's library header. So a binary
never runs on a CPU it was not built for, and ``pip install`` needs no compiler.

When they cannot be used, MXNet's own operators do the same math, and the run's header and
``ptb-lm-doctor`` say why::

    PTB_LM_KERNELS=0                  the user turned them off
    no C++ compiler                   $CXX, else g++, else c++, on the PATH
    the build failed                  the compiler's last line is said; the whole output is logged at debug
    the cache cannot be written       the folder is named
    a GPU context                     they are CPU code (:func:`for_run` says what a run uses)

The kernels, each checked against MXNet's own operators, forward and gradient, by
tests/test_kernels.py::

    ptb_softmax_ce(logits (N, V) float32, label (N,)) -> loss (N,), lse (N,)
        the cross-entropy of each row, ``lse - logits[label]`` with ``lse`` the log-sum-exp: exact at
        any loss; its backward ``dloss * (exp(logits - lse) - onehot(label))`` reads the logits once
    ptb_layer_norm(data (..., C), gamma (C,), beta (C,); eps) -> out, mean (M,), rstd (M,)
        MXNet's LayerNorm over the last axis, forward and backward in one pass over each row
"""

import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Optional

logger = logging.getLogger(__name__)

SWITCH = "PTB_LM_KERNELS"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ptb_kernels.cc")
LIBRARY = "libptb_kernels.so"
# -fno-trapping-math and -fno-math-errno let the compiler turn the kernels' selects and rounding into
# vector instructions; unlike -ffast-math they change no result, and NaN and inf still propagate.
FLAGS = ["-shared", "-fPIC", "-O3", "-march=native", "-fopenmp", "-fno-trapping-math", "-fno-math-errno",
         "-std=c++11"]
OPERATORS = ("ptb_softmax_ce", "ptb_layer_norm", "ptb_dropout")


@dataclass(frozen=True)
class KernelStatus:
    """Whether ptb_lm's kernels run in this process, and if not, why."""

    active: bool
    reason: str = ""  # why MXNet's own operators are used instead
    isa: str = ""  # the widest vector instructions the build was for
    path: str = ""
    build_seconds: Optional[float] = None  # when this process built them
    # The dropout masks are drawn by ptb_lm's generator (ptb_lm.dropout). A run's masks are the seed's in both
    # engines, so that they agree: the imperative engine draws them so too, while the rest is MXNet's.
    masks: bool = False

    def describe(self):
        """A few words for the run's header: whose operators run, and why."""
        if self.active:
            return "ptb_lm's, built for %s" % self.isa
        return "MXNet's (%s)%s" % (self.reason, ", with ptb_lm's dropout masks" if self.masks else "")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (the first processor's), as a sorted list; [] if unknown."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def widest_vectors(flags):
    """The widest vector instructions ``flags`` offer, as a name."""
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2")):
        if flag in flags:
            return name
    return "no vector extension known to ptb_lm"


def find_compiler(environ=os.environ):
    """The C++ compiler to build with: ``$CXX``, else g++, else c++; None if there is none."""
    for name in ([environ["CXX"]] if environ.get("CXX") else []) + ["g++", "c++"]:
        path = shutil.which(name, path=environ.get("PATH", os.defpath))
        if path:
            return path
    return None


def cache_root(environ=os.environ):
    if environ.get("PTB_LM_CACHE"):
        return environ["PTB_LM_CACHE"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ptb_lm")


def _mxnet_sources():
    """The wheel's library header and its implementation file, which every custom-operator library compiles."""
    import mxnet

    root = os.path.dirname(os.path.abspath(mxnet.__file__))
    return os.path.join(root, "include"), os.path.join(root, "src", "lib_api.cc")


def _compiler_version(compiler):
    try:
        out = subprocess.run([compiler, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return "unknown (%s)" % err


def build_key(compiler_version, flags, cpu, sources):
    """The cache key: everything that decides what the binary is and where it may run."""
    digest = hashlib.sha256()
    for part in [compiler_version, " ".join(flags), " ".join(cpu), platform.machine()]:
        digest.update(part.encode() + b"\0")
    for path in sources:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:20]


def cache_folder(compiler, cpu, environ=os.environ):
    """The cache's folder for the binary ``compiler`` builds for a CPU with flags ``cpu`` (named by its key)."""
    include, lib_api = _mxnet_sources()
    key = build_key(_compiler_version(compiler), FLAGS, cpu,
                    [SOURCE, lib_api, os.path.join(include, "mxnet", "lib_api.h")])
    return os.path.join(cache_root(environ), "kernels", key)


class CacheError(OSError):
    """The kernel cache's folder cannot be made or written."""


BUILD_SECONDS = 600  # a build that takes longer than this is given up (it takes seconds)


def build(compiler, folder, isa, flags=FLAGS):
    """Build the library into ``folder`` (made if needed) for a CPU with ``isa`` unless it is there; return
    ``(path, seconds or None)``.

    Concurrent processes (two runs, a data-parallel job's workers) take a lock: one builds, the
    others wait for it and load its binary. The binary appears whole or not at all (a rename).
    Raises :class:`CacheError` for a folder that cannot be written and RuntimeError (the
    compiler's last line) for a build that fails or cannot run.
    """
    include, lib_api = _mxnet_sources()
    path = os.path.join(folder, LIBRARY)
    if os.path.isfile(path):  # built before (the cache may be read-only)
        return path, None
    try:
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, ".lock"), "a")
    except OSError as err:
        raise CacheError(err) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process's build of ptb_lm's CPU kernels in %s", folder)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(path):
            return path, None
        for name in os.listdir(folder):  # under the lock, a staging file is a killed build's
            if name.startswith(".build-"):
                os.remove(os.path.join(folder, name))
        logger.info("building ptb_lm's CPU kernels for this CPU (%s) with %s, once: %s", isa,
                    os.path.basename(compiler), folder)
        start = time.time()
        try:
            handle, staging = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
        except OSError as err:
            raise CacheError(err) from None
        os.close(handle)
        try:
            done = subprocess.run([compiler] + list(flags) + ["-I" + include, SOURCE, lib_api, "-o", staging],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                  timeout=BUILD_SECONDS)
            if done.returncode != 0:
                logger.debug("the kernels' build said:\n%s", done.stdout)
                lines = [line for line in done.stdout.splitlines() if line.strip()]
                raise RuntimeError(lines[-1] if lines else "%s exited with %d" % (compiler, done.returncode))
            os.replace(staging, path)
        except subprocess.TimeoutExpired:
            raise RuntimeError("%s took over %d s" % (compiler, BUILD_SECONDS)) from None
        except OSError as err:  # the compiler cannot be run, or the binary cannot be put in place
            raise RuntimeError("%s: %s" % (compiler, err)) from None
        finally:
            if os.path.exists(staging):
                os.remove(staging)
        seconds = time.time() - start
        logger.info("built ptb_lm's CPU kernels in %.1f s", seconds)
        return path, seconds


def load(environ=os.environ):
    """Build if needed and load the kernels into MXNet; the :class:`KernelStatus` of this process."""
    if environ.get(SWITCH, "").strip() == "0":
        return KernelStatus(False, "%s=0" % SWITCH)
    compiler = find_compiler(environ)
    if compiler is None:
        return KernelStatus(False, "no C++ compiler: install g++ or set CXX for ptb_lm's faster kernels")
    flags = cpu_flags()
    isa = widest_vectors(flags)
    include, lib_api = _mxnet_sources()
    header = os.path.join(include, "mxnet", "lib_api.h")
    if not (os.path.isfile(lib_api) and os.path.isfile(header)):
        return KernelStatus(False, "this mxnet lacks %s, which the kernels are built with: install mxnet==1.9.1"
                                   % (lib_api if not os.path.isfile(lib_api) else header))
    folder = cache_folder(compiler, flags, environ)
    try:
        path, seconds = build(compiler, folder, isa)
    except CacheError as err:
        return KernelStatus(False, "the kernel cache cannot be written (%s); set PTB_LM_CACHE to a folder that "
                                   "can" % err)
    except RuntimeError as err:
        return KernelStatus(False, "their build failed: %s" % err)
    from ..runtime import import_mxnet
    from ..runtime.threads import mxnet_thread_count

    mx = import_mxnet()
    try:
        mx.library.load(path, verbose=False)
        # MXNet's operators' thread count, which MXNet does not give OpenMP (the library's own loops then keep to it)
        ctypes.CDLL(path).ptb_kernels_set_thread_cap(ctypes.c_int(mxnet_thread_count(environ) or 0))
    except (mx.base.MXNetError, OSError, AttributeError) as err:
        return KernelStatus(False, "%s cannot be loaded (%s): delete %s to build them again"
                                   % (path, str(err).strip().splitlines()[0], folder))
    missing = [name for name in OPERATORS if not hasattr(mx.nd, name)]
    if missing:
        return KernelStatus(False, "%s lacks %s: delete %s to build them again" % (path, ", ".join(missing), folder))
    return KernelStatus(True, isa=isa, path=path, build_seconds=seconds)


_STATUS = []  # the process's one status: MXNet loads a library once per process


def status(environ=os.environ):
    """The kernels' :class:`KernelStatus` in this process, loading them on the first call."""
    if not _STATUS:
        _STATUS.append(load(environ))
        if not _STATUS[0].active:
            logger.debug("ptb_lm's kernels are not used: %s", _STATUS[0].reason)
    return _STATUS[0]


def for_run(ctxs, fast=True, lever=True, masks=False):
    """The :class:`KernelStatus` of a run on ``ctxs``: the fast engine's, with its ``kernels`` lever on, on CPUs
    only, and only if they load; its ``reason`` says why not, for the run's header. ``masks``: the model's family
    draws its dropout masks with ptb_lm's generator where it can (in both engines, so that they agree)."""
    if not lever:
        return KernelStatus(False, "the kernels lever is off")
    if not all(ctx.device_type == "cpu" for ctx in ctxs):
        return KernelStatus(False, "ptb_lm's kernels are CPU code")
    imperative = "the imperative engine runs the chapter's operators"
    if not fast and not masks:
        return KernelStatus(False, imperative)
    loaded = status()
    if not fast:
        return KernelStatus(False, imperative, masks=loaded.active)
    return replace(loaded, masks=loaded.active and masks)
