"""Data parallelism: several contexts in one process, and dist_sync workers started by the launcher."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.parallel import stream_shards

from helpers import LAUNCH, ROOT, TRAIN, batch_losses, marked_env, processes_marked, start_long_launch, worker_pids


def test_stream_shards_cover_every_stream_once():
    for batch, n in [(5, 2), (32, 3), (4, 4)]:
        shards = stream_shards(batch, n)
        assert len(shards) == n and shards[0][0] == 0 and shards[-1][1] == batch
        assert all(a < b for a, b in shards) and all(s[1] == t[0] for s, t in zip(shards, shards[1:]))


def single_process_losses(tiny_corpus, tmp_path, epochs=2):
    log = str(tmp_path / "single.jsonl")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                          "--epochs", str(epochs), "--log-json", log] + TRAIN,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return batch_losses(log)


@pytest.mark.parametrize("settings", [dict(mode="lstm"), dict(mode="transformer", heads=2, optimizer="adam", lr=0.003),
                                      dict(mode="gru", optimizer="momentum", lr=0.3)],
                         ids=["lstm-sgd", "transformer-adam", "gru-momentum"])
def test_two_contexts_in_one_process_match_one_context(tiny_corpus, settings):
    runs = {}
    for ctx in ("cpu", "cpu:0,1"):
        config = TrainConfig(**dict(dict(embed_dim=12, hidden_dim=12, batch_size=4, num_steps=5, epochs=2, seed=3,
                                         dropout=0.0, data=tiny_corpus, ctx=ctx, eval_period=1, progress="none",
                                         kvstore="local"), **settings))
        runs[ctx] = fit(config)
    one, two = (runs[c].series("loss", kind="batch") for c in ("cpu", "cpu:0,1"))
    assert len(one) == len(two) >= 50
    assert two == pytest.approx(one, rel=1e-4)
    assert runs["cpu:0,1"].test["test_loss"] == pytest.approx(runs["cpu"].test["test_loss"], rel=1e-4)


@pytest.mark.dist
def test_two_dist_sync_workers_match_one_process(tiny_corpus, tmp_path):
    expected = single_process_losses(tiny_corpus, tmp_path)
    log = str(tmp_path / "dist.jsonl")
    out = subprocess.run([sys.executable, LAUNCH, "--local", "2", "--", "--kvstore", "dist_sync", "--data",
                          tiny_corpus, "--epochs", "2", "--log-json", log] + TRAIN,
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=marked_env("x"))
    assert out.returncode == 0, out.stdout + out.stderr
    got = batch_losses(log)
    assert len(got) == len(expected) >= 50
    assert got == pytest.approx(expected, rel=1e-4)
    assert out.stdout.count("Test loss") == 1  # only rank 0 logs and evaluates
    # NaiveEngine made each push and pull wait: two workers trained 5x slower with it, so they keep MXNet's
    assert "MXNet's engine: ThreadedEnginePerDevice, MXNet's default" in out.stdout
    assert "MXNet start using engine" not in out.stderr


@pytest.mark.dist
def test_a_dead_worker_ends_everything_within_60s(tiny_corpus, tmp_path):
    mark = uuid.uuid4().hex
    proc = start_long_launch(tiny_corpus, tmp_path, mark)
    victims = worker_pids(mark)
    assert len(victims) == 2
    os.kill(victims[1], signal.SIGKILL)
    start = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - start < 60
    assert proc.returncode != 0 and "worker" in err
    time.sleep(0.5)
    assert processes_marked(mark) == []


@pytest.mark.dist
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_the_launchers_processes_end_with_it_however_it_ends(tiny_corpus, tmp_path, sig):
    """SIGKILL reaches no handler (the kernel's parent-death signal ends the children); SIGHUP is a closed
    terminal."""
    mark = uuid.uuid4().hex
    proc = start_long_launch(tiny_corpus, tmp_path, mark)
    assert len(processes_marked(mark)) >= 5
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and processes_marked(mark):
        time.sleep(0.2)
    assert processes_marked(mark) == []


def test_a_port_in_use_is_one_line(tiny_corpus):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, LAUNCH, "--local", "2", "--port", str(port), "--", "--data",
                              tiny_corpus] + TRAIN, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "port %d" % port in out.stderr and "in use" in out.stderr


def test_an_unreachable_host_is_one_line(tiny_corpus, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# workers\nno-such-host.invalid\n")
    out = subprocess.run([sys.executable, LAUNCH, "--hosts", str(hosts), "--", "--data", tiny_corpus] + TRAIN,
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no-such-host.invalid" in out.stderr


FAKE_SSH = """#!/bin/sh
# ssh -o OPTION ... HOST [COMMAND]: runs COMMAND here, in an environment as bare as a remote login's
while [ "$1" = "-o" ]; do shift 2; done
shift
[ $# -eq 0 ] && exit 0
exec env -i PATH="$PATH" HOME="$HOME" sh -c "$*"
"""


@pytest.mark.dist
@pytest.mark.parametrize("chosen", [True, False])
def test_workers_on_other_hosts_get_the_users_thread_count_and_engine(tiny_corpus, tmp_path, chosen):
    """ssh passes no environment: the launcher exports what the workers need, the user's MXNet choices too;
    without a choice, the worker's host decides again (here, this machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MXNET_", "PTB_LM_"))}
    env["PATH"] = "%s:%s" % (bin_dir, os.environ["PATH"])
    if chosen:
        env.update(OMP_NUM_THREADS="1", MXNET_ENGINE_TYPE="ThreadedEngine")
    out = subprocess.run([sys.executable, LAUNCH, "--hosts", str(hosts), "--host-ip", "127.0.0.1", "--",
                          "--data", tiny_corpus, "--epochs", "1", "--max-batches", "5"] + TRAIN,
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    if chosen:
        assert "MXNet's CPU threads: 1, as OMP_NUM_THREADS=1 in the environment says" in out.stdout
        assert "MXNet's engine: ThreadedEngine, as MXNET_ENGINE_TYPE says" in out.stdout
    else:
        assert "one per physical core" in out.stdout
        assert "MXNet's engine: ThreadedEnginePerDevice, MXNet's default" in out.stdout  # DMLC_ROLE is set
