"""python -m benchmarks.accuracy: the accuracy side of naive vs reduced, trained on real data with several seeds.

The paper's claim has two halves: 1x1 reductions cut the cost, and keep the accuracy.  `python -m benchmarks`
measures the first; this trains the compared networks under one recipe (RECIPE: the same optimizer, schedule,
epochs, augmentation and batch for every network and data set), on real data sets that Python packages ship
(minigrad.data.load_dataset), several seeds each, and puts held-out accuracy beside parameters and
multiply-adds.  Every network is the small GoogLeNet layout for 32x32 images (models.mini_googlenet): reduced
modules, naive modules, the same with batch normalisation or factorized 5x5s, and a plain network of 3x3
convolutions of the same depth whose widths make its multiply-adds match the reduced network's
(models.mini_plain_net: each module's output width times one scale, found by bisection, within 1%).  The
held-out set of a data set is the same for every network and seed: dataset.split(0.2, seed=0).

    python -m benchmarks.accuracy --quick          # 3 networks, digits and mnist-5k, 2 seeds: under 15 minutes
    python -m benchmarks.accuracy                  # every network and data set, 3 seeds

Writes results.json (one record per network, data set and seed, with its learning curve), results.csv and
plots (accuracy against multiply-adds and against parameters, learning curves) to --out.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
import time

import numpy as np

import minigrad
from minigrad import cli, data, optim

# name -> (models.MODELS name, what it is)
NETWORKS = {
    "reduced": ("mini-googlenet", "Inception modules with 1x1 reductions (Figure 2b)"),
    "naive": ("mini-googlenet-naive", "naive Inception modules (Figure 2a)"),
    "plain": ("mini-plain", "plain 3x3 convolutions, same depth, widths matched to reduced's multiply-adds"),
    "bn": ("mini-googlenet-bn", "reduced, with batch normalisation after every convolution"),
    "factorized": ("mini-googlenet-factorized", "reduced, each 5x5 as two 3x3 (Inception-v3's Figure 5)"),
}
# One recipe for every network: Adam (biases at twice the rate and without weight decay, as models.train groups
# them), the rate halved every 4 epochs, random crops of a 2-pixel padding, no Polyak averaging (the raw
# weights are scored).  Each network keeps the weights it draws, with its biases set to zero: the Caffe
# reference's biases of 0.2 (models' reference_init) held the reduced and plain networks at chance level for
# 5 epochs of SGD (lr 0.05, momentum 0.9) or Adam on the digits, and the naive one near it.
RECIPE = {"optimizer": "adam", "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-4, "lr_step": 4, "lr_gamma": 0.5,
          "crop_padding": 2, "epochs": 12, "image_size": 32, "held_out": 0.2, "biases": 0.0}
QUICK = {"models": ["reduced", "naive", "plain"], "data": ["digits", "mnist-5k"], "seeds": 2, "epochs": 8}


def parse_args(argv):
    parser = cli.Parser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=cli.name_list(list(NETWORKS), "network"),
                        help=f"networks, comma-separated, of {', '.join(NETWORKS)} (default all; --quick: "
                             f"{','.join(QUICK['models'])})")
    parser.add_argument("--data", type=cli.name_list(list(data.DATASETS), "data set"),
                        help=f"data sets, of {', '.join(data.DATASETS)} (default all; --quick: {','.join(QUICK['data'])})")
    parser.add_argument("--seeds", type=cli.integer(1, 100), help="seeds per network and data set, 0 to N-1 "
                        "(default 3; --quick: 2)")
    parser.add_argument("--epochs", type=cli.integer(1, 1000), help=f"epochs (default {RECIPE['epochs']}; --quick: "
                        f"{QUICK['epochs']})")
    parser.add_argument("--out", default="accuracy-results", help="folder for results.json, results.csv and plots")
    parser.add_argument("--quick", action="store_true", help="a smaller study: " + ", ".join(
        f"{k} {v if not isinstance(v, list) else ','.join(v)}" for k, v in QUICK.items()))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"models": list(NETWORKS), "data": list(data.DATASETS), "seeds": 3,
                                         "epochs": RECIPE["epochs"]}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    cli.writable_folder("--out", args.out)
    return args


def load_splits(names):
    """{data set: (training set, held-out set)}, every set checked loadable before any training."""
    splits = {}
    for name in names:
        try:
            dataset = data.load_dataset(name, RECIPE["image_size"])
        except data.DataError as error:
            raise cli.CommandError(f"--data {name}: {error}") from None
        splits[name] = dataset.split(RECIPE["held_out"], seed=0)
    return splits


def cost(network):
    """(parameters, multiply-adds per image) of a network at 32x32, from models.summary."""
    import models
    model = models.get_model(NETWORKS[network][0], num_classes=10, in_channels=1, input_size=RECIPE["image_size"])
    total = next(r for r in models.summary(model) if r["name"] == "total (inference)")
    return total["params"], total["multiply_adds"]


def train(network, train_set, held_out, seed, epochs, progress=None):
    """One network trained by RECIPE from `seed`: (held-out accuracy, training seconds, curve, the model)."""
    import models
    from models.train import evaluate
    minigrad.manual_seed(seed)
    model = models.get_model(NETWORKS[network][0], num_classes=10, in_channels=1, input_size=RECIPE["image_size"])
    r = RECIPE
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data[...] = r["biases"]
    optimizer = optim.Adam(optim.parameter_groups(model, r["lr"], r["weight_decay"]), r["lr"])
    schedule = optim.lr_scheduler.StepLR(optimizer, r["lr_step"], r["lr_gamma"])
    loader = data.DataLoader(train_set, r["batch_size"], shuffle=True, seed=seed,
                             transforms=[data.RandomCrop(r["image_size"], r["crop_padding"])])
    seconds, curve = 0.0, []
    for epoch in range(epochs):
        start, total_loss = time.perf_counter(), 0.0
        for x, y in loader:
            loss = models.training_loss(model(minigrad.Tensor(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            if progress is not None:
                progress.update(len(y))
        schedule.step()
        seconds += time.perf_counter() - start
        curve.append({"epoch": epoch + 1, "train_loss": total_loss / len(train_set),
                      "held_out_accuracy": evaluate(model, held_out, 256)})
        if not np.isfinite(total_loss):
            break                                        # diverged: the record says so by its loss
    return curve[-1]["held_out_accuracy"], seconds, curve, model


def run(args):
    splits = load_splits(args.data)
    costs = {network: cost(network) for network in args.models}
    work = sum(len(splits[d][0]) for d in args.data) * len(args.models) * args.seeds * args.epochs
    progress = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
            progress = tqdm(total=work, desc="training", unit="img", file=sys.stderr)
        except ImportError:
            pass
    records = []
    try:
        for dataset in args.data:
            train_set, held_out = splits[dataset]
            for network in args.models:
                for seed in range(args.seeds):
                    acc, seconds, curve, _ = train(network, train_set, held_out, seed, args.epochs, progress)
                    params, macs = costs[network]
                    records.append({"model": network, "architecture": NETWORKS[network][0], "dataset": dataset,
                                    "seed": seed, "accuracy": acc, "params": params, "multiply_adds": macs,
                                    "epochs": args.epochs, "train_seconds": seconds, "curve": curve})
    finally:
        if progress is not None:
            progress.close()
    return records


def summarize(records):
    """One row per (data set, network): the seeds' accuracies, mean and standard deviation, cost, time."""
    rows = {}
    for r in records:
        rows.setdefault((r["dataset"], r["model"]), []).append(r)
    table = []
    for (dataset, network), group in rows.items():
        accs = [g["accuracy"] for g in group]
        table.append({"dataset": dataset, "model": network, "params": group[0]["params"],
                      "multiply_adds": group[0]["multiply_adds"], "accuracies": accs, "mean": statistics.mean(accs),
                      "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                      "seconds_per_epoch": statistics.mean(g["train_seconds"] / g["epochs"] for g in group),
                      "seconds": sum(g["train_seconds"] for g in group)})
    return table


