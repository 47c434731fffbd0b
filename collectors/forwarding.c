/* Forwarding tables: marking's bookkeeping, prefix sums, and the first
 * object of each destination page (see forwarding.h). */
#include "collectors/forwarding.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/error.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

int fwd_init(fwd_tables *t, uintptr_t begin, size_t capacity) {
  memset(t, 0, sizeof *t);
  t->begin = begin;
  t->lo = t->ylo = begin;
  t->capacity = capacity;
  t->old_top = begin;
  t->chunk_map_bytes = align_up((capacity >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk), FH_PAGE);
  t->page_map_bytes = align_up((capacity / FWD_PAGE + 1) * sizeof(uintptr_t), FH_PAGE);
  t->slow_map_bytes = align_up((capacity / FWD_PAGE / 64 + 1) * sizeof(uint64_t), FH_PAGE);
  if (bitmap_init(&t->mark, begin, capacity, 3) < 0 ||
      bitmap_init(&t->live, begin, capacity, 3) < 0 ||
      bitmap_init(&t->grows, begin, capacity, 3) < 0 ||
      !(t->slow_pages = reserve_map_table(t->slow_map_bytes)) ||
      !(t->chunks = reserve_map_table(t->chunk_map_bytes)) ||
      !(t->page_first = reserve_map_table(t->page_map_bytes))) {
    fwd_destroy(t);
    fh_error_set("mark-compact: cannot map the forwarding tables for a %zu MiB space",
                 capacity >> 20);
    return -1;
  }
  return 0;
}

void fwd_destroy(fwd_tables *t) {
  bitmap_destroy(&t->mark);
  bitmap_destroy(&t->live);
  bitmap_destroy(&t->grows);
  if (t->slow_pages) sys_munmap(t->slow_pages, t->slow_map_bytes);
  t->slow_pages = NULL;
  for (unsigned k = 0; k < t->extra_mapped; k++) {
    bitmap_destroy(&t->extra_mark[k]);
    bitmap_destroy(&t->extra_live[k]);
  }
  t->extra_mapped = 0;
  if (t->chunks) sys_munmap(t->chunks, t->chunk_map_bytes);
  if (t->page_first) sys_munmap(t->page_first, t->page_map_bytes);
  t->chunks = NULL;
  t->page_first = NULL;
  free(t->ranges);
  t->ranges = NULL;
  t->nranges = t->ranges_cap = 0;
  free(t->fills);
  t->fills = NULL;
  t->nfills = t->fills_cap = 0;
}

void fwd_prepare_marking(fwd_tables *t) {
  /* From the floor's page of bitmap words (fwd_set_floor may follow). */
  size_t from = align_down(((t->lo - t->begin) >> 9) * sizeof(uint64_t), FH_PAGE);
  size_t bytes = align_up(fwd_used_words(t) * sizeof(uint64_t), FH_PAGE);
  if (bytes > t->mark.map_bytes) bytes = t->mark.map_bytes; /* both bitmaps map alike */
  /* What the last young cycle kept resident needs no system call (each
   * is a page-table walk over resident pages, in the pause). */
  if (t->kept_hi > t->kept_lo && t->lo >= t->kept_lo) {
    size_t kept = align_down(((t->kept_hi - t->begin) >> 9) * sizeof(uint64_t), FH_PAGE);
    if (kept > from) from = kept;
  }
  if (from >= bytes) return;
  /* Harmless if it fails (EINVAL before Linux 5.14, ENOMEM): faults do it. */
  sys_madvise((char *)t->mark.words + from, bytes - from, MADV_POPULATE_WRITE);
  sys_madvise((char *)t->live.words + from, bytes - from, MADV_POPULATE_WRITE);
}

void fwd_set_floor(fwd_tables *t, uintptr_t ylo) {
  if (ylo < t->begin || ylo > t->old_top) ylo = t->begin;
  t->ylo = ylo;
  t->lo = t->begin + align_down(ylo - t->begin, (size_t)1 << FWD_CHUNK_SHIFT);
  if (ylo > t->lo) fwd_mark_live_in(t, &t->live, t->lo, ylo - t->lo);
}

unsigned fwd_add_markers(fwd_tables *t, unsigned n) {
  if (n > FWD_MAX_MARKERS) n = FWD_MAX_MARKERS;
  while (t->extra_mapped + 1 < n) {
    unsigned k = t->extra_mapped;
    if (bitmap_init(&t->extra_mark[k], t->begin, t->capacity, 3) < 0) break;
    if (bitmap_init(&t->extra_live[k], t->begin, t->capacity, 3) < 0) {
      bitmap_destroy(&t->extra_mark[k]);
      break;
    }
    t->extra_mapped++;
  }
  return n < t->extra_mapped + 1 ? n : t->extra_mapped + 1;
}

/* Helper bitmaps are faulted in and given back 1 MiB at a time, the count
 * raised just after each step and lowered just before: it is then never
 * more than is resident, and at most a step of each bitmap less.  (Counted all at once,
 * the ~5 ms populate or ~1 ms release of 16 MiB showed in fhbench as
 * compaction's own memory.) */
