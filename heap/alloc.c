/* Allocation slow paths: argument checks, TLAB refills, large objects, the
 * collection trigger and the out-of-memory answer. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "collectors/collector.h"
#include "heap/barrier.h"
#include "heap/conservative.h"
#include "heap/error.h"
#include "heap/heap.h"
#include "heap/malloc_alloc.h"
#include "heap/object.h"
#include "heap/object_check.h"

/* Objects above this many bytes skip the TLAB and are claimed directly. */
static size_t large_threshold(const fh_heap *h) { return h->opt.tlab_size / 4; }

static int check_alloc(fh_thread *t, uint32_t type, size_t n, const char *fn) {
  if (thread_check(t, fn) < 0) return -1;
  if (t->in_blocking) {
    fh_error_set("%s: the thread is inside fh_enter_blocking, where it must not touch the heap "
                 "(a collection may be running); call fh_leave_blocking first", fn);
    return -1;
  }
  fh_heap *h = t->heap;
  if (types_check_alloc(&h->types, type, n) < 0) return -1;
  if (n > heap_reserved_max(h) || n > (size_t)UINT32_MAX) {
    fh_error_set("%s: %zu bytes is larger than the heap (heap_max %zu, heap_reserve %zu)%s", fn,
                 n, heap_limit(h), heap_reserved_max(h),
                 n > (size_t)UINT32_MAX ? " or the 4 GiB object limit" : "");
    return -1;
  }
  return 0;
}

/* The bump space's top may not pass this: heap_max, less the non-moving
 * objects (and semispace's copy reserve). */
static uintptr_t bump_limit(fh_heap *h) {
  bump_space *b = &h->bump[h->active];
  size_t nm = heap_nonmoving_used(h);
  uintptr_t lim = b->space.begin + heap_bump_room(h, nm);
  return lim < b->space.end ? lim : b->space.end;
}

/* Count an allocation toward the trigger; 1 when a collection is due. */
static int charge(fh_heap *h, size_t bytes) {
  size_t since = atomic_fetch_add_explicit(&h->alloc_since_gc, bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->bytes_allocated, bytes, memory_order_relaxed);
  return since + bytes > h->gc_trigger;
}

/* A claimed range is recorded in the thread before it is zeroed and
 * published, and forgotten once it is an object or a published TLAB: a
 * fork() from another thread snapshots this thread at any instant (the
 * world is stopped for a fork, but a claim is the kind of state a child
 * must never find unwalkable: unzeroed memory may hold a forwarding header
 * from the last collection).  The compiler fences keep the recording
 * ahead of the zeroing and the forgetting behind the publication; the
 * child writes a filler over a recorded claim (thread_retire_tlab). */
static void claim_record(fh_thread *t, uintptr_t p, size_t bytes) {
  t->claim_lo = p;
  t->claim_hi = p + bytes;
  atomic_signal_fence(memory_order_seq_cst);
}

static void claim_done(fh_thread *t) {
  atomic_signal_fence(memory_order_seq_cst);
  t->claim_lo = t->claim_hi = 0;
}

/* One attempt in the bump space.  Returns the object start, header
 * written, or 0 when a collection is needed first (trigger reached, unless
 * ignore_trigger, or no room). */
