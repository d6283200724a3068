/*
 * Pixel loops for augmentation, with PIL's arithmetic: the point ops
 * (ImageOps) go through 256-entry tables, ImageEnhance's blends use PIL's float
 * maths and truncation, the SMOOTH filter and affine transforms follow
 * Pillow's Filter.c and Geometry.c. Images are tightly packed HWC, 1 or 3 channels.
 */
#include <math.h>
#include <string.h>
#include "CPixelKernels.h"

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
void pk_smooth(const uint8_t *in, uint8_t *out, int32_t w, int32_t h, int32_t ch) {
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
void pk_affine_bilinear(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const double m[6],
                        uint8_t fill, uint8_t *out) {
    const size_t stride = (size_t)w * (size_t)ch;
    for (int y = 0; y < h; y++) {
        uint8_t *o = out + stride * (size_t)y;
        for (int x = 0; x < w; x++, o += ch) {
            double xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
            double yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
            if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) {
                for (int c = 0; c < ch; c++) o[c] = fill;
                continue;
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

/*
 * HWC bytes to CHW floats, v * scale[c] + offset[c] with scale = 1 / (255 std) and
 * offset = -mean / std. A multiply then an add, never fused, so every path
 * (SIMD or scalar) gives the same floats.
 */
#pragma STDC FP_CONTRACT OFF
static void pk_to_float_chw_scalar(const uint8_t *in, size_t from, size_t plane, int32_t ch,
                                   const float *scale, const float *offset, float *out) {
    for (size_t i = from; i < plane; i++) {
        for (int c = 0; c < ch; c++) out[c * plane + i] = (float)in[i * ch + c] * scale[c] + offset[c];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("sse4.1")))
static inline void pk_store_plane16(__m128i v, __m128 s, __m128 o, float *out) {
    __m128i lo = _mm_cvtepu8_epi32(v);
    __m128i l1 = _mm_cvtepu8_epi32(_mm_srli_si128(v, 4));
    __m128i l2 = _mm_cvtepu8_epi32(_mm_srli_si128(v, 8));
    __m128i l3 = _mm_cvtepu8_epi32(_mm_srli_si128(v, 12));
    _mm_storeu_ps(out, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(lo), s), o));
    _mm_storeu_ps(out + 4, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(l1), s), o));
    _mm_storeu_ps(out + 8, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(l2), s), o));
    _mm_storeu_ps(out + 12, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(l3), s), o));
}

/* 16 RGB pixels (48 bytes) per step: pshufb splits them into three planes. */
__attribute__((target("sse4.1")))
static size_t pk_to_float_chw_rgb_sse41(const uint8_t *in, size_t plane, const float *scale,
                                        const float *offset, float *out) {
    const __m128i r0 = _mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i r1 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1);
    const __m128i r2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13);
    const __m128i g0 = _mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i g1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1);
    const __m128i g2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14);
    const __m128i b0 = _mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i b1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1);
    const __m128i b2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15);
    const __m128 s0 = _mm_set1_ps(scale[0]), s1 = _mm_set1_ps(scale[1]), s2 = _mm_set1_ps(scale[2]);
    const __m128 o0 = _mm_set1_ps(offset[0]), o1 = _mm_set1_ps(offset[1]), o2 = _mm_set1_ps(offset[2]);
    size_t i = 0;
    for (; i + 16 <= plane; i += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(in + 3 * i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(in + 3 * i + 16));
        const __m128i c = _mm_loadu_si128((const __m128i *)(in + 3 * i + 32));
        __m128i R = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, r0), _mm_shuffle_epi8(b, r1)), _mm_shuffle_epi8(c, r2));
        __m128i G = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, g0), _mm_shuffle_epi8(b, g1)), _mm_shuffle_epi8(c, g2));
        __m128i B = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, b0), _mm_shuffle_epi8(b, b1)), _mm_shuffle_epi8(c, b2));
        pk_store_plane16(R, s0, o0, out + i);
        pk_store_plane16(G, s1, o1, out + plane + i);
        pk_store_plane16(B, s2, o2, out + 2 * plane + i);
    }
    return i;
}

__attribute__((target("sse4.1")))
static size_t pk_to_float_gray_sse41(const uint8_t *in, size_t plane, float scale, float offset, float *out) {
    const __m128 s = _mm_set1_ps(scale), o = _mm_set1_ps(offset);
    size_t i = 0;
    for (; i + 16 <= plane; i += 16) pk_store_plane16(_mm_loadu_si128((const __m128i *)(in + i)), s, o, out + i);
    return i;
}
#endif

void pk_to_float_chw(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const float *scale,
                     const float *offset, float *out) {
    const size_t plane = (size_t)w * (size_t)h;
    size_t done = 0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.1")) {
        if (ch == 3) done = pk_to_float_chw_rgb_sse41(in, plane, scale, offset, out);
        else if (ch == 1) done = pk_to_float_gray_sse41(in, plane, scale[0], offset[0], out);
    }
#endif
    pk_to_float_chw_scalar(in, done, plane, ch, scale, offset, out);
}

/* HWC bytes to HWC floats with the same arithmetic as pk_to_float_chw (the CPU
 * trainer's input layout). Gray is one plane, so it shares the CHW path. */
void pk_to_float_hwc(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const float *scale,
                     const float *offset, float *out) {
    if (ch == 1) { pk_to_float_chw(in, w, h, 1, scale, offset, out); return; }
    const size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < ch; c++) out[i * ch + c] = (float)in[i * ch + c] * scale[c] + offset[c];
    }
}
