/* Whole-file gzip reads, for the Fashion-MNIST IDX files Debian ships compressed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "CNoisyCodec.h"
#include "internal.h"

int nc_gunzip_file(const char *path, uint8_t **out, size_t *out_len, char *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        nc_set_error(err, "%s: cannot open: %s", path, strerror(errno));
        return NC_ERR_IO;
    }
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = (uint8_t *)malloc(cap);
    if (!buf) { gzclose(f); nc_set_error(err, "out of memory"); return NC_ERR_NO_MEMORY; }
    for (;;) {
        if (cap - len < (1 << 16)) {
            uint8_t *grown = (uint8_t *)realloc(buf, cap * 2);
            if (!grown) { free(buf); gzclose(f); nc_set_error(err, "out of memory"); return NC_ERR_NO_MEMORY; }
            buf = grown;
            cap *= 2;
        }
        int n = gzread(f, buf + len, (unsigned)(cap - len));
        if (n < 0) {
            int code = 0;
            const char *msg = gzerror(f, &code);
            nc_set_error(err, "%s: %s", path, msg);
            free(buf);
            gzclose(f);
            return NC_ERR_CORRUPT;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    gzclose(f);
    *out = buf;
    *out_len = len;
    return NC_OK;
}
