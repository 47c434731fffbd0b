/* Semi-space copying (Cheney), as ART's SemiSpace: copy every reachable
 * object of the active bump space into the other one, forwarding through
 * the header word; mark (not move) reachable non-moving objects with the
 * side bitmap and sweep the rest; then swap the spaces and give the old
 * one's pages back.
 *
 * The trace never recurses.  Copied objects are scanned by the Cheney
 * pointer walking to-space; marked non-moving objects wait on an explicit
 * mark stack.  If that stack cannot grow, objects stay marked-but-unscanned
 * and a rescan of the non-moving space picks them up (overflow recovery). */
#include <string.h>

#include "collectors/collector.h"
#include "collectors/mark_stack.h"
#include "collectors/mc.h"
#include "collectors/trace.h"
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
} semi_ctx;

static void *copy_object(semi_ctx *c, void *obj) {
  uint64_t *hp = obj_header(obj);
  uint64_t h = *hp;
  if (hdr_is_forwarded(h)) return hdr_forwardee(h);
  /* To-space is as large as from-space, so the copy always fits: a hashed
   * object that gains its hash word here left an 8-byte filler in
   * from-space when it was hashed (heap/identity_hash.h). */
  uintptr_t dst = atomic_load_explicit(&c->to->top, memory_order_relaxed);
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

static void scan_object(semi_ctx *c, void *obj) {
  uint64_t h = *obj_header(obj);
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(h));
  if (!ti) return;
  if (ti->flags & TYPE_EPHEMERON) trace_ephemeron(&c->weak, obj);
  else types_visit_refs(ti, obj, hdr_payload(h), evacuate_slot, c);
}

static void rescan_marked(void *obj, void *ctx) {
  semi_ctx *c = ctx;
  if (bitmap_test(&c->h->non_moving.mark_bits, obj_start(obj))) scan_object(c, obj);
}

static void rescan_large(void *obj, void *ctx) { scan_object(ctx, obj); }

static int trace(void *ctx) {
  semi_ctx *c = ctx;
  for (;;) {
    /* Cheney: objects between scan and top are copied but not scanned. */
    while (c->scan < atomic_load_explicit(&c->to->top, memory_order_relaxed)) {
      uint64_t h = *(uint64_t *)c->scan;
      scan_object(c, obj_from_start(c->scan));
      c->scan += obj_bytes(h);
    }
    void *obj = mark_stack_pop(&c->stack);
    if (obj) {
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
  if (space_contains(&c->h->non_moving.space, obj))
    return bitmap_test(&c->h->non_moving.mark_bits, obj_start(obj));
  if (los_contains(&c->h->los, obj)) return los_is_marked(&c->h->los, obj);
  return 1;
}

static const trace_ops semi_trace_ops = {.is_live = is_live, .visit = evacuate_slot, .drain = trace};

static int semi_space_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self, (void)cause;
  semi_ctx c = {.h = h, .from = &h->bump[h->active], .to = &h->bump[!h->active]};
  /* Pinned objects in the active space cannot be copied: this cycle slides
   * the active space in place instead, around them (mark-compact with
   * fixed points), so every object stays in the active half and no
   * allocator or walker meets objects left behind in the idle one.  A
   * deliberate departure from Bartlett's mostly-copying collector
   * (docs/architecture.md: pins). */
  if (h->pins.gathered &&
      pin_set_any_in(&h->pins, c.from->space.begin, atomic_load(&c.from->top)))
    return mc_collect_stw(h, "stop-the-world mark-compact (semispace with pinned objects)");
  /* Walk points of to-space are this copy's alone (normally none: the
   * reset that emptied it cleared them). */
  bump_space_clear_starts(c.to, c.to->space.begin, atomic_load(&c.to->top));
  if (mark_stack_init(&c.stack) < 0) {
    fh_error_set("semi-space collection: cannot map the mark stack");
    return -1;
  }
  c.from_lo = c.from->space.begin;
  c.from_hi = atomic_load(&c.from->top);
  c.scan = c.to->space.begin;
  trace_weak_init(&c.weak, h, &semi_trace_ops, &c);
  roots_visit(h, evacuate_slot, &c);
  trace(&c);
  trace_weak_finish(&c.weak); /* never fails: trace() recovers overflows */
  trace_weak_destroy(&c.weak);
  mark_stack_destroy(&c.stack);

  size_t from_used = bump_space_used(c.from);
  size_t nm_freed = heap_sweep_nonmoving(h);
  bump_space_note_written(c.to);
  h->active = !h->active;
  h->bytes_moved += c.copied;
  h->bytes_freed += (from_used - c.copied) + nm_freed;
  heap_set_trigger(h, c.copied + heap_nonmoving_used(h));
  /* The old from-space is the next to-space: it will receive at most what
   * the active space holds at the next collection (live + the trigger).
   * Keep that much resident so the next copy does not fault every page in
   * again; give the rest back.  verify=1: every old copy is poisoned and
   * kept (a discarded page would read as zeroes, which look harmless), so
   * a stale pointer reads FH_POISON until the next copy reuses the memory
   * (claims zero it: it lies below dirty_end). */
  size_t keep = c.copied + h->gc_trigger;
  if (h->opt.verify) {
    heap_poison(c.from->space.begin, c.from_hi);
    if (keep < from_used) keep = from_used;
  }
  bump_space_reset(c.from, keep);
  return 0;
}

const fh_collector_ops semi_space_collector = {"semispace", semi_space_collect, NULL};
