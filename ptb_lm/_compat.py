"""Everything needed to import MXNet 1.9.1 on today's Pythons, in one place.

MXNet 1.9.1 is the last release of a retired project. Two things break it:

* numpy >= 1.24 removed the alias ``np.bool`` that mxnet still uses at import
  time; aliasing it back to ``bool`` (what it always meant) is enough.
* Python 3.12 dropped ``distutils``, which mxnet imports; setuptools provides it
  (setup.py installs setuptools there).

And one default of MXNet's leaves cores idle on many machines: unless
OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS is set, MXNet runs each operator on half
the logical CPUs of an x86 machine (src/engine/openmp.cc halves
``omp_get_num_procs()``, assuming two hyper-threads a core). Where each core has
one thread, as on many cloud VMs, that leaves half the cores idle: on this
project's 2-core AVX2 machine the decoder's products took 60 ms on one thread
against 33 ms on two. :func:`set_mxnet_threads` gives MXNet one thread per
physical core instead, through MXNET_OMP_MAX_THREADS (MXNet's own knob for its
operators; it leaves numpy's and other libraries' threads alone). A choice of
the user's, in either variable, is kept.

And one more: MXNet's default engine (ThreadedEnginePerDevice) hands every
operator from the Python thread to worker threads, each with an OpenMP team of
its own (8 threads in a process that has run one product, on 2 cores). With the
CPU wheel :func:`set_mxnet_engine` picks NaiveEngine, which runs each operator
on the calling thread as it is called (3 threads), through MXNET_ENGINE_TYPE:
on the 2-core machine a training batch took 1.2-1.5x less time, with the same
numbers. The GPU wheel keeps MXNet's engine, whose asynchrony a GPU needs, and
so do parameter-server processes, which NaiveEngine makes wait on every push and
pull. A choice of the user's is kept here too. Like MXNet's other engines, NaiveEngine
expects one Python thread at a time to drive MXNet.

Import mxnet through :func:`import_mxnet` only, so that a missing or unusable
install ends with one message that names the command to fix it. ``import ptb_lm``
already restores the alias and sets the threads and the engine (:func:`make_mxnet_importable`),
so a notebook may ``import mxnet`` itself once ptb_lm is imported, on any
supported Python.
"""

import glob
import os
import re
import sys
import threading

import numpy as np

from .errors import ConfigError

CPU_INSTALL = "pip install 'mxnet==1.9.1'   (or: pip install -e '.[cpu]')"
GPU_INSTALL = "pip install -e '.[cu112]'   (mxnet-cu112 1.9.1 with NVIDIA's CUDA 11 runtime wheels)"


class MXNetUnavailable(ImportError):
    """MXNet cannot be imported; the message says which install command fits."""


# MXNet reads these once, when it is loaded.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")
# ptb_lm's own default is set in the environment (MXNet reads nothing else), so child processes inherit
# it; this mark, holding the value set, tells it from a user's choice, which is kept.
DEFAULT_MARK = "PTB_LM_DEFAULT_THREADS"
# The engine, read when MXNet runs its first operation; set and marked in the same way. MXNet takes these
# three names and fails on anything else, an empty value too.
ENGINE_VARIABLE = "MXNET_ENGINE_TYPE"
ENGINE_MARK = "PTB_LM_DEFAULT_ENGINE"
ENGINES = ("NaiveEngine", "ThreadedEngine", "ThreadedEnginePerDevice")
CPU_ENGINE = "NaiveEngine"


def physical_cores(sysfs="/sys", cpus=None, proc="/proc"):
    """Physical cores among ``cpus`` (default: those this process may run on), at most its cgroups' CPU quota.

    None if the topology cannot be read (``sysfs`` and ``proc`` are /sys and /proc, or stand-ins for tests).
    """
    cpus = os.sched_getaffinity(0) if cpus is None else cpus
    cores = set()
    try:
        for cpu in cpus:
            topology = os.path.join(sysfs, "devices/system/cpu/cpu%d/topology" % cpu)
            with open(os.path.join(topology, "physical_package_id")) as package, \
                    open(os.path.join(topology, "core_id")) as core:
                cores.add((package.read().strip(), core.read().strip()))
    except (OSError, ValueError):  # ValueError: a file that is not text
        return None
    quota = _cgroup_cpu_quota(sysfs, proc)
    return max(1, min(len(cores), quota)) if quota else len(cores) or None


