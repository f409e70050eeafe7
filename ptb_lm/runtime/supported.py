"""What MXNet 1.9.1 runs on, as data: the one place setup.py, the doctor and the device check read it from.

Pure Python with no imports, so that setup.py can read it before anything is installed.
"""

# MXNet 1.9.1 (its last release) needs numpy < 2; numpy >= 1.24 lacks the np.bool alias it uses
# (runtime/shim.py restores it), and numpy < 2 has no wheel for Python 3.13 or newer.
MXNET_PYTHONS = ((3, 8), (3, 12))
TESTED_PYTHONS = ((3, 11), (3, 12))

# Compute capabilities mxnet-cu112 1.9.1 carries code for (sm_50 .. sm_86, no PTX): code built for 8.6
# also runs on 8.x (Ada, 8.9); Hopper (9.0) and newer cannot run MXNet's own kernels.
GPU_CAPABILITIES = ((5, 0), (8, 9))


def python_supported(version):
    """Whether MXNet 1.9.1 can run on Python ``version`` (a (major, minor) tuple)."""
    return MXNET_PYTHONS[0] <= tuple(version[:2]) <= MXNET_PYTHONS[1]


def python_range():
    """E.g. "3.8 to 3.12"."""
    (a, b), (c, d) = MXNET_PYTHONS
    return "%d.%d to %d.%d" % (a, b, c, d)


def capability_supported(major, minor):
    """Whether the GPU wheel (sm_50 .. sm_86, no PTX) can run on compute capability ``major.minor``."""
    return GPU_CAPABILITIES[0] <= (major, minor) <= GPU_CAPABILITIES[1]


def capability_range():
    """E.g. "5.0 to 8.9"."""
    (a, b), (c, d) = GPU_CAPABILITIES
    return "%d.%d to %d.%d" % (a, b, c, d)
