/* Homogeneous space compaction (ART's HomogeneousSpaceCompact): copy every
 * live object of the main malloc space into the empty backup malloc space,
 * fix every reference, give the old main space's memory back, swap roles.
 *
 * The copy is planned before anything is written, so that a compaction that
 * cannot complete leaves the heap exactly as it was:
 *   1. mark from the roots (collectors/mark.c); each main-space object is
 *      recorded as it is scanned, which is depth-first order from the
 *      roots, so related objects end up next to each other in the copy;
 *   2. allocate a destination in the backup space for every recorded
 *      object, in that order; if the backup space cannot hold them, give
 *      the destinations back (reset the still-empty backup), clear the
 *      marks and fail: no object or reference was touched;
 *   3. copy each object and leave a forwarding header in the old copy;
 *   4. sweep the non-moving space, then rewrite every reference into the
 *      main space from the forwarding headers: roots, the copies, live
 *      non-moving objects, bump-space objects, objects of immune spaces on
 *      dirty cards;
 *   5. reset the old main arena (its pages go back to the system) and swap.
 *
 * Releasing the old space's pages is most of the pause when it was large
 * (the kernel frees every resident page: ~200 ms for 650 MB), and that space
 * is idle until the next compaction, so a triggered compaction releases it
 * on a helper thread after the pause, inside the heap's concurrent phase
 * (the next collection, fh_gc_wait and fh_heap_destroy wait for it).  An
 * explicit fh_collect, or verify=1, releases inside the pause: when it
 * returns, the memory is back with the system.
 *
 * Policy: background compactions run at most every hspace_min_interval_ms;
 * one for an allocation that failed for fragmentation always runs (a rate
 * limit must not fail an allocation a compaction can satisfy); after a
 * failure, the next attempt (whatever its trigger) happens only once the
 * live size has changed. */
#include <stdlib.h>
#include <string.h>

#include "collectors/collector.h"
#include "collectors/mark.h"
#include "heap/large_objects.h"
#include "heap/error.h"
#include "heap/identity_hash.h"
#include "heap/object.h"
#include "spaces/reserve.h"

typedef struct hspace_ctx {
  fh_heap *h;
  malloc_space *from, *to;
  mark_stack order; /* payload pointers of live from-space objects, DFS order */
  mark_stack dest;  /* their destinations (object starts), same order */
  size_t live;      /* object bytes of live from-space objects */
  int out_of_memory;
  int no_room; /* plan_destinations failed for want of room, not of jemalloc */
  int planned; /* plan_destinations took memory of the backup space */
  uintptr_t run_cur, run_end; /* the run objects are being packed into */
} hspace_ctx;

static void record(marker *m, void *obj) {
  hspace_ctx *c = m->user;
  if (!space_contains(&c->from->space, obj)) return;
  c->live += malloc_object_bytes_for(obj_moved_bytes(*obj_header(obj)));
  if (mark_stack_push(&c->order, obj) < 0) c->out_of_memory = 1;
}

/* A destination of `bytes` packed into a run of the backup space: the
 * objects of the copy are never freed one by one before the next sweep,
 * so they can sit back to back instead of each in a jemalloc size class
 * (4 per doubling: ~8% of the bytes of objects of mixed sizes; fhbench
 * fragmentation's whole-process RSS was 1.18x live).  A run is a plain
 * run (spaces/malloc_runs.c): held until the next sweep lists it; marking
 * records its objects' cover bits (malloc_space_cover) like any run's.
 * NULL when jemalloc has no run to give: then a jemalloc object. */
static void *pack(hspace_ctx *c, size_t bytes) {
  if (bytes > MS_RUN_PACK_MAX) return NULL;
  if (bytes > c->run_end - c->run_cur) {
    /* The old run's tail stays a hole for the mutators after the sweep. */
    uintptr_t run = malloc_run_new(c->to);
    if (!run) return NULL;
    c->run_cur = run;
    c->run_end = run + MS_RUN_BYTES;
  }
  void *d = (void *)c->run_cur;
  c->run_cur += bytes;
  atomic_fetch_add_explicit(&c->to->used, bytes, memory_order_relaxed);
  return d;
}

