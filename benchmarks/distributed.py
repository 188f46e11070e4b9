"""python -m benchmarks.distributed: data-parallel scaling over MPI on this machine.

Training steps (forward, loss, backward, gradient averaging, SGD) with the same combined batch on 1 and
2 ranks, each rank one thread, and for context one process using every core; reports images/s, the step
time and the time each step spends averaging gradients (copies and the Allreduce).  Needs the `dist`
extra (mpi4py, MPICH).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = {"mini-googlenet": 32, "googlenet": 224}


def worker(args):
    import minigrad
    import models
    from minigrad import distributed, optim

    comm = distributed.init()
    minigrad.manual_seed(0)
    size = MODELS[args.model]
    model = models.get_model(args.model, input_size=size)
    comm.broadcast_parameters(model)
    local = args.batch // comm.size
    rng = np.random.default_rng(comm.rank)
    x = minigrad.tensor(rng.standard_normal((local, 3, size, size)).astype(np.float32))
    classes = model.layers.fc.weight.shape[0]
    target = rng.integers(0, classes, local)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps, communication, waiting = [], [], []
    for step in range(args.steps + 1):                       # the first step warms up
        start = time.perf_counter()
        loss = models.training_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        arrived = time.perf_counter()
        comm.barrier()                                       # split the wait for the slower rank from the transfer
        waited = time.perf_counter() - arrived
        seconds = comm.allreduce_gradients(model.parameters())
        optimizer.step()
        if step:
            steps.append(time.perf_counter() - start)
            communication.append(seconds)
            waiting.append(waited)
    if comm.rank == 0:
        gradient_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
        print(json.dumps({"step": statistics.median(steps), "communication": statistics.median(communication),
                          "waiting": statistics.median(waiting), "gradient_mb": gradient_mb}))


def launch(ranks, threads, args):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "NUMBA_NUM_THREADS": str(threads)}
    command = [args.mpiexec, "-n", str(ranks), sys.executable, "-m", "benchmarks.distributed", "--worker",
               "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the {ranks}-rank job failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_args(argv):
    from minigrad import cli, distributed
    from models import memory

    parser = cli.Parser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="mini-googlenet")
    parser.add_argument("--batch", type=cli.integer(2, 2**16), default=64,
                        help="combined batch over all ranks, even (default 64)")
    parser.add_argument("--steps", type=cli.integer(1, 10**6), default=10, help="timed steps after a warm-up (default 10)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.batch % 2:
        raise cli.CommandError(f"--batch must be even (it is split over 2 ranks), got {args.batch}")
    args.mpiexec = distributed.mpiexec()
    if not distributed.is_available() or not args.mpiexec:
        raise cli.CommandError(f"needs MPI: {distributed.INSTALL_HINT}")
    memory.check_fits(args.model, args.batch, 10, 3, memory.DEFAULT_SIZE[args.model], f"--batch {args.batch}")
    return args


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.distributed", _main, argv)


def _main(argv):
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    from mpi4py import MPI

    from benchmarks.timing import machine_header
    print(machine_header())
    print(f"{MPI.Get_library_version().splitlines()[0].strip()}; {args.model}, combined batch {args.batch}, "
          f"median of {args.steps} steps after a warm-up")
    cores = os.cpu_count() or 1
    runs = [(1, 1), (2, 1), (1, cores)]
    results = {run: launch(*run, args) for run in runs}
    base = results[(1, 1)]["step"]
    print("\n| ranks | threads per rank | images/s | step ms | averaging gradients ms (share) | rank 0 waiting for "
          "the others ms | speed-up vs 1 rank |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (ranks, threads), r in results.items():
        print(f"| {ranks} | {threads} | {args.batch / r['step']:.0f} | {r['step'] * 1e3:.0f} | "
              f"{r['communication'] * 1e3:.2f} ({r['communication'] / r['step']:.1%}) | {r['waiting'] * 1e3:.1f} | "
              f"{base / r['step']:.2f}x |")
    print(f"\ngradients averaged per step: {results[(1, 1)]['gradient_mb']:.1f} MB in one Allreduce")
    return 0


if __name__ == "__main__":
    sys.exit(main())
