"""Synchronous data-parallel training over MPI (mpi4py; the `dist` extra brings MPICH with pip alone).

Every rank (process) holds a full replica of the model.  Rank 0's parameters are broadcast at the
start; each step, every rank runs forward and backward on its own shard of the batch, then the
gradients are averaged across ranks with one Allreduce over a flat buffer, and every rank takes the
same optimizer step, so the replicas stay identical.

    comm = distributed.init()
    comm.broadcast_parameters(model)
    sampler = distributed.DistributedSampler(len(dataset), comm.rank, comm.size, seed=0)
    loader = data.DataLoader(dataset, batch_size // comm.size, sampler=sampler)
    for x, y in loader:
        loss = ...; loss.backward()
        comm.allreduce_gradients(model.parameters())
        optimizer.step()

Launch with `mpiexec -n 2 python -m models.train ... --distributed`.  With equal local batches, the
averaged gradient is the gradient of the mean loss over the combined batch, and the sampler hands the
ranks exactly the combined batches one process would see, so training matches one process on the
combined batch up to float rounding.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback

import numpy as np

from .backend import array_module, is_cuda_array
from .nn import set_values

INSTALL_HINT = "pip install -e '.[dist]' (mpi4py and MPICH)"


def is_available() -> bool:
    """Whether mpi4py and an MPI library load."""
    try:
        from mpi4py import MPI  # noqa: F401
        return True
    except Exception:
        return False


def rank_device(device, local_rank, gpus):
    """'cpu', or the GPU of the rank with this local rank among `gpus` GPUs: cuda:local_rank % gpus."""
    if not device.startswith("cuda") or gpus < 1:
        return device
    return f"cuda:{local_rank % gpus}"


def mpiexec():
    """The MPI launcher to run jobs with: mpiexec (or mpirun) beside this Python interpreter first, where pip's
    MPICH puts it in a virtual environment, whether or not the environment is activated; else on PATH.
    None where there is none."""
    here = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        beside = os.path.join(here, name)
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
    return shutil.which("mpiexec") or shutil.which("mpirun")


class DistributedSampler:
    """This rank's sample indices for each epoch: a permutation of range(size) drawn from (seed, epoch),
    so every rank draws the same one, of which rank r takes positions r, r + world, r + 2*world, ...
    The ranks' shards are disjoint, and the last size % world samples of each permutation are left out
    so that every rank has the same number (the same number of equal-sized steps).  Rank r's k-th batch
    of b samples, together with the other ranks' k-th batches, is exactly the k-th batch of
    b * world samples that one process with world=1 would take."""

    def __init__(self, size, rank=0, world=1, shuffle=True, seed=0):
        for name, value in (("size", size), ("world", world)):
            if not isinstance(value, (int, np.integer)) or value < (0 if name == "size" else 1):
                raise ValueError(f"DistributedSampler: {name} must be a {'non-negative' if name == 'size' else 'positive'} "
                                 f"int, got {value!r}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world:
            raise ValueError(f"DistributedSampler: rank must be in [0, {world}), got {rank!r}")
        self.size, self.rank, self.world, self.shuffle, self.seed = int(size), int(rank), int(world), shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return self.size // self.world

    def indices(self):
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        return order[:len(self) * self.world][self.rank::self.world]


class Communicator:
    """The ranks of one MPI communicator (COMM_WORLD by default) and the collectives training needs."""

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except Exception as error:
            raise RuntimeError(f"distributed training needs mpi4py and an MPI library: {INSTALL_HINT} "
                               f"({type(error).__name__}: {error})") from None
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        # the rank among those on this machine: which of its GPUs is this rank's
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self._buffers = {}
        self.seconds = 0.0                  # time spent in gradient averaging (copies and Allreduce) so far

    def device(self, device):
        """This rank's device for `device`: on "cuda", one GPU of this machine per rank, in turn
        (cuda:local_rank modulo the GPUs), rather than every rank on GPU 0."""
        from .backend import cuda_device_count
        return rank_device(device, self.local_rank, cuda_device_count())

    def cuda_aware(self) -> bool:
        """Whether the MPI library can read GPU memory directly (else GPU gradients go through the host)."""
        try:
            return bool(self.MPI.Query_cuda_support())
        except Exception:
            return False

    def broadcast_parameters(self, model, root=0):
        """Every rank's parameters become rank `root`'s (in place)."""
        for p in model.parameters():
            host = np.ascontiguousarray(p.numpy()) if self.rank == root else np.empty(p.shape, p.dtype)
            self.comm.Bcast(host, root=root)
            if self.rank != root:
                set_values(p, host)
                p._bump()

    def _flat(self, xp, count, dtype):
        """A flat buffer kept between steps (one allocation, reused)."""
        key = (xp.__name__, np.dtype(dtype).name)
        held = self._buffers.get(key)
        if held is None or held.size != count:
            held = self._buffers[key] = xp.empty(count, dtype)
        return held

    def allreduce_gradients(self, parameters):
        """Average the gradients of `parameters` over all ranks, in place: one Allreduce over a flat buffer
        holding every gradient (a parameter without a gradient contributes zeros and receives the average;
        one that does not require grad, a frozen one, is left out, as PyTorch's DDP leaves it).
        Returns the seconds it took."""
        start = time.perf_counter()
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return 0.0
        xp = array_module(params[0].data)
        flat = self._flat(xp, sum(p.numel() for p in params), params[0].dtype)
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is None:
                flat[offset:offset + n] = 0
            else:
                flat[offset:offset + n] = p.grad.data.reshape(-1)
            offset += n
        if is_cuda_array(flat) and not self.cuda_aware():
            host = flat.get()                         # no CUDA-aware MPI: through host memory
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            flat.set(host)
        else:
            if is_cuda_array(flat):
                xp.cuda.get_current_stream().synchronize()      # MPI reads the buffer outside CuPy's stream
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        flat /= self.size
        offset = 0
        from .autograd import Tensor
        for p in params:
            n = p.numel()
            averaged = flat[offset:offset + n].reshape(p.shape)
            if p.grad is None:
                p.grad = Tensor(averaged.copy())
            else:
                p.grad.data[...] = averaged
            offset += n
        seconds = time.perf_counter() - start
        self.seconds += seconds
        return seconds

    def sum(self, values):
        """The element-wise sum over ranks of a list of numbers (losses, counts), as floats."""
        array = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array.tolist()

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        """End every rank of the job (the others may be waiting in a collective that would never return)."""
        self.comm.Abort(code)


_world = None


def init() -> Communicator:
    """The Communicator of every rank in the job (MPI is initialised when mpi4py is imported)."""
    global _world
    if _world is None:
        _world = Communicator()
    return _world


def run(main, describe=None):
    """main() on this rank, guarded: if it raises, the error is printed (with the rank, in a job of several)
    and the whole job is aborted with a non-zero status, so that no rank is left waiting forever in a
    collective that a failed rank will never join.  describe(error) may turn an expected error into
    (exit status, one-line message); other errors print their traceback and exit with 1.  In a job of one
    rank nothing is aborted: the status is returned."""
    try:
        return main()
    except BaseException as error:            # noqa: B036 (every failure must end the job, KeyboardInterrupt too)
        described = describe(error) if describe is not None else None
        comm = init()
        prefix = f"rank {comm.rank} of {comm.size}: " if comm.size > 1 else ""
        if described is None:
            code = 1
            print(f"{prefix}{type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        else:
            code, message = described
            print(prefix + message, file=sys.stderr)
        sys.stderr.flush()
        if comm.size > 1:
            time.sleep(0.5)          # let the launcher forward the message before MPI_Abort ends every rank
            comm.abort(code)
        return code


__all__ = ["is_available", "init", "run", "Communicator", "DistributedSampler"]
