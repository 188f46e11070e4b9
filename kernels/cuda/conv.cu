// Convolution on the GPU: im2col / col2im around one cuBLAS GEMM per chunk of images.
//
// Columns are laid out as (C*KH*KW, N*OH*OW): one row per weight of a filter, one column per
// output pixel of every image in the chunk, so the whole chunk is a single GEMM
//     y2 (O, N*OH*OW) = weight (O, C*KH*KW) @ cols
// and conv_output moves y2 into the NCHW output while adding the bias (and applying ReLU).
// Backward: conv_grad_output brings grad_y back to (O, N*OH*OW) (masked by ReLU if fused),
// grad_weight = grad_y2 @ cols^T, grad_cols = weight^T @ grad_y2, then col2im.
#include "common.cuh"

// cols[(ch*KH + i)*KW + j, b*OH*OW + oy*OW + ox] = x[b, ch, oy*SH - PH + i, ox*SW - PW + j] (0 in the padding).
KERNEL(im2col)(long long total, const real* __restrict__ x, long long n, long long c, long long h, long long w,
               long long kh, long long kw, long long sh, long long sw, long long ph, long long pw,
               long long oh, long long ow, real* __restrict__ cols) {
    const long long pixels = n * oh * ow;
    FOR_EACH_INDEX(index, total) {
        const long long column = index % pixels, row = index / pixels;
        const long long j = row % kw, i = (row / kw) % kh, ch = row / (kw * kh);
        const long long ox = column % ow, oy = (column / ow) % oh, b = column / (ow * oh);
        const long long y = oy * sh - ph + i, xx = ox * sw - pw + j;
        cols[index] = (y >= 0 && y < h && xx >= 0 && xx < w) ? x[((b * c + ch) * h + y) * w + xx] : (real)0;
    }
}

// The transpose of im2col, as a gather: each input pixel sums the column entries that read it,
// visiting only the windows that cover it (no atomics, a fixed order: deterministic).
KERNEL(col2im)(long long total, const real* __restrict__ cols, long long n, long long c, long long h, long long w,
               long long kh, long long kw, long long sh, long long sw, long long ph, long long pw,
               long long oh, long long ow, real* __restrict__ x) {
    const long long pixels = n * oh * ow;
    FOR_EACH_INDEX(index, total) {
        const long long xx = index % w, y = (index / w) % h, ch = (index / (w * h)) % c, b = index / (w * h * c);
        long long oy0, oy1, ox0, ox1;
        windows_covering(y, kh, sh, ph, oh, &oy0, &oy1);
        windows_covering(xx, kw, sw, pw, ow, &ox0, &ox1);
        real sum = 0;
        for (long long oy = oy0; oy < oy1; ++oy) {
            const long long i = y + ph - oy * sh;                  // the kernel row that lands on y
            for (long long ox = ox0; ox < ox1; ++ox) {
                const long long j = xx + pw - ox * sw;
                sum += cols[((ch * kh + i) * kw + j) * pixels + (b * oh + oy) * ow + ox];
            }
        }
        x[index] = sum;
    }
}

// y[b, o, p] = act(y2[o, b*P + p] + bias[o]): the GEMM's (O, N*P) result moved to NCHW in the
// same pass that adds the bias and (relu != 0) clamps at zero.  NaN passes through, as in ReLU.
KERNEL(conv_output)(long long total, const real* __restrict__ y2, const real* __restrict__ bias, long long has_bias,
                    long long relu, long long n, long long o, long long p, real* __restrict__ y) {
    FOR_EACH_INDEX(index, total) {
        const long long q = index % p, oc = (index / p) % o, b = index / (p * o);
        real v = y2[(oc * n + b) * p + q];
        if (has_bias) v += bias[oc];
        y[index] = (relu && v < (real)0) ? (real)0 : v;
    }
}

// grad_y2[o, b*P + p] = grad_y[b, o, p], zeroed where a fused ReLU's output y was not positive.
KERNEL(conv_grad_output)(long long total, const real* __restrict__ grad_y, const real* __restrict__ y,
                         long long relu, long long n, long long o, long long p, real* __restrict__ grad_y2) {
    FOR_EACH_INDEX(index, total) {
        const long long q = index % p, oc = (index / p) % o, b = index / (p * o);
        grad_y2[(oc * n + b) * p + q] = (relu && !(y[index] > (real)0)) ? (real)0 : grad_y[index];
    }
}
