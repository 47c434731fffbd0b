/* Forwarding tables: marking's bookkeeping, prefix sums, and the first
 * object of each destination page (see forwarding.h; the tables' memory
 * and their reset are forwarding_tables.c). */
#include "collectors/forwarding.h"

#include <stdlib.h>
#include <string.h>

#include "heap/error.h"
#include "spaces/reserve.h" /* align_up, align_down */

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
    /* Empty regions, a cache line of live words at a time (no pinned
     * range starts inside). */
    if ((c & 7) == 0 && c + 8 <= nchunks && (k.jump < c || k.jump >= c + 8)) {
      const _Atomic uint64_t *lw = &t->live.words[c];
      uint64_t any = 0;
      for (unsigned j = 0; j < 8; j++) any |= atomic_load_explicit(&lw[j], memory_order_relaxed);
      if (!any) {
        c += 7;
        continue;
      }
    }
    uint64_t bits = live_word(t, c);
    /* An empty chunk adds nothing and holds no page boundary (k.page
     * stays at or above k.acc), and its entry stays as fwd_reset left it
     * (zero): an entry is read only to forward an object that lives in
     * its chunk, and growers' bits lie in live chunks only.  Most of a
     * young range is empty (writing its entries was most of this loop),
     * and so is much of a concurrent cycle's, which grows by what the
     * mutators allocate while marking runs (writing them was a quarter
     * of fwd_compute in fhscheme threads' remark pauses: mean 0.24 ->
     * 0.17 ms, max 0.49 -> 0.36). */
    if (!bits) continue;
    t->occ[c >> (FWD_OCC_SHIFT - FWD_CHUNK_SHIFT + 6)] |= (uint64_t)1
                                                           << ((c >> (FWD_OCC_SHIFT - FWD_CHUNK_SHIFT)) & 63);
    uint64_t g = t->ngrows ? atomic_load_explicit(&t->grows.words[c], memory_order_relaxed) : 0;
    t->chunks[c] = (fwd_chunk){bits, k.acc | (g ? FWD_DEST_GROWS : 0)};
    size_t live = FWD_WORD * (hw ? (size_t)__builtin_popcountll(bits) : fwd_popcount(bits));
    if (g) live += FWD_WORD * fwd_popcount(g);
    /* The chunk stays put when its live words are one run that forwards
     * to itself.  Not always from the chunk's start: a pinned range begins
     * at its chunk's first live word (the words below are dead), and
     * counting such a range as moved made cycles that move nothing run
     * their update pass (mc_slide.c: identity). */
    unsigned first = bits ? (unsigned)__builtin_ctzll(bits) : 0;
    uint64_t run = bits >> first;
    if (k.acc != (c << FWD_CHUNK_SHIFT) + first * FWD_WORD || (run & (run + 1)) != 0 || g)
      k.moved += live;
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
  t->live_bytes = acc - (t->ylo - t->begin) - gaps - t->range_fill_bytes - t->wood_bytes;
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
  t->dense_end = t->begin + dense;
  t->occ_valid = 1;
}

uintptr_t fwd_next_set_far(const fwd_tables *t, const fh_bitmap *b, uintptr_t from,
                           uintptr_t end) {
  if (!t->occ_valid) return bitmap_next_set(b, from, end);
  while (from < end) {
    size_t r = (from - t->begin) >> FWD_OCC_SHIFT, w = r >> 6;
    uint64_t bits = t->occ[w] & (~(uint64_t)0 << (r & 63));
    while (!bits) {
      if (t->begin + (((++w) << 6) << FWD_OCC_SHIFT) >= end) return 0;
      bits = t->occ[w];
    }
    r = (w << 6) + (size_t)__builtin_ctzll(bits);
    uintptr_t rb = t->begin + (r << FWD_OCC_SHIFT), re = rb + ((uintptr_t)1 << FWD_OCC_SHIFT);
    if (rb > from) from = rb;
    if (from >= end) return 0;
    uintptr_t a = bitmap_next_set(b, from, re < end ? re : end);
    if (a) return a;
    from = re;
  }
  return 0;
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

static size_t chunk_of(const fwd_tables *t, uintptr_t a) {
  return (a - t->begin) >> FWD_CHUNK_SHIFT;
}

/* The bits of chunk w's live word that cover [lo, hi). */
static uint64_t span_mask(const fwd_tables *t, size_t w, uintptr_t lo, uintptr_t hi) {
  uintptr_t base = t->begin + (w << FWD_CHUNK_SHIFT);
  uint64_t m = ~(uint64_t)0;
  if (lo > base) m &= ~(uint64_t)0 << ((lo - base) >> 3);
  if (hi < base + FWD_RANGE_ALIGN) m &= ((uint64_t)1 << ((hi - base) >> 3)) - 1;
  return m;
}

/* Widen *lo down to chunks until no live object straddles it. */
static void widen_down(const fwd_tables *t, uintptr_t *lo) {
  /* Never below the floor (the old words there do not move anyway). */
  while (*lo > t->lo) {
    uintptr_t e = live_end_at(t, *lo - FWD_WORD);
    if (e <= *lo) return;
    *lo = t->begin + align_down(last_mark(t, t->lo, *lo - FWD_WORD) - t->begin, FWD_RANGE_ALIGN);
  }
}

/* The words [lo, hi) hold once moved (lo >= hi: none): their live words
 * and a hash word per grower.  lo is the previous range's end, inside its
 * chunk since ranges end with their pin: the words below it there do not
 * slide.  One pass over both bitmaps; the build has no -mpopcnt, so x86-64
 * gets a POPCNT copy picked at run time (as compute_chunks). */
static inline __attribute__((always_inline)) size_t words_in_with(const fwd_tables *t,
                                                                  uintptr_t lo, uintptr_t hi,
                                                                  int hw) {
  size_t n = 0;
  if (lo >= hi) return 0;
  for (size_t w = chunk_of(t, lo), e = chunk_of(t, hi - FWD_WORD) + 1; w < e; w++) {
    uint64_t m = span_mask(t, w, lo, hi);
    uint64_t a = live_word(t, w) & m;
    uint64_t g = atomic_load_explicit(&t->grows.words[w], memory_order_relaxed) & m;
    n += hw ? (size_t)__builtin_popcountll(a) + (size_t)__builtin_popcountll(g)
            : (size_t)fwd_popcount(a) + (size_t)fwd_popcount(g);
  }
  return n;
}
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static size_t words_in_popcnt(const fwd_tables *t, uintptr_t lo,
                                                                uintptr_t hi) {
  return words_in_with(t, lo, hi, 1);
}
static size_t fwd_words_in(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  return __builtin_cpu_supports("popcnt") ? words_in_popcnt(t, lo, hi) : words_in_with(t, lo, hi, 0);
}
#else
static size_t fwd_words_in(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  return words_in_with(t, lo, hi, 0);
}
#endif

size_t fwd_moved_size(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  return fwd_words_in(t, lo, hi) * FWD_WORD;
}

/* The objects sliding down between range k - 1 and range k must fit below
 * range k.  They do unless some of them grow (a hashed object gains its
 * hash word when it moves, and the filler hashing left for that word may
 * lie elsewhere): then range k takes in pages below it until they fit
 * (merging into range k - 1 at worst, where nothing slides).  Returns k's
 * index after any merge. */
static size_t fit_segment(fwd_tables *t, size_t k) {
  fwd_range *r = t->ranges;
  uintptr_t seg = k ? r[k - 1].hi : t->lo;
  /* Without a grower among them, the words below range k fit where they
   * lie: no count (over the whole space below the first pin). */
  if (r[k].lo > seg && !bitmap_next_set(&t->grows, seg, r[k].lo)) return k;
  /* Else the words sliding below range k (grown) are counted once and
   * kept up to date as the range takes in chunks: counting the whole
   * segment again at each chunk was quadratic (fhscheme's hashtables,
   * 20-40 pins in 4-9 ranges: 0.6-0.8 ms of every remark pause). */
  size_t words = r[k].lo > seg ? fwd_words_in(t, seg, r[k].lo) : 0;
  for (;;) {
    if (r[k].lo <= seg) { /* nothing slides here any more: merge */
      if (k) {
        if (r[k].hi > r[k - 1].hi) r[k - 1].hi = r[k].hi;
        memmove(&r[k], &r[k + 1], (t->nranges - k - 1) * sizeof *r);
        t->nranges--;
        return k - 1;
      }
      return k;
    }
    if (seg + FWD_WORD * words <= r[k].lo) return k;
    uintptr_t was = r[k].lo;
    r[k].lo -= FWD_RANGE_ALIGN;
    widen_down(t, &r[k].lo);
    if (r[k].lo > seg) words -= fwd_words_in(t, r[k].lo, was);
  }
}

static void put_filler(fwd_tables *t, uintptr_t a, uintptr_t e) {
  obj_write_filler(a, e - a);
  size_t i = (a - t->begin) >> 3; /* one writer now: no locked or */
  or_word(&t->mark.words[i >> 6], (uint64_t)1 << (i & 63));
  t->range_fill_bytes += e - a;
  /* Remembered for the allocator (fwd_span).  Without memory for the
   * list the filler is simply not offered: nothing else reads it. */
  if (e - a < FWD_HOLE_MIN) return;
  if (t->nfills == t->fills_cap) {
    size_t cap = t->fills_cap ? 2 * t->fills_cap : 256;
    fwd_span *grown = realloc(t->fills, cap * sizeof *grown);
    if (!grown) return;
    t->fills = grown;
    t->fills_cap = cap;
  }
  t->fills[t->nfills++] = (fwd_span){a, e};
}

/* A filler over each stretch of dead words in [lo, hi),
 * found in the live bitmap: every word of a live object has its bit (and
 * the old generation's words below ylo, fwd_set_floor), so no object
 * header is read.  Walking the headers instead was a cache miss per
 * object: 1.3 ms of a 10 ms pause with 3,000 pinned 32-byte objects
 * (fhbench pins). */
static void fill_dead(fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  uintptr_t dead = 0; /* start of the dead stretch being crossed, 0 none */
  for (size_t w = chunk_of(t, lo), e = chunk_of(t, hi - FWD_WORD) + 1; w < e; w++) {
    /* Words outside [lo, hi) count as live: no stretch crosses an end. */
    uint64_t bits = live_word(t, w) | ~span_mask(t, w, lo, hi);
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
    /* The pin's chunk (the destination offset jumps where a chunk
     * begins), widened down past objects that straddle its start; the
     * range ends with the pinned object: what follows it in its last
     * chunk slides down onto its end (forwarding.h). */
    uintptr_t lo = t->begin + align_down(s - t->begin, FWD_RANGE_ALIGN), hi = s + bytes;
    widen_down(t, &lo);
    fwd_range *last = t->nranges ? &t->ranges[t->nranges - 1] : NULL;
    if (last && lo <= last->hi) { /* shares a chunk with the previous one (never below its lo) */
      if (lo < last->lo) last->lo = lo;
      if (hi > last->hi) last->hi = hi;
    } else {
      t->ranges[t->nranges++] = (fwd_range){lo, hi, lo};
    }
  }
  if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed))
    for (size_t r = 0; r < t->nranges; r++) r = fit_segment(t, r);
  /* Each range starts at its first chunk's first live word: the dead
   * words before it join the gap below (the chunk's destination offset
   * is where that word stays; none of its words below is live, as no
   * object straddles the chunk's start).  Below ylo that is the floor
   * itself when old words lie there (fwd_set_floor marks them live). */
  for (size_t r = 0; r < t->nranges; r++) {
    fwd_range *g = &t->ranges[r];
    g->lo += (uintptr_t)__builtin_ctzll(live_word(t, chunk_of(t, g->lo))) * FWD_WORD;
    g->gap_lo = g->lo;
  }
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
    /* A word of each bitmap at a time: the growers in the range stay
     * where they are, and so do not grow (clearing them one bit and one
     * locked decrement each took most of this function's time in
     * fhscheme's hashtables, whose ranges hold many hashed keys). */
    size_t kept = 0;
    for (size_t w = chunk_of(t, lo), e = chunk_of(t, hi - FWD_WORD) + 1; w < e; w++) {
      uint64_t m = span_mask(t, w, lo, hi);
      uint64_t g = growers ? atomic_load_explicit(&t->grows.words[w], memory_order_relaxed) & m : 0;
      if (g) {
        kept += fwd_popcount(g);
        atomic_fetch_and_explicit(&t->grows.words[w], ~g, memory_order_relaxed);
      }
      atomic_store_explicit(&t->live.words[w], live_word(t, w) | m, memory_order_relaxed);
    }
    if (kept) atomic_fetch_sub_explicit(&t->grows_marked, kept, memory_order_relaxed);
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
