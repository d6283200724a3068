/*
 * Separable resampling with Pillow's coefficients and 8-bit fixed-point
 * arithmetic (libImaging/Resample.c), so that noisy's resize matches
 * Image.resize(size, filter, box) byte for byte. Horizontal pass first over the
 * rows the vertical pass needs, then the vertical pass, as Pillow does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "CPixelKernels.h"
#include "hot.h"

#define PK_PRECISION_BITS (32 - 8 - 2)

static double pk_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double pk_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double pk_sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double pk_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return pk_sinc(x) * pk_sinc(x / 3);
    return 0.0;
}

static void *pk_scratch_reserve(pk_scratch *s, size_t n) {
    if (s->capacity >= n) return s->buffer;
    void *p = realloc(s->buffer, n);
    if (!p) return NULL;
    s->buffer = p;
    s->capacity = n;
    return p;
}

void pk_scratch_release(pk_scratch *s) {
    free(s->buffer);
    s->buffer = NULL;
    s->capacity = 0;
}

/* Per output pixel: first input index, count, and ksize fixed-point weights. */
static int pk_coeffs_size(int in_size, float in0, float in1, int out_size, double support_base) {
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    (void)in_size;
    return (int)ceil(support_base * filterscale) * 2 + 1;
}

static void pk_precompute(int in_size, float in0, float in1, int out_size,
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
        double v = prekk[i] * (1 << PK_PRECISION_BITS);
        kk[i] = (int)(prekk[i] < 0 ? -0.5 + v : 0.5 + v);
    }
}

static inline uint8_t pk_clip8(int in) {
    int v = in >> PK_PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}


/* One output row of the vertical pass: acc += row * k over the contributing rows. */
PK_HOT static void pk_resample_column_pass(const uint8_t *hsrc, size_t stride, int ymin, int ymax,
                                           const int *k, int *acc, uint8_t *o, size_t from, size_t n) {
    for (size_t i = from; i < n; i++) acc[i] = 1 << (PK_PRECISION_BITS - 1);
    for (int y = 0; y < ymax; y++) {
        const uint8_t *row = hsrc + (size_t)(y + ymin) * stride;
        const int kv = k[y];
        for (size_t i = from; i < n; i++) acc[i] += row[i] * kv;
    }
    for (size_t i = from; i < n; i++) o[i] = pk_clip8(acc[i]);
}

/* One row of the horizontal pass: the portable version. */
static void pk_resample_row_scalar(const uint8_t *in, uint8_t *o, int dw, int ch, const int *bx,
                                   const int *kx, int ksx) {
    const int init = 1 << (PK_PRECISION_BITS - 1);
    for (int xx = 0; xx < dw; xx++) {
        const int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
        const int *k = &kx[xx * ksx];
        for (int c = 0; c < ch; c++) {
            int ss = init;
            for (int x = 0; x < xmax; x++) ss += in[(x + xmin) * ch + c] * k[x];
            o[xx * ch + c] = pk_clip8(ss);
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/*
 * RGB rows with SSE4.1: each tap loads a pixel's 3 bytes (plus one more) as four
 * 32-bit lanes and multiply-adds them at once. The extra byte belongs to the
 * next pixel and its lane is discarded; at the very end of the buffer, where that
 * byte would lie outside it, the scalar loop takes over.
 */
__attribute__((target("sse4.1")))
static void pk_resample_row_rgb_sse41(const uint8_t *in, uint8_t *o, int dw, const int *bx,
                                      const int *kx, int ksx, int sw, int last_row) {
    const __m128i init = _mm_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    for (int xx = 0; xx < dw; xx++) {
        const int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
        const int *k = &kx[xx * ksx];
        if (last_row && xmin + xmax >= sw) {
            pk_resample_row_scalar(in, o + xx * 3, 1, 3, bx + xx * 2, k, ksx);
            continue;
        }
        __m128i acc = init;
        const uint8_t *p = in + (size_t)xmin * 3;
        for (int x = 0; x < xmax; x++) {
            int32_t word;
            memcpy(&word, p + 3 * x, 4);
            __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(word));
            acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[x])));
        }
        int32_t lanes[4];
        _mm_storeu_si128((__m128i *)lanes, acc);
        o[xx * 3] = pk_clip8(lanes[0]);
        o[xx * 3 + 1] = pk_clip8(lanes[1]);
        o[xx * 3 + 2] = pk_clip8(lanes[2]);
    }
}
#endif

