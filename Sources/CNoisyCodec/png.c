/*
 * PNG decode over libpng's progressive-free classic API, under our own setjmp,
 * so that a truncated or corrupt file returns an error instead of longjmp'ing
 * through Swift frames. Transforms follow Pillow's decode followed by
 * convert("L") / convert("RGB"): palettes expand to RGB, alpha is dropped (not
 * composited, a palette's tRNS included), 16-bit colour samples keep their high
 * byte, and 16-bit gray values are clipped to 255 (Pillow's I;16 -> L).
 */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "CNoisyCodec.h"
#include "internal.h"

typedef struct {
    jmp_buf jump;
    char *err;
    const uint8_t *data;
    size_t len;
    size_t pos;
    /* What was being read when libpng failed: it prefixes the reason. */
    const char *stage;
} nc_png_ctx;

static void nc_png_error(png_structp png, png_const_charp msg) {
    nc_png_ctx *ctx = (nc_png_ctx *)png_get_error_ptr(png);
    nc_set_error(ctx->err, "PNG %s: %s", ctx->stage ? ctx->stage : "data", msg);
    longjmp(ctx->jump, 1);
}

/* libpng warns of benign things (bad ancillary CRCs, unknown chunks): stay silent. */
static void nc_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void nc_png_read(png_structp png, png_bytep out, size_t n) {
    nc_png_ctx *ctx = (nc_png_ctx *)png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos) png_error(png, "truncated PNG: the file ends early");
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

/* Reads the header, installs the transforms and fills the plan. */
static int nc_png_prepare(png_structp png, png_infop info, const nc_decode_options *opt,
                          nc_plan *plan, char *err) {
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    uint64_t pixels = (uint64_t)w * (uint64_t)h;
    if (opt->max_pixels && pixels > opt->max_pixels) {
        nc_set_error(err, "image is %ux%u (%.1f megapixels), over the limit of %.1f megapixels",
                     w, h, pixels / 1e6, opt->max_pixels / 1e6);
        return NC_ERR_TOO_LARGE;
    }
    if (opt->scale_denom != 1) {
        nc_set_error(err, "PNG decodes at full scale only (asked 1/%d)", opt->scale_denom);
        return NC_ERR_ARGUMENT;
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* 16-bit gray is clipped after the read (see gray16 below), not stripped. */
    const int gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
    if (depth == 16 && !gray16) png_set_strip_16(png);
    /* Alpha is dropped, not composited (Pillow's convert("RGB")). A palette's tRNS
     * chunk becomes an alpha channel when the palette expands: drop that too. */
    if ((color & PNG_COLOR_MASK_ALPHA) ||
        (color == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS)))
        png_set_strip_alpha(png);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);

    memset(plan, 0, sizeof(*plan));
    plan->info.width = (int32_t)w;
    plan->info.height = (int32_t)h;
    plan->info.channels = (color & PNG_COLOR_MASK_COLOR) ? 3 : 1;
    plan->info.source_kind = color;
    plan->info.bit_depth = depth;
    plan->info.progressive = interlace != PNG_INTERLACE_NONE;
    plan->out_channels = plan->info.channels;
    if ((int)png_get_channels(png, info) != plan->out_channels ||
        png_get_rowbytes(png, info) != (size_t)w * (size_t)plan->out_channels * (gray16 ? 2 : 1)) {
        nc_set_error(err, "unexpected PNG channel layout after transforms");
        return NC_ERR_UNSUPPORTED;
    }
    return nc_plan_output(opt, w, h, "image", plan, err);
}

int nc_png_plan(const uint8_t *data, size_t len, const nc_decode_options *opt,
                nc_plan *plan, char *err) {
    return nc_png_decode(data, len, opt, NULL, 0, plan, err);
}

