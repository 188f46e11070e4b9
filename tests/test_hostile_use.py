"""What an afternoon of hostile use found, each case: silent wrong results, tracebacks where one line was
promised, a hang, unclear messages.  The commands run in-process (main(argv) returns the exit status)."""

import json
import os
import threading

import numpy as np
import pytest

import minigrad
import models
from minigrad import checkpoint, cli, data, nn, optim
from models import train as training


@pytest.fixture
def small_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8)).astype(np.float32)
    y = (x[:, :4].mean((1, 2)) > x[:, 4:].mean((1, 2))).astype(np.int64)
    path = tmp_path / "small.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def run_train(capsys, *argv):
    """(exit status, stdout, stderr) of python -m models.train, in this process."""
    status = training.main(["--no-progress", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err):
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---- silent wrong results ----------------------------------------------------------------------------

@pytest.mark.parametrize("option,value", [("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"),
                                          ("--weight-decay", "-inf"), ("--lr-gamma", "nan"), ("--polyak", "inf")])
def test_non_finite_options_are_refused_before_any_work(capsys, tmp_path, small_npz, option, value):
    status, out, err = run_train(capsys, "--data", small_npz, f"{option}={value}", "--out", tmp_path / "o")
    assert status == 2 and one_line(err) and f"{option} must be a finite number" in err and out == ""
    assert not os.path.exists(tmp_path / "o" / "checkpoint.npz")


def test_weights_that_go_non_finite_on_an_epochs_last_step_are_never_checkpointed(tmp_path, small_npz, monkeypatch):
    args = training.parse_args(["--data", small_npz, "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    trainer = training.Trainer(args)
    trainer.run()                                                  # epoch 1: good, checkpointed
    step, calls = trainer.optimizer.step, []

    def poisoned_step():                                           # the update of epoch 2's last step goes bad
        step()
        calls.append(1)
        if len(calls) == len(trainer.loader):
            for p in trainer.model.parameters():
                p.data[...] = np.nan
    monkeypatch.setattr(trainer.optimizer, "step", poisoned_step)
    trainer.args.epochs = 2
    with pytest.raises(training.TrainingError, match=r"the weights became non-finite in epoch 2 .*after the last loss "
                                                     r"was checked; stopped. The last good checkpoint \(epoch 1\)") as e:
        trainer.run()
    assert e.value.status == 1
    assert checkpoint.load(os.path.join(str(tmp_path), "checkpoint.npz"))[1]["epoch"] == 1


def test_a_run_that_diverges_on_its_only_epochs_last_step_exits_1_without_an_accuracy(capsys, tmp_path, small_npz,
                                                                                       monkeypatch):
    original = optim.SGD.step

    def step(self):
        original(self)
        for p in self._parameters():
            p.data[...] = np.inf
    monkeypatch.setattr(optim.SGD, "step", step)
    status, out, err = run_train(capsys, "--data", small_npz, "--epochs", "1", "--batch-size", "64", "--out", tmp_path)
    assert status == 1 and one_line(err) and "weights became non-finite" in err and "(no checkpoint yet)" in err
    assert "accuracy" not in out and not os.path.exists(tmp_path / "checkpoint.npz")


def test_resume_takes_the_checkpoints_settings_and_refuses_other_ones(capsys, tmp_path, small_npz):
    first = ["--data", small_npz, "--out", tmp_path, "--batch-size", "16", "--lr", "0.02", "--optimizer", "adam"]
    assert run_train(capsys, *first, "--epochs", "1")[0] == 0
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros((40, 8, 8), np.float32), y=np.arange(40) % 2)
    for option, value in (("--lr", "0.1"), ("--optimizer", "sgd"), ("--batch-size", "8"), ("--momentum", "0.5"),
                          ("--data", str(other))):
        status, _, err = run_train(capsys, "--out", tmp_path, "--epochs", "2", "--resume", option, value)
        assert status == 2 and one_line(err) and f"{option} {value} (the checkpoint's is" in err, err
    # the same values again, or none: the checkpoint's settings run, and the report records them
    status, out, err = run_train(capsys, "--out", tmp_path, "--epochs", "2", "--resume", "--lr", "0.02")
    assert status == 0, err
    with open(tmp_path / "report.json") as f:
        settings = json.load(f)["settings"]
    assert settings["lr"] == 0.02 and settings["optimizer"] == "adam" and settings["batch_size"] == 16


def test_16_bit_and_float_images_keep_their_range(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for label, name in enumerate(("a", "b")):
        os.makedirs(tmp_path / name)
        deep = (np.arange(16).reshape(4, 4) * (4000 + label)).astype(np.uint16)
        Image.fromarray(deep).save(tmp_path / name / "deep.png")                     # mode I;16
        Image.fromarray(deep.astype(np.float32) / 7).save(tmp_path / name / "float.tiff")   # mode F
    dataset = data.load_image_folder(str(tmp_path), grayscale=True)
    deep, floats = dataset.x[0, 0], dataset.x[1, 0]
    np.testing.assert_allclose(deep, np.arange(16).reshape(4, 4) * 4000 / 65535, rtol=1e-6)
    assert np.unique(deep).size == 16                               # not clipped: 8-bit conversion left one value
    np.testing.assert_allclose(floats, np.arange(16).reshape(4, 4) * 4000 / 7, rtol=1e-6)
    rgb = data.load_image_folder(str(tmp_path))
    assert rgb.x.shape[1] == 3 and np.array_equal(rgb.x[0, 0], rgb.x[0, 2]) and rgb.x[0].max() < 1


def test_a_32_bit_image_beyond_16_bits_is_refused_not_rescaled(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    os.makedirs(tmp_path / "a")
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "a" / "wide.tiff")
    with pytest.raises(data.DataError, match=r"wide.tiff: a 32-bit integer image with values outside 0-65535"):
        data.load_image_folder(str(tmp_path))


@pytest.mark.parametrize("make,expected_dtype,expected", [
    (lambda: minigrad.tensor([1, 2]) * 0.5, np.float32, [0.5, 1.0]),
    (lambda: 0.5 * minigrad.tensor([1, 2]), np.float32, [0.5, 1.0]),
    (lambda: minigrad.tensor([1, 2]) / 2, np.float32, [0.5, 1.0]),
    (lambda: minigrad.tensor([1, 2]) + 1, np.int64, [2, 3]),
    (lambda: minigrad.tensor([True, False]) + 1, np.int64, [2, 1]),
    (lambda: minigrad.tensor([1.0, 2.0]) * np.float64(0.5), np.float32, [0.5, 1.0]),
    (lambda: minigrad.tensor([1, 2]) ** 0.5, np.float32, [1.0, 2 ** 0.5]),
    (lambda: minigrad.tensor([1, 2]) + minigrad.tensor([0.5, 0.5]), np.float32, [1.5, 2.5]),
    (lambda: minigrad.tensor([1.0, 2.0]) + minigrad.tensor([1.0], dtype=np.float64), np.float64, [2.0, 3.0]),
])
def test_mixed_int_and_float_operands_promote_as_in_pytorch(torch, make, expected_dtype, expected):
    result = make()
    assert result.dtype == expected_dtype
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)
    # PyTorch agrees on the dtype of the same expressions
    assert (torch.tensor([1, 2]) * 0.5).dtype == torch.float32 and (torch.tensor([1, 2]) / 2).dtype == torch.float32
    assert (torch.tensor([1.0]) + torch.tensor([1.0], dtype=torch.float64)).dtype == torch.float64


def test_mixed_dtype_gradients_come_back_in_each_inputs_dtype():
    x = minigrad.tensor([1.0, 2.0], requires_grad=True)
    y = minigrad.tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])


