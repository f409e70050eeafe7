"""How many OpenMP threads MXNet's operators get: one per physical core, unless the user chose.

MXNet 1.9.1 runs each operator on half the logical CPUs of an x86 machine unless
OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS is set (src/engine/openmp.cc halves
``omp_get_num_procs()``, assuming two hyper-threads a core). Where each core has one
thread, as on many cloud VMs, that leaves half the cores idle: on a 2-core AVX2
machine the decoder's products took 60 ms on one thread against 33 ms on two.
:func:`set_mxnet_threads` gives MXNet one thread per physical core instead, through
MXNET_OMP_MAX_THREADS (MXNet's own knob for its operators; it leaves numpy's and other
libraries' threads alone). A choice of the user's, in either variable, is kept.

The count is set in the environment, which MXNet reads once, when it is loaded, and
child processes inherit; :data:`DEFAULT_MARK` holds the value set, which tells
ptb_lm's default from a user's choice. How the count then follows a busy machine
while training is :mod:`ptb_lm.runtime.sharing`'s job.
"""

import glob
import os
import re
import sys

from ..errors import ConfigError

# MXNet reads these once, when it is loaded.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")
DEFAULT_MARK = "PTB_LM_DEFAULT_THREADS"
# The value ptb-lm-launch gave its processes (a share of the cores): a choice they keep, but not the user's.
LAUNCHER_MARK = "PTB_LM_LAUNCHER_THREADS"


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
    quota = cgroup_cpu_quota(sysfs, proc)
    return max(1, min(len(cores), quota)) if quota else len(cores) or None


def cgroup_cpu_quota(sysfs="/sys", proc="/proc"):
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


def check_thread_variables(environ=os.environ):
    """Raise ConfigError for a thread count MXNet cannot take: it would abort."""
    for name in THREAD_VARIABLES:
        value = environ.get(name)
        if value and not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value, re.ASCII):  # what MXNet's parser takes
            raise ConfigError("%s=%r is not a whole number, and MXNet would abort on it: set a number of threads "
                              "such as %s, or unset it (ptb_lm then uses one thread per physical core)"
                              % (name, value, physical_cores() or 1))


def mxnet_thread_count(environ=os.environ):
    """The number of threads MXNet gives its operators at load, or None where MXNet's own default decides."""
    for name in THREAD_VARIABLES:  # MXNet ranks OMP_NUM_THREADS first
        value = environ.get(name)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                return None
    return None


def describe_threads(environ=os.environ):
    """How many OpenMP threads MXNet's operators use, and why, in a few words (for logs and the doctor)."""
    if user_chose_threads(environ):
        # MXNet follows OMP_NUM_THREADS when it is set, whatever MXNET_OMP_MAX_THREADS says
        name = next(name for name in THREAD_VARIABLES if environ.get(name))
        if name == "MXNET_OMP_MAX_THREADS" and environ[name] == environ.get(LAUNCHER_MARK):
            return "%s, ptb-lm-launch's share of this machine's physical cores" % environ[name]
        return "%s, as %s=%s in the environment says" % (environ[name], name, environ[name])
    if "MXNET_OMP_MAX_THREADS" in environ:
        return "%s, one per physical core" % environ["MXNET_OMP_MAX_THREADS"]
    return "MXNet's own default, half the logical CPUs on x86"
