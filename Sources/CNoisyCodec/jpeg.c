/*
 * JPEG decode and encode over libjpeg-turbo, with an error manager that turns
 * every error and every warning into a return code and a message: nothing is
 * printed and nothing calls exit().
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <jpeglib.h>
#include <jerror.h>

#include "CNoisyCodec.h"
#include "internal.h"

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *err;
    /* What was being read when a message came: it prefixes the reason. */
    const char *stage;
    /* Warnings tolerated because they mean nothing for the pixels. */
    int benign;
} nc_jpeg_error;

static void nc_jpeg_error_exit(j_common_ptr cinfo) {
    nc_jpeg_error *e = (nc_jpeg_error *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buffer);
    nc_set_error(e->err, "JPEG %s: %s", e->stage ? e->stage : "data", buffer);
    longjmp(e->jump, 1);
}

/* Warnings (level -1) mostly mean corrupt or truncated image data (premature end,
 * bad Huffman code, ...): we refuse those images. One does not: "N extraneous
 * bytes before marker" is junk between markers, outside the entropy-coded data
 * (typically broken metadata); the image is whole and Pillow decodes it. Those
 * are counted and the decode goes on. */
static void nc_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) {
        ((nc_jpeg_error *)cinfo->err)->benign++;
        return;
    }
    nc_jpeg_error_exit(cinfo);
}

static void nc_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void nc_jpeg_install(struct jpeg_decompress_struct *cinfo, nc_jpeg_error *e, char *err) {
    cinfo->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = nc_jpeg_error_exit;
    e->pub.emit_message = nc_jpeg_emit_message;
    e->pub.output_message = nc_jpeg_output_message;
    e->err = err;
    e->stage = "header";
    e->benign = 0;
}

/* Reads the header and sets scale and colour space; returns NC_OK or an error. */
static int nc_jpeg_prepare(struct jpeg_decompress_struct *cinfo, const uint8_t *data, size_t len,
                           const nc_decode_options *opt, nc_plan *plan, char *err) {
    jpeg_mem_src(cinfo, data, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    uint64_t pixels = (uint64_t)cinfo->image_width * (uint64_t)cinfo->image_height;
    if (opt->max_pixels && pixels > opt->max_pixels) {
        nc_set_error(err, "image is %ux%u (%.1f megapixels), over the limit of %.1f megapixels",
                     cinfo->image_width, cinfo->image_height, pixels / 1e6, opt->max_pixels / 1e6);
        return NC_ERR_TOO_LARGE;
    }
    int denom = opt->scale_denom;
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8) {
        nc_set_error(err, "scale must be 1, 2, 4 or 8 (got 1/%d)", denom);
        return NC_ERR_ARGUMENT;
    }
    cinfo->scale_num = 1;
    cinfo->scale_denom = (unsigned)denom;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; break;
    default: cinfo->out_color_space = JCS_RGB; break;
    }
    jpeg_calc_output_dimensions(cinfo);
    memset(plan, 0, sizeof(*plan));
    plan->info.width = (int32_t)cinfo->image_width;
    plan->info.height = (int32_t)cinfo->image_height;
    plan->info.channels = cinfo->out_color_space == JCS_GRAYSCALE ? 1 : 3;
    plan->info.source_kind = cinfo->num_components;
    plan->info.bit_depth = 8;
    plan->info.progressive = jpeg_has_multiple_scans(cinfo) ? 1 : 0;
    plan->out_channels = plan->info.channels;
    int ow = (int)cinfo->output_width, oh = (int)cinfo->output_height;
    return nc_plan_output(opt, ow, oh, "output", plan, err);
}

int nc_jpeg_plan(const uint8_t *data, size_t len, const nc_decode_options *opt,
                 nc_plan *plan, char *err) {
    struct jpeg_decompress_struct cinfo;
    nc_jpeg_error jerr;
    nc_jpeg_install(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    int status = nc_jpeg_prepare(&cinfo, data, len, opt, plan, err);
    jpeg_destroy_decompress(&cinfo);
    return status;
}

/*
 * Pillow converts CMYK to RGB as (255 - C)(255 - K)/255 with its MULDIV255
 * rounding. It reads every 4-channel JPEG as inverted CMYK (rawmode "CMYK;I"),
 * Adobe marker or not, as Photoshop writes them and as files in the wild are.
 */
static inline uint8_t nc_muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void nc_cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int width) {
    for (int x = 0; x < width; x++) {
        int c = 255 - in[4 * x], m = 255 - in[4 * x + 1], y = 255 - in[4 * x + 2], k = 255 - in[4 * x + 3];
        int nk = 255 - k;
        out[3 * x] = (uint8_t)(nk - nc_muldiv255(c, nk));
        out[3 * x + 1] = (uint8_t)(nk - nc_muldiv255(m, nk));
        out[3 * x + 2] = (uint8_t)(nk - nc_muldiv255(y, nk));
    }
}

