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

/* DCT scale 1/denom and the colour space we hand out (gray, RGB, or CMYK that we invert). */
static void nc_jpeg_set_output(struct jpeg_decompress_struct *cinfo, int denom) {
    cinfo->scale_num = 1;
    cinfo->scale_denom = (unsigned)denom;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; break;
    default: cinfo->out_color_space = JCS_RGB; break;
    }
    jpeg_calc_output_dimensions(cinfo);
}

/*
 * Restart slices. A baseline JPEG's entropy-coded data can only be read from its
 * start, so a region decode must Huffman-decode every row above the crop's bottom
 * across the full width: about two thirds of a train view's decode time. Restart
 * markers (DRI) reset the decoder's state, so a stream whose restart segments tile
 * whole MCU rows can be cut apart: the segments that cover a crop, renumbered and
 * behind the same header with smaller dimensions, form a valid JPEG of their own.
 * Its blocks are the same coefficients, so its pixels equal the full image's, except
 * that chroma upsampling replicates at its edges; the slice therefore reaches 2
 * scaled pixels beyond the crop on every side, as the region decode does.
 */
typedef struct {
    size_t sof_dims;        /* offset of the SOF frame's height field */
    size_t entropy;         /* first byte of the entropy-coded data */
    int width, height;      /* the image, full size */
    int mcu_h;              /* MCU height in full-size pixels */
    int seg_w;              /* restart segment width in full-size pixels */
    int mcu_rows;
    int per_row;            /* restart segments per MCU row */
} nc_restart_layout;

/* The MCU size in full-size pixels of a single-scan stream (after jpeg_read_header). */
static void nc_jpeg_mcu_size(const struct jpeg_decompress_struct *cinfo, int *w, int *h) {
    if (cinfo->num_components == 1) {
        *w = *h = 8;  /* a one-component scan's MCU is one block */
    } else {
        *w = 8 * cinfo->max_h_samp_factor;
        *h = 8 * cinfo->max_v_samp_factor;
    }
}

/*
 * The offset of the first marker segment m1 or m2 before the first scan, walking the
 * segments from SOI up to `end`; 0 when there is none, or the walk meets a byte that
 * starts no marker.
 */
static size_t nc_jpeg_segment(const uint8_t *d, size_t end, int m1, int m2) {
    size_t p = 2;
    while (p + 4 <= end) {
        if (d[p] != 0xFF) return 0;
        const int m = d[p + 1];
        if (m == 0xFF) { p++; continue; }  /* fill byte */
        if (m == 0xDA || m == 0xD9) return 0;
        if (m == m1 || m == m2) return p;
        p += 2 + (((size_t)d[p + 2] << 8) | d[p + 3]);
    }
    return 0;
}

/* After jpeg_read_header: 1 when the stream can be sliced (see above). */
static int nc_restart_layout_of(struct jpeg_decompress_struct *cinfo, const uint8_t *data, size_t len,
                                nc_restart_layout *L) {
    if (cinfo->restart_interval == 0 || cinfo->progressive_mode || cinfo->arith_code) return 0;
    if (jpeg_has_multiple_scans(cinfo) || cinfo->comps_in_scan != cinfo->num_components) return 0;
    int mcu_w;
    nc_jpeg_mcu_size(cinfo, &mcu_w, &L->mcu_h);
    L->width = (int)cinfo->image_width;
    L->height = (int)cinfo->image_height;
    const int mcus_per_row = (L->width + mcu_w - 1) / mcu_w;
    L->mcu_rows = (L->height + L->mcu_h - 1) / L->mcu_h;
    if (mcus_per_row % (int)cinfo->restart_interval != 0) return 0;
    L->per_row = mcus_per_row / (int)cinfo->restart_interval;
    L->seg_w = mcu_w * (int)cinfo->restart_interval;
    L->entropy = len - cinfo->src->bytes_in_buffer;
    /* The frame header's height and width fields. */
    const size_t sof = nc_jpeg_segment(data, L->entropy, 0xC0, 0xC1);
    if (sof == 0 || sof + 9 > L->entropy) return 0;
    L->sof_dims = sof + 5;
    return 1;
}

