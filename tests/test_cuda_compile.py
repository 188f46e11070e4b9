"""Every CUDA source compiles for sm_80 and sm_90, in float32 and float64, and defines every kernel the
wrappers launch; no GPU needed.  NVRTC (what CuPy uses at run time; pip install cupy-cuda13x
nvidia-cuda-nvrtc) is required under MINIGRAD_REQUIRE_CUDA_CHECKS=1 (CI); nvcc is checked too where
it is installed, with every warning an error.
"""

import pytest

from kernels.cuda import compile as cuda_compile
from kernels.cuda import loader
from kernels.cuda.loader import MODULES, signatures

from conftest import require_tool

builds = [(module, dtype, arch) for module in MODULES for dtype in cuda_compile.DTYPES
          for arch in cuda_compile.ARCHITECTURES]


@pytest.mark.parametrize("module,dtype,arch", builds)
def test_nvrtc_builds_every_kernel(module, dtype, arch):
    require_tool(cuda_compile.nvrtc_module(), "NVRTC is not available (pip install cupy-cuda13x nvidia-cuda-nvrtc)")
    ptx = cuda_compile.compile_nvrtc(module, dtype, arch)
    assert f".target {arch}" in ptx
    assert not cuda_compile.missing_kernels(module, dtype, ptx)
    if module == "elementwise" and dtype == "float32":      # built as CuPy builds it: -ftz=true, so float32
        assert "add.ftz.f32" in ptx and "mul.ftz.f32" in ptx    # arithmetic flushes subnormals


@pytest.mark.parametrize("module,dtype,arch", builds)
def test_nvcc_builds_every_kernel_without_warnings(module, dtype, arch):
    if cuda_compile.nvcc_path() is None:
        pytest.skip("nvcc is not installed (the NVRTC check above is the one CI requires)")
    assert not cuda_compile.missing_kernels(module, dtype, cuda_compile.compile_nvcc(module, dtype, arch))


def test_the_sources_define_exactly_the_kernels_the_wrappers_launch():
    for module, names in MODULES.items():
        assert sorted(signatures(module)) == sorted(names), module


def test_kernel_parameters_are_real_long_long_or_pointers_to_them():
    """The launcher converts every argument to one of these (int* only for arrays: argmax); any other type
    would be passed wrongly, and a scalar int is refused when the source is parsed."""
    for module in MODULES:
        for name, parameters in signatures(module).items():
            assert parameters[0] == ("long long", "total"), name
            assert {kind for kind, _ in parameters} <= {"long long", "real", "real*", "long long*", "int*"}, name
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "source", lambda module: "KERNEL(bad)(long long total, int count, real* y) {}")
        with pytest.raises(ValueError, match=r"kernel bad has a parameter of an unsupported type: 'int count'"):
            signatures("pool")


def test_a_missing_kernel_is_reported():
    """missing_kernels must see a kernel that the PTX lacks (the checks above could not fail otherwise)."""
    ptx = ".visible .entry im2col_f32(\n.visible .entry col2im_f32(\n"
    assert cuda_compile.missing_kernels("conv", "float32", ptx) == {"conv_output_f32", "conv_grad_output_f32"}
