/* Copying a destination page's live words by runs of the live-words
 * bitmap.
 *
 * A destination page holds a contiguous range of the space's live words in
 * address order, so it can be filled without knowing where objects begin:
 * every maximal run of set bits is one contiguous copy (runs that continue
 * across a bitmap word are merged).  Walking objects instead costs a header
 * load per object whose result (the size) gates the address of the next
 * load, so cache misses in from-space were paid one after the other; here
 * the next run's address comes from the bitmap, and the CPU overlaps the
 * loads of consecutive runs. */
#include "collectors/page_copy.h"

#include <string.h>

/* Prefetch distance in from-space, ahead of the start of each run.  The
 * hardware prefetcher alone follows a page's runs well when nothing else
 * runs (copy alone: ~5% faster without this), but page_build interleaves
 * its copy with the reference pass, whose scattered misses interrupt that
 * stream; prefetching ahead, into the next page's sources near the end of
 * a page, made whole pages ~15% faster on the pause layout (512..2048 bytes
 * all alike; no change with long runs).  A prefetch never faults, even on
 * from-space already given back. */
#define COPY_PREFETCH 1024

static uint64_t live_word(const fwd_tables *t, size_t w) {
  return atomic_load_explicit(&t->live.words[w], memory_order_relaxed);
}

/* Runs of small objects are short (a 64-byte object between dead ones is
 * a 64-byte run): copy those with a few inline loads and stores, two
 * overlapping pieces of a fixed size, instead of a memcpy call each. */
static inline void copy_run(uint8_t *d, const uint8_t *s, size_t n) {
  if (n > 64) {
    memcpy(d, s, n);
  } else if (n >= 32) {
    memcpy(d, s, 32);
    memcpy(d + n - 32, s + n - 32, 32);
  } else if (n >= 16) {
    memcpy(d, s, 16);
    memcpy(d + n - 16, s + n - 16, 16);
  } else { /* 8 or more: runs are whole words */
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  }
}

void page_copy_live(const fwd_tables *t, uintptr_t from_delta, uintptr_t a0, uint8_t *out,
                    size_t bytes) {
  size_t i = (a0 - t->begin) / FWD_WORD, w = i >> 6;
  uint64_t bits = live_word(t, w) & (~(uint64_t)0 << (i & 63));
  const uint8_t *from0 = (const uint8_t *)(t->begin + from_delta); /* word 0 */
  const uint8_t *run = NULL; /* pending run, merged across bitmap words */
  size_t run_len = 0, left = bytes;
  while (left) {
    while (!bits) bits = live_word(t, ++w);
    unsigned s = (unsigned)__builtin_ctzll(bits);
    uint64_t gaps = ~(bits >> s); /* zero on the run, ones above bit 63 - s */
    size_t len = FWD_WORD * (gaps ? (size_t)__builtin_ctzll(gaps) : 64);
    if (len > left) len = left;
    const uint8_t *src = from0 + ((w << 6) + s) * FWD_WORD;
    if (run + run_len == src) {
      run_len += len;
    } else { /* a new run: a long one is left to the hardware prefetcher */
      __builtin_prefetch(src + COPY_PREFETCH);
      if (run_len) copy_run(out, run, run_len);
      out += run_len;
      run = src, run_len = len;
    }
    left -= len;
    unsigned e = s + (unsigned)(len / FWD_WORD);
    bits = e >= 64 ? 0 : bits & (~(uint64_t)0 << e);
  }
  if (run_len) copy_run(out, run, run_len);
}

uintptr_t page_old_word(const fwd_tables *t, uintptr_t a0, size_t k) {
  size_t i = (a0 - t->begin) / FWD_WORD, w = i >> 6;
  uint64_t bits = live_word(t, w) & (~(uint64_t)0 << (i & 63));
  for (unsigned c; k >= (c = fwd_popcount(bits)); bits = live_word(t, ++w)) k -= c;
  while (k--) bits &= bits - 1;
  return t->begin + ((w << 6) + (size_t)__builtin_ctzll(bits)) * FWD_WORD;
}
