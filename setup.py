"""ptb-lm: install with  pip install -e '.[cpu,test]'  (or '.[cu112]' for an NVIDIA GPU, compute capability 5.0 to 8.9)."""
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The Pythons MXNet 1.9.1 runs on, from the one place that says (a file of data, read without importing ptb_lm).
supported = {}
with io.open(os.path.join(HERE, "ptb_lm", "runtime", "supported.py"), encoding="utf-8") as f:
    exec(f.read(), supported)

# Refuse an unsupported Python here, before pip resolves or builds anything: on 3.13 pip would
# otherwise spend many minutes building numpy 1.26 from source before saying "requires a different
# Python". MXNet 1.9.1 (its last release) needs numpy < 2, and numpy < 2 has no wheel for 3.13.
if not supported["python_supported"](sys.version_info):
    sys.exit("ptb-lm: error: Python %d.%d is not supported: ptb-lm runs on Python %s (tested on 3.11 "
             "and 3.12), because MXNet 1.9.1 needs numpy < 2 and numpy < 2 has no wheel for Python 3.13 or "
             "newer. Use python3.12 or python3.11, e.g. python3.12 -m venv .venv"
             % (sys.version_info[0], sys.version_info[1], supported["python_range"]()))

from setuptools import find_packages, setup  # noqa: E402

LOWEST, NEWEST = supported["MXNET_PYTHONS"]

setup(
    name="ptb-lm",
    version="0.1.0",
    description="Word-level RNN language model on Penn Treebank, trained with MXNet Gluon",
    long_description=io.open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ptb_lm", "ptb_lm.*"]),
    package_data={"ptb_lm": ["presets/*.json"]},
    # MXNet 1.9.1 is the last release and needs numpy < 2, and numpy >= 1.24 lacks the np.bool it
    # uses (ptb_lm/_compat.py aliases it back). 3.12 needs numpy 1.26 and setuptools (mxnet imports
    # distutils). Tested (.ci/run): CPython 3.11.7 with numpy 1.23.5, 3.12.1 with numpy 1.26.4.
    python_requires=">=%d.%d,<%d.%d" % (LOWEST + (NEWEST[0], NEWEST[1] + 1)),
    install_requires=[
        "numpy>=1.17,<1.24; python_version<'3.12'",
        "numpy>=1.26,<2; python_version>='3.12'",
        "setuptools; python_version>='3.12'",
        "tqdm>=4.40",
    ],
    extras_require={
        "cpu": ["mxnet==1.9.1"],
        # The GPU wheel, and NVIDIA's CUDA 11 runtime wheels that ship every library it links except the
        # driver (ptb_lm/native.py preloads them). Each soname was checked against libmxnet.so's needs;
        # cuDNN stays at 8.9 (9.x ships libcudnn.so.9). The wheel was built with CUDA 11.2 and runs on
        # CUDA 11.8's runtime by CUDA 11's minor-version compatibility; it needs driver 450.80.02 or newer.
        "cu112": [
            "mxnet-cu112==1.9.1",
            "nvidia-cuda-runtime-cu11==11.8.89",
            "nvidia-cublas-cu11==11.11.3.6",
            "nvidia-cudnn-cu11==8.9.6.50",
            "nvidia-nccl-cu11==2.21.5",
            "nvidia-cufft-cu11==10.9.0.58",
            "nvidia-curand-cu11==10.3.0.86",
            "nvidia-cusolver-cu11==11.4.1.48",
            "nvidia-cuda-nvrtc-cu11==11.8.89",
            "nvidia-nvtx-cu11==11.8.86",
        ],
        "plot": ["matplotlib>=3.3"],
        "test": ["pytest>=7", "matplotlib>=3.3"],
    },
    entry_points={
        "console_scripts": [
            "ptb-lm-train=ptb_lm.cli:train_main",
            "ptb-lm-evaluate=ptb_lm.cli:evaluate_main",
            "ptb-lm-generate=ptb_lm.cli:generate_main",
            "ptb-lm-plot=ptb_lm.cli:plot_main",
            "ptb-lm-launch=ptb_lm.cli:launch_main",
            "ptb-lm-doctor=ptb_lm.cli:doctor_main",
            "ptb-lm-benchmark=ptb_lm.cli:benchmark_main",
        ]
    },
)
