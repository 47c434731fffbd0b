/* Zygote compaction (ART's ZygoteCompactingCollector, run by fh_prefork
 * right after a full collection): copy every live movable object into one
 * dense bump region right after the non-moving space's used range, freeze
 * that space and the region as the zygote space, start a fresh non-moving
 * space over the rest of the reservation, and empty the moving spaces.
 *
 *   non-moving reservation before:  [ non-moving objects | free .......... ]
 *                          after:   [ zygote: old objects | copies ][ new non-moving ]
 *
 * Order.  Copies are made depth-first from the roots (an explicit stack,
 * copy on discovery, as a semi-space collector with a mark stack), so an
 * object and what it refers to tend to share pages: a child that touches
 * one structure dirties few pages.  Forwarding goes through the old copy's
 * header, which is thrown away with the moving space.
 *
 * Copy first, commit after.  Everything that can fail (room in the
 * reservation, the start bitmap, the fresh non-moving space, the work
 * stack) is settled before the first object is copied; the room check uses
 * the moving spaces' used bytes, an upper bound of what is copied.  A
 * stack that cannot grow is not a failure: a linear rescan of the region
 * finds the objects whose slots were not visited (visiting is idempotent).
 *
 * Which references are rewritten: roots (including the slots on dirty
 * image cards and, in a later generation, zygote cards), every object of the
 * non-moving space being frozen (all of them become zygote objects, so all
 * their referents must survive), and the copies themselves.  After this no
 * live object is outside the immune spaces but the pinned ones, so the
 * zygote's cards start clean but for theirs.
 *
 * Pinned objects (fh_pin, conservative stack words: h->pins, gathered by
 * fh_prefork for this pause) of a moving space stay where they are: they
 * are scanned as roots (their references to movable objects go to the
 * copies) but never copied.  Afterwards the space holds only them: a bump
 * space keeps its objects at their addresses, fillers over the gaps (their
 * pages given back) and its top right after the last one; the main malloc
 * space frees every other object instead of being reset.  A zygote object
 * that refers to a pinned object gets the card of its payload pointer
 * dirtied, exactly as if the program had stored that reference after the
 * freeze with fh_write_ref, so every later collection finds the reference
 * (heap/zygote_cards.c) and updates it once the object is unpinned and
 * moves.  Pinned non-moving objects are frozen with their space like every
 * other non-moving object: they never move either way.
 *
 * Large objects (spaces/large_object_space.h) are copied into the zygote
 * too, so it holds everything that was live and later collections never
 * trace them again; their pages then go back.  A pinned one stays in its
 * space, as a pinned moving object does (the large-object space never
 * moves anything, so a pin there costs nothing else). */
#include <stdio.h>
#include <string.h>

#include "collectors/collector.h"
#include "collectors/mark_stack.h"
#include "collectors/trace.h"
#include "heap/barrier.h"
#include "heap/error.h"
#include "heap/object_check.h"
#include "heap/identity_hash.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "heap/zygote.h"
#include "spaces/reserve.h"

/* The fresh non-moving space needs at least this much of the reservation. */
#define MIN_NON_MOVING ((size_t)1 << 20)
/* A card of a zygote object found referring to a pinned object: dirty for
 * every reader (they test non-zero), and spared by the final clear, which
 * turns it into FH__CARD_DIRTY. */
#define CARD_KEEP 2u

typedef struct zc_ctx {
  fh_heap *h;
  zygote_space *z;
  uintptr_t bump_lo[2], bump_hi[2]; /* the bump spaces' objects */
  malloc_space *ms;           /* the main malloc space, or NULL */
  uintptr_t range_begin;      /* the zygote-to-be: [range_begin, cursor) */
  uintptr_t region, cursor;   /* the zygote region being filled */
  mark_stack stack;           /* copies whose slots are still to visit */
  int overflowed;
  int pushing;                /* 0 during the linear rescan */
  /* Pinned objects of the moving spaces: any at all, any in the main
   * malloc space (its copied objects then keep their header, see
   * copy_object). */
  int pinned, ms_pinned;
} zc_ctx;

