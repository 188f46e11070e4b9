"""Shared by every benchmark: warm-up plus median timing, and a header naming the machine,
the BLAS with its kernel, the thread counts and the library versions."""

from __future__ import annotations

import os
import platform
import statistics
import time

MAX_REPEAT = 1000


def measure(fn, repeat=5, warmup=1, sync=None, min_seconds=0.0):
    """Run fn `warmup` times untimed, then `repeat` times, and more (up to MAX_REPEAT in all) until the timed
    runs add up to min_seconds; return {median, min, max, runs} in seconds.  A short call gets many runs: a
    burst of another tenant's work then moves the median of a 25 ms call no more than that of a 2 s one.
    sync (for a GPU) is called before starting the clock and before stopping it, so queued work counts."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < repeat or (sum(times) < min_seconds and len(times) < MAX_REPEAT):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": len(times)}


def new_program_environment():
    """os.environ as a program that has not imported minigrad yet has it: without the thread settings that
    `import minigrad` and the benchmarks put there (here or in a parent process), which change how the thread
    pools wait."""
    import benchmarks
    import kernels
    return {k: v for k, v in os.environ.items() if k not in kernels.THREAD_SETTINGS and k not in benchmarks.SET_HERE}


def first_run_environment():
    """new_program_environment with minigrad's default kernels (kernels/tiered.py) unless the user chose
    some: for timing a fresh program's first output."""
    import benchmarks
    env = new_program_environment()
    if benchmarks.KERNELS_SET_HERE:
        env.pop("MINIGRAD_KERNELS", None)
    return env


def other_library_environment():
    """os.environ for a child process that times another library (PyTorch, ONNX Runtime) under its own
    defaults: without minigrad's settings (kernels.untouched_environment) nor the benchmarks' own."""
    import benchmarks
    import kernels
    return {k: v for k, v in kernels.untouched_environment().items() if k not in benchmarks.SET_HERE}


def all_blas_threads(fn):
    """fn with OpenBLAS on all of this machine's threads while it runs: numpy.matmul as a yardstick at its
    best, where minigrad runs OpenBLAS on one thread (kernels.blas_threads)."""
    import kernels

    def run(*args):
        with kernels.blas_threads(os.cpu_count() or 1):
            return fn(*args)
    return run


