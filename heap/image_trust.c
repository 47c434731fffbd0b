/* Which build of the library wrote an image (image_trust=same_build).
 *
 * The identity is the GNU build-id note the linker puts in the executable
 * or shared object that holds this code (ld --build-id, on by default in
 * Debian's and most distributions' toolchains): a hash of the linked
 * output, so any change to any code linked with the library changes it,
 * and a rebuild of the same sources usually does not.  Folded to 64 bits
 * (two CRC-32Cs): it names a build, it is no signature.  0 when the object
 * has no such note: then no image is ever trusted (every load validates
 * every reference), which is only slower. */
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

#include "heap/image_format.h"

typedef struct find_self {
  uintptr_t addr; /* an address of this object's code */
  uint64_t id;
} find_self;

static uint64_t note_id(const uint8_t *p, size_t len) {
  /* Notes: {namesz, descsz, type} then name and desc, each padded to 4. */
  size_t at = 0;
  while (at + 12 <= len) {
    uint32_t namesz, descsz, type;
    memcpy(&namesz, p + at, 4);
    memcpy(&descsz, p + at + 4, 4);
    memcpy(&type, p + at + 8, 4);
    size_t name_at = at + 12, desc_at = name_at + ((namesz + 3u) & ~3u);
    size_t next = desc_at + ((descsz + 3u) & ~3u);
    if (next > len || next <= at) return 0;
    if (type == NT_GNU_BUILD_ID && namesz == 4 && memcmp(p + name_at, "GNU", 4) == 0 &&
        descsz > 0) {
      uint64_t lo = image_crc32c(0, p + desc_at, descsz);
      uint64_t hi = image_crc32c(0x9E3779B9u, p + desc_at, descsz);
      uint64_t id = hi << 32 | lo;
      return id ? id : 1;
    }
    at = next;
  }
  return 0;
}

static int visit(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  find_self *f = arg;
  int mine = 0;
  for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    mine = ph->p_type == PT_LOAD && f->addr >= lo && f->addr - lo < ph->p_memsz;
  }
  if (!mine) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    f->id = note_id((const uint8_t *)(info->dlpi_addr + ph->p_vaddr), ph->p_memsz);
    if (f->id) break;
  }
  return 1; /* found this object: stop */
}

static uint64_t build_id;
static void find_build_id(void) {
  find_self f = {(uintptr_t)&find_build_id, 0};
  dl_iterate_phdr(visit, &f);
  build_id = f.id;
}

uint64_t image_build_id(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, find_build_id);
  return build_id;
}
