"""What several test files share: the checkout's paths, a tiny corpus, a tiny config, running a command,
the one-line error check, thread settings, and finding a launch's processes."""
import json
import os
import random
import subprocess
import sys
import time

import pytest

from ptb_lm.runtime.threads import cgroup_cpu_quota

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_PTB = os.path.join(ROOT, "..", "shared", "data", "ptb.zip")
SCRIPTS = os.path.join(ROOT, "scripts")
LAUNCH = os.path.join(SCRIPTS, "launch.py")

# For the tests of ptb_lm's own kernels (the fixture ``loaded`` loads them, conftest.py)
needs_kernels = pytest.mark.skipif(os.environ.get("PTB_LM_KERNELS", "").strip() == "0",
                                   reason="PTB_LM_KERNELS=0: MXNet's own operators are tested instead")

# The CLI flags of a tiny model: a run on the tiny corpus takes a second or two.
TINY = ["--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "4", "--num-steps", "5", "--epochs", "1",
        "--ctx", "cpu", "--progress", "none"]


def write_tiny_corpus(folder, seed=0, train_lines=120, eval_lines=20):
    """Write ptb.{train,valid,test}.txt of short sentences over a 30-word vocabulary (and <unk>) with structure
    (each word tends to be followed by the next in a cycle), so a model can learn something fast."""
    rng = random.Random(seed)
    words = ["w%02d" % i for i in range(30)]

    def sentence():
        start = rng.randrange(len(words))
        n = rng.randint(4, 9)
        # like PTB, rare words are already <unk>
        return " ".join("<unk>" if rng.random() < 0.05 else words[(start + k + (rng.random() < 0.1)) % len(words)]
                        for k in range(n))

    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", train_lines), ("valid", eval_lines), ("test", eval_lines)):
        with open(os.path.join(folder, "ptb.%s.txt" % split), "w") as f:
            f.write("\n".join(" " + sentence() + " " for _ in range(n)) + "\n")
    return folder


def tiny_config(corpus, **changes):
    """A TrainConfig small enough to train on the tiny corpus in a second or two."""
    from ptb_lm import TrainConfig

    values = dict(mode="gru", embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, dropout=0.0, epochs=2,
                  seed=7, data=corpus, ctx="cpu", eval_period=10, progress="none")
    values.update(changes)
    return TrainConfig(**values)


def one_line_error(result, code, *words, alone=False):
    """Assert that ``result`` failed with ``code`` and one ``ptb-lm: error:`` line, the last on stderr, holding
    ``words``, and no traceback; ``alone``: nothing else on stderr. Returns the line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [l for l in result.stderr.splitlines() if l.startswith("ptb-lm: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    if alone:
        assert len([l for l in result.stderr.splitlines() if l.strip()]) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def run_cli(args, cwd=None, env=None, timeout=600):
    """Run scripts/train.py (or another script) in a fresh interpreter; return the CompletedProcess."""
    script = args[0] if args and args[0].endswith(".py") else os.path.join(ROOT, "scripts", "train.py")
    rest = args[1:] if args and args[0].endswith(".py") else args
    return subprocess.run([sys.executable, script] + list(rest), cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def lstm_config(tiny_corpus, **changes):
    """A 2-layer LSTM config with dropout, three epochs and a seed: the runs that checkpoint and resume."""
    from ptb_lm import TrainConfig

    values = dict(mode="lstm", embed_dim=12, hidden_dim=12, batch_size=4, num_steps=5, dropout=0.3, epochs=3,
                  seed=11, data=tiny_corpus, ctx="cpu", eval_period=10, progress="none")
    values.update(changes)
    return TrainConfig(**values)


# --- MXNet's thread and engine variables ---------------------------------------------------------

THREAD_NAMES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "PTB_LM_DEFAULT_THREADS", "MXNET_ENGINE_TYPE",
                "PTB_LM_DEFAULT_ENGINE", "PTB_LM_THREADS_CHOSEN_BY")


def lscpu_physical_cores():
    """The oracle: distinct (socket, core) pairs among the CPUs this process may run on, as lscpu lists them."""
    out = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET"], capture_output=True, text=True, check=True).stdout
    allowed = os.sched_getaffinity(0)
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return len({(socket, core) for cpu, core, socket in rows if int(cpu) in allowed})


def expected_cores():
    """What ptb_lm should count here: lscpu's cores, at most a container's CPU quota."""
    quota = cgroup_cpu_quota()
    return min(lscpu_physical_cores(), quota) if quota else lscpu_physical_cores()


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_NAMES}
    env.update(extra)
    return env


def cpu_wheel_installed():
    """The oracle for the engine ptb_lm should pick: the installed distributions, as pip sees them."""
    from importlib import metadata

    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    return "mxnet" in names and "mxnet-cu112" not in names


# --- a launch's processes ------------------------------------------------------------------------

# dropout 0: each context or worker draws its own dropout masks, so only dropout-free runs can match
# dropout 0: each context or worker draws its own dropout masks, so only dropout-free runs can match
TRAIN = ["--mode", "lstm", "--embed-dim", "12", "--hidden-dim", "12", "--batch-size", "4", "--num-steps", "5",
         "--seed", "3", "--dropout", "0", "--ctx", "cpu", "--eval-period", "1", "--progress", "none"]


def batch_losses(path):
    return [e["loss"] for e in map(json.loads, open(path)) if e["event"] == "batch"]


def marked_env(mark):
    return dict(os.environ, PTB_LM_TEST_MARK=mark, OMP_NUM_THREADS="1")


def processes_marked(mark):
    """PIDs of live processes whose environment holds PTB_LM_TEST_MARK=mark."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if ("PTB_LM_TEST_MARK=%s" % mark).encode() in f.read().split(b"\0"):
                    with open("/proc/%s/stat" % pid) as s:
                        if s.read().split()[2] != "Z":
                            found.append(int(pid))
        except OSError:
            continue
    return found


def start_long_launch(tiny_corpus, tmp_path, mark):
    log = str(tmp_path / "long.jsonl")
    proc = subprocess.Popen([sys.executable, LAUNCH, "--local", "2", "--", "--data", tiny_corpus, "--epochs",
                             "100000", "--log-json", log] + TRAIN,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=marked_env(mark))
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(log) and len(batch_losses(log)) > 20):
        time.sleep(0.2)
    assert os.path.exists(log), "the workers never started training"
    return proc


def worker_pids(mark):
    pids = []
    for pid in processes_marked(mark):
        with open("/proc/%d/environ" % pid, "rb") as f:
            if b"DMLC_ROLE=worker" in f.read().split(b"\0"):
                pids.append(pid)
    return pids


THREADS_AFTER_WORK = """
import os, ptb_lm
from ptb_lm.runtime import import_mxnet


mx = import_mxnet()
x = mx.nd.ones((512, 512))
mx.nd.FullyConnected(x, x, num_hidden=512, no_bias=True).wait_to_read()
print(len(os.listdir("/proc/self/task")))
"""


def threads_after_a_product(env):
    out = subprocess.run([sys.executable, "-c", THREADS_AFTER_WORK], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])
