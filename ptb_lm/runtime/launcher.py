"""Start MXNet's parameter-server processes and the training workers, watch them, end them.

MXNet's ``dist_sync`` kvstore (ps-lite) needs one scheduler, some servers and
the workers, each told its role and where the scheduler listens through the
DMLC_* environment variables. The pip wheel lacks the launcher that sets them
(tools/launch.py needs dmlc_tracker), so this module does it::

    scheduler  DMLC_ROLE=scheduler   python -c "import mxnet"   (mxnet serves on import)
    server k   DMLC_ROLE=server      python -c "import mxnet"
    worker r   DMLC_ROLE=worker      python -m ptb_lm --kvstore dist_sync ...  (locally or over ssh)

ps-lite has no failure handling: if one worker dies, the others wait forever in
the next all-reduce. So the launcher polls every process, and as soon as one
fails (or when it is interrupted) it ends all the others, each in its own
process group, and returns non-zero within ``grace`` seconds plus one poll.
"""

import ctypes
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ..errors import Interrupted, LaunchError
from .children import descendants, end_processes, last_line, package_environment
from .engine import ENGINE_MARK, ENGINE_VARIABLE
from .shim import check_mxnet_variables
from .threads import DEFAULT_MARK, LAUNCHER_MARK, THREAD_VARIABLES, physical_cores, user_chose_threads

logger = logging.getLogger(__name__)

SERVE = "from ptb_lm.runtime import import_mxnet; import_mxnet()"  # importing mxnet runs the server loop


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError as err:  # socket.gaierror too: a --host-ip this machine does not have
            raise LaunchError("cannot listen on --host-ip %s (%s): give one of this machine's addresses"
                              % (host, err)) from None
        return s.getsockname()[1]


def check_port_free(port, host="127.0.0.1"):
    if not 1 <= port <= 65535:
        raise LaunchError("--port must be from 1 to 65535, got %d" % port)
    free_port(host)  # says so if the address itself is wrong
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise LaunchError("port %d on %s is in use: choose another with --port" % (port, host)) from None


def check_host_reachable(host, timeout=5):
    """Raise LaunchError unless ``ssh host true`` succeeds without asking for a password."""
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % timeout, host, "true"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LaunchError("host %s cannot be reached over ssh (%s)" % (host, err)) from None
    if result.returncode != 0:
        reason = last_line(result.stderr, "exit %d" % result.returncode)
        raise LaunchError("host %s cannot be reached over ssh: %s" % (host, reason))


# A host name, an IPv4 address or [IPv6], optionally user@; never starting with "-", which ssh
# would read as an option.
_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])$")


def read_hosts(path):
    """One host per line; blank lines and # comments are skipped; each name is checked before ssh sees it."""
    try:
        with open(path, encoding="utf-8") as f:
            hosts = [line.split("#")[0].strip() for line in f]
    except (OSError, UnicodeDecodeError) as err:
        raise LaunchError("cannot read --hosts %s: %s" % (path, getattr(err, "strerror", None) or err)) from None
    for number, host in enumerate(hosts, 1):
        if host and not _HOST.match(host):
            raise LaunchError("--hosts %s, line %d: %r is not a host name (a name, an address or user@name; "
                              "never starting with '-')" % (path, number, host))
    hosts = [h for h in hosts if h]
    if not hosts:
        raise LaunchError("--hosts %s lists no host" % path)
    return hosts


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent_pid, sig=signal.SIGKILL):
    """Return a preexec function: the child gets ``sig`` when the launcher dies, however it dies.

    SIGTERM and Ctrl-C reach the launcher's handler, which ends the children
    itself; PR_SET_PDEATHSIG covers SIGKILL and crashes, which no handler sees.
    (The tracker gets SIGTERM, which it answers by ending what it started.)
    """
    def preexec():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:  # the launcher died before prctl took effect
            os._exit(1)
    return preexec if sys.platform.startswith("linux") else None


