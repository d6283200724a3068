/*
 * CNoisyCodec: the C loops behind noisy's image codec.
 *
 * libjpeg and libpng report fatal errors by longjmp, and libjpeg's default error
 * manager prints to stderr and calls exit(). Swift can survive neither, so every
 * call into those libraries happens in this target, under a setjmp of our own,
 * and comes back as a return code plus a message in a caller-owned buffer.
 * No function here prints anything.
 *
 * All symbols carry the nc_ prefix.
 */
#ifndef CNOISYCODEC_H
#define CNOISYCODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Size of the message buffer every fallible function takes. */
#define NC_ERROR_CAPACITY 256

typedef enum {
    NC_OK = 0,
    NC_ERR_CORRUPT = 1,      /* the library rejected the data, or warned of corrupt data */
    NC_ERR_TOO_LARGE = 2,    /* header claims more pixels than allowed */
    NC_ERR_UNSUPPORTED = 3,  /* a valid file in a form we do not decode */
    NC_ERR_ARGUMENT = 4,     /* the caller asked for something impossible */
    NC_ERR_NO_MEMORY = 5,
    NC_ERR_IO = 6,
    NC_ERR_BUFFER = 7,       /* output buffer smaller than nc_*_plan said */
    NC_NOT_PLANAR = 8        /* nc_jpeg_decode_planes: this file or crop takes the RGB decode */
} nc_status;

typedef enum {
    NC_FORMAT_UNKNOWN = 0,
    NC_FORMAT_JPEG = 1,
    NC_FORMAT_PNG = 2,
    NC_FORMAT_GIF = 3,
    NC_FORMAT_WEBP = 4,
    NC_FORMAT_TIFF = 5,
    NC_FORMAT_BMP = 6
} nc_format;

/** Recognises a format by its magic bytes; never reads past len. */
nc_format nc_sniff(const uint8_t *data, size_t len);

/** What a file holds, read from its header alone. */
typedef struct {
    int32_t width;          /* full-size image width */
    int32_t height;
    int32_t channels;       /* decoded channels: 1 (gray) or 3 (RGB) */
    int32_t source_kind;    /* JPEG: components (1,3,4); PNG: color type */
    int32_t bit_depth;      /* PNG bit depth; 8 for JPEG */
    int32_t progressive;    /* JPEG: 1 when progressive; PNG: 1 when interlaced */
    int32_t warnings;       /* after a decode: benign warnings tolerated (JPEG extraneous bytes between markers) */
} nc_info;

/**
 * How to decode. scale_denom is 1, 2, 4 or 8 (JPEG DCT scaling; PNG takes 1 only).
 * The crop rectangle is in scaled output coordinates; crop_w == 0 means the whole
 * image. max_pixels bounds width*height of the full-size header (0: no bound).
 */
typedef struct {
    int32_t scale_denom;
    int32_t crop_x, crop_y, crop_w, crop_h;
    uint64_t max_pixels;
    /* JPEG crops: 1 lets the decoder return the columns libjpeg-turbo actually
     * decodes (the crop widened to iMCU boundaries, see nc_plan.out_x), written
     * straight into the output with no row copy. The output must then hold
     * min(crop_w + NC_CROP_SLACK, scaled width) columns. */
    int32_t allow_wider;
} nc_decode_options;

/** Extra columns a widened crop may need (iMCU alignment on both sides). */
#define NC_CROP_SLACK 64

/** Output of a decode plan: the exact size of the pixels a decode will write. */
typedef struct {
    nc_info info;
    int32_t out_width;
    int32_t out_height;
    int32_t out_channels;
    int32_t out_x;          /* first decoded column in scaled coordinates (crops) */
    int32_t out_y;          /* first decoded row in scaled coordinates (crops) */
} nc_plan;

/** Reads the header and tells what a decode with these options will produce. */
int nc_jpeg_plan(const uint8_t *data, size_t len, const nc_decode_options *opt,
                 nc_plan *plan, char *err);