static uintptr_t bump_try(fh_thread *t, uint32_t type, size_t n, size_t bytes,
                          int ignore_trigger) {
  fh_heap *h = t->heap;
  bump_space *b = &h->bump[h->active];
  if (!ignore_trigger &&
      atomic_load_explicit(&h->alloc_since_gc, memory_order_relaxed) >= h->gc_trigger)
    return 0;
  if (bytes > large_threshold(h)) {
    uintptr_t p = bump_space_claim(b, bytes, bump_limit(h));
    if (p) {
      claim_record(t, p, bytes);
      bump_space_note_start(b, p);
      bump_space_zero_claim(b, p, bytes);
      *(uint64_t *)p = fh__make_header(type, n);
      claim_done(t);
      charge(h, bytes);
      if (b->claims_cap) bump_space_record_claim(b, p, p + bytes, t, 1); /* marking runs */
    }
    return p;
  }
  thread_retire_tlab(t);
  /* Once per TLAB, a few KiB of dead stack below: cheap against the 32 KiB
   * of allocation it amortises over. */
  if (t->cons) conservative_clear_below();
  size_t want = h->opt.tlab_size;
  /* Holes below top first (pinned objects' gaps: spaces/bump_space.h). */
  uintptr_t p = bump_space_claim_hole(b, want, bytes, &want, t);
  /* A hole lies among older objects: a young collection reads objects
   * there only on dirty cards (the old generation), or takes their
   * references into the young generation from dirty cards alone (mid:
   * collectors/mc_gen.c, promoted_on_cards; mc_slide.c, update_floor).
   * Born dirty, the objects allocated in it are read whatever their first
   * stores were (plain initialising stores, as into a fresh object at the
   * top: faultheap.h, fh_write_ref).  The next young collection cleans the
   * cards of those that hold nothing young. */
  int at_top = !p;
  if (p)
    cards_dirty_range(h, p, p + want);
  else
    p = bump_space_claim(b, want, bump_limit(h));
  if (!p) { /* near the end: take just what this object needs */
    want = bytes;
    p = bump_space_claim(b, want, bump_limit(h));
    if (!p) return 0;
  }
  /* While a concurrent marking records claims (holes' ones record
   * themselves): its marker marks this TLAB black once the next claim
   * completes it (collectors/cc_concurrent.c). */
  if (at_top && b->claims_cap) bump_space_record_claim(b, p, p + want, t, 0);
  claim_record(t, p, want);
  bump_space_note_start(b, p);
  bump_space_zero_claim(b, p, want);
  *(uint64_t *)p = fh__make_header(type, n);
  t->fast.tlab_cursor = p + bytes;
  t->fast.tlab_limit = p + want;
  claim_done(t);
  charge(h, want);
  return p;
}

void *alloc_fail_critical(fh_thread *t, const char *fn, size_t n) {
  fh_heap *h = t->heap;
  fh_error_set("%s: heap full inside a critical section: %zu bytes requested, %zu of %zu bytes "
               "in use, and no collection can run before this thread's fh_critical_end",
               fn, n, heap_used_bytes(h), heap_limit(h));
  return NULL;
}

/* Everything but the mark-sweep budget path (below). */
void stress_tick(fh_thread *t, _Atomic uint64_t *counter) {
  fh_heap *h = t->heap;
  unsigned n = h->opt.gc_stress;
  /* No collection can run inside a critical section, and a blocked thread
   * does not act on the heap. */
  if (!n || t->critical || t->in_blocking) return;
  if ((atomic_fetch_add_explicit(counter, 1, memory_order_relaxed) + 1) % n) return;
  /* On a mark_sweep heap the non-moving collector would find only missing
   * roots whose objects die; homogeneous compaction moves every live
   * object too.  A stress collection that fails (a compaction refused for
   * room, say) is not the caller's failure: the allocation goes on with
   * its error text as it was. */
  fh_collect_kind kind = h->has_malloc_spaces ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_DEFAULT;
  char saved[512];
  snprintf(saved, sizeof saved, "%s", fh_last_error());
  if (gc_run(t, kind, GC_CAUSE_EXPLICIT, 0) < 0 &&
      (kind == FH_COLLECT_DEFAULT || gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_EXPLICIT, 0) < 0))
    fprintf(stderr, "faultheap: gc_stress collection failed: %s\n", fh_last_error());
  fh_error_set("%s", saved);
}

/* Does a large object of `bytes` fit under heap_max beside everything
 * else (semispace: its bump objects count twice, for their copy)? */
static int large_fits(fh_heap *h, size_t bytes) {
  size_t bump = bump_space_used(&h->bump[h->active]);
  if (h->opt.collector == FH_SEMISPACE) bump *= 2;
  size_t other = h->has_malloc_spaces ? atomic_load(&heap_main_malloc(h)->used) : 0;
  /* Pinned objects a mostly-copying semispace cycle kept in the idle half
   * (heap/heap.h: semi_idle_bytes) take room too. */
  size_t used = bump + other + h->semi_idle_bytes + heap_nonmoving_used(h), lim = heap_limit(h);
  return used <= lim && bytes <= lim - used;
}

/* A payload of at least los_threshold bytes: pages of the large-object
 * space.  The same loop as the others: the trigger first, then collect,
 * collect again, ask the OOM handler, fail with "heap full". */
