/*
 * libFuzzer harness for the codec's decode paths (JPEG, PNG and WebP, every scale and a
 * crop region), through the same C functions the Swift side calls. Build and run
 * with tools/fuzz/run.sh; interesting inputs go to Tests/Fixtures/fuzz/decode,
 * which CodecTests replays on every test run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "CNoisyCodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    char err[NC_ERROR_CAPACITY];
    nc_format f = nc_sniff(data, len);
    if (f != NC_FORMAT_JPEG && f != NC_FORMAT_PNG && f != NC_FORMAT_WEBP) return 0;
    /* The last byte picks scale and crop, so one input explores several paths. */
    uint8_t knob = len ? data[len - 1] : 0;
    nc_decode_options opt;
    memset(&opt, 0, sizeof opt);
    opt.scale_denom = f == NC_FORMAT_JPEG ? (1 << (knob & 3)) : 1;
    opt.max_pixels = 1u << 22;
    opt.allow_wider = (knob >> 2) & 1;
    nc_plan plan;
    int (*plan_fn)(const uint8_t *, size_t, const nc_decode_options *, nc_plan *, char *) =
        f == NC_FORMAT_JPEG ? nc_jpeg_plan : (f == NC_FORMAT_PNG ? nc_png_plan : nc_webp_plan);
    int (*decode_fn)(const uint8_t *, size_t, const nc_decode_options *, uint8_t *, size_t, nc_plan *, char *) =
        f == NC_FORMAT_JPEG ? nc_jpeg_decode : (f == NC_FORMAT_PNG ? nc_png_decode : nc_webp_decode);
    if (plan_fn(data, len, &opt, &plan, err) != NC_OK) return 0;
    if ((knob >> 3) & 1 && plan.out_width > 2 && plan.out_height > 2) {
        opt.crop_x = plan.out_width / 3;
        opt.crop_y = plan.out_height / 4;
        opt.crop_w = plan.out_width / 2;
        opt.crop_h = plan.out_height / 2;
        if (plan_fn(data, len, &opt, &plan, err) != NC_OK) return 0;
    }
    size_t cap = (size_t)(plan.out_width + NC_CROP_SLACK) * (size_t)plan.out_height * (size_t)plan.out_channels;
    uint8_t *out = malloc(cap ? cap : 1);
    if (!out) return 0;
    decode_fn(data, len, &opt, out, cap, &plan, err);
    free(out);
    /* JPEG: the raw YCbCr planes of the same decode (the fast view's path). */
    nc_buffer planes_buffer = {0};
    nc_planes planes;
    if (f == NC_FORMAT_JPEG) nc_jpeg_decode_planes(data, len, &opt, &planes_buffer, &planes, err);
    /* JPEG: the lossless rewrite with restart markers, then a crop of the rewrite,
     * which decodes only the restart segments it covers. */
    if (f == NC_FORMAT_JPEG && (knob >> 4) & 1) {
        uint8_t *rewritten = NULL;
        size_t rewritten_len = 0;
        if (nc_jpeg_add_restarts(data, len, &rewritten, &rewritten_len, err) == NC_OK && rewritten) {
            nc_decode_options crop = opt;
            nc_plan whole;
            crop.crop_w = 0;
            if (nc_jpeg_plan(rewritten, rewritten_len, &crop, &whole, err) == NC_OK && whole.out_width > 4 && whole.out_height > 4) {
                crop.crop_x = whole.out_width / 2 + 1;
                crop.crop_y = whole.out_height / 3;
                crop.crop_w = whole.out_width / 4;
                crop.crop_h = whole.out_height / 3;
                size_t n = (size_t)(crop.crop_w + NC_CROP_SLACK) * (size_t)crop.crop_h * (size_t)whole.out_channels;
                uint8_t *pixels = malloc(n ? n : 1);
                if (pixels) nc_jpeg_decode(rewritten, rewritten_len, &crop, pixels, n, &whole, err);
                free(pixels);
                nc_jpeg_decode_planes(rewritten, rewritten_len, &crop, &planes_buffer, &planes, err);
            }
            nc_free(rewritten);
        }
    }
    nc_free(planes_buffer.data);
    return 0;
}
