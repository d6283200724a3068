/*
 * The last step of a view: 8-bit HWC rows written into a batch slot, as bytes or
 * as normalised floats (CHW or HWC), optionally mirrored left to right.
 *
 * Floats are v * scale[c] + offset[c] with scale = 1 / (255 std) and offset =
 * -mean / std: a multiply then an add, never fused, so every path (SIMD or
 * scalar, mirrored or not) gives the same floats for the same byte.
 *
 * Working a row at a time lets the resampler hand each finished row over while
 * it is still in cache, and lets the horizontal flip cost nothing: the mirrored
 * row is written, never a flipped copy of the image.
 */
#include <string.h>

#include "CPixelKernels.h"

#pragma STDC FP_CONTRACT OFF

/* Row elements [from, w) the SIMD loops left, in plain C. */
static void pk_row_scalar(const uint8_t *in, int32_t w, int32_t from, int32_t ch, const pk_output *o,
                          size_t plane, size_t row_start) {
    const int flip = o->flip;
    for (int32_t x = from; x < w; x++) {
        const int32_t d = flip ? w - 1 - x : x;
        for (int c = 0; c < ch; c++) {
            const uint8_t v = in[(size_t)x * ch + c];
            switch (o->kind) {
            case PK_OUT_U8_HWC:
                ((uint8_t *)o->out)[(row_start + (size_t)d) * ch + c] = v;
                break;
            case PK_OUT_F32_CHW:
                ((float *)o->out)[c * plane + row_start + (size_t)d] = (float)v * o->scale[c] + o->offset[c];
                break;
            default:
                ((float *)o->out)[(row_start + (size_t)d) * ch + c] = (float)v * o->scale[c] + o->offset[c];
                break;
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* 16 bytes of one channel to 16 floats at out (or mirrored: ending at out + 16). */
__attribute__((target("sse4.1")))
static inline void pk_store_plane16(__m128i v, __m128 s, __m128 o, float *out, int flip) {
    __m128 q[4];
    q[0] = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepu8_epi32(v)), s), o);
    q[1] = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_srli_si128(v, 4))), s), o);
    q[2] = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_srli_si128(v, 8))), s), o);
    q[3] = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_srli_si128(v, 12))), s), o);
    if (flip) {
        for (int k = 0; k < 2; k++) {
            const __m128 t = _mm_shuffle_ps(q[k], q[k], 0x1B);
            q[k] = _mm_shuffle_ps(q[3 - k], q[3 - k], 0x1B);
            q[3 - k] = t;
        }
    }
    /* Plain stores: streaming ones measured slower here (a slot's rows do not start
     * on cache lines, so they flush partial lines). */
    for (int k = 0; k < 4; k++) _mm_storeu_ps(out + 4 * k, q[k]);
}

/* Where the 16 elements starting at x go in a row of w (mirrored: the 16 ending at w - x). */
static inline size_t pk_dest16(int32_t x, int32_t w, int flip) {
    return flip ? (size_t)(w - 16 - x) : (size_t)x;
}

/* 16 RGB pixels (48 bytes) into three 16-byte planes: pshufb picks each channel. */
__attribute__((target("sse4.1")))
static inline void pk_split_rgb16(const uint8_t *in, __m128i *R, __m128i *G, __m128i *B) {
    const __m128i r0 = _mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i r1 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1);
    const __m128i r2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13);
    const __m128i g0 = _mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i g1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1);
    const __m128i g2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14);
    const __m128i b0 = _mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i b1 = _mm_setr_epi8(-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1);
    const __m128i b2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15);
    const __m128i a = _mm_loadu_si128((const __m128i *)in);
    const __m128i b = _mm_loadu_si128((const __m128i *)(in + 16));
    const __m128i c = _mm_loadu_si128((const __m128i *)(in + 32));
    *R = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, r0), _mm_shuffle_epi8(b, r1)), _mm_shuffle_epi8(c, r2));
    *G = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, g0), _mm_shuffle_epi8(b, g1)), _mm_shuffle_epi8(c, g2));
    *B = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, b0), _mm_shuffle_epi8(b, b1)), _mm_shuffle_epi8(c, b2));
}

