/* Semi-space copying (Cheney), as ART's SemiSpace: copy every reachable
 * object of the active bump space into the other one, forwarding through
 * the header word; mark (not move) reachable non-moving objects with the
 * side bitmap and sweep the rest; then swap the spaces and give the old
 * one's pages back.
 *
 * The trace never recurses.  Copied objects are scanned by the Cheney
 * pointer walking to-space; marked non-moving objects wait on an explicit
 * mark stack.  If that stack cannot grow, objects stay marked-but-unscanned
 * and a rescan of the non-moving space picks them up (overflow recovery).
 *
 * Generational mode (collector=gen_semispace, ART's GSS): objects of the
 * active space below the previous collection's to-space end survived a
 * collection already; they are promoted (copied into the non-moving space,
 * the promote space) instead of being copied again.  A young collection
 * collects the active space only: non-moving, zygote and image objects are
 * old, live by assumption, and their references into the young space are
 * found through dirty cards (collectors/gen_cards.h).  A full collection
 * also marks and sweeps the non-moving space.  heap/gen_policy.h chooses. */
#include <string.h>

#include "collectors/collector.h"
#include "collectors/gen_cards.h"
#include "collectors/mark_stack.h"
#include "collectors/mc.h"
#include "collectors/semi_fixed.h"
#include "collectors/trace.h"
#include "heap/barrier.h"
#include "heap/error.h"
#include "heap/identity_hash.h"
#include "heap/large_objects.h"
#include "heap/object.h"

typedef struct semi_ctx {
  fh_heap *h;
  bump_space *from, *to;
  uintptr_t from_lo, from_hi;
  mark_stack stack;
  int overflowed;
  size_t copied;
  uintptr_t scan; /* Cheney: objects between scan and to-space top are not scanned */
  trace_weak weak;
  /* Generational mode.  young: the non-moving space is not collected, and
   * its mark bits flag promoted objects not yet scanned.  Objects starting
   * below aged_end are promoted (0: none, plain semispace). */
  int young;
  uintptr_t aged_end;
  /* Promoted objects wait here to be scanned, first in first out (as
   * Cheney's scan of to-space): children land next to their siblings and
   * a subtree near its root.  A stack put each object's first child's
   * subtree after all its other children's: a depth-first walk of a
   * promoted tree ran 10x slower. */
  mark_stack promo;
  size_t promo_head;
  size_t promoted, promoted_src; /* bytes in the promote space, and they took in from-space */
  int promote_failed;
  /* Mostly-copying (plain semispace): pinned objects and the islands the
   * last cycle left in to-space stay in place (collectors/semi_fixed.h). */
  int fixed;
  semi_fixed fx;
} semi_ctx;

/* Promote obj (header h) into the non-moving space: its copy, or NULL when
 * the space refuses (the caller copies to to-space instead, as ART does). */
static void *promote(semi_ctx *c, void *obj, uint64_t h) {
  non_moving_space *nm = &c->h->non_moving;
  /* With the hash word it may gain, in the space's 16-byte granules. */
  size_t bytes = non_moving_object_bytes(obj_moved_bytes(h) - FH_HEADER_BYTES);
  void *mem = non_moving_space_alloc_raw(nm, bytes, c->h->gen.tcache);
  if (!mem) {
    c->promote_failed = 1;
    return NULL;
  }
  uintptr_t dst = (uintptr_t)mem;
  memcpy(mem, obj_header(obj), obj_bytes(h));
  idhash_copied(c->h, obj, h, dst, 1);
  non_moving_space_publish(nm, mem);
  void *copy = obj_from_start(dst);
  c->promoted += bytes;
  c->promoted_src += obj_bytes(h);
  *obj_header(obj) = hdr_make_forward(copy);
  /* Marked: reached (full), or promoted and not yet scanned (young: the
   * dirty-card scan skips it, the stack scans it once). */
  non_moving_space_mark(&c->h->non_moving, copy);
  /* The queue is mapped at the first promotion (most young collections of
   * short-lived data promote nothing).  Without memory the object stays
   * marked and the overflow rescan finds it. */
  if ((!c->promo.items && mark_stack_init(&c->promo) < 0) || mark_stack_push(&c->promo, copy) < 0)
    c->overflowed = 1;
  /* Its slots may point into the young space: gen_cards_clean decides. */
  atomic_store_explicit((_Atomic uint8_t *)card_for(c->h, (uintptr_t)copy), FH__CARD_DIRTY,
                        memory_order_relaxed);
  trace_weak_reached(&c->weak, obj); /* referrers hold the old address */
  return copy;
}

