"""python -m benchmarks.peers: GoogLeNet in minigrad beside PyTorch eager, torch.compile and ONNX Runtime.

GoogLeNet (the paper's, 224x224, auxiliary heads in training) with the weights minigrad draws from seed 0:
the forward pass (eval mode, no gradients) and the training step (forward, the loss with 0.3 x each
auxiliary loss, backward, minigrad.optim.SGD's or torch.optim.SGD's step) at each --batches size, for
each peer:

    minigrad             minigrad, channels-last input, NumPy imported first (as most programs do); its
                         forward on the network frozen for inference (Module.freeze)
    minigrad-first       the same, minigrad imported before NumPy: the other import order
    minigrad-glibc       the same with glibc's malloc left at its defaults (MINIGRAD_ALLOCATOR_SETTINGS=off),
                         to show what keeping freed memory gains; only when asked for with --peers
    torch                PyTorch eager, NCHW
    torch-channels-last  PyTorch eager, channels_last
    torch-compile        torch.compile (inductor), channels_last; its compile time is given apart
    onnxruntime          ONNX Runtime on the CPU (forward only), the network as minigrad.onnx.export writes it

Every peer runs in fresh processes of its own, one per batch size; a round runs them batch after batch, the
peers alternating (this machine is shared and its speed drifts) in an order that rotates a place each round.
Each imports NumPy first, then its library; minigrad-first imports minigrad first. A figure is the median
over rounds of each round's median of --repeat timed runs, or of as many as fill --min-seconds (a short call
gets more), after WARM_UP untimed ones, minigrad on Numba's kernels from the first call (the steady state).
minigrad and its variants run as live processes that take turns call by call (timing.taking_turns), each
call after an untimed one of its own; a variant is given as the median over rounds of the median of each
turn's ratio to minigrad, which leaves out this machine's drift.
Each peer's batch-1 output is checked against minigrad's. "First output" is a fresh process's time from its
first line to GoogLeNet's first output at batch 1: imports, building (or loading) the network and the first
forward; minigrad's is timed with its default kernels (the reference kernels until loading Numba's pays,
kernels/tiered.py) and with MINIGRAD_KERNELS=numba. PyTorch and ONNX Runtime are optional (the
`bench-peers` extra); a peer whose package is missing is skipped with a message. The targets are the ones
minigrad sets itself (TARGETS); each row says whether it was met.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.timing import in_rotation

PEERS = {
    "minigrad": None, "minigrad-first": None, "minigrad-glibc": None, "torch": "torch", "torch-channels-last": "torch",
    "torch-compile": "torch", "onnxruntime": "onnxruntime",
}
ASKED_FOR_ONLY = ("minigrad-glibc",)
WARM_UP = 3


def _input(batch):
    """The same channels-last images for every peer (those benchmarks.googlenet times)."""
    from benchmarks.googlenet import _channels_last
    return _channels_last((batch, 3, 224, 224), 0)


def _timed(fn, repeat, min_seconds):
    """(seconds of the first call, the median ms of at least `repeat` calls, and of as many as fill min_seconds,
    after WARM_UP untimed ones, the first among them): the first call is where torch.compile compiles and
    Numba loads its cache."""
    from benchmarks.timing import measure
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    return first, measure(fn, repeat, warmup=WARM_UP - 1, min_seconds=min_seconds)["median"] * 1e3


def _minigrad_runner(task):
    import minigrad
    from benchmarks.__main__ import build_model, training_step
    net = build_model({"kind": "network", "name": "googlenet", "input_size": 224})
    # inference on a frozen twin (Module.freeze: read-only weights, whose Winograd transforms the kernels
    # keep; benchmarks.freeze), as ONNX Runtime holds its weights as constants; the training steps move net's
    inference = build_model({"kind": "network", "name": "googlenet", "input_size": 224}).freeze()

    def forward(batch):
        x = minigrad.Tensor(_input(batch))

        def run():
            with minigrad.no_grad():
                return inference(x).numpy()
        return run

    def step(batch):
        do_step = training_step(net, minigrad.Tensor(_input(batch)), np.arange(batch) % 1000)

        def run():
            net.train()
            do_step()
        return run
    return forward, step


def _torch_runner(task):
    import torch

    from benchmarks.__main__ import build_model, torch_loss
    from benchmarks.torch_reference import to_torch
    torch.set_num_threads(os.cpu_count() or 1)
    layout = torch.contiguous_format if task["peer"] == "torch" else torch.channels_last
    twin = to_torch(build_model({"kind": "network", "name": "googlenet", "input_size": 224})).to(memory_format=layout)
    optimizer = torch.optim.SGD(twin.parameters(), lr=1e-3)
    model = torch.compile(twin) if task["peer"] == "torch-compile" else twin    # compiles on its first calls

    def tensor(batch):
        return torch.from_numpy(np.ascontiguousarray(_input(batch))).contiguous(memory_format=layout)

    def forward(batch):
        x = tensor(batch)

        def run():
            twin.eval()
            with torch.no_grad():
                return model(x).numpy()
        return run

    def step(batch):
        x, labels = tensor(batch), torch.arange(batch) % 1000

        def run():
            twin.train()
            loss = torch_loss(model(x), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return run
    return forward, step


def _onnxruntime_runner(task):
    import onnxruntime

    def forward(batch):                        # a file per batch size: the export fixes the batch dimension
        session = onnxruntime.InferenceSession(task["onnx"][str(batch)], providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(_input(batch))}
        return lambda: session.run(None, feed)[0]
    return forward, None


def child(task):
    """One peer's measurements in this fresh process: {"times": {"forward 8": ms, ...}, "first_call_s": {...}},
    and with task["output"] "output": its batch-1 logits."""
    peer = task["peer"]
    runner = (_onnxruntime_runner if peer == "onnxruntime" else _torch_runner if peer.startswith("torch")
              else _minigrad_runner)
    forward, step = runner(task)
    result = {"times": {}, "first_call_s": {}}
    if task["output"]:                          # the output first, before any step has moved the weights
        start = time.perf_counter()
        result["output"] = np.asarray(forward(1)()).reshape(-1).tolist()
        result["first_call_s"]["first forward"] = time.perf_counter() - start
    for key in _keys(task):
        call = _call(forward, step, key)
        if call is not None:                    # ONNX Runtime has no training step
            result["first_call_s"][key], result["times"][key] = _timed(call, task["repeat"], task["min_seconds"])
    return result


FIRST_OUTPUT = {
    "minigrad": ("import minigrad, models\nnet = models.googlenet().eval()\nx = minigrad.Tensor(x)\n"
                 "with minigrad.no_grad():\n    net(x).numpy()"),
    "onnxruntime": ("import onnxruntime\ns = onnxruntime.InferenceSession({path!r}, providers=['CPUExecutionProvider'])\n"
                    "s.run(None, {{s.get_inputs()[0].name: x}})"),
}
# minigrad's default kernels (the reference kernels until Numba's pay), and Numba's from the first call
FIRST_OUTPUT_KERNELS = {"minigrad": None, "minigrad-numba": "numba"}
FIRST_OUTPUT_NAMES = {"minigrad": "minigrad (default kernels)", "minigrad-numba": "minigrad, MINIGRAD_KERNELS=numba"}


def _program(peer, body):
    """(code, environment) of a fresh process for one peer that runs `body`: NumPy imported first (minigrad-first:
    minigrad), then the peer's library.  PyTorch and ONNX Runtime run under their own thread defaults
    (timing.other_library_environment)."""
    from benchmarks.timing import new_program_environment, other_library_environment
    code = ("import minigrad\n" if peer == "minigrad-first" else "import numpy\n") + body
    if not peer.startswith("minigrad"):
        return code, other_library_environment()
    env = new_program_environment()
    if peer == "minigrad-glibc":
        env["MINIGRAD_ALLOCATOR_SETTINGS"] = "off"
    return code, env


def run_peer(task):
    """One peer's measurements (child) in a fresh process of its own."""
    from benchmarks.timing import fresh_python
    return fresh_python(*_program(task["peer"], f"import json\nfrom benchmarks.peers import child\n"
                                                f"print(json.dumps(child({task!r})))"))