static int movable(const zc_ctx *c, const void *p) {
  uintptr_t a = (uintptr_t)p - FH_HEADER_BYTES; /* an empty object's payload may be at bump_hi */
  return (a - c->bump_lo[0] < c->bump_hi[0] - c->bump_lo[0]) ||
         (a - c->bump_lo[1] < c->bump_hi[1] - c->bump_lo[1]) ||
         (c->ms && space_contains(&c->ms->space, p)) || los_contains(&c->h->los, p);
}

/* The slot refers to a pinned object, which stays in its moving space: if
 * the slot belongs to a zygote object (an old generation's, a
 * frozen non-moving one or a copy), keep that object's card dirty. */
static void note_pinned_ref(zc_ctx *c, void **slot) {
  uintptr_t a = (uintptr_t)slot;
  if (a < c->range_begin || a >= c->cursor) return; /* a root, or a pinned object's slot */
  uintptr_t start = bitmap_prev_set(&c->z->starts, c->range_begin, a);
  if (start) *card_for(c->h, (uintptr_t)obj_from_start(start)) = CARD_KEEP;
}

static void *copy_object(zc_ctx *c, void *obj) {
  uint64_t *hp = obj_header(obj);
  uint64_t hd = *hp;
  uintptr_t dst = c->cursor;
  memcpy((void *)dst, hp, obj_bytes(hd));
  /* A hashed object gains its hash word (room: movable_bound). */
  size_t bytes = idhash_copied(c->h, obj, hd, dst, 1);
  c->cursor += bytes;
  zygote_space_add_object(c->z, dst, bytes);
  void *copy = obj_from_start(dst);
  /* A main malloc space that keeps its pinned objects is swept afterwards,
   * and the sweep sizes each object from its header: the original keeps
   * it in its first payload word (there is one: 16-byte granules). */
  if (c->ms_pinned && space_contains(&c->ms->space, obj)) hp[1] = hd;
  *hp = hdr_make_forward(copy);
  if (c->pushing && mark_stack_push(&c->stack, copy) < 0) c->overflowed = 1;
  return copy;
}

static void visit_slot(void **slot, void *ctx) {
  zc_ctx *c = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(c->h->tags, v);
  /* Slots that need no change are not written: in a second generation they
   * are zygote pages, shared with the children of the first. */
  if (!p || !movable(c, p)) return;
  uint64_t hd = *obj_header(p);
  void *to;
  if (hdr_is_forwarded(hd)) {
    to = hdr_forwardee(hd);
  } else if (c->pinned && pin_set_has(&c->h->pins, obj_start(p))) {
    note_pinned_ref(c, slot); /* scanned by scan_pinned, never copied */
    return;
  } else {
    to = copy_object(c, p);
  }
  *slot = (void *)slot_retag(c->h->tags, v, (uintptr_t)to);
}

static void scan_object(void *obj, void *ctx) {
  zc_ctx *c = ctx;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj, hdr_payload(hd), visit_slot, c);
}

static void drain(zc_ctx *c) {
  void *obj;
  while ((obj = mark_stack_pop(&c->stack))) scan_object(obj, c);
}

/* The stack overflowed: some copies were never scanned.  Scan every copy in
 * address order (Cheney); copies made meanwhile land ahead of the scan. */
static void rescan_region(zc_ctx *c) {
  c->pushing = 0;
  for (uintptr_t s = c->region; s < c->cursor;) {
    size_t bytes = obj_bytes(*(uint64_t *)s);
    scan_object(obj_from_start(s), c);
    s += bytes;
  }
}

/* Each pinned object of a moving space once: what it refers to is copied
 * (and its slots updated) like a root's referents. */
static void scan_pinned(zc_ctx *c) {
  const pin_set *s = &c->h->pins;
  for (size_t i = 0; i < s->n; i++) {
    void *obj = obj_from_start(s->starts[i]);
    if (movable(c, obj)) scan_object(obj, c);
  }
}

