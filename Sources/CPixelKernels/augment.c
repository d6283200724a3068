/*
 * Pixel loops for augmentation, with PIL's arithmetic: the point ops
 * (ImageOps) go through 256-entry tables, ImageEnhance's blends use PIL's float
 * maths and truncation, the SMOOTH filter and affine transforms follow
 * Pillow's Filter.c and Geometry.c. Images are tightly packed HWC, 1 or 3 channels.
 */
#include <math.h>
#include <string.h>
#include "CPixelKernels.h"
#include "hot.h"

/* Every path computes the same values: no multiply-add is ever fused. */
#pragma STDC FP_CONTRACT OFF

void pk_histogram(const uint8_t *px, size_t pixels, int32_t ch, uint32_t *hist) {
    memset(hist, 0, sizeof(uint32_t) * 256 * (size_t)ch);
    if (ch == 1) {
        for (size_t i = 0; i < pixels; i++) hist[px[i]]++;
        return;
    }
    for (size_t i = 0; i < pixels; i++) {
        for (int c = 0; c < ch; c++) hist[c * 256 + px[i * ch + c]]++;
    }
}

void pk_apply_lut(uint8_t *px, size_t pixels, int32_t ch, const uint8_t *luts) {
    if (ch == 1) {
        for (size_t i = 0; i < pixels; i++) px[i] = luts[px[i]];
        return;
    }
    for (size_t i = 0; i < pixels; i++) {
        for (int c = 0; c < ch; c++) px[i * ch + c] = luts[c * 256 + px[i * ch + c]];
    }
}

/* Pillow's rgb2l: ITU-R 601-2 luma in 16-bit fixed point. */
void pk_rgb_to_gray(const uint8_t *rgb, size_t pixels, uint8_t *gray) {
    for (size_t i = 0; i < pixels; i++) {
        const uint8_t *p = rgb + 3 * i;
        gray[i] = (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
    }
}

void pk_gray_to_rgb(const uint8_t *gray, size_t pixels, uint8_t *rgb) {
    for (size_t i = 0; i < pixels; i++) {
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
    }
}

static inline uint8_t pk_blend_one(int a, int b, float alpha) {
    float t = (float)a + alpha * (float)(b - a);
    if (t <= 0.0f) return 0;
    if (t >= 255.0f) return 255;
    return (uint8_t)t;
}

/* Image.blend(degenerate, image, alpha), in place on image. */
void pk_blend(const uint8_t *degenerate, uint8_t *image, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) image[i] = pk_blend_one(degenerate[i], image[i], alpha);
}

/* Image.blend against a constant image (Brightness: 0, Contrast: the mean). */
void pk_blend_constant(uint8_t value, uint8_t *image, size_t n, float alpha) {
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = pk_blend_one(value, v, alpha);
    for (size_t i = 0; i < n; i++) image[i] = lut[image[i]];
}

/* ImageEnhance.Color's degenerate: luma replicated, blended per channel. */
void pk_blend_gray(uint8_t *rgb, size_t pixels, float alpha) {
    for (size_t i = 0; i < pixels; i++) {
        uint8_t *p = rgb + 3 * i;
        int l = (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
        p[0] = pk_blend_one(l, p[0], alpha);
        p[1] = pk_blend_one(l, p[1], alpha);
        p[2] = pk_blend_one(l, p[2], alpha);
    }
}

/*
 * ImageFilter.SMOOTH (3x3, weights 1 with 5 in the centre, scale 13) as
 * Pillow's ImagingFilter3x3 computes it: float taps, +0.5 rounding, border rows
 * and columns copied from the input.
 */
PK_HOT void pk_smooth(const uint8_t *in, uint8_t *out, int32_t w, int32_t h, int32_t ch) {
    const size_t stride = (size_t)w * (size_t)ch;
    if (w < 3 || h < 3) {
        memcpy(out, in, stride * (size_t)h);
        return;
    }
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    memcpy(out, in, stride);
    memcpy(out + stride * (size_t)(h - 1), in + stride * (size_t)(h - 1), stride);
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *r_1 = in + stride * (size_t)(y - 1);
        const uint8_t *r0 = in + stride * (size_t)y;
        const uint8_t *r1 = in + stride * (size_t)(y + 1);
        uint8_t *o = out + stride * (size_t)y;
        for (int c = 0; c < ch; c++) {
            o[c] = r0[c];
            o[stride - ch + c] = r0[stride - ch + c];
        }
        for (int x = 1; x < w - 1; x++) {
            for (int c = 0; c < ch; c++) {
                const size_t l = (size_t)(x - 1) * ch + c, m = (size_t)x * ch + c, r = (size_t)(x + 1) * ch + c;
                float ss = 0.5f;
                ss += (float)r1[l] * k1 + (float)r1[m] * k1 + (float)r1[r] * k1;
                ss += (float)r0[l] * k1 + (float)r0[m] * k5 + (float)r0[r] * k1;
                ss += (float)r_1[l] * k1 + (float)r_1[m] * k1 + (float)r_1[r] * k1;
                o[m] = ss <= 0.0f ? 0 : (ss >= 255.0f ? 255 : (uint8_t)ss);
            }
        }
    }
}