def _keys(task):
    """The calls a task times, as "forward 8", "step 8", ..."""
    return [f"{kind} {batch}" for batch in task["batches"] for kind in ("forward", "step") if kind in task["tasks"]]


def _call(forward, step, key):
    """The call a key names, made by a runner's forward or step (None where the peer has none)."""
    kind, batch = key.split()
    make = forward if kind == "forward" else step
    return None if make is None else make(int(batch))


def serve(task):
    """A process of minigrad or a variant taking turns with the others (run_taking_turns): each call built and
    warmed up, then timed one at a time as the parent asks."""
    from benchmarks.timing import serve as serve_calls
    forward, step = _minigrad_runner(task)
    ready = {"output": np.asarray(forward(1)()).reshape(-1).tolist()} if task["output"] else {}
    calls = {}
    for key in _keys(task):
        calls[key] = _call(forward, step, key)
        for _ in range(WARM_UP):
            calls[key]()
    serve_calls(calls, ready)


def run_taking_turns(variants, task):
    """minigrad and its variants (the other import order, glibc's malloc) in live processes that take turns call
    by call (timing.taking_turns): ({peer: {"times": {key: median ms}, "output": ...}}, {variant: {key: the median
    of each turn's time over minigrad's}})."""
    from benchmarks.timing import taking_turns
    programs = {p: _program(p, f"from benchmarks.peers import serve\nserve({dict(task, peer=p)!r})") for p in variants}
    times, ready = taking_turns(programs, _keys(task), task["repeat"], task["min_seconds"])
    results = {p: {"times": {k: statistics.median(t) * 1e3 for k, t in times[p].items()}, **ready[p]} for p in variants}
    ratios = {p: {k: statistics.median(v / m for v, m in zip(t, times["minigrad"][k])) for k, t in times[p].items()}
              for p in variants if p != "minigrad"}
    return results, ratios