#define MARKER_STEP ((size_t)1 << 20)

/* A helper sets bits only in [ylo, old_top): its bitmaps are faulted in,
 * merged and given back from the bitmap page holding the floor's bit on,
 * not from the space's start (a young cycle over a 128 MiB old generation
 * faulted in, merged and cleared 4 MiB of each helper bitmap it never
 * wrote: most of binary-trees' 4 ms young pauses that found nothing live). */
uintptr_t fwd_marker_base(const fwd_tables *t) {
  return t->begin + align_down(t->lo - t->begin, (size_t)FH_PAGE * 64);
}

void fwd_prepare_marker(fwd_tables *t, unsigned k) {
  size_t bytes = align_up(fwd_used_words(t) * sizeof(uint64_t), FH_PAGE);
  if (bytes > t->mark.map_bytes) bytes = t->mark.map_bytes; /* all bitmaps map alike */
  fh_bitmap *pair[2] = {&t->extra_mark[k - 1], &t->extra_live[k - 1]};
  for (size_t off = (fwd_marker_base(t) - t->begin) / 64; off < bytes; off += MARKER_STEP) {
    size_t n = bytes - off < MARKER_STEP ? bytes - off : MARKER_STEP;
    for (int b = 0; b < 2; b++) {
      /* Harmless if it fails (EINVAL before Linux 5.14, ENOMEM): faults
       * do it (and the count then runs ahead of them, for this marking). */
      sys_madvise((char *)pair[b]->words + off, n, MADV_POPULATE_WRITE);
      t->extra_counted[k - 1] += n;
      atomic_fetch_add(&t->extra_resident, n);
    }
  }
}

void fwd_release_marker(fwd_tables *t, unsigned k) {
  size_t *counted = &t->extra_counted[k - 1];
  if (!*counted) return; /* never ran, or already given back */
  const size_t step = MARKER_STEP * 64; /* of heap: a step of each bitmap */
  for (uintptr_t a = fwd_marker_base(t); a < t->old_top; a += step) {
    uintptr_t e = t->old_top - a > step ? a + step : t->old_top;
    size_t bytes = 2 * (((e - a) >> 3) / 8); /* a mark and a live bitmap */
    if (bytes > *counted) bytes = *counted;
    atomic_fetch_sub(&t->extra_resident, bytes);
    *counted -= bytes;
    bitmap_clear_range(&t->extra_mark[k - 1], a, e);
    bitmap_clear_range(&t->extra_live[k - 1], a, e);
  }
  atomic_fetch_sub(&t->extra_resident, *counted); /* the rounding */
  *counted = 0;
}

void fwd_release_markers(fwd_tables *t) {
  for (unsigned k = 1; k <= t->extra_mapped; k++) fwd_release_marker(t, k);
}

void fwd_merge_markers(fwd_tables *t, unsigned n, size_t from, size_t to) {
  for (unsigned k = 0; k + 1 < n; k++) {
    _Atomic uint64_t *em = t->extra_mark[k].words, *el = t->extra_live[k].words;
    for (size_t w = from; w < to; w++) {
      /* Relaxed loads and stores: marking is over (mc_mark.c), and
       * markers merge disjoint word ranges. */
      uint64_t bm = atomic_load_explicit(&em[w], memory_order_relaxed);
      uint64_t bl = atomic_load_explicit(&el[w], memory_order_relaxed);
      if (bm)
        atomic_store_explicit(&t->mark.words[w],
                              atomic_load_explicit(&t->mark.words[w], memory_order_relaxed) | bm,
                              memory_order_relaxed);
      if (bl)
        atomic_store_explicit(&t->live.words[w],
                              atomic_load_explicit(&t->live.words[w], memory_order_relaxed) | bl,
                              memory_order_relaxed);
    }
  }
}

