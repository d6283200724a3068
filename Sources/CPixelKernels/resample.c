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

#if defined(__x86_64__)
/* Pixels (16-bit) against split weights: per pair of taps, (px * hi) * 2048 + px * lo, Pillow's sums exactly. */
__attribute__((target("avx2")))
static inline __m256i pk_madd_split(__m256i px, __m256i hi, __m256i lo) {
    return _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(px, hi), 11), _mm256_madd_epi16(px, lo));
}

/* One row's four output pixels: 8 bytes from each one's first tap against its split weights. */
__attribute__((target("avx2")))
static inline __m256i pk_gray4(const uint8_t *in, const int *bx, __m256i h01, __m256i l01, __m256i h23, __m256i l23) {
    const __m128i p01 = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(in + bx[0])),
                                           _mm_loadl_epi64((const __m128i *)(in + bx[2])));
    const __m128i p23 = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(in + bx[4])),
                                           _mm_loadl_epi64((const __m128i *)(in + bx[6])));
    const __m256i a = _mm256_cvtepu8_epi16(p01), b = _mm256_cvtepu8_epi16(p23);
    /* Lanes: [x0 x2 x0 x2 | x1 x3 x1 x3] after two pairwise sums. */
    const __m256i t = _mm256_hadd_epi32(pk_madd_split(a, h01, l01), pk_madd_split(b, h23, l23));
    return _mm256_hadd_epi32(t, t);
}

/*
 * One-channel rows with AVX2, exact as above, two rows at once against the same
 * weights (two rows of a plane, or the same row of Cb and Cr): four output pixels
 * per step, each reading 8 bytes from its first tap against its 8 split weights
 * (hi and lo int16, 0 past its taps), two pixels per 256-bit register, then summed
 * across lanes. Handles ksx <= 8. Stops before the first pixel whose 8-byte read
 * would pass `end` bytes from either row's start; returns how many pixels it wrote
 * per row, a multiple of 4.
 */
__attribute__((target("avx2")))
static int pk_resample_rows2_gray_avx2(const uint8_t *in0, const uint8_t *in1, uint8_t *o0, uint8_t *o1, int dw,
                                       const int *bx, const int16_t *kh, const int16_t *kl, long end) {
    const __m256i init = _mm256_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    /* [r0: x0 x2 x0 x2 | x1 x3 x1 x3] and r1 likewise, blended as [r0 x0 x2, r1 x0 x2 | r0 x1 x3, r1 x1 x3]. */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int xx = 0;
    for (; xx + 4 <= dw; xx += 4) {
        if ((long)bx[(xx + 3) * 2] + 8 > end) break;  /* first taps only grow along the row */
        const int16_t *h = kh + (size_t)xx * 8, *l = kl + (size_t)xx * 8;
        const __m256i h01 = _mm256_loadu_si256((const __m256i *)h), l01 = _mm256_loadu_si256((const __m256i *)l);
        const __m256i h23 = _mm256_loadu_si256((const __m256i *)(h + 16)), l23 = _mm256_loadu_si256((const __m256i *)(l + 16));
        const __m256i t0 = pk_gray4(in0, bx + xx * 2, h01, l01, h23, l23);
        const __m256i t1 = pk_gray4(in1, bx + xx * 2, h01, l01, h23, l23);
        __m256i t = _mm256_blend_epi32(t0, t1, 0xCC);  /* elements 2, 3, 6, 7 from row 1 */
        t = _mm256_srai_epi32(_mm256_add_epi32(t, init), PK_PRECISION_BITS);
        t = _mm256_permutevar8x32_epi32(t, order);  /* [r0 x0 x1 x2 x3 | r1 x0 x1 x2 x3] */
        const __m128i v = _mm_packs_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        const __m128i bytes = _mm_packus_epi16(v, v);  /* saturates like pk_clip8 */
        const int32_t r0 = _mm_cvtsi128_si32(bytes), r1 = _mm_extract_epi32(bytes, 1);
        memcpy(o0 + xx, &r0, 4);
        memcpy(o1 + xx, &r1, 4);
    }
    return xx;
}
#endif