/*
 * Image.transform(size, AFFINE, m, BILINEAR, fillcolor=fill): each output pixel
 * centre (x+.5, y+.5) maps through m to an input point, sampled bilinearly
 * with edge clamping; points outside the input take the fill.
 */
static inline void pk_affine_pixel(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const double m[6],
                                   uint8_t fill, int x, int y, uint8_t *o) {
    const size_t stride = (size_t)w * (size_t)ch;
    double xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
    double yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
    if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) {
        for (int c = 0; c < ch; c++) o[c] = fill;
        return;
    }
    xin -= 0.5;
    yin -= 0.5;
    int xi = (int)floor(xin), yi = (int)floor(yin);
    double dx = xin - xi, dy = yin - yi;
    int x0 = xi < 0 ? 0 : (xi < w ? xi : w - 1);
    int x1 = xi + 1 < 0 ? 0 : (xi + 1 < w ? xi + 1 : w - 1);
    int y0 = yi < 0 ? 0 : (yi < h ? yi : h - 1);
    const uint8_t *row0 = in + stride * (size_t)y0;
    const int has_y1 = yi + 1 >= 0 && yi + 1 < h;
    const uint8_t *row1 = has_y1 ? in + stride * (size_t)(yi + 1) : row0;
    for (int c = 0; c < ch; c++) {
        double a = row0[x0 * ch + c], b = row0[x1 * ch + c];
        double v1 = a + (b - a) * dx;
        double v2 = v1;
        if (has_y1) {
            double a2 = row1[x0 * ch + c], b2 = row1[x1 * ch + c];
            v2 = a2 + (b2 - a2) * dx;
        }
        v1 = v1 + (v2 - v1) * dy;
        o[c] = (uint8_t)v1;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/*
 * Four output pixels of one row with AVX2 doubles: the same operations in the same
 * order as pk_affine_pixel (no FMA: AVX2 does not bring it), so the same bytes.
 * Returns 0, having written nothing, unless all four sample strictly inside the
 * image (no fill, no clamp), which is where rotations and shears spend their time.
 */
__attribute__((target("avx2")))
static int pk_affine_four_avx2(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const double m[6],
                               int x, int y, uint8_t *o) {
    const size_t stride = (size_t)w * (size_t)ch;
    const __m256d X = _mm256_add_pd(_mm256_setr_pd(x, x + 1, x + 2, x + 3), _mm256_set1_pd(0.5));
    const double yh = y + 0.5;
    __m256d xin = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(m[0]), X), _mm256_set1_pd(m[1] * yh)),
                                _mm256_set1_pd(m[2]));
    __m256d yin = _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(m[3]), X), _mm256_set1_pd(m[4] * yh)),
                                _mm256_set1_pd(m[5]));
    xin = _mm256_sub_pd(xin, _mm256_set1_pd(0.5));
    yin = _mm256_sub_pd(yin, _mm256_set1_pd(0.5));
    const __m256d fx = _mm256_floor_pd(xin), fy = _mm256_floor_pd(yin);
    /* Strictly inside: 0 <= floor, floor + 1 <= size - 1 (then the range test passes too). */
    const __m256d lo = _mm256_setzero_pd();
    const __m256d inside = _mm256_and_pd(
        _mm256_and_pd(_mm256_cmp_pd(fx, lo, _CMP_GE_OQ), _mm256_cmp_pd(fx, _mm256_set1_pd(w - 2), _CMP_LE_OQ)),
        _mm256_and_pd(_mm256_cmp_pd(fy, lo, _CMP_GE_OQ), _mm256_cmp_pd(fy, _mm256_set1_pd(h - 2), _CMP_LE_OQ)));
    if (_mm256_movemask_pd(inside) != 15) return 0;
    const __m256d dx = _mm256_sub_pd(xin, fx), dy = _mm256_sub_pd(yin, fy);
    int32_t xi[4], yi[4];
    _mm_storeu_si128((__m128i *)xi, _mm256_cvttpd_epi32(fx));
    _mm_storeu_si128((__m128i *)yi, _mm256_cvttpd_epi32(fy));
    const uint8_t *p[4];
    for (int k = 0; k < 4; k++) p[k] = in + stride * (size_t)yi[k] + (size_t)xi[k] * ch;
    for (int c = 0; c < ch; c++) {
        const __m256d a = _mm256_setr_pd(p[0][c], p[1][c], p[2][c], p[3][c]);
        const __m256d b = _mm256_setr_pd(p[0][ch + c], p[1][ch + c], p[2][ch + c], p[3][ch + c]);
        const __m256d a2 = _mm256_setr_pd(p[0][stride + c], p[1][stride + c], p[2][stride + c], p[3][stride + c]);
        const __m256d b2 = _mm256_setr_pd(p[0][stride + ch + c], p[1][stride + ch + c], p[2][stride + ch + c],
                                          p[3][stride + ch + c]);
        const __m256d v1 = _mm256_add_pd(a, _mm256_mul_pd(_mm256_sub_pd(b, a), dx));
        const __m256d v2 = _mm256_add_pd(a2, _mm256_mul_pd(_mm256_sub_pd(b2, a2), dx));
        const __m256d v = _mm256_add_pd(v1, _mm256_mul_pd(_mm256_sub_pd(v2, v1), dy));
        int32_t q[4];
        _mm_storeu_si128((__m128i *)q, _mm256_cvttpd_epi32(v));
        for (int k = 0; k < 4; k++) o[k * ch + c] = (uint8_t)q[k];
    }
    return 1;
}
#endif