def first_output(peer, onnx_path):
    """Seconds from a fresh process's first line to GoogLeNet's first output at batch 1 (warm caches)."""
    from benchmarks.timing import first_run_environment, fresh_python, other_library_environment
    code = ("import time\nstart = time.perf_counter()\nimport numpy as np\n"
            "x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)\n"
            + FIRST_OUTPUT["minigrad" if peer in FIRST_OUTPUT_KERNELS else peer].format(path=onnx_path)
            + "\nprint(time.perf_counter() - start)")
    if peer not in FIRST_OUTPUT_KERNELS:
        return fresh_python(code, other_library_environment())
    env = first_run_environment()
    if FIRST_OUTPUT_KERNELS[peer]:
        env["MINIGRAD_KERNELS"] = FIRST_OUTPUT_KERNELS[peer]
    return fresh_python(code, env)


def export_onnx(folder, batches):
    """{batch: path} of GoogLeNet written by minigrad.onnx.export for each batch size."""
    import minigrad
    from benchmarks.__main__ import build_model
    net = build_model({"kind": "network", "name": "googlenet", "input_size": 224}).eval()
    paths = {}
    for batch in sorted({1, *batches}):
        paths[str(batch)] = os.path.join(folder, f"googlenet-{batch}.onnx")
        minigrad.onnx.export(net, minigrad.Tensor(_input(batch)), paths[str(batch)])
    return paths


# (what, the peers it compares, test, text): each target's rows, minigrad's time over the peers' best
TARGETS = {
    "forward": (("onnxruntime",), 0.9, "<= 0.9x ONNX Runtime"),
    "step": (("torch", "torch-channels-last", "torch-compile"), 0.8, "<= 0.8x the best of PyTorch eager and torch.compile"),
}


