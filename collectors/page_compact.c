/* Building one destination page of a sliding compaction.
 *
 * page_build is a pure function of the from-space (the moving space's old
 * pages, moved aside), the forwarding tables and the type registry (native
 * memory), writing only `out`.  It therefore runs anywhere: on GC workers,
 * inside the pause, on the fault-handler thread, and in a mutator's SIGBUS
 * handler, where touching a missing registered page would be a nested fault
 * and kill the process.  It takes no lock and allocates nothing.
 *
 * Two passes:
 *   1. copy: the page holds live words number [512 * page, ...) of the
 *      space in address order, so the runs of set bits in the live-words
 *      bitmap, from the word that lands on the page's first byte, are
 *      exactly what to copy; no object header is read, and the loads of
 *      consecutive runs do not wait for each other (page_copy.c);
 *   2. references: walk the objects of the page in its new copy (their
 *      headers are in `out` now, in cache; only an object starting on an
 *      earlier page has its header read in from-space) and rewrite every
 *      reference slot inside the page through the forwarding tables.  The
 *      first object may have started on an earlier page and the last may
 *      run past this one: only their slots inside the page are written, so
 *      no page ever needs another destination page.
 * The last page is completed with a filler object, so the space stays
 * walkable up to the page-aligned new top. */
#include "collectors/mc.h"
#include "collectors/page_copy.h"

#include <string.h>

#include "heap/identity_hash.h"
#include "heap/object.h"

/* Slots whose value points into the old moving space are first only noted,
 * one bit per word of the page, while the forwarding entry of their
 * referent's chunk (a cache miss when referents are far apart) is
 * prefetched; once the whole page has been walked they are rewritten in
 * address order.  So all of a page's misses are in flight together
 * instead of a few at a time, and a slot visited twice is still forwarded
 * once.  Slots holding anything else already hold their final value: pass 1
 * copied it. */
#define PAGE_WORDS (FWD_PAGE / FWD_WORD)

typedef struct fix_ctx {
  const fwd_tables *t;
  uintptr_t obj_from, obj_new; /* the object's payload, in from-space and after */
  uintptr_t lo, hi;            /* the part of the object's new range in this page */
  uintptr_t page;
  uint8_t *out;
  uint64_t pending[PAGE_WORDS / 64]; /* words of out to forward */
} fix_ctx;

