"""python -m models.train: train a network, evaluating on a held-out split every epoch.

    python -m models.train --model mini-googlenet --data digits

--data is `digits` (scikit-learn's bundled handwritten digits, the default: real data,
no download), a .npz file with x and y, or a folder with one sub-folder of images per
class.  A checkpoint (model, optimizer, scheduler, epoch, random states) is written
atomically after every epoch; --resume continues from it exactly.  The last line of
output reads `held-out accuracy: 0.NNNN`; the report is also written as JSON and the
loss and accuracy curves as a PNG.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

import minigrad
from minigrad import checkpoint, cli, data, distributed, optim
from minigrad.backend import array_module, parse_device
from minigrad.random import generator

from . import MODELS, get_model, memory, training_loss


class TrainingError(Exception):
    """Stops training with a message and a non-zero exit (no traceback): 2 for what the command was asked,
    1 for a run that diverged."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# The settings a run trains by, their defaults and how each is checked.  A checkpoint records them, and a
# resumed run takes them from it: an option given again must say the same (see reconcile).
SETTINGS = {
    "model": ("mini-googlenet", None),
    "data": ("digits", None),
    "image_size": (16, cli.integer(1, 4096)),
    "batch_size": (32, cli.integer(1, 2**20)),
    "optimizer": ("sgd", None),
    "lr": (0.05, cli.real(above=0)),
    "momentum": (0.9, cli.real(minimum=0, maximum=1)),
    "weight_decay": (5e-4, cli.real(minimum=0)),
    "lr_step": (8, cli.integer(1, 10**6)),
    "lr_gamma": (0.96, cli.real(above=0)),
    "polyak": (0.99, cli.real(minimum=0, below=1)),
    "held_out": (0.2, cli.real(above=0, below=1)),
    "crop_padding": (1, cli.integer(0, 4096)),
    "flip": (False, None),
    "seed": (0, cli.integer(0, 2**32 - 1)),
}


def parse_args(argv):
    """The options, each checked (cli types: finite numbers in range), the training settings not given left
    None until reconcile() fills them (from the checkpoint on --resume, else the defaults)."""
    parser = cli.Parser(prog="python -m models.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS))
    parser.add_argument("--data", help="digits, a .npz file, or an image folder (default digits)")
    parser.add_argument("--image-size", type=SETTINGS["image_size"][1],
                        help="digits are upsampled to this size (default 16)")
    parser.add_argument("--epochs", type=cli.integer(1, 10**6), default=30)
    parser.add_argument("--batch-size", type=SETTINGS["batch_size"][1], help="default 32")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], help="default sgd")
    parser.add_argument("--lr", type=SETTINGS["lr"][1], help="learning rate (default 0.05)")
    parser.add_argument("--momentum", type=SETTINGS["momentum"][1], help="SGD's momentum, 0 to 1 (default 0.9)")
    parser.add_argument("--weight-decay", type=SETTINGS["weight_decay"][1], help="default 5e-4")
    parser.add_argument("--lr-step", type=SETTINGS["lr_step"][1], help="StepLR: epochs per step (default 8, as the paper)")
    parser.add_argument("--lr-gamma", type=SETTINGS["lr_gamma"][1], help="StepLR: factor per step (default 0.96)")
    parser.add_argument("--polyak", type=SETTINGS["polyak"][1], metavar="DECAY",
                        help="evaluate Polyak-averaged weights with this decay, as the paper did (default 0.99; 0: off)")
    parser.add_argument("--held-out", type=SETTINGS["held_out"][1], help="fraction held out for evaluation (default 0.2)")
    parser.add_argument("--crop-padding", type=SETTINGS["crop_padding"][1], help="random-crop augmentation: pad by "
                        "this much and crop back (default 1; 0: off)")
    parser.add_argument("--flip", action="store_true", default=None, help="random horizontal flips (not for digits)")
    parser.add_argument("--seed", type=SETTINGS["seed"][1])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", default="train-results", help="folder for checkpoint, report and plot")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz, with its settings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the ranks of an MPI job (mpiexec -n 2 python -m models.train "
                             "--distributed): --batch-size is the combined batch, split evenly over the ranks")
    try:
        args = parser.parse_args(argv)
    except cli.CommandError as error:
        raise TrainingError(str(error)) from None
    if args.device == "cuda":
        try:
            args.device = parse_device("cuda", "--device")
        except (RuntimeError, ValueError) as error:
            raise TrainingError(str(error)) from None
    if args.distributed and not distributed.is_available():
        raise TrainingError(f"--distributed needs mpi4py and an MPI library: {distributed.INSTALL_HINT}")
    try:
        cli.writable_folder("--out", args.out)
    except cli.CommandError as error:
        raise TrainingError(str(error)) from None
    if not args.resume:
        reconcile(args, None)
    return args


