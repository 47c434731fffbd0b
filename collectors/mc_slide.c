/* Stop-the-world sliding compaction in place (issue 17): with the world
 * stopped and the forwarding computed (forwarding.h: the tables read only
 * the bitmaps, never the heap), every reference is first rewritten where
 * it lies, then the objects slide down in address order with memmove.  No
 * page moves, nothing is registered with userfaultfd: the fixed cost of a
 * cycle is marking and two passes over the live data, with no system call.
 *
 *   update  every live object of the moving space, in place, by gc_threads
 *           threads over disjoint pieces of the old space (a slot belongs
 *           to one object, so nothing is shared); outside references the
 *           same way as the mremap path (mc_update_outside).
 *   slide   one thread, ascending.  Without growers a run of consecutive
 *           live words (the live bitmap) is one memmove: its words keep
 *           their order and spacing, and its destination never passes its
 *           source, nor the next run's.
 *
 * Growers (hashed objects that gain their hash word when they move) are
 * the one way a destination can run ahead of a source that has not moved
 * yet: a grower with no dead word below it keeps its start and ends 8
 * bytes further, over the next object's header, and the excess carries on
 * until enough dead words absorb it.  Object X "waits" when its new end
 * passes the next object's old start: that object must move first.  A
 * waiting chain X_i .. X_j (each waits for the next, X_j does not) moves
 * from X_j down to X_i: X_j's new end is at or below X_{j+1}'s old start,
 * and every X_k in the chain lands above its own old start (its new start
 * is past X_{k-1}'s new end, which passed X_k's old start), so no move
 * overwrites a source still to be read.  Outside chains the ascending
 * order is safe as before.  Each object is looked at a bounded number of
 * times (chains go back with the start bitmap), and no memory is needed.
 * Pinned ranges do not move (they are skipped) and fwd_pin_ranges already
 * lowered each range until the growers below it fit, so no chain reaches
 * into one. */
#include <string.h>

#include "collectors/mc.h"
#include "heap/barrier.h"
#include "heap/identity_hash.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

/* Old space per claim of the update pass. */
#define UPDATE_PIECE ((uintptr_t)1 << 20)
/* A helper is worth starting for this much used space each (as builders). */
#define UPDATE_PER_HELPER ((size_t)8 << 20)
#define MAX_UPDATE_HELPERS 7

static inline uint64_t load_hd(uintptr_t a) { return *(const uint64_t *)a; }

static void slide_update_slot(void **slot, void *ctx) {
  const fwd_tables *t = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(t->tags, v), *q = fwd_ref(t, p);
  if (q != p) *slot = (void *)slot_retag(t->tags, v, (uintptr_t)q);
}

/* Slots of fixed-layout objects and reference arrays go through a ring:
 * the referent's chunk entry (a cache miss when referents lie far apart)
 * is prefetched when the slot is met and the slot rewritten UPDATE_RING
 * slots later, so that many misses are in flight at once (as page_build's
 * pending bits).  Each such slot is visited once; trace callbacks, which
 * might visit one twice, forward at once. */
#define UPDATE_RING 64
/* How many objects ahead update_piece fetches headers. */
#define UPDATE_AHEAD 8

typedef struct update_ring {
  const fwd_tables *t;
  void **slot[UPDATE_RING];
  unsigned head, n;
} update_ring;

/* The slot holds a payload pointer into the old space (ring_push checked):
 * forward it as fwd_ref does, counting bits with the POPCNT instruction
 * when `hw` (a constant once inlined: see update_piece). */
static inline __attribute__((always_inline)) void ring_fix(const fwd_tables *t, void **slot,
                                                           int hw) {
  uintptr_t v = (uintptr_t)*slot;
  size_t w = (slot_target(t->tags, v) - FWD_WORD - t->begin) >> 3;
  const fwd_chunk *e = &t->chunks[w >> 6];
  uint64_t below = e->live & (((uint64_t)1 << (w & 63)) - 1);
  size_t n = hw ? (size_t)__builtin_popcountll(below) : fwd_popcount(below);
  uintptr_t q = t->begin + (uintptr_t)(e->dest & FWD_DEST_MASK) + FWD_WORD * n + FWD_WORD;
  if (__builtin_expect((e->dest & FWD_DEST_GROWS) != 0, 0)) q += fwd_grown_below(t, w);
  *slot = (void *)slot_retag(t->tags, v, q);
}

