#ifndef LLC_SHA256_H
#define LLC_SHA256_H
/* SHA-256 (FIPS 180-4), streaming: the hub client checks downloaded LFS files against their digest. */
#include <stddef.h>
#include <stdint.h>

typedef struct llc_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    size_t n_buf;
} llc_sha256;

void llc_sha256_init(llc_sha256 *s);
void llc_sha256_update(llc_sha256 *s, const void *data, size_t n);
void llc_sha256_final(llc_sha256 *s, uint8_t out[32]);
/* The digest as 64 lowercase hex characters and a NUL. */
void llc_sha256_hex(const uint8_t digest[32], char out[65]);

#endif
