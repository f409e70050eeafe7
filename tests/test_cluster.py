"""Beyond one machine: MPI through MXNet's dmlc_tracker for real, ssh across real network hosts (network
namespaces joined by veth pairs, an OpenSSH server in each), and the commands handed to SLURM's srun and
SGE's qsub, recorded by stand-ins (no scheduler runs here).

CI installs OpenMPI, OpenSSH's server and iproute2 from Debian's packages and runs as root; where a
machine lacks one of them, these tests fail and say which, rather than skip.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from helpers import LAUNCH, ROOT, TRAIN, batch_losses, marked_env, processes_marked

pytestmark = pytest.mark.dist

ROOT_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")  # OpenMPI refuses root otherwise


def need(program, package):
    if shutil.which(program) is None:
        pytest.fail("%s is not installed: these tests need it (Debian: apt install %s; .ci/run installs it)"
                    % (program, package))


def single_process_losses(tiny_corpus, tmp_path):
    log = str(tmp_path / "single.jsonl")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                          "--epochs", "1", "--log-json", log] + TRAIN, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return batch_losses(log)


# --- MPI ---------------------------------------------------------------------------------------------

def test_two_workers_under_mpirun_match_one_process(tiny_corpus, tmp_path):
    need("mpirun", "openmpi-bin")
    expected = single_process_losses(tiny_corpus, tmp_path)
    log = str(tmp_path / "mpi.jsonl")
    # as root (CI's user), --allow-run-as-root is what lets Open MPI start
    out = subprocess.run([sys.executable, LAUNCH, "--launcher", "mpi", "--num-workers", "2", "--servers", "1",
                          "--allow-run-as-root", "--", "--data", tiny_corpus, "--epochs", "1", "--log-json", log]
                         + TRAIN, cwd=ROOT, capture_output=True, text=True, timeout=600, env=marked_env("mpi"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = batch_losses(log)
    assert len(got) == len(expected) >= 20
    assert got == pytest.approx(expected, rel=1e-4)
    assert out.stdout.count("Test loss") == 1  # rank 0 only
    print("mpirun, 2 workers and a server: %d batch losses, largest relative gap to one process %.1e"
          % (len(got), largest_gap(got, expected)))


def largest_gap(got, expected):
    """The largest relative difference between two runs' batch losses."""
    return max(abs(a - b) / abs(b) for a, b in zip(got, expected))


def start_mpi_job(tiny_corpus, tmp_path, mark):
    log = str(tmp_path / "long.jsonl")
    proc = subprocess.Popen([sys.executable, LAUNCH, "--launcher", "mpi", "--num-workers", "2", "--", "--data",
                             tiny_corpus, "--epochs", "100000", "--log-json", log] + TRAIN,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(marked_env(mark), **ROOT_ENV))
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.exists(log) and len(batch_losses(log)) > 20):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert os.path.exists(log), "the MPI workers never started training"
    return proc


def pids_named(mark, word):
    found = []
    for pid in processes_marked(mark):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if word.encode() in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def ranks(mark, role):
    found = []
    for pid in processes_marked(mark):
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                python = b"ptb_lm" in f.read()
        except OSError:
            continue
        if python and ("DMLC_ROLE=%s" % role).encode() in env:
            found.append(pid)
    return found


def ends_everything(proc, mark, within):
    start = time.time()
    _, err = proc.communicate(timeout=within)
    took = time.time() - start
    deadline = time.time() + 30
    while time.time() < deadline and processes_marked(mark):
        time.sleep(0.2)
    return took, err


@pytest.mark.parametrize("victim", ["worker", "mpirun"])
def test_a_killed_worker_or_mpirun_ends_the_job_in_one_line(tiny_corpus, tmp_path, victim):
    need("mpirun", "openmpi-bin")
    mark = uuid.uuid4().hex
    proc = start_mpi_job(tiny_corpus, tmp_path, mark)
    targets = ranks(mark, "worker") if victim == "worker" else pids_named(mark, "mpirun")
    assert targets, "no %s found" % victim
    os.kill(targets[-1], signal.SIGKILL)
    took, err = ends_everything(proc, mark, within=120)
    assert proc.returncode == 1, err
    lines = [l for l in err.splitlines() if "ending every process" in l]
    assert len(lines) == 1 and "exited with code" in lines[0], err[-2000:]
    assert processes_marked(mark) == []
    print("a killed %s ended the MPI job in %.1f s" % (victim, took))


def test_a_killed_launcher_leaves_no_mpi_process_behind(tiny_corpus, tmp_path):
    need("mpirun", "openmpi-bin")
    mark = uuid.uuid4().hex
    proc = start_mpi_job(tiny_corpus, tmp_path, mark)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline and processes_marked(mark):
        time.sleep(0.2)
    assert processes_marked(mark) == []