#if defined(__x86_64__)
/* One row's eight output pixels of at most 4 taps: 4 bytes from each one's first tap. */
__attribute__((target("avx2")))
static inline __m256i pk_gray8_4taps(const uint8_t *in, const int *bx, __m256i hA, __m256i lA, __m256i hB, __m256i lB) {
    /* Eight plain loads: a gather measured slower here (probably the Gather Data Sampling microcode). */
    int32_t w[8];
    for (int i = 0; i < 8; i++) memcpy(&w[i], in + bx[2 * i], 4);
    const __m256i g = _mm256_loadu_si256((const __m256i *)w);
    const __m256i a = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(g));       /* pixels 0-3, 4 taps each */
    const __m256i b = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(g, 1));  /* pixels 4-7 */
    return _mm256_hadd_epi32(pk_madd_split(a, hA, lA), pk_madd_split(b, hB, lB));  /* [x0 x1 x4 x5 | x2 x3 x6 x7] */
}

/*
 * As pk_resample_rows2_gray_avx2 for rows whose pixels all have at most 4 taps (most
 * bilinear resizes under 1.5x, and every enlargement): eight output pixels per step
 * and row, 4 bytes each against 4 split weights. Stops before the first
 * pixel whose read would pass `end`; returns how many pixels it wrote per row.
 */
__attribute__((target("avx2")))
static int pk_resample_rows2_gray4_avx2(const uint8_t *in0, const uint8_t *in1, uint8_t *o0, uint8_t *o1, int dw,
                                        const int *bx, const int16_t *kh, const int16_t *kl, long end) {
    const __m256i init = _mm256_set1_epi32(1 << (PK_PRECISION_BITS - 1));
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    int xx = 0;
    for (; xx + 8 <= dw; xx += 8) {
        if ((long)bx[(xx + 7) * 2] + 4 > end) break;  /* first taps only grow along the row */
        const int16_t *h = kh + (size_t)xx * 4, *l = kl + (size_t)xx * 4;
        const __m256i hA = _mm256_loadu_si256((const __m256i *)h), lA = _mm256_loadu_si256((const __m256i *)l);
        const __m256i hB = _mm256_loadu_si256((const __m256i *)(h + 16)), lB = _mm256_loadu_si256((const __m256i *)(l + 16));
        __m256i t0 = pk_gray8_4taps(in0, bx + xx * 2, hA, lA, hB, lB);
        __m256i t1 = pk_gray8_4taps(in1, bx + xx * 2, hA, lA, hB, lB);
        t0 = _mm256_permutevar8x32_epi32(_mm256_srai_epi32(_mm256_add_epi32(t0, init), PK_PRECISION_BITS), order);
        t1 = _mm256_permutevar8x32_epi32(_mm256_srai_epi32(_mm256_add_epi32(t1, init), PK_PRECISION_BITS), order);
        /* packs interleaves 128-bit lanes: [r0 x0-3, r1 x0-3 | r0 x4-7, r1 x4-7] as 16-bit. */
        const __m256i w16 = _mm256_packs_epi32(t0, t1);
        const __m256i bytes = _mm256_packus_epi16(w16, w16);  /* saturates like pk_clip8 */
        const __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
        /* lo: [r0 x0-3, r1 x0-3, ...], hi: [r0 x4-7, r1 x4-7, ...] */
        const __m128i rows = _mm_unpacklo_epi32(lo, hi);  /* [r0 x0-3, r0 x4-7, r1 x0-3, r1 x4-7] */
        _mm_storel_epi64((__m128i *)(o0 + xx), rows);
        _mm_storel_epi64((__m128i *)(o1 + xx), _mm_unpackhi_epi64(rows, rows));
    }
    return xx;
}
#endif

/* The one-channel AVX2 weights: `taps` (hi, lo) int16 per output pixel, 0 past its
 * taps; 0 when a pixel has more taps than that. */
static int pk_split_weights_n(const int *bx, const int *kx, int ksx, int dw, int taps, int16_t *kh, int16_t *kl) {
    for (int xx = 0; xx < dw; xx++) {
        const int xmax = bx[xx * 2 + 1];
        if (xmax > taps) return 0;
        for (int x = 0; x < taps; x++) {
            const int k = x < xmax && x < ksx ? kx[xx * ksx + x] : 0;
            kh[(size_t)xx * taps + x] = (int16_t)(k >> 11);
            kl[(size_t)xx * taps + x] = (int16_t)(k & 2047);
        }
    }
    return 1;
}

#if defined(__x86_64__)
/*
 * The one-channel AVX2 pass's weights, in khi and klo (room for dw * 4 int32 each):
 * returns the taps per pixel its kernel reads, 4 or 8, or 0 when no kernel fits.
 */