int nc_jpeg_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                   uint8_t *out, size_t cap, nc_plan *plan, char *err) {
    struct jpeg_decompress_struct cinfo;
    nc_jpeg_error jerr;
    nc_jpeg_install(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    int status = nc_jpeg_prepare(&cinfo, data, len, opt, plan, err);
    if (status != NC_OK) {
        jpeg_destroy_decompress(&cinfo);
        return status;
    }
    const int ch = plan->out_channels;
    const int widen = opt->allow_wider && opt->crop_w > 0;
    int cap_width = plan->out_width;
    if (widen) {
        cap_width += NC_CROP_SLACK;
        if (cap_width > (int)cinfo.output_width) cap_width = (int)cinfo.output_width;
    }
    const size_t need = (size_t)cap_width * (size_t)plan->out_height * (size_t)ch;
    if (cap < need) {
        nc_set_error(err, "output buffer holds %zu bytes, decode needs %zu", cap, need);
        jpeg_destroy_decompress(&cinfo);
        return NC_ERR_BUFFER;
    }
    const int cropping = opt->crop_w > 0;
    const int cmyk = cinfo.out_color_space == JCS_CMYK;
    jerr.stage = "entropy data";
    jpeg_start_decompress(&cinfo);

    /* Region decode: libjpeg-turbo widens the column range to iMCU boundaries. */
    JDIMENSION xoff = 0, width = cinfo.output_width;
    int row_x = 0;  /* where our crop starts inside a decoded row */
    if (cropping) {
        xoff = (JDIMENSION)opt->crop_x;
        width = (JDIMENSION)opt->crop_w;
        if (xoff != 0 || width != cinfo.output_width) {
            jpeg_crop_scanline(&cinfo, &xoff, &width);
        }
        row_x = opt->crop_x - (int)xoff;
        if (opt->crop_y > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)opt->crop_y);
        if (widen) {
            /* Hand back what libjpeg-turbo decodes: no per-row copy. */
            plan->out_x = (int32_t)xoff;
            plan->out_width = (int32_t)width;
            row_x = 0;
        }
    }
    const int in_ch = cinfo.output_components;
    const int direct = !cropping || (row_x == 0 && (int)width == plan->out_width);
    JSAMPARRAY scratch = NULL;
    if (cmyk || !direct) {
        scratch = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                             width * (JDIMENSION)in_ch, 1);
    }
    const size_t out_stride = (size_t)plan->out_width * (size_t)ch;
    for (int y = 0; y < plan->out_height; y++) {
        uint8_t *dst = out + (size_t)y * out_stride;
        if (!scratch) {
            JSAMPROW row = dst;
            jpeg_read_scanlines(&cinfo, &row, 1);
            continue;
        }
        jpeg_read_scanlines(&cinfo, scratch, 1);
        const uint8_t *src = scratch[0] + (size_t)row_x * (size_t)in_ch;
        if (cmyk) {
            nc_cmyk_row_to_rgb(src, dst, plan->out_width);
        } else {
            memcpy(dst, src, out_stride);
        }
    }
    if (cropping && cinfo.output_scanline < cinfo.output_height) {
        /* The rows below the crop are not needed: stop here. */
        jpeg_abort_decompress(&cinfo);
    } else {
        jerr.stage = "trailer";
        jpeg_finish_decompress(&cinfo);
    }
    plan->info.warnings = jerr.benign;
    jpeg_destroy_decompress(&cinfo);
    return NC_OK;
}

int nc_jpeg_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t components,
                   int32_t quality, int32_t progressive, uint8_t **out, size_t *out_len,
                   char *err) {
    if (width <= 0 || height <= 0 || (components != 1 && components != 3 && components != 4) ||
        quality < 1 || quality > 100) {
        nc_set_error(err, "cannot encode %dx%dx%d at quality %d", width, height, components, quality);
        return NC_ERR_ARGUMENT;
    }
    struct jpeg_compress_struct cinfo;
    nc_jpeg_error jerr;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = nc_jpeg_error_exit;
    jerr.pub.emit_message = nc_jpeg_emit_message;
    jerr.pub.output_message = nc_jpeg_output_message;
    jerr.err = err;
    jerr.stage = "encode";
    jerr.benign = 0;
    unsigned char *volatile buffer = NULL;
    unsigned long size = 0;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_compress(&cinfo);
    unsigned char *mem = NULL;
    jpeg_mem_dest(&cinfo, &mem, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = components;
    cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : (components == 3 ? JCS_RGB : JCS_CMYK);
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    const size_t stride = (size_t)width * (size_t)components;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
        buffer = mem;
    }
    jpeg_finish_compress(&cinfo);
    buffer = mem;
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_len = size;
    return NC_OK;
}

void nc_free(void *p) { free(p); }