static inline __attribute__((always_inline)) void ring_push(update_ring *r, void **slot, int hw) {
  const fwd_tables *t = r->t;
  uintptr_t a = slot_target(t->tags, (uintptr_t)*slot);
  if (a - t->lo - FWD_WORD >= t->old_top - t->lo) return; /* not into the old space */
  __builtin_prefetch(&t->chunks[(a - FWD_WORD - t->begin) >> FWD_CHUNK_SHIFT]);
  if (r->n < UPDATE_RING) {
    r->slot[(r->head + r->n++) % UPDATE_RING] = slot;
    return;
  }
  ring_fix(t, r->slot[r->head], hw);
  r->slot[r->head] = slot;
  r->head = (r->head + 1) % UPDATE_RING;
}

/* The mark bits of [lo, hi) one after another, inline (a call to
 * bitmap_next_set per object costs about what the fetches save). */
typedef struct start_cursor {
  const _Atomic uint64_t *words;
  uintptr_t begin, hi;
  size_t w, wend;
  uint64_t bits;
  const uint64_t *occ; /* the occupied regions, once known (NULL: every word) */
} start_cursor;
/* Bitmap words per occupied region (forwarding.h: FWD_OCC_SHIFT). */
#define FWD_OCC_WORDS ((size_t)1 << (FWD_OCC_SHIFT - FWD_CHUNK_SHIFT))

static inline void start_cursor_init(start_cursor *c, const fwd_tables *t, uintptr_t lo,
                                     uintptr_t hi) {
  size_t i = (lo - t->begin) >> 3;
  c->words = t->mark.words;
  c->begin = t->begin;
  c->hi = hi;
  c->w = i >> 6;
  c->wend = (((hi - t->begin) >> 3) + 63) >> 6;
  c->occ = t->occ_valid ? t->occ : NULL;
  c->bits = c->w < c->wend
                ? atomic_load_explicit(&c->words[c->w], memory_order_relaxed) & (~(uint64_t)0 << (i & 63))
                : 0;
}

/* The next start, or 0 past hi. */
static inline uintptr_t start_cursor_next(start_cursor *c) {
  while (!c->bits) {
    if (++c->w >= c->wend) return 0;
    /* At a region's first word: past the empty regions (forwarding.h:
     * occ), as the update's own walk (fwd_next_set). */
    if (c->occ && !(c->w & (FWD_OCC_WORDS - 1)))
      for (size_t r = c->w / FWD_OCC_WORDS; !(c->occ[r >> 6] >> (r & 63) & 1);) {
        c->w = ++r * FWD_OCC_WORDS;
        if (c->w >= c->wend) return 0;
      }
    c->bits = atomic_load_explicit(&c->words[c->w], memory_order_relaxed);
  }
  unsigned b = (unsigned)__builtin_ctzll(c->bits);
  c->bits &= c->bits - 1;
  uintptr_t a = c->begin + (((uintptr_t)c->w << 6) + b) * FWD_WORD;
  if (a >= c->hi) {
    c->bits = 0;
    c->w = c->wend;
    return 0;
  }
  return a;
}

/* Rewrite the references of every live object starting in [lo, hi).  A
 * trace callback sees its object where it lies, with the slots it visited
 * already forwarded (it must not follow them: the referents have not moved
 * yet, as in page_build, where they are in from-space). */