static void *copy_object(semi_ctx *c, void *obj) {
  uint64_t *hp = obj_header(obj);
  uint64_t h = *hp;
  if (hdr_is_forwarded(h)) return hdr_forwardee(h);
  if ((uintptr_t)hp < c->aged_end) {
    void *p = promote(c, obj, h);
    if (p) return p;
  }
  /* To-space is as large as from-space, so the copy always fits: a hashed
   * object that gains its hash word here left an 8-byte filler in
   * from-space when it was hashed (heap/identity_hash.h). */
  uintptr_t dst = atomic_load_explicit(&c->to->top, memory_order_relaxed);
  /* An island of to-space ahead (UINTPTR_MAX: none): lay the copy past it. */
  if (__builtin_expect(dst + obj_moved_bytes(h) > c->fx.copy_next, 0))
    dst = semi_fixed_skip(&c->fx, c->to, dst, obj_moved_bytes(h));
  memcpy((void *)dst, hp, obj_bytes(h));
  size_t bytes = idhash_copied(c->h, obj, h, dst, 1);
  /* stack_roots=conservative: a walk point at each object that covers a
   * page's first byte (bump_space.h). */
  if (c->to->starts.words && ((dst - 1) ^ (dst + bytes - 1)) >= FWD_PAGE)
    bump_space_note_start(c->to, dst);
  atomic_store_explicit(&c->to->top, dst + bytes, memory_order_relaxed);
  c->copied += bytes;
  void *copy = obj_from_start(dst);
  *hp = hdr_make_forward(copy);
  trace_weak_reached(&c->weak, obj); /* referrers hold the old address */
  return copy;
}

static void evacuate_slot(void **slot, void *ctx) {
  semi_ctx *c = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(c->h->tags, v);
  if (!p) return;
  /* By the header: an empty object at the top has its payload pointer at
   * from_hi itself. */
  uintptr_t a = (uintptr_t)p - FH_HEADER_BYTES;
  if (a - c->from_lo < c->from_hi - c->from_lo) {
    *slot = (void *)slot_retag(c->h->tags, v, (uintptr_t)copy_object(c, p));
  } else if (c->young) {
    /* Young: non-moving and large objects are old, live by assumption. */
  } else if (space_contains(&c->h->non_moving.space, p) ? !non_moving_space_mark(&c->h->non_moving, p)
             : los_contains(&c->h->los, p) && !los_mark(&c->h->los, p)) {
    /* A non-moving or large object reached for the first time; a quiet
     * large one has nothing to scan. */
    if (!(los_contains(&c->h->los, p) && heap_los_quiet(c->h, p)) &&
        mark_stack_push(&c->stack, p) < 0)
      c->overflowed = 1;
    trace_weak_reached(&c->weak, p);
  }
  /* Anything else (immune spaces, to-space) is not collected here. */
}

/* obj's header is h (a pinned object's reads as forwarded during the
 * trace: semi_fixed.h). */
static void scan_object_as(semi_ctx *c, void *obj, uint64_t h) {
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(h));
  if (!ti) return;
  if (ti->flags & TYPE_EPHEMERON) trace_ephemeron(&c->weak, obj);
  else types_visit_refs(ti, obj, hdr_payload(h), evacuate_slot, c);
}

static void scan_object(semi_ctx *c, void *obj) { scan_object_as(c, obj, *obj_header(obj)); }