/* Note the slot at new address ns (inside the page) holding value v. */
static inline void fix_queue(fix_ctx *c, uintptr_t ns, uintptr_t v) {
  const fwd_tables *t = c->t;
  uintptr_t a = slot_target(t->tags, v);
  if (a - t->begin - FWD_WORD >= t->old_top - t->begin) return;
  __builtin_prefetch(&t->chunks[(a - FWD_WORD - t->begin) >> FWD_CHUNK_SHIFT]);
  size_t i = (ns - c->page) / FWD_WORD;
  c->pending[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Rewrite the noted slots.  Each holds a payload pointer into the old
 * range (fix_queue checked), forwarded as fwd_ref does.  `hw`: count bits
 * with the POPCNT instruction (a constant once inlined). */
static inline __attribute__((always_inline)) void fix_pending_with(fix_ctx *c, int hw) {
  const fwd_tables *t = c->t;
  for (size_t k = 0; k < PAGE_WORDS / 64; k++)
    for (uint64_t bits = c->pending[k]; bits; bits &= bits - 1) {
      uint8_t *slot = c->out + (k * 64 + (size_t)__builtin_ctzll(bits)) * FWD_WORD;
      uintptr_t raw;
      memcpy(&raw, slot, sizeof raw);
      uintptr_t v = raw & ~t->tags.ptr; /* fix_queue noted no immediate */
      size_t w = (v - FWD_WORD - t->begin) / FWD_WORD;
      const fwd_chunk *e = &t->chunks[w >> 6];
      uint64_t below = e->live & (((uint64_t)1 << (w & 63)) - 1);
      size_t n = hw ? (size_t)__builtin_popcountll(below) : fwd_popcount(below);
      v = t->begin + (uintptr_t)(e->dest & FWD_DEST_MASK) + FWD_WORD * n + FWD_WORD;
      if (__builtin_expect((e->dest & FWD_DEST_GROWS) != 0, 0)) v += fwd_grown_below(t, w);
      v = slot_retag(t->tags, raw, v);
      memcpy(slot, &v, sizeof v);
    }
}

/* Without -mpopcnt the build counts bits in a dozen instructions, which
 * were ~8% of a page on the pause layout (a popcount per slot); x86-64
 * CPUs without POPCNT predate 2008, so one copy of this loop is compiled
 * for it and picked at run time (__builtin_cpu_supports reads a variable
 * that libgcc's constructor filled: fine in a signal handler). */
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static void fix_pending_popcnt(fix_ctx *c) {
  fix_pending_with(c, 1);
}
static void fix_pending(fix_ctx *c) {
  if (__builtin_cpu_supports("popcnt"))
    fix_pending_popcnt(c);
  else
    fix_pending_with(c, 0);
}
#else
static void fix_pending(fix_ctx *c) { fix_pending_with(c, 0); }
#endif

/* A slot given by its from-space address (trace callbacks): kept if its
 * new address lies inside the page. */
static void fix_slot(void **slot, void *ctx) {
  fix_ctx *c = ctx;
  uintptr_t ns = c->obj_new + ((uintptr_t)slot - c->obj_from);
  if (ns < c->lo || ns + sizeof(void *) > c->hi) return;
  uintptr_t a;
  memcpy(&a, slot, sizeof a); /* the from-space copy: never a missing page */
  fix_queue(c, ns, a);
}

/* A reference array spanning many pages: only the slots inside this page,
 * or building each of its pages would cost the whole array. */
static void visit_array_part(fix_ctx *c, size_t payload) {
  uintptr_t first = c->lo > c->obj_new ? c->lo : c->obj_new;
  uintptr_t end = c->obj_new + payload / sizeof(void *) * sizeof(void *);
  if (end > c->hi) end = c->hi;
  for (uintptr_t ns = first; ns + sizeof(void *) <= end; ns += sizeof(void *)) {
    uintptr_t a;
    memcpy(&a, c->out + (ns - c->page), sizeof a);
    fix_queue(c, ns, a);
  }
}

static int has_refs(const fh_type_info *ti) {
  return ti && (ti->nrefs || (ti->flags & FH_TYPE_REF_ARRAY) || ti->trace);
}

/* Old address of the object whose copy starts at new address nd, on a page
 * holding growers (its live words are not consecutive from a0 there):
 * walk the objects from the page's first one.  Such pages are rare. */
static uintptr_t old_of_slow(const page_source *ps, uintptr_t first, uintptr_t first_new,
                             uintptr_t nd) {
  const fwd_tables *t = ps->t;
  uintptr_t a = first, n = first_new;
  while (n < nd) {
    uint64_t hd;
    memcpy(&hd, (const void *)(a + ps->from_delta), sizeof hd);
    n += fwd_moved_bytes(t, a, hd);
    a = bitmap_next_set(&t->mark, a + FWD_WORD, t->old_top);
  }
  return a;
}

/* Pass 2 over the objects in [first_new, fill_end), one live run of the
 * page starting at d0 (dbeg, or a pinned range's start): the first one's
 * header is read at its old address `first` in from-space when it starts
 * before the page, every other one's in `out`.  Objects are contiguous in
 * a run, so their sizes lead from one to the next: no bitmap search. */
static void fix_run_refs(const page_source *ps, uint8_t *out, uintptr_t dbeg, uintptr_t d0,
                         uintptr_t first, uintptr_t first_new, uintptr_t fill_end, int slow) {
  uintptr_t a0 = first + (d0 - first_new); /* old address of the word at d0 */
  fix_ctx fc = {.t = ps->t, .page = dbeg, .out = out};
  uintptr_t dend = dbeg + FWD_PAGE;
  uintptr_t nd = first_new;
  uint32_t last_type = FH_FILLER_TYPE;
  const fh_type_info *ti = NULL;
  while (nd < fill_end) {
    uint64_t hd;
    size_t n;
    if (nd >= dbeg) {
      memcpy(&hd, out + (nd - dbeg), sizeof hd);
      n = obj_bytes(hd); /* a grower's copy is HASH_MOVED already */
    } else {
      memcpy(&hd, (const void *)(first + ps->from_delta), sizeof hd);
      n = fwd_moved_bytes(ps->t, first, hd); /* growers: the grows bitmap */
    }
    /* Pages hold long runs of one type: look the type up once per run. */
    if (hdr_type(hd) != last_type) {
      last_type = hdr_type(hd);
      ti = types_get(ps->types, last_type);
      if (!has_refs(ti)) ti = NULL;
    }
    if (ti) {
      uintptr_t obj_new = nd + FH_HEADER_BYTES;
      if (ti->nrefs) {
        /* Slot values are read in out, where pass 1 put them. */
        uint8_t *o = out + (obj_new - dbeg);
        if (nd >= dbeg && nd + n <= dend) { /* wholly on the page: every slot */
          for (uint32_t i = 0; i < ti->nrefs; i++) {
            uintptr_t a;
            memcpy(&a, o + ti->ref_offsets[i], sizeof a);
            fix_queue(&fc, obj_new + ti->ref_offsets[i], a);
          }
        } else { /* the first or last object: only its slots on the page */
          for (uint32_t i = 0; i < ti->nrefs; i++) {
            uintptr_t ns = obj_new + ti->ref_offsets[i], a;
            if (ns < dbeg || ns + sizeof a > dend) continue;
            memcpy(&a, o + ti->ref_offsets[i], sizeof a);
            fix_queue(&fc, ns, a);
          }
        }
      } else {
        fc.obj_new = obj_new;
        fc.lo = nd > dbeg ? nd : dbeg;
        fc.hi = nd + n < dend ? nd + n : dend;
        if (ti->flags & FH_TYPE_REF_ARRAY) {
          visit_array_part(&fc, hdr_payload(hd));
        } else {
          /* The callback reads the whole object: give it the from-space
           * copy, found as the (nd - dbeg) / 8-th live word from a0. */
          uintptr_t old = nd < d0 ? first
                          : slow ? old_of_slow(ps, first, first_new, nd)
                                 : page_old_word(ps->t, a0, (nd - d0) / FWD_WORD);
          fc.obj_from = old + ps->from_delta + FH_HEADER_BYTES;
          ti->trace((void *)fc.obj_from, hdr_payload(hd), fix_slot, &fc);
        }
      }
    }
    nd += n;
  }
  fix_pending(&fc);
}

static void fix_page_refs(const page_source *ps, uint8_t *out, uintptr_t dbeg, uintptr_t first,
                          uintptr_t first_new, size_t filled, int slow) {
  fix_run_refs(ps, out, dbeg, dbeg, first, first_new, dbeg + filled, slow);
}

/* Pass 1 on a page that holds (part of) a grower: copy object by object
 * from `first` (old start; its copy starts at first_new), each one's part
 * inside [dbeg, dbeg + filled); a grower's copy gets the HASH_MOVED header
 * and, after its end, its hash word (key from its old address and salt).
 * Reads only live words and headers of objects landing on the page, as the
 * fast pass does (from_ledger.h). */
static void copy_objects(const page_source *ps, uintptr_t dbeg, uintptr_t first,
                         uintptr_t first_new, uint8_t *out, size_t filled) {
  const fwd_tables *t = ps->t;
  uintptr_t dend = dbeg + filled, a = first, nd = first_new;
  while (nd < dend && a) {
    uint64_t hd;
    memcpy(&hd, (const void *)(a + ps->from_delta), sizeof hd);
    size_t have = obj_bytes(hd); /* what from-space holds */
    uintptr_t lo = nd > dbeg ? nd : dbeg, hi = nd + have < dend ? nd + have : dend;
    if (lo < hi) memcpy(out + (lo - dbeg), (const void *)(a + ps->from_delta + (lo - nd)), hi - lo);
    if (fwd_grows_at(t, a)) {
      if (nd >= dbeg) {
        uint64_t moved = hd | FH_HDR_HASH_MOVED;
        memcpy(out + (nd - dbeg), &moved, sizeof moved);
      }
      uintptr_t w = nd + have;
      if (w >= dbeg && w < dend) {
        uint64_t key = idhash_make_key(a + FH_HEADER_BYTES, hdr_salt(hd));
        memcpy(out + (w - dbeg), &key, sizeof key);
      }
      have += FH_HASH_WORD_BYTES;
    }
    nd += have;
    a = bitmap_next_set(&t->mark, a + FWD_WORD, t->old_top);
  }
}

/* A page of a cycle with pinned ranges (forwarding.h): live runs and gaps.
 * A run is copied from its first live word on (the page's first byte's,
 * or a range's start, which is its own old address) and its references
 * fixed on their own; a gap gets its filler's header where the filler
 * starts, zeroes elsewhere. */
static size_t page_build_pinned(const page_source *ps, size_t page, uint8_t *out) {
  const fwd_tables *t = ps->t;
  uintptr_t dbeg = t->begin + page * FWD_PAGE, dend = dbeg + FWD_PAGE;
  uintptr_t first = t->page_first[page], first_new = first ? fwd_start(t, first) : 0;
  int slow = fwd_page_slow(t, page);
  size_t bytes = 0;
  memset(out, 0, FWD_PAGE);
  uintptr_t d = dbeg;
  int in_gap = !first;
  while (d < dend) {
    if (in_gap) {
      size_t i = fwd_range_at(t, d); /* the range above the gap */
      uintptr_t lo = t->ranges[i].lo;
      if (d == t->ranges[i].gap_lo || (d - t->begin) % FWD_GAP_FILLER == 0)
        obj_write_filler((uintptr_t)out + (d - dbeg), fwd_gap_filler_end(t, d, lo) - d);
      if (lo >= dend) break;
      d = first = first_new = lo; /* a range: its own address */
      in_gap = 0;
      continue;
    }
    uintptr_t gap_end, end = fwd_run_end(t, d, &gap_end);
    uintptr_t e = end < dend ? end : dend;
    if (__builtin_expect(slow, 0))
      copy_objects(ps, dbeg, first, first_new, out, e - dbeg);
    else
      page_copy_live(t, ps->from_delta, first + (d - first_new), out + (d - dbeg), e - d);
    fix_run_refs(ps, out, dbeg, d, first, first_new, e, slow);
    bytes += e - d;
    if (e == dend) break;
    if (!gap_end) { /* the new top: the rest is one filler */
      obj_write_filler((uintptr_t)out + (e - dbeg), dend - e);
      break;
    }
    d = e;
    in_gap = 1;
  }
  return bytes;
}

size_t page_build(const page_source *ps, size_t page, uint8_t *out) {
  const fwd_tables *t = ps->t;
  uintptr_t dbeg = t->begin + page * FWD_PAGE;
  if (t->nranges && page < t->npages) return page_build_pinned(ps, page, out);
  uintptr_t first = page < t->npages ? t->page_first[page] : 0;
  if (!first) {
    memset(out, 0, FWD_PAGE);
    return 0;
  }
  uintptr_t first_new = fwd_start(t, first);
  size_t filled = t->new_top - dbeg < FWD_PAGE ? t->new_top - dbeg : FWD_PAGE;
  int slow = fwd_page_slow(t, page);
  if (__builtin_expect(slow, 0)) {
    copy_objects(ps, dbeg, first, first_new, out, filled);
  } else {
    /* The first object's words are contiguous in the old space too: the one
     * landing on dbeg is as far into it as dbeg is into its new copy. */
    page_copy_live(t, ps->from_delta, first + (dbeg - first_new), out, filled);
  }
  if (filled < FWD_PAGE) {
    /* Only the last page ends early: the rest is one filler object. */
    memset(out + filled, 0, FWD_PAGE - filled);
    obj_write_filler((uintptr_t)out + filled, FWD_PAGE - filled);
  }
  fix_page_refs(ps, out, dbeg, first, first_new, filled, slow);
  return filled;
}

void page_fix_in_place(const page_source *ps, size_t page) {
  const fwd_tables *t = ps->t;
  uintptr_t dbeg = t->begin + page * FWD_PAGE;
  /* Identity page: the from-space page already holds the destination's
   * bytes; only its references change, and they are written in place. */
  fix_page_refs(ps, (uint8_t *)(dbeg + ps->from_delta), dbeg, t->page_first[page],
                t->page_first[page], FWD_PAGE, 0);
}