# --- ssh across network namespaces -------------------------------------------------------------------

def run(*command, check=True):
    return subprocess.run(list(command), capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def network_hosts(tmp_path):
    """Two hosts on this machine: network namespaces, each with a veth pair to this one (10.X.N.1 here,
    10.X.N.2 there, X apart from other runs') and an OpenSSH server on its own address that takes a key made for the test. Yields
    ``(addresses, ssh folder, host_ip)``; a stand-in ``ssh`` first on PATH runs the real ssh with that key."""
    need("ip", "iproute2")
    need("sshd", "openssh-server")
    if os.geteuid() != 0:
        pytest.fail("the network-host tests make network namespaces, which needs root (CI runs as root)")
    tag = uuid.uuid4().hex[:5]
    subnet = "10.%d" % (64 + int(tag, 16) % 64)  # its own addresses, apart from any other run's
    names, addresses, daemons, links = [], [], [], []
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    key = str(ssh_dir / "id_ed25519")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "host_key"))
    shutil.copy(key + ".pub", str(ssh_dir / "authorized_keys"))
    os.makedirs("/run/sshd", exist_ok=True)
    sshd = shutil.which("sshd")
    try:
        for n in (1, 2):
            name, veth, peer = "ptblm%s%d" % (tag, n), "vp%s%d" % (tag, n), "vq%s%d" % (tag, n)
            here, there = "%s.%d.1" % (subnet, n), "%s.%d.2" % (subnet, n)
            run("ip", "netns", "add", name)
            names.append(name)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
            links.append(veth)
            run("ip", "link", "set", peer, "netns", name)
            run("ip", "addr", "add", here + "/24", "dev", veth)
            run("ip", "link", "set", veth, "up")
            for command in (["ip", "addr", "add", there + "/24", "dev", peer], ["ip", "link", "set", peer, "up"],
                            ["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "default", "via", here]):
                run("ip", "netns", "exec", name, *command)
            daemons.append(subprocess.Popen(
                ["ip", "netns", "exec", name, sshd, "-D", "-E", str(ssh_dir / ("sshd-%d.log" % n)), "-f", "/dev/null",
                 "-h", str(ssh_dir / "host_key"),
                 "-o", "ListenAddress=%s" % there, "-o", "AuthorizedKeysFile=%s" % (ssh_dir / "authorized_keys"),
                 "-o", "StrictModes=no", "-o", "PermitRootLogin=prohibit-password", "-o", "PidFile=none",
                 "-o", "UsePAM=no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            addresses.append(there)
        config = ssh_dir / "config"
        config.write_text("Host " + subnet + ".*\n  IdentityFile %s\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                          "  LogLevel ERROR\n" % key)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "ssh").write_text("#!/bin/sh\nexec %s -F %s \"$@\"\n" % (shutil.which("ssh"), config))
        (bin_dir / "ssh").chmod(0o755)
        deadline = time.time() + 30
        for address in addresses:
            while True:
                answer = run(str(bin_dir / "ssh"), "-o", "BatchMode=yes", address, "true", check=False)
                if answer.returncode == 0:
                    break
                assert time.time() < deadline, "sshd on %s never answered: %s; its log: %s" % (
                    address, answer.stderr, open(str(ssh_dir / ("sshd-%d.log" % (addresses.index(address) + 1)))).read())
                time.sleep(0.3)
        yield addresses, str(bin_dir), subnet + ".1.1"
    finally:
        for name in names:  # every process in the namespace: the sshd and its connections' children
            for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for daemon in daemons:
            daemon.wait()
        for name in names:
            run("ip", "netns", "del", name, check=False)
        for link in links:
            run("ip", "link", "del", link, check=False)


def test_workers_on_two_network_hosts_match_one_process_and_talk_over_their_own_addresses(network_hosts, tiny_corpus,
                                                                                       tmp_path):
    addresses, bin_dir, host_ip = network_hosts
    expected = single_process_losses(tiny_corpus, tmp_path)
    hosts = tmp_path / "hosts"
    hosts.write_text("\n".join(addresses) + "\n")
    log = str(tmp_path / "hosts.jsonl")
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.Popen([sys.executable, LAUNCH, "--hosts", str(hosts), "--host-ip", host_ip, "--",
                             "--data", tiny_corpus, "--epochs", "1", "--log-json", log] + TRAIN,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = {}
    namespaces = {address: _netns_of(address) for address in addresses}
    while proc.poll() is None:  # the workers' connections, as each namespace's kernel lists them
        for address in addresses:
            out = run("ip", "netns", "exec", namespaces[address], "ss", "-tnH", check=False)
            seen.setdefault(address, set()).update(line.split()[3] for line in out.stdout.splitlines()
                                                   if len(line.split()) > 4)
        time.sleep(0.3)
    out, err = proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    got = batch_losses(log)
    assert got == pytest.approx(expected, rel=1e-4)
    print("2 network hosts over ssh: %d batch losses, largest relative gap to one process %.1e"
          % (len(got), largest_gap(got, expected)))
    for address in addresses:
        local_ends = {end.rsplit(":", 1)[0] for end in seen[address]}
        assert local_ends and local_ends <= {address}, (address, seen[address])


def _netns_of(address):
    """The namespace that holds ``address``, found by asking each one."""
    for name in run("ip", "netns", "list").stdout.split():
        if name.startswith("ptblm") and address in run("ip", "netns", "exec", name, "ip", "-4", "addr").stdout:
            return name
    raise AssertionError("no namespace holds %s" % address)


def test_a_network_host_whose_worker_is_killed_ends_the_job_in_one_line(network_hosts, tiny_corpus, tmp_path):
    addresses, bin_dir, host_ip = network_hosts
    hosts = tmp_path / "hosts"
    hosts.write_text("\n".join(addresses) + "\n")
    log = str(tmp_path / "long.jsonl")
    mark = uuid.uuid4().hex
    env = dict(marked_env(mark), PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.Popen([sys.executable, LAUNCH, "--hosts", str(hosts), "--host-ip", host_ip, "--",
                             "--data", tiny_corpus, "--epochs", "100000", "--log-json", log] + TRAIN,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 180
    while time.time() < deadline and not (os.path.exists(log) and len(batch_losses(log)) > 20):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    victim = _netns_of(addresses[1])
    pids = run("ip", "netns", "pids", victim).stdout.split()
    workers = [int(p) for p in pids if b"ptb_lm" in open("/proc/%s/cmdline" % p, "rb").read()]
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    start = time.time()
    _, err = proc.communicate(timeout=120)
    took = time.time() - start
    assert proc.returncode == 1
    assert len([l for l in err.splitlines() if "exited with code" in l and "ending every" in l]) == 1, err[-2000:]
    time.sleep(1)
    assert [p for p in run("ip", "netns", "pids", victim).stdout.split()
            if b"ptb_lm" in open("/proc/%s/cmdline" % p, "rb").read()] == []
    print("a killed worker on a network host ended the job in %.1f s" % took)


# --- SLURM and SGE: the commands handed to them ------------------------------------------------------

RECORDER = """#!/bin/sh
# records this call's arguments and environment, then runs nothing
printf '%%s\\n' "$0 $*" >> %(log)s
env | grep -E '^(DMLC_|MXNET_|OMP_|PTB_LM_)' | sort >> %(log)s
echo --- >> %(log)s
exit %(code)d
"""


def stand_in(bin_dir, name, log, code=0):
    path = os.path.join(bin_dir, name)
    with open(path, "w") as f:
        f.write(RECORDER % {"log": log, "code": code})
    os.chmod(path, 0o755)


def wait_for_the_call(proc, calls, within=240):
    """True once the stand-in has recorded a whole call; False if ptb-lm-launch ended first or ``within``
    seconds passed (the tracker starts a scheduler first, which is slow on a busy machine)."""
    deadline = time.time() + within
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(calls) and "---" in open(calls).read():
            return True
        time.sleep(0.2)
    return os.path.exists(calls) and "---" in open(calls).read()


@pytest.mark.parametrize("cluster, tool", [("slurm", "srun"), ("sge", "qsub")])
def test_the_tracker_hands_the_cluster_tool_the_training_command(tiny_corpus, tmp_path, cluster, tool):
    """dmlc_tracker's own submit runs the stand-in; ptb-lm-launch's job must reach it whole: every role's
    training command with the thread and engine settings, and the DMLC_* environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = str(tmp_path / "calls.txt")
    stand_in(str(bin_dir), tool, calls)
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), MXNET_OMP_MAX_THREADS="3")
    env.pop("PTB_LM_DEFAULT_THREADS", None)
    logs = ["--tracker-option=--sge-log-dir=%s" % (tmp_path / "sge-logs")] if cluster == "sge" else []
    proc = subprocess.Popen([sys.executable, LAUNCH, "--launcher", cluster, "--num-workers", "2", "--host-ip",
                             "127.0.0.1"] + logs + ["--", "--data", tiny_corpus, "--epochs", "1"] + TRAIN,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    called = wait_for_the_call(proc, calls)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the stand-in starts nothing: the scheduler would wait for ever
    _, err = proc.communicate(timeout=60)
    assert called, "%s was never called; ptb-lm-launch said: %s" % (tool, err[-2000:])
    assert proc.returncode == 130, err
    recorded = open(calls).read()
    assert "-m ptb_lm --kvstore dist_sync --data %s" % tiny_corpus in recorded
    assert "MXNET_OMP_MAX_THREADS=3" in recorded  # the user's choice travels in the command
    if cluster == "slurm":
        assert recorded.count("srun --share --exclusive=user -N 2 -n 2") == 1  # the workers
        assert recorded.count("srun --share --exclusive=user -N 1 -n 1") == 1  # the server
        assert "DMLC_ROLE=worker" in recorded and "DMLC_ROLE=server" in recorded
        assert "DMLC_PS_ROOT_URI=127.0.0.1" in recorded and "DMLC_NUM_WORKER=2" in recorded
    else:
        assert "-t 1-3" in recorded  # one array job of 2 workers and 1 server
        assert "DMLC_PS_ROOT_URI=127.0.0.1" in recorded and "DMLC_NUM_WORKER=2" in recorded  # qsub -v
        assert "SGE_TASK_ID:-1}\" -le 2 ]; then DMLC_ROLE=worker; else DMLC_ROLE=server" in recorded


OPEN_MPI = """#!/bin/sh
# answers as Open MPI's mpirun, records each launch, then fails it after a moment
if [ "$1" = --version ]; then echo "mpirun (Open MPI) 4.1.4"; exit 0; fi
printf '%%s\\n' "$*" >> %(log)s
sleep 1
exit 3
"""


def test_each_mpirun_gets_a_session_folder_of_its_own_removed_at_the_end(tiny_corpus, tmp_path):
    """dmlc_tracker starts the workers' and the servers' mpirun together, and Open MPI 4 races on its shared
    session folder (/tmp/ompi.HOST.UID: "unable to create the desired directory ... File exists"): each
    mpirun must get its own --mca orte_tmpdir_base, and the folders go when the job ends."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = str(tmp_path / "calls.txt")
    path = bin_dir / "mpirun"
    path.write_text(OPEN_MPI % {"log": calls})
    path.chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), **ROOT_ENV)
    out = subprocess.run([sys.executable, LAUNCH, "--launcher", "mpi", "--num-workers", "2", "--servers", "1",
                          "--", "--data", tiny_corpus, "--epochs", "1"] + TRAIN,
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1 and "exited with code 3" in out.stderr, out.stderr[-2000:]
    launches = open(calls).read().splitlines()
    assert len(launches) == 2, launches  # the workers' and the servers'
    folders = [line.split("--mca orte_tmpdir_base ", 1)[1].split()[0] for line in launches]
    assert len(set(folders)) == 2, folders
    assert not any(os.path.exists(folder) for folder in folders), folders


HADOOP = """#!/bin/sh
case "$1" in version) echo "Hadoop 3.3.6";; classpath) echo /opt/hadoop/share;; esac
"""


def test_yarn_needs_hadoop_and_the_jar_the_wheel_lacks_and_then_gets_the_command(tiny_corpus, tmp_path):
    base = [sys.executable, LAUNCH, "--launcher", "yarn", "--num-workers", "2", "--host-ip", "127.0.0.1"]
    training = ["--", "--data", tiny_corpus, "--epochs", "1"] + TRAIN
    env = {k: v for k, v in os.environ.items() if k != "HADOOP_HOME"}
    out = subprocess.run(base + training, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "HADOOP_HOME" in out.stderr
    home = tmp_path / "hadoop"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "hadoop").write_text(HADOOP)
    (home / "bin" / "hadoop").chmod(0o755)
    env["HADOOP_HOME"] = str(home)
    out = subprocess.run(base + training, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "dmlc-yarn.jar" in out.stderr
    app = tmp_path / "app"
    app.mkdir()
    (app / "dmlc-yarn.jar").write_text("a stand-in")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = str(tmp_path / "calls.txt")
    stand_in(str(bin_dir), "java", calls)
    env["PATH"] = "%s:%s" % (bin_dir, os.environ["PATH"])
    proc = subprocess.Popen(base + ["--tracker-option=--yarn-app-dir=%s" % app] + training, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    called = wait_for_the_call(proc, calls)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert called, "java was never called; ptb-lm-launch said: %s" % err[-2000:]
    assert "exited with code" not in err, err  # the scheduler, started here, runs (it used to fail with 126)
    recorded = open(calls).read()
    assert "org.apache.hadoop.yarn.dmlc.Client" in recorded and "dmlc-yarn.jar" in recorded
    assert "-m ptb_lm --kvstore dist_sync --data %s" % tiny_corpus in recorded
    assert "DMLC_NUM_WORKER=2" in recorded and "DMLC_NUM_SERVER=1" in recorded


def test_a_cluster_tool_that_is_missing_is_one_line(tiny_corpus, tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    out = subprocess.run([sys.executable, LAUNCH, "--launcher", "slurm", "--num-workers", "2", "--", "--data",
                          tiny_corpus], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "srun" in out.stderr
