// ReLU, local response normalisation and the channel copies behind concat/split, on the GPU.
// One thread per output element; arrays are contiguous, LRN's and the copies' viewed as (N, C, P).
#include "common.cuh"

KERNEL(relu_forward)(long long total, const real* __restrict__ x, real* __restrict__ y) {
    FOR_EACH_INDEX(index, total) {
        const real v = x[index];
        y[index] = v < (real)0 ? (real)0 : v;          // NaN passes through, as np.maximum(x, 0) does
    }
}

// The gradient passes where the output is positive.
KERNEL(relu_backward)(long long total, const real* __restrict__ grad_y, const real* __restrict__ y,
                      real* __restrict__ grad_x) {
    FOR_EACH_INDEX(index, total) {
        grad_x[index] = y[index] > (real)0 ? grad_y[index] : (real)0;
    }
}

// scale = k + alpha/size * (sum of x^2 over channels ch - size/2 .. ch + (size-1)/2), y = x * scale^-beta.
// The window is clipped to the channels, so even a huge size costs at most C steps.
KERNEL(lrn_forward)(long long total, const real* __restrict__ x, long long c, long long p, long long size,
                    real alpha, real beta, real k, real* __restrict__ y, real* __restrict__ scale) {
    FOR_EACH_INDEX(index, total) {
        const long long q = index % p, ch = (index / p) % c, b = index / (p * c);
        const real* column = x + b * c * p + q;                // channel j of this pixel is column[j * p]
        const long long first = imax(0, ch - size / 2), last = imin(c - 1, ch + (size - 1) / 2);
        real sum = 0;
        for (long long j = first; j <= last; ++j) sum += column[j * p] * column[j * p];
        const real s = k + alpha / (real)size * sum;
        scale[index] = s;
        y[index] = x[index] * pow(s, -beta);
    }
}

// grad_x = grad_y * scale^-beta - 2*alpha*beta/size * x * (sum of grad_y*y/scale over every channel j
// whose window holds ch: ch - (size-1)/2 <= j <= ch + size/2).
KERNEL(lrn_backward)(long long total, const real* __restrict__ x, const real* __restrict__ y,
                     const real* __restrict__ scale, const real* __restrict__ grad_y, long long c, long long p,
                     long long size, real alpha, real beta, real k, real* __restrict__ grad_x) {
    FOR_EACH_INDEX(index, total) {
        const long long q = index % p, ch = (index / p) % c, b = index / (p * c);
        const long long offset = b * c * p + q;
        const long long first = imax(0, ch - (size - 1) / 2), last = imin(c - 1, ch + size / 2);
        real spread = 0;
        for (long long j = first; j <= last; ++j) {
            const long long at = offset + j * p;
            spread += grad_y[at] * y[at] / scale[at];
        }
        grad_x[index] = grad_y[index] * pow(scale[index], -beta)
                        - (real)2 * alpha * beta / (real)size * x[index] * spread;
    }
}

// dst[b, dst_offset + i, :] = src[b, src_offset + i, :] for i < channels (one Inception branch into
// or out of the merged tensor).  total = N * channels * P.
KERNEL(copy_channels)(long long total, const real* __restrict__ src, long long src_c, long long src_offset,
                      long long channels, long long p, real* __restrict__ dst, long long dst_c,
                      long long dst_offset) {
    FOR_EACH_INDEX(index, total) {
        const long long q = index % p, i = (index / p) % channels, b = index / (p * channels);
        dst[(b * dst_c + dst_offset + i) * p + q] = src[(b * src_c + src_offset + i) * p + q];
    }
}

// out = a + b.  out may be a itself: add_n sums k arrays as a + b, then out + c, and so on.
KERNEL(add_pair)(long long total, const real* a, const real* __restrict__ b, real* out) {
    FOR_EACH_INDEX(index, total) {
        out[index] = a[index] + b[index];
    }
}

// One SGD step in place, kernels.reference.sgd_update's rule and roundings.  Without momentum,
// `buffer` is never read or written (the wrapper passes param there).
KERNEL(sgd_update)(long long total, real* __restrict__ param, const real* __restrict__ grad, real* buffer, real lr,
                   real momentum, real weight_decay, long long use_momentum, long long nesterov,
                   long long first_step) {
    FOR_EACH_INDEX(index, total) {
        real d = grad[index];
        if (weight_decay != 0) d = add_rn(mul_rn(param[index], weight_decay), d);
        if (use_momentum) {
            const real b = first_step ? d : add_rn(mul_rn(buffer[index], momentum), d);
            buffer[index] = b;
            d = nesterov ? add_rn(d, mul_rn(momentum, b)) : b;
        }
        param[index] = sub_rn(param[index], mul_rn(d, lr));
    }
}
