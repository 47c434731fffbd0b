#include "spaces/reserve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/sys.h"

uintptr_t reserve_range(size_t size, size_t align, uintptr_t hint) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (hint) {
    void *p = sys_mmap((void *)hint, size, PROT_NONE, flags | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) return 0;
    if ((uintptr_t)p != hint) { /* old kernels treat the flag as a hint */
      sys_munmap(p, size); /* a failure leaks address space only */
      return 0;
    }
    return hint;
  }
  /* Over-reserve by the alignment and trim both ends. */
  size_t len = size + align;
  void *p = sys_mmap(NULL, len, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED) return 0;
  uintptr_t raw = (uintptr_t)p, begin = align_up(raw, align);
  /* A failed trim is harmless: the surplus stays reserved PROT_NONE (address
   * space only), outside [begin, end). */
  if (begin > raw) sys_munmap(p, begin - raw);
  uintptr_t end = begin + size, raw_end = raw + len;
  if (raw_end > end) sys_munmap((void *)end, raw_end - end);
  return begin;
}

int reserve_commit(uintptr_t begin, size_t size) {
  void *p = sys_mmap((void *)begin, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return p == MAP_FAILED ? -1 : 0;
}

/* Harmless if munmap fails: the range leaks, and nothing uses it again. */
void reserve_release(uintptr_t begin, size_t size) {
  if (begin && size) sys_munmap((void *)begin, size);
}

void *reserve_map_table(size_t bytes) {
  void *p = sys_mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int reserve_discard(uintptr_t begin, size_t size) {
  uintptr_t b = align_up(begin, FH_PAGE), e = align_down(begin + size, FH_PAGE);
  if (e <= b || sys_madvise((void *)b, e - b, MADV_DONTNEED) == 0) return 0;
  /* Callers rely on the pages reading as zero (bump claims skip their
   * memset, jemalloc is told the extent is purged): when the kernel would
   * not take them back, zero them by hand.  Costs the memory, not the
   * contents. */
  int saved = errno;
  memset((void *)b, 0, e - b);
  errno = saved;
  return -1;
}

size_t reserve_resident(uintptr_t begin, uintptr_t end) {
  begin = align_down(begin, FH_PAGE);
  end = align_up(end, FH_PAGE);
  size_t total = 0;
  unsigned char vec[4096];
  for (uintptr_t p = begin; p < end;) {
    size_t pages = (end - p) / FH_PAGE;
    if (pages > sizeof vec) pages = sizeof vec;
    if (mincore((void *)p, pages * FH_PAGE, vec) == 0)
      for (size_t i = 0; i < pages; i++) total += (vec[i] & 1) * FH_PAGE;
    p += pages * FH_PAGE;
  }
  return total;
}