static void *large_alloc(fh_thread *t, uint32_t type, size_t n) {
  fh_heap *h = t->heap;
  size_t bytes = los_object_bytes(n);
  int critical = t->critical != 0; /* no collection possible: capacity only */
  unsigned oom_calls = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    uint64_t seen = h->collections;
    int due = attempt == 0 && !critical && atomic_load(&h->alloc_since_gc) >= h->gc_trigger;
    if (!due && large_fits(h, bytes)) {
      void *obj = los_alloc(&h->los, type, n);
      if (obj) {
        /* Born old: dirty, as a hole's objects (alloc_general). */
        cards_dirty_range(h, (uintptr_t)obj, (uintptr_t)obj + 1);
        if (atomic_load_explicit(&h->cm_black, memory_order_relaxed)) heap_alloc_black_other(h, obj);
        charge(h, bytes);
        return obj;
      }
    }
    if (critical) return alloc_fail_critical(t, "fh_alloc", n);
    if (attempt == 2 && oom_retry(t, bytes, &oom_calls)) attempt = 0;
    if (attempt == 2) break;
    if (gc_run(t, FH_COLLECT_DEFAULT, due ? GC_CAUSE_ALLOC_TRIGGER : GC_CAUSE_ALLOC_FAILURE,
               seen) < 0) {
      fh_error_prefix("fh_alloc: collection failed");
      return NULL;
    }
  }
  fh_error_set("fh_alloc: heap full: %zu bytes requested (a large object: %zu bytes of pages), "
               "%zu of %zu bytes live after collecting (%zu in large objects)", n, bytes,
               heap_used_bytes(h), heap_limit(h), atomic_load(&h->los.used));
  return NULL;
}

static __attribute__((noinline)) void *alloc_general(fh_thread *t, uint32_t type, size_t n) {
  if (check_alloc(t, type, n, "fh_alloc") < 0) return NULL;
  fh_heap *h = t->heap;
  if (h->opt.gc_stress) stress_tick(t, &h->stress_allocs);
  if (h->opt.los_threshold && n >= h->opt.los_threshold) return large_alloc(t, type, n);
  /* collector=mark_sweep: movable objects live in the main malloc space. */
  if (h->has_malloc_spaces) return malloc_heap_alloc(t, type, n);
  size_t bytes = obj_total_bytes(n);
  /* The fast path may have failed only because the TLAB is full. */
  if (bytes <= t->fast.tlab_limit - t->fast.tlab_cursor) {
    uintptr_t p = t->fast.tlab_cursor;
    t->fast.tlab_cursor += bytes;
    *(uint64_t *)p = fh__make_header(type, n);
    return obj_from_start(p);
  }
  /* Attempt 0 honours the trigger; after a collection only capacity counts.
   * A second collection is tried before giving up, because other threads
   * may have filled the space between our collection and our retry.
   * Inside a critical section no collection can run, so the trigger is
   * ignored and only capacity counts. */
  int critical = t->critical != 0;
  unsigned oom_calls = 0;
  /* While concurrent marking runs, a TLAB refill is a safepoint: programs
   * that poll rarely still let the marker's remark pause run within a
   * TLAB of allocation (as malloc_heap.c's budget refill does). */
  if (FH__UNLIKELY(t->ms_black) &&
      atomic_load_explicit(&t->fast.safepoint_requested, memory_order_relaxed) && !critical)
    thread_park_if_stopping(t);
  for (int attempt = 0; attempt < 3; attempt++) {
    uint64_t seen = h->collections;
    uintptr_t p = bump_try(t, type, n, bytes, attempt > 0 || critical);
    if (p) return obj_from_start(p);
    if (critical) return alloc_fail_critical(t, "fh_alloc", n);
    /* The embedder's handler may make room: then collect and try again. */
    if (attempt == 2 && oom_retry(t, bytes, &oom_calls)) attempt = 0;
    if (attempt == 2) break;
    gc_cause cause = attempt == 0 ? GC_CAUSE_ALLOC_TRIGGER : GC_CAUSE_ALLOC_FAILURE;
    if (gc_run(t, FH_COLLECT_DEFAULT, cause, seen) < 0) {
      fh_error_prefix("fh_alloc: collection failed");
      return NULL;
    }
  }
  fh_error_set("fh_alloc: heap full: %zu bytes requested, %zu of %zu bytes live after "
               "collecting", n, heap_used_bytes(h), heap_limit(h));
  return NULL;
}