/*
 * Writes into out (at least len + 2 bytes) a JPEG of restart-segment columns
 * [c0, c1) and MCU rows [r0, r1); returns its length, or 0 when the markers are
 * not where the layout says (then the caller decodes the whole stream, and libjpeg
 * reports whatever is wrong with it).
 */
static size_t nc_restart_slice(const uint8_t *data, size_t len, const nc_restart_layout *L,
                               int c0, int c1, int r0, int r1, uint8_t *out) {
    memcpy(out, data, L->entropy);
    int w = (c1 - c0) * L->seg_w, h = (r1 - r0) * L->mcu_h;
    if (c0 * L->seg_w + w > L->width) w = L->width - c0 * L->seg_w;
    if (r0 * L->mcu_h + h > L->height) h = L->height - r0 * L->mcu_h;
    out[L->sof_dims] = (uint8_t)(h >> 8);
    out[L->sof_dims + 1] = (uint8_t)h;
    out[L->sof_dims + 2] = (uint8_t)(w >> 8);
    out[L->sof_dims + 3] = (uint8_t)w;
    size_t o = L->entropy;
    const long last = (long)(r1 - 1) * L->per_row + (c1 - 1);
    long index = 0;           /* the segment being walked */
    size_t start = L->entropy;
    int written = 0;
    size_t q = L->entropy;
    for (;;) {
        const uint8_t *ff = q < len ? memchr(data + q, 0xFF, len - q) : NULL;
        if (!ff || (size_t)(ff - data) + 1 >= len) return 0;  /* no end marker */
        q = (size_t)(ff - data);
        int m = data[q + 1];
        if (m == 0x00 || m == 0xFF) { q += 1 + (m == 0x00); continue; }  /* stuffed or fill byte */
        int restart = m >= 0xD0 && m <= 0xD7;
        if (!restart && m != 0xD9) return 0;
        if (restart && m != 0xD0 + (int)(index & 7)) return 0;
        int row = (int)(index / L->per_row), col = (int)(index % L->per_row);
        if (row >= r0 && col >= c0 && col < c1) {
            if (written) {
                out[o++] = 0xFF;
                out[o++] = (uint8_t)(0xD0 + ((written - 1) & 7));
            }
            memcpy(out + o, data + start, q - start);
            o += q - start;
            written++;
        }
        if (index == last) break;
        if (!restart) return 0;  /* the image ended early */
        index++;
        q += 2;
        start = q;
    }
    out[o++] = 0xFF;
    out[o++] = 0xD9;
    return o;
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
    nc_jpeg_set_output(cinfo, denom);
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

/*
 * For a crop of a sliceable stream (its layout L, from nc_restart_layout_of), points
 * cinfo at a JPEG of only the restart segments the crop needs, held in *slice
 * (malloc'd; the caller frees it), and returns the full-size pixel where that JPEG
 * starts. Returns 0 and leaves cinfo alone when a slice would not help or the markers
 * are not where L says.
 */
static int nc_jpeg_use_slice(struct jpeg_decompress_struct *cinfo, const uint8_t *data, size_t len,
                             const nc_restart_layout *layout, const nc_decode_options *opt, int rows,
                             uint8_t *volatile *slice, int *x0, int *y0) {
    const nc_restart_layout L = *layout;
    const int d = opt->scale_denom, W = L.width, H = L.height, seg_w = L.seg_w;
    /* The crop in full-size pixels, 2 scaled pixels wider on each side (edge upsampling). */
    int left = (opt->crop_x - 2) * d, top = (opt->crop_y - 2) * d;
    int right = (opt->crop_x + opt->crop_w + 2) * d, bottom = (opt->crop_y + rows + 2) * d;
    if (left < 0) left = 0;
    if (top < 0) top = 0;
    if (right > W) right = W;
    if (bottom > H) bottom = H;
    int c0 = left / seg_w, c1 = (right + seg_w - 1) / seg_w;
    int r0 = top / L.mcu_h, r1 = (bottom + L.mcu_h - 1) / L.mcu_h;
    if (c1 > L.per_row) c1 = L.per_row;
    if (r1 > L.mcu_rows) r1 = L.mcu_rows;
    if (c0 == 0 && c1 == L.per_row && r0 == 0) return 0;  /* the region decode reads no more */
    uint8_t *buffer = malloc(len + 2);
    if (!buffer) return 0;
    size_t n = nc_restart_slice(data, len, &L, c0, c1, r0, r1, buffer);
    if (n == 0) {
        free(buffer);
        return 0;
    }
    *slice = buffer;  /* before anything can longjmp: the caller frees it */
    *x0 = c0 * seg_w;
    *y0 = r0 * L.mcu_h;
    nc_jpeg_error *e = (nc_jpeg_error *)cinfo->err;
    const int benign = e->benign;  /* the header is read twice: count its warnings once */
    jpeg_abort_decompress(cinfo);
    jpeg_mem_src(cinfo, buffer, (unsigned long)n);
    jpeg_read_header(cinfo, TRUE);
    e->benign = benign;
    nc_jpeg_set_output(cinfo, d);
    return 1;
}

/*
 * After the rows a decode needs: a crop with rows left below it stops there; a decode
 * that read every row reads the trailer, where libjpeg reports what follows the image.
 * Then the warnings tolerated go into info.
 */
static void nc_jpeg_finish(struct jpeg_decompress_struct *cinfo, nc_jpeg_error *e, nc_info *info) {
    if (cinfo->output_scanline < cinfo->output_height) {
        jpeg_abort_decompress(cinfo);
    } else {
        e->stage = "trailer";
        jpeg_finish_decompress(cinfo);
    }
    info->warnings = e->benign;
}

int nc_jpeg_decode(const uint8_t *data, size_t len, const nc_decode_options *opt,
                   uint8_t *out, size_t cap, nc_plan *plan, char *err) {
    struct jpeg_decompress_struct cinfo;
    nc_jpeg_error jerr;
    /* A restart slice, if one is decoded instead of the whole stream. */
    uint8_t *volatile slice = NULL;
    nc_jpeg_install(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(slice);
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
    /* The crop in the coordinates of what is decoded: the image, or a restart slice of it. */
    int crop_x = opt->crop_x, crop_y = opt->crop_y, origin_x = 0;
    nc_restart_layout L;
    if (cropping && nc_restart_layout_of(&cinfo, data, len, &L)) {
        int x0 = 0, y0 = 0;
        if (nc_jpeg_use_slice(&cinfo, data, len, &L, opt, plan->out_height, &slice, &x0, &y0)) {
            origin_x = x0 / opt->scale_denom;
            crop_x -= origin_x;
            crop_y -= y0 / opt->scale_denom;
        }
    }
    jerr.stage = "entropy data";
    jpeg_start_decompress(&cinfo);

    /* Region decode: libjpeg-turbo widens the column range to iMCU boundaries. */
    JDIMENSION xoff = 0, width = cinfo.output_width;
    int row_x = 0;  /* where our crop starts inside a decoded row */
    if (cropping) {
        xoff = (JDIMENSION)crop_x;
        width = (JDIMENSION)opt->crop_w;
        if (xoff != 0 || width != cinfo.output_width) {
            jpeg_crop_scanline(&cinfo, &xoff, &width);
        }
        row_x = crop_x - (int)xoff;
        if (crop_y > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)crop_y);
        if (widen) {
            /* Hand back what libjpeg-turbo decodes: no per-row copy. */
            plan->out_x = (int32_t)xoff + origin_x;
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
    nc_jpeg_finish(&cinfo, &jerr, &plan->info);
    jpeg_destroy_decompress(&cinfo);
    free(slice);
    return NC_OK;
}

/*
 * Raw planes. Upsampling chroma and converting to RGB are about a fifth of a full
 * decode, and a train view then resizes three full-resolution channels. Handed
 * libjpeg's planes instead, the view resizes luma at its resolution and chroma at
 * its own (a quarter of the samples for 4:2:0) and converts the 224 x 224 result:
 * what the pixels lose is that chroma is interpolated once, bilinearly, instead of
 * by libjpeg's upsampler and then the resize (README, "Fast decode").
 */

/* 1 when cinfo (after jpeg_read_header) is YCbCr with chroma planes the resize can map:
 * both chroma components sampled once per MCU, luma once or twice in each direction. */
static int nc_jpeg_planar_layout(const struct jpeg_decompress_struct *cinfo) {
    if (cinfo->num_components != 3 || cinfo->jpeg_color_space != JCS_YCbCr || cinfo->arith_code) return 0;
    const jpeg_component_info *c = cinfo->comp_info;
    if (c[1].h_samp_factor != 1 || c[1].v_samp_factor != 1 || c[2].h_samp_factor != 1 || c[2].v_samp_factor != 1)
        return 0;
    return c[0].h_samp_factor <= 2 && c[0].v_samp_factor <= 2;
}

/* Grows buffer to n bytes; 0 when memory runs out. */
static int nc_buffer_reserve(nc_buffer *buffer, size_t n) {
    if (buffer->capacity >= n) return 1;
    uint8_t *p = realloc(buffer->data, n);
    if (!p) return 0;
    buffer->data = p;
    buffer->capacity = n;
    return 1;
}

#define NC_PLANE_PAD 32

/* 1 when a DRI segment with a non-zero interval comes before the first scan: a walk of
 * the marker segments, so that files without restart markers (a plain store, every
 * view) are declined without libjpeg reading their header twice. */
static int nc_jpeg_declares_restarts(const uint8_t *d, size_t len) {
    const size_t p = nc_jpeg_segment(d, len, 0xDD, 0xDD);
    return p != 0 && p + 6 <= len && ((d[p + 2] << 8) | d[p + 3]) >= 4 && ((d[p + 4] << 8) | d[p + 5]) != 0;
}

int nc_jpeg_decode_planes(const uint8_t *data, size_t len, const nc_decode_options *opt,
                          nc_buffer *buffer, nc_planes *out, char *err) {
    if (!nc_jpeg_declares_restarts(data, len)) return NC_NOT_PLANAR;
    struct jpeg_decompress_struct cinfo;
    nc_jpeg_error jerr;
    uint8_t *volatile slice = NULL;
    nc_jpeg_install(&cinfo, &jerr, err);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(slice);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    nc_plan plan;
    int status = nc_jpeg_prepare(&cinfo, data, len, opt, &plan, err);
    if (status == NC_OK && !nc_jpeg_planar_layout(&cinfo)) status = NC_NOT_PLANAR;
    const int d = opt->scale_denom, cropping = opt->crop_w > 0;
    /* Only sliceable streams, crop or not: a store's files take one path or the other. */
    nc_restart_layout L;
    if (status == NC_OK && !nc_restart_layout_of(&cinfo, data, len, &L)) status = NC_NOT_PLANAR;
    if (status != NC_OK) {
        jpeg_destroy_decompress(&cinfo);
        return status;
    }
    memset(out, 0, sizeof(*out));
    out->info = plan.info;
    /* Scaled rows needed below the planes' first row (all of them without a crop). */
    int need = (int)cinfo.output_height;
    if (cropping) {
        int x0 = 0, y0 = 0;
        /* No slice (it would read no less, or its markers are not where they should
         * be): the whole stream from its top, where libjpeg reports any damage. */
        if (nc_jpeg_use_slice(&cinfo, data, len, &L, opt, plan.out_height, &slice, &x0, &y0)) {
            out->origin_x = x0 / d;
            out->origin_y = y0 / d;
        }
        need = opt->crop_y - out->origin_y + plan.out_height + 2;
    }
    cinfo.raw_data_out = TRUE;
    cinfo.out_color_space = JCS_YCbCr;
    jerr.stage = "entropy data";
    jpeg_start_decompress(&cinfo);
    if (need > (int)cinfo.output_height) need = (int)cinfo.output_height;
    const int group = cinfo.max_v_samp_factor * cinfo.min_DCT_scaled_size;  /* scaled rows per iMCU row */
    const int imcu_rows = (need + group - 1) / group;
    size_t total = 0;
    for (int k = 0; k < 3; k++) {
        const jpeg_component_info *c = &cinfo.comp_info[k];
        const int sx = cinfo.max_h_samp_factor * cinfo.min_DCT_scaled_size, ux = c->h_samp_factor * c->DCT_scaled_size;
        const int uy = c->v_samp_factor * c->DCT_scaled_size;
        if (sx % ux != 0 || group % uy != 0) {  /* not a whole number of pixels per sample */
            jpeg_destroy_decompress(&cinfo);
            free(slice);
            return NC_NOT_PLANAR;
        }
        nc_plane *p = &out->planes[k];
        p->fx = sx / ux;
        p->fy = group / uy;
        p->stride = (int32_t)(c->width_in_blocks * (JDIMENSION)c->DCT_scaled_size);
        p->width = (int32_t)c->downsampled_width;
        p->height = imcu_rows * uy;
        if (p->height > (int32_t)c->downsampled_height) p->height = (int32_t)c->downsampled_height;
        p->offset = total;
        total += (size_t)p->stride * (size_t)(imcu_rows * uy) + NC_PLANE_PAD;
    }
    if (!nc_buffer_reserve(buffer, total)) {
        nc_set_error(err, "out of memory for %zu bytes of planes", total);
        jpeg_destroy_decompress(&cinfo);
        free(slice);
        return NC_ERR_NO_MEMORY;
    }
    JSAMPROW rows[3][2 * DCTSIZE];
    JSAMPARRAY arrays[3] = {rows[0], rows[1], rows[2]};
    for (int r = 0; r < imcu_rows; r++) {
        for (int k = 0; k < 3; k++) {
            const nc_plane *p = &out->planes[k];
            const int n = group / p->fy;
            for (int i = 0; i < n; i++) {
                rows[k][i] = buffer->data + p->offset + (size_t)(r * n + i) * (size_t)p->stride;
            }
        }
        jpeg_read_raw_data(&cinfo, arrays, (JDIMENSION)group);
    }
    nc_jpeg_finish(&cinfo, &jerr, &out->info);
    jpeg_destroy_decompress(&cinfo);
    free(slice);
    return NC_OK;
}

/*
 * Encoders write into a malloc'd buffer of ours, given to jpeg_mem_dest and sized past
 * the output so that libjpeg does not grow it. (Given none, libjpeg allocates one,
 * frees it when it grows and hands the new one back only at the end: on an error in
 * between, neither pointer would be ours to free.) After jpeg_finish_compress this
 * returns the result: ours, or, if libjpeg did outgrow it, libjpeg's (ours freed).
 */
static unsigned char *nc_jpeg_result(unsigned char *ours, unsigned char *written) {
    if (written != ours) free(ours);
    return written;
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
    /* Our destination buffer (see nc_jpeg_result), past what a JPEG of these pixels takes. */
    const size_t raw = (size_t)width * (size_t)height * (size_t)components;
    unsigned long capacity = (unsigned long)(raw + raw / 2 + 65536);
    unsigned char *volatile buffer = malloc(capacity);
    if (!buffer) {
        nc_set_error(err, "out of memory for a %dx%dx%d encode", width, height, components);
        return NC_ERR_NO_MEMORY;
    }
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_compress(&cinfo);
    unsigned char *mem = buffer;
    unsigned long size = capacity;
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
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = nc_jpeg_result(buffer, mem);
    *out_len = size;
    return NC_OK;
}

/* After jpeg_read_coefficients of a progressive file: 1 when every coefficient of every
 * component was refined to its last bit (coef_bits 0; -1 means never sent). */
static int nc_progressive_complete(const struct jpeg_decompress_struct *cinfo) {
    if (!cinfo->coef_bits) return 0;
    for (int c = 0; c < cinfo->num_components; c++) {
        for (int k = 0; k < DCTSIZE2; k++) {
            if (cinfo->coef_bits[c][k] != 0) return 0;
        }
    }
    return 1;
}

int nc_jpeg_add_restarts(const uint8_t *data, size_t len, uint8_t **out, size_t *out_len, char *err) {
    *out = NULL;
    *out_len = 0;
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    nc_jpeg_error jerr;  /* both objects report through it */
    volatile int dst_made = 0;
    unsigned char *volatile buffer = NULL;
    nc_jpeg_install(&src, &jerr, err);
    if (setjmp(jerr.jump)) {
        if (dst_made) jpeg_destroy_compress(&dst);
        jpeg_destroy_decompress(&src);
        free(buffer);
        return NC_ERR_CORRUPT;
    }
    jpeg_create_decompress(&src);
    jpeg_mem_src(&src, data, (unsigned long)len);
    jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
    for (int m = 0; m < 16; m++) jpeg_save_markers(&src, JPEG_APP0 + m, 0xFFFF);
    jpeg_read_header(&src, TRUE);
    nc_restart_layout L;
    const int eligible = (src.jpeg_color_space == JCS_YCbCr || src.jpeg_color_space == JCS_GRAYSCALE) &&
                         !src.arith_code && (src.image_width >= NC_RESTART_MIN_SIDE || src.image_height >= NC_RESTART_MIN_SIDE) &&
                         !nc_restart_layout_of(&src, data, len, &L);
    if (!eligible) {
        jpeg_destroy_decompress(&src);
        return NC_OK;
    }
    jerr.stage = "entropy data";
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    if (src.progressive_mode && !nc_progressive_complete(&src)) {
        /* Scans are missing: libjpeg decodes such a file with block smoothing, which
         * the same coefficients written as one baseline scan would not get. */
        jpeg_destroy_decompress(&src);
        return NC_OK;
    }
    jerr.stage = "transcode";
    jpeg_create_compress(&dst);
    dst.err = &jerr.pub;
    dst_made = 1;
    /* Our destination buffer (see nc_jpeg_result): a lossless transcode with optimal
     * Huffman tables is about the input's size. */
    unsigned long capacity = (unsigned long)len * 2 + 65536;
    buffer = malloc(capacity);
    if (!buffer) {
        jpeg_destroy_compress(&dst);
        jpeg_destroy_decompress(&src);
        nc_set_error(err, "out of memory for a %zu-byte transcode", len);
        return NC_ERR_NO_MEMORY;
    }
    unsigned char *mem = buffer;
    unsigned long size = capacity;
    jpeg_mem_dest(&dst, &mem, &size);
    jpeg_copy_critical_parameters(&src, &dst);
    dst.optimize_coding = TRUE;
    int mcu_w, mcu_h;
    nc_jpeg_mcu_size(&src, &mcu_w, &mcu_h);
    const unsigned mcus_per_row = (src.image_width + (unsigned)mcu_w - 1) / (unsigned)mcu_w;
    /* Every MCU (16 pixels in 4:2:0): the narrowest slices, so a crop decodes the least
     * beyond its edges. Measured with YCbCr views: 4.5% faster views than every 2 MCUs,
     * for files 2.6% larger (BENCHMARKS.md, "Restart slices"). */
    dst.restart_interval = 1;
    jpeg_write_coefficients(&dst, coefficients);
    for (jpeg_saved_marker_ptr m = src.marker_list; m; m = m->next) {
        /* libjpeg writes its own JFIF and Adobe markers; copy everything else (EXIF, ICC, ...). */
        if (dst.write_JFIF_header && m->marker == JPEG_APP0 && m->data_length >= 5 && !memcmp(m->data, "JFIF", 5)) continue;
        if (dst.write_Adobe_marker && m->marker == JPEG_APP0 + 14 && m->data_length >= 5 && !memcmp(m->data, "Adobe", 5)) continue;
        jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
    }
    jpeg_finish_compress(&dst);
    jerr.stage = "trailer";
    jpeg_finish_decompress(&src);
    jpeg_destroy_decompress(&src);
    jpeg_destroy_compress(&dst);
    *out = nc_jpeg_result(buffer, mem);
    *out_len = (size_t)size;
    return NC_OK;
}

void nc_free(void *p) { free(p); }
