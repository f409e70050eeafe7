"""MXNet's engine: NaiveEngine with the CPU wheel unless the user chose (ptb_lm.runtime.engine). MXNet's
default engine runs operators on worker threads; NaiveEngine on the calling thread."""
import subprocess
import sys

from ptb_lm.runtime import engine

from helpers import (
    clean_env,
    cpu_wheel_installed,
    threads_after_a_product,
)


def child_engine(env):
    code = "import os, ptb_lm; print(os.environ.get('MXNET_ENGINE_TYPE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_picks_naive_engine_with_the_cpu_wheel_and_keeps_a_users_choice():
    ours = "NaiveEngine" if cpu_wheel_installed() else "None"
    assert child_engine(clean_env()) == ours
    assert child_engine(clean_env(MXNET_ENGINE_TYPE="ThreadedEngine")) == "ThreadedEngine"
    # inherited from a parent (a launcher, another machine): decided again
    inherited = {"MXNET_ENGINE_TYPE": "NaiveEngine", engine.ENGINE_MARK: "NaiveEngine"}
    assert child_engine(clean_env(**inherited)) == ours
    # a parameter-server process (a launcher's worker, server or scheduler) keeps MXNet's own, or the user's
    assert child_engine(clean_env(DMLC_ROLE="worker", **inherited)) == "None"
    assert child_engine(clean_env(DMLC_ROLE="worker", MXNET_ENGINE_TYPE="ThreadedEngine")) == "ThreadedEngine"


def test_naive_engine_runs_operators_without_mxnets_worker_threads():
    ours = threads_after_a_product(clean_env())
    threaded = threads_after_a_product(clean_env(MXNET_ENGINE_TYPE="ThreadedEnginePerDevice"))
    if cpu_wheel_installed():
        assert ours < threaded  # MXNet's engine adds its worker threads, and an OpenMP team for each
    else:
        assert ours == threaded  # the GPU wheel keeps MXNet's engine