def test_a_parameter_given_twice_is_refused():
    w = nn.Parameter(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"SGD: a parameter of shape \(3,\) appears twice in group 0"):
        optim.SGD([w, w], 0.1)
    with pytest.raises(ValueError, match=r"Adam: a parameter of shape \(3,\) appears in groups 0 and 1"):
        optim.Adam([{"params": [w]}, {"params": [w]}])


# ---- one line, not a traceback ---------------------------------------------------------------------------

@pytest.mark.parametrize("held_out,message", [("0.01", "--held-out 0.01 holds out 0 of the 40 images"),
                                              ("0.99", "--held-out 0.99 holds out 40 of the 40 images, leaving 0")])
def test_empty_splits_are_refused_before_training(capsys, tmp_path, small_npz, held_out, message):
    status, out, err = run_train(capsys, "--data", small_npz, "--held-out", held_out, "--out", tmp_path)
    assert status == 2 and one_line(err) and message in err and "epoch" not in out


@pytest.mark.parametrize("argv,message", [
    (["--momentum", "-1"], "--momentum must be a finite number >= 0 and <= 1, got -1"),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--polyak", "1"], "--polyak must be a finite number >= 0 and < 1"),
    (["--crop-padding", "-2"], "--crop-padding must be an integer from 0 to 4096"),
    (["--seed", "-1"], "--seed must be an integer from 0"),
    (["--epochs", "1.5"], "--epochs must be an integer from 1"),
    (["--model", "resnet"], "--model: invalid choice: 'resnet'"),
    (["--unknown"], "unrecognized arguments: --unknown"),
])
def test_every_training_option_is_checked_in_one_line(capsys, tmp_path, argv, message):
    status, _, err = run_train(capsys, *argv, "--out", tmp_path)
    assert status == 2 and one_line(err) and message in err, err