def format_table(table):
    lines = ["| data set | network | params | M mult-adds | held-out accuracy (mean +- std) | each seed | s/epoch | "
             "s in all |", "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for row in table:
        seeds = " ".join(f"{a:.4f}" for a in row["accuracies"])
        lines.append(f"| {row['dataset']} | {row['model']} | {row['params']:,} | {row['multiply_adds'] / 1e6:.1f} | "
                     f"{row['mean']:.4f} +- {row['std']:.4f} | {seeds} | {row['seconds_per_epoch']:.1f} | "
                     f"{row['seconds']:.0f} |")
    return "\n".join(lines)


def write(records, table, out):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", "seed", "accuracy", "params", "multiply_adds", "epochs", "train_seconds"])
        for r in records:
            writer.writerow([r["dataset"], r["model"], r["seed"], r["accuracy"], r["params"], r["multiply_adds"],
                             r["epochs"], f"{r['train_seconds']:.2f}"])
    try:
        plot(records, table, out)
    except ImportError:
        print("(no plots: matplotlib is not installed)", file=sys.stderr)


def plot(records, table, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in table))
    networks = list(dict.fromkeys(r["model"] for r in table))
    for key, label, name in (("multiply_adds", "multiply-adds per image", "accuracy_vs_multiply_adds.png"),
                             ("params", "parameters", "accuracy_vs_params.png")):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            for network in networks:
                row = next((r for r in table if r["dataset"] == dataset and r["model"] == network), None)
                if row is None:
                    continue
                ax.errorbar(row[key], row["mean"], yerr=row["std"], fmt="o", capsize=4, label=network)
                ax.scatter([row[key]] * len(row["accuracies"]), row["accuracies"], s=8, alpha=0.4)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("held-out accuracy")
            ax.set_title(dataset)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=120)
        plt.close(fig)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for network in networks:
            curves = [r["curve"] for r in records if r["dataset"] == dataset and r["model"] == network]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            mean = [statistics.mean(c[i]["held_out_accuracy"] for c in curves) for i in range(length)]
            ax.plot(range(1, length + 1), mean, marker=".", label=network)
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out accuracy (mean over seeds)")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "learning_curves.png"), dpi=120)
    plt.close(fig)


def main(argv=None):
    return cli.run("python -m benchmarks.accuracy", _main, argv)


def _main(argv):
    from benchmarks.timing import machine_header
    args = parse_args(argv)
    print(machine_header())
    print(f"networks: {', '.join(f'{n} ({NETWORKS[n][1]})' for n in args.models)}")
    print(f"data sets: {', '.join(f'{d} ({data.DATASETS[d][1]})' for d in args.data)}; held out: "
          f"{RECIPE['held_out']:.0%}, the same for every network and seed")
    recipe = {**RECIPE, "epochs": args.epochs}
    print(f"recipe: {', '.join(f'{k} {v}' for k, v in recipe.items())}; seeds 0-{args.seeds - 1}", flush=True)
    start = time.perf_counter()
    records = run(args)
    table = summarize(records)
    write(records, table, args.out)
    print("\n" + format_table(table))
    print(f"\n{len(records)} trainings in {time.perf_counter() - start:.0f} s; results.json, results.csv and plots in "
          f"{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