/**
 * Decodes into out (capacity cap bytes, at least out_width*out_height*out_channels
 * from nc_jpeg_plan). Every libjpeg warning (premature end, corrupt data) is an error.
 */
int nc_jpeg_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                   uint8_t *out, size_t cap, nc_plan *plan, char *err);

int nc_png_plan(const uint8_t *data, size_t len, const nc_decode_options *opt,
                nc_plan *plan, char *err);
int nc_png_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                  uint8_t *out, size_t cap, nc_plan *plan, char *err);

/** WebP (lossy, lossless, alpha; an animation's first frame), full scale only. */
int nc_webp_plan(const uint8_t *data, size_t len, const nc_decode_options *opt,
                 nc_plan *plan, char *err);
int nc_webp_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                   uint8_t *out, size_t cap, nc_plan *plan, char *err);

/** Memory a decoder may grow with realloc and the caller reuses; release data with nc_free. */
typedef struct {
    uint8_t *data;
    size_t capacity;
} nc_buffer;

/** One component's samples, as libjpeg hands them out before upsampling. */
typedef struct {
    size_t offset;          /* first sample, from the start of the buffer */
    int32_t width, height;  /* samples that belong to the image */
    int32_t stride;         /* bytes between rows; readable 32 bytes past every row's last sample */
    int32_t fx, fy;         /* scaled output pixels per sample: 1, or 2 for subsampled chroma */
} nc_plane;

/** Y, Cb and Cr planes of a decode; sample (0, 0) of every plane starts at scaled pixel (origin_x, origin_y). */
typedef struct {
    nc_info info;
    int32_t origin_x, origin_y;
    nc_plane planes[3];
} nc_planes;

/**
 * Decodes a YCbCr JPEG (luma sampled 1 or 2 times chroma's in each direction) to its
 * raw planes at DCT scale 1/opt->scale_denom: no chroma upsampling, no colour
 * conversion. Only streams whose restart markers tile their MCU rows (what
 * nc_jpeg_add_restarts writes) are decoded this way, so that a file takes one path
 * whatever the crop; a crop (scaled coordinates) decodes only the restart segments
 * it and a 2-pixel margin need. Returns NC_NOT_PLANAR, having decoded nothing, for
 * every other file: nc_jpeg_decode handles those.
 */
int nc_jpeg_decode_planes(const uint8_t *data, size_t len, const nc_decode_options *opt,
                          nc_buffer *buffer, nc_planes *out, char *err);

/**
 * Encodes 8-bit pixels (components 1 = gray, 3 = RGB, 4 = CMYK as given) to JPEG.
 * *out is malloc'd; release it with nc_free.
 */
int nc_jpeg_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t components,
                   int32_t quality, int32_t progressive, uint8_t **out, size_t *out_len,
                   char *err);
/** Encodes 8-bit gray or RGB pixels to PNG. *out is malloc'd; release it with nc_free. */
int nc_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                  uint8_t **out, size_t *out_len, char *err);

/**
 * Losslessly transcodes a JPEG so that restart markers tile its MCU rows (a marker
 * after every MCU), with optimal Huffman tables and
 * every APPn/COM marker kept: the decoded pixels are identical, and a crop then
 * decodes only the restart segments it covers (nc_jpeg_decode). A progressive
 * file becomes baseline. Leaves *out NULL (and returns NC_OK) for files it keeps
 * as they are: already sliceable, not YCbCr or gray, arithmetic-coded, progressive
 * with scans missing (decoded with block smoothing), or under NC_RESTART_MIN_SIDE
 * pixels on both sides. *out is malloc'd; release it with nc_free.
 */
int nc_jpeg_add_restarts(const uint8_t *data, size_t len, uint8_t **out, size_t *out_len, char *err);
#define NC_RESTART_MIN_SIDE 128

void nc_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