#if defined(__x86_64__)
/* Two RGB rows at once: the bounds and weights are loaded once for both. */
__attribute__((target("sse4.1")))
static void pk_resample_rows2_rgb_sse41(const uint8_t *in0, const uint8_t *in1, uint8_t *o0, uint8_t *o1,
                                        int dw, const int *bx, const int *kx, int ksx) {
    const __m128i init = _mm_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    for (int xx = 0; xx < dw; xx++) {
        const int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
        const int *k = &kx[xx * ksx];
        __m128i a0 = init, a1 = init;
        const uint8_t *p0 = in0 + (size_t)xmin * 3, *p1 = in1 + (size_t)xmin * 3;
        for (int x = 0; x < xmax; x++) {
            int32_t w0, w1;
            memcpy(&w0, p0 + 3 * x, 4);
            memcpy(&w1, p1 + 3 * x, 4);
            const __m128i kv = _mm_set1_epi32(k[x]);
            a0 = _mm_add_epi32(a0, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(w0)), kv));
            a1 = _mm_add_epi32(a1, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(w1)), kv));
        }
        a0 = _mm_srai_epi32(a0, PK_PRECISION_BITS);
        a1 = _mm_srai_epi32(a1, PK_PRECISION_BITS);
        /* Saturate to 0..255 like pk_clip8, then pack. */
        __m128i packed = _mm_packus_epi16(_mm_packs_epi32(a0, a1), _mm_setzero_si128());
        int32_t lanes[2];
        _mm_storel_epi64((__m128i *)lanes, packed);
        memcpy(o0 + xx * 3, &lanes[0], 3);
        memcpy(o1 + xx * 3, &lanes[1], 3);
    }
}
#endif

#if defined(__x86_64__)
/*
 * Two RGB rows with AVX2 and 16-bit multiply-adds, still exact. Each 22-bit
 * weight k is split as k = (k >> 11) * 2048 + (k & 2047), both halves fit 16
 * bits, and px * k = (px * hi) * 2048 + px * lo in 32-bit integers: the same sum
 * Pillow computes, so the same bytes. A step takes two taps of one row in a
 * 128-bit lane, [R0 R1 G0 G1 B0 B1 0 0] against (k0, k1) pairs, and the other
 * row in the other lane. A step reads 8 bytes from the first tap's pixel: the
 * caller keeps the buffer's last row (where that would run off the end) away.
 */
__attribute__((target("avx2")))
static void pk_resample_rows2_rgb_avx2(const uint8_t *in0, const uint8_t *in1, uint8_t *o0, uint8_t *o1,
                                       int dw, const int *bx, const int32_t *khi, const int32_t *klo, int pairs) {
    const __m256i pick = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                          0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
    const __m256i init = _mm256_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    for (int xx = 0; xx < dw; xx++) {
        const int xmin = bx[xx * 2], xmax = bx[xx * 2 + 1];
        const int32_t *h = khi + (size_t)xx * pairs, *l = klo + (size_t)xx * pairs;
        const uint8_t *p0 = in0 + (size_t)xmin * 3, *p1 = in1 + (size_t)xmin * 3;
        __m256i ah = _mm256_setzero_si256(), al = _mm256_setzero_si256();
        for (int j = 0; 2 * j < xmax; j++) {
            int64_t w0, w1;
            memcpy(&w0, p0 + 6 * j, 8);
            memcpy(&w1, p1 + 6 * j, 8);
            const __m256i px = _mm256_shuffle_epi8(
                _mm256_set_m128i(_mm_cvtsi64_si128(w1), _mm_cvtsi64_si128(w0)), pick);
            ah = _mm256_add_epi32(ah, _mm256_madd_epi16(px, _mm256_set1_epi32(h[j])));
            al = _mm256_add_epi32(al, _mm256_madd_epi16(px, _mm256_set1_epi32(l[j])));
        }
        __m256i acc = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(ah, 11), al), init);
        acc = _mm256_srai_epi32(acc, PK_PRECISION_BITS);
        /* Saturate to 0..255 like pk_clip8, then pack: row 0 in the low lane, row 1 in the high. */
        const __m128i packed = _mm_packus_epi16(_mm_packs_epi32(_mm256_castsi256_si128(acc),
                                                                _mm256_extracti128_si256(acc, 1)), _mm_setzero_si128());
        int32_t lanes[2];
        _mm_storel_epi64((__m128i *)lanes, packed);
        memcpy(o0 + xx * 3, &lanes[0], 3);
        memcpy(o1 + xx * 3, &lanes[1], 3);
    }
}
#endif