def _cgroup_cpu_quota(sysfs, proc="/proc"):
    """CPUs' worth of time this process's cgroups allow (rounded up), or None when unlimited or unknown.

    A quota binds every cgroup below it, so the cgroup named in /proc/self/cgroup and each
    of its ancestors are read, up to the mount's top: a container's own (it sees its cgroup
    as the top) and a systemd slice's or a batch job's (nested, seen from the host) alike.
    cgroup v2 (cpu.max), also under a hybrid layout's unified/, and v1 (cpu.cfs_quota_us).
    """
    v1_path = v2_path = "/"
    try:
        with open(os.path.join(proc, "self/cgroup")) as f:
            for line in f:  # "0::/user.slice/x.scope" (v2), "4:cpu,cpuacct:/docker/abc" (v1)
                fields = line.rstrip("\n").split(":", 2)
                if len(fields) != 3:
                    continue
                if fields[0] == "0" and fields[1] == "":
                    v2_path = fields[2]
                elif "cpu" in fields[1].split(","):
                    v1_path = fields[2]
    except (OSError, ValueError):  # ValueError: a file that is not text
        pass
    mount = os.path.join(sysfs, "fs/cgroup")
    quota_files = [os.path.join(folder, "cpu.max")
                   for root in (mount, os.path.join(mount, "unified")) for folder in _cgroup_folders(root, v2_path)]
    quota_files += [os.path.join(folder, "cpu.cfs_quota_us")
                    for root in glob.glob(os.path.join(mount, "cpu*")) for folder in _cgroup_folders(root, v1_path)]
    limits = []
    for path in quota_files:
        try:
            with open(path) as f:
                fields = f.read().split()
            if path.endswith("cpu.max"):
                quota, period = fields[0], fields[1]
            else:
                with open(os.path.join(os.path.dirname(path), "cpu.cfs_period_us")) as f:
                    quota, period = fields[0], f.read().strip()
            if quota not in ("max", "-1") and int(quota) > 0 and int(period) > 0:
                limits.append(-(-int(quota) // int(period)))
        except (OSError, ValueError, IndexError):  # missing, not a number, or not text
            continue
    return min(limits) if limits else None


def _cgroup_folders(root, path):
    """``root`` and its folders down ``path`` (a cgroup path as /proc/self/cgroup gives it): the cgroup's ancestors and itself."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:  # a cgroup outside this namespace's view ("/../x"): only the top can be told
        return [root]
    folders = [root]
    for part in parts:
        folders.append(os.path.join(folders[-1], part))
    return folders


def user_chose_threads(environ=os.environ):
    """Whether ``environ`` holds a thread count of the user's (or a launcher's), not ptb_lm's inherited default.

    An empty value counts as unset, as MXNet reads it.
    """
    if environ.get("OMP_NUM_THREADS"):
        return True
    value = environ.get("MXNET_OMP_MAX_THREADS")
    return bool(value) and value != environ.get(DEFAULT_MARK)


def set_mxnet_threads(environ=os.environ):
    """Give MXNet's operators one OpenMP thread per physical core, unless the user chose; cheap.

    Sets MXNET_OMP_MAX_THREADS (and :data:`DEFAULT_MARK`) in ``environ``. It has effect
    only before mxnet is loaded, so it does nothing once mxnet is imported, nor where
    the cores cannot be told.
    """
    if "mxnet" in sys.modules:
        return
    if environ.get("OMP_NUM_THREADS") and environ.get("MXNET_OMP_MAX_THREADS", "") == environ.get(DEFAULT_MARK):
        # A user's OMP_NUM_THREADS set after ptb_lm's default was inherited: MXNet would follow it anyway
        # (it ranks OMP_NUM_THREADS first); dropping the default leaves nothing to contradict it.
        environ.pop("MXNET_OMP_MAX_THREADS", None)
        environ.pop(DEFAULT_MARK, None)
    if user_chose_threads(environ):
        return
    cores = physical_cores()
    if cores:
        environ["MXNET_OMP_MAX_THREADS"] = environ[DEFAULT_MARK] = str(cores)


def user_chose_engine(environ=os.environ):
    """Whether ``environ`` names an engine of the user's (or a launcher's), not ptb_lm's inherited default."""
    return ENGINE_VARIABLE in environ and environ[ENGINE_VARIABLE] != environ.get(ENGINE_MARK)


def set_mxnet_engine(environ=os.environ):
    """With the CPU wheel, have MXNet run each operator on the calling thread (NaiveEngine), unless the user chose.

    Sets MXNET_ENGINE_TYPE (and :data:`ENGINE_MARK`) in ``environ``. It leaves MXNet's
    default with the GPU wheel, or none, and in the processes of a parameter-server run
    (DMLC_ROLE set): there NaiveEngine waits on every push and pull, and two dist_sync
    workers trained 5-7x slower with it. Like the threads, it has effect only before mxnet
    is loaded.
    """
    if "mxnet" in sys.modules or user_chose_engine(environ):
        return
    from .native import CPU_DISTRIBUTION, installed_mxnet

    if installed_mxnet()[0] == CPU_DISTRIBUTION and not environ.get("DMLC_ROLE"):
        environ[ENGINE_VARIABLE] = environ[ENGINE_MARK] = CPU_ENGINE
    else:  # NaiveEngine would wait for the GPU after every operator, or for the servers
        environ.pop(ENGINE_VARIABLE, None)
        environ.pop(ENGINE_MARK, None)