static inline __attribute__((always_inline)) void update_piece_with(const fwd_tables *t,
                                                                    const fh_type_registry *types,
                                                                    uintptr_t lo, uintptr_t hi,
                                                                    int hw) {
  uint32_t last_type = FH_FILLER_TYPE;
  const fh_type_info *ti = NULL;
  update_ring r = {.t = t};
  /* Each object's header is a load whose address depends on the last
   * one's (its size): one cache miss after another where live objects are
   * spread out.  A second cursor, stepping from start bit to start bit,
   * fetches the headers UPDATE_AHEAD objects ahead so the misses overlap
   * (fhbench pins, mark_compact with 1% pinned, whose live objects span
   * 16 MiB against 9.4 unpinned: the moving space's update, median of 66
   * cycles, 3.1-3.7 -> 2.6-3.0 ms, unpinned 2.0 -> 2.05-2.15). */
  start_cursor ahead;
  start_cursor_init(&ahead, t, lo, hi);
  for (unsigned k = 0; k < UPDATE_AHEAD; k++) {
    uintptr_t p = start_cursor_next(&ahead);
    if (p) __builtin_prefetch((const void *)p);
  }
  for (uintptr_t a = fwd_next_set(t, &t->mark, lo, hi); a;) {
    uintptr_t p = start_cursor_next(&ahead);
    if (p) __builtin_prefetch((const void *)p);
    uint64_t hd = load_hd(a);
    if (hdr_type(hd) != last_type) {
      last_type = hdr_type(hd);
      ti = types_get(types, last_type);
      if (ti && !ti->nrefs && !(ti->flags & FH_TYPE_REF_ARRAY) && !ti->trace) ti = NULL;
    }
    if (ti) {
      char *obj = (char *)(a + FH_HEADER_BYTES);
      if (ti->nrefs) {
        for (uint32_t i = 0; i < ti->nrefs; i++)
          ring_push(&r, (void **)(obj + ti->ref_offsets[i]), hw);
      } else if (ti->flags & FH_TYPE_REF_ARRAY) {
        size_t n = hdr_payload(hd) / sizeof(void *);
        for (size_t i = 0; i < n; i++) ring_push(&r, (void **)obj + i, hw);
      } else {
        ti->trace(obj, hdr_payload(hd), slide_update_slot, (void *)t);
      }
    }
    a = fwd_next_set(t, &t->mark, a + obj_bytes(hd), hi);
  }
  for (; r.n; r.n--, r.head = (r.head + 1) % UPDATE_RING) ring_fix(t, r.slot[r.head], hw);
}

/* As page_compact.c: the build has no -mpopcnt, so the loop also exists
 * compiled for POPCNT, picked at run time. */
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static void update_piece_popcnt(const fwd_tables *t,
                                                                  const fh_type_registry *types,
                                                                  uintptr_t lo, uintptr_t hi) {
  update_piece_with(t, types, lo, hi, 1);
}
static void update_piece(const fwd_tables *t, const fh_type_registry *types, uintptr_t lo,
                         uintptr_t hi) {
  if (__builtin_cpu_supports("popcnt"))
    update_piece_popcnt(t, types, lo, hi);
  else
    update_piece_with(t, types, lo, hi, 0);
}
#else
static void update_piece(const fwd_tables *t, const fh_type_registry *types, uintptr_t lo,
                         uintptr_t hi) {
  update_piece_with(t, types, lo, hi, 0);
}
#endif

/* A reference array outside the moving space (mc_update_outside): its
 * slots through the ring, in ARRAY_PIECE pieces shared with helpers when
 * it is large (fhbench pause's 30 MB table of 3.7M references took 50 ms
 * of the flip pause, one cache miss at a time, before this). */
#define ARRAY_PIECE ((size_t)64 << 10) /* slots */
#define ARRAY_PER_HELPER ((size_t)1 << 20)

static inline __attribute__((always_inline)) void update_slots_with(const fwd_tables *t,
                                                                    void **slots, size_t n,
                                                                    int hw) {
  update_ring r = {.t = t};
  for (size_t i = 0; i < n; i++) ring_push(&r, slots + i, hw);
  for (; r.n; r.n--, r.head = (r.head + 1) % UPDATE_RING) ring_fix(t, r.slot[r.head], hw);
}
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static void update_slots_popcnt(const fwd_tables *t,
                                                                  void **slots, size_t n) {
  update_slots_with(t, slots, n, 1);
}
static void update_slots(const fwd_tables *t, void **slots, size_t n) {
  if (__builtin_cpu_supports("popcnt"))
    update_slots_popcnt(t, slots, n);
  else
    update_slots_with(t, slots, n, 0);
}
#else
static void update_slots(const fwd_tables *t, void **slots, size_t n) {
  update_slots_with(t, slots, n, 0);
}
#endif

void mc_forward_slots(const fwd_tables *t, void **slots, size_t n) { update_slots(t, slots, n); }

typedef struct array_job {
  const fwd_tables *t;
  void **slots;
  size_t n;
  _Atomic size_t next;
} array_job;

