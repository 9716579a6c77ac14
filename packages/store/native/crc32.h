#ifndef MQTS_CRC32_H
#define MQTS_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Builds the tables and detects PCLMULQDQ; call once before the others. */
void crc32_init(void);
/* 1 when the carry-less multiply path is in use. */
int crc32_accelerated(void);
/* The raw register after `n` more bytes (no inversion). */
uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n);
/* CRC-32 of `n` bytes, as java.util.zip.CRC32 and zlib's crc32 compute it. */
uint32_t crc32_ieee(const uint8_t *p, size_t n);

#endif
