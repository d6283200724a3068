/*
 * Direct 3x3 convolutions (stride 1, zero padding 1, NHWC) on AVX2 + FMA, or
 * AVX-512 where the CPU has it (CONV3X3_KERNELS below writes both).
 *
 * Why not im2col + GEMM: a residual block's convolutions are 16 or 32 channels
 * wide, so the GEMM of the im2col matrix [N*H*W, 9*Cin] by [9*Cin, Cout] is a tall
 * product only 16-32 columns wide. OpenBLAS spends as long packing the 9x-larger
 * im2col matrix as multiplying it (BENCHMARKS.md, "deep student profile"). Here
 * the input is copied once into a zero-bordered image, and every kernel keeps a
 * tile of 8 vector accumulators in registers (P pixels x V vectors of 8 output
 * channels, P * V = 8) while it walks the 9 taps and the input channels, reading
 * the input and weights straight from cache.
 *
 * Each output value is summed in a fixed order (taps, then input channels) that
 * depends only on its own pixel, never on the batch or the thread: the direct
 * path is batch-invariant by construction.
 */
#include "tensor_kernels.h"
#include <string.h>
#include <immintrin.h>

int tk_conv3x3_direct_supported(ptrdiff_t cin, ptrdiff_t cout) {
    /* Output vectors of 8 channels; the input gradient runs the kernel with the roles swapped. */
    return cin > 0 && cout > 0 && cin % 8 == 0 && cout % 8 == 0 && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}

void tk_pad1(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *dst) {
    const ptrdiff_t wp = w + 2, row = wp * c;
    for (ptrdiff_t img = 0; img < n; img++) {
        float *base = dst + img * (h + 2) * row;
        memset(base, 0, sizeof(float) * row);
        for (ptrdiff_t y = 0; y < h; y++) {
            float *d = base + (y + 1) * row;
            memset(d, 0, sizeof(float) * c);
            memcpy(d + c, src + (img * h + y) * w * c, sizeof(float) * w * c);
            memset(d + (w + 1) * c, 0, sizeof(float) * c);
        }
        memset(base + (h + 1) * row, 0, sizeof(float) * row);
    }
}

void tk_conv3x3_flip(const float *wt, ptrdiff_t cin, ptrdiff_t cout, float *out) {
    for (ptrdiff_t tap = 0; tap < 9; tap++)
        for (ptrdiff_t ci = 0; ci < cin; ci++)
            for (ptrdiff_t co = 0; co < cout; co++)
                out[((8 - tap) * cout + co) * cin + ci] = wt[(tap * cin + ci) * cout + co];
}

/* The kernels, written once for a vector type of L floats and stamped out for AVX2
   (L = 8) and AVX-512 (L = 16) below. A tile holds P pixels (forward) or P input
   channels (weight gradient) by V <= 2 vectors of output channels in registers.

   Each output value adds the same products in the same order whatever L, P and V are
   (taps, then input channels; for the weight gradient, images, rows, then pixels),
   each with one fused multiply-add, so AVX-512 and AVX2 give the same bits and a model
   trains identically on either (KernelCloneTests compiles this file and checks that).
   AVX-512 covers twice the channels per instruction, and its 32 registers hold tiles
   of up to 16 accumulators; on the 2-core Xeon of BENCHMARKS.md its kernels ran
   1.9-2.0x as fast as AVX2 at 16 channels, 4-5x at 32 (each kernel timed alone).

   FP2 / FP1: the forward tile's pixels with 2 vectors / 1 vector (then 4, then 1 at
   the row's end); WP2 / WP1: the weight-gradient tile's input channels likewise. */