void fwd_populate_chunks(fwd_tables *t, uintptr_t upto) {
  uintptr_t from = t->chunks_populated > t->begin ? t->chunks_populated : t->begin;
  if (upto > t->begin + t->capacity) upto = t->begin + t->capacity;
  if (upto <= from) return;
  size_t a = align_down(((from - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk), FH_PAGE);
  size_t b = align_up(((upto - t->begin + ((size_t)1 << FWD_CHUNK_SHIFT) - 1) >> FWD_CHUNK_SHIFT) *
                          sizeof(fwd_chunk),
                      FH_PAGE);
  if (b > t->chunk_map_bytes) b = t->chunk_map_bytes;
  /* Harmless if it fails (EINVAL before Linux 5.14, ENOMEM): faults do it. */
  sys_madvise((char *)t->chunks + a, b - a, MADV_POPULATE_WRITE);
  t->chunks_populated = upto;
}

/* Zero bytes [from, used_bytes) of a table mapped with map_bytes, never
 * past its mapping; keep: by writing zeroes, whatever the size. */
static void zero_table_from(void *base, size_t from, size_t used_bytes, size_t map_bytes, int keep) {
  if (used_bytes > map_bytes) used_bytes = map_bytes;
  if (from >= used_bytes) return;
  char *b = (char *)base + from;
  size_t n = used_bytes - from;
  /* Small prefixes are cheaper to write than to madvise. */
  if (keep || n <= 16 * FH_PAGE) {
    memset(b, 0, n);
    return;
  }
  /* The table must read as zero: written by hand when madvise fails
   * (the partial pages at either end always are). */
  uintptr_t pb = align_up((uintptr_t)b, FH_PAGE), pe = align_up((uintptr_t)b + n, FH_PAGE);
  memset(b, 0, pb - (uintptr_t)b);
  if (sys_madvise((void *)pb, pe - pb, MADV_DONTNEED) != 0) memset((void *)pb, 0, (uintptr_t)b + n - pb);
}

static void zero_table(void *base, size_t used_bytes, size_t map_bytes) {
  zero_table_from(base, 0, used_bytes, map_bytes, 0);
}

/* A young or slid cycle's tables are cleared by writing zeroes and stay
 * resident up to this much collected space (mark and live bitmaps 1/64 of
 * it each, chunks 1/64, first objects 1/512): handed back, every young
 * pause faulted them in again (MADV_POPULATE_WRITE, zeroing, a sixth of a
 * young pause with 16 MiB young), and every stop-the-world cycle spent
 * two thirds of its system time faulting them in and handing them back
 * (whippet-mt-gcbench, mark_compact, generational=0: bench/gc_systime.sh);
 * only the resident set between cycles is larger: during one they are
 * resident either way, so the peak is the same.  A flip's tables go back
 * (its cycles are the large ones, and they run beside the mutators). */
#define FWD_KEEP_YOUNG_BYTES ((size_t)256 << 20)

/* Give back a young cycle's tables below its floor: the mark and live
 * bitmaps and the chunks of the old generation, which no young cycle
 * reads or writes (its objects count as live and never move: nothing is
 * set below the floor) and the next full cycle faults in and writes from
 * zero.  They were resident since the last full cycle (kept, written with
 * zeroes), and promotion raises the floor: at the cap, Whippet's
 * mt-gcbench shape at 2x held 1/16 of the old generation's bytes in them
 * for nothing.  Zero pages either way, so no reader sees a change; each
 * page goes back once per full cycle (released_below). */
static void release_below_floor(fwd_tables *t) {
  uintptr_t a = t->released_below > t->begin ? t->released_below : t->begin, b = t->lo;
  if (b <= a) return;
  size_t ma = align_up((a - t->begin) >> 6, FH_PAGE), mb = align_down((b - t->begin) >> 6, FH_PAGE);
  if (mb > t->mark.map_bytes) mb = t->mark.map_bytes;
  if (mb > ma) {
    /* Harmless if it fails: the pages stay resident, zero. */
    sys_madvise((char *)t->mark.words + ma, mb - ma, MADV_DONTNEED);
    sys_madvise((char *)t->live.words + ma, mb - ma, MADV_DONTNEED);
  }
  size_t ca = align_up(((a - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk), FH_PAGE);
  size_t cb = align_down(((b - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk), FH_PAGE);
  if (cb > t->chunk_map_bytes) cb = t->chunk_map_bytes;
  if (cb > ca) sys_madvise((char *)t->chunks + ca, cb - ca, MADV_DONTNEED);
  t->released_below = b;
}

/* Where a kept cycle's tables stop being kept: the next cycle's reach
 * (keep_to), on a chunk boundary, within [lo, old_top]. */
static uintptr_t kept_end(const fwd_tables *t) {
  uintptr_t e = t->old_top;
  if (t->keep_to && t->keep_to < e) {
    e = t->begin + align_up(t->keep_to - t->begin, (size_t)1 << FWD_CHUNK_SHIFT);
    if (e > t->old_top) e = t->old_top;
  }
  return e < t->lo ? t->lo : e;
}

void fwd_reset(fwd_tables *t) {
  int keep = (t->young || t->slid) && t->old_top - t->lo <= FWD_KEEP_YOUNG_BYTES;
  if (t->young)
    release_below_floor(t);
  else
    t->released_below = t->begin; /* a full cycle wrote them all */
  /* Kept below kh, handed back above it. */
  uintptr_t kh = keep ? kept_end(t) : t->lo;
  t->slid = 0;
  t->keep_to = 0;
  t->kept_lo = keep ? t->lo : 0;
  t->kept_hi = keep ? kh : 0;
  if (t->old_top > t->lo) {
    /* Nothing is set below the floor (a young cycle's old generation). */
    if (kh > t->lo) {
      bitmap_zero_range(&t->mark, t->lo, kh);
      bitmap_zero_range(&t->live, t->lo, kh);
    }
    if (t->old_top > kh) {
      bitmap_clear_range(&t->mark, kh, t->old_top);
      bitmap_clear_range(&t->live, kh, t->old_top);
    }
    if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed))
      bitmap_clear_range(&t->grows, t->lo, t->old_top);
    fwd_release_markers(t); /* any a helper left (none, normally) */
  }
  /* The chunks fwd_compute wrote, [lo, old_top) rounded up (none below
   * the floor), and any faulted in beyond (zeroes, but resident).  (This
   * used to add one, and with the space full the rounded-up madvise then
   * zapped the page after the table: under ThreadSanitizer, its own
   * at-exit records, so the process crashed in exit.) */
  uintptr_t used = t->old_top > t->chunks_populated ? t->old_top : t->chunks_populated;
  if (used > t->begin) {
    size_t chunks = (align_up(used, (size_t)1 << FWD_CHUNK_SHIFT) - t->begin) >> FWD_CHUNK_SHIFT;
    size_t from = ((t->lo - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk);
    size_t mid = ((kh - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk); /* kh: a chunk boundary */
    if (mid > chunks * sizeof(fwd_chunk)) mid = chunks * sizeof(fwd_chunk);
    if (mid < from) mid = from;
    zero_table_from(t->chunks, from, mid, t->chunk_map_bytes, 1);
    zero_table_from(t->chunks, mid, chunks * sizeof(fwd_chunk), t->chunk_map_bytes, 0);
  }
  /* Kept chunks need no faulting in next time (MADV_POPULATE_WRITE walks
   * resident pages too: most of a young cycle's remaining system time).
   * Below a young cycle's floor they may not be resident: a full cycle
   * faults those in as it writes them. */
  t->chunks_populated = keep ? kh : t->begin;
  /* page_first from the floor's first page boundary (compute_chunks). */
  size_t p0 = align_up(t->lo - t->begin, FWD_PAGE) / FWD_PAGE;
  size_t pk = align_up(kh - t->begin, FWD_PAGE) / FWD_PAGE, pn = t->npages + 1;
  if (pk > pn) pk = pn;
  if (pk < p0) pk = p0;
  zero_table_from(t->page_first, p0 * sizeof(uintptr_t), pk * sizeof(uintptr_t), t->page_map_bytes, 1);
  zero_table_from(t->page_first, pk * sizeof(uintptr_t), pn * sizeof(uintptr_t), t->page_map_bytes, 0);
  if (t->ngrows) zero_table(t->slow_pages, (t->npages / 64 + 1) * sizeof(uint64_t), t->slow_map_bytes);
  t->ngrows = 0;
  atomic_store_explicit(&t->grows_marked, 0, memory_order_relaxed);
  t->old_top = t->begin;
  t->lo = t->ylo = t->begin;
  t->young = 0;
  t->live_bytes = 0;
  t->new_top = t->begin;
  t->npages = 0;
  t->dense_pages = 0;
  t->move_bytes = 0;
  t->nranges = 0;
  t->nfills = 0;
  t->pinned_objects = t->pinned_bytes = t->range_fill_bytes = 0;
  t->cur.started = 0;
}

/* Each bitmap has one writer while marking (forwarding.h: extra_mark): a
 * plain load and store per word instead of a locked read-modify-write
 * (which cost ~20 cycles each, per object).  Relaxed atomics, because
 * other markers read the start bits meanwhile. */
static void or_word(_Atomic uint64_t *w, uint64_t m) {
  atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) | m,
                        memory_order_relaxed);
}

int fwd_mark_start(fwd_tables *t, uintptr_t start) {
  size_t i = (start - t->begin) >> 3;
  uint64_t bit = (uint64_t)1 << (i & 63);
  uint64_t w = atomic_load_explicit(&t->mark.words[i >> 6], memory_order_relaxed);
  if (w & bit) return 1;
  atomic_store_explicit(&t->mark.words[i >> 6], w | bit, memory_order_relaxed);
  return 0;
}

void fwd_mark_object(fwd_tables *t, uintptr_t start, size_t bytes) {
  fwd_mark_start(t, start);
  fwd_mark_live_in(t, &t->live, start, bytes);
}

void fwd_mark_live_in(const fwd_tables *t, fh_bitmap *live, uintptr_t start, size_t bytes) {
  size_t i = (start - t->begin) >> 3, end = i + (bytes >> 3);
  /* Set the live-word bits of [start, start + bytes), a word at a time. */
  while (i < end) {
    size_t w = i >> 6, lo = i & 63;
    size_t n = end - i < 64 - lo ? end - i : 64 - lo;
    uint64_t m = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1) << lo;
    or_word(&live->words[w], m);
    i += n;
  }
}

