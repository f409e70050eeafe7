"""MXNet's operator threads: one per physical core unless the user chose, and a clear error for a value
MXNet cannot take. MXNet itself gives its operators half the logical CPUs of an x86 machine, assuming
two hyper-threads a core; ptb_lm counts the physical cores (ptb_lm.runtime.threads)."""
import os
import subprocess
import sys

import pytest

from ptb_lm.runtime import threads
from ptb_lm.runtime.launcher import thread_environments

from helpers import (
    ROOT,
    clean_env,
    cpu_wheel_installed,
    expected_cores,
    threads_after_a_product,
)


def fake_sysfs(root, topology, quota=None):
    """A /sys with CPUs {cpu: (package, core)} and, optionally, a cgroup v2 cpu.max line at the top.

    Give ``proc=`` the same folder: a /proc without self/cgroup, so the top is all that is read.
    """
    for cpu, (package, core) in topology.items():
        folder = root / ("devices/system/cpu/cpu%d/topology" % cpu)
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text("%d\n" % package)
        (folder / "core_id").write_text("%d\n" % core)
    if quota is not None:
        (root / "fs/cgroup").mkdir(parents=True)
        (root / "fs/cgroup/cpu.max").write_text(quota + "\n")
    return str(root)


# four logical CPUs: two cores of two hyper-threads each, siblings 0/2 and 1/3, as Linux numbers them
HYPERTHREADED = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}


@pytest.mark.parametrize("cpus, cores", [({0, 1, 2, 3}, 2), ({0, 2}, 1), ({0, 1}, 2), ({3}, 1)])
def test_physical_cores_counts_cores_not_hyperthreads(tmp_path, cpus, cores):
    assert threads.physical_cores(fake_sysfs(tmp_path, HYPERTHREADED), cpus, proc=str(tmp_path)) == cores


def test_physical_cores_tells_packages_apart_and_obeys_a_cgroup_quota(tmp_path):
    two_sockets = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}  # core ids repeat on the second socket
    for name, quota, cores in [("a", None, 4), ("b", "150000 100000", 2), ("c", "max 100000", 4)]:
        root = fake_sysfs(tmp_path / name, two_sockets, quota)
        assert threads.physical_cores(root, {0, 1, 2, 3}, proc=root) == cores, quota
    assert threads.physical_cores(str(tmp_path / "nothing"), {0}, proc=str(tmp_path / "nothing")) is None


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("layout", ["v2", "hybrid", "v1"])
def test_a_quota_on_a_nested_cgroup_or_its_ancestors_binds(tmp_path, layout):
    """A systemd slice or a batch job seen from the host: the quota sits below /sys/fs/cgroup, on the
    process's cgroup (as /proc/self/cgroup names it) or on one of its parents."""
    four_cores = {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (0, 3)}
    cgroup = "/job.slice/run.scope"
    for quota_at, quota in [("job.slice/run.scope", 1), ("job.slice", 3)]:  # its own cgroup, then its parent
        root = tmp_path / layout / str(quota)
        sysfs = fake_sysfs(root, four_cores)
        if layout == "v1":
            write(root / "self/cgroup", "5:memory:/elsewhere\n4:cpu,cpuacct:%s\n0::/\n" % cgroup)
            folder = root / "fs/cgroup/cpu,cpuacct" / quota_at
            write(folder / "cpu.cfs_quota_us", "%d\n" % (quota * 50000))
            write(folder / "cpu.cfs_period_us", "50000\n")
        else:
            write(root / "self/cgroup", ("1:name=systemd:/x\n" if layout == "hybrid" else "") + "0::%s\n" % cgroup)
            top = root / ("fs/cgroup/unified" if layout == "hybrid" else "fs/cgroup")
            write(top / quota_at / "cpu.max", "%d 100000\n" % (quota * 100000))
            write(top / "cpu.max", "max 100000\n")
        assert threads.physical_cores(sysfs, {0, 1, 2, 3}, proc=str(root)) == quota, (layout, quota_at)
        # without /proc/self/cgroup only the top is read, where there is no quota; likewise for a cgroup
        # outside the namespace's view, which a ".." in its path shows
        assert threads.physical_cores(sysfs, {0, 1, 2, 3}, proc=str(tmp_path / "no-proc")) == 4
        (root / "self/cgroup").write_text((root / "self/cgroup").read_text().replace(cgroup, "/../job.slice"))
        assert threads.physical_cores(sysfs, {0, 1, 2, 3}, proc=str(root)) == 4


def test_physical_cores_on_this_machine_agrees_with_lscpu():
    assert threads.physical_cores() == expected_cores()


def test_odd_cgroup_files_are_ignored_and_odd_topology_is_unknown(tmp_path):
    for quota in ("100000 0", "0 100000", "-5 100000", "x y", ""):
        root = fake_sysfs(tmp_path / ("q%d" % len(list(tmp_path.iterdir()))), HYPERTHREADED, quota)
        assert threads.physical_cores(root, {0, 1, 2, 3}, proc=root) == 2, quota
    root = fake_sysfs(tmp_path / "binary", {0: (0, 0)})
    (tmp_path / "binary/devices/system/cpu/cpu0/topology/core_id").write_bytes(b"\xff\xfe")
    assert threads.physical_cores(root, {0}, proc=root) is None


