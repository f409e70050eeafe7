"""What this machine can do for ptb_lm: the first thing to run when something is wrong (``ptb-lm-doctor``).

:func:`diagnose` never raises on what it inspects: each part says what it
found, or why it could not look. It reads libmxnet.so's needs from its ELF
header, so it works even where mxnet cannot be imported.
"""

import os
import platform
import struct
import sys

from ..download import DEFAULT_DATA_DIR, PTB_SHA1, find_ptb
from ..files import sha1_of
from . import native
from .engine import describe_engine
from .sharing import ThreadSharing, busy_seconds, process_seconds
from .supported import capability_range, python_range, python_supported
from .threads import describe_threads, physical_cores


def diagnose(data_dir=DEFAULT_DATA_DIR):
    """A JSON-able dict: python, numpy, mxnet, native_libraries, driver, gpus, ctx_auto, kernels, data."""
    report = {"python": {"version": platform.python_version(), "executable": sys.executable,
                         "supported": python_supported(sys.version_info)}}
    try:
        import numpy

        report["numpy"] = {"version": numpy.__version__, "below_2": int(numpy.__version__.split(".")[0]) < 2}
    except ImportError as err:
        report["numpy"] = {"version": None, "error": str(err)}
    report["mxnet"] = _mxnet()
    report["threads"] = {"physical_cores": physical_cores(), "logical_cpus": len(os.sched_getaffinity(0)),
                         "mxnet_operators": describe_threads(), "mxnet_engine": describe_engine(),
                         "follows_load": ThreadSharing.why_fixed() is None,
                         "fixed_because": ThreadSharing.why_fixed(), "other_work_cores": other_work()}
    library = native.mxnet_library_path()
    try:
        report["native_libraries"] = native.resolve_needed(library) if library else {}
    except (OSError, ValueError, StopIteration, struct.error) as err:  # a truncated or damaged libmxnet.so
        report["native_libraries"] = {}
        report["native_libraries_error"] = "cannot read %s: %s" % (library, err)
    report["preloaded_from_wheels"] = native.preloaded()
    driver = native.cuda_driver()
    report["driver"] = {"version": driver["driver_version"], "error": driver["error"]}
    report["gpus"] = driver["devices"]
    report["ctx_auto"] = _auto_context(report)
    report["kernels"] = _kernels(report)
    report["data"] = _data(data_dir)
    return report


def _kernels(report):
    """Whether ptb_lm's own CPU kernels build and load here (building them once if they are not cached)."""
    if not report["mxnet"]["imports"]:
        return {"active": False, "reason": "mxnet does not import", "isa": "", "path": ""}
    from ..kernels import status

    found = status()
    return {"active": found.active, "reason": found.reason, "isa": found.isa, "path": found.path}


def other_work(seconds=0.5):
    """Cores' worth of work other than this process's on its CPUs, over ``seconds`` (None if unknown)."""
    import time

    cpus = os.sched_getaffinity(0)
    start, own, clock = busy_seconds(cpus), process_seconds(), time.monotonic()
    time.sleep(seconds)
    end = busy_seconds(cpus)
    if start is None or end is None:
        return None
    return max(0.0, ((end - start) - (process_seconds() - own)) / (time.monotonic() - clock))


def _mxnet():
    name, version = native.installed_mxnet()
    found = {"distribution": name, "version": version, "imports": False, "error": None, "features": {}}
    if name is None:
        found["error"] = "no mxnet is installed: pip install -e '.[cpu]' (or '.[cu112]' for a GPU)"
        return found
    from .shim import MXNetUnavailable, import_mxnet

    try:
        mx = import_mxnet()
    except MXNetUnavailable as err:
        found["error"] = str(err)
        return found
    except Exception as err:  # noqa: BLE001 - the doctor reports what breaks; it never breaks itself
        found["error"] = "%s: %s" % (type(err).__name__, err)
        return found
    found["imports"] = True
    features = mx.runtime.Features()
    found["features"] = {key: features.is_enabled(key)
                         for key in ("CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE") if key in features}
    return found