static uint64_t live_word(const fwd_tables *t, size_t c) {
  return atomic_load_explicit(&t->live.words[c], memory_order_relaxed);
}

/* Old address of the k-th (0-based) live word of chunk c. */
static uintptr_t nth_live_word(const fwd_tables *t, size_t c, unsigned k) {
  uint64_t bits = live_word(t, c);
  while (k--) bits &= bits - 1;
  return t->begin + ((c << 6) + (size_t)__builtin_ctzll(bits)) * FWD_WORD;
}

/* Old address of the word of chunk c that lands on its k-th destination
 * word, when the chunk holds growers g: each grower's hash word is counted
 * right after its start word (it lies at the grower's end, but all that
 * matters here is which object covers the destination word). */
static uintptr_t nth_dest_word(const fwd_tables *t, size_t c, unsigned k, uint64_t g) {
  uint64_t bits = live_word(t, c);
  for (;;) {
    unsigned b = (unsigned)__builtin_ctzll(bits);
    uintptr_t a = t->begin + ((c << 6) + b) * FWD_WORD;
    if (k == 0) return a;
    k--;
    if (g >> b & 1) {
      if (k == 0) return a;
      k--;
    }
    bits &= bits - 1;
  }
}

/* The last object start in [lo, a], or 0 when there is none.  Scans the
 * mark bitmap backwards from a, never below lo. */
