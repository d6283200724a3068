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

void tk_relu_backward(const float *out, const float *dy, float *dx, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) dx[i] = out[i] > 0.0f ? dy[i] : 0.0f;
}

void tk_maxpool2(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *out) {
    const ptrdiff_t oh = h / 2, ow = w / 2;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < oh; y++) {
            for (ptrdiff_t x = 0; x < ow; x++) {
                const float *p0 = src + ((img * h + 2 * y) * w + 2 * x) * c, *p1 = p0 + c, *p2 = p0 + w * c, *p3 = p2 + c;
                float *o = out + ((img * oh + y) * ow + x) * c;
                for (ptrdiff_t ch = 0; ch < c; ch++) {
                    const float a = p0[ch] > p1[ch] ? p0[ch] : p1[ch];
                    const float b = p2[ch] > p3[ch] ? p2[ch] : p3[ch];
                    o[ch] = a > b ? a : b;
                }
            }
        }
    }
}

void tk_maxpool2_backward(const float *restrict src, const float *restrict dy, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w,
                          ptrdiff_t c, float *restrict dx) {
    const ptrdiff_t oh = h / 2, ow = w / 2;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < oh; y++) {
            for (ptrdiff_t x = 0; x < ow; x++) {
                const ptrdiff_t i0 = ((img * h + 2 * y) * w + 2 * x) * c, i2 = i0 + w * c;
                const float *restrict s0 = src + i0, *restrict s1 = s0 + c, *restrict s2 = src + i2, *restrict s3 = s2 + c;
                float *restrict d0 = dx + i0, *restrict d1 = d0 + c, *restrict d2 = dx + i2, *restrict d3 = d2 + c;
                const float *restrict g = dy + ((img * oh + y) * ow + x) * c;
                for (ptrdiff_t ch = 0; ch < c; ch++) {
                    const float v0 = s0[ch], v1 = s1[ch], v2 = s2[ch], v3 = s3[ch];
                    const float a = v0 > v1 ? v0 : v1, b = v2 > v3 ? v2 : v3, m = a > b ? a : b;
                    const float gi = g[ch];
                    // The first maximum in window order gets the gradient (as the forward's comparisons).
                    const float r0 = v0 == m ? gi : 0.0f, rest0 = gi - r0;
                    const float r1 = v1 == m ? rest0 : 0.0f, rest1 = rest0 - r1;
                    const float r2 = v2 == m ? rest1 : 0.0f;
                    d0[ch] = r0;
                    d1[ch] = r1;
                    d2[ch] = r2;
                    d3[ch] = rest1 - r2;
                }
            }
        }
    }
}

void tk_fill_rows(float *out, ptrdiff_t rows, const float *row, ptrdiff_t n) {
    // Rows are short (one per channel count): a plain loop beats a memcpy call per row.
    for (ptrdiff_t i = 0; i < rows; i++) {
        float *o = out + i * n;
        for (ptrdiff_t j = 0; j < n; j++) o[j] = row[j];
    }
}

void tk_sum_rows(const float *m, ptrdiff_t rows, ptrdiff_t n, float *acc) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        const float *r = m + i * n;
        for (ptrdiff_t j = 0; j < n; j++) acc[j] += r[j];
    }
}