def _auto_context(report):
    if not report["mxnet"]["imports"]:
        return {"context": None, "reason": "mxnet does not import"}
    from .devices import gpu_unusable_reason

    reason = gpu_unusable_reason(0)
    if reason is None:
        return {"context": "gpu(0)", "reason": "GPU 0 ran a computation to the end"}
    return {"context": "cpu(0)", "reason": reason}


def _data(data_dir):
    path, kind = find_ptb(data_dir)  # where training would look, without downloading
    if kind == "folder":
        return {"path": os.path.abspath(path), "checksum": "unpacked files (the zip's sha1 was checked when "
                                                           "it was unpacked)"}
    if kind == "zip":
        zip_path = path
        try:
            found = sha1_of(zip_path)
        except OSError as err:
            return {"path": os.path.abspath(zip_path), "checksum": "unreadable: %s" % err}
        return {"path": os.path.abspath(zip_path), "checksum": "ok" if found == PTB_SHA1 else
                "MISMATCH: sha1 %s, not PTB's %s" % (found, PTB_SHA1)}
    return {"path": None, "checksum": None,
            "note": "PTB is not in %s yet; training downloads it there" % os.path.abspath(data_dir)}


def format_report(report):
    """The report as lines of text, for a terminal or a bug report."""
    mx = report["mxnet"]
    lines = ["python    %s (%s)%s" % (report["python"]["version"], report["python"]["executable"],
                                      "" if report["python"]["supported"]
                                      else "  NOT SUPPORTED by mxnet 1.9.1: use %s" % python_range()),
             "numpy     %s" % report["numpy"].get("version")]
    if mx["distribution"] is None:
        lines.append("mxnet     not installed: %s" % mx["error"])
    else:
        lines.append("mxnet     %s %s, %s" % (mx["distribution"], mx["version"],
                                              "imports" if mx["imports"] else "does NOT import: %s" % mx["error"]))
    if mx["features"]:
        lines.append("features  " + ", ".join("%s %s" % (k, "on" if v else "off") for k, v in mx["features"].items()))
    if report.get("native_libraries_error"):
        lines.append("libraries %s" % report["native_libraries_error"])
    lines.append("libraries libmxnet.so needs:")
    for soname, path in report["native_libraries"].items():
        note = path or ("NOT FOUND: the NVIDIA driver provides it" if soname == native.DRIVER else "NOT FOUND")
        lines.append("  %-24s %s" % (soname, note))
    threads = report["threads"]
    lines.append("cpu       %s logical CPUs, %s physical cores; MXNet's threads: %s; its engine: %s" % (
        threads["logical_cpus"], threads["physical_cores"] or "unknown", threads["mxnet_operators"],
        threads["mxnet_engine"]))
    busy = "unknown" if threads["other_work_cores"] is None else "%.1f cores" % threads["other_work_cores"]
    lines.append("load      other work keeps %s busy now; MXNet's threads %s" % (
        busy, "follow it (fewer while other work wants the cores)" if threads["follows_load"]
        else "stay fixed: %s" % threads["fixed_because"]))
    driver = report["driver"]
    lines.append("driver    %s" % (driver["version"] or driver["error"]))
    for gpu in report["gpus"]:
        lines.append("gpu %d     %s, compute capability %s, %s" % (
            gpu["index"], gpu["name"], gpu["capability"],
            "supported" if gpu["supported"] else "NOT supported by mxnet-cu112 1.9.1 (%s only)"
            % capability_range()))
    auto = report["ctx_auto"]
    lines.append("--ctx auto picks %s: %s" % (auto["context"], auto["reason"]))
    found = report["kernels"]
    lines.append("kernels   %s" % ("ptb_lm's own on CPUs, built for %s (%s)" % (found["isa"], found["path"])
                                   if found["active"] else "MXNet's operators: %s" % found["reason"]))
    data = report["data"]
    lines.append("data      %s" % (("%s (%s)" % (data["path"], data["checksum"])) if data["path"] else data["note"]))
    return lines
