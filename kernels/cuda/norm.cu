// Batch normalisation on the GPU, deterministic: every reduction is split into fixed chunks whose partial
// results are combined in order (no atomics), so the same input gives the same bits.
//
// x is (N, C, P) in memory, P = H*W; a channel's M = N*P values are x[(b*C + ch)*P + q].  Its statistics
// come from chunks of `chunk` consecutive values (in (b, q) order): one thread per (channel, chunk) computes
// its chunk's mean and sum of squared deviations; one thread per channel combines the chunks in order
// (Chan et al.'s formula).  The elementwise passes are one thread per value.
#include "common.cuh"

__device__ __forceinline__ long long channel_value(long long ch, long long j, long long c, long long p) {
    return ((j / p) * c + ch) * p + j % p;            // the j-th value of channel ch, in (b, q) order
}

// partial_mean[ch * chunks + k], partial_m2[...]: chunk k of channel ch.  total = C * chunks.
KERNEL(batch_norm_chunk_statistics)(long long total, const real* __restrict__ x, long long c, long long p,
                                    long long count, long long chunk, real* __restrict__ partial_mean,
                                    real* __restrict__ partial_m2) {
    FOR_EACH_INDEX(index, total) {
        const long long chunks = total / c, ch = index / chunks, k = index % chunks;
        const long long first = k * chunk, last = imin(count, first + chunk);
        real sum = 0;
        for (long long j = first; j < last; ++j) sum += x[channel_value(ch, j, c, p)];
        const real mean = sum / (real)(last - first);
        real m2 = 0;
        for (long long j = first; j < last; ++j) {
            const real d = x[channel_value(ch, j, c, p)] - mean;
            m2 += d * d;
        }
        partial_mean[index] = mean;
        partial_m2[index] = m2;
    }
}

// mean[ch], var[ch] (biased) from the channel's chunks, combined in order.  total = C.
KERNEL(batch_norm_combine)(long long total, const real* __restrict__ partial_mean, const real* __restrict__ partial_m2,
                           long long chunks, long long count, long long chunk, real* __restrict__ mean,
                           real* __restrict__ var) {
    FOR_EACH_INDEX(ch, total) {
        real n = 0, m = 0, m2 = 0;
        for (long long k = 0; k < chunks; ++k) {
            const real nk = (real)(imin(count, (k + 1) * chunk) - k * chunk);
            const real mk = partial_mean[ch * chunks + k], delta = mk - m;
            const real both = n + nk;
            m += delta * nk / both;
            m2 += partial_m2[ch * chunks + k] + delta * delta * n * nk / both;
            n = both;
        }
        mean[ch] = m;
        var[ch] = m2 / n;
    }
}

// y = (x - mean[ch]) * scale[ch] + bias[ch], clamped at 0 with relu (NaN passes).  total = N * C * P.
// Centring first keeps y exact where the variance is tiny and scale huge.
KERNEL(batch_norm_apply)(long long total, const real* __restrict__ x, long long c, long long p,
                         const real* __restrict__ mean, const real* __restrict__ scale,
                         const real* __restrict__ bias, long long relu, real* __restrict__ y) {
    FOR_EACH_INDEX(index, total) {
        const long long ch = (index / p) % c;
        const real v = (x[index] - mean[ch]) * scale[ch] + bias[ch];
        y[index] = relu && v < (real)0 ? (real)0 : v;
    }
}

// Per (channel, chunk): the sums of g, of g * (x - mean) and of x - mean over the chunk, g masked where mask <= 0 when
// use_mask (a fused ReLU's output).  total = C * chunks.
KERNEL(batch_norm_chunk_gradients)(long long total, const real* __restrict__ grad_y, const real* __restrict__ mask,
                                   long long use_mask, const real* __restrict__ x, const real* __restrict__ mean,
                                   long long c, long long p, long long count, long long chunk,
                                   real* __restrict__ partial_sum, real* __restrict__ partial_product,
                                   real* __restrict__ partial_shift) {
    FOR_EACH_INDEX(index, total) {
        const long long chunks = total / c, ch = index / chunks, k = index % chunks;
        real sum = 0, product = 0, shift = 0;
        for (long long j = k * chunk; j < imin(count, (k + 1) * chunk); ++j) {
            const long long at = channel_value(ch, j, c, p);
            const real g = !use_mask || mask[at] > (real)0 ? grad_y[at] : (real)0;
            sum += g;
            product += g * (x[at] - mean[ch]);
            shift += x[at] - mean[ch];
        }
        partial_sum[index] = sum;
        partial_product[index] = product;
        partial_shift[index] = shift;
    }
}

// out[ch] = the sum of partial[ch * chunks + k] over k, in order.  total = C.
KERNEL(channel_sums)(long long total, const real* __restrict__ partial, long long chunks, real* __restrict__ out) {
    FOR_EACH_INDEX(ch, total) {
        real sum = 0;
        for (long long k = 0; k < chunks; ++k) sum += partial[ch * chunks + k];
        out[ch] = sum;
    }
}

// grad_x = (g - g_mean[ch]) * k1[ch] + (x - mean[ch]) * k2[ch] (g masked as above); without `depends` (running
// statistics, constants) g * k1[ch] only, so that x, even NaN, plays no part.  The differences come first: a
// constant g or x gives exact zeros however large k1 and k2.  total = N * C * P.
KERNEL(batch_norm_input_gradient)(long long total, const real* __restrict__ grad_y, const real* __restrict__ mask,
                                  long long use_mask, const real* __restrict__ x,
                                  const real* __restrict__ mean, const real* __restrict__ g_mean, long long c,
                                  long long p, const real* __restrict__ k1, const real* __restrict__ k2,
                                  long long depends, real* __restrict__ grad_x) {
    FOR_EACH_INDEX(index, total) {
        const long long ch = (index / p) % c;
        const real g = !use_mask || mask[index] > (real)0 ? grad_y[index] : (real)0;
        grad_x[index] = depends ? (g - g_mean[ch]) * k1[ch] + (x[index] - mean[ch]) * k2[ch] : g * k1[ch];
    }
}
