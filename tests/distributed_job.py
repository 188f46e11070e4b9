"""Run under mpiexec by tests/test_distributed.py: python tests/distributed_job.py MODE OUT

train    a few SGD steps of a small GoogLeNet-style network (no dropout) on a fixed data set, each rank on
         its share of every combined batch; rank 0 writes the final parameters to OUT (.npz);
         train-cuda: the same on the GPU
train-frozen  the same network built from another seed on each rank, all but its classifier frozen: the
         broadcast gives every rank rank 0's values, frozen ones too, and the steps move only the classifier;
         every rank's final parameters, and rank 0's after the broadcast, gathered into OUT (.npz)
samplers every rank's sample indices for three epochs, gathered on rank 0 and written to OUT (.npz)
fail     rank 1 raises before the first gradient average, which rank 0 is already waiting in
"""

import sys

import numpy as np

import minigrad
import models
from minigrad import data, distributed, optim

BATCH, STEPS, SEED = 8, 3, 0


def train(comm, out, device="cpu"):
    minigrad.manual_seed(SEED)
    model = models.mini_googlenet(num_classes=4, in_channels=1, input_size=12, dropout=0.0).to(device)
    comm.broadcast_parameters(model)
    initial = {f"initial/{k}": v for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    dataset = data.ArrayDataset(rng.standard_normal((40, 1, 12, 12)).astype(np.float32), rng.integers(0, 4, 40), 4)
    sampler = distributed.DistributedSampler(len(dataset), comm.rank, comm.size, seed=SEED)
    loader = data.DataLoader(dataset, BATCH // comm.size, sampler=sampler)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step, (x, y) in enumerate(loader):
        if step == STEPS:
            break
        loss = models.training_loss(model(minigrad.tensor(x, device=device)), y)
        optimizer.zero_grad()
        loss.backward()
        comm.allreduce_gradients(model.parameters())
        optimizer.step()
    if comm.rank == 0:
        np.savez(out, **model.state_dict(), **initial)


def train_frozen(comm, out):
    minigrad.manual_seed(SEED + comm.rank)
    model = models.mini_googlenet(num_classes=4, in_channels=1, input_size=12, dropout=0.0)
    for name, p in model.named_parameters():
        if not name.startswith("layers.fc."):
            p.freeze_()
    comm.broadcast_parameters(model)
    initial = {f"initial/{k}": v for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((BATCH, 1, 12, 12)).astype(np.float32), rng.integers(0, 4, BATCH)
    share = slice(comm.rank * BATCH // comm.size, (comm.rank + 1) * BATCH // comm.size)
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        loss = models.training_loss(model(minigrad.tensor(x[share])), y[share])
        optimizer.zero_grad()
        loss.backward()
        comm.allreduce_gradients(model.parameters())
        optimizer.step()
    states = comm.comm.gather(model.state_dict(), root=0)
    if comm.rank == 0:
        np.savez(out, **initial, **{f"{rank}/{k}": v for rank, state in enumerate(states) for k, v in state.items()})


def samplers(comm, out):
    shares = []
    for epoch in range(3):
        sampler = distributed.DistributedSampler(23, comm.rank, comm.size, seed=SEED)
        sampler.set_epoch(epoch)
        shares.append(sampler.indices())
    gathered = comm.comm.gather(np.stack(shares), root=0)
    if comm.rank == 0:
        np.savez(out, shares=np.stack(gathered))             # (ranks, epochs, samples per rank)


def fail(comm, out):
    model = models.mini_googlenet(num_classes=4, in_channels=1, input_size=12)
    if comm.rank == 1:
        raise RuntimeError("a planted failure on rank 1")
    for p in model.parameters():
        p.grad = minigrad.Tensor(np.zeros(p.shape, np.float32))
    comm.allreduce_gradients(model.parameters())           # rank 0 waits here for a rank that has failed


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    world = distributed.init()
    jobs = {"train": train, "train-cuda": lambda c, o: train(c, o, "cuda"), "train-frozen": train_frozen,
            "samplers": samplers, "fail": fail}
    sys.exit(distributed.run(lambda: jobs[mode](world, out)))