/* Step 2: every destination, or none.  Returns 0, or -1 + error. */
static int plan_destinations(hspace_ctx *c) {
  size_t total = 0;
  for (size_t i = 0; i < c->order.n; i++) {
    size_t bytes = malloc_object_bytes_for(obj_moved_bytes(*obj_header(c->order.items[i])));
    void *d = NULL;
    if (total + bytes <= c->to->limit) {
      c->planned = 1;
      d = pack(c, bytes);
      if (!d) d = malloc_space_alloc_raw(c->to, bytes, c->h->gc_tcache);
    }
    size_t cap = (size_t)(c->to->space.end - c->to->space.begin);
    if (!d && total + bytes <= c->to->limit &&
        arena_mapped(&c->to->arena) + bytes + FH_PMD <= cap) {
      /* Room remains: jemalloc itself failed (mallocx, its metadata).  Not
       * remembered as a verdict on the live size: the next attempt may
       * well succeed. */
      fh_error_set("jemalloc could not allocate %zu bytes in the backup malloc space after %zu "
                   "of %zu objects (%zu of %zu live bytes)", bytes, i, c->order.n, total, c->live);
      return -1;
    }
    if (!d) {
      c->no_room = 1;
      fh_error_set("the backup malloc space cannot hold the live data: %zu objects, %zu live "
                   "bytes; room ran out after %zu objects (%zu bytes; capacity %zu bytes, "
                   "limit %zu)", c->order.n, c->live, i, total,
                   cap, c->to->limit);
      return -1;
    }
    if (mark_stack_push(&c->dest, d) < 0) {
      fh_error_set("out of memory for the compaction plan (%zu objects)", c->order.n);
      return -1;
    }
    total += bytes;
  }
  return 0;
}

/* Step 3. */
static void copy_objects(hspace_ctx *c) {
  for (size_t i = 0; i < c->order.n; i++) {
    void *obj = c->order.items[i];
    uint64_t *hp = obj_header(obj), hd = *hp;
    memcpy(c->dest.items[i], hp, malloc_object_bytes_hd(hd));
    /* A hashed object gains its hash word (planned: obj_moved_bytes). */
    size_t bytes = malloc_object_bytes_for(idhash_copied(c->h, obj, hd, (uintptr_t)c->dest.items[i], 1));
    malloc_space_publish(c->to, c->dest.items[i], bytes);
    *hp = hdr_make_forward(obj_from_start((uintptr_t)c->dest.items[i]));
  }
}

static void fix_slot(void **slot, void *ctx) {
  hspace_ctx *c = ctx;
  uintptr_t v = (uintptr_t)*slot;
  void *p = (void *)slot_target(c->h->tags, v);
  if (!p || !space_contains(&c->from->space, p)) return;
  uint64_t hd = *obj_header(p);
  /* Only a dead holder (a garbage bump-space object) can refer to an
   * object that was not copied; it is left alone. */
  if (hdr_is_forwarded(hd))
    *slot = (void *)slot_retag(c->h->tags, v, (uintptr_t)hdr_forwardee(hd));
}

static void fix_object(void *obj, void *ctx) {
  hspace_ctx *c = ctx;
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&c->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj, hdr_payload(hd), fix_slot, c);
}

/* A quiet large object refers to nothing in from-space. */
static void fix_large(void *obj, void *ctx) {
  hspace_ctx *c = ctx;
  if (!heap_los_quiet(c->h, obj)) fix_object(obj, c);
}

