"""``ptb-lm-launch``: data-parallel training over MXNet's parameter server, started by ptb_lm's own launchers or
by a cluster's.
"""

import argparse
import os
import socket
import sys

from ..errors import LaunchError
from ..runtime.launcher import MPI_ROOT_VARIABLES, launch, launch_on_cluster, read_hosts
from .common import Parser, _run


def launch_main(argv=None):
    """ptb-lm-launch: data-parallel training over MXNet's parameter server (kvstore dist_sync).

    Everything after -- goes to each worker's training command, e.g.
      ptb-lm-launch --local 2 -- --epochs 1 --seed 1                  two workers on this machine
      ptb-lm-launch --hosts hosts.txt -- --epochs 1                   one worker a host, over ssh
      ptb-lm-launch --launcher mpi --num-workers 4 --hostfile H -- ... through mpirun (MXNet's dmlc_tracker)
      ptb-lm-launch --launcher slurm --num-workers 4 -- ...            through srun, inside a SLURM allocation
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = Parser(prog="ptb-lm-launch", description=launch_main.__doc__,
                    usage="%(prog)s (--local N | --hosts FILE | --launcher NAME --num-workers N) [options] -- "
                          "TRAINING FLAGS",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launcher", choices=("local", "ssh", "mpi", "slurm", "sge", "yarn"),
                        help="how to start the processes: local and ssh are ptb_lm's own, supervised launchers "
                             "(--local N and --hosts FILE choose them too); mpi, slurm, sge and yarn go through "
                             "MXNet's dmlc_tracker")
    parser.add_argument("--local", type=int, metavar="N", help="run N workers on this machine (127.0.0.1)")
    parser.add_argument("--hosts", metavar="FILE", help="run the workers over ssh on these hosts, one per line")
    parser.add_argument("--hostfile", metavar="FILE", help="with --launcher mpi: mpirun's host file")
    parser.add_argument("--num-workers", type=int, help="how many workers (default with --hosts: one per host)")
    parser.add_argument("--servers", type=int, default=1, help="parameter-server processes (default: 1)")
    parser.add_argument("--port", type=int, help="the scheduler's port (default: a free one)")
    parser.add_argument("--host-ip", default=None,
                        help="the address workers reach the scheduler at (default: 127.0.0.1 with --local and "
                             "--launcher mpi without a host file, else this machine's hostname)")
    parser.add_argument("--allow-run-as-root", action="store_true",
                        help="with --launcher mpi: let Open MPI run as root, as in most containers (it sets "
                             "OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)")
    parser.add_argument("--tracker-option", action="append", default=[], metavar="OPTION",
                        help="passed to dmlc_tracker as it is (e.g. --tracker-option=--queue=gpu with sge); "
                             "repeatable")
    args = parser.parse_args(own)
    if "--kvstore" not in train_args:
        train_args = ["--kvstore", "dist_sync"] + train_args

    def body():
        launcher = args.launcher or ("ssh" if args.hosts else "local" if args.local is not None else None)
        if launcher is None:
            raise LaunchError("say how to start the workers: --local N, --hosts FILE, or --launcher NAME with "
                              "--num-workers N")
        if (args.local is not None and launcher != "local") or (args.hosts and launcher != "ssh"):
            raise LaunchError("--local goes with --launcher local and --hosts with --launcher ssh: give one of them")
        if args.allow_run_as_root:
            if launcher != "mpi":
                raise LaunchError("--allow-run-as-root goes with --launcher mpi (Open MPI's rule)")
            os.environ.update({name: "1" for name in MPI_ROOT_VARIABLES})  # the tracker's mpirun inherits them
        if launcher in ("local", "ssh"):
            hosts = read_hosts(args.hosts) if launcher == "ssh" else None
            if launcher == "ssh" and not hosts:
                raise LaunchError("--launcher ssh needs --hosts FILE")
            workers = args.local if args.local is not None else (args.num_workers or (len(hosts) if hosts else None))
            if workers is None:
                raise LaunchError("--launcher local needs the number of workers: --local N or --num-workers N")
            host_ip = args.host_ip or ("127.0.0.1" if not hosts else socket.gethostname())
            return launch(workers, train_args, hosts=hosts, num_servers=args.servers, port=args.port,
                          host_ip=host_ip)
        if args.num_workers is None:
            raise LaunchError("--launcher %s needs --num-workers N" % launcher)
        if args.port is not None:
            raise LaunchError("--port goes with ptb_lm's own launchers; dmlc_tracker picks the scheduler's port")
        host_ip = args.host_ip or ("127.0.0.1" if launcher == "mpi" and not args.hostfile else None)
        return launch_on_cluster(launcher, args.num_workers, train_args, num_servers=args.servers, host_ip=host_ip,
                                 host_file=args.hostfile, extra_options=args.tracker_option)

    return _run(body)