def parse_args(argv):
    from minigrad import cli
    parser = cli.Parser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=cli.name_list(list(PEERS), "peer"),
                        help=f"peers, comma-separated, of {', '.join(PEERS)} (default: all whose package is installed, "
                             f"except {', '.join(ASKED_FOR_ONLY)})")
    parser.add_argument("--batches", type=cli.integer_list(1, 64), default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    parser.add_argument("--tasks", type=cli.name_list(["forward", "step"], "task"), default=["forward", "step"],
                        help="forward, step or both (default)")
    parser.add_argument("--rounds", type=cli.integer(1, 100), default=3, help="rounds of every peer (default 3)")
    parser.add_argument("--repeat", type=cli.integer(1, 1000), default=5, help="timed runs per process (default 5)")
    parser.add_argument("--min-seconds", type=cli.real(0, 60), default=1.0,
                        help="time more runs than --repeat until they fill this many seconds (default 1.0): a "
                             "batch-1 forward gets about 40")
    parser.add_argument("--first-output-runs", type=cli.integer(0, 100), default=3,
                        help="fresh processes timed to their first output, per peer (default 3; 0 to skip)")
    args = parser.parse_args(argv)
    missing = [p for p in (args.peers or []) if PEERS[p] and not importlib.util.find_spec(PEERS[p])]
    if missing:
        raise cli.CommandError(f"--peers {','.join(missing)}: needs {', '.join(sorted({PEERS[p] for p in missing}))}, "
                               "which is not installed: pip install -e '.[bench-peers]'")
    return args


def schedule(peers, batches, round_):
    """The fresh processes of one round, as (peers, batch): batch after batch, the peers in rotation; minigrad and
    its variants (the other import order, glibc's malloc) together, as processes that take turns."""
    variants = tuple(p for p in peers if p.startswith("minigrad"))
    units = [variants] + [(p,) for p in peers if p not in variants]
    return [(unit, batch) for batch in batches for unit in in_rotation(units, round_)]


def _ratio_rows(times, peers, args):
    lines = ["| task | batch | " + " | ".join(peers) + " | minigrad / target peers' best | target | met |",
             "| --- | ---: |" + " ---: |" * len(peers) + " ---: | --- | --- |"]
    for kind in args.tasks:
        compared, limit, text = TARGETS[kind]
        for batch in args.batches:
            key = f"{kind} {batch}"
            medians = {p: statistics.median(times[p][key]) for p in peers if times[p].get(key)}
            best = min((medians[p] for p in compared if p in medians), default=None)
            ratio = medians["minigrad"] / best if best and "minigrad" in medians else None
            cells = [f"{medians[p]:.1f}" if p in medians else "" for p in peers]
            lines.append(f"| {kind} | {batch} | " + " | ".join(cells) + " | " +
                         (f"{ratio:.2f}x | {text} | {'yes' if ratio <= limit else 'no'} |" if ratio else " | | |"))
    return lines


def _main(argv):
    args = parse_args(argv)
    from benchmarks.timing import machine_header
    peers = args.peers or [p for p in PEERS if p not in ASKED_FOR_ONLY
                           and (not PEERS[p] or importlib.util.find_spec(PEERS[p]))]
    for skipped in [p for p in PEERS if p not in peers and p not in ASKED_FOR_ONLY and not args.peers]:
        print(f"skipping {skipped}: {PEERS[skipped]} is not installed (pip install -e '.[bench-peers]')", file=sys.stderr)
    if "minigrad" not in peers:
        peers.insert(0, "minigrad")                  # every ratio is minigrad's
    print(machine_header())
    print(f"GoogLeNet 224x224, float32; batches {','.join(map(str, args.batches))}; {args.rounds} rounds of fresh "
          f"processes, one per peer and batch, peers alternating in rotation; median of at least {args.repeat} runs, "
          f"and of as many as fill {args.min_seconds:g} s, after {WARM_UP} untimed\n")
    times = {p: {} for p in peers}
    outputs, compile_seconds, turn_ratios = {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_paths = export_onnx(folder, args.batches) if "onnxruntime" in peers else None
        for round_ in range(args.rounds):
            for group, batch in schedule(peers, args.batches, round_):
                task = {"batches": [batch], "tasks": args.tasks, "repeat": args.repeat, "min_seconds": args.min_seconds,
                        "onnx": onnx_paths, "output": batch == args.batches[0]}
                if len(group) == 1:
                    results, ratios = {group[0]: run_peer(dict(task, peer=group[0]))}, {}
                else:
                    results, ratios = run_taking_turns(group, task)
                for peer, result in results.items():
                    for key, ms in result["times"].items():
                        times[peer].setdefault(key, []).append(ms)
                    if "output" in result:
                        outputs[peer] = np.array(result["output"])
                    if peer == "torch-compile":
                        for key, seconds in result["first_call_s"].items():
                            compile_seconds.setdefault(key, []).append(seconds)
                    print(f"round {round_ + 1}: {peer}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["times"].items()),
                          file=sys.stderr, flush=True)
                for variant, by_key in ratios.items():
                    for key, ratio in by_key.items():
                        turn_ratios.setdefault(variant, {}).setdefault(key, []).append(ratio)
        first_peers = [*FIRST_OUTPUT_KERNELS, *(["onnxruntime"] if "onnxruntime" in peers else [])]
        first = {p: [] for p in first_peers if args.first_output_runs}
        for run in range(args.first_output_runs):                    # alternating, as the rounds above
            for peer in in_rotation(first_peers, run):
                first[peer].append(first_output(peer, onnx_paths and onnx_paths["1"]))
    print("\n".join(_ratio_rows(times, peers, args)))
    reference = outputs["minigrad"]
    print("\noutputs at batch 1 against minigrad's (largest difference over the largest logit):")
    for peer, output in outputs.items():
        if peer != "minigrad":
            error = float(np.abs(output - reference).max() / max(np.abs(reference).max(), 1e-12))
            print(f"  {peer}: {error:.1e} {'(agrees)' if error <= 2e-3 else '(DIFFERS)'}")
    for variant, what, target in (("minigrad-first", "import order (minigrad imported first over NumPy first)",
                                   " (target: within 10%)"),
                                  ("minigrad-glibc", "glibc's malloc at its defaults over minigrad's (freed memory "
                                   "kept)", "")):
        if variant in turn_ratios:
            print(f"\n{what}, processes taking turns call by call, the median over rounds of the median of each turn's "
                  "ratio: " + ", ".join(f"{key} {statistics.median(r):.2f}x" for key, r in turn_ratios[variant].items())
                  + target)
    if compile_seconds:
        print("\ntorch.compile, first call of each (where it compiles), s, median (largest, when its cache was "
              "cold): " + ", ".join(f"{key} {statistics.median(c):.1f} ({max(c):.1f})" for key, c in compile_seconds.items()))
    for peer, seconds in first.items():
        print(f"first output at batch 1, fresh process, {FIRST_OUTPUT_NAMES.get(peer, peer)}: "
              f"{statistics.median(seconds):.2f} s (runs {', '.join(f'{s:.2f}' for s in seconds)})"
              + ("; target <= 0.5 s" if peer == "minigrad" else ""))
    return 0


def main(argv=None):
    from minigrad import cli
    return cli.run("python -m benchmarks.peers", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