/* Step 4 (references). */
static void fix_references(hspace_ctx *c) {
  fh_heap *h = c->h;
  roots_visit(h, fix_slot, c);
  weak_roots_visit(h, fix_slot, c);
  for (size_t i = 0; i < c->dest.n; i++) fix_object(obj_from_start((uintptr_t)c->dest.items[i]), c);
  h->non_moving.space.ops->walk(&h->non_moving.space, fix_object, c);
  if (h->los.space.ops) h->los.space.ops->walk(&h->los.space, fix_large, c);
  bump_space *b = &h->bump[h->active];
  if (bump_space_used(b)) b->space.ops->walk(&b->space, fix_object, c);
  immune_visit_dirty_objects(h, fix_object, c);
}

static void clear_marks(fh_heap *h, malloc_space *from) {
  bitmap_clear_range(&from->mark_bits, from->space.begin, malloc_space_frontier(from));
  non_moving_space *nm = &h->non_moving;
  bitmap_clear_range(&nm->mark_bits, nm->space.begin, nm->space.begin + arena_mapped(&nm->arena));
  los_clear_marks(&h->los);
}

static void swap_roles(fh_heap *h) {
  h->malloc_main = !h->malloc_main;
  heap_main_malloc(h)->space.name = "main malloc space";
  heap_backup_malloc(h)->space.name = "backup malloc space";
}

/* Step 5 after the pause. */
typedef struct release_job {
  fh_heap *h;
  malloc_space *old;
} release_job;

static void *release_main(void *arg) {
  release_job *j = arg;
  fh_heap *h = j->h;
  /* On failure the space is marked unusable (its arena's end is 0) and the
   * next compaction refuses with an error; the heap itself is sound. */
  (void)malloc_space_reset(j->old);
  free(j);
  heap_phase_close(h);
  return NULL;
}

/* 0 when a helper thread took the release, -1 when the caller must do it. */
static int release_later(fh_heap *h, malloc_space *old) {
  release_job *j = malloc(sizeof *j);
  if (!j) return -1;
  *j = (release_job){h, old};
  if (heap_phase_thread(h, "fh-hs-release", release_main, j) < 0) {
    free(j);
    return -1;
  }
  return 0;
}

/* Refuse a background compaction that would follow the last one too soon;
 * 0 or -1 + error.  Only background ones: an allocation that fails for
 * fragmentation needs its compaction now, however recent the last one
 * (it was all that stood between the allocation and success). */
static int check_interval(fh_heap *h, gc_cause cause) {
  if (cause != GC_CAUSE_BACKGROUND || !h->hspace_last_ns) return 0;
  uint64_t since_ms = (heap_now_ns() - h->hspace_last_ns) / 1000000u;
  if (since_ms >= h->opt.hspace_min_interval_ms) return 0;
  fh_error_set("homogeneous compaction skipped: the last one ran %llu ms ago "
               "(hspace_min_interval_ms=%u)", (unsigned long long)since_ms,
               h->opt.hspace_min_interval_ms);
  return -1;
}

static int fail(hspace_ctx *c, const char *why_prefix) {
  fh_heap *h = c->h;
  fh_error_prefix(why_prefix);
  /* The destinations were never published: resetting the backup space,
   * empty before, gives them back (its cache is flushed first, as jemalloc
   * requires).  A cache whose flush fails is dropped instead (the collector
   * goes uncached from then on): its id is never used again, so the
   * regions of the reset arena it holds are never handed out. */
  if (c->dest.n || c->planned) {
    if (arena_tcache_flush(h->gc_tcache) < 0) h->gc_tcache = -1;
    if (malloc_space_reset(c->to) < 0) fh_error_prefix(why_prefix);
  }
  clear_marks(h, c->from);
  return -1;
}

