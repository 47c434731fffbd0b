/* Address-space helpers for the compactor's flip: aligned reservations and
 * the page-table move mremap(MREMAP_DONTUNMAP). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heap/sys.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

size_t fh_uffd_best_align(size_t len) {
  /* mremap moves a whole PUD entry (1 GiB) or PMD entry (2 MiB) at once
   * when source and destination are both aligned to it and the range
   * covers it: ~40 us per GiB instead of milliseconds (art-cmc.md 5.3). */
  return len >= FH_UFFD_PUD_SIZE ? FH_UFFD_PUD_SIZE : FH_UFFD_PMD_SIZE;
}

void *fh_uffd_reserve(size_t len, size_t align, int prot) {
  if (len == 0 || (len & (FH_UFFD_PAGE - 1))) {
    errno = EINVAL;
    return NULL;
  }
  if (align == 0)
    align = fh_uffd_best_align(len);
  if (align < FH_UFFD_PAGE || (align & (align - 1))) {
    errno = EINVAL;
    return NULL;
  }
  if (len > SIZE_MAX - align) {
    errno = ENOMEM;
    return NULL;
  }
  /* Over-reserve, then trim both ends.  The trims are whole-VMA edges, so
   * the result is a single VMA. */
  size_t total = len + align;
  uint8_t *p = sys_mmap(NULL, total, prot,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  uintptr_t base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = base - (uintptr_t)p;
  size_t tail = total - head - len;
  /* A failed trim is harmless: the surplus stays reserved beside the
   * range, and a later MREMAP_FIXED onto the range replaces just it. */
  if (head)
    sys_munmap(p, head);
  if (tail)
    sys_munmap((void *)(base + len), tail);
  return (void *)base;
}

int fh_uffd_unreserve(void *addr, size_t len) { return sys_munmap(addr, len); }

int fh_uffd_mremap_dontunmap(void *src, size_t len, void *dst) {
  if (((uintptr_t)src | (uintptr_t)dst | len) & (FH_UFFD_PAGE - 1) || len == 0) {
    errno = EINVAL;
    return -1;
  }
  /* The raw syscall: glibc 2.36's mremap reads a variadic fifth argument
   * whenever MREMAP_FIXED or MREMAP_DONTUNMAP is set (art-cmc.md 4.9). */
  void *r = sys_mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
  if (r == MAP_FAILED)
    return -1;
  if (r != dst) { /* cannot happen with MREMAP_FIXED */
    errno = EFAULT;
    return -1;
  }
  return 0;
}

int fh_uffd_count_vmas(const void *addr, size_t len) {
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f)
    return -1;
  uintptr_t lo = (uintptr_t)addr, hi = lo + len;
  int n = 0;
  char line[4608]; /* a longer line (a long path) only splits its tail */
  while (fgets(line, sizeof line, f)) {
    uintptr_t a, b;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &a, &b) == 2 && a < hi && b > lo)
      n++;
  }
  fclose(f);
  return n;
}
