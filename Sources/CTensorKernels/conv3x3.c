/*
 * Direct 3x3 convolutions (stride 1, zero padding 1, NHWC) on AVX2 + FMA, or
 * AVX-512 where the CPU has it (the end of this file).
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

/* out[P pixels][V vectors at co] = bias (or 0) + sum over taps and input channels. */
__attribute__((target("avx2,fma"), always_inline))
static inline void fwd_tile(const float *const rows[3], ptrdiff_t x, ptrdiff_t cin, const float *wt,
                            ptrdiff_t cout, ptrdiff_t co, const float *bias, float *orow, const int P, const int V) {
    __m256 acc[8];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) acc[p * V + v] = bias ? _mm256_loadu_ps(bias + co + 8 * v) : _mm256_setzero_ps();
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *src = rows[ky] + (x + kx) * cin;
            const float *wk = wt + (ptrdiff_t)(ky * 3 + kx) * cin * cout + co;
            for (ptrdiff_t ci = 0; ci < cin; ci++) {
                __m256 wv[2];
                for (int v = 0; v < V; v++) wv[v] = _mm256_loadu_ps(wk + ci * cout + 8 * v);
                for (int p = 0; p < P; p++) {
                    const __m256 b = _mm256_broadcast_ss(src + p * cin + ci);
                    for (int v = 0; v < V; v++) acc[p * V + v] = _mm256_fmadd_ps(b, wv[v], acc[p * V + v]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) _mm256_storeu_ps(orow + (x + p) * cout + co + 8 * v, acc[p * V + v]);
}

__attribute__((target("avx2,fma")))
void tk_conv3x3_forward_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                             const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    const ptrdiff_t row = (w + 2) * cin;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            const float *top = xp + (img * (h + 2) + y) * row;
            const float *const rows[3] = {top, top + row, top + 2 * row};
            float *orow = out + (img * h + y) * w * cout;
            ptrdiff_t co = 0;
            for (; co + 16 <= cout; co += 16) {
                ptrdiff_t x = 0;
                for (; x + 4 <= w; x += 4) fwd_tile(rows, x, cin, wt, cout, co, bias, orow, 4, 2);
                for (; x < w; x++) fwd_tile(rows, x, cin, wt, cout, co, bias, orow, 1, 2);
            }
            for (; co < cout; co += 8) {
                ptrdiff_t x = 0;
                for (; x + 8 <= w; x += 8) fwd_tile(rows, x, cin, wt, cout, co, bias, orow, 8, 1);
                for (; x < w; x++) fwd_tile(rows, x, cin, wt, cout, co, bias, orow, 1, 1);
            }
        }
    }
}

/* dw[tap][ci .. ci+P][co .. co+8V] += sum over the row's pixels of x * dy. */
__attribute__((target("avx2,fma"), always_inline))
static inline void wgrad_tile(const float *src, const float *dyrow, ptrdiff_t w, ptrdiff_t cin, ptrdiff_t ci,
                              ptrdiff_t cout, ptrdiff_t co, float *dwk, const int P, const int V) {
    __m256 acc[8];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) acc[p * V + v] = _mm256_loadu_ps(dwk + (ci + p) * cout + co + 8 * v);
    for (ptrdiff_t x = 0; x < w; x++) {
        __m256 d[2];
        for (int v = 0; v < V; v++) d[v] = _mm256_loadu_ps(dyrow + x * cout + co + 8 * v);
        for (int p = 0; p < P; p++) {
            const __m256 b = _mm256_broadcast_ss(src + x * cin + ci + p);
            for (int v = 0; v < V; v++) acc[p * V + v] = _mm256_fmadd_ps(b, d[v], acc[p * V + v]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) _mm256_storeu_ps(dwk + (ci + p) * cout + co + 8 * v, acc[p * V + v]);
}

__attribute__((target("avx2,fma")))
void tk_conv3x3_weight_grad_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                 const float *dy, ptrdiff_t cout, float *dw) {
    const ptrdiff_t row = (w + 2) * cin;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            const float *dyrow = dy + (img * h + y) * w * cout;
            for (int ky = 0; ky < 3; ky++) {
                const float *srow = xp + (img * (h + 2) + y + ky) * row;
                for (int kx = 0; kx < 3; kx++) {
                    const float *src = srow + kx * cin;
                    float *dwk = dw + (ptrdiff_t)(ky * 3 + kx) * cin * cout;
                    ptrdiff_t co = 0;
                    for (; co + 16 <= cout; co += 16) {
                        ptrdiff_t ci = 0;
                        for (; ci + 4 <= cin; ci += 4) wgrad_tile(src, dyrow, w, cin, ci, cout, co, dwk, 4, 2);
                        for (; ci < cin; ci++) wgrad_tile(src, dyrow, w, cin, ci, cout, co, dwk, 1, 2);
                    }
                    for (; co < cout; co += 8) {
                        ptrdiff_t ci = 0;
                        for (; ci + 8 <= cin; ci += 8) wgrad_tile(src, dyrow, w, cin, ci, cout, co, dwk, 8, 1);
                        for (; ci < cin; ci++) wgrad_tile(src, dyrow, w, cin, ci, cout, co, dwk, 1, 1);
                    }
                }
            }
        }
    }
}

