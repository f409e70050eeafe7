"""MXNet's threads follow the machine's load (ptb_lm.runtime.sharing), tested with a fake clock, a fake
/proc/stat and a fake OpenMP runtime, so that no test depends on timing; and the real libgomp calls."""
import logging
import os
import subprocess
import sys

import pytest

from ptb_lm.runtime import sharing
from ptb_lm.runtime.sharing import ThreadSharing

from helpers import ROOT, clean_env

TICKS = os.sysconf("SC_CLK_TCK")


class FakeMachine(object):
    """Two CPUs whose /proc/stat the test writes, a clock it moves, and this process's CPU seconds."""

    def __init__(self, folder, cpus=(0, 1)):
        self.folder = str(folder)
        self.cpus = cpus
        self.now = 100.0
        self.busy = {cpu: 0.0 for cpu in cpus}  # seconds
        self.own = 0.0
        self.write()

    def write(self):
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        for cpu in self.cpus:
            busy = int(round(self.busy[cpu] * TICKS))
            # user nice system idle iowait irq softirq steal guest guest_nice; idle and iowait are not busy
            lines.append("cpu%d %d 0 0 %d 7 0 0 0 0 0" % (cpu, busy, 10 ** 6))
        lines.append("cpu9 999999 0 0 0 0 0 0 0 0 0")  # a CPU outside this process's affinity
        with open(os.path.join(self.folder, "stat"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def run(self, seconds, ours, others):
        """``seconds`` pass; this process keeps ``ours`` cores busy and other work ``others`` cores."""
        self.now += seconds
        self.own += ours * seconds
        for cpu in self.cpus:
            self.busy[cpu] += (ours + others) * seconds / len(self.cpus)
        self.write()


class FakeOpenMP(object):
    def __init__(self):
        self.calls = []

    def set_team(self, threads):
        self.calls.append(threads)


@pytest.fixture
def machine(tmp_path):
    return FakeMachine(tmp_path)


def sharing_on(machine, omp, cores=2):
    return ThreadSharing(cores, omp, cpus=set(machine.cpus), proc=machine.folder, clock=lambda: machine.now,
                         own_seconds=lambda: machine.own)


def train(machine, shared, seconds, others, batch=0.05):
    """Batches of ``batch`` seconds for ``seconds``, ticking between them; this process keeps as many cores
    busy as MXNet has threads."""
    for _ in range(int(round(seconds / batch))):
        shared.tick()
        machine.run(batch, shared.threads, others)


def test_alone_the_team_keeps_every_core(machine):
    omp = FakeOpenMP()
    shared = sharing_on(machine, omp)
    train(machine, shared, 30, others=0.0)
    assert omp.calls == [] and shared.threads == 2 and shared.others == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("others", [0.6, 1.0, 1.9])
def test_other_work_shrinks_the_team_within_a_second_and_it_is_logged(machine, caplog, others):
    omp = FakeOpenMP()
    shared = sharing_on(machine, omp)
    with caplog.at_level(logging.INFO, logger="ptb_lm"):
        train(machine, shared, 1.0, others=others)
    assert omp.calls == [1] and shared.threads == 1
    assert shared.others == pytest.approx(others, abs=0.1)  # measured: busy CPU time minus this process's own
    line = [r.getMessage() for r in caplog.records if "MXNet now uses" in r.getMessage()]
    assert line == ["other work kept %.1f of the 2 cores busy: MXNet now uses 1 thread (was 2)" % shared.others]


def test_the_team_grows_back_two_looks_after_the_cores_are_free(machine):
    """One look a period, each over a period the test controls: the first free look does not grow the team,
    the second in a row does."""
    omp = FakeOpenMP()
    shared = sharing_on(machine, omp)
    train(machine, shared, 5, others=1.0, batch=sharing.PERIOD)  # one look before each batch
    assert omp.calls == [1]
    shared.tick()  # a look over the last busy batch: from here on, each look sees one free period
    threads_after_look = []
    for _ in range(4):
        machine.run(sharing.PERIOD, shared.threads, others=0.0)
        shared.tick()
        threads_after_look.append(shared.threads)
    assert omp.calls == [1, 2] and threads_after_look == [1, 2, 2, 2]


def test_a_little_other_work_neither_shrinks_nor_lets_a_shrunk_team_swing_back(machine):
    """Below half a core of other work the team stays; a shrunk team grows back only below a quarter."""
    omp = FakeOpenMP()
    shared = sharing_on(machine, omp)
    train(machine, shared, 10, others=0.3)
    assert omp.calls == []
    train(machine, shared, 3, others=1.0)
    train(machine, shared, 10, others=0.35)
    assert omp.calls == [1]


def test_more_cores_shrink_by_what_other_work_takes(tmp_path):
    machine = FakeMachine(tmp_path, cpus=tuple(range(8)))
    omp = FakeOpenMP()
    shared = sharing_on(machine, omp, cores=8)
    train(machine, shared, 2, others=3.0)
    assert shared.threads == 8 - 3 and omp.calls == [5]
    train(machine, shared, 3, others=0.0)
    assert shared.threads == 8 and omp.calls == [5, 8]


def test_a_look_is_taken_once_a_period_however_many_batches(machine, monkeypatch):
    reads = []
    real = sharing.busy_seconds
    monkeypatch.setattr(sharing, "busy_seconds", lambda *a, **k: reads.append(1) or real(*a, **k))
    shared = sharing_on(machine, FakeOpenMP())
    train(machine, shared, 10, others=0.0, batch=0.01)  # 1000 batches
    assert len(reads) == pytest.approx(10 / sharing.PERIOD, abs=2)


@pytest.mark.parametrize("env, reason", [
    ({"OMP_NUM_THREADS": "2"}, "the user's"),
    ({"MXNET_OMP_MAX_THREADS": "2"}, "the user's"),
    ({"MXNET_ENGINE_TYPE": "ThreadedEnginePerDevice"}, "threads of its own"),
    ({"PTB_LM_FOLLOW_LOAD": "0"}, "PTB_LM_FOLLOW_LOAD=0"),
])
def test_a_users_choice_keeps_the_count_fixed_and_says_why(env, reason):
    base = {"MXNET_OMP_MAX_THREADS": "2", "PTB_LM_DEFAULT_THREADS": "2", "MXNET_ENGINE_TYPE": "NaiveEngine",
            "PTB_LM_DEFAULT_ENGINE": "NaiveEngine"}
    assert ThreadSharing.why_fixed(base) is None
    changed = dict(base, **env)
    if "MXNET_OMP_MAX_THREADS" in env:
        changed.pop("PTB_LM_DEFAULT_THREADS")
    assert reason in ThreadSharing.why_fixed(changed)
    assert not ThreadSharing.for_this_process(changed).active


LIBGOMP = """
import ctypes, ptb_lm
from ptb_lm.runtime import import_mxnet
from ptb_lm.runtime.sharing import ThreadSharing, loaded_libgomp
mx = import_mxnet()
shared = ThreadSharing.for_this_process()
gomp = ctypes.CDLL(loaded_libgomp())
print(shared.active, shared.cores, gomp.omp_get_max_threads(), gomp.omp_get_dynamic())
shared.omp.set_team(1)
print(gomp.omp_get_max_threads(), gomp.omp_get_dynamic())
shared.omp.set_team(shared.cores)
print(gomp.omp_get_max_threads(), gomp.omp_get_dynamic())
"""


def test_the_calls_reach_the_openmp_runtime_mxnet_loaded():
    out = subprocess.run([sys.executable, "-c", LIBGOMP], env=clean_env(), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, one, back = [line.split() for line in out.stdout.strip().splitlines()]
    cores = first[1]
    assert first == ["True", cores, cores, "0"]
    assert one == ["1", "1"] and back == [cores, "0"]


def test_a_spinning_child_of_ours_counts_as_our_own_work_not_as_other_work():
    """The curve drawer is ptb_lm's own child: its CPU time is this process's, so the load watch never shrinks
    MXNet's team for it. The oracle is the child's own CPU time, read from /proc/PID/stat."""
    import time

    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)
        before, child_before = sharing.process_seconds(), _cpu_seconds(child.pid)
        time.sleep(1.0)
        after, child_after = sharing.process_seconds(), _cpu_seconds(child.pid)
    finally:
        child.kill()
        child.wait()
    spun = child_after - child_before
    assert spun > 0.3  # the child ran
    assert after - before >= spun - 0.05  # and all of it is counted as ours (this process itself sleeps)


def _cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