@pytest.mark.parametrize("argv,message", [
    (["--image-size", "4096"], "--image-size 4096 (the digits upsampled) would need about"),
    (["--data", "LABELS"], "of 1,000,000,001 classes (labels up to 1,000,000,000) would need"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_up_front(capsys, tmp_path, argv, message):
    huge = tmp_path / "labels.npz"
    np.savez(huge, x=np.zeros((4, 8, 8), np.float32), y=np.array([0, 1, 10**9, 2]))
    argv = [{"LABELS": str(huge)}.get(a, a) for a in argv]
    status, out, err = run_train(capsys, *argv, "--out", tmp_path / "o")
    assert status == 2 and one_line(err) and message in err and "of memory" in err, err


def test_memory_estimates_are_the_right_size():
    """GoogLeNet's parameters exactly (13,378,280 with its auxiliary heads, 1000 classes), and its activations
    within 2x of what a training step at batch 8 is measured to hold (about 350 MB above its parameters)."""
    params, activations = models.memory.estimate("googlenet", 8, 1000, 3, 224)
    assert params == 13_378_280 * 4 * 4
    assert 150e6 < activations < 700e6


def test_a_checkpoint_of_the_same_model_on_data_of_other_classes_is_one_line(capsys, tmp_path, small_npz):
    """Its data file now holds other classes (a different --data is refused before: see above)."""
    assert run_train(capsys, "--data", small_npz, "--epochs", "1", "--out", tmp_path)[0] == 0
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros((40, 8, 8), np.float32), y=np.arange(40) % 5)          # 5 classes, not 2
    settings_file = tmp_path / "checkpoint.npz"
    arrays, header = checkpoint.load(str(settings_file))
    header["settings"]["data"] = str(other)                 # as if trained there: the classifier differs
    checkpoint.save(str(settings_file), arrays, {k: v for k, v in header.items() if k != "format"})
    status, _, err = run_train(capsys, "--data", str(other), "--epochs", "2", "--out", tmp_path, "--resume")
    assert status == 2 and one_line(err) and "does not fit this model and data" in err and "shape of layers.fc.weight" in err


# ---- a hang --------------------------------------------------------------------------------------------

def test_a_fifo_in_a_class_folder_is_skipped_not_read(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    os.makedirs(tmp_path / "a")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "x.png")
    os.mkfifo(tmp_path / "a" / "pipe")
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("dataset", data.load_image_folder(str(tmp_path))),
                              daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "loading blocked on the FIFO"
    assert len(result["dataset"]) == 1


# ---- messages and small things ------------------------------------------------------------------------

@pytest.mark.parametrize("labels,message", [
    ([0.0, np.inf], "labels must be integers, got dtype float64 with non-integer or non-finite values"),
    ([0.0, 1e20], "labels must be integers below 2^53, got 1e+20"),
])
def test_labels_that_are_not_integers_are_named(labels, message):
    with pytest.raises(data.DataError, match=message.replace("^", r"\^").replace("+", r"\+")):
        data.ArrayDataset(np.zeros((2, 1, 2, 2)), np.array(labels))


def test_an_empty_npz_says_so(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 8, 8)), y=np.zeros(0, int))
    with pytest.raises(data.DataError, match="the .npz file holds no images"):
        data.load_npz(str(path))


def test_an_unwritable_out_is_refused_before_the_first_epoch(capsys, small_npz):
    status, out, err = run_train(capsys, "--data", small_npz, "--out", "/proc/forbidden")
    assert status == 2 and one_line(err) and "cannot write to --out /proc/forbidden" in err and out == ""


def test_the_next_save_removes_what_killed_writers_left(tmp_path):
    dead = tmp_path / ".checkpoint-999999999-abc.npz.tmp"              # no such process
    old_style = tmp_path / ".checkpoint-x1y2.npz.tmp"
    unrelated = tmp_path / "notes.txt"
    for f in (dead, old_style, unrelated):
        f.write_text("partial")
    checkpoint.save(str(tmp_path / "checkpoint.npz"), {"a": np.zeros(2)}, {})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "notes.txt"]