PK_HOT void pk_affine_bilinear(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const double m[6],
                               uint8_t fill, uint8_t *out) {
    const size_t stride = (size_t)w * (size_t)ch;
    /* A whole-pixel translation samples every point at a pixel centre, weights 1 and 0:
     * rows are copies, and the points outside take the fill (the same bytes). */
    if (m[0] == 1.0 && m[1] == 0.0 && m[3] == 0.0 && m[4] == 1.0 && m[2] == floor(m[2]) && m[5] == floor(m[5]) &&
        fabs(m[2]) < 1e9 && fabs(m[5]) < 1e9) {
        const long tx = (long)m[2], ty = (long)m[5];
        for (long y = 0; y < h; y++) {
            uint8_t *o = out + stride * (size_t)y;
            const long sy = y + ty;
            long lo = -tx < 0 ? 0 : -tx, hi = w - tx > w ? w : w - tx;  /* x with 0 <= x + tx < w */
            if (sy < 0 || sy >= h || lo >= hi) { memset(o, fill, stride); continue; }
            if (lo > 0) memset(o, fill, (size_t)lo * ch);
            memcpy(o + (size_t)lo * ch, in + stride * (size_t)sy + (size_t)(lo + tx) * ch, (size_t)(hi - lo) * ch);
            if (hi < w) memset(o + (size_t)hi * ch, fill, (size_t)(w - hi) * ch);
        }
        return;
    }
#if defined(__x86_64__)
    const int wide = __builtin_cpu_supports("avx2");
#endif
    for (int y = 0; y < h; y++) {
        uint8_t *o = out + stride * (size_t)y;
        int x = 0;
#if defined(__x86_64__)
        if (wide) {
            for (; x + 4 <= w; x += 4) {
                if (pk_affine_four_avx2(in, w, h, ch, m, x, y, o + (size_t)x * ch)) continue;
                for (int k = 0; k < 4; k++) pk_affine_pixel(in, w, h, ch, m, fill, x + k, y, o + (size_t)(x + k) * ch);
            }
        }
#endif
        for (; x < w; x++) pk_affine_pixel(in, w, h, ch, m, fill, x, y, o + (size_t)x * ch);
    }
}

void pk_flip_horizontal(uint8_t *px, int32_t w, int32_t h, int32_t ch) {
    const size_t stride = (size_t)w * (size_t)ch;
    for (int y = 0; y < h; y++) {
        uint8_t *row = px + stride * (size_t)y;
        for (int l = 0, r = w - 1; l < r; l++, r--) {
            for (int c = 0; c < ch; c++) {
                uint8_t t = row[l * ch + c];
                row[l * ch + c] = row[r * ch + c];
                row[r * ch + c] = t;
            }
        }
    }
}

void pk_fill_rect(uint8_t *px, int32_t w, int32_t h, int32_t ch, int32_t x0, int32_t y0,
                  int32_t x1, int32_t y1, uint8_t value) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > w) x1 = w;
    if (y1 > h) y1 = h;
    if (x0 >= x1 || y0 >= y1) return;
    for (int y = y0; y < y1; y++) {
        memset(px + ((size_t)y * w + x0) * ch, value, (size_t)(x1 - x0) * ch);
    }
}

/* Copies the window (x0, y0, ow, oh) of in, which may reach past its edges, filling there. */
void pk_window(const uint8_t *in, int32_t w, int32_t h, int32_t ch, int32_t x0, int32_t y0,
               uint8_t *out, int32_t ow, int32_t oh, uint8_t fill) {
    const size_t ostride = (size_t)ow * ch;
    for (int y = 0; y < oh; y++) {
        uint8_t *o = out + ostride * (size_t)y;
        int sy = y0 + y;
        if (sy < 0 || sy >= h) { memset(o, fill, ostride); continue; }
        int lo = x0 < 0 ? -x0 : 0;
        int hi = x0 + ow > w ? w - x0 : ow;
        if (hi <= lo) { memset(o, fill, ostride); continue; }
        if (lo > 0) memset(o, fill, (size_t)lo * ch);
        memcpy(o + (size_t)lo * ch, in + ((size_t)sy * w + (x0 + lo)) * ch, (size_t)(hi - lo) * ch);
        if (hi < ow) memset(o + (size_t)hi * ch, fill, (size_t)(ow - hi) * ch);
    }
}
