import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# No deadline anywhere: the machine is shared and timings vary.  "ci" is the default;
# HYPOTHESIS_PROFILE=thorough (or pytest --hypothesis-profile thorough) runs five times as many examples.
settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("thorough", parent=settings.get_profile("ci"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Numba's kernels from the first call (MINIGRAD_KERNELS=auto would start each process on the reference
# kernels and switch after a budget of work, kernels/tiered.py): no test's outcome then depends on which
# tests ran before it in the same worker.  tests/test_tiered.py tests the switch itself; MINIGRAD_KERNELS set
# by hand (reference, cuda-host) still picks the kernels of the whole run.
os.environ.setdefault("MINIGRAD_KERNELS", "numba")


def examples(n):
    """A test's example count: n under the "ci" profile, scaled by the active profile's max_examples
    against ci's (so five times n under "thorough").  A test's own @settings(max_examples=...)
    overrides the profile's, so the profile alone reaches only the tests that set no count (measured:
    with a plain 500 there, a test set to 20 still drew 20).  Read when a test module is collected,
    after pytest's --hypothesis-profile has been applied."""
    return max(1, n * settings.default.max_examples // settings.get_profile("ci").max_examples)


def require_torch():
    """PyTorch, or a skip; with MINIGRAD_REQUIRE_TORCH=1 a missing torch fails instead."""
    if os.environ.get("MINIGRAD_REQUIRE_TORCH") == "1":
        import torch  # noqa: F401  (an ImportError here fails the test, as CI wants)
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


def require_tool(found, reason, variable="MINIGRAD_REQUIRE_CUDA_CHECKS"):
    """Skip with `reason` when a tool is missing; with variable=1 (CI) fail instead."""
    if found:
        return
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1 requires it)")
    pytest.skip(reason)


def require_gpu():
    """A usable GPU and CuPy, or a skip; MINIGRAD_REQUIRE_GPU=1 (benchmarks.gpu_check) fails instead."""
    from minigrad.backend import cuda_available
    require_tool(cuda_available(), "no GPU: CuPy is missing or finds no CUDA device", "MINIGRAD_REQUIRE_GPU")


def pytest_collection_modifyitems(config, items):
    for item in items:                       # tests marked gpu skip (with the reason) on machines without one
        if item.get_closest_marker("gpu") is not None:
            from minigrad.backend import cuda_available
            if not cuda_available() and os.environ.get("MINIGRAD_REQUIRE_GPU") != "1":
                item.add_marker(pytest.mark.skip(reason="no GPU: CuPy is missing or finds no CUDA device"))


@pytest.fixture(scope="session")
def torch():
    module = require_torch()
    module.set_num_threads(1)
    return module


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Filled by tests/test_fuzz.py: how many examples ran and which exception messages were seen.
FUZZ_STATS = {"examples": 0, "messages": set(), "computed": {}}


def pytest_sessionfinish(session):
    """Under pytest-xdist each worker hands its fuzz counts to the controller, which prints the summary."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fuzz_stats"] = {"examples": FUZZ_STATS["examples"], "messages": sorted(FUZZ_STATS["messages"]),
                                "computed": FUZZ_STATS["computed"]}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    stats = getattr(node, "workeroutput", {}).get("fuzz_stats")
    if stats:
        FUZZ_STATS["examples"] += stats["examples"]
        FUZZ_STATS["messages"].update(stats["messages"])
        for op, n in stats["computed"].items():
            FUZZ_STATS["computed"][op] = FUZZ_STATS["computed"].get(op, 0) + n


def pytest_terminal_summary(terminalreporter):
    if FUZZ_STATS["examples"]:
        import re
        templates = {re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", m) for m in FUZZ_STATS["messages"]}
        terminalreporter.write_line(
            f"fuzz: {FUZZ_STATS['examples']} examples; {len(FUZZ_STATS['messages'])} distinct exception messages "
            f"({len(templates)} once numbers are masked); no other exception, crash or hang")
        computed = ", ".join(f"{op} {n}" for op, n in sorted(FUZZ_STATS["computed"].items()))
        terminalreporter.write_line(f"fuzz: examples that computed and matched the reference path: {computed}")
