"""ptb-lm: install with  pip install -e '.[cpu,test]'  (or '.[cu112]' for an NVIDIA GPU, compute capability 5.0 to 8.9);
pip install '.[onnx]' for the model without MXNet (ptb_lm_onnx), on any Python from 3.11."""
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The Pythons MXNet 1.9.1 runs on, from the one place that says (a file of data, read without importing ptb_lm).
supported = {}
with io.open(os.path.join(HERE, "ptb_lm", "runtime", "supported.py"), encoding="utf-8") as f:
    exec(f.read(), supported)

# MXNet 1.9.1 (its last release) needs numpy < 2, and numpy < 2 has no wheel for Python 3.13 or newer:
# there, pip would spend many minutes building numpy 1.26 from source before failing. So where MXNet
# cannot run, the extras that bring it (cpu, cu112) ask for a file that cannot exist, whose name says
# why: pip stops at once with that name, before resolving anything else. ptb_lm_onnx (the model
# without MXNet, the onnx extra) installs there with today's numpy. A Python older than MXNet's
# range is refused outright.
MXNET_RUNS = supported["python_supported"](sys.version_info)
LOWEST, NEWEST = supported["MXNET_PYTHONS"]
if tuple(sys.version_info[:2]) < LOWEST:
    sys.exit("ptb-lm: error: Python %d.%d is not supported: ptb-lm runs on Python %s (tested on 3.11 and 3.12). "
             "Use python3.12 or python3.11, e.g. python3.12 -m venv .venv"
             % (sys.version_info[0], sys.version_info[1], supported["python_range"]()))
NO_MXNET_HERE = ("mxnet @ file:///ptb-lm/MXNet-1.9.1-needs-Python-%s-and-numpy-below-2--this-is-Python-%d.%d--"
                 "use-python3.12-or-python3.11" % (supported["python_range"]().replace(" ", "-"),
                                                     sys.version_info[0], sys.version_info[1]))


def with_mxnet(*requirements):
    """An extra that brings MXNet: its requirements where MXNet runs, the stop sign elsewhere."""
    return list(requirements) if MXNET_RUNS else [NO_MXNET_HERE]


from setuptools import find_packages, setup  # noqa: E402

# onnx for the exporter, by Python: each pin has a wheel there and installs beside numpy < 2
ONNX_FOR_EXPORT = ['onnx==1.15.0; python_version < "3.12"', 'onnx==1.16.2; python_version >= "3.12"']

setup(
    name="ptb-lm",
    version="0.1.0",
    description="Word-level RNN language model on Penn Treebank, trained with MXNet Gluon",
    long_description=io.open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ptb_lm", "ptb_lm.*", "ptb_lm_onnx"]),
    package_data={"ptb_lm": ["presets/*.json", "kernels/*.cc"]},
    # MXNet 1.9.1 is the last release and needs numpy < 2, and numpy >= 1.24 lacks the np.bool it
    # uses (ptb_lm/runtime/shim.py aliases it back). 3.12 needs numpy 1.26 and setuptools (mxnet imports
    # distutils). Tested (.ci/run): CPython 3.11.7 with numpy 1.23.5, 3.12.1 with numpy 1.26.4.
    python_requires=">=%d.%d" % LOWEST,
    install_requires=[
        "numpy>=1.17,<1.24; python_version<'3.12'",
        "numpy>=1.26,<2; python_version=='3.12'",
        "numpy>=1.26; python_version>='3.13'",  # no MXNet there (see with_mxnet): numpy 2 is fine
        "setuptools; python_version>='3.12'",
        "tqdm>=4.40",
    ],
    extras_require={
        "cpu": with_mxnet("mxnet==1.9.1"),
        # The GPU wheel, and NVIDIA's CUDA 11 runtime wheels that ship every library it links except the
        # driver (ptb_lm/runtime/native.py preloads them). Each soname was checked against libmxnet.so's needs;
        # cuDNN stays at 8.9 (9.x ships libcudnn.so.9). The wheel was built with CUDA 11.2 and runs on
        # CUDA 11.8's runtime by CUDA 11's minor-version compatibility; it needs driver 450.80.02 or newer.
        "cu112": with_mxnet(
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
        ),
        "plot": ["matplotlib>=3.3"],
        "notebook": ["ipywidgets>=7"],  # tqdm's notebook progress bar (without it, a text bar redrawn in place)
        # The model without MXNet (ptb_lm_onnx): ONNX Runtime, on any Python it has wheels for (3.11 on).
        "onnx": ["onnxruntime>=1.17"],
        # Exporting (ptb-lm-export, with MXNet): onnx writes opset 13 beside numpy < 2. 1.15.0 installs beside
        # numpy < 1.24 (Python 3.11) but has no wheel for 3.12, where 1.16.2 is the first that has one (and
        # builds from source fail); ONNX Runtime checks the export.
        "export": with_mxnet(*ONNX_FOR_EXPORT, "onnxruntime>=1.17"),
        "test": ["pytest>=7", "matplotlib>=3.3", "onnxruntime>=1.17"] + (ONNX_FOR_EXPORT if MXNET_RUNS else []),
    },
    entry_points={
        "console_scripts": [
            "ptb-lm-train=ptb_lm.cli.train:train_main",
            "ptb-lm-evaluate=ptb_lm.cli.tools:evaluate_main",
            "ptb-lm-generate=ptb_lm.cli.tools:generate_main",
            "ptb-lm-plot=ptb_lm.cli.tools:plot_main",
            "ptb-lm-launch=ptb_lm.cli.launch:launch_main",
            "ptb-lm-doctor=ptb_lm.cli.doctor:doctor_main",
            "ptb-lm-benchmark=ptb_lm.cli.benchmark:benchmark_main",
            "ptb-lm-export=ptb_lm.cli.tools:export_main",
            "ptb-lm-onnx-score=ptb_lm_onnx.cli:score_main",
            "ptb-lm-onnx-generate=ptb_lm_onnx.cli:generate_main",
        ]
    },
)