/* An object that stays in place: a root of this cycle. */
static void scan_fixed(void *obj, uint64_t h, void *ctx) { scan_object_as(ctx, obj, h); }

static void rescan_marked(void *obj, void *ctx) {
  semi_ctx *c = ctx;
  non_moving_space *nm = &c->h->non_moving;
  if (!bitmap_test(&nm->mark_bits, obj_start(obj))) return;
  if (c->young) bitmap_clear(&nm->mark_bits, obj_start(obj)); /* promoted: scanned now */
  scan_object(c, obj);
}

/* Young: a large object on a dirty card. */
static void scan_large_old(void *obj, void *ctx) { scan_object(ctx, obj); }

/* Young: a non-moving object on a dirty card (a root of this collection),
 * unless promoted by it (the mark stack scans those). */
static void scan_old(void *obj, void *ctx) {
  semi_ctx *c = ctx;
  if (!bitmap_test(&c->h->non_moving.mark_bits, obj_start(obj))) scan_object(c, obj);
}

static void rescan_large(void *obj, void *ctx) { scan_object(ctx, obj); }

static int trace(void *ctx) {
  semi_ctx *c = ctx;
  for (;;) {
    /* Cheney: objects between scan and top are copied but not scanned. */
    while (c->scan < atomic_load_explicit(&c->to->top, memory_order_relaxed)) {
      if (c->scan == c->fx.scan_next) { /* an island: scanned as a root */
        c->scan = semi_fixed_scan_jump(&c->fx);
        continue;
      }
      uint64_t h = *(uint64_t *)c->scan;
      scan_object(c, obj_from_start(c->scan));
      c->scan += obj_bytes(h);
    }
    if (c->promo_head < c->promo.n) {
      void *p = c->promo.items[c->promo_head++];
      if (c->promo_head == c->promo.n) c->promo_head = c->promo.n = 0;
      if (c->young) bitmap_clear(&c->h->non_moving.mark_bits, obj_start(p));
      scan_object(c, p);
      continue;
    }
    void *obj = mark_stack_pop(&c->stack);
    if (obj) {
      if (c->young) bitmap_clear(&c->h->non_moving.mark_bits, obj_start(obj));
      scan_object(c, obj);
      continue;
    }
    if (!c->overflowed) return 0;
    c->overflowed = 0;
    c->h->non_moving.space.ops->walk(&c->h->non_moving.space, rescan_marked, c);
    los_walk_marked(&c->h->los, rescan_large, c);
  }
}

/* Reached in this collection: copied (forwarded) or marked; anything
 * outside from-space and the non-moving space is not collected here. */
static int is_live(void *ctx, const void *obj) {
  semi_ctx *c = ctx;
  uintptr_t a = (uintptr_t)obj;
  if (a - c->from_lo < c->from_hi - c->from_lo) return hdr_is_forwarded(*obj_header(obj));
  if (!c->young && space_contains(&c->h->non_moving.space, obj))
    return bitmap_test(&c->h->non_moving.mark_bits, obj_start(obj));
  if (c->young) return 1; /* old objects are live by assumption */
  if (los_contains(&c->h->los, obj)) return los_is_marked(&c->h->los, obj);
  return 1;
}

static const trace_ops semi_trace_ops = {.is_live = is_live, .visit = evacuate_slot, .drain = trace};

