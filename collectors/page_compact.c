/* Building one destination page of a sliding compaction.
 *
 * page_build is a pure function of the from-space (the moving space's old
 * pages, moved aside), the forwarding tables and the type registry (native
 * memory), writing only `out`.  It therefore runs anywhere: on GC workers,
 * inside the pause, on the fault-handler thread, and in a mutator's SIGBUS
 * handler, where touching a missing registered page would be a nested fault
 * and kill the process.  It takes no lock and allocates nothing.
 *
 * Two passes over the live objects that land on the page, in address order
 * from page_first[page]:
 *   1. copy the part of each object that falls inside the page, merging
 *      objects that are contiguous in from-space into one memcpy;
 *   2. rewrite every reference slot inside the page through the forwarding
 *      tables.  The first object may have started on an earlier page and the
 *      last may run past this one: only their slots inside the page are
 *      written, so no page ever needs another destination page.
 * The last page is completed with a filler object, so the space stays
 * walkable up to the page-aligned new top. */
#include "collectors/mc.h"

#include <string.h>

#include "heap/object.h"

/* Slots whose value points into the old moving space wait in a small ring
 * while the forwarding data of their referent (the live-words word and the
 * chunk's destination, two cache misses when referents are far apart) is
 * prefetched; the ring is drained oldest first, so the misses of several
 * slots overlap instead of being paid one after the other.  Slots holding
 * anything else already hold their final value: pass 1 copied it. */
#define FIX_RING 16

typedef struct fix_ctx {
  const fwd_tables *t;
  uintptr_t obj_from, obj_new; /* the object's payload, in from-space and after */
  uintptr_t lo, hi;            /* the part of the object's new range in this page */
  uintptr_t page;
  uint8_t *out;
  unsigned head, count;
  struct pending {
    uint32_t out_off;
    uintptr_t value;
  } ring[FIX_RING];
} fix_ctx;

static void fix_one(fix_ctx *c) {
  struct pending *p = &c->ring[c->head];
  c->head = (c->head + 1) % FIX_RING;
  c->count--;
  uintptr_t v = (uintptr_t)fwd_ref(c->t, (void *)p->value);
  memcpy(c->out + p->out_off, &v, sizeof v);
}

static void fix_slot(void **slot, void *ctx) {
  fix_ctx *c = ctx;
  uintptr_t ns = c->obj_new + ((uintptr_t)slot - c->obj_from);
  if (ns < c->lo || ns + sizeof(void *) > c->hi) return;
  uintptr_t a;
  memcpy(&a, slot, sizeof a); /* the from-space copy: never a missing page */
  const fwd_tables *t = c->t;
  if (a - t->begin - FWD_WORD >= t->old_top - t->begin) return;
  size_t w = (a - FWD_WORD - t->begin) >> 9;
  __builtin_prefetch((const void *)&t->live.words[w]);
  __builtin_prefetch(&t->chunk_dest[w]);
  if (c->count == FIX_RING) fix_one(c);
  c->ring[(c->head + c->count++) % FIX_RING] = (struct pending){(uint32_t)(ns - c->page), a};
}

/* A reference array spanning many pages: only the slots inside this page,
 * or building each of its pages would cost the whole array. */
static void visit_array_part(fix_ctx *c, size_t payload) {
  uintptr_t first = c->lo > c->obj_new ? c->lo : c->obj_new;
  uintptr_t end = c->obj_new + payload / sizeof(void *) * sizeof(void *);
  if (end > c->hi) end = c->hi;
  for (uintptr_t ns = first; ns + sizeof(void *) <= end; ns += sizeof(void *))
    fix_slot((void **)(c->obj_from + (ns - c->obj_new)), c);
}

static int has_refs(const fh_type_info *ti) {
  return ti && (ti->nrefs || (ti->flags & FH_TYPE_REF_ARRAY) || ti->trace);
}

static void fix_page_refs(const page_source *ps, fix_ctx *c, uintptr_t first,
                          uintptr_t first_new);