static void *array_main(void *arg) {
  array_job *j = arg;
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&j->next, ARRAY_PIECE, memory_order_relaxed);
    if (i >= j->n) break;
    update_slots(j->t, j->slots + i, j->n - i < ARRAY_PIECE ? j->n - i : ARRAY_PIECE);
  }
  return NULL;
}

void mc_update_array(mc_state *m, void **slots, size_t n) {
  array_job j = {.t = &m->t, .slots = slots, .n = n};
  atomic_init(&j.next, 0);
  gc_task helpers[MAX_UPDATE_HELPERS];
  unsigned nh = 0, threads = m->h->opt.gc_threads;
  while (nh + 1 < threads && nh < MAX_UPDATE_HELPERS && n > (nh + 1) * ARRAY_PER_HELPER &&
         gc_pool_start(&m->h->pool, &helpers[nh], "fh-update", array_main, &j) == 0)
    nh++;
  array_main(&j);
  for (unsigned i = 0; i < nh; i++) gc_pool_join(&m->h->pool, helpers[i]);
}

typedef struct update_job {
  mc_state *m;
  uintptr_t end;
  _Atomic uintptr_t next;
} update_job;

static void *update_main(void *arg) {
  update_job *j = arg;
  mc_state *m = j->m;
  for (;;) {
    uintptr_t lo = atomic_fetch_add_explicit(&j->next, UPDATE_PIECE, memory_order_relaxed);
    if (lo >= j->end) break;
    uintptr_t hi = lo + UPDATE_PIECE < j->end ? lo + UPDATE_PIECE : j->end;
    update_piece(&m->t, &m->h->types, lo, hi);
  }
  return NULL;
}

/* A piece owns the objects that start in it, so the pieces split no
 * object between two threads. */
static unsigned update_inside(mc_state *m, unsigned threads, uintptr_t floor) {
  /* From the floor: a young cycle's old generation (below ylo) is
   * updated on its dirty cards only (mc_gen.c), and so, past it, is a
   * prefix that stays in place (mc_update_floor). */
  update_job j = {.m = m, .end = m->t.old_top};
  atomic_init(&j.next, floor);
  /* Helpers by the live bytes, whose slots are the work (the bitmap walk
   * over the dead ones is cheap): a young cycle's 16 MiB of mostly dead
   * young generation is not worth a thread's start and join. */
  size_t used = m->t.live_bytes;
  if (floor > m->t.lo) used = m->t.new_top > floor ? m->t.new_top - floor : 0; /* identity below */
  gc_task helpers[MAX_UPDATE_HELPERS];
  unsigned nh = 0;
  while (nh + 1 < threads && nh < MAX_UPDATE_HELPERS && used > (nh + 1) * UPDATE_PER_HELPER &&
         gc_pool_start(&m->h->pool, &helpers[nh], "fh-update", update_main, &j) == 0)
    nh++;
  update_main(&j);
  for (unsigned i = 0; i < nh; i++) gc_pool_join(&m->h->pool, helpers[i]);
  return nh + 1;
}

/* First dead word at or after live word a, below hi. */
static uintptr_t live_run_end(const fwd_tables *t, uintptr_t a, uintptr_t hi) {
  size_t i = (a - t->begin) >> 3, last = (hi - t->begin) >> 3;
  size_t w = i >> 6;
  uint64_t word = ~atomic_load_explicit(&t->live.words[w], memory_order_relaxed) &
                  (~(uint64_t)0 << (i & 63));
  while (!word) {
    if (((++w) << 6) >= last) return hi;
    word = ~atomic_load_explicit(&t->live.words[w], memory_order_relaxed);
  }
  size_t bit = (w << 6) + (size_t)__builtin_ctzll(word);
  return bit < last ? t->begin + (bit << 3) : hi;
}

/* Runs of consecutive live words in [lo, hi) (no grower, no pinned range):
 * one memmove each. */
static void slide_runs(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t a = fwd_next_set(t, &t->live, lo, hi); a;) {
    uintptr_t e = live_run_end(t, a, hi), d = fwd_start(t, a);
    if (d != a) memmove((void *)d, (const void *)a, e - a);
    a = fwd_next_set(t, &t->live, e, hi);
  }
}

/* Move the object at a (header hd) to d; a grower gets the HASH_MOVED
 * header and, after its old end, the hash word its old address keyed. */