/* The same kernels on AVX-512: 16 output channels per vector, so a tile covers twice
   the channels of an AVX2 tile with the same instructions, and 32 registers hold
   tiles of up to 16 accumulators (14 pixels by 1 vector or 7 by 2; in the weight
   gradient 16 input channels by 1 or 8 by 2). Each output value still adds the same
   products in the same order (taps, then input channels; for the weight gradient,
   images, rows, then pixels), each with one fused multiply-add, so AVX-512 and AVX2
   give the same bits and a model trains identically on either (KernelCloneTests
   compiles this file and checks that). On the 2-core Xeon of BENCHMARKS.md they ran
   1.9-2.0x as fast as AVX2 at 16 channels, 4-5x at 32 (each kernel timed alone). */
__attribute__((target("avx512f"), always_inline))
static inline void fwd_tile16(const float *const rows[3], ptrdiff_t x, ptrdiff_t cin, const float *wt,
                              ptrdiff_t cout, ptrdiff_t co, const float *bias, float *orow, const int P, const int V) {
    __m512 acc[16];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) acc[p * V + v] = bias ? _mm512_loadu_ps(bias + co + 16 * v) : _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *src = rows[ky] + (x + kx) * cin;
            const float *wk = wt + (ptrdiff_t)(ky * 3 + kx) * cin * cout + co;
            for (ptrdiff_t ci = 0; ci < cin; ci++) {
                __m512 wv[2];
                for (int v = 0; v < V; v++) wv[v] = _mm512_loadu_ps(wk + ci * cout + 16 * v);
                for (int p = 0; p < P; p++) {
                    const __m512 b = _mm512_set1_ps(src[p * cin + ci]);
                    for (int v = 0; v < V; v++) acc[p * V + v] = _mm512_fmadd_ps(b, wv[v], acc[p * V + v]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(orow + (x + p) * cout + co + 16 * v, acc[p * V + v]);
}

/* Output channels not a multiple of 16 (8, 24) are left to the AVX2 kernels. */
__attribute__((target("avx512f")))
void tk_conv3x3_forward_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                               const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    if (cout % 16) { tk_conv3x3_forward_avx2(xp, n, h, w, cin, wt, cout, bias, out); return; }
    const ptrdiff_t row = (w + 2) * cin;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            const float *top = xp + (img * (h + 2) + y) * row;
            const float *const rows[3] = {top, top + row, top + 2 * row};
            float *orow = out + (img * h + y) * w * cout;
            ptrdiff_t co = 0;
            for (; co + 32 <= cout; co += 32) {
                ptrdiff_t x = 0;
                for (; x + 7 <= w; x += 7) fwd_tile16(rows, x, cin, wt, cout, co, bias, orow, 7, 2);
                for (; x < w; x++) fwd_tile16(rows, x, cin, wt, cout, co, bias, orow, 1, 2);
            }
            for (; co < cout; co += 16) {
                ptrdiff_t x = 0;
                for (; x + 14 <= w; x += 14) fwd_tile16(rows, x, cin, wt, cout, co, bias, orow, 14, 1);
                for (; x + 4 <= w; x += 4) fwd_tile16(rows, x, cin, wt, cout, co, bias, orow, 4, 1);
                for (; x < w; x++) fwd_tile16(rows, x, cin, wt, cout, co, bias, orow, 1, 1);
            }
        }
    }
}