static int hspace_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  if (!h->has_malloc_spaces) {
    fh_error_set("homogeneous space compaction needs collector=mark_sweep");
    return -1;
  }
  if (check_interval(h, cause) < 0) return -1;
  hspace_ctx c = {.h = h, .from = heap_main_malloc(h), .to = heap_backup_malloc(h)};
  /* Pinned objects of the main space cannot move, and the space is reset
   * as a whole once its objects are copied: with any pinned, this
   * collection is a mark-sweep instead (nothing moves, garbage goes), and
   * the next compaction tries again. */
  if (pin_set_any_in(&h->pins, c.from->space.begin, c.from->space.end)) {
    h->hspace_pinned_skips++;
    return mark_sweep_collector.collect(h, self, cause);
  }
  if (atomic_load(&c.to->used) != 0) {
    fh_error_set("homogeneous compaction: the backup malloc space is not empty");
    return -1;
  }
  if (malloc_space_revive(c.to) < 0) {
    fh_error_prefix("homogeneous compaction: the backup malloc space is unusable (its jemalloc "
                    "arena could not be recreated after the last compaction)");
    return -1;
  }
  /* A cache left holding main-space regions would hand them out after the
   * reset below: refuse before anything moves. */
  if (malloc_heap_flush_tcaches(h) < 0) {
    fh_error_prefix("homogeneous compaction");
    return -1;
  }
  marker m;
  if (mark_stack_init(&c.order) < 0 || mark_stack_init(&c.dest) < 0 || marker_init(&m, h) < 0) {
    mark_stack_destroy(&c.order);
    mark_stack_destroy(&c.dest);
    fh_error_set("homogeneous compaction: cannot map its work lists");
    return -1;
  }
  m.on_scan = record;
  m.user = &c;
  int rc = 0;
  /* Step 1. */
  if (marker_run(&m) < 0 || c.out_of_memory) {
    if (c.out_of_memory) fh_error_set("out of memory recording %zu live objects", c.order.n);
    rc = fail(&c, "homogeneous compaction: marking failed");
  } else if (h->hspace_failed_live && h->hspace_failed_live == c.live) {
    fh_error_set("not retried while the live size is unchanged (%zu bytes); the last attempt "
                 "failed: %s", c.live, h->hspace_failed_why);
    rc = fail(&c, "homogeneous compaction skipped");
  } else if (plan_destinations(&c) < 0) {
    /* Step 2 failed for want of room: remember why, so it is not retried
     * in vain (a failed allocator call is not a verdict on the size). */
    if (c.no_room) {
      h->hspace_failed_live = c.live;
      snprintf(h->hspace_failed_why, sizeof h->hspace_failed_why, "%s", fh_last_error());
    }
    rc = fail(&c, "homogeneous compaction failed; the main malloc space is unchanged");
  }
  marker_destroy(&m);
  if (rc == 0) {
    size_t from_used = atomic_load(&c.from->used);
    copy_objects(&c);                                 /* step 3 */
    /* May fail: the cache then keeps free regions of the new main space,
     * which it serves anyway (the sweeper), until a flush succeeds. */
    (void)arena_tcache_flush(h->gc_tcache);
    size_t nm_freed = heap_sweep_nonmoving(h); /* step 4 */
    fix_references(&c);
    /* Read before a release thread may reset the space (release_later). */
    uintptr_t vacated_end = malloc_space_frontier(c.from);
    int now = cause == GC_CAUSE_EXPLICIT || h->opt.verify || release_later(h, c.from) < 0;
    if (now && malloc_space_reset(c.from) < 0) {      /* step 5 */
      /* The copies are complete and referenced; only the old range's
       * memory could not be returned.  Report, but the heap is sound. */
      fh_error_prefix("homogeneous compaction: the old main space could not be reset");
      rc = -1;
    } else if (h->opt.verify) {
      /* Every object moved: a stale pointer into the old space faults at
       * once instead of reading zeroes (best effort: a failed mprotect
       * only leaves it readable). */
      (void)arena_guard(&c.from->arena, vacated_end);
    }
    swap_roles(h);
    h->bytes_moved += c.live;
    h->bytes_freed += (from_used - c.live) + nm_freed;
    h->hspace_failed_live = 0;
    h->hspace_last_ns = heap_now_ns();
    heap_set_trigger(h, heap_used_bytes(h));
  }
  mark_stack_destroy(&c.order);
  mark_stack_destroy(&c.dest);
  return rc;
}

const fh_collector_ops hspace_compact_collector = {"hspace_compact", hspace_collect, NULL};