static void slide_object(const fwd_tables *t, uintptr_t a, uintptr_t d, uint64_t hd) {
  size_t n = obj_bytes(hd);
  if (fwd_grows_at(t, a)) {
    uint64_t key = idhash_make_key(a + FH_HEADER_BYTES, hdr_salt(hd));
    memmove((void *)d, (const void *)a, n);
    *(uint64_t *)d = hd | FH_HDR_HASH_MOVED;
    *(uint64_t *)(d + n) = key;
  } else if (d != a) {
    memmove((void *)d, (const void *)a, n);
  }
}

/* Object by object, with waiting chains (see the top of the file). */
static void slide_objects(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  uintptr_t a = bitmap_next_set(&t->mark, lo, hi);
  while (a) {
    uint64_t hd = load_hd(a);
    uintptr_t d = fwd_start(t, a);
    uintptr_t nx = bitmap_next_set(&t->mark, a + obj_bytes(hd), hi);
    if (!nx || d + fwd_moved_bytes(t, a, hd) <= nx) {
      slide_object(t, a, d, hd);
      a = nx;
      continue;
    }
    uintptr_t first = a;
    do { /* find the chain's last object: nothing has moved yet */
      a = nx;
      hd = load_hd(a);
      d = fwd_start(t, a);
      nx = bitmap_next_set(&t->mark, a + obj_bytes(hd), hi);
    } while (nx && d + fwd_moved_bytes(t, a, hd) > nx);
    for (uintptr_t x = a;; x = bitmap_prev_set(&t->mark, first, x - FWD_WORD)) {
      slide_object(t, x, fwd_start(t, x), load_hd(x));
      if (x == first) break;
    }
    a = nx;
  }
}

static void slide_segment(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  if (lo >= hi) return;
  /* Growers are rare (hashed since the last move): only their stretch of
   * the space goes object by object; below the first one, runs. */
  uintptr_t g = t->ngrows ? bitmap_next_set(&t->grows, lo, hi) : 0;
  if (!g) {
    slide_runs(t, lo, hi);
    return;
  }
  slide_runs(t, lo, g);
  slide_objects(t, g, hi);
}

/* The gaps pinned ranges leave below them become fillers (one per GiB),
 * once everything has slid: their bytes held sources until then. */
static void write_gap_fillers(const fwd_tables *t, int poison) {
  for (size_t r = 0; r < t->nranges; r++)
    for (uintptr_t a = t->ranges[r].gap_lo, lo = t->ranges[r].lo, e; a < lo; a = e) {
      e = fwd_gap_filler_end(t, a, lo);
      obj_write_filler(a, e - a);
      /* verify=1: a stale pointer into the gap reads poison, as it read
       * zeroes after a build. */
      if (poison && e - a > FH_HEADER_BYTES) heap_poison(a + FH_HEADER_BYTES, e);
    }
}

/* Where a cycle's walk over its live objects may start.  When the prefix
 * that keeps its addresses (dense_end, dead wood included) covers every
 * live object below the generations' young boundary, every object that
 * moves is young: allocated since the last collection, so every reference
 * to it from an older object was stored since then, through fh_write_ref,
 * which dirtied the card of that object's payload pointer (the collected
 * part's cards are cleared only at the end of each cycle).  So the older
 * objects on clean cards hold no reference that changes: only those on
 * dirty cards need the update, and the walk starts at the boundary.
 * binary-trees' young cycle that promotes its 128 MiB long-lived tree,
 * with a few hundred young bytes moving above it, rewrote every reference
 * in the tree (16-20 ms) for them.  The boundary is the mid end for a
 * young cycle; for a full one with the generations known, keep_from (the
 * same mid end, taken before the full cycle reset it): whippet-quads'
 * full cycle over its 13.3 MiB tree, dense but for a few KiB of young
 * objects above it, had to update every reference of the tree (and so
 * flipped: the update was more than a flip's pause).  Not for a
 * concurrently marked cycle, nor with pinned ranges, growers or the holes
 * pins left in mid (mid_gaps): t->lo, every live object. */