def test_hidden_files_in_a_class_folder_are_skipped(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / ".hidden")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    dataset = data.load_image_folder(str(tmp_path))
    assert len(dataset) == 1 and dataset.num_classes == 1


@pytest.mark.parametrize("command,argv,message", [
    ("models.summary", ["googlenet", "--input-size", "0"], "--input-size must be an integer from 1"),
    ("benchmarks.profile", ["mini-googlenet", "--top", "-3"], "--top must be an integer >= 1, got -3"),
    ("benchmarks.profile", ["mini-googlenet", "--input-size", "0"], "--input-size must be an integer from 1"),
    ("benchmarks.plan", ["googlenet", "--input-size", "0"], "--input-size must be an integer from 1"),
    ("benchmarks.profile", ["googlenet", "--batch", "4096"], "--batch 4096 at --input-size 224 would need"),
    ("models.summary", ["alexnet", "--input-size", "60000"], "--input-size 60000 would need about"),
])
def test_other_commands_refuse_silent_defaults_and_huge_sizes(capsys, command, argv, message):
    import importlib
    module = importlib.import_module(command if command != "models.summary" else "models.summary")
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert one_line(err) and message in err, err


def test_quick_does_not_override_an_explicit_batch(tmp_path):
    from benchmarks.__main__ import parse_args
    assert parse_args(["--quick", "--batch", "4", "--networks", "none", "--out", str(tmp_path)]).batch == 4
    assert parse_args(["--quick", "--networks", "none", "--out", str(tmp_path)]).batch == 2


def test_optimizer_arguments_take_numpy_numbers_and_refuse_nan_and_bad_betas():
    w = nn.Parameter(np.ones(2, np.float32))
    optim.SGD([w], np.float32(0.1))                                   # a NumPy number is a number
    with pytest.raises(ValueError, match="SGD: lr must be a finite number >= 0, got nan"):
        optim.SGD([w], float("nan"))
    with pytest.raises(ValueError, match=r"Adam: betas must be a pair of numbers in \[0, 1\), got \(0.9,\)"):
        optim.Adam([w], betas=(0.9,))
    with pytest.raises(ValueError, match="StepLR: gamma must be a finite number > 0, got inf"):
        optim.lr_scheduler.StepLR(optim.SGD([w], 0.1), 1, float("inf"))


@pytest.mark.parametrize("make,error,message", [
    (lambda: nn.MaxPool2d(-1), ValueError, "MaxPool2d: kernel_size must be >= 1"),
    (lambda: nn.MaxPool2d(3, padding=2), ValueError, r"MaxPool2d: padding \(2, 2\) must be at most half"),
    (lambda: nn.AvgPool2d(2, stride=0), ValueError, "AvgPool2d: stride must be >= 1"),
    (lambda: nn.AvgPool2d("3"), TypeError, "AvgPool2d: kernel_size must be an int"),
    (lambda: nn.LocalResponseNorm(0), ValueError, "LocalResponseNorm: size must be an int >= 1"),
    (lambda: nn.LocalResponseNorm(5, k=float("nan")), ValueError, "LocalResponseNorm: k must be finite"),
    (lambda: nn.Flatten("a"), TypeError, "Flatten: start_dim must be an int"),
])
def test_layers_refuse_nonsense_sizes_when_built(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_load_state_dict_with_lists_names_the_value():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"load_state_dict: the value of 'weight' is a list, not an array"):
        layer.load_state_dict({"weight": [[1.0, 2.0], [3.0, 4.0]], "bias": np.zeros(2, np.float32)})
    layer.load_state_dict({k: minigrad.tensor(v) for k, v in layer.state_dict().items()})   # Tensors are fine


def test_cli_types_refuse_what_they_cannot_take():
    parse = cli.real(above=0)
    assert parse("1e-3") == 1e-3
    for bad in ("nan", "inf", "-inf", "0", "x"):
        with pytest.raises(Exception, match="must be a finite number > 0"):
            parse(bad)
    assert cli.integer(1, 3)("2") == 2 and cli.integer_list(1)("8,32") == [8, 32]
    assert cli.name_list(["a", "b"], none=True)("none") == []
    with pytest.raises(cli.CommandError, match=r"^--x must be an integer from 1 to 3, got 4$"):
        p = cli.Parser(prog="p")
        p.add_argument("--x", type=cli.integer(1, 3))
        p.parse_args(["--x", "4"])
    with pytest.raises(cli.CommandError, match="would need about 2.0 GiB of memory; 1.0 GiB is available"):
        cli.check_memory("--size 9", 2 * 2**30, available=2**30)