static void copy_everything(zc_ctx *c) {
  fh_heap *h = c->h;
  c->pushing = 1;
  if (c->pinned) scan_pinned(c);
  roots_visit(h, visit_slot, c); /* with dirty image and zygote cards, and the pins */
  drain(c);
  non_moving_space *nm = &h->non_moving;
  nm->space.ops->walk(&nm->space, scan_object, c);
  drain(c);
  /* Finalization records and moved hashes: the full collection before
   * this left only live objects in them. */
  weak_roots_visit(h, visit_slot, c);
  drain(c);
  if (c->overflowed) rescan_region(c);
}

/* Bytes of movable objects: at least what the copy needs (a malloc-space
 * object is rounded to 16 bytes there, to 8 in the region).  Hashed
 * objects gain a hash word when copied: a bump space's used bytes already
 * cover it (heap/identity_hash.h), a malloc space's may not, so every
 * malloc-space object ever hashed counts 8 more. */
static size_t movable_bound(const fh_heap *h) {
  size_t n = bump_space_used(&h->bump[0]) + bump_space_used(&h->bump[1]);
  if (h->has_malloc_spaces)
    n += atomic_load(&h->malloc[h->malloc_main].used) +
         FH_HASH_WORD_BYTES * atomic_load(&h->idhash.malloc_hashed);
  /* Large objects: whole pages each, so a hash word always fits but when
   * the payload ends a page; count one per object. */
  return n + atomic_load(&h->los.used) + FH_HASH_WORD_BYTES * atomic_load(&h->los.objects);
}

/* Give back the pages of [lo, hi) but the one holding lo's filler header. */
static void fill_gap(bump_space *b, uintptr_t lo, uintptr_t hi) {
  bump_space_write_fillers(b, lo, hi);
  (void)reserve_discard(lo + FH_HEADER_BYTES, hi - lo - FH_HEADER_BYTES); /* aligns inward */
}

/* A bump space whose pinned objects stay: its pinned objects at their
 * addresses, a filler over each gap, top right after the last one; walk
 * points (stack_roots=conservative) at each object and filler, the pages
 * of the gaps and above the new top given back. */
static void keep_pinned_only(fh_heap *h, bump_space *b) {
  const pin_set *s = &h->pins;
  uintptr_t top = atomic_load(&b->top);
  bump_space_clear_starts(b, b->space.begin, top);
  uintptr_t p = b->space.begin;
  for (size_t i = pin_set_lower_bound(s, b->space.begin); i < s->n && s->starts[i] < top; i++) {
    uintptr_t start = s->starts[i];
    if (start > p) fill_gap(b, p, start);
    bump_space_note_start(b, start);
    p = start + obj_bytes(*(uint64_t *)start);
  }
  bump_space_truncate(b, p); /* dirty_end now covers the old top */
  uintptr_t keep_end = align_up(p, FH_PAGE);
  if (keep_end < b->dirty_end) {
    (void)reserve_discard(keep_end, align_up(b->dirty_end, FH_PAGE) - keep_end);
    b->dirty_end = keep_end; /* above it the pages read as zero again */
  }
}

/* The main malloc space keeps its pinned objects: every other object goes
 * back to jemalloc (sized by the header the copy left in its first payload
 * word), the arena stays. */
static void malloc_keep_pinned_only(fh_heap *h, malloc_space *ms) {
  uintptr_t end = malloc_space_frontier(ms);
  for (uintptr_t p = bitmap_next_set(&ms->alloc_bits, ms->space.begin, end); p;
       p = bitmap_next_set(&ms->alloc_bits, p + MS_GRANULE, end)) {
    uint64_t *hp = (uint64_t *)p;
    if (hdr_is_forwarded(*hp)) *hp = hp[1];
  }
  bitmap_clear_range(&ms->mark_bits, ms->space.begin, end);
  const pin_set *s = &h->pins;
  for (size_t i = pin_set_lower_bound(s, ms->space.begin); i < s->n && s->starts[i] < end; i++)
    bitmap_set(&ms->mark_bits, s->starts[i]);
  (void)malloc_space_sweep(ms, h->gc_tcache);
}