/* The split weights of pk_resample_rows2_rgb_avx2: per output pixel, `pairs` (hi, hi)
 * and (lo, lo) int16 pairs; taps at or past the pixel's count weigh 0. */
static void pk_split_weights(const int *bx, const int *kx, int ksx, int dw, int pairs, int32_t *khi, int32_t *klo) {
    for (int xx = 0; xx < dw; xx++) {
        const int xmax = bx[xx * 2 + 1];
        for (int j = 0; j < pairs; j++) {
            uint16_t h[2], l[2];
            for (int t = 0; t < 2; t++) {
                const int x = 2 * j + t;
                const int k = x < xmax && x < ksx ? kx[xx * ksx + x] : 0;
                h[t] = (uint16_t)(int16_t)(k >> 11);   /* arithmetic shift: floor, so lo >= 0 */
                l[t] = (uint16_t)(k & 2047);
            }
            khi[(size_t)xx * pairs + j] = (int32_t)((uint32_t)h[0] | (uint32_t)h[1] << 16);
            klo[(size_t)xx * pairs + j] = (int32_t)((uint32_t)l[0] | (uint32_t)l[1] << 16);
        }
    }
}

#if defined(__x86_64__)
/*
 * One output row of the vertical pass with AVX2, exact by the same split weights as
 * the horizontal pass: two input rows at a time, their bytes interleaved as 16-bit
 * pairs against (k_y, k_y+1). 16 bytes per step; the caller finishes the tail.
 * Returns how many bytes it wrote.
 */
__attribute__((target("avx2")))
static size_t pk_column_avx2(const uint8_t *hsrc, size_t stride, int ymin, int ymax,
                             const int32_t *khi, const int32_t *klo, uint8_t *o, size_t n) {
    const __m256i init = _mm256_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i ha = _mm256_setzero_si256(), hb = ha, la = ha, lb = ha;
        for (int j = 0; 2 * j < ymax; j++) {
            const uint8_t *r0 = hsrc + (size_t)(ymin + 2 * j) * stride;
            const uint8_t *r1 = 2 * j + 1 < ymax ? r0 + stride : r0;  /* weight 0 when past the last row */
            const __m256i a = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r0 + i)));
            const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r1 + i)));
            /* Per 128-bit lane: elements [0-3 | 8-11] and [4-7 | 12-15], as (row0, row1) pairs. */
            const __m256i lo = _mm256_unpacklo_epi16(a, b), hi = _mm256_unpackhi_epi16(a, b);
            const __m256i kh = _mm256_set1_epi32(khi[j]), kl = _mm256_set1_epi32(klo[j]);
            ha = _mm256_add_epi32(ha, _mm256_madd_epi16(lo, kh));
            hb = _mm256_add_epi32(hb, _mm256_madd_epi16(hi, kh));
            la = _mm256_add_epi32(la, _mm256_madd_epi16(lo, kl));
            lb = _mm256_add_epi32(lb, _mm256_madd_epi16(hi, kl));
        }
        const __m256i va = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(ha, 11), la), init), PK_PRECISION_BITS);
        const __m256i vb = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hb, 11), lb), init), PK_PRECISION_BITS);
        /* packs puts elements 0-7 in the low lane and 8-15 in the high; packus saturates like pk_clip8. */
        const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(va, vb), _mm256_setzero_si256());
        _mm_storeu_si128((__m128i *)(o + i), _mm_unpacklo_epi64(_mm256_castsi256_si128(bytes),
                                                                 _mm256_extracti128_si256(bytes, 1)));
    }
    return i;
}
#endif

