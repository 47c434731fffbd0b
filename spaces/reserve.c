#include "spaces/reserve.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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

int reserve_open(uintptr_t begin, size_t size) {
  return sys_mprotect((void *)begin, size, PROT_READ | PROT_WRITE);
}

/* Tables are carved from one process-wide mapping made at the first call:
 * a heap's creation maps a dozen (bitmaps, cards, type tables), and each
 * mmap of its own cost 2-3 us (a tenth of fhscheme's image boot).  A piece
 * is page-aligned and handed out once; its owner munmaps it as before,
 * which punches a hole the carver never reuses (the kernel may, for other
 * mappings).  Once the region is used up, or if it could not be mapped,
 * each table gets its own mmap again.  No huge pages: small tables carved
 * side by side would otherwise share one 2 MiB page under THP=always. */
#define TABLE_REGION_BYTES ((size_t)64 << 30)
static _Atomic uintptr_t table_next;
static uintptr_t table_end;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_region_map(void) {
  void *p = sys_mmap(NULL, TABLE_REGION_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  sys_madvise(p, TABLE_REGION_BYTES, MADV_NOHUGEPAGE); /* a failure costs memory only */
  table_end = (uintptr_t)p + TABLE_REGION_BYTES;
  atomic_store_explicit(&table_next, (uintptr_t)p, memory_order_relaxed);
}

void *reserve_map_table(size_t bytes) {
  /* A carved table counts as an mmap for the fault seam (heap/sys.h), so
   * sweeps over a workload's mmaps still reach every table's failure path. */
  SYS_FAIL_IF_INJECTED(SYS_MMAP, NULL);
  size_t len = align_up(bytes, FH_PAGE);
  pthread_once(&table_once, table_region_map);
  /* pthread_once orders table_end and the first table_next before this;
   * the CAS only has to hand each piece out once. */
  uintptr_t cur = atomic_load_explicit(&table_next, memory_order_relaxed);
  while (len && cur && table_end - cur >= len)
    if (atomic_compare_exchange_weak_explicit(&table_next, &cur, cur + len, memory_order_relaxed,
                                              memory_order_relaxed))
      return (void *)cur;
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
