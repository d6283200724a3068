#include "tensor_kernels.h"
#include <string.h>

void tk_im2col3x3(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *col) {
    const ptrdiff_t k = 9 * c;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            for (ptrdiff_t x = 0; x < w; x++) {
                float *row = col + ((img * h + y) * w + x) * k;
                for (ptrdiff_t ky = 0; ky < 3; ky++) {
                    float *at = row + ky * 3 * c;
                    const ptrdiff_t sy = y + ky - 1;
                    if (sy < 0 || sy >= h) { memset(at, 0, sizeof(float) * 3 * c); continue; }
                    // The three taps of one kernel row are adjacent in the image row.
                    const ptrdiff_t first = x == 0 ? 1 : 0, last = x == w - 1 ? 1 : 2;
                    if (first) memset(at, 0, sizeof(float) * c);
                    if (last == 1) memset(at + 2 * c, 0, sizeof(float) * c);
                    memcpy(at + first * c, src + ((img * h + sy) * w + x - 1 + first) * c,
                           sizeof(float) * (last - first + 1) * c);
                }
            }
        }
    }
}

void tk_col2im3x3_add(const float *col, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *dx) {
    const ptrdiff_t k = 9 * c;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            for (ptrdiff_t x = 0; x < w; x++) {
                const float *row = col + ((img * h + y) * w + x) * k;
                for (ptrdiff_t ky = 0; ky < 3; ky++) {
                    const ptrdiff_t sy = y + ky - 1;
                    if (sy < 0 || sy >= h) continue;
                    const ptrdiff_t first = x == 0 ? 1 : 0, last = x == w - 1 ? 1 : 2;
                    const float *s = row + (ky * 3 + first) * c;
                    float *d = dx + ((img * h + sy) * w + x - 1 + first) * c;
                    const ptrdiff_t count = (last - first + 1) * c;
                    for (ptrdiff_t j = 0; j < count; j++) d[j] += s[j];
                }
            }
        }
    }
}

void tk_relu(const float *x, float *y, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dy is read whether or not it passes, so the select compiles to a vector compare and
   mask. Loaded only on the taken side, it was a scalar branch on each output's sign, a
   coin flip for the predictor, and 9% of a student's training time (perf). The values
   are the same either way. */
void tk_relu_backward(const float *restrict out, const float *restrict dy, float *restrict dx, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) {
        const float g = dy[i];
        dx[i] = out[i] > 0.0f ? g : 0.0f;
    }
}

void tk_maxpool2(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *out, int64_t *argmax) {
    const ptrdiff_t oh = h / 2, ow = w / 2;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < oh; y++) {
            for (ptrdiff_t x = 0; x < ow; x++) {
                const ptrdiff_t p0 = ((img * h + 2 * y) * w + 2 * x) * c, p1 = p0 + c, p2 = p0 + w * c, p3 = p2 + c;
                const ptrdiff_t o = ((img * oh + y) * ow + x) * c;
                if (argmax) {
                    for (ptrdiff_t ch = 0; ch < c; ch++) {
                        float best = src[p0 + ch]; int64_t bi = p0 + ch;
                        if (src[p1 + ch] > best) { best = src[p1 + ch]; bi = p1 + ch; }
                        if (src[p2 + ch] > best) { best = src[p2 + ch]; bi = p2 + ch; }
                        if (src[p3 + ch] > best) { best = src[p3 + ch]; bi = p3 + ch; }
                        out[o + ch] = best;
                        argmax[o + ch] = bi;
                    }
                } else {
                    for (ptrdiff_t ch = 0; ch < c; ch++) {
                        float a = src[p0 + ch] > src[p1 + ch] ? src[p0 + ch] : src[p1 + ch];
                        float b = src[p2 + ch] > src[p3 + ch] ? src[p2 + ch] : src[p3 + ch];
                        out[o + ch] = a > b ? a : b;
                    }
                }
            }
        }
    }
}

void tk_maxpool2_backward(const float *dy, const int64_t *argmax, ptrdiff_t count, float *dx) {
    for (ptrdiff_t i = 0; i < count; i++) dx[argmax[i]] += dy[i];
}

void tk_fill_rows(float *out, ptrdiff_t rows, const float *row, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < rows; i++) memcpy(out + i * n, row, sizeof(float) * n);
}

void tk_sum_rows(const float *m, ptrdiff_t rows, ptrdiff_t n, float *acc) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        const float *r = m + i * n;
        for (ptrdiff_t j = 0; j < n; j++) acc[j] += r[j];
    }
}

