/*
 * WebP decode over libwebp's animation decoder, the path Pillow takes for every
 * WebP file (still or animated): the first frame, composited on its canvas, as
 * non-premultiplied RGBA; alpha is then dropped (Pillow's convert("RGB")).
 * libwebp reports errors as return values, so no guard is needed.
 */
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "CNoisyCodec.h"
#include "internal.h"

static const char *nc_webp_status(VP8StatusCode s) {
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data (the file ends early)";
    default: return "ok";
    }
}

/* With out == NULL only the header is read and the plan filled. */
int nc_webp_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                   uint8_t *out, size_t cap, nc_plan *plan, char *err) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, len, &f);
    if (st != VP8_STATUS_OK) {
        nc_set_error(err, "WebP header: %s", nc_webp_status(st));
        return st == VP8_STATUS_UNSUPPORTED_FEATURE ? NC_ERR_UNSUPPORTED : NC_ERR_CORRUPT;
    }
    WebPData wd = {.bytes = data, .size = len};
    /* The canvas: the image's size, or an animation's. */
    WebPDemuxer *demux = WebPDemux(&wd);
    if (!demux) {
        nc_set_error(err, "WebP container: the RIFF chunks are damaged or incomplete");
        return NC_ERR_CORRUPT;
    }
    uint32_t w = WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH), h = WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
    WebPDemuxDelete(demux);
    uint64_t pixels = (uint64_t)w * (uint64_t)h;
    if (w == 0 || h == 0) {
        nc_set_error(err, "WebP header: a %ux%u canvas", w, h);
        return NC_ERR_CORRUPT;
    }
    if (opt->max_pixels && pixels > opt->max_pixels) {
        nc_set_error(err, "image is %ux%u (%.1f megapixels), over the limit of %.1f megapixels",
                     w, h, pixels / 1e6, opt->max_pixels / 1e6);
        return NC_ERR_TOO_LARGE;
    }
    if (opt->scale_denom != 1) {
        nc_set_error(err, "WebP decodes at full scale only (asked 1/%d)", opt->scale_denom);
        return NC_ERR_ARGUMENT;
    }
    memset(plan, 0, sizeof(*plan));
    plan->info.width = (int32_t)w;
    plan->info.height = (int32_t)h;
    plan->info.channels = 3;
    plan->info.source_kind = f.format;   /* 0 mixed, 1 lossy, 2 lossless */
    plan->info.bit_depth = 8;
    plan->info.progressive = f.has_animation;
    plan->out_channels = 3;
    int status = nc_plan_output(opt, w, h, "image", plan, err);
    if (status != NC_OK) return status;
    if (out == NULL) return NC_OK;
    const size_t need = (size_t)plan->out_width * (size_t)plan->out_height * 3;
    if (cap < need) {
        nc_set_error(err, "output buffer holds %zu bytes, decode needs %zu", cap, need);
        return NC_ERR_BUFFER;
    }
    WebPAnimDecoderOptions ao;
    if (!WebPAnimDecoderOptionsInit(&ao)) {
        nc_set_error(err, "WebP: libwebp version mismatch");
        return NC_ERR_UNSUPPORTED;
    }
    ao.color_mode = MODE_RGBA;
    ao.use_threads = 0;
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &ao);
    if (!dec) {
        nc_set_error(err, "WebP image data: cannot start decoding (damaged or unsupported)");
        return NC_ERR_CORRUPT;
    }
    uint8_t *rgba = NULL;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(dec, &rgba, &timestamp) || rgba == NULL) {
        WebPAnimDecoderDelete(dec);
        nc_set_error(err, "WebP image data: the first frame does not decode");
        return NC_ERR_CORRUPT;
    }
    for (int y = 0; y < plan->out_height; y++) {
        const uint8_t *src = rgba + ((size_t)(plan->out_y + y) * w + (size_t)plan->out_x) * 4;
        uint8_t *dst = out + (size_t)y * (size_t)plan->out_width * 3;
        for (int x = 0; x < plan->out_width; x++) {
            dst[3 * x] = src[4 * x];
            dst[3 * x + 1] = src[4 * x + 1];
            dst[3 * x + 2] = src[4 * x + 2];
        }
    }
    WebPAnimDecoderDelete(dec);
    return NC_OK;
}

int nc_webp_plan(const uint8_t *data, size_t len, const nc_decode_options *opt, nc_plan *plan, char *err) {
    return nc_webp_decode(data, len, opt, NULL, 0, plan, err);
}
