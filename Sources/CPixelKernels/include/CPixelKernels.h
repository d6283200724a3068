/*
 * CPixelKernels: loops over 8-bit pixels (HWC, 1 or 3 channels) that the Swift
 * module Pixels wraps. No library here reports errors by longjmp, so this target
 * needs no guard; the codec's guarded C stays in CNoisyCodec.
 *
 * All symbols carry the pk_ prefix.
 */
#ifndef CPIXELKERNELS_H
#define CPIXELKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PK_OK = 0,
    PK_ERR_ARGUMENT = 4,     /* the caller asked for something impossible */
    PK_ERR_NO_MEMORY = 5
} pk_status;

/* ---- Resampling (Pillow's ImagingResample, 8-bit fixed point) ---- */

typedef enum {
    PK_FILTER_NEAREST = 0,  /* not used by resample; here for completeness */
    PK_FILTER_BILINEAR = 2,
    PK_FILTER_BICUBIC = 3,
    PK_FILTER_LANCZOS = 1
} pk_filter;

/** Reusable scratch memory, so that steady-state resampling does not allocate. */
typedef struct {
    void *buffer;
    size_t capacity;
} pk_scratch;

void pk_scratch_release(pk_scratch *s);

/**
 * Resamples the box [x0,x1) x [y0,y1) of src (sw x sh, ch channels, tightly packed)
 * to dst (dw x dh). Matches Pillow's Image.resize(size, filter, box) to the byte.
 */
int pk_resample(const uint8_t *src, int32_t sw, int32_t sh, int32_t ch,
                float x0, float y0, float x1, float y1,
                uint8_t *dst, int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch);

/** As pk_resample, for a source whose rows are src_stride bytes apart (a crop of a larger buffer). */
int pk_resample_strided(const uint8_t *src, int32_t sw, int32_t sh, size_t src_stride, int32_t ch,
                        float x0, float y0, float x1, float y1,
                        uint8_t *dst, int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch);

/** Where a view's finished rows go: a batch slot in one of the batch layouts. */
typedef enum {
    PK_OUT_U8_HWC = 0,
    PK_OUT_F32_CHW = 1,
    PK_OUT_F32_HWC = 2
} pk_out_kind;

typedef struct {
    int32_t kind;          /* a pk_out_kind */
    int32_t flip;          /* mirror every row: a horizontal flip of the image */
    const float *scale;    /* float kinds: v * scale[c] + offset[c], one per channel */
    const float *offset;
    void *out;             /* w x h x ch elements in the kind's layout */
} pk_output;

/** Row y (w x ch bytes, HWC) of a w x h image into the output. */
void pk_write_row(const uint8_t *in, int32_t w, int32_t h, int32_t ch, int32_t y, const pk_output *output);
/** A whole packed w x h x ch image into the output. */
void pk_write_output(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const pk_output *output);

/**
 * As pk_resample_strided, handing each finished row to the output (bytes or
 * floats, mirrored or not) instead of writing a dw x dh byte image: the same
 * bytes as pk_resample then pk_write_output, in one pass.
 */
int pk_resample_to(const uint8_t *src, int32_t sw, int32_t sh, size_t src_stride, int32_t ch,
                   float x0, float y0, float x1, float y1, int32_t dw, int32_t dh, int32_t filter,
                   pk_scratch *scratch, const pk_output *output);

/* ---- YCbCr planes (a JPEG's samples before upsampling) ---- */

/** One channel's samples; each covers fx x fy pixels of the image being resized. */
typedef struct {
    const uint8_t *data;
    int32_t width, height;
    size_t stride;
    int32_t fx, fy;
} pk_plane;

/**
 * Resizes the image box [x0,x1) x [y0,y1) (image pixels; each plane's box is that
 * divided by its fx, fy) of Y, Cb and Cr planes to dw x dh, each plane as
 * pk_resample resizes one channel, and hands every finished row, converted to RGB
 * by libjpeg's arithmetic, to the output. With cut, each plane's filter sees only
 * the samples its box covers (a crop, then its resize, as torchvision's
 * RandomResizedCrop does); otherwise it may read samples round the box.
 */
int pk_resample_ycc_to(const pk_plane planes[3], float x0, float y0, float x1, float y1, int32_t cut,
                       int32_t dw, int32_t dh, int32_t filter, pk_scratch *scratch, const pk_output *output);

/**
 * Row y of Y, Cb and Cr (w samples each) converted to RGB as libjpeg-turbo converts
 * (jdcolor.c: 16-bit fixed point, rounded, clamped) and written to the output;
 * scratch holds 6 * w bytes.
 */
void pk_write_ycc_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int32_t w, int32_t h, int32_t row,
                      uint8_t *scratch, const pk_output *output);

/* ---- Augmentation loops (PIL arithmetic; HWC, 1 or 3 channels) ---- */

/** Per-channel histograms: hist holds 256 * ch counts. */
void pk_histogram(const uint8_t *px, size_t pixels, int32_t ch, uint32_t *hist);
/** Maps every byte through its channel's table (luts holds 256 * ch entries). */
void pk_apply_lut(uint8_t *px, size_t pixels, int32_t ch, const uint8_t *luts);
void pk_rgb_to_gray(const uint8_t *rgb, size_t pixels, uint8_t *gray);
void pk_gray_to_rgb(const uint8_t *gray, size_t pixels, uint8_t *rgb);
/** Image.blend(degenerate, image, alpha) into image. */
void pk_blend(const uint8_t *degenerate, uint8_t *image, size_t n, float alpha);
void pk_blend_constant(uint8_t value, uint8_t *image, size_t n, float alpha);
/** Blend of RGB pixels against their own luma (ImageEnhance.Color). */
void pk_blend_gray(uint8_t *rgb, size_t pixels, float alpha);
/** ImageFilter.SMOOTH; in and out must not overlap. */
void pk_smooth(const uint8_t *in, uint8_t *out, int32_t w, int32_t h, int32_t ch);
/** Image.transform(AFFINE, m, BILINEAR, fillcolor); in and out must not overlap. */
void pk_affine_bilinear(const uint8_t *in, int32_t w, int32_t h, int32_t ch, const double m[6],
                        uint8_t fill, uint8_t *out);
void pk_flip_horizontal(uint8_t *px, int32_t w, int32_t h, int32_t ch);
/** Fills [x0,x1) x [y0,y1), clipped to the image. */
void pk_fill_rect(uint8_t *px, int32_t w, int32_t h, int32_t ch, int32_t x0, int32_t y0,
                  int32_t x1, int32_t y1, uint8_t value);
/** Copies an ow x oh window at (x0, y0) that may reach past the edges (filled there). */
void pk_window(const uint8_t *in, int32_t w, int32_t h, int32_t ch, int32_t x0, int32_t y0,
               uint8_t *out, int32_t ow, int32_t oh, uint8_t fill);


#ifdef __cplusplus
}
#endif
#endif
