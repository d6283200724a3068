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
#endif