def reconcile(args, recorded):
    """Fill the training settings: from `recorded` (a checkpoint's, on --resume), where an option given again
    must match it (a run that silently trained by other settings, or reported settings it did not use, would
    be wrong), else from the defaults."""
    conflicts = []
    for name, (default, _) in SETTINGS.items():
        given = getattr(args, name)
        if recorded is not None and name in recorded:
            if given is not None and given != recorded[name]:
                flag = "--" + name.replace("_", "-")
                conflicts.append(f"{flag} {given} (the checkpoint's is {recorded[name]})")
            setattr(args, name, recorded[name])
        elif given is None:
            setattr(args, name, default)
    if conflicts:
        raise TrainingError(f"--resume continues the run in the checkpoint with its own settings, but this command "
                            f"asks for {'; '.join(conflicts)}; drop those options, or start a new run in another --out")


DIGITS = 1797                                   # images in scikit-learn's digits


def load_data(args):
    if args.data == "digits":
        # upsampled, padded and converted: about three float32 copies of the images at once
        cli.check_memory(f"--image-size {args.image_size} (the digits upsampled)",
                         3 * DIGITS * args.image_size ** 2 * 4)
        return data.load_digits(args.image_size)
    if args.data.endswith(".npz"):
        return data.load_npz(args.data)
    if os.path.isdir(args.data):
        return data.load_image_folder(args.data)
    raise TrainingError(f"--data {args.data}: expected 'digits', a .npz file or an image folder")


def evaluate(model, dataset, batch_size, device="cpu", comm=None):
    """Accuracy on `dataset`; with a communicator each rank scores its own contiguous share."""
    if comm is not None:
        share = np.array_split(np.arange(len(dataset)), comm.size)[comm.rank]
        dataset = data.ArrayDataset(*dataset[share], num_classes=dataset.num_classes)
    model.eval()
    correct = 0
    with minigrad.no_grad():
        for x, y in data.DataLoader(dataset, batch_size):
            correct += int((model(minigrad.tensor(x, device=device)).numpy().argmax(1) == y).sum())
    model.train()
    if comm is not None:
        correct, total = comm.sum([correct, len(dataset)])
        return correct / total
    return correct / len(dataset)


