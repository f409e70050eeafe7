"""The GPU wheel's native side, tested without a GPU: the preload, the ELF reader, the capability rules, the
doctor on the installed (CPU) wheel, and the messages for a GPU wheel that cannot load."""
import json
import os
import subprocess
import sys

import pytest

from ptb_lm.runtime import native
from ptb_lm.runtime.supported import capability_supported

from helpers import ROOT, run_cli


def fake_wheels(root, packages):
    """site-packages/nvidia/<package>/lib/<soname> files, as NVIDIA's wheels lay them out."""
    for package, soname in packages:
        folder = root / "nvidia" / package / "lib"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / soname).write_bytes(b"")
    return str(root)


def test_the_preload_loads_every_wheel_library_in_dependency_order(tmp_path):
    root = fake_wheels(tmp_path / "site", native.CUDA_LIBRARIES)
    loaded = []
    found = native.preload_cuda_libraries(roots=[root], loader=loaded.append)
    expected = [os.path.join(root, "nvidia", p, "lib", s) for p, s in native.CUDA_LIBRARIES]
    assert loaded == expected and sorted(found) == sorted(s for _, s in native.CUDA_LIBRARIES)
    order = [os.path.basename(p) for p in loaded]
    assert order.index("libcublasLt.so.11") < order.index("libcublas.so.11") < order.index("libcusolver.so.11")
    assert order.index("libcudnn_ops_infer.so.8") < order.index("libcudnn.so.8")


def test_the_preload_leaves_what_no_wheel_ships_to_the_system(tmp_path, monkeypatch):
    root = fake_wheels(tmp_path / "site", [("cuda_runtime", "libcudart.so.11.0"), ("cudnn", "libcudnn.so.9")])
    loaded = []
    assert native.preload_cuda_libraries(roots=[root], loader=loaded.append) == {
        "libcudart.so.11.0": os.path.join(root, "nvidia", "cuda_runtime", "lib", "libcudart.so.11.0")}
    monkeypatch.setenv("PTB_LM_CUDA", "system")  # a system CUDA, chosen on purpose
    assert native.preload_cuda_libraries(roots=[root], loader=loaded.append) == {} and len(loaded) == 1