void *fh_alloc_slow(fh_thread *t, uint32_t type, size_t n) {
  /* collector=mark_sweep sends every allocation here.  When the inline
   * path's own type check holds, the full check (a miss on the type's
   * record) is redundant; a budget that covers the object means a malloc
   * space heap.  Kept apart from alloc_general so that this path saves no
   * registers: it is a leaf up to its tail call into mallocx's caller. */
  if (FH__LIKELY(t && type < FH__MAX_TYPES && n <= FH__INLINE_MAX &&
                 (FH__TYPE_SIZE(t->fast.type_sizes, type) == n ||
                  FH__TYPE_SIZE(t->fast.type_sizes, type) == FH__VAR_SIZE))) {
    size_t bytes = malloc_object_bytes(n);
    if (FH__LIKELY(bytes <= t->ms_budget)) {
      void *obj = malloc_heap_alloc_budget(t, type, n, bytes);
      if (FH__LIKELY(obj != NULL)) return obj;
    }
    if (t->heap->has_malloc_spaces) return malloc_heap_alloc_slow(t, type, n);
  }
  return alloc_general(t, type, n);
}

void *fh_alloc_nonmoving(fh_thread *t, uint32_t type, size_t n) {
  if (check_alloc(t, type, n, "fh_alloc_nonmoving") < 0) return NULL;
  fh_heap *h = t->heap;
  if (h->opt.gc_stress) stress_tick(t, &h->stress_allocs);
  size_t bytes = non_moving_object_bytes(n);
  int critical = t->critical != 0; /* no collection possible: capacity only */
  unsigned oom_calls = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    uint64_t seen = h->collections;
    int due = attempt == 0 && !critical && atomic_load(&h->alloc_since_gc) >= h->gc_trigger;
    if (!due && heap_used_bytes(h) + bytes <= heap_limit(h)) {
      void *obj = non_moving_space_alloc(&h->non_moving, type, n);
      if (obj) {
        cards_dirty_range(h, (uintptr_t)obj, (uintptr_t)obj + 1); /* as large_alloc's */
        if (atomic_load_explicit(&h->cm_black, memory_order_relaxed)) heap_alloc_black_other(h, obj);
        charge(h, bytes);
        return obj;
      }
    }
    if (critical) return alloc_fail_critical(t, "fh_alloc_nonmoving", n);
    if (attempt == 2 && oom_retry(t, bytes, &oom_calls)) attempt = 0;
    if (attempt == 2) break;
    if (gc_run(t, FH_COLLECT_DEFAULT, due ? GC_CAUSE_ALLOC_TRIGGER : GC_CAUSE_ALLOC_FAILURE,
               seen) < 0) {
      fh_error_prefix("fh_alloc_nonmoving: collection failed");
      return NULL;
    }
  }
  if (atomic_load_explicit(&h->non_moving.start_failed, memory_order_relaxed)) {
    /* Its jemalloc arena (started on demand) could not be made: that
     * error, not a full space, is the reason. */
    fh_error_prefix("fh_alloc_nonmoving: cannot start the non-moving space's arena");
    return NULL;
  }
  fh_error_set("fh_alloc_nonmoving: non-moving space full: %zu bytes requested, %zu of %zu "
               "bytes in use (heap %zu of %zu)", n, atomic_load(&h->non_moving.used),
               h->non_moving.limit, heap_used_bytes(h), heap_limit(h));
  return NULL;
}

/* These two take no heap: the object's heap is found by its address (the
 * process-wide heap list, one short locked scan), then the pointer is
 * checked as any other object argument. */
static int object_arg(const void *obj, const char *fn) {
  if (!obj) {
    fh_error_set("%s: object is NULL", fn);
    return -1;
  }
  fh_heap *h = heap_containing(obj);
  if (!h) {
    fh_error_set("%s: %p is not an object of any heap (a stack, malloc or static pointer?)",
                 fn, obj);
    return -1;
  }
  return heap_check_object(h, obj, fn);
}

size_t fh_object_size_slow(const void *obj) {
  if (object_arg(obj, "fh_object_size") < 0) return 0;
  return hdr_payload(*obj_header(obj));
}

uint32_t fh_object_type_slow(const void *obj) {
  if (object_arg(obj, "fh_object_type") < 0) return 0;
  return hdr_type(*obj_header(obj));
}