static int pk_gray_weights(const int *bx, const int *kx, int ksx, int dw, int32_t *khi, int32_t *klo) {
    for (int taps = 4; taps <= 8; taps += 4) {
        if (pk_split_weights_n(bx, kx, ksx, dw, taps, (int16_t *)khi, (int16_t *)klo)) return taps;
    }
    return 0;
}

/* Two rows through the kernel pk_gray_weights chose; returns the pixels done per row. */
static int pk_gray_rows2(int taps, const uint8_t *in0, const uint8_t *in1, uint8_t *o0, uint8_t *o1, int dw,
                         const int *bx, const int32_t *khi, const int32_t *klo, long end) {
    if (taps == 4) {
        return pk_resample_rows2_gray4_avx2(in0, in1, o0, o1, dw, bx, (const int16_t *)khi, (const int16_t *)klo, end);
    }
    return pk_resample_rows2_gray_avx2(in0, in1, o0, o1, dw, bx, (const int16_t *)khi, (const int16_t *)klo, end);
}
#endif

/* Rows [y0, y1) of the horizontal pass into tmp. */
static void pk_resample_rows(const uint8_t *src, size_t stride, uint8_t *tmp, int y0, int y1, int dw, int ch,
                             const int *bx, const int *kx, int ksx, int sw, int sh,
                             int32_t *khi, int32_t *klo) {
    const size_t ostride = (size_t)dw * ch;
#if defined(__x86_64__)
    int taps = 0;
    if (ch == 1 && sw >= 8 && __builtin_cpu_supports("avx2")) taps = pk_gray_weights(bx, kx, ksx, dw, khi, klo);
    if (taps) {
        /* A read past a row's end lands in the next row (sw >= 8 > the 7 bytes it can
         * pass by), except on the buffer's last row, which stops at its end. */
        for (int y = y0; y < y1; y += 2) {
            const int y2 = y + 1 < y1 ? y + 1 : y;  /* an odd last row pairs with itself */
            const uint8_t *in0 = src + (size_t)y * stride, *in1 = src + (size_t)y2 * stride;
            uint8_t *o0 = tmp + (size_t)(y - y0) * ostride, *o1 = tmp + (size_t)(y2 - y0) * ostride;
            const int done = pk_gray_rows2(taps, in0, in1, o0, o1, dw, bx, khi, klo,
                                           y2 == sh - 1 ? (long)sw : (long)stride + sw);
            pk_resample_row_scalar(in0, o0 + done, dw - done, 1, bx + 2 * done, kx + (size_t)done * ksx, ksx);
            if (y2 != y) pk_resample_row_scalar(in1, o1 + done, dw - done, 1, bx + 2 * done, kx + (size_t)done * ksx, ksx);
        }
        return;
    }
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

/*
 * One resize, split so that several can share an output row: pk_job_layout_of sizes
 * its memory, pk_job_plan computes both axes' coefficients, pk_job_horizontal runs
 * the horizontal pass, and pk_job_row makes one output row of the vertical pass.
 */
typedef struct {
    int sw, sh, dw, dh, ch, ksx, ksy;
    int need_h, need_v, wide;
    int yfirst, ylast;           /* source rows the vertical pass reads */
    int *bx, *kx, *by, *ky;
    int32_t *khi, *klo, *kyhi, *kylo;
    uint8_t *tmp;                /* the horizontal pass's rows */
    int *acc;
    const uint8_t *hsrc;         /* what the vertical pass reads */
    size_t hstride;
} pk_job;

typedef struct {
    double (*fn)(double);
    double support;
} pk_kernel;

static int pk_kernel_of(int32_t filter, pk_kernel *k) {
    switch (filter) {
    case PK_FILTER_BILINEAR: k->fn = pk_bilinear; k->support = 1.0; return 1;
    case PK_FILTER_BICUBIC: k->fn = pk_bicubic; k->support = 2.0; return 1;
    case PK_FILTER_LANCZOS: k->fn = pk_lanczos; k->support = 3.0; return 1;
    default: return 0;
    }
}

static size_t pk_align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Where a job's arrays lie in its memory, and how much memory it needs. */
typedef struct {
    int ksx, ksy;
    size_t n_kx, n_ky, n_split, n_split_y;  /* int counts after the bounds */
    size_t pre, tmp, acc;                   /* byte offsets: double weights, horizontal rows, accumulators */
    size_t bytes;                           /* 0 for arguments no resize takes */
} pk_job_layout;

static pk_job_layout pk_job_layout_of(int sw, int sh, int ch, float x0, float y0, float x1, float y1,
                                      int dw, int dh, const pk_kernel *k) {
    pk_job_layout z = {0};
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0 || ch < 1 || ch > 4 ||
        x0 < 0 || y0 < 0 || x1 > sw || y1 > sh || x1 <= x0 || y1 <= y0) {
        return z;
    }
    z.ksx = pk_coeffs_size(sw, x0, x1, dw, k->support);
    z.ksy = pk_coeffs_size(sh, y0, y1, dh, k->support);
    z.n_kx = (size_t)dw * z.ksx;
    z.n_ky = (size_t)dh * z.ksy;
    const int pairs = (z.ksx + 1) / 2 > 4 ? (z.ksx + 1) / 2 : 4;  /* 4 int32: the one-channel pass's 8 int16 */
    z.n_split = (size_t)dw * pairs;
    z.n_split_y = (size_t)dh * (size_t)((z.ksy + 1) / 2);
    const size_t ints = (size_t)dw * 2 + (size_t)dh * 2 + z.n_kx + z.n_ky + 2 * z.n_split + 2 * z.n_split_y;
    z.pre = pk_align16(ints * sizeof(int));
    z.tmp = z.pre + pk_align16((z.n_kx > z.n_ky ? z.n_kx : z.n_ky) * sizeof(double));
    z.acc = z.tmp + pk_align16((size_t)dw * sh * ch);
    z.bytes = z.acc + pk_align16((size_t)dw * ch * sizeof(int));
    return z;
}

