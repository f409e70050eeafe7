"""The native side of MXNet's GPU wheel, without importing mxnet. Pure Python (ctypes).

``mxnet-cu112==1.9.1`` links CUDA 11's libraries without bundling them. NVIDIA
ships every one of them on PyPI (the ``nvidia-*-cu11`` wheels that
``pip install -e '.[cu112]'`` brings), so only the driver (libcuda.so.1) must
come from the system::

    libmxnet.so needs            shipped by                 found at
    libcudart.so.11.0            nvidia-cuda-runtime-cu11   site-packages/nvidia/cuda_runtime/lib/
    libcublas(Lt).so.11          nvidia-cublas-cu11         site-packages/nvidia/cublas/lib/
    libcudnn.so.8 (+ 6 parts)    nvidia-cudnn-cu11 8.9      site-packages/nvidia/cudnn/lib/
    libnccl.so.2                 nvidia-nccl-cu11           site-packages/nvidia/nccl/lib/
    libcufft.so.10, libcurand.so.10, libcusolver.so.11, libnvrtc.so.11.2, libnvToolsExt.so.1: likewise
    libcuda.so.1                 the NVIDIA driver (450.80.02 or newer for CUDA 11)

:func:`preload_cuda_libraries` loads the wheels' libraries (RTLD_GLOBAL, in
dependency order) before mxnet is imported, so the dynamic loader finds them.
``PTB_LM_CUDA=system`` skips that and leaves the search to the system's CUDA
(LD_LIBRARY_PATH, ldconfig). :func:`elf_needed` reads a library's DT_NEEDED
entries straight from its ELF dynamic section, so the doctor can say what is
missing even when mxnet cannot be imported. :func:`cuda_devices` asks the
driver for each GPU's name and compute capability.
"""

import ctypes
import glob
import os
import site
import struct
import sys

from .supported import capability_supported

GPU_DISTRIBUTION = "mxnet-cu112"
CPU_DISTRIBUTION = "mxnet"
DRIVER = "libcuda.so.1"

# (package folder under site-packages/nvidia, soname), in an order where each library's own needs come first
CUDA_LIBRARIES = [
    ("cuda_runtime", "libcudart.so.11.0"),
    ("nvtx", "libnvToolsExt.so.1"),
    ("cuda_nvrtc", "libnvrtc-builtins.so.11.8"),
    ("cuda_nvrtc", "libnvrtc.so.11.2"),
    ("cublas", "libcublasLt.so.11"),
    ("cublas", "libcublas.so.11"),
    ("cufft", "libcufft.so.10"),
    ("curand", "libcurand.so.10"),
    ("cusolver", "libcusolver.so.11"),
    ("nccl", "libnccl.so.2"),
    ("cudnn", "libcudnn_ops_infer.so.8"),
    ("cudnn", "libcudnn_ops_train.so.8"),
    ("cudnn", "libcudnn_cnn_infer.so.8"),
    ("cudnn", "libcudnn_cnn_train.so.8"),
    ("cudnn", "libcudnn_adv_infer.so.8"),
    ("cudnn", "libcudnn_adv_train.so.8"),
    ("cudnn", "libcudnn.so.8"),
]

_loaded = {}  # soname -> (path, handle): what this process preloaded; the handles stay alive with it


def installed_mxnet():
    """``(distribution name, version)`` of the installed mxnet wheel, or ``(None, None)``."""
    from importlib import metadata

    for name in (GPU_DISTRIBUTION, CPU_DISTRIBUTION):
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def mxnet_library_path():
    """The path of libmxnet.so of the installed mxnet, found without importing it (None if absent)."""
    import importlib.util

    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "libmxnet.so")
    return path if os.path.isfile(path) else None


def site_roots():
    """The folders a wheel's files can be installed under."""
    roots = list(sys.path)
    try:
        roots += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # some virtualenvs' site module lacks these
        pass
    return [r for r in roots if r and os.path.isdir(r)]


def nvidia_library_dirs(roots=None):
    """``{package: lib folder}`` of the installed nvidia-* wheels (the first found wins)."""
    found = {}
    for root in roots if roots is not None else site_roots():
        for folder in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
            found.setdefault(os.path.basename(os.path.dirname(folder)), folder)
    return found


