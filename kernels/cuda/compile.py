"""Compile the CUDA sources ahead of time, with no GPU: NVRTC's low-level API (what cupy.RawModule
uses at run time, from the nvidia-cuda-nvrtc wheel) or nvcc where it is installed.

    python -m kernels.cuda.compile            # every module, both dtypes, sm_80 and sm_90

Each result is PTX; `entries(ptx)` lists the kernels it defines, so a check can see that every
kernel the wrappers launch (loader.MODULES) was built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .loader import DEVICE_OPTIONS, MODULES, defines, kernel_name, source

ARCHITECTURES = ("sm_80", "sm_90")       # A100 and H100, the datacenter GPUs of today
DTYPES = ("float32", "float64")


def nvrtc_module():
    """cupy.cuda.nvrtc when CuPy and an NVRTC library load (no GPU needed), else None."""
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:
        return None


def nvcc_path():
    return shutil.which("nvcc")


def compile_nvrtc(module: str, dtype, arch: str) -> str:
    nvrtc = nvrtc_module()
    program = nvrtc.createProgram(source(module), f"{module}.cu", [], [])
    options = [f"-D{k}={v}" for k, v in defines(dtype).items()] + [f"--gpu-architecture={arch}", "--std=c++17",
                                                                   *DEVICE_OPTIONS]
    try:
        try:
            nvrtc.compileProgram(program, options)
        except Exception as error:
            raise RuntimeError(f"NVRTC failed on {module}.cu ({dtype}, {arch}): {error}\n"
                               f"{nvrtc.getProgramLog(program)}") from None
        return nvrtc.getPTX(program).decode()
    finally:
        nvrtc.destroyProgram(program)


def compile_nvcc(module: str, dtype, arch: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        cu, ptx = Path(folder) / f"{module}.cu", Path(folder) / f"{module}.ptx"
        cu.write_text(source(module))
        command = [nvcc_path(), "-ptx", f"-arch={arch}", "-std=c++17", "-Werror=all-warnings", *DEVICE_OPTIONS,
                   *(f"-D{k}={v}" for k, v in defines(dtype).items()), "-o", str(ptx), str(cu)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nvcc failed on {module}.cu ({dtype}, {arch}):\n{result.stderr}")
        return ptx.read_text()


def entries(ptx: str) -> set:
    """The kernels (.entry functions) a PTX text defines."""
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


def missing_kernels(module: str, dtype, ptx: str) -> set:
    """The kernels the wrappers launch from this module that the PTX lacks."""
    return {kernel_name(name, dtype) for name in MODULES[module]} - entries(ptx)


def main():
    compilers = [(name, compile_fn) for name, compile_fn, found in
                 (("NVRTC", compile_nvrtc, nvrtc_module()), ("nvcc", compile_nvcc, nvcc_path())) if found]
    if not compilers:
        print("neither NVRTC (pip install cupy-cuda13x nvidia-cuda-nvrtc) nor nvcc is available", file=sys.stderr)
        return 2
    failed = False
    for name, compile_fn in compilers:
        for module in MODULES:
            for dtype in DTYPES:
                for arch in ARCHITECTURES:
                    try:
                        missing = missing_kernels(module, dtype, compile_fn(module, dtype, arch))
                    except RuntimeError as error:
                        print(error)
                        failed = True
                        continue
                    failed |= bool(missing)
                    print(f"{name:5} {module}.cu {dtype} {arch}: " + (f"MISSING {sorted(missing)}" if missing else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
