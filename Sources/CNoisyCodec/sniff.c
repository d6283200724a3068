#include <string.h>
#include "CNoisyCodec.h"

nc_format nc_sniff(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return NC_FORMAT_JPEG;
    if (n >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return NC_FORMAT_PNG;
    if (n >= 4 && memcmp(d, "GIF8", 4) == 0) return NC_FORMAT_GIF;
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return NC_FORMAT_WEBP;
    if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0)) return NC_FORMAT_TIFF;
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return NC_FORMAT_BMP;
    return NC_FORMAT_UNKNOWN;
}
