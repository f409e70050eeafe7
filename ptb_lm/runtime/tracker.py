"""MXNet's own cluster launcher, dmlc_tracker (in the mxnet wheel), made to run on today's Pythons.

``ptb-lm-launch --launcher mpi|slurm|sge|yarn`` hands the job to dmlc_tracker's submit
functions, not to a rewrite of them. What stands in their way is mended
here, in the tracker's own process (:data:`TRACKER_MAIN`):

* On Python >= 3.9 ``threading.Thread.isAlive`` is gone (it is ``is_alive``); the tracker
  calls it while it waits, and died there (``AttributeError: 'Thread' object has no
  attribute 'isAlive'``, dmlc_tracker/tracker.py). The old name is aliased back, as the
  shim aliases numpy's ``np.bool``.
* It starts mpirun and srun in daemon threads and ignores their failure: when a worker
  dies, the thread's exception is printed and the scheduler waits forever. Here a thread
  that fails ends the tracker's process at once, with one line saying which command
  failed, which ptb-lm-launch turns into its error line and the end of every process.
* It picks its own address for the scheduler (``--host-ip`` is ignored by the mpi and
  slurm modes); here it takes ptb-lm-launch's.
* Its MPI mode starts the workers' and the servers' mpirun at the same moment, and Open MPI 4
  creates its session folder (/tmp/ompi.HOST.UID) with a race between the two: one of them
  fails now and then with "A call to mkdir was unable to create the desired directory ...
  File exists" (open-mpi/ompi#8510). Here each mpirun gets a session folder of its own
  (``--mca orte_tmpdir_base``), removed when the tracker ends.
* Its YARN mode starts the scheduler through YARN's container script, which cannot run
  here (not executable in the wheel; a relative import): here it runs the job's command.
* Its SGE mode reads options its parser never defines (``logdir``, ``vcores``) and gives every
  task of the array job the same environment, without the DMLC_ROLE that MXNet's
  parameter server needs: here the log folder is set, and ptb-lm-launch's command picks
  the role from SGE_TASK_ID (tasks 1..N are the workers, the rest the servers).

Its YARN mode needs ``dmlc-yarn.jar``, which the mxnet wheel does not ship (it is built
from dmlc-core's tracker/yarn); ptb-lm-launch says so before it starts anything.
"""

import json
import sys
import threading

# mpi and slurm start the workers and servers with mpirun and srun; sge submits an array job to qsub;
# yarn runs dmlc's YARN client through hadoop.
CLUSTERS = ("mpi", "slurm", "sge", "yarn")


def make_tracker_importable():
    """Alias ``Thread.isAlive`` back to ``is_alive`` (removed in Python 3.9), which dmlc_tracker still calls."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive


def tracker_options(cluster, num_workers, num_servers, command, host_file=None, extra=()):
    """The arguments of dmlc_tracker's option parser for this job (``command``: one string, run as each
    process's command line by the cluster tool)."""
    args = ["--cluster", cluster, "--num-workers", str(num_workers), "--num-servers", str(num_servers)]
    if host_file:
        args += ["--host-file", host_file]
    return args + list(extra) + [command]


# Run as ``python -c TRACKER_MAIN JOB_JSON``: the tracker's process, mended.
TRACKER_MAIN = """
import json, os, sys, threading
sys.path.insert(0, %(root)r)
from ptb_lm.runtime.tracker import run_tracker
run_tracker(json.loads(sys.argv[1]))
"""