#define CONV3X3_KERNELS(ISA, TARGET, VEC, L, LOAD, STORE, ZERO, SET1, FMA, FP2, FP1, WP2, WP1)             \
    /* out[P pixels][V vectors at co] = bias (or 0) + sum over taps and input channels. */               \
    __attribute__((target(TARGET), always_inline))                                                        \
    static inline void fwd_tile_##ISA(const float *const rows[3], ptrdiff_t x, ptrdiff_t cin,           \
                                      const float *wt, ptrdiff_t cout, ptrdiff_t co, const float *bias, \
                                      float *orow, const int P, const int V) {                          \
        VEC acc[16];                                                                                      \
        for (int p = 0; p < P; p++)                                                                       \
            for (int v = 0; v < V; v++) acc[p * V + v] = bias ? LOAD(bias + co + L * v) : ZERO();         \
        for (int ky = 0; ky < 3; ky++) {                                                                  \
            for (int kx = 0; kx < 3; kx++) {                                                              \
                const float *src = rows[ky] + (x + kx) * cin;                                             \
                const float *wk = wt + (ptrdiff_t)(ky * 3 + kx) * cin * cout + co;                        \
                for (ptrdiff_t ci = 0; ci < cin; ci++) {                                                  \
                    VEC wv[2];                                                                            \
                    for (int v = 0; v < V; v++) wv[v] = LOAD(wk + ci * cout + L * v);                     \
                    for (int p = 0; p < P; p++) {                                                         \
                        const VEC b = SET1(src[p * cin + ci]);                                            \
                        for (int v = 0; v < V; v++) acc[p * V + v] = FMA(b, wv[v], acc[p * V + v]);       \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
        for (int p = 0; p < P; p++)                                                                       \
            for (int v = 0; v < V; v++) STORE(orow + (x + p) * cout + co + L * v, acc[p * V + v]);        \
    }                                                                                                     \
                                                                                                          \
    /* cout a multiple of L. */                                                                           \
    __attribute__((target(TARGET)))                                                                       \
    static void forward_##ISA(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,      \
                              const float *wt, ptrdiff_t cout, const float *bias, float *out) {           \
        const ptrdiff_t row = (w + 2) * cin;                                                              \
        for (ptrdiff_t img = 0; img < n; img++) {                                                         \
            for (ptrdiff_t y = 0; y < h; y++) {                                                           \
                const float *top = xp + (img * (h + 2) + y) * row;                                        \
                const float *const rows[3] = {top, top + row, top + 2 * row};                             \
                float *orow = out + (img * h + y) * w * cout;                                             \
                ptrdiff_t co = 0;                                                                         \
                for (; co + 2 * L <= cout; co += 2 * L) {                                                 \
                    ptrdiff_t x = 0;                                                                      \
                    for (; x + FP2 <= w; x += FP2) fwd_tile_##ISA(rows, x, cin, wt, cout, co, bias, orow, FP2, 2); \
                    for (; x < w; x++) fwd_tile_##ISA(rows, x, cin, wt, cout, co, bias, orow, 1, 2);      \
                }                                                                                         \
                for (; co < cout; co += L) {                                                              \
                    ptrdiff_t x = 0;                                                                      \
                    for (; x + FP1 <= w; x += FP1) fwd_tile_##ISA(rows, x, cin, wt, cout, co, bias, orow, FP1, 1); \
                    for (; x + 4 <= w; x += 4) fwd_tile_##ISA(rows, x, cin, wt, cout, co, bias, orow, 4, 1); \
                    for (; x < w; x++) fwd_tile_##ISA(rows, x, cin, wt, cout, co, bias, orow, 1, 1);      \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
    }                                                                                                     \
                                                                                                          \
    /* dw[tap][ci .. ci+P][co .. co+L*V] += sum over the row's pixels of x * dy. */                       \
    __attribute__((target(TARGET), always_inline))                                                        \
    static inline void wgrad_tile_##ISA(const float *src, const float *dyrow, ptrdiff_t w, ptrdiff_t cin, \
                                        ptrdiff_t ci, ptrdiff_t cout, ptrdiff_t co, float *dwk,           \
                                        const int P, const int V) {                                       \
        VEC acc[16];                                                                                      \
        for (int p = 0; p < P; p++)                                                                       \
            for (int v = 0; v < V; v++) acc[p * V + v] = LOAD(dwk + (ci + p) * cout + co + L * v);        \
        for (ptrdiff_t x = 0; x < w; x++) {                                                               \
            VEC d[2];                                                                                     \
            for (int v = 0; v < V; v++) d[v] = LOAD(dyrow + x * cout + co + L * v);                       \
            for (int p = 0; p < P; p++) {                                                                 \
                const VEC b = SET1(src[x * cin + ci + p]);                                                \
                for (int v = 0; v < V; v++) acc[p * V + v] = FMA(b, d[v], acc[p * V + v]);               \
            }                                                                                             \
        }                                                                                                 \
        for (int p = 0; p < P; p++)                                                                       \
            for (int v = 0; v < V; v++) STORE(dwk + (ci + p) * cout + co + L * v, acc[p * V + v]);        \
    }                                                                                                     \
                                                                                                          \
    /* cout a multiple of L. */                                                                           \
    __attribute__((target(TARGET)))                                                                       \
    static void weight_grad_##ISA(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,  \
                                  const float *dy, ptrdiff_t cout, float *dw) {                           \
        const ptrdiff_t row = (w + 2) * cin;                                                              \
        for (ptrdiff_t img = 0; img < n; img++) {                                                         \
            for (ptrdiff_t y = 0; y < h; y++) {                                                           \
                const float *dyrow = dy + (img * h + y) * w * cout;                                       \
                for (int ky = 0; ky < 3; ky++) {                                                          \
                    const float *srow = xp + (img * (h + 2) + y + ky) * row;                              \
                    for (int kx = 0; kx < 3; kx++) {                                                      \
                        const float *src = srow + kx * cin;                                               \
                        float *dwk = dw + (ptrdiff_t)(ky * 3 + kx) * cin * cout;                          \
                        ptrdiff_t co = 0;                                                                 \
                        for (; co + 2 * L <= cout; co += 2 * L) {                                         \
                            ptrdiff_t ci = 0;                                                             \
                            for (; ci + WP2 <= cin; ci += WP2) wgrad_tile_##ISA(src, dyrow, w, cin, ci, cout, co, dwk, WP2, 2); \
                            for (; ci < cin; ci++) wgrad_tile_##ISA(src, dyrow, w, cin, ci, cout, co, dwk, 1, 2); \
                        }                                                                                 \
                        for (; co < cout; co += L) {                                                      \
                            ptrdiff_t ci = 0;                                                             \
                            for (; ci + WP1 <= cin; ci += WP1) wgrad_tile_##ISA(src, dyrow, w, cin, ci, cout, co, dwk, WP1, 1); \
                            for (; ci + 8 <= cin; ci += 8) wgrad_tile_##ISA(src, dyrow, w, cin, ci, cout, co, dwk, 8, 1); \
                            for (; ci < cin; ci++) wgrad_tile_##ISA(src, dyrow, w, cin, ci, cout, co, dwk, 1, 1); \
                        }                                                                                 \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
    }

CONV3X3_KERNELS(avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_setzero_ps, _mm256_set1_ps,
                _mm256_fmadd_ps, 4, 8, 4, 8)
CONV3X3_KERNELS(avx512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_setzero_ps, _mm512_set1_ps,
                _mm512_fmadd_ps, 7, 14, 8, 16)

void tk_conv3x3_forward_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                             const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    forward_avx2(xp, n, h, w, cin, wt, cout, bias, out);
}

/* Output channels not a multiple of 16 (8, 24) are left to the AVX2 kernels. */
void tk_conv3x3_forward_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                               const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    (cout % 16 ? forward_avx2 : forward_avx512)(xp, n, h, w, cin, wt, cout, bias, out);
}

void tk_conv3x3_weight_grad_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                 const float *dy, ptrdiff_t cout, float *dw) {
    weight_grad_avx2(xp, n, h, w, cin, dy, cout, dw);
}

void tk_conv3x3_weight_grad_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                   const float *dy, ptrdiff_t cout, float *dw) {
    (cout % 16 ? weight_grad_avx2 : weight_grad_avx512)(xp, n, h, w, cin, dy, cout, dw);
}

void tk_conv3x3_forward(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                        const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    (__builtin_cpu_supports("avx512f") ? tk_conv3x3_forward_avx512 : tk_conv3x3_forward_avx2)(xp, n, h, w, cin, wt, cout, bias, out);
}

void tk_conv3x3_weight_grad(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                            const float *dy, ptrdiff_t cout, float *dw) {
    (__builtin_cpu_supports("avx512f") ? tk_conv3x3_weight_grad_avx512 : tk_conv3x3_weight_grad_avx2)(xp, n, h, w, cin, dy, cout, dw);
}