class Trainer:
    def __init__(self, args):
        self.args = args
        self.path = os.path.join(args.out, "checkpoint.npz")
        self.resumed = None
        if args.resume:              # the checkpoint's settings first: they decide the data and the model
            self.resumed = checkpoint.load(self.path)
            header = self.resumed[1]
            if header["model"] != (args.model or header["model"]):
                raise checkpoint.CheckpointError(f"{self.path} holds a {header['model']}, not a {args.model}")
            reconcile(args, header.get("settings", {"model": header["model"]}))
        self.comm = distributed.init() if args.distributed else None
        self.rank, self.world = (self.comm.rank, self.comm.size) if self.comm else (0, 1)
        if self.comm:
            args.device = self.comm.device(args.device)         # each rank on its own GPU of the machine
        self.leader = self.rank == 0                     # the rank that prints and writes files
        if args.batch_size % self.world:
            raise TrainingError(f"--batch-size {args.batch_size} does not split evenly over {self.world} ranks")
        minigrad.manual_seed(args.seed)
        dataset = load_data(args)
        if len(dataset) == 0:
            raise TrainingError(f"--data {args.data} holds no images")
        held = len(dataset) - dataset.split_point(args.held_out)
        if held < 1 or held > len(dataset) - 1:
            raise TrainingError(f"--held-out {args.held_out} holds out {held} of the {len(dataset)} images, leaving "
                                f"{len(dataset) - held} to train on; both parts need at least one image")
        self.train_set, self.test_set = dataset.split(args.held_out, seed=args.seed)
        _, channels, height, width = dataset.x.shape
        if height != width:
            raise TrainingError(f"images must be square for these models, got {height}x{width}")
        try:
            batch = min(args.batch_size // self.world, len(self.train_set))     # a batch holds at most the data
            memory.check_fits(args.model, batch, dataset.num_classes, channels, height,
                              f"--model {args.model} with --batch-size {args.batch_size} on {channels}x{height}x{width} "
                              f"images of {dataset.num_classes:,} classes (labels up to {dataset.num_classes - 1:,})")
            self.model_input = {"num_classes": dataset.num_classes, "in_channels": channels, "input_size": height}
            self.model = get_model(args.model, **self.model_input)
        except (ValueError, TypeError) as error:
            raise TrainingError(f"cannot build {args.model} for {channels}x{height}x{width} images: {error}") from None
        self.model.to(args.device)                 # before the optimizer and the averages are made
        if self.comm:
            self.comm.broadcast_parameters(self.model)          # every replica starts from rank 0's weights
        groups = optim.parameter_groups(self.model, args.lr, args.weight_decay)
        self.optimizer = (optim.SGD(groups, args.lr, momentum=args.momentum) if args.optimizer == "sgd"
                          else optim.Adam(groups, args.lr))
        self.scheduler = optim.lr_scheduler.StepLR(self.optimizer, args.lr_step, args.lr_gamma)
        self.polyak = optim.Polyak(self.model, args.polyak) if args.polyak else None
        transforms = ([data.RandomCrop(height, args.crop_padding)] if args.crop_padding else []) + \
                     ([data.RandomHorizontalFlip()] if args.flip else [])
        if self.comm:      # this rank's share of every combined batch (see minigrad.distributed.DistributedSampler)
            self.sampler = distributed.DistributedSampler(len(self.train_set), self.rank, self.world, seed=args.seed)
            self.loader = data.DataLoader(self.train_set, args.batch_size // self.world, sampler=self.sampler,
                                          transforms=transforms)
        else:
            self.loader = data.DataLoader(self.train_set, args.batch_size, shuffle=True, seed=args.seed,
                                          transforms=transforms)
        self.epoch, self.history = 0, []

    # ---- checkpoints -------------------------------------------------------------
    def save(self):
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()
        for position, state in opt["state"].items():
            for key, value in state.items():
                if hasattr(value, "shape"):
                    arrays[f"optimizer/{position}/{key}"] = value
        opt_scalars = {str(p): {k: v for k, v in s.items() if not hasattr(v, "shape")} for p, s in opt["state"].items()}
        if self.polyak:
            arrays.update({f"polyak/{k}": v for k, v in self.polyak.average.items()})
        header = {"model": self.args.model, "settings": {name: getattr(self.args, name) for name in SETTINGS},
                  "input": self.model_input,       # what the network was built for: models.classify rebuilds it
                  "epoch": self.epoch, "history": self.history,
                  "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
                  "scheduler": self.scheduler.state_dict(), "loader": self.loader.state_dict(),
                  "rng": generator().bit_generator.state,
                  "polyak": {"decay": self.polyak.decay, "updates": self.polyak.updates} if self.polyak else None}
        checkpoint.save(self.path, arrays, header)

    def resume(self):
        arrays, header = self.resumed
        try:
            self.model.load_state_dict(checkpoint.split(arrays, "model"))
        except ValueError as error:            # the same model built for other data (other classes, channels)
            raise checkpoint.CheckpointError(f"{self.path} does not fit this model and data: {error}") from None
        state = {}
        for name, value in checkpoint.split(arrays, "optimizer").items():
            position, key = name.split("/", 1)
            state.setdefault(int(position), {})[key] = value
        for position, scalars in header["optimizer"]["scalars"].items():
            state.setdefault(int(position), {}).update(scalars)
        self.optimizer.load_state_dict({"param_groups": header["optimizer"]["param_groups"], "state": state})
        self.scheduler.load_state_dict(header["scheduler"])
        self.loader.load_state_dict(header["loader"])
        generator().bit_generator.state = header["rng"]
        if self.polyak and header["polyak"]:
            self.polyak.load_state_dict({**header["polyak"], "average": checkpoint.split(arrays, "polyak")})
        self.epoch, self.history = header["epoch"], header["history"]

    # ---- the loop ---------------------------------------------------------------------
    def start_distributed_epoch(self):
        """The epoch's shares, dropout masks and augmentations follow from (seed, epoch, rank) alone, so a
        resumed job continues exactly and the ranks draw different masks."""
        self.sampler.set_epoch(self.epoch)
        seed = np.random.SeedSequence([self.args.seed, self.epoch, self.rank])
        minigrad.manual_seed(int(seed.generate_state(1)[0]))
        self.loader.rng = np.random.default_rng(seed)

    def train_epoch(self, bar):
        losses, correct, seen, start = [], 0, 0, time.perf_counter()
        if self.comm:
            self.start_distributed_epoch()
        for step, (x, y) in enumerate(self.loader, 1):
            outputs = self.model(minigrad.tensor(x, device=self.args.device))
            loss = training_loss(outputs, y)
            value = loss.item()
            if not math.isfinite(value):
                raise self.diverged(f"the loss became {value} at epoch {self.epoch + 1}, step {step}")
            self.optimizer.zero_grad()
            loss.backward()
            if self.comm:
                self.comm.allreduce_gradients(self.model.parameters())    # the same averaged step on every rank
            self.optimizer.step()
            if self.polyak:
                self.polyak.update()
            logits = outputs[0] if isinstance(outputs, tuple) else outputs
            correct += int((logits.numpy().argmax(1) == y).sum())
            seen += len(y)
            losses.append(value)
            if bar is not None:
                bar.update(len(y) * self.world)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{correct / seen:.3f}",
                                img_s=f"{seen * self.world / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        if self.comm:                                   # the epoch's figures over every rank's share
            loss_sum, steps, correct, seen = self.comm.sum([sum(losses), len(losses), correct, seen])
            return loss_sum / steps, correct / seen, seconds
        return float(np.mean(losses)), correct / seen, seconds

    def diverged(self, what):
        return TrainingError(f"{what}; stopped. The last good checkpoint (epoch {self.epoch}) is kept at {self.path}"
                             if self.epoch else f"{what}; stopped (no checkpoint yet). Try a smaller --lr", status=1)

    def check_weights(self):
        """Every parameter finite, before an epoch's weights are evaluated or checkpointed: the loss is
        checked before each step, so the update of an epoch's last step is checked only here."""
        bad = [name for name, p in self.model.named_parameters()
               if not bool(array_module(p.data).isfinite(p.data).all())]
        if bad:
            raise self.diverged(f"the weights became non-finite in epoch {self.epoch + 1} ({', '.join(bad[:3])}"
                                f"{', ...' if len(bad) > 3 else ''}), after the last loss was checked")

    def held_out_accuracy(self):
        if self.polyak:
            with self.polyak.applied():
                return evaluate(self.model, self.test_set, 256, self.args.device, self.comm)
        return evaluate(self.model, self.test_set, 256, self.args.device, self.comm)

    def say(self, text):
        if self.leader:
            print(text, flush=True)

    def run(self):
        args = self.args
        if args.resume:
            self.resume()
            self.say(f"resumed from {self.path} after epoch {self.epoch}")
        params = sum(p.numel() for p in self.model.parameters())
        self.say(f"{args.model}: {params:,} parameters; {len(self.train_set)} training and {len(self.test_set)} "
                 f"held-out images of {'x'.join(map(str, self.train_set.x.shape[1:]))}; seed {args.seed}"
                 + (f"; {self.world} ranks, {args.batch_size // self.world} images each per step" if self.comm else ""))
        start = time.perf_counter()
        while self.epoch < args.epochs:
            bar = None
            if not args.no_progress and self.leader:
                try:
                    from tqdm import tqdm
                    bar = tqdm(total=len(self.train_set), desc=f"epoch {self.epoch + 1}/{args.epochs}",
                               unit="img", leave=False)
                except ImportError:
                    pass
            try:
                loss, train_accuracy, seconds = self.train_epoch(bar)
            finally:
                if bar is not None:
                    bar.close()
            self.check_weights()
            self.scheduler.step()
            self.epoch += 1
            accuracy = self.held_out_accuracy()
            self.history.append({"epoch": self.epoch, "loss": loss, "train_accuracy": train_accuracy,
                                 "held_out_accuracy": accuracy, "seconds": seconds,
                                 "images_per_second": len(self.train_set) / seconds})
            if self.leader:
                self.save()
            self.say(f"epoch {self.epoch}: loss {loss:.4f}, train accuracy {train_accuracy:.4f}, "
                     f"held-out accuracy {accuracy:.4f}, {len(self.train_set) / seconds:.0f} images/s")
        return self.report(params, time.perf_counter() - start) if self.leader else None

    def report(self, params, seconds):
        final = self.history[-1]
        trained = sum(h["seconds"] for h in self.history)
        report = {"model": self.args.model, "data": self.args.data, "parameters": params, "epochs": self.epoch,
                  "held_out_accuracy": final["held_out_accuracy"], "training_seconds": trained,
                  "wall_seconds_this_run": seconds,
                  "images_per_second": len(self.train_set) * len(self.history) / trained, "history": self.history,
                  "settings": vars(self.args)}
        with open(os.path.join(self.args.out, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            epochs = [h["epoch"] for h in self.history]
            fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
            left.plot(epochs, [h["loss"] for h in self.history])
            left.set(xlabel="epoch", ylabel="training loss", title="loss")
            right.plot(epochs, [h["train_accuracy"] for h in self.history], label="training")
            right.plot(epochs, [h["held_out_accuracy"] for h in self.history], label="held out")
            right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
            right.legend()
            fig.suptitle(f"{self.args.model} on {self.args.data}")
            fig.tight_layout()
            fig.savefig(os.path.join(self.args.out, "curves.png"), dpi=100)
            plt.close(fig)
        except ImportError:
            pass
        print(f"{self.args.model}: {params:,} parameters, {trained:.1f} s of training, "
              f"{report['images_per_second']:.0f} images/s; report in {self.args.out}")
        print(f"held-out accuracy: {final['held_out_accuracy']:.4f}")
        return report


def describe_error(error):
    """(exit status, one-line message) for the errors a user can cause, None for anything else."""
    if isinstance(error, (TrainingError, data.DataError, checkpoint.CheckpointError, cli.CommandError)):
        return getattr(error, "status", 2), f"python -m models.train: error: {error}"
    if isinstance(error, MemoryError):
        return 2, (f"python -m models.train: error: out of memory: {error}; ask for less (a smaller --batch-size or "
                   "--image-size)")
    if isinstance(error, OSError):
        return 2, f"python -m models.train: error: {error.filename or ''}: {error.strerror}"
    return None


def train(args):
    os.makedirs(args.out, exist_ok=True)
    Trainer(args).run()
    return 0


def main(argv=None):
    try:
        args = parse_args(argv)
    except TrainingError as error:
        print(describe_error(error)[1], file=sys.stderr)
        return 2
    if args.distributed:                  # a rank that fails ends the whole job instead of leaving the rest waiting
        return distributed.run(lambda: train(args), describe_error)
    try:
        return train(args)
    except Exception as error:
        described = describe_error(error)
        if described is None:
            raise
        print(described[1], file=sys.stderr)
        return described[0]


if __name__ == "__main__":
    sys.exit(main())