def preload_cuda_libraries(roots=None, loader=None):
    """Load the CUDA libraries of the nvidia-* wheels, globally, so that libmxnet.so finds them.

    Returns ``{soname: path}`` of what was loaded; libraries whose wheel is not
    installed are left to the system. ``loader`` (for tests) replaces ctypes.CDLL.
    """
    if os.environ.get("PTB_LM_CUDA", "").lower() == "system":
        return {}
    loader = loader or (lambda path: ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    dirs = nvidia_library_dirs(roots)
    loaded = {}
    for package, soname in CUDA_LIBRARIES:
        path = os.path.join(dirs.get(package, ""), soname)
        if package in dirs and os.path.isfile(path):
            _loaded[soname] = (path, loader(path))
            loaded[soname] = path
    return loaded


def preloaded():
    """``{soname: path}`` of the libraries :func:`preload_cuda_libraries` loaded in this process."""
    return {soname: path for soname, (path, _) in _loaded.items()}


# --- reading an ELF library's needs -------------------------------------------------------------

_DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 1, 5, 15, 29


def elf_needed(path):
    """``(needed sonames, rpath, runpath)`` from the dynamic section of the ELF64 file at ``path``; a path
    list the file does not have is None."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise ValueError("%s is not a 64-bit little-endian ELF file" % path)
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            if kind == 1:
                loads.append((vaddr, offset, filesz))
            elif kind == 2:
                dynamic = (offset, filesz)
        if dynamic is None:
            return [], None, None
        f.seek(dynamic[0])
        raw = f.read(dynamic[1])
        entries = []
        for offset in range(0, len(raw) - 15, 16):
            tag, value = struct.unpack_from("<qQ", raw, offset)
            if tag == 0:
                break
            entries.append((tag, value))
        strtab = next(v for t, v in entries if t == _DT_STRTAB)
        base = next(off + strtab - va for va, off, size in loads if va <= strtab < va + size)

        def string(index):
            f.seek(base + index)
            data = b""
            while b"\0" not in data:
                chunk = f.read(256)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\0", 1)[0].decode()

        needed = [string(v) for t, v in entries if t == _DT_NEEDED]
        rpath = next((string(v) for t, v in entries if t == _DT_RPATH), None)
        runpath = next((string(v) for t, v in entries if t == _DT_RUNPATH), None)
        return needed, rpath, runpath


def _ld_library_path_dirs():
    return [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]


def _cache_and_default_dirs():
    dirs = []
    try:
        import subprocess

        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        dirs += sorted({os.path.dirname(line.split("=>")[-1].strip()) for line in out.splitlines() if "=>" in line})
    except (OSError, subprocess.SubprocessError):
        pass
    return dirs + ["/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"]


def resolve_needed(library, roots=None):
    """``{soname: path or None}`` for every library that ``library`` needs.

    Searched as the loader would after :func:`preload_cuda_libraries` (ld.so(8)): the
    nvidia-* wheels, already loaded (unless ``PTB_LM_CUDA=system``); the library's
    DT_RPATH, unless it has a DT_RUNPATH; LD_LIBRARY_PATH; its DT_RUNPATH; then
    ldconfig's cache and the system's folders.
    """
    needed, rpath, runpath = elf_needed(library)
    here = os.path.dirname(os.path.abspath(library))
    wheel_dirs = [] if os.environ.get("PTB_LM_CUDA", "").lower() == "system" else \
        list(nvidia_library_dirs(roots).values())

    def folders(paths):
        return [p.replace("$ORIGIN", here).replace("${ORIGIN}", here) for p in (paths or "").split(":") if p]

    before = [] if runpath is not None else folders(rpath)  # a DT_RUNPATH makes the loader ignore DT_RPATH
    search = wheel_dirs + before + _ld_library_path_dirs() + folders(runpath) + _cache_and_default_dirs()
    found = {}
    for soname in needed:
        found[soname] = next((os.path.join(d, soname) for d in search if os.path.isfile(os.path.join(d, soname))),
                             None)
    return found


# --- what the driver says -----------------------------------------------------------------------

def cuda_driver(library=DRIVER):
    """What the NVIDIA driver reports, through its own API: a dict with ``driver_version`` (e.g. "12.4"),
    ``devices`` (name, capability, supported) and ``error`` (None, or why it could not answer)."""
    report = {"library": library, "driver_version": None, "devices": [], "error": None}
    try:
        cuda = ctypes.CDLL(library)
    except OSError as err:
        report["error"] = "no NVIDIA driver: %s" % err
        return report
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
        report["driver_version"] = "%d.%d" % (version.value // 1000, (version.value % 1000) // 10)
    code = cuda.cuInit(0)
    count = ctypes.c_int(0)
    if code == 0:
        code = cuda.cuDeviceGetCount(ctypes.byref(count))
    if code != 0:
        report["error"] = "the driver answers %d (%s)" % (code, _cuda_error_name(cuda, code))
        return report
    for index in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        codes = [cuda.cuDeviceGet(ctypes.byref(device), index),
                 cuda.cuDeviceGetName(name, 256, device),
                 cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device),  # ..._COMPUTE_CAPABILITY_MAJOR
                 cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)]  # ..._COMPUTE_CAPABILITY_MINOR
        known = not any(codes)
        report["devices"].append({"index": index, "name": name.value.decode(errors="replace") or "GPU %d" % index,
                                  "capability": "%d.%d" % (major.value, minor.value) if known else "unknown",
                                  "supported": capability_supported(major.value, minor.value) if known else None})
    return report


def _cuda_error_name(cuda, code):
    text = ctypes.c_char_p()
    try:
        if cuda.cuGetErrorName(code, ctypes.byref(text)) == 0 and text.value:
            return text.value.decode()
    except AttributeError:
        pass
    return "CUDA error %d" % code
