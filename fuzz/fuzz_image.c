/* libFuzzer target for the image loader (make fuzz).
 *
 * Each input is treated as an image file.  Its CRC-32C is recomputed first
 * (a random byte string would otherwise stop at the checksum, and that
 * check is trivial), so the structural checks behind it see the damage.
 * Validation must refuse the input or accept it; an accepted input is then
 * loaded as a real heap (through a memfd, at the preferred base or
 * relocated) and verified with heap_verify, which aborts on any bad header
 * or reference: a validation gap becomes a crash the fuzzer reports. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "faultheap.h"
#include "heap/heap.h"
#include "heap/image_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void load_and_verify(const uint8_t *b, size_t n) {
  int fd = memfd_create("fuzz-image", MFD_CLOEXEC);
  if (fd < 0 || write(fd, b, n) != (ssize_t)n) abort();
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  fh_options o;
  fh_options_init(&o);
  o.heap_max = 1 << 20;
  o.non_moving_max = 1 << 20;
  o.image_path = path;
  fh_heap *h = fh_heap_create(&o);
  fh_heap *h2 = h ? fh_heap_create(&o) : NULL; /* the second one relocates */
  if (!h || !h2) abort(); /* validated images always load */
  heap_verify(h, "fuzz: loaded at the preferred base");
  heap_verify(h2, "fuzz: loaded relocated");
  fh_heap_destroy(h2);
  fh_heap_destroy(h);
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The loader sees page-aligned file mappings; keep the alignment. */
  uint8_t *b = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
  if (!b && size) return 0;
  if (size) memcpy(b, data, size);
  if (size >= sizeof(image_header)) {
    image_header h;
    memcpy(&h, b, sizeof h);
    h.crc32c = image_file_crc(b, size);
    memcpy(b, &h, sizeof h);
  }
  image_parsed p;
  if (image_validate(b, size, &p) == 0) {
    image_parsed_free(&p);
    load_and_verify(b, size);
  }
  free(b);
  return 0;
}