static uintptr_t last_mark(const fwd_tables *t, uintptr_t lo, uintptr_t a) {
  size_t i = (a - t->begin) >> 3, stop = (lo - t->begin) >> 3;
  size_t w = i >> 6;
  uint64_t bits = atomic_load_explicit(&t->mark.words[w], memory_order_relaxed);
  bits &= (i & 63) == 63 ? ~(uint64_t)0 : ((uint64_t)2 << (i & 63)) - 1;
  for (;;) {
    if (w == stop >> 6) bits &= ~(uint64_t)0 << (stop & 63);
    if (bits) return t->begin + ((w << 6) + 63 - (size_t)__builtin_clzll(bits)) * FWD_WORD;
    if (w == stop >> 6) return 0;
    bits = atomic_load_explicit(&t->mark.words[--w], memory_order_relaxed);
  }
}

/* Fill the chunk table and page_first for chunks [cur.c, nchunks),
 * carrying the walk's state in t->cur (so that the chunks below a bound
 * can be done first, concurrently, and the rest later: fwd_compute_below).
 * `hw`: count bits with the POPCNT instruction (a constant once inlined).
 *
 * The object covering a page's first word is the last object start at or
 * before it: the last one since the previous page's first word, else the
 * previous page's object.  Each scan stops at the previous page's first
 * word, so all of them read the mark bitmap once in total, and no object
 * header (a cache miss per page) is read. */
static inline __attribute__((always_inline)) void compute_chunks(fwd_tables *t, size_t nchunks,
                                                                int hw) {
  fwd_cursor k = t->cur;
  for (size_t c = k.c; c < nchunks; c++) {
    if (__builtin_expect(c == k.jump, 0)) {
      /* A pinned range starts here: it forwards to itself, and the
       * destination bytes the objects below it left are a gap
       * (fwd_pin_ranges made sure they end at or below it). */
      fwd_range *g = &t->ranges[k.r];
      g->gap_lo = t->begin + k.acc;
      k.acc = g->lo - t->begin;
      for (; k.page * FWD_PAGE < k.acc; k.page++) t->page_first[k.page] = 0;
      k.jump = ++k.r < t->nranges ? (t->ranges[k.r].lo - t->begin) >> FWD_CHUNK_SHIFT : (size_t)-1;
    }
    uint64_t bits = live_word(t, c);
    uint64_t g = t->ngrows ? atomic_load_explicit(&t->grows.words[c], memory_order_relaxed) : 0;
    t->chunks[c] = (fwd_chunk){bits, k.acc | (g ? FWD_DEST_GROWS : 0)};
    size_t live = FWD_WORD * (hw ? (size_t)__builtin_popcountll(bits) : fwd_popcount(bits));
    if (g) live += FWD_WORD * fwd_popcount(g);
    /* The chunk stays put when it forwards to itself and its live words
     * are one run from its start (nothing dead below any of them). */
    if (k.acc != c << FWD_CHUNK_SHIFT || (bits & (bits + 1)) != 0 || g) k.moved += live;
    /* Every page boundary that falls in [acc, acc + live). */
    for (size_t off = k.page * FWD_PAGE; off < k.acc + live; off = ++k.page * FWD_PAGE) {
      unsigned b = (unsigned)((off - k.acc) / FWD_WORD);
      uintptr_t w = g ? nth_dest_word(t, c, b, g) : nth_live_word(t, c, b);
      uintptr_t m = last_mark(t, k.prev, w);
      if (m) k.obj = m;
      k.prev = w + FWD_WORD;
      t->page_first[k.page] = k.obj;
    }
    k.acc += live;
  }
  if (nchunks > k.c) k.c = nchunks;
  t->cur = k;
}

/* The build has no -mpopcnt; a popcount per chunk is a third of this loop
 * (in the pause), so x86-64 gets a POPCNT copy picked at run time, as in
 * page_compact.c. */
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static void compute_chunks_popcnt(fwd_tables *t,
                                                                    size_t nchunks) {
  compute_chunks(t, nchunks, 1);
}
#define COMPUTE_CHUNKS(t, n) \
  (__builtin_cpu_supports("popcnt") ? compute_chunks_popcnt(t, n) : compute_chunks(t, n, 0))
#else
#define COMPUTE_CHUNKS(t, n) compute_chunks(t, n, 0)
#endif

/* Mark the destination pages each grower of [lo, hi) touches with its new
 * range (the chunks up to hi's are computed).  Reads the growers' headers:
 * the old space is still in place (before the flip). */