/* With out == NULL only the header is read and the plan filled. */
int nc_png_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                  uint8_t *out, size_t cap, nc_plan *plan, char *err) {
    nc_png_ctx ctx = {.err = err, .data = data, .len = len, .pos = 0, .stage = "chunk"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, nc_png_error, nc_png_warning);
    if (!png) {
        nc_set_error(err, "out of memory");
        return NC_ERR_NO_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        nc_set_error(err, "out of memory");
        return NC_ERR_NO_MEMORY;
    }
    /* The full-image buffer for cropped decodes, and the row table. */
    uint8_t *volatile full = NULL;
    uint8_t *volatile wide = NULL;  /* 16-bit gray rows before clipping */
    png_bytep *volatile rows = NULL;
    /* setjmp must be the whole controlling expression (C11 7.13.1.1). */
    if (setjmp(ctx.jump)) {
        free(rows);
        free(full);
        free(wide);
        png_destroy_read_struct(&png, &info, NULL);
        return NC_ERR_CORRUPT;
    }
    png_set_read_fn(png, &ctx, nc_png_read);
    /* Pixel limits are ours (max_pixels); lift libpng's own 1M-pixel row default. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    int status = nc_png_prepare(png, info, opt, plan, err);
    if (status != NC_OK || out == NULL) {
        png_destroy_read_struct(&png, &info, NULL);
        return status;
    }
    const int ch = plan->out_channels;
    const size_t need = (size_t)plan->out_width * (size_t)plan->out_height * (size_t)ch;
    if (cap < need) {
        nc_set_error(err, "output buffer holds %zu bytes, decode needs %zu", cap, need);
        png_destroy_read_struct(&png, &info, NULL);
        return NC_ERR_BUFFER;
    }
    const size_t W = (size_t)plan->info.width, H = (size_t)plan->info.height;
    const size_t stride = W * (size_t)ch;
    const int cropping = opt->crop_w > 0 && (plan->out_width != (int)W || plan->out_height != (int)H);
    const int gray16 = plan->info.bit_depth == 16 && plan->info.source_kind == PNG_COLOR_TYPE_GRAY;
    uint8_t *target = out;
    if (cropping) {
        full = (uint8_t *)malloc(stride * H);
        if (!full) png_error(png, "out of memory");
        target = full;
    }
    rows = (png_bytep *)malloc(H * sizeof(png_bytep));
    if (!rows) png_error(png, "out of memory");
    if (gray16) {
        wide = (uint8_t *)malloc(W * 2 * H);
        if (!wide) png_error(png, "out of memory");
        for (size_t y = 0; y < H; y++) rows[y] = wide + y * W * 2;
    } else {
        for (size_t y = 0; y < H; y++) rows[y] = target + y * stride;
    }
    ctx.stage = "image data";
    png_read_image(png, rows);
    ctx.stage = "chunk after the image data";
    png_read_end(png, NULL);
    if (gray16) {
        /* Big-endian samples; values above 255 clip, as Pillow's I;16 -> L does. */
        for (size_t i = 0; i < W * H; i++) {
            unsigned v = ((unsigned)wide[2 * i] << 8) | wide[2 * i + 1];
            target[i] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    if (cropping) {
        const size_t ostride = (size_t)plan->out_width * (size_t)ch;
        for (int y = 0; y < plan->out_height; y++) {
            memcpy(out + (size_t)y * ostride,
                   full + (size_t)(opt->crop_y + y) * stride + (size_t)opt->crop_x * (size_t)ch, ostride);
        }
    }
    free(rows);
    free(full);
    free(wide);
    png_destroy_read_struct(&png, &info, NULL);
    return NC_OK;
}

int nc_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                  uint8_t **out, size_t *out_len, char *err) {
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) {
        nc_set_error(err, "cannot encode %dx%dx%d as PNG", width, height, channels);
        return NC_ERR_ARGUMENT;
    }
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) {
        nc_set_error(err, "PNG encode failed: %s", image.message);
        png_image_free(&image);
        return NC_ERR_CORRUPT;
    }
    uint8_t *buffer = (uint8_t *)malloc(size);
    if (!buffer) {
        nc_set_error(err, "out of memory");
        return NC_ERR_NO_MEMORY;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) {
        nc_set_error(err, "PNG encode failed: %s", image.message);
        png_image_free(&image);
        free(buffer);
        return NC_ERR_CORRUPT;
    }
    *out = buffer;
    *out_len = size;
    return NC_OK;
}