/* Empty the moving spaces and give their pages back; pinned objects stay. */
static int empty_moving_spaces(fh_heap *h) {
  for (int i = 0; i < 2; i++) {
    bump_space *b = &h->bump[i];
    uintptr_t top = atomic_load(&b->top);
    if (top > b->space.begin) cards_clear_range(h, b->space.begin, top);
    if (pin_set_any_in(&h->pins, b->space.begin, top)) keep_pinned_only(h, b);
    else bump_space_reset(b, 0);
  }
  if (!h->has_malloc_spaces) return 0;
  malloc_space *ms = heap_main_malloc(h);
  uintptr_t end = malloc_space_frontier(ms);
  if (end > ms->space.begin) cards_clear_range(h, ms->space.begin, end);
  if (pin_set_any_in(&h->pins, ms->space.begin, end)) {
    malloc_keep_pinned_only(h, ms);
    malloc_space_purge(heap_backup_malloc(h));
    return 0;
  }
  /* Every cache that holds memory of the main space was flushed before the
   * copy (zygote_compact), as an arena reset requires. */
  if (malloc_space_reset(ms) < 0) {
    malloc_space *bk = heap_backup_malloc(h);
    if (!ms->arena.end && bk->arena.end && atomic_load(&bk->used) == 0) {
      /* The main space lost its arena (destroyed, not recreated): the
       * empty backup space takes its place, and the other, as backup,
       * gets its arena back when the next compaction needs it
       * (malloc_space_revive).  The copy is complete either way. */
      h->malloc_main = !h->malloc_main;
      heap_main_malloc(h)->space.name = "main malloc space";
      heap_backup_malloc(h)->space.name = "backup malloc space";
    }
    fh_error_prefix("zygote compaction: the emptied main malloc space could not be reset");
    return -1;
  }
  malloc_space_purge(heap_backup_malloc(h));
  return 0;
}

/* The zygote's cards start clean, but for those of objects that refer to
 * pinned objects (CARD_KEEP). */
static void zygote_cards_settle(fh_heap *h, uintptr_t begin, uintptr_t end, int keep) {
  if (!keep) {
    cards_clear_range(h, begin, end);
    return;
  }
  uint8_t *b = card_for(h, begin), *e = card_for(h, end - 1) + 1;
  for (uint8_t *c = b; c < e; c++) *c = *c == CARD_KEEP ? FH__CARD_DIRTY : 0;
}