static void mark_slow_pages(fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t a = bitmap_next_set(&t->grows, lo, hi); a;
       a = bitmap_next_set(&t->grows, a + FWD_WORD, hi)) {
    uintptr_t n = fwd_start(t, a) - t->begin;
    /* Atomic: fwd_compute_below runs beside mutators, which may hash
     * (CAS) the header; its size bits never change. */
    uint64_t hd = __atomic_load_n((uint64_t *)a, __ATOMIC_RELAXED);
    size_t first = n / FWD_PAGE, last = (n + obj_moved_bytes(hd) - 1) / FWD_PAGE;
    for (size_t p = first; p <= last; p++) t->slow_pages[p >> 6] |= (uint64_t)1 << (p & 63);
  }
}

/* Start the walk at the floor: chunks below it are never read, and its
 * first page boundary is the first at or above it (an old object covers
 * any before). */
static void cursor_start(fwd_tables *t) {
  size_t acc = t->lo - t->begin;
  t->cur = (fwd_cursor){.c = acc >> FWD_CHUNK_SHIFT,
                        .acc = acc,
                        .page = align_up(acc, FWD_PAGE) / FWD_PAGE,
                        .prev = t->lo,
                        .jump = t->nranges ? (t->ranges[0].lo - t->begin) >> FWD_CHUNK_SHIFT
                                           : (size_t)-1,
                        .dense_c = acc >> FWD_CHUNK_SHIFT,
                        .started = 1};
  t->ngrows = atomic_load_explicit(&t->grows_marked, memory_order_relaxed);
}

/* The dense prefix's scan (full chunks from the floor), continued up to
 * chunk n. */
#define DENSE_ENDED ((size_t)1 << 63)
static void scan_dense(fwd_tables *t, size_t n) {
  size_t c = t->cur.dense_c;
  if (c & DENSE_ENDED) return; /* it ended below */
  while (c < n && live_word(t, c) == ~(uint64_t)0) c++;
  t->cur.dense_c = c < n ? c | DENSE_ENDED : c;
}

void fwd_compute_restart(fwd_tables *t) { t->cur.started = 0; }

/* How many chunks fwd_compute_below does between two looks at its budget. */
#define BELOW_STEP ((size_t)1 << 16)

uintptr_t fwd_compute_below(fwd_tables *t, uintptr_t upto, gc_budget *b) {
  if (!t->cur.started) cursor_start(t);
  size_t n = (upto - t->begin) >> FWD_CHUNK_SHIFT; /* whole chunks only */
  while (t->cur.c < n && !(b && gc_budget_over(b))) {
    size_t e = t->cur.c + BELOW_STEP < n ? t->cur.c + BELOW_STEP : n;
    uintptr_t from = t->begin + (t->cur.c << FWD_CHUNK_SHIFT);
    fwd_populate_chunks(t, t->begin + (e << FWD_CHUNK_SHIFT));
    COMPUTE_CHUNKS(t, e);
    scan_dense(t, e);
    if (t->ngrows) mark_slow_pages(t, from, t->begin + (e << FWD_CHUNK_SHIFT));
  }
  return t->begin + (t->cur.c << FWD_CHUNK_SHIFT);
}

void fwd_compute(fwd_tables *t) {
  size_t nchunks = (align_up(t->old_top, (size_t)1 << FWD_CHUNK_SHIFT) - t->begin) >>
                   FWD_CHUNK_SHIFT;
  if (!t->cur.started) cursor_start(t);
  /* Growers found since fwd_compute_below (objects allocated black above
   * its bound): the chunks it did hold none. */
  t->ngrows = atomic_load_explicit(&t->grows_marked, memory_order_relaxed);
  uintptr_t from = t->begin + (t->cur.c << FWD_CHUNK_SHIFT);
  /* Written whole: what the pre-pause call did not fault in, now. */
  fwd_populate_chunks(t, t->old_top);
  COMPUTE_CHUNKS(t, nchunks);
  size_t acc = t->cur.acc;
  t->npages = t->cur.page;
  t->move_bytes = t->cur.moved;
  t->cur.started = 0;
  t->new_top = t->begin + acc;
  size_t gaps = 0;
  for (size_t r = 0; r < t->nranges; r++) gaps += t->ranges[r].lo - t->ranges[r].gap_lo;
  /* Of the collected part [ylo, old_top) only. */
  t->live_bytes = acc - (t->ylo - t->begin) - gaps - t->range_fill_bytes;
  /* The dense prefix: full chunks, then the ones of the first partial one,
   * up to the first grower (it and everything after it move). */
  scan_dense(t, nchunks);
  size_t c = t->cur.dense_c & ~DENSE_ENDED;
  size_t dense = c * ((size_t)1 << FWD_CHUNK_SHIFT);
  if (c < nchunks) dense += FWD_WORD * (size_t)__builtin_ctzll(~live_word(t, c));
  if (t->ngrows) {
    uintptr_t g = bitmap_next_set(&t->grows, t->lo, t->old_top);
    if (g && g - t->begin < dense) dense = g - t->begin;
    if (from < t->old_top) mark_slow_pages(t, from, t->old_top);
  }
  if (dense > acc) dense = acc;
  t->dense_pages = dense / FWD_PAGE;
}

