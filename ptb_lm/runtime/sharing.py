"""A busy machine: while other processes want this process's cores, MXNet's operators use fewer threads.

Why. Under NaiveEngine each operator's OpenMP team (one thread per core) runs on the
calling thread's cores, and libgomp's threads spin at every barrier, waiting for a team
member. Alone that is the fastest way to run: on a 2-core machine two threads trained
1.7x faster than one. Beside other busy work it collapses: the team member the scheduler
has taken off its core is waited for at every operator, and the spinning takes cores from
the others too. Two identical chapter-config trainings started together each trained at
0.17-0.24x of one alone (a fair share is 0.5x); with one thread each, at 0.6x.

What. :class:`ThreadSharing` is ticked between batches. Every :data:`PERIOD` seconds it
reads how busy this process's CPUs were (/proc/stat) and how much of that was this
process (its CPU time); the rest is other work. When other work kept half a core or more
busy, the team shrinks by that many cores, at once; when the cores have been free for
two periods in a row, it grows back. Growing back needs the cores to be freer than
shrinking did (a quarter of a core), so that the count does not swing.

How. libgomp's own calls, on the thread that runs the operators (NaiveEngine runs them on
the caller's): ``omp_set_num_threads(n)``, which MXNet's operators and oneDNN's follow,
and, for one thread, ``omp_set_dynamic(1)``, which makes libgomp cap even the teams
oneDNN's RNN kernels ask for by number (they keep the count they were created with:
at ``omp_set_num_threads(1)`` alone they went on using two threads, and a pair of
trainings stayed at 0.3x). MXNet's own ``MXSetNumOMPThreads`` is the first call alone.

Where it does not act (:func:`ThreadSharing.for_this_process` says why): a thread count
of the user's (OMP_NUM_THREADS, MXNET_OMP_MAX_THREADS), an engine that runs operators on
its own threads (MXNet's threaded engines: the GPU wheel, parameter-server runs), one
core, PTB_LM_FOLLOW_LOAD=0, or a machine where /proc/stat or libgomp cannot be read.
"""

import ctypes
import logging
import os
import time

from .children import descendants, stat_fields
from .engine import runs_on_calling_thread
from .threads import mxnet_thread_count, user_chose_threads

logger = logging.getLogger(__name__)

PERIOD = 0.5  # seconds between two looks at the machine; a look costs about 0.1 ms
SHRINK_AT = 0.5  # cores' worth of other work that makes the team shrink by one core
GROW_BELOW = 0.25  # ... and that must be undercut, two looks in a row, for it to grow back
SWITCH = "PTB_LM_FOLLOW_LOAD"  # 0: keep the thread count fixed, whatever the load


def busy_seconds(cpus, proc="/proc"):
    """Seconds the CPUs ``cpus`` have spent busy (not idle, not waiting for I/O), from /proc/stat; None if unknown."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    seen = 0
    try:
        with open(os.path.join(proc, "stat")) as f:
            for line in f:
                name = line.split(" ", 1)[0]
                if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
                    continue
                values = [int(v) for v in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
                busy += sum(values) - values[3] - values[4]
                seen += 1
    except (OSError, ValueError, IndexError):
        return None
    return busy / float(ticks) if seen else None


def process_seconds(pid=None, proc="/proc"):
    """CPU seconds this process and its descendants have used: its own threads, the children it has waited
    for, and those still running (the curve drawer, say), which are its work and not other work."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    pid = os.getpid() if pid is None else pid
    ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    for child in descendants(pid, proc):
        fields = stat_fields(child, proc)
        if fields is not None and len(fields) > 12:  # after the name: state ... utime (12th) stime (13th)
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def team_size(cores, others, current):
    """The OpenMP team to use on ``cores`` while other work keeps ``others`` cores busy, from ``current``.

    Shrinks at once by the cores other work keeps busy (from :data:`SHRINK_AT` of a core
    up); grows only to what the cores allow with :data:`GROW_BELOW` to spare. Returns
    ``(shrink_to, grow_to)``: the caller shrinks to the first if it is below ``current``,
    and grows to the second if it is above ``current`` twice in a row.
    """
    shrink_to = max(1, min(current, cores - int(others + 1 - SHRINK_AT)))
    grow_to = max(1, min(cores, cores - int(others + 1 - GROW_BELOW)))
    return shrink_to, grow_to