/*
 * Carves a job out of mem (z.bytes of it) and computes both axes' coefficients, or
 * takes them from `like`, a job of the same geometry (Cr shares Cb's).
 */
static void pk_job_plan(pk_job *j, const pk_job_layout *z, int sw, int sh, int ch, float x0, float y0, float x1,
                        float y1, int dw, int dh, const pk_kernel *k, uint8_t *mem, const pk_job *like) {
    uint8_t *tmp = mem + z->tmp;
    int *acc = (int *)(mem + z->acc);
    if (like) {
        *j = *like;
        j->tmp = tmp;
        j->acc = acc;
        return;
    }
    const int ksx = z->ksx, ksy = z->ksy;
    j->sw = sw; j->sh = sh; j->dw = dw; j->dh = dh; j->ch = ch; j->ksx = ksx; j->ksy = ksy;
    j->bx = (int *)mem;
    j->by = j->bx + (size_t)dw * 2;
    j->kx = j->by + (size_t)dh * 2;
    j->ky = j->kx + z->n_kx;
    j->khi = j->ky + z->n_ky;
    j->klo = j->khi + z->n_split;
    j->kyhi = j->klo + z->n_split;
    j->kylo = j->kyhi + z->n_split_y;
    j->tmp = tmp;
    j->acc = acc;
    double *prekk = (double *)(mem + z->pre);
    pk_precompute(sw, x0, x1, dw, k->fn, k->support, ksx, j->bx, j->kx, prekk);
    pk_precompute(sh, y0, y1, dh, k->fn, k->support, ksy, j->by, j->ky, prekk);
    j->need_h = dw != sw || x0 != 0 || x1 != sw;
    j->need_v = dh != sh || y0 != 0 || y1 != sh;
    j->yfirst = j->need_v ? j->by[0] : 0;
    j->ylast = j->need_v ? j->by[(dh - 1) * 2] + j->by[(dh - 1) * 2 + 1] : sh;
    j->wide = 0;
#if defined(__x86_64__)
    if (j->need_v && (size_t)dw * ch >= 16 && __builtin_cpu_supports("avx2")) {
        pk_split_weights(j->by, j->ky, ksy, dh, (ksy + 1) / 2, j->kyhi, j->kylo);
        j->wide = 1;
    }
#endif
}

/* The horizontal pass of src (rows stride bytes apart), or none when the box spans the rows. */
static void pk_job_horizontal(pk_job *j, const uint8_t *src, size_t stride) {
    if (j->need_h) {
        pk_resample_rows(src, stride, j->tmp, j->yfirst, j->ylast, j->dw, j->ch, j->bx, j->kx, j->ksx,
                         j->sw, j->sh, j->khi, j->klo);
        j->hsrc = j->tmp;
        j->hstride = (size_t)j->dw * j->ch;
    } else {
        j->hsrc = src + (size_t)j->yfirst * stride;
        j->hstride = stride;
    }
}

