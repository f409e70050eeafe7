"""The GPU wheel from pip alone (mxnet-cu112 and NVIDIA's runtime wheels), on a machine with no GPU.

These run whenever mxnet-cu112 is the installed mxnet (CI gives them a virtualenv of their own:
pip install -e '.[cu112,test]', about 2.1 GB of downloads; then python -m pytest tests/test_gpu_wheel.py).
A stub libcuda.so.1, built here from tests/native/cuda_stub.c, stands in for the driver: it answers every
call with "no CUDA device".
"""
import json
import os
import subprocess

import pytest

from helpers import ROOT, run_cli

pytestmark = pytest.mark.gpu_wheel
DOCTOR = os.path.join(ROOT, "scripts", "doctor.py")


def doctor(env=None):
    out = run_cli([DOCTOR, "--json"], env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def stub_driver(tmp_path_factory):
    """A folder holding a stub libcuda.so.1 that reports a CUDA 11.8 driver with no device."""
    folder = tmp_path_factory.mktemp("stub")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-DSTUB_DRIVER_VERSION=11080",
                    "-o", str(folder / "libcuda.so.1"), os.path.join(ROOT, "tests", "native", "cuda_stub.c")],
                   check=True)
    return str(folder)


def with_stub(stub_driver):
    return dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        p for p in (stub_driver, os.environ.get("LD_LIBRARY_PATH")) if p))


def test_every_library_the_wheel_needs_resolves_from_the_wheels_except_the_driver():
    report = doctor()
    assert report["mxnet"]["distribution"] == "mxnet-cu112"
    libraries = report["native_libraries"]
    cuda = [s for s in libraries if s.startswith(("libcu", "libnccl", "libnvrtc", "libnvToolsExt"))]
    assert {"libcudart.so.11.0", "libcublas.so.11", "libcudnn.so.8", "libnccl.so.2"} <= set(cuda)
    for soname in cuda:
        if soname == "libcuda.so.1":
            assert libraries[soname] is None  # the driver: no wheel ships it
        else:
            assert libraries[soname] and os.sep + "nvidia" + os.sep in libraries[soname], soname
    assert all(path for soname, path in libraries.items() if soname != "libcuda.so.1")
    assert not report["mxnet"]["imports"] and "no NVIDIA driver" in report["mxnet"]["error"]


def test_without_a_driver_training_is_one_line_that_says_what_to_do(tiny_corpus):
    out = run_cli(["--data", tiny_corpus, "--epochs", "1", "--batch-size", "4"])
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "no NVIDIA driver" in out.stderr and "mxnet==1.9.1" in out.stderr


def test_with_a_stub_driver_the_wheel_imports_and_auto_trains_on_the_cpu(stub_driver, tiny_corpus):
    env = with_stub(stub_driver)
    report = doctor(env)
    assert report["mxnet"]["imports"] and report["mxnet"]["features"]["CUDA"]
    assert report["gpus"] == [] and report["ctx_auto"]["context"] == "cpu(0)"
    assert report["native_libraries"]["libcuda.so.1"] == os.path.join(stub_driver, "libcuda.so.1")
    assert report["driver"]["version"] == "11.8"
    out = run_cli(["--data", tiny_corpus, "--epochs", "1", "--max-batches", "20", "--batch-size", "4",
                   "--embed-dim", "8", "--hidden-dim", "8", "--progress", "none"], env=env)
    assert out.returncode == 0, out.stderr
    assert "training on the CPU" in out.stdout and "20 batches" in out.stdout and "[Epoch 1]" in out.stdout
    gpu = run_cli(["--data", tiny_corpus, "--epochs", "1", "--batch-size", "4", "--ctx", "gpu"], env=env)
    assert gpu.returncode == 2 and len(gpu.stderr.strip().splitlines()) == 1 and "--ctx gpu" in gpu.stderr