def test_the_preload_really_loads_a_library(tmp_path):
    source = tmp_path / "answer.c"
    source.write_text("int ptb_lm_answer(void) { return 42; }\n")
    lib = tmp_path / "site" / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.11.0"
    lib.parent.mkdir(parents=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    found = native.preload_cuda_libraries(roots=[str(tmp_path / "site")])
    assert found == {"libcudart.so.11.0": str(lib)}
    import ctypes

    assert ctypes.CDLL(None).ptb_lm_answer() == 42  # loaded RTLD_GLOBAL: visible to every later library


def test_the_elf_reader_agrees_with_readelf():
    library = native.mxnet_library_path()
    assert library is not None
    needed, rpath, runpath = native.elf_needed(library)
    out = subprocess.run(["readelf", "-d", library], capture_output=True, text=True, check=True).stdout

    def values(kind):
        return [line.split("[")[1].split("]")[0] for line in out.splitlines() if "(%s)" % kind in line]

    assert needed == values("NEEDED") and len(needed) > 5
    assert [rpath] == (values("RPATH") or [None]) and [runpath] == (values("RUNPATH") or [None])


def build_library(folder, name, source, links=(), flags=()):
    """Compile ``source`` (C) into ``folder/lib<name>.so`` with soname ``lib<name>.so``; return its path."""
    os.makedirs(folder, exist_ok=True)
    c_file, library = os.path.join(folder, name + ".c"), os.path.join(folder, "lib%s.so" % name)
    with open(c_file, "w") as f:
        f.write(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,lib%s.so" % name, "-o", library, c_file]
                   + list(flags) + list(links), check=True)
    return library


@pytest.mark.parametrize("tags", ["--disable-new-dtags", "--enable-new-dtags"], ids=["RPATH", "RUNPATH"])
def test_the_doctor_resolves_a_library_where_the_loader_does(tmp_path, tags):
    """A library needing libneed.so, which its own path list and LD_LIBRARY_PATH both offer (two different
    copies): the loader takes DT_RPATH's before LD_LIBRARY_PATH's, and LD_LIBRARY_PATH's before DT_RUNPATH's."""
    own, elsewhere = str(tmp_path / "own"), str(tmp_path / "elsewhere")
    for folder in (own, elsewhere):
        build_library(folder, "need", 'const char *which(void) { return "%s"; }\n' % folder)
    top = build_library(str(tmp_path / "top"), "top", "int top(void) { return 1; }\n", links=["-lneed"],
                        flags=["-L" + own, "-Wl,%s,-rpath,%s" % (tags, own), "-Wl,--no-as-needed"])
    env = dict(os.environ, LD_LIBRARY_PATH=elsewhere)
    loader = subprocess.run([sys.executable, "-c", "import ctypes; ctypes.CDLL(%r); need = ctypes.CDLL('libneed.so'); "
                             "need.which.restype = ctypes.c_char_p; print(need.which().decode())" % top],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    doctor = subprocess.run([sys.executable, "-c", "from ptb_lm.runtime import native; "
                             "print(native.resolve_needed(%r, roots=[])['libneed.so'])" % top],
                            env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert doctor == os.path.join(loader, "libneed.so")


@pytest.mark.parametrize("capability, supported", [
    ((5, 0), True), ((6, 1), True), ((7, 5), True), ((8, 0), True), ((8, 6), True), ((8, 9), True),
    ((3, 7), False), ((9, 0), False), ((10, 0), False), ((12, 0), False),
])
def test_compute_capability_rules(capability, supported):
    assert capability_supported(*capability) is supported


def test_an_unsupported_gpu_is_named_and_skipped(monkeypatch, caplog):
    import logging

    import mxnet as mx

    from ptb_lm.errors import ContextError
    from ptb_lm.runtime import devices as context

    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    monkeypatch.setattr(context, "gpu_description",
                        lambda i: {"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "supported": False})
    probed = []
    monkeypatch.setattr(context, "_probe", probed.append)
    with caplog.at_level(logging.INFO, logger="ptb_lm"):
        assert context.try_gpu() == mx.cpu()
    line = [r.getMessage() for r in caplog.records if "on the CPU" in r.getMessage()][0]
    assert "H100" in line and "9.0" in line and "5.0 to 8.9" in line and probed == []
    with pytest.raises(ContextError) as err:
        context.resolve_contexts("gpu")
    assert "H100" in str(err.value)


def test_the_doctor_on_this_machine(tmp_path, ptb_zip):
    (tmp_path / "data").mkdir()
    os.symlink(ptb_zip, str(tmp_path / "data" / "ptb.zip"))
    out = run_cli([os.path.join(ROOT, "scripts", "doctor.py"), "--json"], cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert report["mxnet"]["imports"] and report["mxnet"]["version"] == "1.9.1"
    assert set(report["mxnet"]["features"]) == {"CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE"}
    needed = native.elf_needed(native.mxnet_library_path())[0]
    assert list(report["native_libraries"]) == needed
    for soname, path in report["native_libraries"].items():
        assert soname == native.DRIVER or (path and os.path.isfile(path)), soname
    assert report["ctx_auto"]["context"] == "cpu(0)" and report["ctx_auto"]["reason"]
    assert report["data"]["checksum"] == "ok"
    kernels = report["kernels"]  # built here (the machine has a compiler) unless the tests run with them off
    assert kernels["active"] == (os.environ.get("PTB_LM_KERNELS") != "0"), kernels
    assert not kernels["active"] or os.path.isfile(kernels["path"])
    text = run_cli([os.path.join(ROOT, "scripts", "doctor.py")], cwd=str(tmp_path))
    assert text.returncode == 0 and "--ctx auto picks cpu(0)" in text.stdout
    assert [line for line in text.stdout.splitlines() if line.startswith("kernels ")]


@pytest.mark.parametrize("message, words", [
    ("libcuda.so.1: cannot open shared object file: No such file or directory", ["no NVIDIA driver", "450.80.02",
                                                                                  "pip uninstall -y mxnet-cu112"]),
    ("libcudnn.so.8: cannot open shared object file: No such file or directory", ["libcudnn.so.8", ".[cu112]",
                                                                                  "PTB_LM_CUDA=system"]),
])
def test_a_gpu_wheel_that_cannot_load_is_one_line(tmp_path, tiny_corpus, message, words):
    fake = tmp_path / "fake" / "mxnet"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError(%r)\n" % message)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    out = run_cli(["--data", tiny_corpus, "--epochs", "1"], env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    for word in words:
        assert word in lines[0]