/* The horizontal passes of two one-channel jobs of one geometry (Cb and Cr), a row of each at once. */
static void pk_jobs_horizontal_pair(pk_job *a, const uint8_t *sa, size_t ta, pk_job *b, const uint8_t *sb, size_t tb) {
#if defined(__x86_64__)
    const int taps = a->need_h && a->ch == 1 && a->sw >= 8 && __builtin_cpu_supports("avx2")
        ? pk_gray_weights(a->bx, a->kx, a->ksx, a->dw, a->khi, a->klo) : 0;
    if (taps) {
        const size_t dw = (size_t)a->dw;
        const long end = (long)(ta < tb ? ta : tb) + a->sw;
        for (int y = a->yfirst; y < a->ylast; y++) {
            const uint8_t *in0 = sa + (size_t)y * ta, *in1 = sb + (size_t)y * tb;
            uint8_t *o0 = a->tmp + (size_t)(y - a->yfirst) * dw, *o1 = b->tmp + (size_t)(y - a->yfirst) * dw;
            const int done = pk_gray_rows2(taps, in0, in1, o0, o1, a->dw, a->bx, a->khi, a->klo,
                                           y == a->sh - 1 ? (long)a->sw : end);
            const int *bx = a->bx + 2 * done, *kx = a->kx + (size_t)done * a->ksx;
            pk_resample_row_scalar(in0, o0 + done, a->dw - done, 1, bx, kx, a->ksx);
            pk_resample_row_scalar(in1, o1 + done, a->dw - done, 1, bx, kx, a->ksx);
        }
        a->hsrc = a->tmp;
        b->hsrc = b->tmp;
        a->hstride = b->hstride = dw;
        return;
    }
#endif
    pk_job_horizontal(a, sa, ta);
    pk_job_horizontal(b, sb, tb);
}

/* Output row yy (dw x ch bytes) into o; returns o, or the row in place when no vertical pass is needed. */
static const uint8_t *pk_job_row(const pk_job *j, int yy, uint8_t *o) {
    if (!j->need_v) return j->hsrc + (size_t)yy * j->hstride;
    /* Row-major accumulation: each input row is read once per output row, in order. */
    const size_t n = (size_t)j->dw * j->ch;
    const int ymin = j->by[yy * 2] - j->yfirst, ymax = j->by[yy * 2 + 1];
    size_t done = 0;
#if defined(__x86_64__)
    if (j->wide) {
        const int pairs_y = (j->ksy + 1) / 2;
        done = pk_column_avx2(j->hsrc, j->hstride, ymin, ymax, j->kyhi + (size_t)yy * pairs_y,
                              j->kylo + (size_t)yy * pairs_y, o, n);
    }
#endif
    if (done < n) pk_resample_column_pass(j->hsrc, j->hstride, ymin, ymax, &j->ky[yy * j->ksy], j->acc, o, done, n);
    return o;
}

int pk_resample_to(const uint8_t *src, int32_t sw, int32_t sh, size_t src_stride, int32_t ch,
                   float x0, float y0, float x1, float y1, int32_t dw, int32_t dh, int32_t filter,
                   pk_scratch *scratch, const pk_output *output) {
    pk_kernel k;
    if (!pk_kernel_of(filter, &k)) return PK_ERR_ARGUMENT;
    const pk_job_layout z = pk_job_layout_of(sw, sh, ch, x0, y0, x1, y1, dw, dh, &k);
    if (z.bytes == 0) return PK_ERR_ARGUMENT;
    const size_t row_bytes = pk_align16((size_t)dw * (size_t)ch);
    uint8_t *base = (uint8_t *)pk_scratch_reserve(scratch, z.bytes + row_bytes);
    if (!base) return PK_ERR_NO_MEMORY;
    pk_job j;
    pk_job_plan(&j, &z, sw, sh, ch, x0, y0, x1, y1, dw, dh, &k, base, NULL);
    pk_job_horizontal(&j, src, src_stride);
    /* Plain bytes go straight into place; anything else goes through one row. */
    const int direct = output->kind == PK_OUT_U8_HWC && !output->flip;
    uint8_t *row = base + z.bytes;
    for (int yy = 0; yy < dh; yy++) {
        uint8_t *o = direct ? (uint8_t *)output->out + (size_t)yy * dw * ch : row;
        const uint8_t *done = pk_job_row(&j, yy, o);
        if (done != o || !direct) pk_write_row(done, dw, dh, ch, yy, output);
    }
    return PK_OK;
}

