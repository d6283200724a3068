// The trainer's element-wise loops (im2col, ReLU, pooling), in C so that the
// compiler vectorises them: the same loops in Swift stayed scalar and cost more
// than the GEMMs around them. Every array is NHWC float32; sizes are in elements.
#ifndef TENSOR_KERNELS_H
#define TENSOR_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Writes the im2col matrix of a 3x3, padding-1 convolution: row (image, y, x)
/// holds the 3x3 neighbourhood, tap-major then channel ([n*h*w, 9*c]).
void tk_im2col3x3(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *col);
/// The adjoint of tk_im2col3x3: adds each matrix entry back onto its input pixel.
void tk_col2im3x3_add(const float *col, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *dx);

/// y = max(x, 0).
void tk_relu(const float *x, float *y, ptrdiff_t count);
/// dx = out > 0 ? dy : 0.
void tk_relu_backward(const float *out, const float *dy, float *dx, ptrdiff_t count);

/// 2x2 max pooling, stride 2 (odd edges dropped). argmax (may be NULL) receives
/// the input index of each output's maximum, for the backward pass.
void tk_maxpool2(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *out, int64_t *argmax);
/// dx (zeroed by the caller) += dy at each output's argmax.
void tk_maxpool2_backward(const float *dy, const int64_t *argmax, ptrdiff_t count, float *dx);

/// Every row of out [rows, n] = row.
void tk_fill_rows(float *out, ptrdiff_t rows, const float *row, ptrdiff_t n);
/// acc [n] += sum of the rows of m [rows, n].
void tk_sum_rows(const float *m, ptrdiff_t rows, ptrdiff_t n, float *acc);

/// c[m x n] += a[m x k] * b[k x n], row-major, each row on its own: row i of c adds
/// a[i][p] * b[p][:] for p = 0, 1, ... in that order, so its result depends only on row i
/// of a and on b, never on m or on the other rows (OpenBLAS's sgemm rounds a row
/// differently by its place in the matrix). For predictions that must not depend on
/// how samples are batched (label jobs in parts).
void tk_gemm_rows(const float *a, ptrdiff_t m, ptrdiff_t k, const float *b, ptrdiff_t n, float *c);

/// Batch normalisation over the last dimension of x [rows, c] (NHWC channels, or
/// dense features). Statistics in double, the mean first and then the variance
/// around it (one-pass sums of squares cancel badly when the mean is large).
/// mean [c] and var [c] (biased: divided by rows) receive the batch's statistics.
void tk_bn_statistics(const float *x, ptrdiff_t rows, ptrdiff_t c, float *mean, float *var);
/// y = gamma * (x - mean) * invstd + beta per channel; xhat (NULL in evaluation)
/// receives (x - mean) * invstd for the backward pass.
void tk_bn_forward(const float *x, ptrdiff_t rows, ptrdiff_t c, const float *mean, const float *invstd,
                   const float *gamma, const float *beta, float *xhat, float *y);
/// The backward pass of a training-mode forward: dgamma += sum(dy * xhat),
/// dbeta += sum(dy), and dx = gamma * invstd / rows * (rows * dy - sum(dy) - xhat * sum(dy * xhat)).
void tk_bn_backward(const float *dy, const float *xhat, ptrdiff_t rows, ptrdiff_t c, const float *gamma,
                    const float *invstd, float *dgamma, float *dbeta, float *dx);

/// Direct 3x3 convolutions (conv3x3.c): 1 when this CPU runs them (AVX2 and FMA)
/// and the shape suits them (cin and cout multiples of 8: the input gradient swaps
/// them); the caller uses im2col + GEMM otherwise.
int tk_conv3x3_direct_supported(ptrdiff_t cin, ptrdiff_t cout);
/// dst [n, h+2, w+2, c] = src [n, h, w, c] inside a border of zeros.
void tk_pad1(const float *src, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t c, float *dst);
/// out [n, h, w, cout] = bias [cout] (zeros when NULL) + the 3x3 convolution of the
/// padded input xp [n, h+2, w+2, cin] with wt [9*cin, cout] (tap-major then input
/// channel, as the im2col matrix's columns). Each sum starts from the bias in
/// registers, so out needs no fill beforehand.
void tk_conv3x3_forward(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                        const float *wt, ptrdiff_t cout, const float *bias, float *out);
/// dw [9*cin, cout] += the weight gradient: sum over pixels of the padded input's
/// 3x3 neighbourhood times dy [n, h, w, cout].
void tk_conv3x3_weight_grad(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                            const float *dy, ptrdiff_t cout, float *dw);
/// The weights of the input gradient's convolution: out [9*cout, cin] holds wt
/// [9*cin, cout] with the taps mirrored and the channels transposed, so that
/// dx = tk_conv3x3_forward(pad(dy), cin: cout, out, cout: cin, bias: NULL).
void tk_conv3x3_flip(const float *wt, ptrdiff_t cin, ptrdiff_t cout, float *out);
/// The two kernels above pick one of these per call: AVX-512 where the CPU has it
/// (which hands an output width that is not a multiple of 16 to AVX2), AVX2 otherwise.
/// Both give the same bits; they are public so that a test can run each and compare
/// (KernelCloneTests).
void tk_conv3x3_forward_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                             const float *wt, ptrdiff_t cout, const float *bias, float *out);
void tk_conv3x3_forward_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                               const float *wt, ptrdiff_t cout, const float *bias, float *out);
void tk_conv3x3_weight_grad_avx2(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                 const float *dy, ptrdiff_t cout, float *dw);
void tk_conv3x3_weight_grad_avx512(const float *xp, ptrdiff_t n, ptrdiff_t h, ptrdiff_t w, ptrdiff_t cin,
                                   const float *dy, ptrdiff_t cout, float *dw);

#endif
