"""How much memory this process may still take: the machine's available memory, and its address-space limit.

Pure Python; read from /proc, so that a model too big for the machine is refused before
MXNet tries to allocate it (MXNet's own failure is a C++ traceback).
"""

import os
import resource


def _meminfo_bytes(field, proc="/proc"):
    try:
        with open(os.path.join(proc, "meminfo")) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _virtual_size_bytes(proc="/proc"):
    try:
        with open(os.path.join(proc, "self/status")) as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available_bytes(proc="/proc"):
    """Bytes this process can still allocate, as far as can be told: the machine's MemAvailable, and what
    its address-space limit (``ulimit -v``) leaves; None if neither is known."""
    limits = []
    available = _meminfo_bytes("MemAvailable", proc)
    if available is not None:
        limits.append(available)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _virtual_size_bytes(proc)))
    return min(limits) if limits else None
