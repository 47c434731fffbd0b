/* Forwarding tables' memory: the side tables' reservation, the helper
 * markers' bitmaps, populating the chunk table, and the reset after a
 * cycle that keeps or hands back what the next one needs (see
 * forwarding.h; the computation over them is forwarding.c). */
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
  t->occ_map_bytes =
      align_up(((capacity >> FWD_OCC_SHIFT) / 64 + 1) * sizeof(uint64_t), FH_PAGE);
  if (bitmap_init(&t->mark, begin, capacity, 3) < 0 ||
      bitmap_init(&t->live, begin, capacity, 3) < 0 ||
      bitmap_init(&t->grows, begin, capacity, 3) < 0 ||
      !(t->slow_pages = reserve_map_table(t->slow_map_bytes)) ||
      !(t->occ = reserve_map_table(t->occ_map_bytes)) ||
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
  if (t->occ) sys_munmap(t->occ, t->occ_map_bytes);
  t->occ = NULL;
  t->occ_valid = 0;
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
  free(t->wood);
  t->wood = NULL;
  t->nwood = t->wood_cap = 0;
}

void fwd_prepare_marking(fwd_tables *t) {
  /* From the floor's page of bitmap words (fwd_set_floor may follow). */
  size_t from = align_down(((t->lo - t->begin) >> 9) * sizeof(uint64_t), FH_PAGE);
  size_t bytes = align_up(fwd_used_words(t) * sizeof(uint64_t), FH_PAGE);
  if (bytes > t->mark.map_bytes) bytes = t->mark.map_bytes; /* both bitmaps map alike */
  /* What the last young cycle kept resident needs no system call (each
   * is a page-table walk over resident pages, in the pause), and neither
   * does the page holding the first word past it, which also holds kept
   * words: fwd_reset wrote zeroes into it.  (Rounded down, the allocation
   * that ends a young cycle overshoots its reach by a TLAB or so, and
   * every cycle repopulated that one resident page of each bitmap.) */
  if (t->kept_hi > t->kept_lo && t->lo >= t->kept_lo) {
    size_t kept = align_up(((t->kept_hi - t->begin) >> 9) * sizeof(uint64_t), FH_PAGE);
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
  /* Entries below `from` are resident, and so is a page that holds one
   * of them and from's own (populated whole, or kept and written by
   * fwd_reset). */
  size_t a = ((from - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk);
  a = from > t->begin ? align_up(a, FH_PAGE) : 0;
  size_t b = align_up(((upto - t->begin + ((size_t)1 << FWD_CHUNK_SHIFT) - 1) >> FWD_CHUNK_SHIFT) *
                          sizeof(fwd_chunk),
                      FH_PAGE);
  if (b > t->chunk_map_bytes) b = t->chunk_map_bytes;
  /* Harmless if it fails (EINVAL before Linux 5.14, ENOMEM): faults do it. */
  if (a < b) sys_madvise((char *)t->chunks + a, b - a, MADV_POPULATE_WRITE);
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

/* A young cycle's tables, kept: zero the mark and live words and the
 * chunk entries of the occupied regions, and the summary itself. */
static void clear_occupied(fwd_tables *t) {
  size_t r0 = (t->lo - t->begin) >> FWD_OCC_SHIFT;
  size_t r1 = (align_up(t->old_top - t->begin, (size_t)1 << FWD_OCC_SHIFT)) >> FWD_OCC_SHIFT;
  const size_t per = (size_t)1 << (FWD_OCC_SHIFT - FWD_CHUNK_SHIFT); /* chunks, bitmap words */
  for (size_t w = r0 >> 6; w <= (r1 - 1) >> 6; w++) {
    for (uint64_t bits = t->occ[w]; bits; bits &= bits - 1) {
      size_t c = ((w << 6) + (size_t)__builtin_ctzll(bits)) * per;
      memset((void *)&t->mark.words[c], 0, per * sizeof(uint64_t));
      memset((void *)&t->live.words[c], 0, per * sizeof(uint64_t));
      memset(&t->chunks[c], 0, per * sizeof(fwd_chunk));
    }
    t->occ[w] = 0;
  }
}

void fwd_reset(fwd_tables *t) {
  int keep = (t->young || t->slid) && t->old_top - t->lo <= FWD_KEEP_YOUNG_BYTES;
  if (t->young)
    release_below_floor(t);
  else
    t->released_below = t->begin; /* a full cycle wrote them all */
  /* Kept below kh, handed back above it. */
  uintptr_t kh = keep ? kept_end(t) : t->lo;
  /* A kept young cycle's bitmaps and chunks hold bits in its occupied
   * regions only (fwd_compute wrote no other chunk entry): those are
   * cleared, the rest is zero already. */
  int sparse = keep && t->young && t->occ_valid;
  t->slid = 0;
  t->keep_to = 0;
  t->kept_lo = keep ? t->lo : 0;
  t->kept_hi = keep ? kh : 0;
  if (sparse && t->old_top > t->lo) {
    clear_occupied(t);
    /* Zeroed, and beyond the next cycle's reach handed back too. */
    if (t->old_top > kh) {
      bitmap_clear_range(&t->mark, kh, t->old_top);
      bitmap_clear_range(&t->live, kh, t->old_top);
    }
    if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed))
      bitmap_clear_range(&t->grows, t->lo, t->old_top);
    fwd_release_markers(t);
  } else if (t->old_top > t->lo) {
    /* Nothing is set below the floor (a young cycle's old generation). */
    if (kh > t->lo) {
      bitmap_zero_range(&t->mark, t->lo, kh);
      bitmap_zero_range(&t->live, t->lo, kh);
    }
    if (t->old_top > kh) {
      bitmap_clear_range(&t->mark, kh, t->old_top);
      bitmap_clear_range(&t->live, kh, t->old_top);
    }
    /* fwd_compute's summary of them (words from the floor's, whole) */
    size_t r0 = (t->lo - t->begin) >> FWD_OCC_SHIFT, r1 = (t->old_top - t->begin - 1) >> FWD_OCC_SHIFT;
    memset(&t->occ[r0 >> 6], 0, ((r1 >> 6) - (r0 >> 6) + 1) * sizeof(uint64_t));
    if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed))
      bitmap_clear_range(&t->grows, t->lo, t->old_top);
    fwd_release_markers(t); /* any a helper left (none, normally) */
  }
  /* The chunks fwd_compute wrote, [lo, old_top) rounded up (none below
   * the floor), and any faulted in beyond (zeroes, but resident).  (This
   * used to add one, and with the space full the rounded-up madvise then
   * zapped the page after the table: under ThreadSanitizer, its own
   * at-exit records, so the process crashed in exit.)  A sparse cycle's
   * kept chunks were zeroed by clear_occupied. */
  uintptr_t used = t->old_top > t->chunks_populated ? t->old_top : t->chunks_populated;
  if (used > t->begin) {
    size_t chunks = (align_up(used, (size_t)1 << FWD_CHUNK_SHIFT) - t->begin) >> FWD_CHUNK_SHIFT;
    size_t from = ((t->lo - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk);
    size_t mid = ((kh - t->begin) >> FWD_CHUNK_SHIFT) * sizeof(fwd_chunk); /* kh: a chunk boundary */
    if (mid > chunks * sizeof(fwd_chunk)) mid = chunks * sizeof(fwd_chunk);
    if (mid < from) mid = from;
    if (!sparse) zero_table_from(t->chunks, from, mid, t->chunk_map_bytes, 1);
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
  t->dense_end = t->begin;
  t->move_bytes = 0;
  t->nranges = 0;
  t->nfills = 0;
  t->pinned_objects = t->pinned_bytes = t->range_fill_bytes = t->wood_bytes = t->nwood = 0;
  t->cur.started = 0;
  t->occ_valid = 0;
}