/* A plane's box: the image box in its samples, kept inside it against rounding. */
static void pk_plane_box(const pk_plane *p, float x0, float y0, float x1, float y1, float box[4]) {
    box[0] = x0 / p->fx; box[1] = y0 / p->fy; box[2] = x1 / p->fx; box[3] = y1 / p->fy;
    if (box[2] > p->width) box[2] = (float)p->width;
    if (box[3] > p->height) box[3] = (float)p->height;
}

int pk_resample_ycc_to(const pk_plane given[3], float x0, float y0, float x1, float y1, int32_t cut,
                       int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch, const pk_output *output) {
    pk_kernel k;
    if (!pk_kernel_of(filter, &k)) return PK_ERR_ARGUMENT;
    float box[3][4];
    pk_plane planes[3];
    pk_job_layout z[3];
    size_t total = 0;
    for (int c = 0; c < 3; c++) {
        pk_plane *p = &planes[c];
        *p = given[c];
        if (p->fx < 1 || p->fy < 1 || !p->data) return PK_ERR_ARGUMENT;
        pk_plane_box(p, x0, y0, x1, y1, box[c]);
        if (cut && box[c][0] >= 0 && box[c][1] >= 0 && box[c][2] > box[c][0] && box[c][3] > box[c][1]) {
            /* Only the samples the box covers: the plane's own crop, as crop-then-resize sees it. */
            const int sx0 = (int)floorf(box[c][0]), sy0 = (int)floorf(box[c][1]);
            const int sx1 = (int)ceilf(box[c][2]), sy1 = (int)ceilf(box[c][3]);
            p->data += (size_t)sy0 * p->stride + (size_t)sx0;
            p->width = sx1 - sx0;
            p->height = sy1 - sy0;
            box[c][0] -= sx0; box[c][2] -= sx0;
            box[c][1] -= sy0; box[c][3] -= sy0;
        }
        z[c] = pk_job_layout_of(p->width, p->height, 1, box[c][0], box[c][1], box[c][2], box[c][3], dw, dh, &k);
        if (z[c].bytes == 0) return PK_ERR_ARGUMENT;
        total += z[c].bytes;
    }
    const size_t row_bytes = pk_align16((size_t)dw);
    uint8_t *base = (uint8_t *)pk_scratch_reserve(scratch, total + 9 * row_bytes);
    if (!base) return PK_ERR_NO_MEMORY;
    pk_job jobs[3];
    uint8_t *mem = base;
    /* Cr has Cb's geometry in every JPEG this path takes: one set of coefficients, one paired pass. */
    const int shared = planes[2].width == planes[1].width && planes[2].height == planes[1].height &&
                       memcmp(box[2], box[1], sizeof(box[1])) == 0;
    for (int c = 0; c < 3; c++) {
        const pk_plane *p = &planes[c];
        pk_job_plan(&jobs[c], &z[c], p->width, p->height, 1, box[c][0], box[c][1], box[c][2], box[c][3], dw, dh, &k,
                    mem, c == 2 && shared ? &jobs[1] : NULL);
        mem += z[c].bytes;
    }
    pk_job_horizontal(&jobs[0], planes[0].data, planes[0].stride);
    if (shared) {
        pk_jobs_horizontal_pair(&jobs[1], planes[1].data, planes[1].stride, &jobs[2], planes[2].data, planes[2].stride);
    } else {
        pk_job_horizontal(&jobs[1], planes[1].data, planes[1].stride);
        pk_job_horizontal(&jobs[2], planes[2].data, planes[2].stride);
    }
    uint8_t *rows = base + total;
    for (int yy = 0; yy < dh; yy++) {
        const uint8_t *yc = pk_job_row(&jobs[0], yy, rows);
        const uint8_t *cb = pk_job_row(&jobs[1], yy, rows + row_bytes);
        const uint8_t *cr = pk_job_row(&jobs[2], yy, rows + 2 * row_bytes);
        pk_write_ycc_row(yc, cb, cr, dw, dh, yy, rows + 3 * row_bytes, output);
    }
    return PK_OK;
}
