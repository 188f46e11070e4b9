// Pooling on the GPU: one thread per output in forward, one per input pixel in backward.
//
// Windows are clipped to the input: padding is never read, never picked by max and receives
// no gradient.  The engine guarantees every window holds at least one real pixel (padding
// <= kernel/2, and in ceil mode the last window starts inside the input or its left padding).
// Backward passes gather over the windows covering each pixel (windows_covering), so they
// need the forward geometry and never race.
#include "common.cuh"

// Max over each window and where it was (flat index r*W + c in the plane): the first maximum in
// row-major order wins (strict >), and a NaN beats any number (the first NaN wins), as on the CPU.
KERNEL(max_pool2d_forward)(long long total, const real* __restrict__ x, long long h, long long w,
                         long long kh, long long kw, long long sh, long long sw, long long ph, long long pw,
                         long long oh, long long ow, real* __restrict__ y, int* __restrict__ argmax) {
    FOR_EACH_INDEX(index, total) {
        const long long ox = index % ow, oy = (index / ow) % oh, plane = index / (ow * oh);
        const real* in = x + plane * h * w;
        const long long r0 = imax(oy * sh - ph, 0), r1 = imin(oy * sh - ph + kh, h);
        const long long c0 = imax(ox * sw - pw, 0), c1 = imin(ox * sw - pw + kw, w);
        real best = in[r0 * w + c0];
        long long where = r0 * w + c0;
        for (long long r = r0; r < r1; ++r) {
            for (long long col = c0; col < c1; ++col) {
                const real v = in[r * w + col];
                if (v > best || (v != v && best == best)) {
                    best = v;
                    where = r * w + col;
                }
            }
        }
        y[index] = best;
        argmax[index] = (int)where;      // a plane has at most 2^28 pixels (minigrad/checks.py)
    }
}

// grad_x[pixel] = sum of grad_y over the windows covering the pixel that picked it.
KERNEL(max_pool2d_backward)(long long total, const real* __restrict__ grad_y, const int* __restrict__ argmax,
                          long long h, long long w, long long kh, long long kw, long long sh, long long sw,
                          long long ph, long long pw, long long oh, long long ow, real* __restrict__ grad_x) {
    FOR_EACH_INDEX(index, total) {
        const long long pixel = index % (h * w), plane = index / (h * w);
        const long long r = pixel / w, col = pixel % w;
        long long oy0, oy1, ox0, ox1;
        windows_covering(r, kh, sh, ph, oh, &oy0, &oy1);
        windows_covering(col, kw, sw, pw, ow, &ox0, &ox1);
        const long long base = plane * oh * ow;
        real sum = 0;
        for (long long oy = oy0; oy < oy1; ++oy)
            for (long long ox = ox0; ox < ox1; ++ox)
                if (argmax[base + oy * ow + ox] == pixel) sum += grad_y[base + oy * ow + ox];
        grad_x[index] = sum;
    }
}

// What an average window is divided by (PyTorch's and Caffe's rule): with count_include_pad the
// window clipped to the padded input (a ceil-mode window hanging past the padding counts less),
// else the window clipped to the input itself.
__device__ __forceinline__ long long window_count(long long o, long long kernel, long long stride, long long pad,
                                                  long long size, long long count_include_pad) {
    const long long start = o * stride - pad, end = imin(start + kernel, size + pad);
    return count_include_pad ? end - start : imin(end, size) - imax(start, 0);
}

KERNEL(avg_pool2d_forward)(long long total, const real* __restrict__ x, long long h, long long w,
                         long long kh, long long kw, long long sh, long long sw, long long ph, long long pw,
                         long long oh, long long ow, long long count_include_pad, real* __restrict__ y) {
    FOR_EACH_INDEX(index, total) {
        const long long ox = index % ow, oy = (index / ow) % oh, plane = index / (ow * oh);
        const real* in = x + plane * h * w;
        const long long r0 = imax(oy * sh - ph, 0), r1 = imin(oy * sh - ph + kh, h);
        const long long c0 = imax(ox * sw - pw, 0), c1 = imin(ox * sw - pw + kw, w);
        real sum = 0;
        for (long long r = r0; r < r1; ++r)
            for (long long col = c0; col < c1; ++col) sum += in[r * w + col];
        const long long count = window_count(oy, kh, sh, ph, h, count_include_pad) *
                                window_count(ox, kw, sw, pw, w, count_include_pad);
        y[index] = sum / (real)count;
    }
}

// grad_x[pixel] = sum over the windows covering the pixel of grad_y / that window's count.
KERNEL(avg_pool2d_backward)(long long total, const real* __restrict__ grad_y, long long h, long long w,
                          long long kh, long long kw, long long sh, long long sw, long long ph, long long pw,
                          long long oh, long long ow, long long count_include_pad, real* __restrict__ grad_x) {
    FOR_EACH_INDEX(index, total) {
        const long long pixel = index % (h * w), plane = index / (h * w);
        const long long r = pixel / w, col = pixel % w;
        long long oy0, oy1, ox0, ox1;
        windows_covering(r, kh, sh, ph, oh, &oy0, &oy1);
        windows_covering(col, kw, sw, pw, ow, &ox0, &ox1);
        const real* g = grad_y + plane * oh * ow;
        real sum = 0;
        for (long long oy = oy0; oy < oy1; ++oy) {
            const long long rows = window_count(oy, kh, sh, ph, h, count_include_pad);
            for (long long ox = ox0; ox < ox1; ++ox)
                sum += g[oy * ow + ox] / (real)(rows * window_count(ox, kw, sw, pw, w, count_include_pad));
        }
        grad_x[index] = sum;
    }
}
