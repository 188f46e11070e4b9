"""Data-parallel training over MPI (minigrad.distributed), run as real multi-process jobs under mpiexec.

Skips with the reason where mpi4py or mpiexec is missing (pip install -e ".[dist]"); with
MINIGRAD_REQUIRE_MPI=1 (CI) a missing MPI fails instead.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import data, distributed

from conftest import examples, require_tool

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).resolve().parent / "distributed_job.py"


def mpiexec():
    found = distributed.is_available() and distributed.mpiexec()
    require_tool(found, "MPI is not installed (pip install -e '.[dist]': mpi4py and MPICH)", "MINIGRAD_REQUIRE_MPI")
    return found


def launch(ranks, *args, timeout=300):
    """`mpiexec -n ranks python ...`, one thread per rank (the ranks share this machine's cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_two_ranks_train_like_one_process_on_the_combined_batch(tmp_path):
    for ranks in (1, 2):
        result = launch(ranks, JOB, "train", tmp_path / f"{ranks}.npz")
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = np.load(tmp_path / "1.npz"), np.load(tmp_path / "2.npz")
    assert set(one.files) == set(two.files) and "layers.fc.weight" in one.files
    for name in one.files:                                  # every trained parameter, within float32 rounding
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    moved = [np.abs(one[n] - one[f"initial/{n}"]).max() for n in one.files if not n.startswith("initial/")]
    assert min(moved) > 1e-4                               # the steps really trained every parameter


def test_two_ranks_fine_tune_a_frozen_network_s_classifier(tmp_path):
    """Frozen parameters take rank 0's values in the broadcast and stay there; the others train, alike on
    both ranks."""
    result = launch(2, JOB, "train-frozen", tmp_path / "frozen.npz")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = np.load(tmp_path / "frozen.npz")
    names = [n.removeprefix("initial/") for n in saved.files if n.startswith("initial/")]
    for name in names:
        np.testing.assert_allclose(saved[f"1/{name}"], saved[f"0/{name}"], rtol=1e-5, atol=1e-6, err_msg=name)
        moved = np.abs(saved[f"0/{name}"] - saved[f"initial/{name}"]).max()
        assert (moved > 1e-4) == name.startswith("layers.fc."), name


@pytest.mark.gpu
def test_two_ranks_on_the_gpu_train_like_one_process_on_the_cpu(tmp_path):
    """CuPy gradients averaged through host buffers (or CUDA-aware MPI): the same parameters."""
    for ranks, mode in ((1, "train"), (2, "train-cuda")):
        result = launch(ranks, JOB, mode, tmp_path / f"{mode}.npz")
        assert result.returncode == 0, result.stderr[-3000:]
    cpu, gpu = np.load(tmp_path / "train.npz"), np.load(tmp_path / "train-cuda.npz")
    for name in cpu.files:
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_ranks_never_see_the_same_sample_in_an_epoch(tmp_path):
    result = launch(3, JOB, "samplers", tmp_path / "shares.npz")
    assert result.returncode == 0, result.stderr[-3000:]
    shares = np.load(tmp_path / "shares.npz")["shares"]          # (ranks, epochs, samples per rank)
    assert shares.shape == (3, 3, 7)                             # 23 samples: 7 each, 2 left out per epoch
    for epoch in range(3):
        seen = shares[:, epoch].ravel()
        assert len(set(seen.tolist())) == seen.size              # disjoint across ranks
    assert not np.array_equal(shares[:, 0], shares[:, 1])        # reshuffled every epoch


def test_a_failing_rank_ends_the_job_with_a_message_instead_of_a_hang(tmp_path):
    result = launch(2, JOB, "fail", tmp_path / "unused", timeout=120)   # a hang would raise TimeoutExpired
    assert result.returncode != 0
    assert "rank 1 of 2: RuntimeError: a planted failure on rank 1" in result.stderr


def test_the_training_command_runs_distributed_and_only_rank_0_reports(tmp_path):
    result = launch(2, "-m", "models.train", "--model", "mini-googlenet", "--data", "digits", "--image-size", "8",
                    "--epochs", "2", "--batch-size", "64", "--no-progress", "--distributed", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("held-out accuracy: ") == 1          # one rank prints
    assert "2 ranks, 32 images each per step" in result.stdout
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "report.json").exists()
    resumed = launch(2, "-m", "models.train", "--model", "mini-googlenet", "--data", "digits", "--image-size", "8",
                     "--epochs", "3", "--batch-size", "64", "--no-progress", "--distributed", "--out", tmp_path,
                     "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "epoch 3:" in resumed.stdout


def test_the_training_command_refuses_a_batch_that_does_not_split(tmp_path):
    result = launch(2, "-m", "models.train", "--batch-size", "33", "--epochs", "1", "--distributed", "--out", tmp_path)
    assert result.returncode != 0
    assert "--batch-size 33 does not split evenly over 2 ranks" in result.stderr
    assert "Traceback" not in result.stderr


@settings(max_examples=examples(50))
@given(st.integers(0, 60), st.integers(1, 6), st.integers(0, 5), st.booleans())
def test_the_sampler_splits_every_epoch_into_disjoint_equal_shares(size, world, epoch, shuffle):
    shares = []
    for rank in range(world):
        sampler = distributed.DistributedSampler(size, rank, world, shuffle=shuffle, seed=3)
        sampler.set_epoch(epoch)
        shares.append(sampler.indices())
    every = np.concatenate(shares)
    assert all(len(s) == size // world for s in shares)
    assert len(set(every.tolist())) == every.size and (every.size == 0 or every.max() < size)
    # the ranks' k-th batches together are the k-th batch of one process taking all of them
    one = distributed.DistributedSampler(size, 0, 1, shuffle=shuffle, seed=3)
    one.set_epoch(epoch)
    combined = np.stack(shares, axis=1).ravel() if world and size // world else np.array([], int)
    np.testing.assert_array_equal(combined, one.indices()[:combined.size])


def test_sampler_and_loader_arguments_are_checked():
    with pytest.raises(ValueError, match="DistributedSampler: rank must be in \\[0, 2\\), got 2"):
        distributed.DistributedSampler(10, 2, 2)
    with pytest.raises(ValueError, match="DistributedSampler: world must be a positive int"):
        distributed.DistributedSampler(10, 0, 0)
    dataset = data.ArrayDataset(np.zeros((4, 1, 2, 2)), np.zeros(4, int), 1)
    with pytest.raises(ValueError, match="DataLoader: give shuffle=True or a sampler, not both"):
        data.DataLoader(dataset, 2, shuffle=True, sampler=distributed.DistributedSampler(4))


def test_the_scaling_benchmark_reports_one_and_two_ranks():
    mpiexec()
    result = subprocess.run([sys.executable, "-m", "benchmarks.distributed", "--steps", "1", "--batch", "8"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1:3] for row in rows] == [[" 1 ", " 1 "], [" 2 ", " 1 "], [" 1 ", f" {os.cpu_count()} "]]
    assert "gradients averaged per step:" in result.stdout


def test_mpiexec_is_found_beside_the_interpreter_without_an_activated_environment(tmp_path, monkeypatch):
    """A virtual environment's MPICH (pip install mpich) puts mpiexec beside its python: found there first, even
    with PATH not naming the environment; else on PATH; else None."""
    fake_python = tmp_path / "venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.touch()
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert distributed.mpiexec() is None
    launcher = fake_python.parent / "mpiexec"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert distributed.mpiexec() == str(launcher)
