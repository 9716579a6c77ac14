/*
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320: java.util.zip.CRC32, RocketMQ's body CRC).
 *
 * The append path computes the body CRCs of every record of an append in one call
 * (bodyCrcs), after the bodies were copied into the CommitLog: one crossing into native code per
 * append instead of one per message, over bytes that are still in the cache.
 *
 * x86-64 with PCLMULQDQ: the buffer is folded 64 bytes at a time with carry-less multiplies, then
 * reduced to 32 bits (Barrett); the fold constants are x^k mod P for the reflected polynomial, as
 * published by Intel ("Fast CRC Computation for Generic Polynomials Using PCLMULQDQ"). Elsewhere,
 * and for short inputs and tails, slice-by-8 tables.
 *
 * The running value here is the raw register (no pre/post inversion); crc32_ieee inverts.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crc32.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MQTS_CLMUL 1
#endif

#define POLY_REFLECTED 0xEDB88320u
/* Below this many bytes the tables are as fast as setting up the fold. */
#define CLMUL_MIN_BYTES 64

static uint32_t tables[8][256];
static int clmul_usable;

void crc32_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (POLY_REFLECTED & (0u - (c & 1u)));
    tables[0][i] = c;
  }
  /* tables[t][i]: byte i followed by t zero bytes. */
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = tables[0][i];
    for (int t = 1; t < 8; t++) {
      c = tables[0][c & 0xffu] ^ (c >> 8);
      tables[t][i] = c;
    }
  }
#ifdef MQTS_CLMUL
  __builtin_cpu_init();
  clmul_usable = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

int crc32_accelerated(void) {
  return clmul_usable;
}

static uint32_t update_tables(uint32_t crc, const uint8_t *p, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n >= 8) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = tables[7][lo & 0xffu] ^ tables[6][(lo >> 8) & 0xffu] ^ tables[5][(lo >> 16) & 0xffu] ^ tables[4][lo >> 24] ^
          tables[3][hi & 0xffu] ^ tables[2][(hi >> 8) & 0xffu] ^ tables[1][(hi >> 16) & 0xffu] ^ tables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
#endif
  while (n--) crc = tables[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
  return crc;
}

#ifdef MQTS_CLMUL
/* n >= 64 and a multiple of 16. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t update_clmul(uint32_t crc, const uint8_t *p, size_t n) {
  /* x^(4*128+32) and x^(4*128-32) mod P: four blocks ahead. */
  const __m128i fold4 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
  /* x^(128+32) and x^(128-32) mod P: one block ahead. */
  const __m128i fold1 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
  /* x^64 mod P. */
  const __m128i fold32 = _mm_set_epi64x(0, 0x163cd6124LL);
  /* Barrett: P (low) and floor(x^64 / P) (high), both reflected. */
  const __m128i barrett = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
  const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);

  __m128i x0 = _mm_loadu_si128((const __m128i *)p);
  __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
  __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
  __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
  x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
  p += 64;
  n -= 64;

  while (n >= 64) {
    __m128i h0 = _mm_clmulepi64_si128(x0, fold4, 0x11);
    __m128i h1 = _mm_clmulepi64_si128(x1, fold4, 0x11);
    __m128i h2 = _mm_clmulepi64_si128(x2, fold4, 0x11);
    __m128i h3 = _mm_clmulepi64_si128(x3, fold4, 0x11);
    x0 = _mm_clmulepi64_si128(x0, fold4, 0x00);
    x1 = _mm_clmulepi64_si128(x1, fold4, 0x00);
    x2 = _mm_clmulepi64_si128(x2, fold4, 0x00);
    x3 = _mm_clmulepi64_si128(x3, fold4, 0x00);
    x0 = _mm_xor_si128(_mm_xor_si128(x0, h0), _mm_loadu_si128((const __m128i *)p));
    x1 = _mm_xor_si128(_mm_xor_si128(x1, h1), _mm_loadu_si128((const __m128i *)(p + 16)));
    x2 = _mm_xor_si128(_mm_xor_si128(x2, h2), _mm_loadu_si128((const __m128i *)(p + 32)));
    x3 = _mm_xor_si128(_mm_xor_si128(x3, h3), _mm_loadu_si128((const __m128i *)(p + 48)));
    p += 64;
    n -= 64;
  }

  /* Four lanes into one. */
  __m128i h = _mm_clmulepi64_si128(x0, fold1, 0x11);
  x0 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x0, fold1, 0x00), h), x1);
  h = _mm_clmulepi64_si128(x0, fold1, 0x11);
  x0 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x0, fold1, 0x00), h), x2);
  h = _mm_clmulepi64_si128(x0, fold1, 0x11);
  x0 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x0, fold1, 0x00), h), x3);

  while (n >= 16) {
    h = _mm_clmulepi64_si128(x0, fold1, 0x11);
    x0 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x0, fold1, 0x00), h), _mm_loadu_si128((const __m128i *)p));
    p += 16;
    n -= 16;
  }

  /* 128 bits to 64. */
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(x0, fold1, 0x10), _mm_srli_si128(x0, 8));
  /* 64 bits to 32 (plus carry). */
  x0 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x0, low32), fold32, 0x00), _mm_srli_si128(x0, 4));
  /* Barrett reduction to the 32-bit remainder. */
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x0, low32), barrett, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(t, x0), 1);
}
#endif

uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
#ifdef MQTS_CLMUL
  if (clmul_usable && n >= CLMUL_MIN_BYTES) {
    size_t whole = n & ~(size_t)15;
    crc = update_clmul(crc, p, whole);
    p += whole;
    n -= whole;
  }
#endif
  return update_tables(crc, p, n);
}

uint32_t crc32_ieee(const uint8_t *p, size_t n) {
  return ~crc32_update(0xffffffffu, p, n);
}