/* One copying collection; c->young and c->aged_end set by the caller. */
static int semi_collect(fh_heap *h, semi_ctx *c) {
  c->fx.copy_next = c->fx.scan_next = UINTPTR_MAX;
  if (mark_stack_init(&c->stack) < 0) {
    fh_error_set("semi-space collection: cannot map the mark stack");
    return -1;
  }
  if (c->fixed) {
    /* Empties to-space around its islands, walk points included. */
    if (semi_fixed_begin(&c->fx, h, c->from, c->to) < 0) {
      mark_stack_destroy(&c->stack);
      return -1;
    }
  } else {
    /* Walk points of to-space are this copy's alone (normally none: the
     * reset that emptied it cleared them). */
    bump_space_clear_starts(c->to, c->to->space.begin, atomic_load(&c->to->top));
  }
  c->from_lo = c->from->space.begin;
  c->from_hi = atomic_load(&c->from->top);
  c->scan = c->to->space.begin;
  trace_weak_init(&c->weak, h, &semi_trace_ops, c);
  roots_visit(h, evacuate_slot, c);
  semi_fixed_each(&c->fx, scan_fixed, c);
  /* Young: old objects that may point into the young space are roots. */
  if (c->young) gen_cards_visit_old(h, scan_old, scan_large_old, c);
  trace(c);
  trace_weak_finish(&c->weak); /* never fails: trace() recovers overflows */
  trace_weak_destroy(&c->weak);
  semi_fixed_restore(&c->fx);
  semi_fixed_finish_to(&c->fx, c->to);
  mark_stack_destroy(&c->stack);
  if (c->promo.items) mark_stack_destroy(&c->promo);

  size_t from_used = bump_space_used(c->from);
  /* Young: every mark bit was cleared as its promoted object was scanned,
   * and neither old space is swept. */
  size_t nm_freed = c->young ? 0 : heap_sweep_nonmoving(h);
  /* gen_semispace: whole-heap collections are rare and free old objects
   * by the megabyte; jemalloc would keep their pages for seconds. */
  if (c->aged_end && nm_freed) arena_purge(&h->non_moving.arena);
  bump_space_note_written(c->to);
  h->active = !h->active;
  semi_fixed_publish(&c->fx, c->to);
  h->semi_idle_bytes = c->fx.pinned_bytes;
  size_t out = c->copied + c->promoted_src + c->fx.pinned_bytes;
  h->bytes_moved += c->copied + c->promoted;
  h->bytes_promoted += c->promoted;
  h->bytes_freed += (from_used > out ? from_used - out : 0) + nm_freed;
  /* The idle half's pinned objects are counted apart (heap_bump_room). */
  heap_set_trigger(h, c->copied + c->fx.island_bytes + heap_nonmoving_used(h));
  /* The old from-space is the next to-space: it will receive at most what
   * the active space holds at the next collection (live + the trigger).
   * Keep that much resident so the next copy does not fault every page in
   * again; give the rest back.  verify=1: every old copy is poisoned and
   * kept (a discarded page would read as zeroes, which look harmless), so
   * a stale pointer reads FH_POISON until the next copy reuses the memory
   * (claims zero it: it lies below dirty_end). */
  size_t keep = c->copied + h->gc_trigger;
  if (c->fx.npins) {
    /* Its pinned objects stay: the idle half's islands. */
    semi_fixed_keep_pinned(&c->fx, h, c->from, keep, h->opt.verify);
  } else {
    if (h->opt.verify) {
      heap_poison(c->from->space.begin, c->from_hi);
      if (keep < from_used) keep = from_used;
    }
    bump_space_reset(c->from, keep);
  }
  if (c->fx.npins || c->fx.nisl) h->semi_mostly_copying++;
  semi_fixed_destroy(&c->fx);
  return 0;
}

/* Pinned objects in the active space cannot be copied.  A semispace heap
 * copies around them (mostly-copying: collectors/semi_fixed.h).  Other
 * heaps asked for a semispace collection (FH_COLLECT_SEMISPACE on a
 * mark_compact or gen_semispace heap) slide the active space in place
 * around them instead (mark-compact with fixed points): their collectors
 * know nothing of objects left in the idle half. */
static int pinned_in_active(fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  return h->pins.gathered && pin_set_any_in(&h->pins, b->space.begin, atomic_load(&b->top));
}

static int semi_space_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self, (void)cause;
  int fixed = h->opt.collector == FH_SEMISPACE;
  if (!fixed && pinned_in_active(h))
    return mc_collect_stw(h, "stop-the-world mark-compact (semispace with pinned objects)");
  semi_ctx c = {.h = h, .from = &h->bump[h->active], .to = &h->bump[!h->active], .fixed = fixed};
  return semi_collect(h, &c);
}

