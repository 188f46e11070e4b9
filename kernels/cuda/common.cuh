// Shared by every .cu file of minigrad's CUDA backend.
//
// Each source is compiled once per floating type: the loader defines `real` (float or
// double) and KERNEL_SUFFIX (_f32 or _f64), so KERNEL(im2col) declares the extern "C"
// kernel im2col_f32 or im2col_f64.  Parameters use only `real`, `long long` and pointers
// to them (and `int*`, max-pool's argmax): the Python launcher converts every argument to one
// of these, so a kernel can never receive a 32-bit int where it reads 64 bits.
//
// Every kernel is "for each of `total` output elements": a grid-stride loop, correct for
// any grid and block size, with one thread owning each output element.  Backward passes
// gather (each input element sums what reaches it) instead of scattering with atomics,
// so results are deterministic.  No shared memory and no __syncthreads: that is also what
// lets tests run these same sources on the CPU, one thread after another (host_shim.h).
#ifndef MINIGRAD_COMMON_CUH
#define MINIGRAD_COMMON_CUH

#define MG_CAT2(a, b) a##b
#define MG_CAT(a, b) MG_CAT2(a, b)
#define KERNEL(name) extern "C" __global__ void MG_CAT(name, KERNEL_SUFFIX)

#define FOR_EACH_INDEX(i, total)                                                       \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ long long imin(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long imax(long long a, long long b) { return a > b ? a : b; }

// Floor division for a possibly negative numerator and a positive divisor.
__device__ __forceinline__ long long floor_div(long long a, long long b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The output positions o in [lo, hi) whose window (starting at o*stride - pad, `kernel` wide)
// covers input position `pos`: o*stride - pad <= pos < o*stride - pad + kernel.
__device__ __forceinline__ void windows_covering(long long pos, long long kernel, long long stride,
                                                 long long pad, long long out, long long* lo, long long* hi) {
    *lo = imax(0, floor_div(pos + pad - kernel, stride) + 1);
    *hi = imin(out, floor_div(pos + pad, stride) + 1);
}

// Products and sums rounded one at a time, never fused into one multiply-add (which NVRTC does by
// default): where a kernel must give the CPU's results bit for bit (sgd_update).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

#endif  // MINIGRAD_COMMON_CUH