class LibGomp(object):
    """The calls into the OpenMP runtime MXNet's CPU wheel is linked with (libgomp), for the calling thread."""

    def __init__(self, library=None):
        self.lib = ctypes.CDLL(library or "libgomp.so.1")
        self.lib.omp_get_max_threads.restype = ctypes.c_int

    def set_team(self, threads):
        self.lib.omp_set_num_threads(ctypes.c_int(threads))
        self.lib.omp_set_dynamic(ctypes.c_int(1 if threads == 1 else 0))

    def max_threads(self):
        return self.lib.omp_get_max_threads()


def loaded_libgomp(proc="/proc"):
    """The path of the libgomp this process has loaded (MXNet's), or None."""
    try:
        with open(os.path.join(proc, "self/maps")) as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if os.path.basename(path).startswith("libgomp"):
                    return path
    except OSError:
        pass
    return None


class ThreadSharing(object):
    """Follows the machine's load between batches (see the module's docstring); :meth:`tick` is cheap."""

    def __init__(self, cores, omp, cpus=None, proc="/proc", clock=time.monotonic, own_seconds=process_seconds,
                 period=PERIOD):
        self.cores = cores
        self.omp = omp
        self.cpus = set(os.sched_getaffinity(0) if cpus is None else cpus)
        self.proc = proc
        self.clock = clock
        self.own_seconds = own_seconds
        self.period = period
        self.threads = cores
        self.others = None  # cores' worth of other work over the last period
        self.reason = None
        self._last = None
        self._calm = 0

    @property
    def active(self):
        return True

    @classmethod
    def for_this_process(cls, environ=os.environ):
        """The sharing for this process, or a :class:`FixedThreads` that says why the count stays fixed."""
        reason = cls.why_fixed(environ)
        if reason:
            return FixedThreads(reason)
        library = loaded_libgomp()
        if library is None:
            return FixedThreads("MXNet's OpenMP runtime (libgomp) is not loaded")
        try:
            omp = LibGomp(library)
        except (OSError, AttributeError) as err:
            return FixedThreads("libgomp cannot be called (%s)" % err)
        # the team oneDNN uses, which MXNet's own operators cap at MXNET_OMP_MAX_THREADS: growing back restores it
        return cls(max(omp.max_threads(), mxnet_thread_count(environ)), omp)

    @staticmethod
    def why_fixed(environ=os.environ):
        """Why MXNet's thread count stays fixed in this process (None: it follows the load)."""
        if environ.get(SWITCH, "").strip() == "0":
            return "%s=0" % SWITCH
        if user_chose_threads(environ):
            return "the thread count is the user's"
        if not runs_on_calling_thread(environ):
            return "MXNet's engine runs operators on threads of its own"
        cores = mxnet_thread_count(environ)
        if not cores or cores < 2:
            return "MXNet uses one thread"
        if busy_seconds(os.sched_getaffinity(0)) is None:
            return "/proc/stat cannot be read"
        return None

    def tick(self):
        """Between batches: every ``period`` seconds, look at the machine and resize MXNet's team if needed."""
        now = self.clock()
        if self._last is not None and now - self._last[0] < self.period:
            return
        busy = busy_seconds(self.cpus, self.proc)
        if busy is None:
            return
        sample = (now, busy, self.own_seconds())
        if self._last is not None:
            elapsed = sample[0] - self._last[0]
            self.others = max(0.0, ((sample[1] - self._last[1]) - (sample[2] - self._last[2])) / elapsed)
            self._decide(self.others)
        self._last = sample

    def _decide(self, others):
        shrink_to, grow_to = team_size(self.cores, others, self.threads)
        if shrink_to < self.threads:
            self._calm = 0
            self._resize(shrink_to, "other work kept %.1f of the %d cores busy" % (others, self.cores))
        elif grow_to > self.threads:
            self._calm += 1
            if self._calm >= 2:
                self._calm = 0
                self._resize(grow_to, "the cores are free again (other work: %.1f of %d)" % (others, self.cores))
        else:
            self._calm = 0

    def _resize(self, threads, why):
        self.omp.set_team(threads)
        logger.info("%s: MXNet now uses %d thread%s (was %d)", why, threads, "" if threads == 1 else "s",
                    self.threads)
        self.threads = threads

    def describe(self):
        """In a few words, for the run's header and the doctor."""
        return "fewer while other work wants the cores"


class FixedThreads(object):
    """MXNet's thread count stays as it is; :attr:`reason` says why."""

    active = False

    def __init__(self, reason):
        self.reason = reason

    def tick(self):
        pass

    def describe(self):
        return "fixed (%s)" % self.reason