__attribute__((target("avx512f"), always_inline))
static inline void wgrad_tile16(const float *src, const float *dyrow, ptrdiff_t w, ptrdiff_t cin, ptrdiff_t ci,
                                ptrdiff_t cout, ptrdiff_t co, float *dwk, const int P, const int V) {
    __m512 acc[16];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) acc[p * V + v] = _mm512_loadu_ps(dwk + (ci + p) * cout + co + 16 * v);
    for (ptrdiff_t x = 0; x < w; x++) {
        __m512 d[2];
        for (int v = 0; v < V; v++) d[v] = _mm512_loadu_ps(dyrow + x * cout + co + 16 * v);
        for (int p = 0; p < P; p++) {
            const __m512 b = _mm512_set1_ps(src[x * cin + ci + p]);
            for (int v = 0; v < V; v++) acc[p * V + v] = _mm512_fmadd_ps(b, d[v], acc[p * V + v]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(dwk + (ci + p) * cout + co + 16 * v, acc[p * V + v]);
}

__attribute__((target("avx512f")))
void tk_conv3x3_weight_grad_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                   const float *dy, ptrdiff_t cout, float *dw) {
    if (cout % 16) { tk_conv3x3_weight_grad_avx2(xp, n, h, w, cin, dy, cout, dw); return; }
    const ptrdiff_t row = (w + 2) * cin;
    for (ptrdiff_t img = 0; img < n; img++) {
        for (ptrdiff_t y = 0; y < h; y++) {
            const float *dyrow = dy + (img * h + y) * w * cout;
            for (int ky = 0; ky < 3; ky++) {
                const float *srow = xp + (img * (h + 2) + y + ky) * row;
                for (int kx = 0; kx < 3; kx++) {
                    const float *src = srow + kx * cin;
                    float *dwk = dw + (ptrdiff_t)(ky * 3 + kx) * cin * cout;
                    ptrdiff_t co = 0;
                    for (; co + 32 <= cout; co += 32) {
                        ptrdiff_t ci = 0;
                        for (; ci + 8 <= cin; ci += 8) wgrad_tile16(src, dyrow, w, cin, ci, cout, co, dwk, 8, 2);
                        for (; ci < cin; ci++) wgrad_tile16(src, dyrow, w, cin, ci, cout, co, dwk, 1, 2);
                    }
                    for (; co < cout; co += 16) {
                        ptrdiff_t ci = 0;
                        for (; ci + 16 <= cin; ci += 16) wgrad_tile16(src, dyrow, w, cin, ci, cout, co, dwk, 16, 1);
                        for (; ci + 8 <= cin; ci += 8) wgrad_tile16(src, dyrow, w, cin, ci, cout, co, dwk, 8, 1);
                        for (; ci < cin; ci++) wgrad_tile16(src, dyrow, w, cin, ci, cout, co, dwk, 1, 1);
                    }
                }
            }
        }
    }
}

void tk_conv3x3_forward(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                        const float *wt, ptrdiff_t cout, const float *bias, float *out) {
    (__builtin_cpu_supports("avx512f") ? tk_conv3x3_forward_avx512 : tk_conv3x3_forward_avx2)(xp, n, h, w, cin, wt, cout, bias, out);
}

void tk_conv3x3_weight_grad(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                            const float *dy, ptrdiff_t cout, float *dw) {
    (__builtin_cpu_supports("avx512f") ? tk_conv3x3_weight_grad_avx512 : tk_conv3x3_weight_grad_avx2)(xp, n, h, w, cin, dy, cout, dw);
}
