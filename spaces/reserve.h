/* Address-space reservation.  Everything the heap manages lives in one
 * PROT_NONE reservation; each space maps its part read-write with
 * MAP_NORESERVE (untouched pages cost nothing) and is separated from its
 * neighbours by a PROT_NONE guard, so spaces never merge into one VMA: the
 * compactor's mremap needs exactly one VMA over the moving space. */
#ifndef FH_RESERVE_H_
#define FH_RESERVE_H_

#include <stddef.h>
#include <stdint.h>

#define FH_PAGE 4096u
#define FH_PMD ((size_t)2 << 20)

static inline uintptr_t align_up(uintptr_t x, size_t a) {
  return (x + a - 1) & ~(uintptr_t)(a - 1);
}
static inline uintptr_t align_down(uintptr_t x, size_t a) { return x & ~(uintptr_t)(a - 1); }

/* Reserve `size` bytes of PROT_NONE address space aligned to `align` (a power
 * of two); at `hint` exactly when hint != 0 (fails if taken).  0 on failure. */
uintptr_t reserve_range(size_t size, size_t align, uintptr_t hint);
/* Make [begin, begin+size) of a reservation usable (read-write, no reserve). */
int reserve_commit(uintptr_t begin, size_t size);
/* The same for a part of a fresh reservation never mapped since
 * (mprotect, which costs half of a MAP_FIXED mmap over the reservation). */
int reserve_open(uintptr_t begin, size_t size);
void reserve_release(uintptr_t begin, size_t size);
/* A private table of `bytes` zeroed bytes outside the heap's reservation
 * (side tables, bitmaps, stacks): read-write, no reserve, so untouched
 * pages cost nothing; page-aligned, carved from a shared region (release
 * it with munmap as any mapping, never mremap it in place: its neighbour
 * is another table).  NULL on failure (errno from mmap). */
void *reserve_map_table(size_t bytes);
/* Give pages back to the system; they read as zero afterwards, always:
 * when madvise fails they are zeroed by hand and -1 (errno) says so. */
int reserve_discard(uintptr_t begin, size_t size);
/* Bytes of [begin, end) that are resident (mincore). */
size_t reserve_resident(uintptr_t begin, uintptr_t end);

#endif