/* One RGB row to three float planes, 16 pixels per step. */
__attribute__((target("sse4.1")))
static int32_t pk_row_chw_rgb_sse41(const uint8_t *in, int32_t w, float *r, size_t plane, const pk_output *o) {
    const __m128 s0 = _mm_set1_ps(o->scale[0]), s1 = _mm_set1_ps(o->scale[1]), s2 = _mm_set1_ps(o->scale[2]);
    const __m128 o0 = _mm_set1_ps(o->offset[0]), o1 = _mm_set1_ps(o->offset[1]), o2 = _mm_set1_ps(o->offset[2]);
    int32_t x = 0;
    for (; x + 16 <= w; x += 16) {
        __m128i R, G, B;
        pk_split_rgb16(in + 3 * x, &R, &G, &B);
        const size_t d = pk_dest16(x, w, o->flip);
        pk_store_plane16(R, s0, o0, r + d, o->flip);
        pk_store_plane16(G, s1, o1, r + plane + d, o->flip);
        pk_store_plane16(B, s2, o2, r + 2 * plane + d, o->flip);
    }
    return x;
}

__attribute__((target("sse4.1")))
static int32_t pk_row_gray_sse41(const uint8_t *in, int32_t w, float *r, const pk_output *o) {
    const __m128 s = _mm_set1_ps(o->scale[0]), off = _mm_set1_ps(o->offset[0]);
    int32_t x = 0;
    for (; x + 16 <= w; x += 16) {
        pk_store_plane16(_mm_loadu_si128((const __m128i *)(in + x)), s, off, r + pk_dest16(x, w, o->flip), o->flip);
    }
    return x;
}
#endif

void pk_write_row(const uint8_t *in, int32_t w, int32_t h, int32_t ch, int32_t y, const pk_output *o) {
    const size_t row_start = (size_t)y * (size_t)w;
    if (o->kind == PK_OUT_U8_HWC) {
        uint8_t *dst = (uint8_t *)o->out + row_start * ch;
        if (!o->flip) {
            memcpy(dst, in, (size_t)w * ch);
        } else if (ch == 3) {
            for (int32_t x = 0; x < w; x++) {
                const uint8_t *p = in + 3 * (size_t)x;
                uint8_t *q = dst + 3 * (size_t)(w - 1 - x);
                q[0] = p[0]; q[1] = p[1]; q[2] = p[2];
            }
        } else {
            pk_row_scalar(in, w, 0, ch, o, (size_t)w * (size_t)h, row_start);
        }
        return;
    }
    int32_t done = 0;
#if defined(__x86_64__)
    if (o->kind == PK_OUT_F32_CHW && __builtin_cpu_supports("sse4.1")) {
        float *r = (float *)o->out + row_start;
        if (ch == 3) done = pk_row_chw_rgb_sse41(in, w, r, (size_t)w * (size_t)h, o);
        else if (ch == 1) done = pk_row_gray_sse41(in, w, r, o);
    } else if (o->kind == PK_OUT_F32_HWC && ch == 1 && __builtin_cpu_supports("sse4.1")) {
        done = pk_row_gray_sse41(in, w, (float *)o->out + row_start, o);
    }
#endif
    pk_row_scalar(in, w, done, ch, o, (size_t)w * (size_t)h, row_start);
}

/* libjpeg's YCbCr to RGB (jdcolor.c, build_ycc_rgb_table): FIX(c) = c * 65536 rounded. */
#define PK_FIX_1_40200 91881
#define PK_FIX_1_77200 116130
#define PK_FIX_0_71414 46802
#define PK_FIX_0_34414 22554

static inline uint8_t pk_clamp255(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

static void pk_ycc_scalar(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int32_t from, int32_t w,
                          uint8_t *r, uint8_t *g, uint8_t *b) {
    for (int32_t x = from; x < w; x++) {
        const int yy = y[x], u = cb[x] - 128, v = cr[x] - 128;
        /* >> of a negative int is arithmetic on every compiler noisy builds with, as libjpeg assumes. */
        r[x] = pk_clamp255(yy + ((PK_FIX_1_40200 * v + 32768) >> 16));
        g[x] = pk_clamp255(yy + ((-PK_FIX_0_34414 * u - PK_FIX_0_71414 * v + 32768) >> 16));
        b[x] = pk_clamp255(yy + ((PK_FIX_1_77200 * u + 32768) >> 16));
    }
}

#if defined(__x86_64__)
/* The same arithmetic for 8 pixels in 32-bit lanes: R, G, B, not yet clamped. */
__attribute__((target("avx2")))
static inline void pk_ycc8(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, __m256i rgb[3]) {
    const __m256i c128 = _mm256_set1_epi32(128), half = _mm256_set1_epi32(32768);
    const __m256i Y = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)y));
    const __m256i U = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)cb)), c128);
    const __m256i V = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)cr)), c128);
    const __m256i kr = _mm256_set1_epi32(PK_FIX_1_40200), kb = _mm256_set1_epi32(PK_FIX_1_77200);
    const __m256i kgu = _mm256_set1_epi32(-PK_FIX_0_34414), kgv = _mm256_set1_epi32(-PK_FIX_0_71414);
    rgb[0] = _mm256_add_epi32(Y, _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(V, kr), half), 16));
    rgb[1] = _mm256_add_epi32(Y, _mm256_srai_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_mullo_epi32(U, kgu), _mm256_mullo_epi32(V, kgv)), half), 16));
    rgb[2] = _mm256_add_epi32(Y, _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(U, kb), half), 16));
}

