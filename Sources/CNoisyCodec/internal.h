/* Helpers shared by the codec's C files; not part of the public header. */
#ifndef NC_INTERNAL_H
#define NC_INTERNAL_H
#include <stdarg.h>
#include <stdio.h>
#include "CNoisyCodec.h"

/* Writes a message into the caller's NC_ERROR_CAPACITY buffer, if one was given. */
static inline void nc_set_error(char *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, NC_ERROR_CAPACITY, fmt, ap);
    va_end(ap);
}
/*
 * Sets the plan's output rectangle: the crop asked in opt, checked against the
 * w x h that the decoder produces (`what` names it in the error), or all of it.
 */
static inline int nc_plan_output(const nc_decode_options *opt, int64_t w, int64_t h, const char *what,
                                 nc_plan *plan, char *err) {
    if (opt->crop_w > 0) {
        if (opt->crop_x < 0 || opt->crop_y < 0 || opt->crop_h <= 0 ||
            (int64_t)opt->crop_x + opt->crop_w > w || (int64_t)opt->crop_y + opt->crop_h > h) {
            nc_set_error(err, "crop %d,%d %dx%d is outside the %lldx%lld %s",
                         opt->crop_x, opt->crop_y, opt->crop_w, opt->crop_h, (long long)w, (long long)h, what);
            return NC_ERR_ARGUMENT;
        }
        plan->out_width = opt->crop_w;
        plan->out_height = opt->crop_h;
        plan->out_x = opt->crop_x;
        plan->out_y = opt->crop_y;
    } else {
        plan->out_width = (int32_t)w;
        plan->out_height = (int32_t)h;
    }
    return NC_OK;
}
#endif
