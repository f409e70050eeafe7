"""Command lines: the only modules that read argv or print. scripts/ and the installed commands call the
``main`` functions gathered here, one module a command::

    common.py     a parser with ptb_lm's error voice, logging, and the one-line failure every command ends in
    train.py      ptb-lm-train (and python -m ptb_lm): the training flags and the config they describe
    tools.py      ptb-lm-evaluate, ptb-lm-generate, ptb-lm-plot, ptb-lm-export: a trained run's tools
    launch.py     ptb-lm-launch
    doctor.py     ptb-lm-doctor
    benchmark.py  ptb-lm-benchmark
"""

from .benchmark import benchmark_main
from .common import _run, setup_logging
from .doctor import doctor_main
from .launch import launch_main
from .tools import evaluate_main, export_main, generate_main, plot_main
from .train import config_from_args, train_main, train_parser

__all__ = ["benchmark_main", "config_from_args", "doctor_main", "evaluate_main", "export_main", "generate_main",
           "launch_main", "plot_main", "setup_logging", "train_main", "train_parser", "_run"]
