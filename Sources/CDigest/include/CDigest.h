/*
 * CDigest: SHA-256 over bytes, one-shot or streamed. Pure C, no dependencies.
 * All symbols carry the dg_ prefix.
 */
#ifndef CDIGEST_H
#define CDIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif



/** SHA-256 of data into out[32]. */
void dg_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

/** Incremental SHA-256, for files written in a stream (exports). */
typedef struct {
    uint32_t h[8];
    uint64_t length;
    uint8_t buffer[64];
    size_t buffered;
} dg_sha256_ctx;
void dg_sha256_init(dg_sha256_ctx *c);
void dg_sha256_update(dg_sha256_ctx *c, const uint8_t *data, size_t len);
void dg_sha256_final(dg_sha256_ctx *c, uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif
