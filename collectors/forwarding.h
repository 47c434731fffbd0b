/* Compressor-style forwarding for sliding compaction of the moving space
 * (DESIGN.md section 4; Kermany & Petrank's offset vector, as ART's
 * mark-compact).  No forwarding word is ever written into an object.
 *
 * Marking leaves two side bitmaps over the moving space:
 *   mark        one bit per 8-byte word at the start of every live object;
 *   live_words  one bit per 8-byte word for EVERY word of a live object.
 * A chunk is 512 bytes = 64 words = exactly one live_words word, so the live
 * bytes of chunk c are 8 * popcount(live_words[c]).  fwd_compute turns them
 * into an exclusive prefix sum, dest(c) = live bytes before chunk c;
 * then, for an object starting at old address a (in chunk c, word bit b),
 *     new(a) = begin + dest(c) + 8 * popcount(live_words[c] & (2^b - 1))
 * which is O(1) and reads only the tables: any page can be rebuilt alone.
 * Both operands sit side by side in one 16-byte entry per chunk (the live
 * word copied next to its prefix), so forwarding a reference to a random
 * referent costs one cache miss and one TLB miss, not two of each.
 *
 * For each destination page, page_first[p] is the old start of the live
 * object that covers the page's first byte (it may start on an earlier
 * page: objects straddle page boundaries freely).  Building page p walks
 * live objects from there in address order until the page is full.
 *
 * Hashed objects grow (heap/identity_hash.h).  A live HASHED object of the
 * moving space gains its 8-byte hash word when it moves: marking sets its
 * start bit in `grows` too, the chunk's dest counts 8 more bytes per grower
 * (for the chunks after it), and a chunk holding growers has bit 63 of its
 * dest set, so that fwd_start adds the growers below the object in that
 * chunk: one predictable branch for every other chunk.  Every HASHED live
 * object grows, even where its address stays (the dense prefix ends at the
 * first grower), so its new footprint is always obj_moved_bytes(old
 * header).  Destination pages that any grower's new range touches are
 * marked in slow_pages and built object by object (page_compact.c); the
 * others are still copies of consecutive live words.
 *
 * Pinned objects (heap/pins.h) are fixed points.  fwd_pin_ranges turns
 * them into pinned ranges [lo, hi): lo the first live word of the chunk
 * the pinned object starts in (widened down a chunk at a time while a live
 * object straddles the chunk's start), hi the pinned object's end; merged
 * when they share a chunk.  Inside a range nothing moves: every dead gap
 * there becomes a filler object (in place, before the space moves aside)
 * whose start and words count as live, so the range forwards to itself;
 * hashed objects there keep their address and so do not grow.  Since
 * dest(c) need not be a running sum, fwd_compute jumps the destination
 * offset to lo when it reaches lo's chunk (only where a chunk begins can
 * it jump: no live word of that chunk lies below lo); the live objects
 * after hi in its chunk slide down onto hi like any others.  The objects
 * between two ranges slide down towards the lower one,
 * and the destination bytes [gap_lo, lo) between the last of them and the
 * next range are a gap: one filler object (one per GiB), its header where
 * the gap begins; whole pages after it stay zero (page_first 0 there,
 * fwd_page_blank: the zero page, or never touched).  A destination page
 * is then a sequence of live runs (each a stretch of consecutive live
 * words from some old address: a range is a run that starts at its own
 * address, and the objects sliding down after it continue that run)
 * separated by gaps.  Concurrent compaction builds the pages the pinned
 * objects themselves cover inside the pause, the rest of their ranges
 * after it (cc_pinned.c). */
#ifndef FH_FORWARDING_H_
#define FH_FORWARDING_H_

#include <stddef.h>
#include <stdint.h>

#include "heap/gc_pace.h"
#include "heap/object.h"
#include "heap/slot.h"
#include "spaces/bitmap.h"

#define FWD_WORD 8u
#define FWD_CHUNK_SHIFT 9 /* 512-byte chunks: one live_words word each */
#define FWD_PAGE 4096u
#define FWD_MAX_MARKERS 8
/* A pinned range starts in the chunk of this alignment its first pinned
 * object starts in: the destination offset can jump only where a chunk
 * begins. */
#define FWD_RANGE_ALIGN ((size_t)1 << FWD_CHUNK_SHIFT)

typedef struct fwd_chunk {
  uint64_t live; /* live_words[c], copied by fwd_compute */
  uint64_t dest; /* live bytes before chunk c | FWD_DEST_GROWS */
} fwd_chunk;
#define FWD_DEST_GROWS ((uint64_t)1 << 63) /* chunk c holds growers: see grows */
#define FWD_DEST_MASK (FWD_DEST_GROWS - 1)

/* A pinned range (above): [lo, hi) stays where it is; the objects sliding
 * down below it end at gap_lo (<= lo; fwd_compute). */
typedef struct fwd_range {
  uintptr_t lo, hi, gap_lo;
} fwd_range;

/* A stretch of dead words inside a pinned range, now one filler object
 * (fwd_pin_ranges): free memory once the cycle is over. */
typedef struct fwd_span {
  uintptr_t lo, hi;
} fwd_span;

/* fwd_compute's walk over the chunks, kept between fwd_compute_below and
 * fwd_compute: the next chunk, the destination offset, the next page
 * boundary and the object covering it, the pinned range next met, the
 * moved bytes and the dense prefix's scan. */
typedef struct fwd_cursor {
  size_t c, acc, page, r, jump, moved, dense_c;
  uintptr_t obj, prev;
  int started;
} fwd_cursor;

typedef struct fwd_tables {
  uintptr_t begin;     /* moving space begin (old and new addresses share it) */
  slot_tags tags;      /* how slots hold references (heap/slot.h) */
  size_t capacity;     /* moving space bytes */
  uintptr_t old_top;   /* marked objects lie in [ylo, old_top) */
  /* Generational mark-compact (mc_gen.h): a young collection neither
   * marks nor moves the old generation [begin, ylo).  ylo is an object
   * boundary; lo is ylo rounded down to a chunk, the floor of the tables
   * (chunks below it are never read); the old words [lo, ylo) count as
   * live (fwd_set_floor), so they forward to themselves.  Both are begin
   * for a whole-space collection. */
  uintptr_t lo, ylo;
  int young; /* this cycle is a young collection (mc_gen.h) */
  fh_bitmap mark;      /* object starts, granule 8 */
  fh_bitmap live;      /* live words, granule 8; word c covers chunk c */
  fh_bitmap grows;     /* starts of live HASHED objects (gain a hash word) */
  uint64_t *slow_pages; /* bit per destination page a grower's range touches */
  size_t slow_map_bytes;
  _Atomic size_t grows_marked; /* growers marking found */
  size_t ngrows;       /* growers this cycle (fwd_compute) */
  fwd_chunk *chunks;    /* [capacity / 512], filled by fwd_compute */
  uintptr_t *page_first; /* [capacity / 4096] old object start, 0 = none */
  size_t chunk_map_bytes, page_map_bytes;
  /* Parallel marking: marker k >= 1 sets its bits in a pair of bitmaps of
   * its own, extra_mark/extra_live[k - 1], with plain stores, and
   * fwd_merge_markers ORs them into mark/live when marking is over.  Every
   * word then has one writer: no locked read-modify-write (a full fence on
   * x86, which cost more than a second marker gained).  Mapped on first
   * use; each helper gives its pages back after the merge
   * (fwd_release_marker), fwd_reset those any helper left. */
  fh_bitmap extra_mark[FWD_MAX_MARKERS - 1], extra_live[FWD_MAX_MARKERS - 1];
  unsigned extra_mapped;
  /* Bytes of them resident now, for the benchmark's memory figures (it
   * subtracts them): raised after they are faulted in, lowered before they
   * are given back, so it never counts more than is there. */
  _Atomic size_t extra_resident;
  /* What helper k + 1 added to it this cycle; nonzero also means that its
   * bitmaps hold bits.  Written by that helper, read after it is joined. */
  size_t extra_counted[FWD_MAX_MARKERS - 1];
  uintptr_t chunks_populated; /* chunk entries faulted in for [begin, this) */
  /* The mark and live bitmaps of [kept_lo, kept_hi) are resident: a young
   * cycle's reset wrote zeroes there (fwd_reset), and the next marking
   * need not fault them in (empty: unknown). */
  uintptr_t kept_lo, kept_hi;
  /* The mark and live bitmaps and the chunks of [begin, this) went back
   * to the kernel since the last full cycle: young cycles' floors passed
   * them (fwd_reset). */
  uintptr_t released_below;
  /* Set by the caller before fwd_reset: this cycle slid in place (with the
   * world stopped), so its tables are kept like a young cycle's. */
  int slid;
  /* Set by the caller before fwd_reset, 0 for none: where the next
   * cycle's marking can reach at most (the new top plus the allocation
   * window the sizer just granted).  A kept cycle's tables stay resident
   * only below it: after live data falls, the space the cycle collected
   * reaches far past what the next one will (fhbench phases: the first
   * cycles after the fall kept 3.4 MiB of tables beyond it, 1/5 of the
   * live data). */
  uintptr_t keep_to;
  /* Pinned ranges, ascending, disjoint and not adjacent (fwd_pin_ranges);
   * fixed from fwd_compute to the end of the cycle (page builders, signal
   * handlers included, read them without a lock). */
  fwd_range *ranges;
  size_t nranges, ranges_cap;
  size_t pinned_objects, pinned_bytes; /* this cycle: pinned objects in ranges */
  size_t range_fill_bytes;             /* fillers written over dead words there */
  /* Fillers over the dead words of the dense prefix (fwd_wood.c), this
   * cycle: ascending, and their bytes. */
  fwd_span *wood;
  size_t nwood, wood_cap, wood_bytes;
  /* Those fillers of FWD_HOLE_MIN bytes or more, ascending (as many as
   * memory allowed: they are only offered to the allocator as holes,
   * collectors/mc_holes.c). */
  fwd_span *fills;
  size_t nfills, fills_cap;
  fwd_cursor cur; /* fwd_compute's walk (above) */
  /* Occupied regions: bit r set when some live word of the 4 KiB region r
   * of the space (8 chunks: one cache line of each bitmap) is set, found
   * by fwd_compute as it reads every live word anyway; valid (occ_valid)
   * from the end of fwd_compute to fwd_reset.  A young cycle's survivors
   * lie in a few places of a mostly dead range: the slide's passes skip
   * the empty regions instead of reading every bitmap word (fwd_next_set),
   * fwd_compute does not write their chunk entries, and fwd_reset clears
   * the occupied regions only (fhbench young: the four passes over the
   * 16 MiB young range's bitmaps and chunks were a fifth of the pause). */
  uint64_t *occ;
  size_t occ_map_bytes;
  int occ_valid;
  /* Results of fwd_compute. */
  size_t live_bytes;   /* bytes of live objects (headers included), not
                          counting the fillers and gaps pins leave */
  uintptr_t new_top;   /* end of the last destination byte: begin +
                          live_bytes without pins, more with them */
  size_t npages;       /* destination pages: ceil((new_top - begin) / 4096) */
  size_t dense_pages;  /* leading destination pages whose objects all keep
                          their address (no dead word below their end) */
  uintptr_t dense_end; /* the first word that does not keep its address
                          (old_top if none): dense_pages, to the byte */
  size_t move_bytes;   /* live bytes of the chunks whose objects do not all
                          keep their address: what a slide memmoves.  Not
                          new_top - dense: pinned ranges and the objects
                          after them that stay in place move nothing, and a
                          pinned object far up (a conservative stack root)
                          makes that span many times the live data */
} fwd_tables;

/* Map the tables for a space of `capacity` bytes at `begin` (NORESERVE:
 * pages appear as they are used).  0, or -1 + fh_last_error(). */
int fwd_init(fwd_tables *t, uintptr_t begin, size_t capacity);
void fwd_destroy(fwd_tables *t);
/* Zero everything the last cycle wrote (bitmaps and tables up to old_top),
 * handing whole pages back to the system. */
void fwd_reset(fwd_tables *t);

/* Before marking: collect only [ylo, old_top) (a young collection; ylo
 * = begin for a whole-space one): sets lo and ylo, and the live bits of
 * the old words [lo, ylo).  After fwd_prepare_marking. */
void fwd_set_floor(fwd_tables *t, uintptr_t ylo);

/* Before marking objects below t->old_top: fault in the bitmap words that
 * cover them with one call per bitmap instead of a fault per page (about
 * 1/32 of the used bytes; marking hits them in random order). */
void fwd_prepare_marking(fwd_tables *t);
/* Fault in the chunk-table entries for [begin, upto) (1/32 of the heap
 * bytes, ~5 ms for 512 MiB here) with one call instead of a fault per page.
 * Needs no stopped world: the collectors call it before the pause
 * (collector.h: prepare), and fwd_compute only for what mutators allocated
 * since.  (The bitmaps are better faulted in inside the pause: faulting
 * writes zeroes through the cache, and marking then finds them there;
 * faulted in before the pause they went cold and marking got slower by as
 * much as it saved.) */
void fwd_populate_chunks(fwd_tables *t, uintptr_t upto);

/* Record a live object [start, start + bytes) in t->mark and t->live
 * (tests; marking itself uses the halves below).  Single writer: the
 * bitmaps are updated without atomic read-modify-writes. */
void fwd_mark_object(fwd_tables *t, uintptr_t start, size_t bytes);
/* The two halves of it: set the start bit (returns its old value), and the
 * live words (marking does this when it scans the object, so the header
 * read happens after a prefetch) in `live`: t->live or one marker's own
 * (one writer per bitmap). */
int fwd_mark_start(fwd_tables *t, uintptr_t start);
void fwd_mark_live_in(const fwd_tables *t, fh_bitmap *live, uintptr_t start, size_t bytes);
/* Bytes the live objects in [lo, hi) take once moved (their live words and
 * a hash word per grower); after marking. */
size_t fwd_moved_size(const fwd_tables *t, uintptr_t lo, uintptr_t hi);
/* The live object at start is HASHED, not yet moved: it grows (atomic: any
 * marker; rare). */
static inline void fwd_mark_grows(fwd_tables *t, uintptr_t start) {
  if (!bitmap_test_and_set(&t->grows, start))
    atomic_fetch_add_explicit(&t->grows_marked, 1, memory_order_relaxed);
}
/* Marking's live words for an object with header hd at start, growth
 * noted: what every marker calls. */
static inline void fwd_mark_scanned(fwd_tables *t, fh_bitmap *live, uintptr_t start, uint64_t hd);

/* Map bitmaps for markers 1 .. n-1 (at most FWD_MAX_MARKERS in all).
 * Returns how many markers can run: n, or fewer when mapping failed. */
unsigned fwd_add_markers(fwd_tables *t, unsigned n);
/* Fault in marker k's (k >= 1) bitmaps below t->old_top, as
 * fwd_prepare_marking does for marker 0's; each marker calls it for its
 * own, so the faults of all of them run in parallel. */
void fwd_prepare_marker(fwd_tables *t, unsigned k);
/* OR the bitmaps of markers 1 .. n-1 into mark and live, for the bitmap
 * words [from, to) (word c covers chunk c).  Disjoint word ranges may be
 * merged by different threads at once. */
void fwd_merge_markers(fwd_tables *t, unsigned n, size_t from, size_t to);
/* Give the pages of marker k's (k >= 1) bitmaps back: any time after the
 * merge (each helper does its own, while the pause goes on); of every
 * helper that left its own (fwd_reset does this too). */
void fwd_release_marker(fwd_tables *t, unsigned k);
void fwd_release_markers(fwd_tables *t);
/* Bitmap words covering [begin, old_top). */
static inline size_t fwd_used_words(const fwd_tables *t) {
  return (((t->old_top - t->begin) >> 3) + 63) / 64;
}
/* The first address whose bits helper markers hold (fwd_prepare_marker):
 * the floor rounded down to a page of bitmap. */
uintptr_t fwd_marker_base(const fwd_tables *t);

/* After marking, before fwd_compute, with the space still in place: make
 * the objects starting at pins[0 .. n) (ascending; those outside [begin,
 * old_top) are skipped) fixed points, as pinned ranges (above).  Writes
 * fillers into the space's dead words inside the ranges, sets their bits
 * and clears the growth of hashed objects there.  0, or -1 +
 * fh_last_error() (out of memory) with nothing changed. */
int fwd_pin_ranges(fwd_tables *t, const uintptr_t *pins, size_t n);

/* How many pages the pinned objects' starts lie on among pins[0 .. n)
 * (ascending) inside [begin, old_top), each page once: what a flip builds
 * in its pause for them (mc.h), less a large object's interior.  Reads no
 * object.  0 without pinned ranges. */
size_t fwd_pinned_pages(const fwd_tables *t, const uintptr_t *pins, size_t n);

/* Occupied regions (fwd_tables.occ): 4 KiB of the space each. */
#define FWD_OCC_SHIFT 12
/* The first set bit at or after from and below end in t->mark or t->live
 * (or any bitmap whose bits lie only where live words are), as
 * bitmap_next_set, skipping regions with no live word once fwd_compute
 * has found them. */
uintptr_t fwd_next_set_far(const fwd_tables *t, const fh_bitmap *b, uintptr_t from, uintptr_t end);
/* Inline: the next object is most often in the same bitmap word (the
 * survivors of a region lie together). */
static inline uintptr_t fwd_next_set(const fwd_tables *t, const fh_bitmap *b, uintptr_t from,
                                     uintptr_t end) {
  if (from >= end) return 0;
  size_t i = (from - t->begin) >> 3;
  uint64_t w = atomic_load_explicit(&b->words[i >> 6], memory_order_relaxed) &
               (~(uint64_t)0 << (i & 63));
  if (w) {
    uintptr_t a = t->begin + (((i & ~(size_t)63) + (size_t)__builtin_ctzll(w)) << 3);
    return a < end ? a : 0;
  }
  return fwd_next_set_far(t, b, t->begin + (((i | 63) + 1) << 3), end);
}

/* Bytes of [a, e) inside [lo, hi). */
static inline size_t fwd_overlap(uintptr_t a, uintptr_t e, uintptr_t lo, uintptr_t hi) {
  if (a < lo) a = lo;
  if (e > hi) e = hi;
  return e > a ? e - a : 0;
}

/* After marking (and fwd_pin_ranges), before fwd_compute starts: keep
 * the longest prefix of [ylo, old_top) whose dead words are at most 1/32
 * of it in place, its dead stretches turned into live fillers (fwd_wood.c).
 * Only below the first pinned range, and nothing with growers. */
void fwd_keep_dense_prefix(fwd_tables *t);
/* Bytes of this cycle's dead wood in [lo, hi). */
size_t fwd_wood_in(const fwd_tables *t, uintptr_t lo, uintptr_t hi);
/* Prefix sums and per-page first objects, for objects marked below
 * t->old_top.  Reads only the two bitmaps (no object header). */
void fwd_compute(fwd_tables *t);
/* The part of fwd_compute that needs only the chunks wholly below upto:
 * run while mutators run once marking is over below upto (concurrent
 * compaction's remark, collectors/cc_concurrent.c), and fwd_compute does
 * the rest.  Ends early when *stop is set (stop may be NULL); returns how
 * far it got.  Only the marks above that bound may change in between. */
uintptr_t fwd_compute_below(fwd_tables *t, uintptr_t upto, gc_budget *b);
/* Forget what fwd_compute_below did: fwd_compute starts from the floor
 * (the marks below its bound changed: a pin or a grower more). */
void fwd_compute_restart(fwd_tables *t);

/* Index of the first pinned range that ends above destination (or old)
 * address a: a lies in it when its lo <= a; t->nranges when none.
 * Async-signal-safe. */
static inline size_t fwd_range_at(const fwd_tables *t, uintptr_t a) {
  size_t lo = 0, hi = t->nranges;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->ranges[mid].hi <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
/* Where the live run holding destination address d (not in a gap) ends:
 * at the next gap that is not empty, else at the new top; *gap_end gets
 * the end of that gap (the range's start), 0 for the new top. */
static inline uintptr_t fwd_run_end(const fwd_tables *t, uintptr_t d, uintptr_t *gap_end) {
  size_t i = fwd_range_at(t, d);
  if (i < t->nranges && t->ranges[i].lo <= d) i++;
  while (i < t->nranges && t->ranges[i].gap_lo == t->ranges[i].lo) i++;
  if (i < t->nranges) {
    *gap_end = t->ranges[i].lo;
    return t->ranges[i].gap_lo;
  }
  *gap_end = 0;
  return t->new_top;
}
/* The smallest free stretch offered to the allocator as a hole: smaller
 * ones stay fillers until the next cycle.  Small, since the dead words a
 * pinned range holds lie between live objects that stay (its chunk's
 * first live word and its pin, or pins sharing chunks, or objects that
 * straddle a chunk's start): mostly a few hundred bytes, and with 1% of
 * small objects pinned
 * (fhbench pins) they and the gaps under 1 KiB (the former minimum) were
 * 0.5 MiB of its 17 MiB.  Each hole costs a TLAB refill (a slow path,
 * under the hole lock); a claim skips those too small for it.  Not
 * smaller: fwd_pin_ranges keeps no record of smaller fillers (16 bytes
 * each, as many as dead objects between pinned neighbours: 23,000 and
 * 0.5 MiB with fhbench pins' 32-byte objects, and as much again left
 * behind by the list's growth). */
#define FWD_HOLE_MIN 64u
/* A filler's size field holds 32 bits: a gap is cut into fillers at every
 * FWD_GAP_FILLER boundary (from begin), each one's header on its page. */
#define FWD_GAP_FILLER ((uintptr_t)1 << 30)
/* Destination page p (< npages) lies wholly inside a gap and after its
 * first byte: it holds no header (the gap is one filler, whose header is
 * on the page where the gap begins), only zeroes.  Builders may leave it
 * unwritten (the emptied space reads as zero) or map the zero page. */
static inline int fwd_page_blank(const fwd_tables *t, size_t p) {
  if (!t->nranges || t->page_first[p]) return 0;
  uintptr_t d = t->begin + p * FWD_PAGE;
  size_t i = fwd_range_at(t, d);
  return i < t->nranges && t->ranges[i].gap_lo < d && t->ranges[i].lo >= d + FWD_PAGE &&
         (d - t->begin) % FWD_GAP_FILLER != 0;
}
/* End of the gap filler starting at a, in the gap that ends at lo. */
static inline uintptr_t fwd_gap_filler_end(const fwd_tables *t, uintptr_t a, uintptr_t lo) {
  uintptr_t cut = t->begin + ((a - t->begin) / FWD_GAP_FILLER + 1) * FWD_GAP_FILLER;
  return cut < lo ? cut : lo;
}
/* Old address of the first live word at or after destination page p's
 * first byte, for a page that begins in a gap (page_first[p] == 0, p <
 * npages): the start of the next range (identity), which may lie on the
 * page or beyond it. */
static inline uintptr_t fwd_gap_next(const fwd_tables *t, size_t p) {
  size_t i = fwd_range_at(t, t->begin + p * FWD_PAGE);
  return i < t->nranges ? t->ranges[i].lo : t->new_top;
}

/* Without -mpopcnt, __builtin_popcountll is a libgcc call (it showed up
 * at 2% of a compaction profile); the inline bit-twiddling is a dozen
 * instructions and needs no CPU check. */
static inline unsigned fwd_popcount(uint64_t x) {
#ifdef __POPCNT__
  return (unsigned)__builtin_popcountll(x);
#else
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Full;
  return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* Hash words gained below word w in its chunk c (whose dest has FWD_DEST_GROWS). */
static inline size_t fwd_grown_below(const fwd_tables *t, size_t w) {
  uint64_t g = atomic_load_explicit(&t->grows.words[w >> 6], memory_order_relaxed);
  return FWD_WORD * (size_t)fwd_popcount(g & (((uint64_t)1 << (w & 63)) - 1));
}

/* New address of the live object starting at old address `start`. */
static inline uintptr_t fwd_start(const fwd_tables *t, uintptr_t start) {
  size_t w = (start - t->begin) >> 3;
  const fwd_chunk *c = &t->chunks[w >> 6];
  uint64_t bits = c->live & (((uint64_t)1 << (w & 63)) - 1);
  uint64_t d = c->dest;
  uintptr_t r = t->begin + (uintptr_t)(d & FWD_DEST_MASK) + FWD_WORD * (size_t)fwd_popcount(bits);
  if (__builtin_expect((d & FWD_DEST_GROWS) != 0, 0)) r += fwd_grown_below(t, w);
  return r;
}

static inline void fwd_mark_scanned(fwd_tables *t, fh_bitmap *live, uintptr_t start, uint64_t hd) {
  fwd_mark_live_in(t, live, start, obj_bytes(hd));
  if (__builtin_expect(hdr_hash_grows(hd), 0)) fwd_mark_grows(t, start);
}

/* The live object starting at `start` gains its hash word when it moves.
 * The grows bitmap decides, not the header: a HASHED object inside a
 * pinned range keeps its address and does not grow (fwd_pin_ranges clears
 * its bit).  Builders that sized such an object by its header grew it on a
 * page a grower's copy made slow, and shifted the range's objects by 8
 * bytes each (a hashed list with a stack-pinned cell). */
static inline int fwd_grows_at(const fwd_tables *t, uintptr_t start) {
  return t->ngrows && bitmap_test(&t->grows, start);
}
/* Its footprint after the move. */
static inline size_t fwd_moved_bytes(const fwd_tables *t, uintptr_t start, uint64_t hd) {
  return obj_bytes(hd) + (fwd_grows_at(t, start) ? FH_HASH_WORD_BYTES : 0);
}

/* Destination page p holds (part of) a grower: page_build copies it object
 * by object. */
static inline int fwd_page_slow(const fwd_tables *t, size_t p) {
  return t->ngrows && (t->slow_pages[p >> 6] >> (p & 63) & 1);
}

/* A reference value after compaction: payload pointers into the old moving
 * range are translated, anything else (NULL, other spaces, native memory)
 * is returned as is. */
static inline void *fwd_ref(const fwd_tables *t, void *p) {
  uintptr_t a = (uintptr_t)p;
  if (a - (t->lo + FWD_WORD) < t->old_top - t->lo)
    return (void *)(fwd_start(t, a - FWD_WORD) + FWD_WORD);
  return p;
}

#endif
