// Compiles minigrad's CUDA sources as plain C++ on the host, for tests on machines without a GPU.
//
// The CUDA qualifiers become nothing, and blockIdx/threadIdx/blockDim/gridDim become ordinary
// globals that a generated launch loop (kernels/cuda/host.py) sets before calling the kernel
// once per thread of every block, in turn.  That is exact for these kernels: each thread owns
// its output elements and no kernel uses shared memory or __syncthreads.
#pragma once
#include <math.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

// -ftz=true (what CuPy compiles with): float32 subnormals read as zero and results flushed to zero.  On x86
// the MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) modes do that, set around a float32
// launch and restored after.  Elsewhere the emulation keeps subnormals (a documented difference).
inline unsigned int mg_flush_subnormals(bool single_precision) {
#if defined(__x86_64__) || defined(__i386__)
    const unsigned int modes = _mm_getcsr();
    if (single_precision) _mm_setcsr(modes | 0x8040);
    return modes;
#else
    (void)single_precision;
    return 0;
#endif
}
inline void mg_restore_modes(unsigned int modes) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(modes);
#else
    (void)modes;
#endif
}

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

// CUDA's separately rounded arithmetic: plain C++ arithmetic here (g++ targets x86-64 without FMA).
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dsub_rn(double a, double b) { return a - b; }
