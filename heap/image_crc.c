/* CRC-32C (Castagnoli polynomial, reflected 0x82F63B78) for heap images.
 * The loader checksums the whole file before trusting a byte of it, so this
 * sits on the image-load path: x86-64 CPUs with SSE4.2 get the crc32
 * instruction, three streams at a time (below); others, and a
 * byte-at-a-time tail, use a 256-entry table. */
#include <pthread.h>
#include <string.h>

#include "heap/image_format.h"

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

#define POLY 0x82F63B78u
/* Three streams of STREAM bytes each, combined after every block. */
#define STREAM 4096
static uint32_t x_stream; /* x^(8 * STREAM) mod P */

/* a * b mod P, reflected (bit 31 is x^0). */
static uint32_t mult_mod_p(uint32_t a, uint32_t b) {
  uint32_t p = 0;
  for (uint32_t m = 1u << 31; m; m >>= 1) {
    if (a & m) p ^= b;
    b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
  }
  return p;
}

/* x^n mod P by square and multiply. */
static uint32_t x_pow_mod_p(uint64_t n) {
  uint32_t r = 1u << 31, sq = 1u << 30; /* x^0, x^1 */
  for (; n; n >>= 1) {
    if (n & 1) r = mult_mod_p(r, sq);
    sq = mult_mod_p(sq, sq);
  }
  return r;
}

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
    crc_table[i] = c;
  }
  x_stream = x_pow_mod_p(8 * (uint64_t)STREAM);
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_bytes(uint32_t c, const uint8_t *p, size_t n) {
  while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw_run(uint32_t c, const uint8_t *p,
                                                              size_t n) {
  uint64_t c64 = c;
  while (n && ((uintptr_t)p & 7)) {
    c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
    n--;
  }
  /* One crc32 has a latency of 3 cycles and a throughput of 1: three
   * independent streams over consecutive STREAM-byte thirds of a block keep
   * it busy (fhscheme's 653 KB image: 85 -> ~30 us).  The CRC without its
   * inversions is linear, so crc(s, A B) = crc(s, A) * x^(8|B|) ^ crc(0, B)
   * (mod P): the streams are joined with two multiplications a block. */
  for (; n >= 3 * STREAM; n -= 3 * STREAM, p += 3 * STREAM) {
    uint64_t a = c64, b = 0, d = 0;
    for (size_t i = 0; i < STREAM; i += 8) {
      uint64_t wa, wb, wd;
      memcpy(&wa, p + i, 8);
      memcpy(&wb, p + STREAM + i, 8);
      memcpy(&wd, p + 2 * STREAM + i, 8);
      a = __builtin_ia32_crc32di(a, wa);
      b = __builtin_ia32_crc32di(b, wb);
      d = __builtin_ia32_crc32di(d, wd);
    }
    uint32_t ab = mult_mod_p(x_stream, (uint32_t)a) ^ (uint32_t)b;
    c64 = mult_mod_p(x_stream, ab) ^ (uint32_t)d;
  }
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
  }
  uint32_t c32 = (uint32_t)c64;
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

uint32_t image_crc32c(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc_once, crc_init);
  uint32_t c = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
  if (crc_hw) return ~crc_hw_run(c, data, n);
#endif
  return ~crc_bytes(c, data, n);
}

uint32_t image_file_crc(const uint8_t *file, size_t bytes) {
  image_header h;
  memcpy(&h, file, sizeof h);
  h.crc32c = 0;
  uint32_t c = image_crc32c(0, &h, sizeof h);
  c = image_crc32c(c, file + sizeof h, bytes - sizeof h);
  return c;
}
