/* Side bitmaps: one bit per granule (8 or 16 bytes) over an address range.
 * Mark, live and allocation bits live here, never in object headers, so a
 * collection never dirties image or zygote pages. */
#ifndef FH_BITMAP_H_
#define FH_BITMAP_H_

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fh_bitmap {
  uintptr_t base;
  unsigned shift; /* log2 of the granule */
  size_t nbits;
  _Atomic uint64_t *words;
  size_t map_bytes;
} fh_bitmap;

int bitmap_init(fh_bitmap *b, uintptr_t base, size_t range_bytes, unsigned granule_shift);
void bitmap_destroy(fh_bitmap *b);
/* Zero the bits covering [begin, end) (whole words are released to the OS). */
void bitmap_clear_range(fh_bitmap *b, uintptr_t begin, uintptr_t end);
/* The same, writing zeroes and keeping every page: for bits about to be set
 * again (a discarded page costs a read fault and a write fault when it is
 * next touched, more than zeroing it). */
void bitmap_zero_range(fh_bitmap *b, uintptr_t begin, uintptr_t end);
void bitmap_clear_all(fh_bitmap *b);

static inline size_t bitmap_index(const fh_bitmap *b, uintptr_t a) { return (a - b->base) >> b->shift; }
static inline uintptr_t bitmap_addr(const fh_bitmap *b, size_t i) { return b->base + (i << b->shift); }
static inline int bitmap_covers(const fh_bitmap *b, uintptr_t a) {
  return a >= b->base && bitmap_index(b, a) < b->nbits;
}

static inline int bitmap_test(const fh_bitmap *b, uintptr_t a) {
  size_t i = bitmap_index(b, a);
  return (int)((atomic_load_explicit(&b->words[i >> 6], memory_order_relaxed) >> (i & 63)) & 1);
}
/* Set the bit; returns its previous value.  Safe against concurrent setters. */
static inline int bitmap_test_and_set(fh_bitmap *b, uintptr_t a) {
  size_t i = bitmap_index(b, a);
  uint64_t m = (uint64_t)1 << (i & 63);
  if (atomic_load_explicit(&b->words[i >> 6], memory_order_relaxed) & m) return 1;
  return (atomic_fetch_or_explicit(&b->words[i >> 6], m, memory_order_relaxed) & m) != 0;
}
static inline void bitmap_set(fh_bitmap *b, uintptr_t a) { (void)bitmap_test_and_set(b, a); }
static inline void bitmap_clear(fh_bitmap *b, uintptr_t a) {
  size_t i = bitmap_index(b, a);
  atomic_fetch_and_explicit(&b->words[i >> 6], ~((uint64_t)1 << (i & 63)), memory_order_relaxed);
}
/* Address of the first set bit at or after `from` and before `end`, or 0. */
uintptr_t bitmap_next_set(const fh_bitmap *b, uintptr_t from, uintptr_t end);
/* Address of the last set bit at or before `at` and not below `lo`, or 0. */
uintptr_t bitmap_prev_set(const fh_bitmap *b, uintptr_t lo, uintptr_t at);

#endif