/* ---- pinned ranges (forwarding.h) ---- */

/* How far ahead fwd_pin_ranges fetches pin headers and range lines. */
#define FWD_PREFETCH_AHEAD 8
#define FWD_PREFETCH_RANGES 2

static size_t obj_bytes_at(uintptr_t start) { return obj_bytes(*(const uint64_t *)start); }

/* The end of the live object holding word a, or 0 when a is not live. */
static uintptr_t live_end_at(const fwd_tables *t, uintptr_t a) {
  if (!bitmap_test(&t->live, a)) return 0;
  uintptr_t s = last_mark(t, t->lo, a); /* within the object itself */
  return s ? s + obj_bytes_at(s) : 0;
}

/* Widen [*lo, *hi) to chunks until no live object straddles either end. */
static void widen_down(const fwd_tables *t, uintptr_t *lo) {
  /* Never below the floor (the old words there do not move anyway). */
  while (*lo > t->lo) {
    uintptr_t e = live_end_at(t, *lo - FWD_WORD);
    if (e <= *lo) return;
    *lo = t->begin + align_down(last_mark(t, t->lo, *lo - FWD_WORD) - t->begin, FWD_RANGE_ALIGN);
  }
}
static void widen_up(const fwd_tables *t, uintptr_t *hi) {
  while (*hi < t->old_top) {
    uintptr_t e = live_end_at(t, *hi - FWD_WORD);
    if (e <= *hi) return;
    *hi = t->begin + align_up(e - t->begin, FWD_RANGE_ALIGN);
  }
}

/* Set bits among the bitmap words covering [lo, hi) (both chunk-aligned). */
static size_t bits_in(const fh_bitmap *b, const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  size_t n = 0;
  for (size_t w = (lo - t->begin) >> FWD_CHUNK_SHIFT, e = (hi - t->begin) >> FWD_CHUNK_SHIFT;
       w < e; w++)
    n += fwd_popcount(atomic_load_explicit(&b->words[w], memory_order_relaxed));
  return n;
}

/* The objects sliding down between range k - 1 and range k must fit below
 * range k.  They do unless some of them grow (a hashed object gains its
 * hash word when it moves, and the filler hashing left for that word may
 * lie elsewhere): then range k takes in pages below it until they fit
 * (merging into range k - 1 at worst, where nothing slides).  Returns k's
 * index after any merge. */
static size_t fit_segment(fwd_tables *t, size_t k) {
  fwd_range *r = t->ranges;
  for (;;) {
    uintptr_t seg = k ? r[k - 1].hi : t->lo;
    if (r[k].lo <= seg) { /* nothing slides here any more: merge */
      if (k) {
        if (r[k].hi > r[k - 1].hi) r[k - 1].hi = r[k].hi;
        memmove(&r[k], &r[k + 1], (t->nranges - k - 1) * sizeof *r);
        t->nranges--;
        return k - 1;
      }
      return k;
    }
    size_t need = FWD_WORD * (bits_in(&t->live, t, seg, r[k].lo) + bits_in(&t->grows, t, seg, r[k].lo));
    if (seg + need <= r[k].lo) return k;
    r[k].lo -= FWD_RANGE_ALIGN;
    widen_down(t, &r[k].lo);
  }
}

static void put_filler(fwd_tables *t, uintptr_t a, uintptr_t e) {
  obj_write_filler(a, e - a);
  size_t i = (a - t->begin) >> 3; /* one writer now: no locked or */
  or_word(&t->mark.words[i >> 6], (uint64_t)1 << (i & 63));
  t->range_fill_bytes += e - a;
  /* Remembered for the allocator (fwd_span).  Without memory for the
   * list the filler is simply not offered: nothing else reads it. */
  if (t->nfills == t->fills_cap) {
    size_t cap = t->fills_cap ? 2 * t->fills_cap : 256;
    fwd_span *grown = realloc(t->fills, cap * sizeof *grown);
    if (!grown) return;
    t->fills = grown;
    t->fills_cap = cap;
  }
  t->fills[t->nfills++] = (fwd_span){a, e};
}

/* A filler over each stretch of dead words in [lo, hi) (chunk-aligned),
 * found in the live bitmap: every word of a live object has its bit (and
 * the old generation's words below ylo, fwd_set_floor), so no object
 * header is read.  Walking the headers instead was a cache miss per
 * object: 1.3 ms of a 10 ms pause with 3,000 pinned 32-byte objects
 * (fhbench pins). */
static void fill_dead(fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  uintptr_t dead = 0; /* start of the dead stretch being crossed, 0 none */
  for (size_t w = (lo - t->begin) >> FWD_CHUNK_SHIFT, e = (hi - t->begin) >> FWD_CHUNK_SHIFT;
       w < e; w++) {
    uint64_t bits = live_word(t, w);
    uintptr_t base = t->begin + (w << FWD_CHUNK_SHIFT);
    unsigned b = 0;
    while (b < 64) {
      /* Looking for the next live word when inside a dead stretch, else
       * for the next dead one. */
      uint64_t rest = (dead ? bits : ~bits) >> b;
      if (!rest) break;
      b += (unsigned)__builtin_ctzll(rest);
      if (dead) {
        put_filler(t, dead, base + (uintptr_t)b * FWD_WORD);
        dead = 0;
      } else {
        dead = base + (uintptr_t)b * FWD_WORD;
      }
    }
  }
  if (dead) put_filler(t, dead, hi);
}