/* Rows [y0, y1) of the horizontal pass; the last source row is `last`. */
static void pk_resample_rows(const uint8_t *src, size_t stride, uint8_t *tmp, int y0, int y1, int dw, int ch,
                             const int *bx, const int *kx, int ksx, int sw, int sh,
                             int32_t *khi, int32_t *klo) {
    const size_t ostride = (size_t)dw * ch;
#if defined(__x86_64__)
    if (ch == 3 && __builtin_cpu_supports("sse4.1")) {
        int y = y0;
        /* Pairs never include the buffer's last row, whose final pixel must not be over-read. */
        if (__builtin_cpu_supports("avx2")) {
            const int pairs = (ksx + 1) / 2;
            pk_split_weights(bx, kx, ksx, dw, pairs, khi, klo);
            for (; y + 1 < y1 && y + 1 < sh - 1; y += 2) {
                pk_resample_rows2_rgb_avx2(src + (size_t)y * stride, src + (size_t)(y + 1) * stride,
                                           tmp + (size_t)(y - y0) * ostride, tmp + (size_t)(y + 1 - y0) * ostride,
                                           dw, bx, khi, klo, pairs);
            }
        }
        for (; y + 1 < y1 && y + 1 < sh - 1; y += 2) {
            pk_resample_rows2_rgb_sse41(src + (size_t)y * stride, src + (size_t)(y + 1) * stride,
                                        tmp + (size_t)(y - y0) * ostride, tmp + (size_t)(y + 1 - y0) * ostride,
                                        dw, bx, kx, ksx);
        }
        for (; y < y1; y++) {
            pk_resample_row_rgb_sse41(src + (size_t)y * stride, tmp + (size_t)(y - y0) * ostride, dw, bx, kx, ksx,
                                      sw, y == sh - 1);
        }
        return;
    }
#endif
    (void)sw; (void)sh; (void)khi; (void)klo;
    for (int y = y0; y < y1; y++) {
        pk_resample_row_scalar(src + (size_t)y * stride, tmp + (size_t)(y - y0) * ostride, dw, ch, bx, kx, ksx);
    }
}

int pk_resample(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch,
                float x0, float y0, float x1, float y1,
                uint8_t *dst, int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch) {
    return pk_resample_strided(src, sw, sh, (size_t)sw * (size_t)ch, ch, x0, y0, x1, y1, dst, dw, dh, filter, scratch);
}

int pk_resample_strided(const uint8_t *src, int32_t sw, int32_t sh, size_t src_stride, int32_t ch,
                        float x0, float y0, float x1, float y1,
                        uint8_t *dst, int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch) {
    const pk_output o = {PK_OUT_U8_HWC, 0, NULL, NULL, dst};
    return pk_resample_to(src, sw, sh, src_stride, ch, x0, y0, x1, y1, dw, dh, filter, scratch, &o);
}