uintptr_t mc_update_floor(const mc_state *m) {
  const fwd_tables *t = &m->t;
  uintptr_t mid_end = t->young ? m->gen.promote_below : m->cmarked ? 0 : m->gen.keep_from;
  /* Holes the last cycle left in mid (conservative roots; unknown when
   * their record failed) may hold young objects, which would then not be
   * walked. */
  if (!t->move_bytes || t->nranges || t->ngrows || m->gen.nmid_gaps || !m->gen.mid_gaps_ok ||
      mid_end <= t->lo)
    return t->lo;
  uintptr_t d = t->dense_end < t->old_top ? t->dense_end : t->old_top;
  if (d >= mid_end) return mid_end;
  /* The prefix ends inside mid: fine if nothing live follows there. */
  return d > t->lo && !bitmap_next_set(&t->mark, d, mid_end) ? d : t->lo;
}

size_t mc_slide_walk_bytes(const mc_state *m, size_t young_kept) {
  const fwd_tables *t = &m->t;
  uintptr_t floor = mc_update_floor(m);
  size_t n = !t->move_bytes ? 0
             : floor > t->lo ? fwd_moved_size(t, floor, t->old_top)
                             : t->live_bytes;
  return young_kept ? n + (t->new_top - young_kept - t->begin) : n;
}

typedef struct prefix_cards {
  mc_state *m;
  uintptr_t lo, hi;
} prefix_cards;

/* The objects whose payload pointer lies on the dirty cards [cb, ce):
 * those starting a header's width before. */
static void update_prefix_cards(uintptr_t cb, uintptr_t ce, void *ctx) {
  prefix_cards *p = ctx;
  uintptr_t lo = cb - FH_HEADER_BYTES, hi = ce - FH_HEADER_BYTES;
  if (lo < p->lo) lo = p->lo;
  if (hi > p->hi) hi = p->hi;
  if (lo < hi) update_piece(&p->m->t, &p->m->h->types, lo, hi);
}

void mc_slide_all(mc_state *m, unsigned threads) {
  fwd_tables *t = &m->t;
  uint64_t t0 = heap_now_ns();
  /* Before mc_update_outside, which clears the collected part's cards. */
  uintptr_t floor = mc_update_floor(m);
  m->update_by_cards = floor - t->lo;
  if (floor > t->lo) {
    prefix_cards p = {m, t->lo, floor};
    cards_visit_dirty(m->h, t->lo, floor, update_prefix_cards, &p);
  }
  mc_update_outside(m);
  uint64_t tu = heap_now_ns(), cu = mc_thread_cpu_ns();
  /* When no live word changes address (a structure built since the last
   * cycle with nothing dead among or below it: binary-trees' stretch and
   * long-lived trees, whose young cycles found 112 MiB live and nothing
   * to free), every reference already holds its referent's address: the
   * pass over the live objects would rewrite nothing (24.7 of such a
   * cycle's 77 ms).  References from outside were seen above, for the
   * cards they keep. */
  int identity = t->move_bytes == 0;
  m->build_threads = identity ? 1 : update_inside(m, threads, floor);
  uint64_t t1 = heap_now_ns(), c1 = mc_thread_cpu_ns();
  m->slide_update_ns = identity ? 0 : t1 - tu;
  /* What the policy learns the update's cost per live byte from: not a
   * walk that left the mid generation to its cards (its time is not that
   * of all the live bytes: binary-trees' 0.3 ms for 128 MiB taught the
   * policy to slide full cycles it should flip). */
  m->slide_update_cpu_ns = identity || floor > t->lo ? 0 : c1 - cu;
  m->slide_move_bytes = t->move_bytes;
  uintptr_t lo = t->lo; /* old words between lo and ylo forward to themselves */
  for (size_t r = 0; r < t->nranges; r++) {
    slide_segment(t, lo, t->ranges[r].lo);
    lo = t->ranges[r].hi; /* a range stays where it is */
  }
  slide_segment(t, lo, t->old_top);
  write_gap_fillers(t, m->h->opt.verify);
  uintptr_t end = align_up(t->new_top, FWD_PAGE);
  if (t->new_top < end) obj_write_filler(t->new_top, end - t->new_top);
  m->update_ns = t1 - t0;
  m->build_ns = heap_now_ns() - t1;
  m->slide_move_cpu_ns = mc_thread_cpu_ns() - c1;
  m->build_cpu_ns = 0;
}