const fh_collector_ops semi_space_collector = {"semispace", semi_space_collect, NULL};

/* ---- generational semi-space (gen_semispace) ---------------------------- */

/* Where the survivors of the last collection end in the active space, or
 * its start (all young) when another collection ran since. */
static uintptr_t aged_end(fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  const gen_state *g = &h->gen;
  uintptr_t top = atomic_load(&b->top);
  if (g->aged_at != h->collections || g->aged_bump != h->active || g->aged_end < b->space.begin ||
      g->aged_end > top)
    return b->space.begin;
  return g->aged_end;
}

/* After a collection: what the next one starts from.  The collection is
 * counted after this returns (gc_account_pause), hence + 1. */
static void gen_done(fh_heap *h, int young, const semi_ctx *c, size_t collected) {
  gen_state *g = &h->gen;
  g->aged_bump = h->active;
  g->aged_end = atomic_load(&h->bump[h->active].top);
  g->aged_at = h->collections + 1;
  g->collecting_young = young;
  g->last.promote_failed = c ? c->promote_failed : 0;
  if (young) {
    g->last.promoted_since_full += c->promoted;
    size_t out = c->copied + c->promoted_src;
    g->last.young_collected = collected;
    g->last.young_freed = collected > out ? collected - out : 0;
  } else {
    g->last.old_after_full = heap_nonmoving_used(h);
    g->last.promoted_since_full = 0;
    g->last.young_collected = g->last.young_freed = 0;
  }
}

static int gen_semi_space_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self;
  gen_state *g = &h->gen;
  /* Promotions allocate through a tcache of their own (one jemalloc call
   * per object without it), flushed before mutators run again. */
  if (g->tcache == -2) g->tcache = arena_tcache_create(); /* -1: none, uncached */
  gen_policy_in in = g->last;
  in.requested_young = g->request_young;
  in.explicit_full = cause == GC_CAUSE_EXPLICIT && !g->request_young;
  in.alloc_failure = cause == GC_CAUSE_ALLOC_FAILURE;
  in.heap_max = heap_limit(h);
  g->choice = gen_policy_choose(&in);
  /* Another kind of collection ran since ours (FH_COLLECT_SEMISPACE,
   * mark_compact, ...): its sweep cleared the large objects' cards. */
  if (g->aged_at != h->collections) gen_cards_redirty_large(h);
  if (pinned_in_active(h)) {
    /* A whole-heap slide; everything it kept survived a collection. */
    int rc = mc_collect_stw(h, "stop-the-world mark-compact (gen_semispace with pinned objects)");
    g->choice = (gen_choice){0, g->choice.why};
    if (rc == 0) {
      gen_cards_redirty_large(h); /* its sweep cleared them */
      gen_done(h, 0, NULL, 0);
    }
    return rc;
  }
  semi_ctx c = {.h = h, .from = &h->bump[h->active], .to = &h->bump[!h->active],
                .young = g->choice.young, .aged_end = aged_end(h)};
  size_t collected = bump_space_used(c.from);
  if (h->opt.verify && c.young) gen_cards_verify(h, "before young collection");
  int rc = semi_collect(h, &c);
  if (c.promoted && g->tcache >= 0 && arena_tcache_flush(g->tcache) < 0) {
    /* A cache that keeps regions must serve no other arena (fh_prefork
     * replaces the non-moving space's): leave it, go uncached. */
    g->tcache = -1;
  }
  if (rc < 0) return -1;
  gen_cards_clean(h);
  if (!c.young) gen_cards_redirty_large(h);
  gen_done(h, c.young, &c, collected);
  if (h->opt.verify) gen_cards_verify(h, c.young ? "after young collection" : "after full collection");
  return 0;
}

const fh_collector_ops gen_semi_space_collector = {"gen_semispace", gen_semi_space_collect, NULL};