def child_environment(env):
    code = "import os, ptb_lm; print(os.environ.get('MXNET_OMP_MAX_THREADS'), os.environ.get('OMP_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_sets_one_thread_per_core_and_keeps_a_users_choice():
    cores = str(expected_cores())
    assert child_environment(clean_env()) == [cores, "None"]
    assert child_environment(clean_env(OMP_NUM_THREADS="")) == [cores]  # empty counts as unset, as MXNet reads it
    assert child_environment(clean_env(OMP_NUM_THREADS="3")) == ["None", "3"]
    assert child_environment(clean_env(MXNET_OMP_MAX_THREADS="5")) == ["5", "None"]
    # a parent's default gives way to an OMP_NUM_THREADS set after it (MXNet would rank it above)
    mark = {threads.DEFAULT_MARK: "2"}
    assert child_environment(clean_env(OMP_NUM_THREADS="3", MXNET_OMP_MAX_THREADS="2", **mark)) == ["None", "3"]
    # ptb_lm's default, inherited from a parent process on another machine, is counted again
    assert child_environment(clean_env(MXNET_OMP_MAX_THREADS="7", **{threads.DEFAULT_MARK: "7"})) == [cores, "None"]


def test_mxnet_runs_a_product_on_one_thread_per_physical_core():
    # An OpenMP team of n threads adds n - 1 to the process's threads; MXNet's own default would add none
    # on a machine of one thread a core. Counted under MXNet's threaded engine: under NaiveEngine the process
    # held 3 threads after the product with one thread or with two, so the count cannot tell there (the
    # benchmark's GEMM peak, 1.6x with two, shows them).
    threaded = {"MXNET_ENGINE_TYPE": "ThreadedEnginePerDevice"}
    one = threads_after_a_product(clean_env(MXNET_OMP_MAX_THREADS="1", **threaded))
    assert threads_after_a_product(clean_env(**threaded)) - one == expected_cores() - 1


@pytest.mark.parametrize("name, value, words", [
    ("OMP_NUM_THREADS", "two", "is not a whole number"), ("MXNET_OMP_MAX_THREADS", "two", "is not a whole number"),
    ("OMP_NUM_THREADS", "4,2", "is not a whole number"), ("MXNET_OMP_MAX_THREADS", "1_0", "is not a whole number"),
    ("MXNET_ENGINE_TYPE", "naive", "is not an engine"), ("MXNET_ENGINE_TYPE", "", "is not an engine")])
@pytest.mark.parametrize("script", ["train.py", "launch.py", "benchmark.py"])
def test_a_thread_count_or_engine_mxnet_cannot_take_is_one_line(name, value, words, script):
    args = {"train.py": ["--epochs", "1"], "launch.py": ["--local", "2", "--", "--epochs", "1"],
            "benchmark.py": ["--configs", "chapter", "--variants", "fast", "--max-batches", "1"]}[script]
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script)] + args,
                         env=clean_env(**{name: value}), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("ptb-lm: error: %s=%r %s" % (name, value, words)), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_the_run_log_says_how_many_threads_and_which_engine(tiny_corpus):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                          "--epochs", "1", "--max-batches", "2", "--batch-size", "4", "--progress", "none",
                          "--ctx", "cpu"],
                         env=clean_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "MXNet's CPU threads: %d, one per physical core" % expected_cores() in out.stdout
    engine = "NaiveEngine, each operator on the calling thread" if cpu_wheel_installed() else "ThreadedEnginePerDevice"
    assert "MXNet's engine: %s" % engine in out.stdout
    assert "MXNet start using engine" not in out.stderr  # MXNet's own line about it, after the run's last


@pytest.mark.parametrize("workers", [1, 2])
def test_the_launcher_divides_the_cores_among_local_workers(workers, monkeypatch):
    cores = expected_cores()
    base = clean_env(MXNET_OMP_MAX_THREADS=str(cores), **{threads.DEFAULT_MARK: str(cores)})  # its own default
    serve, worker = thread_environments(base, workers, local=True)
    assert (serve["MXNET_OMP_MAX_THREADS"], worker["MXNET_OMP_MAX_THREADS"]) == ("1", str(max(1, cores // workers)))
    assert threads.user_chose_threads(worker) and threads.user_chose_threads(serve)  # kept, not counted again
    monkeypatch.setattr("ptb_lm.runtime.launcher.physical_cores", lambda: None)  # cores unknown: MXNet's own default
    serve, worker = thread_environments(base, workers, local=True)
    assert serve["MXNET_OMP_MAX_THREADS"] == "1" and worker["MXNET_OMP_MAX_THREADS"] == str(cores)
    assert not threads.user_chose_threads(worker)
    serve, worker = thread_environments(clean_env(OMP_NUM_THREADS="1"), 2, local=True)
    assert "MXNET_OMP_MAX_THREADS" not in worker and worker["OMP_NUM_THREADS"] == "1"
