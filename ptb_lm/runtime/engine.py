"""Which MXNet engine runs the operators: NaiveEngine with the CPU wheel, unless the user chose.

MXNet's default engine (ThreadedEnginePerDevice) hands every operator from the
Python thread to worker threads, each with an OpenMP team of its own (8 threads in
a process that has run one product, on 2 cores). With the CPU wheel
:func:`set_mxnet_engine` picks NaiveEngine, which runs each operator on the calling
thread as it is called (3 threads), through MXNET_ENGINE_TYPE: on a 2-core machine
a training batch took 1.2-1.5x less time, with the same numbers. The GPU wheel keeps
MXNet's engine, whose asynchrony a GPU needs, and so do parameter-server processes,
which NaiveEngine makes wait on every push and pull. A choice of the user's is kept.
Like MXNet's other engines, NaiveEngine expects one Python thread at a time to drive MXNet.

MXNet logs "MXNet start using engine: NaiveEngine" on stderr at its first operation
when the environment names an engine; :func:`start_engine_quietly` runs that first
operation with the line filtered out.
"""

import os
import sys
import threading

from ..errors import ConfigError

ENGINE_VARIABLE = "MXNET_ENGINE_TYPE"
ENGINE_MARK = "PTB_LM_DEFAULT_ENGINE"
# MXNet takes these three names and fails on anything else, an empty value too.
MXNET_ENGINES = ("NaiveEngine", "ThreadedEngine", "ThreadedEnginePerDevice")
CPU_ENGINE = "NaiveEngine"


def user_chose_engine(environ=os.environ):
    """Whether ``environ`` names an engine of the user's (or a launcher's), not ptb_lm's inherited default."""
    return ENGINE_VARIABLE in environ and environ[ENGINE_VARIABLE] != environ.get(ENGINE_MARK)


def set_mxnet_engine(environ=os.environ):
    """With the CPU wheel, have MXNet run each operator on the calling thread (NaiveEngine), unless the user chose.

    Sets MXNET_ENGINE_TYPE (and :data:`ENGINE_MARK`) in ``environ``. It leaves MXNet's
    default with the GPU wheel, or none, and in the processes of a parameter-server run
    (DMLC_ROLE set): there NaiveEngine waits on every push and pull, and two dist_sync
    workers trained 5-7x slower with it. It has effect only before mxnet is loaded.
    """
    if "mxnet" in sys.modules or user_chose_engine(environ):
        return
    from .native import CPU_DISTRIBUTION, installed_mxnet

    if installed_mxnet()[0] == CPU_DISTRIBUTION and not environ.get("DMLC_ROLE"):
        environ[ENGINE_VARIABLE] = environ[ENGINE_MARK] = CPU_ENGINE
    else:  # NaiveEngine would wait for the GPU after every operator, or for the servers
        environ.pop(ENGINE_VARIABLE, None)
        environ.pop(ENGINE_MARK, None)


def check_engine_variable(environ=os.environ):
    """Raise ConfigError for an engine MXNet does not know: it would fail at its first operation."""
    if ENGINE_VARIABLE in environ and environ[ENGINE_VARIABLE] not in MXNET_ENGINES:
        raise ConfigError("%s=%r is not an engine MXNet knows, and it would fail at its first operation: set one of "
                          "%s, or unset it (ptb_lm then uses %s with the CPU wheel)"
                          % (ENGINE_VARIABLE, environ[ENGINE_VARIABLE], ", ".join(MXNET_ENGINES), CPU_ENGINE))


def runs_on_calling_thread(environ=os.environ):
    """Whether MXNet runs each operator on the thread that calls it (NaiveEngine)."""
    return environ.get(ENGINE_VARIABLE) == "NaiveEngine"


def describe_engine(environ=os.environ):
    """Which engine MXNet runs its operators with, and why, in a few words (for logs and the doctor)."""
    if user_chose_engine(environ):
        return "%s, as %s says" % (environ[ENGINE_VARIABLE], ENGINE_VARIABLE)
    if ENGINE_VARIABLE in environ:
        return "%s, each operator on the calling thread" % environ[ENGINE_VARIABLE]
    return "ThreadedEnginePerDevice, MXNet's default"


_engine_started = False  # by start_engine_quietly, once per process


def engine_is_ours(environ=os.environ):
    """Whether MXNet runs ptb_lm's default engine (MXNet's line about it is then noise to drop)."""
    return environ.get(ENGINE_MARK) == environ.get(ENGINE_VARIABLE, "")


def quiet_exit():
    """After a process's last line: keep MXNet's engine line from following it.

    MXNet logs "MXNet start using engine" when its engine starts, and if nothing started
    it before, it does so as the process exits: after ptb_lm's error line, when Ctrl-C
    came during the import of mxnet or before its first operation. If mxnet imported,
    its engine is started here, with the line dropped; if the import itself was cut
    short, nothing more is worth saying on stderr, so it is pointed at /dev/null.
    A Ctrl-C meanwhile is ignored: the process is ending anyway.
    """
    if _engine_started or not engine_is_ours() or not _libmxnet_loaded():
        return
    import signal

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        mxnet = sys.modules.get("mxnet")
        if mxnet is not None and hasattr(mxnet, "nd"):
            start_engine_quietly(mxnet)
        else:
            if sys.stderr is not None:
                sys.stderr.flush()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
    except Exception:  # noqa: BLE001 - a half-imported mxnet: nothing more to tidy
        pass
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _libmxnet_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return any("libmxnet" in line for line in maps)
    except OSError:
        return "mxnet" in sys.modules


def start_engine_quietly(mxnet):
    """Run MXNet's first operation with its "MXNet start using engine" line dropped from stderr.

    MXNet logs that line whenever the environment names an engine, at its first
    operation or at exit if it had none; for ptb_lm's own default it would be noise
    after every run's last line. (If the caller already ran an operation, the line is
    out already; this one then costs nothing.) For that one operation stderr goes
    through a pipe, and a thread passes every other line on as it comes (so that
    nothing is lost, even if the process dies there). Once per process.
    """
    global _engine_started
    if _engine_started:
        return
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