int fwd_pin_ranges(fwd_tables *t, const uintptr_t *pins, size_t n) {
  t->nranges = 0;
  t->nfills = 0;
  t->pinned_objects = t->pinned_bytes = t->range_fill_bytes = 0;
  size_t i = 0, k = 0;
  while (i < n && pins[i] < t->ylo) i++; /* old objects never move */
  for (size_t j = i; j < n && pins[j] < t->old_top; j++) k++;
  if (!k) return 0;
  if (k > t->ranges_cap) {
    fwd_range *grown = realloc(t->ranges, k * sizeof *grown);
    if (!grown) {
      fh_error_set("mark-compact: out of memory for %zu pinned ranges", k);
      return -1;
    }
    t->ranges = grown;
    t->ranges_cap = k;
  }
  for (size_t j = i; j < i + k; j++) {
    /* Each pin's header (read below) is a cache miss of its own: 3,000
     * pins spread through the space (fhbench pins) cost ~0.25 ms of the
     * pause one after the other; fetched ahead, they overlap. */
    if (j + FWD_PREFETCH_AHEAD < i + k) __builtin_prefetch((const void *)pins[j + FWD_PREFETCH_AHEAD]);
    uintptr_t s = pins[j];
    /* Every pinned object is a root, hence marked; anything else is not
     * an object of this space. */
    if (!bitmap_test(&t->mark, s)) continue;
    size_t bytes = obj_bytes_at(s);
    t->pinned_objects++;
    t->pinned_bytes += bytes;
    uintptr_t lo = t->begin + align_down(s - t->begin, FWD_RANGE_ALIGN);
    uintptr_t hi = t->begin + align_up(s + bytes - t->begin, FWD_RANGE_ALIGN);
    widen_down(t, &lo);
    widen_up(t, &hi);
    fwd_range *last = t->nranges ? &t->ranges[t->nranges - 1] : NULL;
    if (last && lo <= last->hi) { /* touches the previous one (never below its lo) */
      if (lo < last->lo) last->lo = lo;
      if (hi > last->hi) last->hi = hi;
    } else {
      t->ranges[t->nranges++] = (fwd_range){lo, hi, lo};
    }
  }
  if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed))
    for (size_t r = 0; r < t->nranges; r++) r = fit_segment(t, r);
  /* In place: fillers over the dead words, every word live, no growth. */
  int growers = atomic_load_explicit(&t->grows_marked, memory_order_relaxed) != 0;
  for (size_t r = 0; r < t->nranges; r++) {
    uintptr_t lo = t->ranges[r].lo, hi = t->ranges[r].hi;
    /* The fillers go over the dead objects' headers, lines not touched
     * since marking: ~20 ns each one after the other, 0.37 ms of the pause
     * for ~20,000 fillers in fhbench pins.  The lines of the range a few
     * ahead are fetched for writing meanwhile (its first 1 KiB: ranges are
     * mostly one or two chunks). */
    if (r + FWD_PREFETCH_RANGES < t->nranges) {
      const fwd_range *ahead = &t->ranges[r + FWD_PREFETCH_RANGES];
      uintptr_t end = ahead->hi - ahead->lo > 1024 ? ahead->lo + 1024 : ahead->hi;
      for (uintptr_t a = ahead->lo; a < end; a += 64) __builtin_prefetch((const void *)a, 1);
    }
    fill_dead(t, lo, hi);
    for (uintptr_t a = growers ? bitmap_next_set(&t->grows, lo, hi) : 0; a;
         a = bitmap_next_set(&t->grows, a + FWD_WORD, hi)) {
      bitmap_clear(&t->grows, a);
      atomic_fetch_sub_explicit(&t->grows_marked, 1, memory_order_relaxed);
    }
    for (size_t w = (lo - t->begin) >> FWD_CHUNK_SHIFT, e = (hi - t->begin) >> FWD_CHUNK_SHIFT;
         w < e; w++)
      atomic_store_explicit(&t->live.words[w], ~(uint64_t)0, memory_order_relaxed);
    if (hi > t->old_top) t->old_top = hi; /* the last range may end above the top */
  }
  return 0;
}

size_t fwd_pinned_pages(const fwd_tables *t, const uintptr_t *pins, size_t n) {
  if (!t->nranges) return 0;
  size_t pages = 0, last = (size_t)-1;
  for (size_t i = 0; i < n; i++) {
    if (pins[i] < t->begin) continue;
    if (pins[i] >= t->old_top) break;
    size_t p = (pins[i] - t->begin) / FWD_PAGE;
    pages += p != last;
    last = p;
  }
  return pages;
}