class ProcessGroup(object):
    """Named child processes, each in its own session so that ending it ends its children too,
    and each killed by the kernel if the launcher dies first."""

    def __init__(self):
        self.procs = {}

    def start(self, name, cmd, env, death_signal=signal.SIGKILL):
        logger.debug("starting %s: %s", name, " ".join(shlex.quote(c) for c in cmd))
        self.procs[name] = subprocess.Popen(cmd, env=env, start_new_session=True,
                                            preexec_fn=_die_with(os.getpid(), death_signal))

    def end_all(self, grace=5.0):
        """SIGTERM every live process group, then SIGKILL what is left after ``grace`` seconds."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.time() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.time(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc, sig):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def thread_environments(base, num_workers, local):
    """The environments of the scheduler and servers, and of the workers: ``base`` with MXNet's thread counts.

    Processes on this machine share its cores: unless the user chose a thread count
    (``base`` is then used as it is), each local worker gets an equal share of the
    physical cores, and the mostly idle scheduler and servers one thread each, so that
    no two thread pools spin against each other. A worker on another host (``local``
    false) chooses its own. (The engine needs nothing here: with DMLC_ROLE set, every
    process keeps MXNet's own unless the user chose; ptb_lm.runtime.engine.)
    """
    serve_env, worker_env = dict(base), dict(base)
    if user_chose_threads(base):
        return serve_env, worker_env
    cores = physical_cores() if local else None
    for env in (serve_env, worker_env) if cores else (serve_env,):
        env.pop(DEFAULT_MARK, None)  # unmarked, these values are choices the processes keep
    serve_env["MXNET_OMP_MAX_THREADS"] = serve_env[LAUNCHER_MARK] = "1"
    if cores:  # unknown cores: each worker keeps MXNet's own default
        share = max(1, cores // num_workers)
        worker_env["MXNET_OMP_MAX_THREADS"] = worker_env[LAUNCHER_MARK] = str(share)
        logger.info("%d local workers share %d physical cores: MXNet's threads, %d per worker",
                    num_workers, cores, share)
    return serve_env, worker_env


# What a worker on another host needs from this environment; ssh passes nothing else. A thread
# count or an engine the user chose travels with it; ptb_lm's own defaults travel marked, so that
# the host decides its own (its cores, its wheel).
REMOTE_VARIABLES = ("PYTHONPATH",) + THREAD_VARIABLES + (DEFAULT_MARK, ENGINE_VARIABLE, ENGINE_MARK)


def ssh_command(host, cmd, env):
    """The ssh command that runs ``cmd`` on ``host`` in this working directory, with the DMLC_* and
    :data:`REMOTE_VARIABLES` of ``env``."""
    exports = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items())
                       if k.startswith("DMLC_") or k in REMOTE_VARIABLES)
    remote = "cd %s && env %s %s" % (shlex.quote(os.getcwd()), exports, " ".join(shlex.quote(c) for c in cmd))
    return ["ssh", "-o", "BatchMode=yes", host, remote]


def launch(num_workers, train_args, hosts=None, num_servers=None, port=None, host_ip="127.0.0.1",
           poll=0.2, grace=5.0, shutdown_timeout=30.0):
    """Run ``num_workers`` training workers with dist_sync and return the exit code to use.

    ``train_args`` are the training command's arguments (after ``--``). With
    ``hosts``, worker r runs on ``hosts[r % len(hosts)]`` over ssh (scheduler and
    servers stay here, on ``host_ip``, which the hosts must be able to reach).
    """
    if num_workers < 1:
        raise LaunchError("--local / the number of workers must be at least 1")
    check_mxnet_variables()  # before any process starts: each would say it on its own
    if num_servers is not None and num_servers < 1:
        raise LaunchError("--servers must be at least 1, got %d" % num_servers)
    num_servers = num_servers or 1
    if port is None:
        port = free_port(host_ip if not hosts else "0.0.0.0")
    else:
        check_port_free(port, host_ip if not hosts else "0.0.0.0")
    if hosts:
        for host in sorted(set(hosts)):
            check_host_reachable(host)
    base = dict(package_environment(os.environ), DMLC_PS_ROOT_URI=host_ip, DMLC_PS_ROOT_PORT=str(port),
                DMLC_NUM_SERVER=str(num_servers), DMLC_NUM_WORKER=str(num_workers))
    serve_env, worker_env = thread_environments(base, num_workers, local=not hosts)
    group = ProcessGroup()
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)

    # Ctrl-C, kill, and a closed terminal (SIGHUP) all end every process before the launcher exits.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        group.start("scheduler", [sys.executable, "-c", SERVE], dict(serve_env, DMLC_ROLE="scheduler"))
        for k in range(num_servers):
            group.start("server %d" % k, [sys.executable, "-c", SERVE], dict(serve_env, DMLC_ROLE="server"))
        workers = []
        for r in range(num_workers):
            env = dict(worker_env, DMLC_ROLE="worker")
            cmd = [sys.executable, "-m", "ptb_lm"] + list(train_args)
            if hosts:
                cmd = ssh_command(hosts[r % len(hosts)], cmd, env)
            group.start("worker %d" % r, cmd, env)
            workers.append("worker %d" % r)
        code = _watch(group, workers, interrupted, poll, grace, shutdown_timeout)
        if code == 130:
            raise Interrupted(interrupted_message(train_args))  # once every process is ended (below)
        return code
    finally:
        group.end_all(grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_on_cluster(cluster, num_workers, train_args, num_servers=None, host_ip=None, host_file=None,
                      extra_options=(), poll=0.2, grace=5.0):
    """Run the job through MXNet's dmlc_tracker (``cluster``: mpi, slurm, sge or yarn); return the exit code.

    The tracker runs in a process of its own (ptb_lm.runtime.tracker mends it), supervised
    as the local launcher supervises its processes: it and everything it starts on this
    machine (the scheduler, mpirun or srun) end with the launcher, however it ends, and
    the first command that fails ends the job with one line. What runs on other machines
    is the cluster tool's to end (mpirun and srun end their ranks when they end).
    """
    from .tracker import CLUSTERS, tracker_command, tracker_options

    if cluster not in CLUSTERS:
        raise LaunchError("unknown --launcher %r: choose local, ssh, %s" % (cluster, ", ".join(CLUSTERS)))
    if num_workers < 1:
        raise LaunchError("--num-workers must be at least 1, got %d" % num_workers)
    if num_servers is not None and num_servers < 1:
        raise LaunchError("--servers must be at least 1, got %d" % num_servers)
    check_mxnet_variables()
    tool = {"mpi": "mpirun", "slurm": "srun", "sge": "qsub", "yarn": "java"}[cluster]
    if cluster == "yarn":
        _check_yarn(extra_options)
    if shutil.which(tool) is None:
        raise LaunchError("--launcher %s needs %s on PATH, and it is not there: install it (%s), or use --launcher "
                          "local or ssh" % (cluster, tool, {"mpi": "Debian: apt install openmpi-bin",
                                                            "slurm": "on a SLURM cluster's login node",
                                                            "sge": "on an SGE cluster's submit host",
                                                            "yarn": "on a Hadoop client"}[cluster]))
    if cluster == "mpi":
        check_mpi_user(os.environ)
    num_servers = num_servers or 1
    local = cluster == "mpi" and not host_file  # every rank on this machine: they share its cores
    serve_env, worker_env = thread_environments(package_environment(os.environ), num_workers, local=local)
    # The cluster tools pass on only the DMLC_* variables: the thread and engine settings ride in the command.
    carried = {k: v for k, v in worker_env.items() if k in REMOTE_VARIABLES}
    command = "env %s %s -m ptb_lm %s" % (" ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(carried.items())),
                                         shlex.quote(sys.executable), " ".join(shlex.quote(a) for a in train_args))
    if cluster == "sge":  # one array job: tasks 1..N work, the rest serve (the scheduler has its role already)
        command = "sh -c %s" % shlex.quote(
            '[ -n "$DMLC_ROLE" ] || if [ "${SGE_TASK_ID:-1}" -le %d ]; then DMLC_ROLE=worker; else DMLC_ROLE=server; '
            'fi; export DMLC_ROLE; exec %s' % (num_workers, command))
    folder = tempfile.mkdtemp(prefix="ptb-lm-tracker-")
    report = os.path.join(folder, "failure.txt")
    job = {"cluster": cluster, "host_ip": host_ip, "report": report,
           "options": tracker_options(cluster, num_workers, num_servers, command, host_file, extra_options)}
    from .children import PACKAGE_ROOT

    group = ProcessGroup()
    interrupted = []
    previous = {s: signal.signal(s, lambda signum, frame: interrupted.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        group.start("tracker", tracker_command(job, PACKAGE_ROOT), dict(worker_env), death_signal=signal.SIGTERM)
        proc = group.procs["tracker"]
        while proc.poll() is None:
            if interrupted:
                raise Interrupted(interrupted_message(train_args))
            time.sleep(poll)
        if proc.returncode != 0:
            reason = last_line(open(report).read(), "") if os.path.exists(report) else ""
            logger.error("%s: ending every process", reason or "the tracker exited with code %d" % proc.returncode)
            return 1
        return 0
    finally:
        below = descendants(group.procs["tracker"].pid) if "tracker" in group.procs else []
        group.end_all(3 * grace)  # the tracker answers SIGTERM by ending everything it started
        end_processes([pid for pid in below if pid != os.getpid()], grace)  # what it could not end
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(folder, ignore_errors=True)


def _check_yarn(extra_options):
    """Raise LaunchError unless dmlc_tracker's YARN mode can start: HADOOP_HOME with its hadoop, and the
    dmlc-yarn.jar the mxnet wheel does not ship (--tracker-option=--yarn-app-dir=DIR names its folder)."""
    home = os.environ.get("HADOOP_HOME")
    if not home or not os.path.isfile(os.path.join(home, "bin", "hadoop")):
        raise LaunchError("--launcher yarn needs HADOOP_HOME set to a Hadoop 2+ client (with bin/hadoop): set it, "
                          "or use --launcher local, ssh, mpi or slurm")
    app_dir = next((o.split("=", 1)[1] for o in extra_options if o.startswith("--yarn-app-dir=")), None)
    if app_dir is None or not os.path.isfile(os.path.join(app_dir, "dmlc-yarn.jar")):
        raise LaunchError("--launcher yarn needs dmlc-yarn.jar, which the mxnet 1.9.1 wheel does not ship: build it "
                          "from dmlc-core's tracker/yarn and give --tracker-option=--yarn-app-dir=ITS_FOLDER")


# Open MPI refuses to start as root (the usual user in a container) unless both of these are set.
MPI_ROOT_VARIABLES = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")


def check_mpi_user(environ, euid=None):
    """Raise LaunchError, saying what to set, where Open MPI's mpirun would refuse to run as root."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0 and not all(environ.get(name) == "1" for name in MPI_ROOT_VARIABLES):
        raise LaunchError("Open MPI's mpirun refuses to run as root, which this launcher is: give --allow-run-as-root "
                          "(it sets %s=1 for mpirun), or launch as another user" % "=1 and ".join(MPI_ROOT_VARIABLES))


def interrupted_message(train_args):
    """What an interrupted launch says: every process is ended, and how to go on from its last checkpoint."""
    args = list(train_args)
    save_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--save-dir=")), None)
    if save_dir is None and "--save-dir" in args[:-1]:
        save_dir = args[args.index("--save-dir") + 1]
    if save_dir is None:
        return ("interrupted: every process of the job was ended; nothing was saved (give the workers --save-dir "
                "DIR to be able to resume)")
    return ("interrupted: every process of the job was ended; %s/last holds the last epoch completed, if any: "
            "continue with the same ptb-lm-launch command, --resume %s in place of --save-dir %s"
            % (save_dir, save_dir, save_dir))


def _watch(group, workers, interrupted, poll, grace, shutdown_timeout):
    """Wait for the workers; on any failure or interruption end everything. Returns the exit code."""
    finished_at = servers_gone_at = None
    while True:
        if interrupted:
            return 130
        codes = {name: proc.poll() for name, proc in group.procs.items()}
        failed = [name for name, code in codes.items() if code not in (None, 0)]
        if failed:
            logger.error("%s exited with code %s: ending every other process", failed[0], codes[failed[0]])
            return 1
        workers_done = all(codes[w] == 0 for w in workers)
        if not workers_done and any(codes[n] is not None for n in codes if n not in workers):
            # The servers end (with 0) as the last worker finalizes, which can be seen a moment
            # before that worker's own exit: only a server gone for long means a lost run.
            servers_gone_at = servers_gone_at or time.time()
            if time.time() - servers_gone_at > grace:
                logger.error("a scheduler or server ended while workers were still training: ending every process")
                return 1
        if workers_done:
            if all(code is not None for code in codes.values()):
                return 0
            finished_at = finished_at or time.time()
            if time.time() - finished_at > shutdown_timeout:  # servers should end once the workers finalize
                logger.warning("servers did not end %ds after the workers; ending them", shutdown_timeout)
                return 0
        time.sleep(poll)