/* Rows of R, G and B bytes, 8 pixels per step; returns how many it converted. */
__attribute__((target("avx2")))
static int32_t pk_ycc_avx2(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int32_t w,
                           uint8_t *r, uint8_t *g, uint8_t *b) {
    uint8_t *outs[3] = {r, g, b};
    int32_t x = 0;
    for (; x + 8 <= w; x += 8) {
        __m256i v[3];
        pk_ycc8(y + x, cb + x, cr + x, v);
        for (int c = 0; c < 3; c++) {
            const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v[c]), _mm256_extracti128_si256(v[c], 1));
            _mm_storel_epi64((__m128i *)(outs[c] + x), _mm_packus_epi16(w16, w16));  /* clamps to 0..255 */
        }
    }
    return x;
}

/*
 * The conversion and the float CHW write in one step, 8 pixels at a time: each
 * channel's clamped integer goes straight to float, v * scale + offset, the same
 * floats as packing it to a byte and writing that (pk_store_plane16). Returns how
 * many pixels it wrote.
 */
__attribute__((target("avx2")))
static int32_t pk_ycc_chw_avx2(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int32_t w,
                               float *out, size_t plane, const pk_output *o) {
    const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
    const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    __m256 scale[3], offset[3];
    for (int c = 0; c < 3; c++) {
        scale[c] = _mm256_set1_ps(o->scale[c]);
        offset[c] = _mm256_set1_ps(o->offset[c]);
    }
    int32_t x = 0;
    for (; x + 8 <= w; x += 8) {
        __m256i v[3];
        pk_ycc8(y + x, cb + x, cr + x, v);
        const size_t d = o->flip ? (size_t)(w - 8 - x) : (size_t)x;
        for (int c = 0; c < 3; c++) {
            const __m256i clamped = _mm256_min_epi32(_mm256_max_epi32(v[c], zero), top);
            __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(clamped), scale[c]), offset[c]);
            if (o->flip) f = _mm256_permutevar8x32_ps(f, reverse);
            _mm256_storeu_ps(out + (size_t)c * plane + d, f);
        }
    }
    return x;
}
#endif

void pk_write_ycc_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int32_t w, int32_t h, int32_t row,
                      uint8_t *scratch, const pk_output *o) {
    uint8_t *r = scratch, *g = scratch + w, *b = scratch + 2 * (size_t)w;
    if (o->kind == PK_OUT_F32_CHW) {
        const size_t plane = (size_t)w * (size_t)h, row_start = (size_t)row * (size_t)w;
        float *out = (float *)o->out + row_start;
        int32_t done = 0;
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2")) done = pk_ycc_chw_avx2(y, cb, cr, w, out, plane, o);
#endif
        pk_ycc_scalar(y, cb, cr, done, w, r, g, b);
        const uint8_t *rgb[3] = {r, g, b};
        for (int c = 0; c < 3; c++) {
            for (int32_t x = done; x < w; x++) {
                const size_t d = o->flip ? (size_t)(w - 1 - x) : (size_t)x;
                out[(size_t)c * plane + d] = (float)rgb[c][x] * o->scale[c] + o->offset[c];
            }
        }
        return;
    }
    int32_t done = 0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) done = pk_ycc_avx2(y, cb, cr, w, r, g, b);
#endif
    pk_ycc_scalar(y, cb, cr, done, w, r, g, b);
    uint8_t *packed = scratch + 3 * (size_t)w;
    for (int32_t x = 0; x < w; x++) {
        packed[3 * x] = r[x];
        packed[3 * x + 1] = g[x];
        packed[3 * x + 2] = b[x];
    }
    pk_write_row(packed, w, h, 3, row, o);
}

void pk_write_output(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const pk_output *o) {
    for (int32_t y = 0; y < h; y++) pk_write_row(in + (size_t)y * w * ch, w, h, ch, y, o);
}