def check_mxnet_variables(environ=os.environ):
    """Raise ConfigError for a thread count or an engine MXNet cannot take: it would abort, or fail mid-way."""
    for name in THREAD_VARIABLES:
        value = environ.get(name)
        if value and not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value, re.ASCII):  # what MXNet's parser takes
            raise ConfigError("%s=%r is not a whole number, and MXNet would abort on it: set a number of threads "
                              "such as %s, or unset it (ptb_lm then uses one thread per physical core)"
                              % (name, value, physical_cores() or 1))
    if ENGINE_VARIABLE in environ and environ[ENGINE_VARIABLE] not in ENGINES:
        raise ConfigError("%s=%r is not an engine MXNet knows, and it would fail at its first operation: set one of "
                          "%s, or unset it (ptb_lm then uses %s with the CPU wheel)"
                          % (ENGINE_VARIABLE, environ[ENGINE_VARIABLE], ", ".join(ENGINES), CPU_ENGINE))


def describe_threads(environ=os.environ):
    """How many OpenMP threads MXNet's operators use, and why, in a few words (for logs and the doctor)."""
    if user_chose_threads(environ):
        # MXNet follows OMP_NUM_THREADS when it is set, whatever MXNET_OMP_MAX_THREADS says
        name = next(name for name in THREAD_VARIABLES if environ.get(name))
        return "%s, as %s=%s in the environment says" % (environ[name], name, environ[name])
    if "MXNET_OMP_MAX_THREADS" in environ:
        return "%s, one per physical core" % environ["MXNET_OMP_MAX_THREADS"]
    return "MXNet's own default, half the logical CPUs on x86"


def describe_engine(environ=os.environ):
    """Which engine MXNet runs its operators with, and why, in a few words (for logs and the doctor)."""
    if user_chose_engine(environ):
        return "%s, as %s says" % (environ[ENGINE_VARIABLE], ENGINE_VARIABLE)
    if ENGINE_VARIABLE in environ:
        return "%s, each operator on the calling thread" % environ[ENGINE_VARIABLE]
    return "ThreadedEnginePerDevice, MXNet's default"


def make_mxnet_importable():
    """Restore what mxnet 1.9.1 needs of numpy, set its threads and engine (cheap); ``import ptb_lm`` calls it."""
    # np.bool was a plain alias of the builtin bool until numpy 1.24 removed it.
    if "bool" not in np.__dict__:
        np.bool = bool
    set_mxnet_threads()
    set_mxnet_engine()


def import_mxnet():
    """Import and return the ``mxnet`` module, or raise :class:`MXNetUnavailable` (ConfigError: a thread count or
    an engine MXNet cannot take)."""
    make_mxnet_importable()
    fresh = "mxnet" not in sys.modules
    if fresh:
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
    if not _engine_started and os.environ.get(ENGINE_MARK) == os.environ.get(ENGINE_VARIABLE, ""):
        _start_engine_quietly(mxnet)  # also when a notebook imported mxnet itself but has not run anything
    return mxnet


_engine_started = False  # by _start_engine_quietly, once per process


def _start_engine_quietly(mxnet):
    """Start MXNet's engine now, without its stderr line "MXNet start using engine: NaiveEngine".

    MXNet logs that line when it starts an engine that the environment names, at its
    first operation or at exit if it had none; for ptb_lm's own default it would be
    noise after every run's last line. (If the caller already ran an operation, the
    line is out already; this one then costs nothing.) For that one operation stderr goes through a
    pipe, and a thread passes every other line on as it comes (so that nothing is
    lost, even if the process dies there).
    """
    global _engine_started
    _engine_started = True
    try:
        read_end, write_end = os.pipe()
        saved = os.dup(2)
    except OSError:  # no file descriptors to spare, or no stderr to keep clean
        mxnet.nd.zeros((1,)).wait_to_read()
        return

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:  # until every write end is closed
                if b"MXNet start using engine: " not in line:
                    os.write(saved, line)

    forwarder = threading.Thread(target=forward, name="ptb-lm-stderr", daemon=True)
    forwarder.start()
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(write_end, 2)
        mxnet.nd.zeros((1,)).wait_to_read()  # the first operation starts the engine
    finally:
        os.dup2(saved, 2)
        os.close(write_end)
        forwarder.join()
        os.close(saved)


def _explain(err):
    text = str(err)
    first = text.splitlines()[0] if text else type(err).__name__
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