int pk_resample_to(const uint8_t *src, int32_t sw, int32_t sh, size_t src_stride, int32_t ch,
                   float x0, float y0, float x1, float y1, int32_t dw, int32_t dh, int32_t filter,
                   pk_scratch *scratch, const pk_output *output) {
    double (*fn)(double);
    double support;
    switch (filter) {
    case PK_FILTER_BILINEAR: fn = pk_bilinear; support = 1.0; break;
    case PK_FILTER_BICUBIC: fn = pk_bicubic; support = 2.0; break;
    case PK_FILTER_LANCZOS: fn = pk_lanczos; support = 3.0; break;
    default: return PK_ERR_ARGUMENT;
    }
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ch < 1 || ch > 4 ||
        x0 < 0 || y0 < 0 || x1 > sw || y1 > sh || x1 <= x0 || y1 <= y0) {
        return PK_ERR_ARGUMENT;
    }
    const int ksx = pk_coeffs_size(sw, x0, x1, dw, support);
    const int ksy = pk_coeffs_size(sh, y0, y1, dh, support);
    /* Scratch layout: bounds and weights for both axes, then the horizontal pass. */
    size_t n_bx = (size_t)dw * 2, n_by = (size_t)dh * 2;
    size_t n_kx = (size_t)dw * ksx, n_ky = (size_t)dh * ksy;
    size_t pre = (n_kx > n_ky ? n_kx : n_ky) * sizeof(double);
    size_t n_split = (size_t)dw * (size_t)((ksx + 1) / 2);   /* hi and lo 16-bit weight pairs */
    size_t n_split_y = (size_t)dh * (size_t)((ksy + 1) / 2);
    size_t ints = (n_bx + n_by + n_kx + n_ky + 2 * n_split + 2 * n_split_y) * sizeof(int);
    ints = (ints + 15) & ~(size_t)15;
    pre = (pre + 15) & ~(size_t)15;
    size_t tmp_bytes = (size_t)dw * (size_t)sh * (size_t)ch;
    size_t tmp_bytes_aligned = (tmp_bytes + 15) & ~(size_t)15;
    size_t acc_bytes = (size_t)dw * (size_t)ch * sizeof(int);
    size_t row_bytes = (size_t)dw * (size_t)ch;
    uint8_t *base = (uint8_t *)pk_scratch_reserve(scratch, ints + pre + tmp_bytes_aligned + acc_bytes + row_bytes);
    if (!base) return PK_ERR_NO_MEMORY;
    int *bx = (int *)base;
    int *by = bx + n_bx;
    int *kx = by + n_by;
    int *ky = kx + n_kx;
    int32_t *khi = ky + n_ky, *klo = khi + n_split;
    int32_t *kyhi = klo + n_split, *kylo = kyhi + n_split_y;
    double *prekk = (double *)(base + ints);
    uint8_t *tmp = base + ints + pre;
    pk_precompute(sw, x0, x1, dw, fn, support, ksx, bx, kx, prekk);
    pk_precompute(sh, y0, y1, dh, fn, support, ksy, by, ky, prekk);

    const int need_h = dw != sw || x0 != 0 || x1 != sw;
    const int need_v = dh != sh || y0 != 0 || y1 != sh;
    /* Rows touched by the vertical pass. */
    int yfirst = by[0];
    int ylast = by[(dh - 1) * 2] + by[(dh - 1) * 2 + 1];
    if (!need_v) { yfirst = 0; ylast = sh; }
    const uint8_t *hsrc = src;
    size_t hstride = src_stride;
    if (need_h) {
        pk_resample_rows(src, src_stride, tmp, yfirst, ylast, dw, ch, bx, kx, ksx, sw, sh, khi, klo);
        hsrc = tmp;
        hstride = (size_t)dw * ch;
    } else {
        hsrc = src + (size_t)yfirst * src_stride;
    }
    /* Plain bytes go straight into place; anything else goes through one row. */
    const int direct = output->kind == PK_OUT_U8_HWC && !output->flip;
    uint8_t *row = tmp + tmp_bytes_aligned + acc_bytes;
    if (need_v) {
        /* Row-major accumulation: each input row is read once per output row, in order. */
        const size_t n = (size_t)dw * ch;
        int *acc = (int *)(tmp + tmp_bytes_aligned);
        const int pairs_y = (ksy + 1) / 2;
#if defined(__x86_64__)
        const int wide = n >= 16 && __builtin_cpu_supports("avx2");
        if (wide) pk_split_weights(by, ky, ksy, dh, pairs_y, kyhi, kylo);
#else
        const int wide = 0;
        (void)kyhi; (void)kylo;
#endif
        for (int yy = 0; yy < dh; yy++) {
            uint8_t *o = direct ? (uint8_t *)output->out + (size_t)yy * n : row;
            size_t done = 0;
#if defined(__x86_64__)
            if (wide) {
                done = pk_column_avx2(hsrc, hstride, by[yy * 2] - yfirst, by[yy * 2 + 1],
                                      kyhi + (size_t)yy * pairs_y, kylo + (size_t)yy * pairs_y, o, n);
            }
#endif
            pk_resample_column_pass(hsrc, hstride, by[yy * 2] - yfirst, by[yy * 2 + 1], &ky[yy * ksy], acc, o, done, n);
            if (!direct) pk_write_row(row, dw, dh, ch, yy, output);
        }
    } else {
        for (int y = 0; y < dh; y++) pk_write_row(hsrc + (size_t)y * hstride, dw, dh, ch, y, output);
    }
    return PK_OK;
}