size_t page_build(const page_source *ps, size_t page, uint8_t *out) {
  const fwd_tables *t = ps->t;
  uintptr_t dbeg = t->begin + page * FWD_PAGE, dend = dbeg + FWD_PAGE;
  uintptr_t first = page < t->npages ? t->page_first[page] : 0;
  if (!first) {
    memset(out, 0, FWD_PAGE);
    return 0;
  }
  uintptr_t first_new = fwd_start(t, first);

  /* Pass 1: copy. */
  uintptr_t s = first, nd = first_new;
  uintptr_t run_src = 0, run_dst = 0;
  size_t run_len = 0;
  while (s && nd < dend) {
    uintptr_t from = s + ps->from_delta;
    size_t n = obj_total_bytes(hdr_payload(*(const uint64_t *)from));
    uintptr_t lo = nd > dbeg ? nd : dbeg, hi = nd + n < dend ? nd + n : dend;
    uintptr_t src = from + (lo - nd);
    if (run_len && run_src + run_len == src) {
      run_len += hi - lo;
    } else {
      if (run_len) memcpy(out + (run_dst - dbeg), (const void *)run_src, run_len);
      run_src = src, run_dst = lo, run_len = hi - lo;
    }
    nd += n;
    s = nd < dend ? bitmap_next_set(&t->mark, s + n, t->old_top) : 0;
  }
  if (run_len) memcpy(out + (run_dst - dbeg), (const void *)run_src, run_len);
  uintptr_t filled = nd < dend ? nd : dend;
  if (filled < dend) {
    /* Only the last page ends early: the rest is one filler object. */
    memset(out + (filled - dbeg), 0, dend - filled);
    obj_write_filler((uintptr_t)out + (filled - dbeg), dend - filled);
  }

  /* Pass 2: references. */
  fix_ctx fc = {.t = t, .page = dbeg, .out = out};
  fix_page_refs(ps, &fc, first, first_new);
  return filled - dbeg;
}

static void fix_page_refs(const page_source *ps, fix_ctx *c, uintptr_t first,
                          uintptr_t first_new) {
  const fwd_tables *t = ps->t;
  fix_ctx fc = *c;
  uintptr_t dbeg = fc.page, dend = dbeg + FWD_PAGE;
  uintptr_t s = first, nd = first_new;
  while (s && nd < dend) {
    uintptr_t from = s + ps->from_delta;
    uint64_t hd = *(const uint64_t *)from;
    size_t n = obj_total_bytes(hdr_payload(hd));
    const fh_type_info *ti = types_get(ps->types, hdr_type(hd));
    if (has_refs(ti)) {
      fc.obj_from = from + FH_HEADER_BYTES;
      fc.obj_new = nd + FH_HEADER_BYTES;
      fc.lo = nd > dbeg ? nd : dbeg;
      fc.hi = nd + n < dend ? nd + n : dend;
      if (ti->nrefs) /* inline: no indirect call per slot */
        for (uint32_t i = 0; i < ti->nrefs; i++)
          fix_slot((void **)(fc.obj_from + ti->ref_offsets[i]), &fc);
      else if (ti->flags & FH_TYPE_REF_ARRAY)
        visit_array_part(&fc, hdr_payload(hd));
      else
        ti->trace((void *)fc.obj_from, hdr_payload(hd), fix_slot, &fc);
    }
    nd += n;
    s = nd < dend ? bitmap_next_set(&t->mark, s + n, t->old_top) : 0;
  }
  while (fc.count) fix_one(&fc);
}

void page_fix_in_place(const page_source *ps, size_t page) {
  const fwd_tables *t = ps->t;
  uintptr_t dbeg = t->begin + page * FWD_PAGE;
  uintptr_t first = t->page_first[page];
  /* Identity page: the from-space page already holds the destination's
   * bytes; only its references change, and they are written in place. */
  fix_ctx fc = {.t = t, .page = dbeg, .out = (uint8_t *)(dbeg + ps->from_delta)};
  fix_page_refs(ps, &fc, first, first);
}
