/*
 * Separable resampling with Pillow's coefficients and 8-bit fixed-point
 * arithmetic (libImaging/Resample.c), so that noisy's resize matches
 * Image.resize(size, filter, box) byte for byte. Horizontal pass first over the
 * rows the vertical pass needs, then the vertical pass, as Pillow does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "CNoisyCodec.h"
#include "internal.h"

#define NC_PRECISION_BITS (32 - 8 - 2)

static double nc_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double nc_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double nc_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double nc_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return nc_sinc(x) * nc_sinc(x / 3);
    return 0.0;
}

void *nc_scratch_reserve(nc_scratch *s, size_t n) {
    if (s->capacity >= n) return s->buffer;
    void *p = realloc(s->buffer, n);
    if (!p) return NULL;
    s->buffer = p;
    s->capacity = n;
    return p;
}

void nc_scratch_release(nc_scratch *s) {
    free(s->buffer);
    s->buffer = NULL;
    s->capacity = 0;
}

/* Per output pixel: first input index, count, and ksize fixed-point weights. */
static int nc_coeffs_size(int in_size, float in0, float in1, int out_size, double support_base) {
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    (void)in_size;
    return (int)ceil(support_base * filterscale) * 2 + 1;
}

static void nc_precompute(int in_size, float in0, float in1, int out_size,
                          double (*filter)(double), double support_base, int ksize,
                          int *bounds, int *kk, double *prekk) {
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &prekk[xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
        }
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (int i = 0; i < out_size * ksize; i++) {
        double v = prekk[i] * (1 << NC_PRECISION_BITS);
        kk[i] = (int)(prekk[i] < 0 ? -0.5 + v : 0.5 + v);
    }
}

static inline uint8_t nc_clip8(int in) {
    int v = in >> NC_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

int nc_resample(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch,
                float x0, float y0, float x1, float y1,
                uint8_t *dst, int32_t dw, int32_t dh, int32_t filter, nc_scratch *scratch) {
    double (*fn)(double);
    double support;
    switch (filter) {
    case NC_FILTER_BILINEAR: fn = nc_bilinear; support = 1.0; break;
    case NC_FILTER_BICUBIC: fn = nc_bicubic; support = 2.0; break;
    case NC_FILTER_LANCZOS: fn = nc_lanczos; support = 3.0; break;
    default: return NC_ERR_ARGUMENT;
    }
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ch < 1 || ch > 4 ||
        x0 < 0 || y0 < 0 || x1 > sw || y1 > sh || x1 <= x0 || y1 <= y0) {
        return NC_ERR_ARGUMENT;
    }
    const int ksx = nc_coeffs_size(sw, x0, x1, dw, support);
    const int ksy = nc_coeffs_size(sh, y0, y1, dh, support);
    /* Scratch layout: bounds and weights for both axes, then the horizontal pass. */
    size_t n_bx = (size_t)dw * 2, n_by = (size_t)dh * 2;
    size_t n_kx = (size_t)dw * ksx, n_ky = (size_t)dh * ksy;
    size_t pre = (n_kx > n_ky ? n_kx : n_ky) * sizeof(double);
    size_t ints = (n_bx + n_by + n_kx + n_ky) * sizeof(int);
    ints = (ints + 15) & ~(size_t)15;
    pre = (pre + 15) & ~(size_t)15;
    size_t tmp_bytes = (size_t)dw * (size_t)sh * (size_t)ch;
    uint8_t *base = (uint8_t *)nc_scratch_reserve(scratch, ints + pre + tmp_bytes);
    if (!base) return NC_ERR_NO_MEMORY;
    int *bx = (int *)base;
    int *by = bx + n_bx;
    int *kx = by + n_by;
    int *ky = kx + n_kx;
    double *prekk = (double *)(base + ints);
    uint8_t *tmp = base + ints + pre;
    nc_precompute(sw, x0, x1, dw, fn, support, ksx, bx, kx, prekk);
    nc_precompute(sh, y0, y1, dh, fn, support, ksy, by, ky, prekk);

    const int need_h = dw != sw || x0 != 0 || x1 != sw;
    const int need_v = dh != sh || y0 != 0 || y1 != sh;
    /* Rows touched by the vertical pass. */
    int yfirst = by[0];
    int ylast = by[(dh - 1) * 2] + by[(dh - 1) * 2 + 1];
    if (!need_v) { yfirst = 0; ylast = sh; }
    const uint8_t *hsrc = src;
    int hw = sw;
    if (need_h) {
        for (int y = yfirst; y < ylast; y++) {
            const uint8_t *in = src + (size_t)y * sw * ch;
            uint8_t *o = tmp + (size_t)(y - yfirst) * dw * ch;
            for (int xx = 0; xx < dw; xx++) {
                const int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
                const int *k = &kx[xx * ksx];
                for (int c = 0; c < ch; c++) {
                    int ss = 1 << (NC_PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++) ss += in[(x + xmin) * ch + c] * k[x];
                    o[xx * ch + c] = nc_clip8(ss);
                }
            }
        }
        hsrc = tmp;
        hw = dw;
    } else {
        hsrc = src + (size_t)yfirst * sw * ch;
    }
    if (need_v) {
        for (int yy = 0; yy < dh; yy++) {
            const int ymin = by[yy * 2] - yfirst, ymax = by[yy * 2 + 1];
            const int *k = &ky[yy * ksy];
            uint8_t *o = dst + (size_t)yy * dw * ch;
            for (int xx = 0; xx < dw * ch; xx++) {
                int ss = 1 << (NC_PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++) ss += hsrc[(size_t)(y + ymin) * hw * ch + xx] * k[y];
                o[xx] = nc_clip8(ss);
            }
        }
    } else {
        memcpy(dst, hsrc, (size_t)dw * dh * ch);
    }
    return NC_OK;
}