def fresh_python(code, env=None, timeout=3600):
    """Run `code` in a fresh Python process in the repository (its packages importable) and return the JSON
    value of its last line of output; a RuntimeError with its error output if it fails."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


TURN = "turn: "                 # the prefix of a line that a process taking turns answers with


def taking_turns(programs, keys, repeat=5, min_seconds=0.0, timeout=3600):
    """Time calls in live processes that take turns, one call at a time, whose goes first rotating: a slow
    phase of this shared machine, which lasts seconds, then falls on all of them alike.  The fair way to
    compare settings that only a fresh process can have (the import order): timed one after the other, two
    processes of the same program read up to 1.6x apart.  programs: {name: (code, env)}, each code ending in
    serve().  Per key, at least `repeat` turns, and as many as fill min_seconds of each one's calls (up to
    MAX_REPEAT).  Returns ({name: {key: [seconds of each turn]}}, {name: the JSON value it was ready with})."""
    import contextlib
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    processes, errors, buffers = {}, {}, {}
    try:
        for name, (code, env) in programs.items():
            errors[name] = tempfile.TemporaryFile()
            processes[name] = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=errors[name], env=env, cwd=Path(__file__).resolve().parents[1])
            buffers[name] = b""

        def answer(name):
            line, buffers[name] = _read_turn(processes[name], errors[name], buffers[name], timeout, name)
            return json.loads(line)

        ready = {name: answer(name) for name in programs}
        times = {name: {key: [] for key in keys} for name in programs}
        for key in keys:
            turn = 0
            while turn < repeat or (min(sum(t[key]) for t in times.values()) < min_seconds and turn < MAX_REPEAT):
                for name in in_rotation(list(programs), turn):
                    with contextlib.suppress(BrokenPipeError):      # if it ended, answer() says why
                        processes[name].stdin.write(f"{key}\n".encode())
                        processes[name].stdin.flush()
                    times[name][key].append(answer(name))
                turn += 1
        return times, ready
    finally:
        for name, process in processes.items():
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            errors[name].close()


def _read_turn(process, error_file, buffer, timeout, name):
    """(the next line `process` answered with, past TURN, and what it sent after), or a RuntimeError with
    its error output if it ended or fell silent."""
    import os
    import select
    while True:
        lines = buffer.split(b"\n")
        for i, line in enumerate(lines[:-1]):
            if line.startswith(TURN.encode()):
                return line[len(TURN):].decode(), b"\n".join(lines[i + 1:])
        buffer = lines[-1]                              # lines without the prefix: a library's own output
        if not select.select([process.stdout], [], [], timeout)[0]:
            process.kill()
            raise RuntimeError(f"{name}: no answer in {timeout} s")
        chunk = os.read(process.stdout.fileno(), 1 << 16)
        if not chunk:
            process.wait()
            error_file.seek(0)
            raise RuntimeError(f"{name} ended (exit status {process.returncode}):\n"
                               + error_file.read().decode(errors="replace")[-3000:])
        buffer += chunk


def serve(calls, ready=None, settle=True):
    """The side of taking_turns in the timed process: say ready (with a JSON value), then for each key read on
    stdin, run calls[key] and answer its seconds; settle: after an untimed call of the same, so that each
    call is timed as in a loop of itself, whatever the other process left in the caches."""
    import json
    import sys
    print(TURN + json.dumps(ready), flush=True)
    for line in sys.stdin:
        fn = calls[line.strip()]
        if settle:
            fn()
        start = time.perf_counter()
        fn()
        print(TURN + json.dumps(time.perf_counter() - start), flush=True)


def in_rotation(items, round_):
    """items in their order for round round_ of alternating fresh processes: rotated a place a round, so that
    none always runs first or after the same one (two cases with the same settings measured 0.94x apart in
    one fixed order and 1.00x in the other)."""
    items = list(items)
    shift = round_ % len(items) if items else 0
    return items[shift:] + items[:shift]


def measure_alternating(fns, repeat=5, warmup=1, settle=0):
    """Median seconds of each of several callables ({name: fn}), timed in turn round after round, so
    that a slow phase of this shared machine falls on all of them alike rather than on whichever was
    being measured at the time; their ratios are then comparable.  settle: untimed calls of the same
    callable right before each timed one, so that it is timed as in a loop of itself, whatever the
    previous callable left in the caches and thread pools.  Returns {name: median}."""
    times = {name: [] for name in fns}
    for round_ in range(warmup + repeat):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def paired(new, old, pairs, warmup=3, settle=False):
    """(new/old of each pair, new's seconds, old's seconds) over `pairs` interleaved pairs, which of the two runs
    first alternating, after `warmup` untimed pairs: a slow phase of this shared machine falls on both calls
    of a pair.  settle: each timed call right after an untimed one of the same callable, as in a loop of
    itself (whatever the other left in the caches)."""
    for _ in range(warmup):
        new()
        old()
    times = {new: [], old: []}
    for i in range(pairs):
        for fn in ((new, old) if i % 2 == 0 else (old, new)):
            if settle:
                fn()
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return [n / o for n, o in zip(times[new], times[old])], times[new], times[old]


def verdict(values, met, shown):
    """A target's verdict over one or several rounds: 'met' / 'not met' for one value, else
    'k of n rounds (lowest-highest)'.  met(value) -> bool; shown(value) -> its text."""
    if len(values) == 1:
        return "met" if met(values[0]) else "not met"
    return (f"{sum(map(met, values))} of {len(values)} rounds "
            f"({shown(min(values))}-{shown(max(values))})")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas_description():
    """'openblas 0.3.x, kernel SkylakeX, 2 threads', from threadpoolctl (the `bench` extra)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS: unknown (pip install threadpoolctl to see which kernel runs)"
    parts = []
    for p in threadpool_info():
        if p["user_api"] != "blas":
            continue
        owner = os.path.basename(os.path.dirname(p["filepath"])).removesuffix(".libs")   # numpy, scipy, ...
        parts.append(f"{p['internal_api']} {p['version']} ({owner}'s), kernel {p.get('architecture')}, "
                     f"{p['num_threads']} threads")
    # minigrad's GEMMs run on NumPy's BLAS; SciPy's, when Numba has imported SciPy, sits idle
    return "; ".join(parts) or "no BLAS found"


def machine_header():
    import numpy

    lines = [f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}",
             f"python {platform.python_version()}, numpy {numpy.__version__}, BLAS: {blas_description()}"]
    try:
        import numba
        lines.append(f"numba {numba.__version__}, {numba.get_num_threads()} threads "
                     f"(layer {numba.config.THREADING_LAYER})")
    except ImportError:
        lines.append("numba: not installed")
    try:                                        # the reference, when installed (read without importing it)
        from importlib.metadata import version
        lines.append(f"reference: torch {version('torch')}")
    except Exception:
        pass
    settings = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                           "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                                           "NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT") if k in os.environ}
    import benchmarks
    import kernels
    ours = [k for k in benchmarks.SET_HERE if k in settings]
    lines.append(f"environment: {settings or 'no BLAS/thread variables set'}"
                 + (f" ({', '.join(ours)}: the benchmarks' own, for their numpy.matmul yardsticks)" if ours else ""))
    lines.append(f"minigrad's CPU kernels: MINIGRAD_KERNELS={kernels.cpu_backend_name()}"
                 + (" (the benchmarks' own: the steady state, Numba's from the first call)"
                    if benchmarks.KERNELS_SET_HERE else ""))
    return "\n".join(lines)