int zygote_compact(fh_heap *h) {
  non_moving_space *nm = &h->non_moving;
  zygote_space *z = &h->zygote;
  uintptr_t range_begin = zygote_space_present(z) ? z->space.begin : nm->space.begin;
  uintptr_t range_end = nm->space.end;
  uintptr_t region = align_up(nm->space.begin + arena_mapped(&nm->arena), FH_PAGE);
  size_t bound = movable_bound(h);
  uintptr_t fresh_begin = align_up(region + bound, FH_PAGE);
  if (fresh_begin + MIN_NON_MOVING > range_end || fresh_begin < region) {
    fh_error_set("zygote compaction: the non-moving reservation cannot hold the copy: %zu bytes "
                 "of movable objects after the %zu bytes the non-moving space has used, in a "
                 "%zu-byte range that must keep %zu bytes for a new non-moving space (the range "
                 "holds non_moving_max plus heap_max: earlier zygote generations and the "
                 "non-moving objects took the rest)", bound, (size_t)(region - nm->space.begin),
                 (size_t)(range_end - nm->space.begin), MIN_NON_MOVING);
    return -1;
  }
  if (z->nfrozen >= ZYGOTE_MAX_GENERATIONS) {
    fh_error_set("zygote compaction: the zygote space already has %u generations, the most it "
                 "can hold", (unsigned)ZYGOTE_MAX_GENERATIONS);
    return -1;
  }
  if (zygote_space_prepare(z, range_begin, range_end) < 0) return -1;
  non_moving_space fresh;
  if (non_moving_space_init(&fresh, "non-moving space", fresh_begin, range_end - fresh_begin,
                            heap_non_moving_limit(h)) < 0) {
    fh_error_prefix("zygote compaction: cannot start the new non-moving space");
    return -1;
  }
  zc_ctx c = {.h = h, .z = z, .range_begin = range_begin, .region = region, .cursor = region};
  for (int i = 0; i < 2; i++) {
    c.bump_lo[i] = h->bump[i].space.begin;
    c.bump_hi[i] = atomic_load(&h->bump[i].top);
    if (pin_set_any_in(&h->pins, c.bump_lo[i], c.bump_hi[i])) c.pinned = 1;
  }
  c.ms = h->has_malloc_spaces ? heap_main_malloc(h) : NULL;
  if (c.ms && pin_set_any_in(&h->pins, c.ms->space.begin, c.ms->space.end))
    c.pinned = c.ms_pinned = 1;
  if (pin_set_any_in(&h->pins, h->los.space.begin, h->los.space.end)) c.pinned = 1;
  /* The caches are flushed now, while a failure can still refuse: after
   * the copy, a cache left holding regions of the main space would hand
   * them out after its reset (issue 14). */
  if (h->has_malloc_spaces && malloc_heap_flush_tcaches(h) < 0) {
    non_moving_space_destroy(&fresh);
    fh_error_prefix("zygote compaction");
    return -1;
  }
  if (mark_stack_init(&c.stack) < 0 || zygote_space_freeze_arena(z, &nm->arena) < 0) {
    if (c.stack.items) mark_stack_destroy(&c.stack);
    non_moving_space_destroy(&fresh);
    fh_error_prefix("zygote compaction");
    return -1;
  }
  /* Nothing fails from here on.  The frozen space's objects become zygote
   * objects (their allocation bits become start bits), then the copies.
   * fh_object_type's inline windows stay off while the spaces change. */
  heap_windows_refresh(h, 1);
  uintptr_t nm_end = nm->space.begin + arena_mapped(&nm->arena);
  for (uintptr_t p = bitmap_next_set(&nm->alloc_bits, nm->space.begin, nm_end); p;
       p = bitmap_next_set(&nm->alloc_bits, p + 16, nm_end))
    zygote_space_add_object(z, p, non_moving_object_bytes_hd(*(uint64_t *)p));
  copy_everything(&c);
  mark_stack_destroy(&c.stack);
  size_t copied = c.cursor - region;

  /* Commit: the old non-moving space is frozen (its arena now belongs to
   * the zygote space), the fresh one takes its place (its arena's hooks
   * follow it, as the frozen one's did). */
  bitmap_destroy(&nm->alloc_bits);
  bitmap_destroy(&nm->mark_bits);
  memcpy(nm, &fresh, sizeof *nm);
  arena_moved(&nm->arena);
  zygote_space_publish(z, c.cursor);
  /* Zygote objects now refer only to immune objects and pinned ones; the
   * new non-moving space is empty. */
  zygote_cards_settle(h, range_begin, range_end, c.pinned);
  int rc = empty_moving_spaces(h);
  /* The large objects copied (forwarded) go, their pages back. */
  if (h->los.space.ops) los_release_forwarded(&h->los);
  /* Purge every jemalloc arena: free pages inside the frozen arenas, the
   * malloc spaces' and fh_malloc's, and the process's own (Ruby's
   * Process.warmup ends with malloc_trim for the same reason). */
  char name[64];
  snprintf(name, sizeof name, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
  (void)sys_mallctl(name, NULL, NULL, NULL, 0); /* a failure costs memory only */
  h->bytes_moved += copied;
  heap_set_trigger(h, atomic_load(&h->los.used)); /* the pinned ones */
  heap_windows_refresh(h, 0); /* the moving spaces again; no non-moving window now */
  return rc;
}