def run_tracker(job):
    """In the tracker's own process: mend dmlc_tracker, then submit ``job`` (a dict: cluster, options, host_ip,
    report) and wait for it; exit 1 with a line in ``job["report"]`` as soon as any of its commands fails."""
    import os
    import signal
    import subprocess

    import shutil
    import tempfile

    from .children import descendants, end_processes

    make_tracker_importable()
    from dmlc_tracker import opts, tracker

    report = job["report"]
    me = os.getpid()
    sessions = tempfile.mkdtemp(prefix="ptb-lm-mpi-")  # the mpiruns' own session folders, below this

    def end_everything(code):
        """End every process the tracker started (the scheduler, mpirun or srun and, below them, the ranks
        here), however deep, then this one."""
        end_processes(descendants(me))
        shutil.rmtree(sessions, ignore_errors=True)
        sys.stderr.flush()
        os._exit(code)

    failed = []

    def fail(text):
        if failed:  # the first failure is the one to tell; what ending everything makes fail is not
            return
        failed.append(text)
        try:
            with open(report, "w") as f:
                f.write(text + "\n")
        finally:
            end_everything(1)

    # ptb-lm-launch ends the tracker with SIGTERM; the kernel sends it SIGTERM too when the launcher dies
    # (PR_SET_PDEATHSIG): either way everything below goes with it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: end_everything(128 + signum))

    def on_thread_failure(failure):
        err = failure.exc_value
        if isinstance(err, subprocess.CalledProcessError):
            command = err.cmd if isinstance(err.cmd, str) else " ".join(err.cmd)
            # the scheduler runs the job's command as it is; the cluster tools' commands set the role first
            what = "scheduler" if command == job["options"][-1] else (
                "worker" if "DMLC_ROLE=worker " in command else "server" if "DMLC_ROLE=server " in command else "job")
            fail("a %s command exited with code %d: %s" % (what, err.returncode, command[:300]))
        fail("the tracker failed: %s: %s" % (type(err).__name__, err))

    threading.excepthook = on_thread_failure
    host_ip = job.get("host_ip")
    if host_ip:
        tracker.get_host_ip = lambda _=None: host_ip
    args = opts.get_opts(job["options"])
    if args.jobname is None:  # its own default is made of the command's first word: here the whole command
        args.jobname = "ptb-lm-%dx%d" % (args.num_workers, args.num_servers)
    if job["cluster"] == "sge":  # its submit reads args.logdir and args.vcores, which its options never set
        args.vcores = getattr(args, "vcores", None) or args.worker_cores
        args.sge_log_dir = getattr(args, "sge_log_dir", None) or args.jobname + ".log"
        args.logdir = args.sge_log_dir
        os.makedirs(args.logdir, exist_ok=True)
    if job["cluster"] == "yarn":
        # Its scheduler, run here, would be YARN's container script launcher.py, which the wheel installs
        # without the execute bit (and which imports relatively): the scheduler failed with code 126 while
        # the job was being submitted. Here it runs the job's command itself, as the other modes do.
        submit_all = tracker.submit

        def submit_with_the_command(*arguments, **options):
            options["pscmd"] = " ".join(args.command)
            return submit_all(*arguments, **options)

        tracker.submit = submit_with_the_command
    module = __import__("dmlc_tracker.%s" % job["cluster"], fromlist=["submit"])
    if job["cluster"] == "mpi":
        # dmlc_tracker calls get_mpi_env once for each mpirun it builds: Open MPI's options go there
        mpi_env = module.get_mpi_env

        def own_session(envs):
            flags = mpi_env(envs)
            if flags.startswith(" -x "):  # Open MPI (MPICH's are -env and have no such race)
                flags = " --mca orte_tmpdir_base %s%s" % (tempfile.mkdtemp(dir=sessions), flags)
            return flags

        module.get_mpi_env = own_session
    try:
        module.submit(args)
    except Exception as err:  # noqa: BLE001 - what the cluster tool refused, as one line
        fail("dmlc_tracker's %s mode failed: %s: %s" % (job["cluster"], type(err).__name__, err))
    for thread in threading.enumerate():  # the servers' mpirun or srun, still finishing
        if thread is not threading.current_thread():
            thread.join(60)
    shutil.rmtree(sessions, ignore_errors=True)
    end_everything(0)


def tracker_command(job, root):
    """The command that runs the tracker's process for ``job`` (see :func:`run_tracker`)."""
    return [sys.executable, "-c", TRACKER_MAIN % {"root": root}, json.dumps(job)]
