#include "spaces/bitmap.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/sys.h"
#include "spaces/reserve.h"

int bitmap_init(fh_bitmap *b, uintptr_t base, size_t range_bytes, unsigned granule_shift) {
  memset(b, 0, sizeof *b);
  b->base = base;
  b->shift = granule_shift;
  b->nbits = range_bytes >> granule_shift;
  b->map_bytes = align_up(((b->nbits + 63) / 64) * 8, FH_PAGE);
  void *p = reserve_map_table(b->map_bytes);
  if (!p) return -1;
  b->words = p;
  return 0;
}

void bitmap_destroy(fh_bitmap *b) {
  /* map_bytes 0: words borrowed from memory someone else owns (a trusted
   * image file's starts, heap/image_validate.c). */
  if (b->words && b->map_bytes) sys_munmap((void *)b->words, b->map_bytes);
  memset(b, 0, sizeof *b);
}

static void clear_range(fh_bitmap *b, uintptr_t begin, uintptr_t end, size_t max_memset_pages) {
  if (end <= begin) return;
  size_t i = bitmap_index(b, begin), j = bitmap_index(b, end - 1) + 1;
  while (i < j && (i & 63)) bitmap_clear(b, bitmap_addr(b, i++));
  while (j > i && (j & 63)) bitmap_clear(b, bitmap_addr(b, --j));
  if (j <= i) return;
  uintptr_t wb = (uintptr_t)&b->words[i >> 6], we = (uintptr_t)&b->words[j >> 6];
  /* Large clears hand pages back instead of writing zeroes into them. */
  uintptr_t pb = align_up(wb, FH_PAGE), pe = align_down(we, FH_PAGE);
  if (pe > pb && (pe - pb) / FH_PAGE > max_memset_pages) {
    memset((void *)wb, 0, pb - wb);
    /* The words must read as zero: written by hand when madvise fails. */
    if (sys_madvise((void *)pb, pe - pb, MADV_DONTNEED) != 0) memset((void *)pb, 0, pe - pb);
    memset((void *)pe, 0, we - pe);
  } else {
    memset((void *)wb, 0, we - wb);
  }
}

void bitmap_clear_range(fh_bitmap *b, uintptr_t begin, uintptr_t end) {
  clear_range(b, begin, end, 16);
}

void bitmap_zero_range(fh_bitmap *b, uintptr_t begin, uintptr_t end) {
  clear_range(b, begin, end, SIZE_MAX / FH_PAGE);
}

void bitmap_clear_all(fh_bitmap *b) {
  bitmap_clear_range(b, b->base, bitmap_addr(b, b->nbits));
}

uintptr_t bitmap_next_set(const fh_bitmap *b, uintptr_t from, uintptr_t end) {
  if (from >= end) return 0;
  size_t i = bitmap_index(b, from), last = bitmap_index(b, end - 1);
  size_t w = i >> 6;
  uint64_t word =
      atomic_load_explicit(&b->words[w], memory_order_relaxed) & (~(uint64_t)0 << (i & 63));
  for (;;) {
    if (word) {
      size_t bit = (w << 6) + (size_t)__builtin_ctzll(word);
      return bit <= last ? bitmap_addr(b, bit) : 0;
    }
    if (++w > (last >> 6)) return 0;
    word = atomic_load_explicit(&b->words[w], memory_order_relaxed);
  }
}

uintptr_t bitmap_prev_set(const fh_bitmap *b, uintptr_t lo, uintptr_t at) {
  if (at < lo) return 0;
  size_t i = bitmap_index(b, at), stop = bitmap_index(b, lo);
  size_t w = i >> 6;
  uint64_t word = atomic_load_explicit(&b->words[w], memory_order_relaxed);
  word &= (i & 63) == 63 ? ~(uint64_t)0 : ((uint64_t)2 << (i & 63)) - 1;
  for (;;) {
    if (w == stop >> 6) word &= ~(uint64_t)0 << (stop & 63);
    if (word) return bitmap_addr(b, (w << 6) + 63 - (size_t)__builtin_clzll(word));
    if (w == stop >> 6) return 0;
    word = atomic_load_explicit(&b->words[--w], memory_order_relaxed);
  }
}
