/* CRC-32C (Castagnoli polynomial, reflected 0x82F63B78) for heap images.
 * The loader checksums the whole file before trusting a byte of it, so this
 * sits on the image-load path: x86-64 CPUs with SSE4.2 get the crc32
 * instruction (about 8 bytes a cycle); others, and a byte-at-a-time tail,
 * use a 256-entry table. */
#include <pthread.h>
#include <string.h>

#include "heap/image_format.h"

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
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
  /* Three independent streams would hide the instruction's latency; one is
   * enough here (a few GB/s), the file read costs more. */
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