void tk_gemm_rows(const float *a, ptrdiff_t m, ptrdiff_t k, const float *b, ptrdiff_t n, float *c) {
    ptrdiff_t i = 0;
    /* Four rows at a time share each load of b's row; every row still adds its
       products in p order, one lane per output column. */
    for (; i + 4 <= m; i += 4) {
        float *c0 = c + i * n, *c1 = c0 + n, *c2 = c1 + n, *c3 = c2 + n;
        const float *a0 = a + i * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;
        for (ptrdiff_t p = 0; p < k; p++) {
            const float *bp = b + p * n;
            const float s0 = a0[p], s1 = a1[p], s2 = a2[p], s3 = a3[p];
            for (ptrdiff_t j = 0; j < n; j++) {
                const float v = bp[j];
                c0[j] += s0 * v;
                c1[j] += s1 * v;
                c2[j] += s2 * v;
                c3[j] += s3 * v;
            }
        }
    }
    for (; i < m; i++) {
        float *ci = c + i * n;
        const float *ai = a + i * k;
        for (ptrdiff_t p = 0; p < k; p++) {
            const float *bp = b + p * n;
            const float s = ai[p];
            for (ptrdiff_t j = 0; j < n; j++) ci[j] += s * bp[j];
        }
    }
}

/* Channels are handled in blocks so that the double accumulators live on the stack
   whatever the width; within a block every row adds its channels in one vector loop.

   The three kernels are compiled for AVX2 and for the SSE2 baseline, and the loader
   picks AVX2 where the CPU has it (target_clones; an AVX-512 clone was no faster at 16
   and 32 channels). On SSE2 their hottest instructions converted floats to doubles two
   at a time. Every clone computes the same bits: each channel still sums its rows in
   row order (a wider vector only takes more channels at once), a float-by-float product
   in double is exact, and contraction into FMA, which would round once where the code
   rounds twice, stays off here even for clones whose target has FMA. */
#define BN_BLOCK 256
#define BN_CLONES __attribute__((target_clones("avx2", "default")))
#pragma clang fp contract(off)

BN_CLONES
void tk_bn_statistics(const float *x, ptrdiff_t rows, ptrdiff_t c, float *mean, float *var) {
    double acc[BN_BLOCK], sq[BN_BLOCK];
    const double n = (double)(rows > 0 ? rows : 1);
    for (ptrdiff_t c0 = 0; c0 < c; c0 += BN_BLOCK) {
        const ptrdiff_t nb = c - c0 < BN_BLOCK ? c - c0 : BN_BLOCK;
        for (ptrdiff_t j = 0; j < nb; j++) { acc[j] = 0; sq[j] = 0; }
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *r = x + i * c + c0;
            for (ptrdiff_t j = 0; j < nb; j++) acc[j] += r[j];
        }
        for (ptrdiff_t j = 0; j < nb; j++) { acc[j] /= n; mean[c0 + j] = (float)acc[j]; }
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *r = x + i * c + c0;
            for (ptrdiff_t j = 0; j < nb; j++) { const double d = r[j] - acc[j]; sq[j] += d * d; }
        }
        for (ptrdiff_t j = 0; j < nb; j++) var[c0 + j] = (float)(sq[j] / n);
    }
}

BN_CLONES
void tk_bn_forward(const float *x, ptrdiff_t rows, ptrdiff_t c, const float *mean, const float *invstd,
                   const float *gamma, const float *beta, float *xhat, float *y) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        const float *r = x + i * c;
        float *o = y + i * c;
        if (xhat) {
            float *h = xhat + i * c;
            for (ptrdiff_t j = 0; j < c; j++) { const float v = (r[j] - mean[j]) * invstd[j]; h[j] = v; o[j] = gamma[j] * v + beta[j]; }
        } else {
            for (ptrdiff_t j = 0; j < c; j++) o[j] = gamma[j] * ((r[j] - mean[j]) * invstd[j]) + beta[j];
        }
    }
}

BN_CLONES
void tk_bn_backward(const float *dy, const float *xhat, ptrdiff_t rows, ptrdiff_t c, const float *gamma,
                    const float *invstd, float *dgamma, float *dbeta, float *dx) {
    double sdy[BN_BLOCK], sdyx[BN_BLOCK];
    float k1[BN_BLOCK], k2[BN_BLOCK], k3[BN_BLOCK];
    const double n = (double)(rows > 0 ? rows : 1);
    for (ptrdiff_t c0 = 0; c0 < c; c0 += BN_BLOCK) {
        const ptrdiff_t nb = c - c0 < BN_BLOCK ? c - c0 : BN_BLOCK;
        for (ptrdiff_t j = 0; j < nb; j++) { sdy[j] = 0; sdyx[j] = 0; }
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *g = dy + i * c + c0, *h = xhat + i * c + c0;
            for (ptrdiff_t j = 0; j < nb; j++) { sdy[j] += g[j]; sdyx[j] += (double)g[j] * h[j]; }
        }
        for (ptrdiff_t j = 0; j < nb; j++) {
            dgamma[c0 + j] += (float)sdyx[j];
            dbeta[c0 + j] += (float)sdy[j];
            /* dx = k1 * dy - k2 - k3 * xhat */
            k1[j] = gamma[c0 + j] * invstd[c0 + j];
            k2[j] = (float)(k1[j] * sdy[j] / n);
            k3[j] = (float)(k1[j] * sdyx[j] / n);
        }
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *g = dy + i * c + c0, *h = xhat + i * c + c0;
            float *o = dx + i * c + c0;
            for (ptrdiff_t j = 0; j < nb; j++) o[j] = k1[j] * g[j] - k2[j] - k3[j] * h[j];
        }
    }
}
